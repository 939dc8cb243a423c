//! `grant_type=authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.6): a one-use code
//! bound to this client, the exact redirect URI and the PKCE challenge. A second use by
//! that client revokes every token issued from the code; another client presenting it
//! changes nothing.

use super::client::{Client, GrantType};
use super::grants::{pkce_matches, Issued};
use super::{OAuth, OAuthError};
use crate::scope::Scope;
use crate::store::{CodeRecord, CodeRefusal, Redeem, TokenKind, TokenRecord};
use crate::token::{self, Kind};

impl OAuth {
    /// Exchanges a code for tokens.
    pub async fn authorization_code(
        &self,
        client: &Client,
        code: Option<&str>,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
    ) -> Result<Issued, OAuthError> {
        let value = code.ok_or_else(|| OAuthError::InvalidRequest("code is missing".into()))?;
        // Before the code is spent: without a key, nothing could be issued for it.
        let reuse_keys = match (client.reuse_tokens, &self.cfg.secrets) {
            (false, _) => None,
            (true, Some(keys)) => Some(keys.clone()),
            (true, None) => return Err(super::reuse::no_key(client)),
        };
        self.codec
            .verify(value, Kind::Code)
            .map_err(|_| invalid_code())?;
        let now = (self.clock)();
        let code_hash = token::hash(value);
        // The bindings are checked inside the store's transaction, before the code is
        // spent or a replay revokes anything; the refusal's details wait here.
        let refused = std::sync::OnceLock::new();
        let check = |record: &CodeRecord| {
            check_binding(client, record, redirect_uri, verifier).map_err(|r| {
                let action = r.action;
                let _ = refused.set(r);
                action
            })
        };
        let record = match self.store.redeem_code(&code_hash, now, &check).await? {
            Redeem::Invalid => return Err(invalid_code()),
            Redeem::Refused(_) => {
                let Some(r) = refused.into_inner() else {
                    return Err(invalid_code());
                };
                tracing::warn!(client_id = %client.id, why = r.why, burned = r.action == CodeRefusal::Burn, "authorization code refused");
                return Err(r.error);
            }
            Redeem::Replayed { family } => {
                tracing::warn!(client_id = %client.id, %family, "authorization code replayed: its tokens were revoked");
                self.tokens.evict_family(&family);
                return Err(OAuthError::InvalidGrant(
                    "the authorization code was already used; the tokens issued from it have been revoked".into(),
                ));
            }
            Redeem::Fresh(r) => *r,
        };
        let scope = Scope::parse(&record.scope).map_err(|_| invalid_code())?;
        if let Some(keys) = reuse_keys {
            let issued = self
                .reused_connection(&keys, client, &record, scope, now)
                .await?;
            if self.store.code_replayed(&code_hash).await? {
                self.store.revoke_family(&record.family, now).await?;
                self.tokens.evict_family(&record.family);
                return Err(OAuthError::InvalidGrant(
                    "the authorization code was used twice; its tokens have been revoked".into(),
                ));
            }
            return Ok(issued);
        }
        let access = self.codec.mint(Kind::Access);
        let (mut access_rec, ttl) = self.access_record(client, &access, &scope, now);
        access_rec.family = record.family.clone();
        access_rec.subject = Some(record.subject.clone());
        access_rec.extra = record.extra.clone();
        let mut records = vec![access_rec];
        let refresh =
            (client.refresh_tokens && client.allows(GrantType::RefreshToken)).then(|| {
                let v = self.codec.mint(Kind::Refresh);
                records.push(TokenRecord {
                    hash: token::hash(v.expose()),
                    kind: TokenKind::Refresh,
                    expires_at: self
                        .cfg
                        .refresh_token_ttl
                        .secs()
                        .map(|t| now.saturating_add(t)),
                    ..records[0].clone()
                });
                v
            });
        self.store.insert_tokens(&records).await?;
        // A replay between the redemption and this insert revoked an (empty) family;
        // look again so the tokens just stored cannot outlive it.
        if self.store.code_replayed(&code_hash).await? {
            self.store.revoke_family(&record.family, now).await?;
            self.tokens.evict_family(&record.family);
            return Err(OAuthError::InvalidGrant(
                "the authorization code was used twice; its tokens have been revoked".into(),
            ));
        }
        Ok(Issued {
            access_token: access,
            expires_in: ttl,
            refresh_token: refresh,
            scope,
            // Settled at consent, where the user saw it.
            scope_changed: false,
            extra: client.token_response_extra.then_some(record.extra),
        })
    }
}

fn invalid_code() -> OAuthError {
    OAuthError::InvalidGrant("the authorization code is invalid or expired".into())
}

/// Why [`check_binding`] refused a code.
struct Refusal {
    error: OAuthError,
    action: CodeRefusal,
    /// For the log.
    why: &'static str,
}

/// RFC 6749 §4.1.3 and RFC 7636 §4.6: whether `client` may redeem `record` with this
/// `redirect_uri` and `verifier`, and, if not, what becomes of the code.
///
/// A code presented by another client is left untouched (and answered like an unknown
/// one): otherwise anyone holding a stolen code could spend it, or revoke what it
/// issued, in its owner's place. A wrong `redirect_uri` or verifier from the owner
/// spends the code when the owner is confidential: it authenticated with its secret,
/// so the mistake is its own (or an injected code, RFC 9700 §4.5), and a spent code
/// cannot be retried. A public client proves nothing by its `client_id`, so its code
/// stays usable: an attacker who has the code but not the verifier must not be able
/// to burn it (RFC 9700 §2.1.1), and guessing a verifier is hopeless.
fn check_binding(
    client: &Client,
    record: &CodeRecord,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
) -> Result<(), Refusal> {
    if record.client_id != client.id {
        return Err(Refusal {
            error: invalid_code(),
            action: CodeRefusal::Keep,
            why: "issued to another client",
        });
    }
    let action = if client.public {
        CodeRefusal::Keep
    } else {
        CodeRefusal::Burn
    };
    let refuse = |error: OAuthError, why: &'static str| Err(Refusal { error, action, why });
    let redirect_ok = match (record.requested_redirect_uri(), redirect_uri) {
        (Some(expected), Some(sent)) => sent == expected,
        // HubRise leaves it out of the token request although it sent it before.
        (Some(_), None) => client.relaxed_parameters,
        // Not in the authorization request: not required, but if sent, it must be the
        // one the code could have gone to.
        (None, Some(sent)) => client.redirect_uris.iter().any(|u| u == sent),
        (None, None) => true,
    };
    if !redirect_ok {
        return refuse(
            OAuthError::InvalidGrant(
                "redirect_uri does not match the authorization request".into(),
            ),
            "redirect_uri mismatch",
        );
    }
    match (&record.code_challenge, verifier) {
        (Some(challenge), Some(v)) if pkce_matches(challenge, v) => Ok(()),
        (Some(_), Some(_)) => refuse(
            OAuthError::InvalidGrant("code_verifier does not match".into()),
            "wrong code_verifier",
        ),
        (Some(_), None) => refuse(
            OAuthError::InvalidRequest("code_verifier is missing".into()),
            "code_verifier missing",
        ),
        (None, Some(_)) => refuse(
            OAuthError::InvalidGrant(
                "code_verifier sent, but the authorization request had no code_challenge".into(),
            ),
            "code_verifier without code_challenge",
        ),
        (None, None) => Ok(()),
    }
}
