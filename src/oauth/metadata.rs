//! `GET /.well-known/oauth-authorization-server` (RFC 8414): what this server actually
//! supports, nothing more.

use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};

use super::client::GrantType;
use super::{Endpoint, OAuth, OAuthError};
use crate::body::{self, Body};

/// The client authentication methods `endpoint` accepts (see `client_auth`).
fn auth_methods(endpoint: Endpoint) -> Vec<&'static str> {
    let mut methods = vec!["client_secret_basic", "client_secret_post"];
    if endpoint.serves_public_clients() {
        methods.push("none");
    }
    methods
}

impl OAuth {
    /// The RFC 6749 grants, and the account + secret extension grant when accounts exist.
    fn grant_types(&self) -> Vec<&'static str> {
        let mut grants: Vec<&str> = GrantType::ALL.iter().map(|g| g.as_str()).collect();
        if !self.accounts.is_empty() {
            grants.push(super::account::GRANT_TYPE);
        }
        grants
    }

    pub(super) fn metadata(&self, method: &Method) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            let mut r = OAuthError::MethodNotAllowed.into_response();
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let issuer = &self.cfg.issuer;
        let doc = serde_json::json!({
            "issuer": issuer,
            "token_endpoint": format!("{issuer}{}", self.cfg.token_paths[0]),
            "revocation_endpoint": format!("{issuer}{}", self.cfg.revoke_path),
            "introspection_endpoint": format!("{issuer}{}", self.cfg.introspect_path),
            "authorization_endpoint": format!("{issuer}{}", self.cfg.authorize_path),
            "code_challenge_methods_supported": if self.cfg.allow_plain_pkce { vec!["S256", "plain"] } else { vec!["S256"] },
            "grant_types_supported": self.grant_types(),
            "response_types_supported": ["code"],
            "token_endpoint_auth_methods_supported": auth_methods(Endpoint::Token),
            "revocation_endpoint_auth_methods_supported": auth_methods(Endpoint::Revoke),
            "introspection_endpoint_auth_methods_supported": auth_methods(Endpoint::Introspect),
            // RFC 9207: authorization responses carry `iss`.
            "authorization_response_iss_parameter_supported": true,
        });
        let mut resp = Response::new(body::full(doc.to_string()));
        *resp.status_mut() = StatusCode::OK;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}
