//! OAuth errors (RFC 6749 §5.2, RFC 7009, RFC 7662) and their one mapping to responses:
//! JSON `{"error", "error_description"}`, `Cache-Control: no-store`, `Pragma: no-cache`,
//! and `WWW-Authenticate: Basic` when client authentication by Basic failed.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::body::Body;
use crate::error::json_error;

/// The `error_description` of every `invalid_client` answer, whatever failed: an
/// unknown id, a wrong secret and missing credentials read the same.
pub const CLIENT_AUTH_FAILED: &str =
    "client authentication failed: unknown client, wrong credentials or none sent";

/// What went wrong at an OAuth endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// Client authentication failed. `basic`: the client tried HTTP Basic. `reason`
    /// says what failed, for the log only: every response says
    /// [`CLIENT_AUTH_FAILED`], so that it cannot tell which client ids exist.
    #[error("invalid_client: {reason}")]
    InvalidClient { basic: bool, reason: String },
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(String),
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(String),
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body too large")]
    TooLarge,
    /// Over a rate limit (`rate_limits.oauth_per_client`).
    #[error("too many requests for this client")]
    RateLimited(crate::ratelimit::Limited),
    /// The store is unreachable: try again later.
    #[error("temporarily_unavailable: {0}")]
    Unavailable(String),
}

impl OAuthError {
    /// The `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) | OAuthError::TooLarge => "invalid_request",
            OAuthError::InvalidClient { .. } => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::UnauthorizedClient(_) => "unauthorized_client",
            OAuthError::UnsupportedGrantType(_) => "unsupported_grant_type",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::MethodNotAllowed => "invalid_request",
            OAuthError::Unavailable(_) => "temporarily_unavailable",
            OAuthError::RateLimited(_) => crate::error::TOO_MANY_REQUESTS,
        }
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        match self {
            OAuthError::InvalidClient { .. } => StatusCode::UNAUTHORIZED,
            OAuthError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            OAuthError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            OAuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            OAuthError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The `error_description` (never contains a secret: built from fixed texts and
    /// parameter names).
    pub fn description(&self) -> String {
        match self {
            OAuthError::InvalidRequest(d)
            | OAuthError::InvalidGrant(d)
            | OAuthError::UnauthorizedClient(d)
            | OAuthError::UnsupportedGrantType(d)
            | OAuthError::InvalidScope(d) => d.clone(),
            OAuthError::InvalidClient { .. } => CLIENT_AUTH_FAILED.into(),
            OAuthError::MethodNotAllowed => "use POST".into(),
            OAuthError::TooLarge => "the request body is too large".into(),
            OAuthError::Unavailable(_) => {
                "the authorization server's store is unavailable; retry later".into()
            }
            OAuthError::RateLimited(l) => crate::error::rate_limited_text(l),
        }
    }

    /// The response.
    pub fn into_response(self) -> Response<Body> {
        let mut resp = json_error(self.status(), self.code(), &self.description());
        let h = resp.headers_mut();
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        match &self {
            // RFC 9110 §15.5.2: a 401 always carries a challenge.
            OAuthError::InvalidClient { .. } => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"authgate\", charset=\"UTF-8\""),
                );
            }
            OAuthError::MethodNotAllowed => {
                h.insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            OAuthError::Unavailable(_) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            OAuthError::RateLimited(l) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(l.retry_after_secs()));
            }
            _ => {}
        }
        resp
    }
}

impl From<crate::store::StoreError> for OAuthError {
    fn from(e: crate::store::StoreError) -> OAuthError {
        OAuthError::Unavailable(e.to_string())
    }
}
