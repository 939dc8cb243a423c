//! authgate's own liveness and readiness endpoints, served on every listener (so a load
//! balancer or kubelet can probe the plain HTTP port too).
//!
//! - `GET /healthz`: the process is alive and serving.
//! - `GET /readyz`: listeners are bound and the store answers; 503 `draining` once
//!   graceful shutdown has begun, so load balancers stop sending new work while
//!   in-flight requests drain, and 503 `store_unavailable` while the store can't be
//!   reached (cached tokens still work; see the README's "Running several instances").

use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::body::{self, Body};
use crate::error::json_error;

/// Liveness path.
pub const HEALTHZ: &str = "/healthz";
/// Readiness path.
pub const READYZ: &str = "/readyz";

/// What `/readyz` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    Draining,
    StoreUnavailable,
}

/// Answers `path` if it is one of ours; `readiness` is asked only for `/readyz`.
pub async fn serve(
    method: &Method,
    path: &str,
    readiness: impl std::future::Future<Output = Readiness>,
) -> Option<Response<Body>> {
    if path != HEALTHZ && path != READYZ {
        return None;
    }
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
    let (status, text) = match path {
        HEALTHZ => (StatusCode::OK, r#"{"status":"ok"}"#),
        READYZ => match readiness.await {
            Readiness::Ready => (StatusCode::OK, r#"{"status":"ready"}"#),
            Readiness::Draining => (StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"draining"}"#),
            Readiness::StoreUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"status":"store_unavailable"}"#,
            ),
        },
        _ => return None,
    };
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

/// GETs `url` (plain HTTP) and succeeds if it answers 200 within `timeout`: the
/// `authgate healthcheck` command.
pub async fn probe(url: &str, timeout: std::time::Duration) -> Result<(), String> {
    use http_body_util::Empty;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// URLs can be probed".into());
    }
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    match tokio::time::timeout(timeout, client.get(uri)).await {
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(resp)) if resp.status() == StatusCode::OK => Ok(()),
        Ok(Ok(resp)) => Err(format!("answered {}", resp.status())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn status(method: Method, path: &str, readiness: Readiness) -> Option<u16> {
        let resp = serve(&method, path, async { readiness }).await?;
        Some(resp.status().as_u16())
    }

    #[tokio::test]
    async fn health_and_readiness() {
        use Readiness::*;
        assert_eq!(status(Method::GET, HEALTHZ, Draining).await, Some(200));
        assert_eq!(status(Method::GET, READYZ, Ready).await, Some(200));
        assert_eq!(status(Method::GET, READYZ, Draining).await, Some(503));
        assert_eq!(
            status(Method::HEAD, READYZ, StoreUnavailable).await,
            Some(503)
        );
        assert_eq!(status(Method::POST, HEALTHZ, Ready).await, Some(405));
        assert_eq!(status(Method::POST, READYZ, Ready).await, Some(405));
        assert_eq!(status(Method::GET, "/other", Ready).await, None);
        let resp = serve(&Method::GET, READYZ, async { StoreUnavailable })
            .await
            .unwrap();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&body[..], br#"{"status":"store_unavailable"}"#);
    }
}
