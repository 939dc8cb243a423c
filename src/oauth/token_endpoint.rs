//! `POST /oauth/token` (and every alias in `oauth.token_paths`): the RFC 6749 grants,
//! and the account + secret grant as an extension grant (§4.5, [`account::GRANT_TYPE`]).

use std::time::Duration;

use crate::body::Incoming;
use http::{HeaderMap, Request, Response, StatusCode};

use super::account::{self, Refusal};
use super::client::GrantType;
use super::grants::Issued;
use super::{client_auth, form, json_no_store, Endpoint, OAuth, OAuthError};
use crate::body::Body;
use crate::scope::Scope;

impl OAuth {
    pub(super) async fn token_endpoint(
        &self,
        req: Request<Incoming>,
        client_ip: std::net::IpAddr,
        client_id: &mut Option<String>,
    ) -> Result<Response<Body>, OAuthError> {
        let (parts, form) = form::read(req).await?;
        if form.get("grant_type") == Some(account::GRANT_TYPE) && !self.accounts.is_empty() {
            return self
                .account_secret_grant(&parts.headers, &form, client_ip, client_id)
                .await;
        }
        let client = self
            .authenticate_client(Endpoint::Token, &parts.headers, &form, client_ip, client_id)
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

    /// `grant_type=urn:authgate:params:oauth:grant-type:account-secret`: `account`,
    /// `secret`, optional `user_id` and `scope` (narrowed to the account's). The account
    /// authenticates with its secret, as on the Hubler path; a request that also sends
    /// client credentials is a client's, and no OAuth client may use this grant
    /// (`unauthorized_client` once it authenticated). Unknown account and wrong secret
    /// read the same (`invalid_grant`): this endpoint never tells which accounts exist.
    async fn account_secret_grant(
        &self,
        headers: &HeaderMap,
        form: &form::Form,
        client_ip: std::net::IpAddr,
        client_id: &mut Option<String>,
    ) -> Result<Response<Body>, OAuthError> {
        if client_auth::sends_credentials(headers, form) {
            let client = self
                .authenticate_client(Endpoint::Token, headers, form, client_ip, client_id)
                .await?;
            return Err(OAuthError::UnauthorizedClient(format!(
                "client {} may not use {}: it is for [[account]]s, which send account and secret without client authentication",
                form::printable(&client.id),
                account::GRANT_TYPE
            )));
        }
        let request = account::from_token_form(form)?;
        let requested = form
            .get("scope")
            .map(Scope::parse)
            .transpose()
            .map_err(|e| OAuthError::InvalidScope(e.to_string()))?;
        let account = self
            .authenticate_account(&request, client_ip, client_id)
            .map_err(|refusal| match refusal {
                Refusal::Limited(l) => OAuthError::RateLimited(l),
                Refusal::TooMany(wait) => OAuthError::RateLimited(crate::ratelimit::Limited {
                    retry_after: Duration::from_secs(wait.max(1).unsigned_abs()),
                }),
                Refusal::NotFound | Refusal::WrongSecret => {
                    OAuthError::InvalidGrant("invalid account or secret".into())
                }
                Refusal::NotAUser => {
                    OAuthError::InvalidGrant("user_id is not one of the account's users".into())
                }
            })?;
        let granted = match &requested {
            Some(r) => {
                let g = r.intersect(&account.scope);
                if g.is_empty() && !r.is_empty() {
                    return Err(OAuthError::InvalidScope(
                        "none of the requested scope is allowed for this account".into(),
                    ));
                }
                g
            }
            None => account.scope.clone(),
        };
        let (value, ttl) = self
            .issue_account_token(account, request.user_id.as_deref(), &granted)
            .await?;
        Ok(render(&Issued {
            access_token: value,
            expires_in: ttl,
            refresh_token: None,
            scope_changed: requested
                .as_ref()
                .map_or(!granted.is_empty(), |r| *r != granted),
            scope: granted,
            extra: None,
        }))
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
