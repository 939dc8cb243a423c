//! Grant logic (RFC 6749 §4.4 client credentials, §6 refresh): from an authenticated
//! client and the form, decide what to issue, store it (committed before returning), and
//! describe it for the response. No HTTP here.

use crate::scope::Scope;
use crate::secret::Secret;
use crate::store::{Rotation, TokenKind, TokenRecord};
use crate::token::{self, Kind};

use super::client::Client;
use super::error::OAuthError;
use super::OAuth;

/// What a successful grant issued.
#[derive(Debug)]
pub struct Issued {
    pub access_token: Secret,
    /// Seconds until the access token expires; `None`: never.
    pub expires_in: Option<i64>,
    pub refresh_token: Option<Secret>,
    pub scope: Scope,
    /// Whether `scope` differs from what was requested (then the response names it).
    pub scope_changed: bool,
    /// Bound resource ids and names, for clients with `token_response_extra`.
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Checks a PKCE verifier against a stored `S256:…` or `plain:…` challenge (RFC 7636).
pub fn pkce_matches(stored: &str, verifier: &str) -> bool {
    use base64::Engine;
    use sha2::Digest;
    use subtle::ConstantTimeEq;
    let valid = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !valid {
        return false;
    }
    let computed = match stored.split_once(':') {
        Some(("S256", _)) => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes())),
        Some(("plain", _)) => verifier.to_owned(),
        _ => return false,
    };
    let expected = stored.split_once(':').map_or("", |(_, c)| c);
    bool::from(computed.as_bytes().ct_eq(expected.as_bytes()))
}

fn requested_scope(form_scope: Option<&str>) -> Result<Option<Scope>, OAuthError> {
    form_scope
        .map(Scope::parse)
        .transpose()
        .map_err(|e| OAuthError::InvalidScope(e.to_string()))
}

impl OAuth {
    pub(super) fn access_record(
        &self,
        client: &Client,
        value: &Secret,
        scope: &Scope,
        now: i64,
    ) -> (TokenRecord, Option<i64>) {
        let ttl = client
            .access_token_ttl
            .unwrap_or(self.cfg.access_token_ttl)
            .secs();
        let record = TokenRecord {
            hash: token::hash(value.expose()),
            kind: TokenKind::Access,
            client_id: client.id.clone(),
            subject: client.subject.clone(),
            scope: scope.to_string(),
            family: token::random_id(),
            parent: None,
            extra: serde_json::Map::new(),
            issued_at: now,
            expires_at: ttl.map(|t| now.saturating_add(t)),
            revoked_at: None,
            used_at: None,
        };
        (record, ttl)
    }

    /// `grant_type=client_credentials`: an access token for the client itself (or the
    /// user it acts for), never a refresh token (RFC 6749 §4.4.3).
    pub async fn client_credentials(
        &self,
        client: &Client,
        form_scope: Option<&str>,
    ) -> Result<Issued, OAuthError> {
        if client.public {
            return Err(OAuthError::UnauthorizedClient(
                "public clients cannot use client_credentials".into(),
            ));
        }
        let requested = requested_scope(form_scope)?;
        let granted = match &requested {
            Some(r) => {
                let g = r.intersect(&client.scope);
                if g.is_empty() && !r.is_empty() {
                    return Err(OAuthError::InvalidScope(
                        "none of the requested scope is allowed for this client".into(),
                    ));
                }
                g
            }
            None => client.scope.clone(),
        };
        let now = (self.clock)();
        let value = self.codec.mint(Kind::Access);
        let (record, ttl) = self.access_record(client, &value, &granted, now);
        self.store.insert_tokens(&[record]).await?;
        Ok(Issued {
            access_token: value,
            expires_in: ttl,
            refresh_token: None,
            scope_changed: requested
                .as_ref()
                .map_or(!granted.is_empty(), |r| *r != granted),
            scope: granted,
            extra: None,
        })
    }

    /// `grant_type=refresh_token`: a new access token (and, with rotation, a new refresh
    /// token that replaces the old one; a replayed old one revokes the whole grant).
    pub async fn refresh(
        &self,
        client: &Client,
        refresh_token: Option<&str>,
        form_scope: Option<&str>,
    ) -> Result<Issued, OAuthError> {
        let value = refresh_token
            .ok_or_else(|| OAuthError::InvalidRequest("refresh_token is missing".into()))?;
        let invalid =
            || OAuthError::InvalidGrant("the refresh token is invalid, expired or revoked".into());
        self.codec
            .verify(value, Kind::Refresh)
            .map_err(|_| invalid())?;
        let hash = token::hash(value);
        let old = self.store.get_token(&hash).await?.ok_or_else(invalid)?;
        if old.kind != TokenKind::Refresh || old.client_id != client.id {
            return Err(invalid());
        }
        let now = (self.clock)();
        if old.used_at.is_none() && !old.is_active(now) {
            return Err(invalid());
        }
        // Refresh tokens come from the code grant and act for a user. One removed from
        // the file (or the store) since ends the grant here, whatever was revoked.
        if let Some(user) = &old.subject {
            if !self.user_exists(user).await? {
                self.store.revoke_family(&old.family, now).await?;
                self.tokens.evict_family(&old.family);
                tracing::warn!(client_id = %client.id, user = %super::form::printable(user), "refresh for a user who no longer exists: the grant was revoked");
                return Err(invalid());
            }
        }
        // What the grant allowed, narrowed to what the client may have today (an admin
        // may have narrowed the client since).
        let original = Scope::parse(&old.scope)
            .map_err(|_| invalid())?
            .intersect(&client.scope);
        let requested = requested_scope(form_scope)?;
        let granted = match &requested {
            Some(r) if !r.is_subset_of(&original) => {
                return Err(OAuthError::InvalidScope(
                    "the requested scope exceeds the scope originally granted".into(),
                ))
            }
            Some(r) => r.clone(),
            None => original.clone(),
        };
        if granted.is_empty() && !original.is_empty() {
            return Err(OAuthError::InvalidScope("nothing left to grant".into()));
        }
        // Rotation needs the client to receive refresh tokens at all.
        let rotate = client.refresh_tokens && client.rotate_refresh_tokens;

        let access = self.codec.mint(Kind::Access);
        let (mut access_rec, ttl) = self.access_record(client, &access, &granted, now);
        access_rec.family = old.family.clone();
        access_rec.parent = Some(hash);
        access_rec.subject = old.subject.clone();
        access_rec.extra = old.extra.clone();
        let mut records = vec![access_rec];
        let new_refresh = rotate.then(|| {
            let v = self.codec.mint(Kind::Refresh);
            records.push(TokenRecord {
                hash: token::hash(v.expose()),
                kind: TokenKind::Refresh,
                parent: None,
                expires_at: self
                    .cfg
                    .refresh_token_ttl
                    .secs()
                    .map(|t| now.saturating_add(t)),
                scope: original.to_string(),
                ..records[0].clone()
            });
            v
        });
        match self
            .store
            .rotate_refresh(&hash, &records, !rotate, now)
            .await?
        {
            Rotation::Rotated => Ok(Issued {
                access_token: access,
                expires_in: ttl,
                refresh_token: new_refresh,
                scope_changed: requested
                    .map_or(original.to_string() != old.scope, |r| r != original),
                scope: granted,
                extra: client.token_response_extra.then(|| old.extra.clone()),
            }),
            Rotation::Reused { family } => {
                tracing::warn!(client_id = %client.id, %family, "refresh token replayed: its grant was revoked");
                self.tokens.evict_family(&family);
                Err(OAuthError::InvalidGrant(
                    "the refresh token was already used; every token of its grant has been revoked"
                        .into(),
                ))
            }
            Rotation::Invalid => Err(invalid()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pkce_matches;

    #[test]
    fn pkce_s256_follows_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "S256:E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches(challenge, verifier));
        assert!(!pkce_matches(
            challenge,
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX"
        ));
        assert!(!pkce_matches(challenge, "short"));
        assert!(pkce_matches(&format!("plain:{verifier}"), verifier));
        assert!(!pkce_matches(&format!("md5:{verifier}"), verifier));
    }
}
