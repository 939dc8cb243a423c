//! Connection reuse (`reuse_tokens`, HubRise): authorizing the same client, user, bound
//! resource (`location_id`, else `account_id`) and `device_id` again returns the same
//! access token, now carrying the new grant.
//!
//! The token is random like every other, and the tokens table holds only its hash. So
//! that it can be handed out again, the connection's row keeps it sealed (AEAD,
//! [`crate::keyring`]) under the first key of `oauth.secrets_key_file` /
//! `AUTHGATE_OAUTH__SECRETS_KEYS`, which the store never holds, with [`aad`] binding it
//! to that connection, generation and hash: a copy of the store opens nothing, and a
//! sealed value moved to another row does not open there. A token revoked, expired or
//! swept moves the connection to its next generation, with a fresh random token.

use super::client::Client;
use super::grants::Issued;
use super::{OAuth, OAuthError};
use crate::keyring::{Keyring, KEYS_VAR};
use crate::scope::Scope;
use crate::secret::Secret;
use crate::store::{CodeRecord, ConnectionToken, TokenKind};
use crate::token::{self, Kind, TokenHash};

/// What a connection's sealed token is bound to: its connection `key`, `generation` and
/// `hash` (the key last, so no two inputs run together).
pub fn aad(key: &str, generation: i64, hash: &TokenHash) -> Vec<u8> {
    const LABEL: &[u8] = b"authgate connection token v1\0";
    let mut out = Vec::with_capacity(LABEL.len() + 8 + 32 + key.len());
    out.extend_from_slice(LABEL);
    out.extend_from_slice(&generation.to_be_bytes());
    out.extend_from_slice(&hash.0);
    out.extend_from_slice(key.as_bytes());
    out
}

/// The refusal of a reuse client when no key is configured (a client in the store: one
/// in the file is refused at load).
pub(super) fn no_key(client: &Client) -> OAuthError {
    tracing::error!(client_id = %client.id, "a reuse_tokens client, but no key to seal its tokens: set oauth.secrets_key_file or {KEYS_VAR}");
    OAuthError::UnauthorizedClient(
        "this client reuses tokens, which the server keeps only encrypted, and it has no key configured for them".into(),
    )
}

impl OAuth {
    /// The access token of the connection `record` belongs to: its live one with the new
    /// grant, or a new one (the connection's first, or its next generation).
    pub(super) async fn reused_connection(
        &self,
        keys: &Keyring,
        client: &Client,
        record: &CodeRecord,
        scope: Scope,
        now: i64,
    ) -> Result<Issued, OAuthError> {
        let bound = ["location_id", "account_id"]
            .iter()
            .find_map(|k| record.extra.get(*k).and_then(|v| v.as_str()))
            .unwrap_or("");
        let key = format!(
            "{}\0{}\0{bound}\0{}",
            client.id,
            record.subject,
            record.device_id.as_deref().unwrap_or("")
        );
        for _ in 0..3 {
            let current = self.store.connection(&key).await?;
            if let Some(c) = &current {
                match &c.token {
                    Some(t) => {
                        let live = self.live_token(keys, &key, c.generation, t, now).await?;
                        if let Some((value, expires_at)) = live {
                            self.store
                                .regrant_token(
                                    &t.hash,
                                    &scope.to_string(),
                                    &record.extra,
                                    &record.family,
                                    now,
                                )
                                .await?;
                            // The new grant applies from the next request.
                            self.tokens.evict(&t.hash).await;
                            return Ok(self.issued_reuse(
                                client,
                                value,
                                expires_at.map(|e| e - now),
                                scope,
                                record,
                            ));
                        }
                    }
                    None => self.retire_derived(client, &key, c.generation, now).await?,
                }
            }
            // New, or its token is gone: the next generation, with a new random token.
            let expected = current.map(|c| c.generation);
            let generation = expected.map_or(0, |g| g + 1);
            let value = self.codec.mint(Kind::Access);
            let (mut new, ttl) = self.access_record(client, &value, &scope, now);
            new.family = record.family.clone();
            new.subject = Some(record.subject.clone());
            new.extra = record.extra.clone();
            let sealed = keys.seal(&aad(&key, generation, &new.hash), value.expose().as_bytes());
            let sealed = ConnectionToken {
                hash: new.hash,
                key_id: sealed.key_id,
                sealed: sealed.bytes,
            };
            if self
                .store
                .renew_connection(&key, expected, generation, &sealed, &new)
                .await?
            {
                return Ok(self.issued_reuse(client, value, ttl, scope, record));
            }
            // Another authorization of this connection came first: take its token.
        }
        Err(OAuthError::Unavailable(
            "connection generation did not settle".into(),
        ))
    }

    /// The value and expiry of connection token `t` if it is live; re-sealed under the
    /// first key if an older one sealed it. A token that is live but does not open is
    /// refused (503) rather than replaced: its key is missing from the configuration,
    /// which the operator can put back.
    async fn live_token(
        &self,
        keys: &Keyring,
        key: &str,
        generation: i64,
        t: &ConnectionToken,
        now: i64,
    ) -> Result<Option<(Secret, Option<i64>)>, OAuthError> {
        let live = self
            .store
            .get_token(&t.hash)
            .await?
            .filter(|r| r.kind == TokenKind::Access && r.is_active(now));
        let Some(live) = live else {
            return Ok(None);
        };
        let aad = aad(key, generation, &t.hash);
        let value = keys
            .open(&t.key_id, &t.sealed, &aad)
            .map_err(|e| e.to_string())
            .and_then(|mut plain| {
                String::from_utf8(std::mem::take(&mut *plain))
                    .map(Secret::new)
                    .map_err(|_| "it is not a token".into())
            })
            .and_then(|v| {
                if token::hash(v.expose()) == t.hash {
                    Ok(v)
                } else {
                    Err("it is not the connection's token".to_owned())
                }
            });
        let value = match value {
            Ok(v) => v,
            Err(why) => {
                tracing::error!(client_id = %live.client_id, generation, token = ?t.hash, "cannot open a reused connection's live token: {why}; put its key back in the keyring (anywhere after the first), or revoke the token so that the next authorization issues a new one");
                return Err(OAuthError::Unavailable(
                    "a reused connection's token cannot be opened".into(),
                ));
            }
        };
        if t.key_id != keys.primary_id() {
            // Key rotation: once every connection is sealed under the new key, the old
            // one can leave the keyring. Failing here costs nothing: the next reuse tries
            // again.
            let sealed = keys.seal(&aad, value.expose().as_bytes());
            let resealed = ConnectionToken {
                hash: t.hash,
                key_id: sealed.key_id,
                sealed: sealed.bytes,
            };
            if let Err(e) = self
                .store
                .reseal_connection(key, generation, &resealed)
                .await
            {
                tracing::warn!(error = %e, "cannot re-seal a reused connection's token under the first key");
            }
        }
        Ok(Some((value, live.expires_at)))
    }

    /// A connection recorded before tokens were sealed: its token was derived from the
    /// store's key, which whoever reads the store can do too. It is revoked (if live)
    /// before the connection moves on to a sealed random one.
    async fn retire_derived(
        &self,
        client: &Client,
        key: &str,
        generation: i64,
        now: i64,
    ) -> Result<(), OAuthError> {
        let derived = self
            .codec
            .legacy_derive(Kind::Access, &format!("{key}\0{generation}"));
        let hash = token::hash(derived.expose());
        let live = self
            .store
            .get_token(&hash)
            .await?
            .is_some_and(|r| r.revoked_at.is_none());
        if live {
            self.store.revoke_token(&hash, now).await?;
            self.tokens.evict(&hash).await;
            tracing::info!(client_id = %client.id, "revoked a reused connection's token derived from the store's key (issued before tokens were sealed); the connection gets a new one");
        }
        Ok(())
    }

    fn issued_reuse(
        &self,
        client: &Client,
        value: Secret,
        expires_in: Option<i64>,
        scope: Scope,
        record: &CodeRecord,
    ) -> Issued {
        Issued {
            access_token: value,
            expires_in,
            refresh_token: None,
            scope,
            scope_changed: false,
            extra: client.token_response_extra.then(|| record.extra.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::aad;
    use crate::token::TokenHash;

    #[test]
    fn the_binding_differs_for_every_connection_generation_and_token() {
        let h = TokenHash([1; 32]);
        let base = aad("app\0bella\0loc-1\0", 0, &h);
        assert_ne!(base, aad("app\0bella\0loc-2\0", 0, &h));
        assert_ne!(base, aad("app\0bella\0loc-1\0", 1, &h));
        assert_ne!(base, aad("app\0bella\0loc-1\0", 0, &TokenHash([2; 32])));
        assert_eq!(base, aad("app\0bella\0loc-1\0", 0, &h));
    }
}
