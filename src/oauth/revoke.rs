//! `POST /oauth/revoke` (RFC 7009): a client revokes one of its own tokens. The answer is
//! 200 whether or not the token was known (§2.2), so it reveals nothing; revoking a
//! refresh token also revokes the access tokens issued with it.

use crate::body::Incoming;
use http::{Request, Response, StatusCode};

use super::{json_no_store, OAuth, OAuthError};
use crate::body::Body;
use crate::token::{self, Kind};

impl OAuth {
    pub(super) async fn revoke(
        &self,
        req: Request<Incoming>,
        client_ip: std::net::IpAddr,
        client_id: &mut Option<String>,
    ) -> Result<Response<Body>, OAuthError> {
        let (form, client) = self
            .authenticated_form(super::Endpoint::Revoke, req, client_ip, client_id)
            .await?;
        let value = form
            .get("token")
            .ok_or_else(|| OAuthError::InvalidRequest("token is missing".into()))?;
        // token_type_hint is only a hint (§2.1): the prefix says what the token is.
        let ok = json_no_store(StatusCode::OK, &serde_json::json!({}));
        let Some(kind) = Kind::of(value).filter(|k| matches!(k, Kind::Access | Kind::Refresh))
        else {
            return Ok(ok);
        };
        if self.codec.verify(value, kind).is_err() {
            return Ok(ok);
        }
        let hash = token::hash(value);
        match self.store.get_token(&hash).await? {
            // Already revoked: nothing to log or evict again (a repeated revoke must not
            // make every instance scan its cache).
            Some(t) if t.client_id == client.id && t.revoked_at.is_some() => {}
            Some(t) if t.client_id == client.id => {
                self.store.revoke_token(&hash, (self.clock)()).await?;
                match t.kind {
                    crate::store::TokenKind::Access => self.tokens.evict(&hash).await,
                    crate::store::TokenKind::Refresh => self.tokens.evict_family(&t.family),
                }
                tracing::info!(client_id = %client.id, token = ?hash, "token revoked");
            }
            Some(_) => {
                tracing::warn!(client_id = %client.id, token = ?hash, "client tried to revoke another client's token");
            }
            None => {}
        }
        Ok(ok)
    }
}
