//! The one place where failures become HTTP responses.
//!
//! Phases return a [`GatewayError`]; [`GatewayError::into_response`] picks the status and
//! the RFC-shaped JSON body `{"error": …, "error_description": …}`. HSTS is added
//! afterwards in [`crate::gateway`] to every HTTPS response, so error responses carry it
//! too. The description is safe to show a client: upstream
//! addresses and internal causes go to the log line only.

use std::time::Duration;

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};

use crate::body::{self, Body};

/// Whose fault a failure is: decides the log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The client sent something wrong.
    Client,
    /// The upstream failed.
    Upstream,
}

/// What went wrong while handling a request.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    #[error("no route for this host and path")]
    NoRoute,
    #[error("request headers are {size} bytes, over the {limit} byte limit")]
    HeadersTooLarge { size: usize, limit: usize },
    #[error("request body is over the {limit} byte limit")]
    BodyTooLarge { limit: u64 },
    /// The client sent its body slower than `server.body_read_timeout` /
    /// `server.body_min_rate` allow.
    #[error("request body too slow")]
    BodyTimeout,
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("upstream {upstream} unreachable: {reason}")]
    UpstreamUnreachable { upstream: String, reason: String },
    #[error("upstream {upstream} did not answer within {after:?}")]
    UpstreamTimeout { upstream: String, after: Duration },
    #[error("upstream {upstream} failed: {reason}")]
    UpstreamFailed { upstream: String, reason: String },
    /// No access token on a protected route (RFC 6750 §3.1: no error code).
    #[error("no access token")]
    MissingToken,
    /// Unknown, expired, revoked or malformed access token.
    #[error("invalid access token")]
    InvalidToken,
    /// The token's scope does not cover the route and method; `scope` is what is needed.
    #[error("insufficient scope, needs {scope}")]
    InsufficientScope { scope: String },
    /// An ambiguous or refused token presentation.
    #[error("bad token request: {0}")]
    BadToken(&'static str),
    /// The method has no right on a perimeter route.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// A token had to be read from the store and the store is unreachable.
    #[error("store unavailable: {0}")]
    StoreUnavailable(String),
    /// Over a rate limit; `limit` names it (for logs and metrics).
    #[error("rate limited ({limit})")]
    RateLimited {
        limit: &'static str,
        wait: crate::ratelimit::Limited,
    },
    /// Refused without a token question (metrics to an address not allowed; a
    /// forward-auth request no route covers).
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// The forward-auth request did not say which request to decide on.
    #[error("forward-auth request without the original method and URI headers")]
    NoOriginalUri,
}

/// The `error` code of 429 answers.
pub const TOO_MANY_REQUESTS: &str = "too_many_requests";

/// The `error_description` of 429 answers.
pub fn rate_limited_text(l: &crate::ratelimit::Limited) -> String {
    format!("rate limit exceeded; retry in {} s", l.retry_after_secs())
}

impl GatewayError {
    /// The response status.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            GatewayError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::UpstreamUnreachable { .. } | GatewayError::UpstreamFailed { .. } => {
                StatusCode::BAD_GATEWAY
            }
            GatewayError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::MissingToken | GatewayError::InvalidToken => StatusCode::UNAUTHORIZED,
            GatewayError::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            GatewayError::BadToken(_) => StatusCode::BAD_REQUEST,
            GatewayError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::NoOriginalUri => StatusCode::BAD_REQUEST,
            GatewayError::Forbidden(_) => StatusCode::FORBIDDEN,
        }
    }

    /// The auth decision this error stands for, for logs and counters.
    pub fn auth_decision(&self) -> Option<&'static str> {
        match self {
            GatewayError::MissingToken => Some("missing_token"),
            GatewayError::InvalidToken => Some("invalid_token"),
            GatewayError::InsufficientScope { .. } => Some("insufficient_scope"),
            GatewayError::BadToken(_) => Some("bad_token_request"),
            GatewayError::StoreUnavailable(_) => Some("store_unavailable"),
            GatewayError::RateLimited { .. } => Some("rate_limited"),
            _ => None,
        }
    }

    /// Whether an HTTP/1.x connection closes after this answer: past a size limit, what
    /// the client sends next cannot be trusted to start a request (as for 413 and 414).
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            GatewayError::HeadersTooLarge { .. }
                | GatewayError::BodyTooLarge { .. }
                | GatewayError::BodyTimeout
        )
    }

    /// Whose fault it was.
    pub fn fault(&self) -> Fault {
        match self {
            GatewayError::UpstreamUnreachable { .. }
            | GatewayError::UpstreamTimeout { .. }
            | GatewayError::UpstreamFailed { .. } => Fault::Upstream,
            _ => Fault::Client,
        }
    }

    /// The machine-readable `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::NoRoute => "not_found",
            GatewayError::HeadersTooLarge { .. } => "request_header_fields_too_large",
            GatewayError::BodyTooLarge { .. } => "request_entity_too_large",
            GatewayError::BodyTimeout => "request_timeout",
            GatewayError::BadRequest(_) => "invalid_request",
            GatewayError::UpstreamUnreachable { .. } | GatewayError::UpstreamFailed { .. } => {
                "bad_gateway"
            }
            GatewayError::UpstreamTimeout { .. } => "gateway_timeout",
            GatewayError::MissingToken => "unauthorized",
            GatewayError::InvalidToken => "invalid_token",
            GatewayError::InsufficientScope { .. } => "insufficient_scope",
            GatewayError::BadToken(_) => "invalid_request",
            GatewayError::MethodNotAllowed => "method_not_allowed",
            GatewayError::StoreUnavailable(_) => "temporarily_unavailable",
            GatewayError::RateLimited { .. } => TOO_MANY_REQUESTS,
            GatewayError::NoOriginalUri => "invalid_request",
            GatewayError::Forbidden(_) => "access_denied",
        }
    }

    /// A description that is safe to send to the client.
    pub fn public_description(&self) -> String {
        match self {
            GatewayError::NoRoute => "no route matches this host and path".into(),
            GatewayError::HeadersTooLarge { limit, .. } => {
                format!("request headers exceed the limit of {limit} bytes")
            }
            GatewayError::BodyTooLarge { limit } => {
                format!("request body exceeds the limit of {limit} bytes")
            }
            GatewayError::BodyTimeout => "the request body did not arrive in time".into(),
            GatewayError::BadRequest(why) => (*why).to_owned(),
            GatewayError::UpstreamUnreachable { .. } => {
                "the upstream service could not be reached".into()
            }
            GatewayError::UpstreamTimeout { after, .. } => format!(
                "the upstream service did not answer within {}",
                humantime::format_duration(*after)
            ),
            GatewayError::UpstreamFailed { .. } => {
                "the upstream service closed the connection or sent an invalid response".into()
            }
            GatewayError::MissingToken => "an access token is required".into(),
            GatewayError::InvalidToken => "the access token is invalid, expired or revoked".into(),
            GatewayError::InsufficientScope { scope } => {
                format!("the access token lacks the scope {scope}")
            }
            GatewayError::BadToken(why) => (*why).to_owned(),
            GatewayError::MethodNotAllowed => "this method is not allowed on this route".into(),
            GatewayError::StoreUnavailable(_) => {
                "the token could not be checked; retry later".into()
            }
            GatewayError::RateLimited { wait, .. } => rate_limited_text(wait),
            GatewayError::NoOriginalUri => {
                "send the original request's method and URI (X-Forwarded-Method and X-Forwarded-Uri, or X-Original-Method and X-Original-URI, as forward_auth.headers says)".into()
            }
            GatewayError::Forbidden(why) => (*why).to_owned(),
        }
    }

    /// Turns the error into its response. `realm` names the protection space in
    /// `WWW-Authenticate: Bearer` challenges (RFC 6750 §3).
    pub fn into_response(self, realm: &str) -> Response<Body> {
        let mut resp = json_error(self.status(), self.code(), &self.public_description());
        let challenge = match &self {
            GatewayError::MissingToken => Some(format!("Bearer realm=\"{realm}\"")),
            GatewayError::InvalidToken => Some(format!(
                "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"the access token is invalid, expired or revoked\""
            )),
            GatewayError::BadToken(_) => {
                Some(format!("Bearer realm=\"{realm}\", error=\"invalid_request\""))
            }
            GatewayError::InsufficientScope { scope } => Some(format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{scope}\""
            )),
            _ => None,
        };
        if let Some(value) = challenge.and_then(|c| http::HeaderValue::from_str(&c).ok()) {
            resp.headers_mut()
                .insert(http::header::WWW_AUTHENTICATE, value);
        }
        if matches!(self, GatewayError::StoreUnavailable(_)) {
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let GatewayError::RateLimited { wait, .. } = &self {
            resp.headers_mut().insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(wait.retry_after_secs()),
            );
        }
        resp
    }
}

/// A JSON error response `{"error": code, "error_description": description}`, plus
/// `"request_id"` when answering a request ([`crate::request_id`]).
pub fn json_error(status: StatusCode, code: &str, description: &str) -> Response<Body> {
    let mut body = serde_json::json!({ "error": code, "error_description": description });
    if let Some(id) = crate::request_id::current() {
        body["request_id"] = id.into();
    }
    let mut resp = Response::new(body::full(body.to_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn errors_have_json_bodies_without_internal_detail() {
        let err = GatewayError::UpstreamUnreachable {
            upstream: "http://10.1.2.3:9000".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(err.fault(), Fault::Upstream);
        let resp = err.into_response("authgate");
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "bad_gateway");
        assert!(!v["error_description"]
            .as_str()
            .unwrap()
            .contains("10.1.2.3"));
    }

    #[test]
    fn statuses() {
        assert_eq!(GatewayError::NoRoute.status(), 404);
        assert_eq!(GatewayError::BodyTooLarge { limit: 1 }.status(), 413);
        assert_eq!(
            GatewayError::HeadersTooLarge { size: 2, limit: 1 }.status(),
            431
        );
        let t = GatewayError::UpstreamTimeout {
            upstream: "u".into(),
            after: Duration::from_secs(1),
        };
        assert_eq!(t.status(), 504);
    }
}
