//! `POST /oauth/token` (and every alias in `oauth.token_paths`).

use crate::body::Incoming;
use http::{Request, Response, StatusCode};

use super::client::GrantType;
use super::grants::Issued;
use super::{form, json_no_store, OAuth, OAuthError};
use crate::body::Body;

impl OAuth {
    pub(super) async fn token_endpoint(
        &self,
        req: Request<Incoming>,
        client_ip: std::net::IpAddr,
        client_id: &mut Option<String>,
    ) -> Result<Response<Body>, OAuthError> {
        let (form, client) = self
            .authenticated_form(super::Endpoint::Token, req, client_ip, client_id)
            .await?;
        let grant_type = match form.get("grant_type") {
            Some(g) => g,
            None if client.relaxed_parameters && form.get("code").is_some() => "authorization_code",
            None => return Err(OAuthError::InvalidRequest("grant_type is missing".into())),
        };
        let grant = GrantType::parse(grant_type).ok_or_else(|| {
            OAuthError::UnsupportedGrantType(format!(
                "grant_type {} is not supported",
                form::printable(grant_type)
            ))
        })?;
        if !client.allows(grant) {
            return Err(OAuthError::UnauthorizedClient(format!(
                "this client may not use {}",
                grant.as_str()
            )));
        }
        let issued = match grant {
            GrantType::AuthorizationCode => {
                self.authorization_code(
                    &client,
                    form.get("code"),
                    form.get("redirect_uri"),
                    form.get("code_verifier"),
                )
                .await?
            }
            GrantType::ClientCredentials => {
                self.client_credentials(&client, form.get("scope")).await?
            }
            GrantType::RefreshToken => {
                self.refresh(&client, form.get("refresh_token"), form.get("scope"))
                    .await?
            }
        };
        tracing::info!(client_id = %client.id, grant = grant.as_str(), "token issued");
        self.count_issued(grant.as_str(), &client.id);
        Ok(render(&issued))
    }
}

/// RFC 6749 §5.1: `access_token`, `token_type`, `expires_in` (omitted for tokens that
/// never expire), `refresh_token` when issued, `scope` when it differs from the request.
fn render(issued: &Issued) -> Response<Body> {
    let mut body = serde_json::Map::new();
    body.insert(
        "access_token".into(),
        issued.access_token.expose().to_owned().into(),
    );
    body.insert("token_type".into(), "Bearer".into());
    if let Some(secs) = issued.expires_in {
        body.insert("expires_in".into(), secs.into());
    }
    if let Some(r) = &issued.refresh_token {
        body.insert("refresh_token".into(), r.expose().to_owned().into());
    }
    if issued.scope_changed {
        body.insert("scope".into(), issued.scope.to_string().into());
    }
    if let Some(extra) = &issued.extra {
        for (k, v) in extra {
            body.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    json_no_store(StatusCode::OK, &serde_json::Value::Object(body))
}
