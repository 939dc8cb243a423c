//! `POST /oauth/introspect` (RFC 7662). A client may introspect only its own tokens;
//! anything else (unknown, expired, revoked, malformed, another client's) is
//! `{"active": false}`, so the endpoint leaks nothing about other clients.

use crate::body::Incoming;
use http::{Request, Response, StatusCode};

use super::{json_no_store, OAuth, OAuthError};
use crate::body::Body;
use crate::store::TokenKind;
use crate::token::{self, Kind};

impl OAuth {
    pub(super) async fn introspect(
        &self,
        req: Request<Incoming>,
        client_ip: std::net::IpAddr,
        client_id: &mut Option<String>,
    ) -> Result<Response<Body>, OAuthError> {
        let (form, client) = self
            .authenticated_form(super::Endpoint::Introspect, req, client_ip, client_id)
            .await?;
        let value = form
            .get("token")
            .ok_or_else(|| OAuthError::InvalidRequest("token is missing".into()))?;
        let inactive = json_no_store(StatusCode::OK, &serde_json::json!({ "active": false }));
        let Some(kind) = Kind::of(value).filter(|k| matches!(k, Kind::Access | Kind::Refresh))
        else {
            return Ok(inactive);
        };
        if self.codec.verify(value, kind).is_err() {
            return Ok(inactive);
        }
        let now = (self.clock)();
        let record = match self.store.get_token(&token::hash(value)).await? {
            Some(t) if t.client_id == client.id && t.used_at.is_none() && t.is_active(now) => t,
            _ => return Ok(inactive),
        };
        let mut body = serde_json::Map::new();
        // Bound resource ids first, so the standard members below win any name clash.
        for (k, v) in &record.extra {
            body.insert(k.clone(), v.clone());
        }
        body.insert("active".into(), true.into());
        body.insert("scope".into(), record.scope.clone().into());
        body.insert("client_id".into(), record.client_id.clone().into());
        body.insert(
            "token_type".into(),
            match record.kind {
                TokenKind::Access => "Bearer",
                TokenKind::Refresh => "refresh_token",
            }
            .into(),
        );
        body.insert("iat".into(), record.issued_at.into());
        if let Some(exp) = record.expires_at {
            body.insert("exp".into(), exp.into());
        }
        if let Some(sub) = &record.subject {
            body.insert("sub".into(), sub.clone().into());
        }
        body.insert("iss".into(), self.cfg.issuer.clone().into());
        Ok(json_no_store(
            StatusCode::OK,
            &serde_json::Value::Object(body),
        ))
    }
}
