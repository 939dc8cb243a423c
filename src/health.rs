//! authgate's own liveness and readiness endpoints, served on every listener (so a load
//! balancer or kubelet can probe the plain HTTP port too).
//!
//! - `GET /healthz`: the process is alive and serving.
//! - `GET /readyz`: listeners are bound; 503 once graceful shutdown has begun, so load
//!   balancers stop sending new work while in-flight requests drain.

use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::body::{self, Body};
use crate::error::json_error;

/// Liveness path.
pub const HEALTHZ: &str = "/healthz";
/// Readiness path.
pub const READYZ: &str = "/readyz";

/// Answers `path` if it is one of ours.
pub fn serve(method: &Method, path: &str, ready: bool) -> Option<Response<Body>> {
    let (status, text) = match path {
        HEALTHZ => (StatusCode::OK, r#"{"status":"ok"}"#),
        READYZ if ready => (StatusCode::OK, r#"{"status":"ready"}"#),
        READYZ => (StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"draining"}"#),
        _ => return None,
    };
    if method != Method::GET && method != Method::HEAD {
        let mut resp = json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use GET or HEAD",
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Some(resp);
    }
    let mut resp = Response::new(body::full(text));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_and_readiness() {
        assert_eq!(serve(&Method::GET, HEALTHZ, false).unwrap().status(), 200);
        assert_eq!(serve(&Method::GET, READYZ, true).unwrap().status(), 200);
        assert_eq!(serve(&Method::GET, READYZ, false).unwrap().status(), 503);
        assert_eq!(serve(&Method::POST, HEALTHZ, true).unwrap().status(), 405);
        assert!(serve(&Method::GET, "/other", true).is_none());
    }
}
