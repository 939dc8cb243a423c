//! The request pipeline. [`Gateway::handle`] runs the phases in order:
//!
//! ```text
//! limits ─▶ own endpoints (/healthz, /readyz) ─▶ redirect (plain HTTP, redirect mode)
//!        ─▶ OAuth endpoints (token, revoke, introspect, metadata)
//!        ─▶ route ─▶ authenticate ─▶ authorize (skipped on public routes)
//!        ─▶ forward (with identity headers) ─▶ finish (HSTS, access log, counters)
//! ```
//!
//! Phases return `Result<_, GatewayError>`; failures become responses in one place
//! ([`crate::error`]), and `finish` runs for every response, errors included.

pub mod authenticate;
pub mod authorize;
pub mod forward;
pub mod headers;
pub mod identity;
pub mod upgrade;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use ipnet::IpNet;

use crate::body::{self, Body};
use crate::config::{Access, Config, HttpMode};
use crate::error::{Fault, GatewayError};
use crate::health;
use crate::oauth::OAuth;
use crate::router::Router;
use crate::token_table::TokenTable;
use headers::ClientView;

/// Which listener a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Https,
    Http(HttpMode),
}

/// What is known about a connection before its first request.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub listener: Listener,
    /// The peer is one of `server.trusted_proxies`.
    pub trusted_peer: bool,
    /// This connection's slot under `server.max_connections`. An upgraded connection
    /// (WebSocket) keeps a clone, so it counts until the tunnel closes.
    pub slot: Arc<tokio::sync::OwnedSemaphorePermit>,
    /// The worker thread serving the connection ([`crate::workers`]).
    pub worker: usize,
}

/// Shared state of the request pipeline.
pub struct Gateway {
    config: Arc<Config>,
    router: Router,
    upstreams: forward::Upstreams,
    oauth: OAuth,
    tokens: Arc<TokenTable>,
    identity: identity::IdentityHeaders,
    counters: AuthCounters,
    draining: AtomicBool,
    redirect_port: Option<u16>,
}

/// Per-request facts gathered along the phases, for the log line.
struct RequestCtx {
    route: Option<usize>,
    upstream: Option<usize>,
    client_id: Option<String>,
    /// `public`, `allowed`, or why access was refused.
    auth: &'static str,
}

/// Counters of authentication decisions on proxied routes.
#[derive(Debug, Default)]
pub struct AuthCounters {
    pub public: std::sync::atomic::AtomicU64,
    pub allowed: std::sync::atomic::AtomicU64,
    pub missing_token: std::sync::atomic::AtomicU64,
    pub invalid_token: std::sync::atomic::AtomicU64,
    pub insufficient_scope: std::sync::atomic::AtomicU64,
    pub bad_token_request: std::sync::atomic::AtomicU64,
    pub store_unavailable: std::sync::atomic::AtomicU64,
}

impl AuthCounters {
    fn record(&self, decision: &str) {
        let c = match decision {
            "public" => &self.public,
            "allowed" => &self.allowed,
            "missing_token" => &self.missing_token,
            "invalid_token" => &self.invalid_token,
            "insufficient_scope" => &self.insufficient_scope,
            "bad_token_request" => &self.bad_token_request,
            "store_unavailable" => &self.store_unavailable,
            _ => return,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

impl Gateway {
    /// Builds the pipeline from a validated configuration. `https_port` is the port the
    /// HTTPS listener actually bound (it differs from the config's for port 0).
    pub fn new(
        config: Arc<Config>,
        https_port: Option<u16>,
        oauth: OAuth,
        tokens: Arc<TokenTable>,
    ) -> Result<Gateway, forward::UpstreamSetupError> {
        let upstreams = forward::Upstreams::new(&config.upstream, config.server.workers)?;
        let redirect_port = config.server.redirect_https_port.or(https_port);
        Ok(Gateway {
            router: Router::new(&config.routes),
            upstreams,
            oauth,
            tokens,
            identity: identity::IdentityHeaders::new(&config.auth.identity_header_prefix),
            counters: AuthCounters::default(),
            draining: AtomicBool::new(false),
            redirect_port,
            config,
        })
    }

    /// Authentication decisions so far.
    pub fn auth_counters(&self) -> &AuthCounters {
        &self.counters
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether `ip` is a trusted proxy.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.config
            .server
            .trusted_proxies
            .iter()
            .any(|net: &IpNet| net.contains(&ip))
    }

    /// Marks the gateway as shutting down: `/readyz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Handles one request, start to finish. Never fails: errors become responses.
    pub async fn handle(&self, req: Request<Incoming>, conn: &ConnInfo) -> Response<Body> {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let peer = conn.peer.ip().to_canonical();
        let client_ip = headers::client_ip(req.headers(), peer, conn.trusted_peer, |ip| {
            self.is_trusted(ip)
        });
        let secure = self.is_secure(&req, conn);
        let mut ctx = RequestCtx {
            route: None,
            upstream: None,
            client_id: None,
            auth: "",
        };

        let mut resp = match self.phases(req, conn, secure, client_ip, &mut ctx).await {
            Ok(resp) => resp,
            Err(err) => {
                match err.fault() {
                    Fault::Upstream => tracing::warn!(error = %err, %path, "upstream failure"),
                    Fault::Client => tracing::debug!(error = %err, %path, "request refused"),
                }
                if let Some(decision) = err.auth_decision() {
                    ctx.auth = decision;
                }
                err.into_response(&self.config.auth.realm)
            }
        };
        self.counters.record(ctx.auth);

        // finish: HSTS on every response that reached the client over HTTPS.
        if secure {
            resp.headers_mut()
                .insert(header::STRICT_TRANSPORT_SECURITY, self.config.hsts.clone());
        }
        let upstream = match (ctx.route, ctx.upstream) {
            (Some(r), Some(u)) => self.config.routes[r].upstreams[u].to_string(),
            _ => String::new(),
        };
        tracing::info!(
            target: "authgate::access",
            %method,
            %path,
            status = resp.status().as_u16(),
            latency_us = started.elapsed().as_micros() as u64,
            route = ctx.route.map(|r| r as i64).unwrap_or(-1),
            %upstream,
            client_id = ctx.client_id.as_deref().unwrap_or(""),
            auth = ctx.auth,
            client_ip = %client_ip,
            "request"
        );
        resp
    }

    async fn phases(
        &self,
        req: Request<Incoming>,
        conn: &ConnInfo,
        secure: bool,
        client_ip: IpAddr,
        ctx: &mut RequestCtx,
    ) -> Result<Response<Body>, GatewayError> {
        // limits
        let limit = self.config.server.max_header_bytes;
        let size = header_bytes(&req);
        if size > limit {
            return Err(GatewayError::HeadersTooLarge { size, limit });
        }

        // own endpoints
        let path = req.uri().path();
        if let Some(resp) = health::serve(req.method(), path, self.readiness()).await {
            return Ok(resp);
        }
        // A trusted TLS-terminating proxy already speaks HTTPS to the client: redirecting
        // it would loop.
        if conn.listener == Listener::Http(HttpMode::Redirect) && !secure {
            return self.redirect(&req);
        }
        // One canonical path for routing, scope checks and forwarding, so a path cannot
        // match a lenient route here and reach a stricter resource upstream.
        let mut req = req;
        if let Some(canonical) = canonical_path(req.uri().path())? {
            replace_path(&mut req, &canonical)?;
        }
        let path = req.uri().path();
        if let Some(endpoint) = self.oauth.endpoint(path) {
            // Credentials and tokens never travel in clear (RFC 6749 §2.3.1, §3.2).
            if !secure {
                return Err(GatewayError::BadRequest(
                    "OAuth endpoints are served over HTTPS only",
                ));
            }
            return Ok(self
                .oauth
                .handle(endpoint, req, client_ip, &mut ctx.client_id)
                .await);
        }

        // route
        let host = request_host(&req);
        let bare_host = host.map(strip_port).map(str::to_ascii_lowercase);
        let route = self
            .router
            .find(bare_host.as_deref(), req.uri().path())
            .ok_or(GatewayError::NoRoute)?;
        ctx.route = Some(route.index);

        // authenticate + authorize
        let rc = &route.config;
        let caller = match &rc.access {
            Access::Public => {
                ctx.auth = "public";
                None
            }
            access => {
                let accepted = rc
                    .token_headers
                    .as_deref()
                    .unwrap_or(&self.config.auth.token_headers);
                let auth = authenticate::authenticate(
                    &self.tokens,
                    req.headers(),
                    req.uri().query(),
                    accepted,
                    rc.allow_query_token,
                )
                .await?;
                ctx.client_id = Some(auth.token.client_id.clone());
                let authorized = authorize::authorize(access, req.method(), auth)?;
                ctx.auth = "allowed";
                Some(authorized)
            }
        };

        // forward
        let host_owned = host.map(str::to_owned);
        let client = ClientView {
            peer: conn.peer.ip().to_canonical(),
            trusted_peer: conn.trusted_peer,
            proto: if secure { "https" } else { "http" },
            host: host_owned.as_deref(),
        };
        self.identity
            .apply(req.headers_mut(), caller.as_ref(), rc.pass_token);
        if rc.allow_query_token && !rc.pass_token {
            strip_query_token(&mut req);
        }
        self.upstreams
            .forward(route, req, &client, conn, &mut ctx.upstream)
            .await
    }

    /// Ready: not draining, and the store answers within a second.
    async fn readiness(&self) -> health::Readiness {
        if self.draining.load(Ordering::Acquire) {
            return health::Readiness::Draining;
        }
        let ping = self.oauth.store().ping();
        match tokio::time::timeout(std::time::Duration::from_secs(1), ping).await {
            Ok(Ok(())) => health::Readiness::Ready,
            _ => health::Readiness::StoreUnavailable,
        }
    }

    /// HTTPS if the connection is TLS, or a trusted proxy says the client used HTTPS.
    fn is_secure(&self, req: &Request<Incoming>, conn: &ConnInfo) -> bool {
        match conn.listener {
            Listener::Https => true,
            Listener::Http(_) => {
                conn.trusted_peer
                    && req
                        .headers()
                        .get(&headers::X_FORWARDED_PROTO)
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
            }
        }
    }

    /// 308 to the same host, path and query over HTTPS.
    fn redirect(&self, req: &Request<Incoming>) -> Result<Response<Body>, GatewayError> {
        let host = request_host(req)
            .map(strip_port)
            .filter(|h| !h.is_empty())
            .ok_or(GatewayError::BadRequest("a Host header is required"))?;
        let port = match self.redirect_port {
            Some(443) | None => String::new(),
            Some(p) => format!(":{p}"),
        };
        let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let location = format!("https://{host}{port}{pq}");
        let location = HeaderValue::from_str(&location)
            .map_err(|_| GatewayError::BadRequest("the Host header is not valid"))?;
        let mut resp = Response::new(body::empty());
        *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
        resp.headers_mut().insert(header::LOCATION, location);
        Ok(resp)
    }
}

/// The host the client asked for: `:authority` (HTTP/2) or `Host`.
fn request_host<B>(req: &Request<B>) -> Option<&str> {
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(header::HOST)?.to_str().ok())
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// The canonical form of `path`, if it differs: percent-encoded unreserved characters
/// decoded (`%6Frders` → `orders`), other escapes upper-cased. Refused: `.`/`..`
/// segments, empty segments (`//`), `;` parameters, and encoded `/`, `\` or NUL — all
/// ways for one path to name another resource once an upstream normalizes it.
fn canonical_path(path: &str) -> Result<Option<String>, GatewayError> {
    let bad = |why: &'static str| Err(GatewayError::BadRequest(why));
    if path.contains(';') {
        return bad("the path has ; parameters");
    }
    if path.contains("//") {
        return bad("the path has empty segments (//)");
    }
    if has_dot_segment(path) {
        return bad("the path has . or .. segments; send the normalized path");
    }
    if !path.contains('%') {
        return Ok(None);
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i] as char);
            i += 1;
            continue;
        }
        let hex = path
            .get(i + 1..i + 3)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        let Some(hex) = hex else {
            return bad("the path has a malformed percent-escape");
        };
        let byte =
            u8::from_str_radix(hex, 16).map_err(|_| GatewayError::BadRequest("bad escape"))?;
        match byte {
            b'/' | b'\\' | 0 => return bad("the path has an encoded /, \\ or NUL"),
            b if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => out.push(b as char),
            _ => {
                out.push('%');
                out.push_str(&hex.to_ascii_uppercase());
            }
        }
        i += 3;
    }
    if has_dot_segment(&out) || out.contains("//") {
        return bad("the path has . or .. segments; send the normalized path");
    }
    Ok((out != path).then_some(out))
}

/// Removes `access_token=` from the query: the token authenticated this request and must
/// not reach upstream logs.
fn strip_query_token<B>(req: &mut Request<B>) {
    let Some(q) = req.uri().query().filter(|q| q.contains("access_token=")) else {
        return;
    };
    let kept: Vec<&str> = q
        .split('&')
        .filter(|p| !p.starts_with("access_token="))
        .collect();
    let path = req.uri().path();
    let pq = if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = pq.parse().ok();
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

/// Sets the request's path, keeping its query.
fn replace_path<B>(req: &mut Request<B>, path: &str) -> Result<(), GatewayError> {
    let pq = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(
        pq.parse()
            .map_err(|_| GatewayError::BadRequest("the path cannot be normalized"))?,
    );
    *req.uri_mut() = http::Uri::from_parts(parts)
        .map_err(|_| GatewayError::BadRequest("the path cannot be normalized"))?;
    Ok(())
}

/// Whether `path` has a `.` or `..` segment, raw or percent-encoded (`%2e`). Such paths
/// could match one route here and reach another resource upstream once normalized.
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|seg| {
        if seg.is_empty() || seg.len() > 6 {
            return false;
        }
        let lower = seg.to_ascii_lowercase();
        let decoded = lower.replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

/// Size of the request head as sent: request line plus `name: value\r\n` per field.
fn header_bytes<B>(req: &Request<B>) -> usize {
    let line = req.method().as_str().len()
        + req.uri().path_and_query().map_or(1, |pq| pq.as_str().len())
        + 11;
    req.headers()
        .iter()
        .fold(line, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_found_raw_and_encoded() {
        for p in [
            "/api/../admin",
            "/a/./b",
            "/..",
            "/api/%2e%2E/x",
            "/x/.%2e",
            "/a/%2E",
        ] {
            assert!(has_dot_segment(p), "{p}");
        }
        for p in [
            "/",
            "/a/b",
            "/a/...",
            "/a/.well-known/x",
            "/v1.2/x",
            "/a/%2e%2e%2e",
        ] {
            assert!(!has_dot_segment(p), "{p}");
        }
    }

    #[test]
    fn paths_are_canonical_or_refused() {
        assert_eq!(canonical_path("/v1/location/orders").unwrap(), None);
        assert_eq!(
            canonical_path("/v1/location/%6Frders").unwrap().as_deref(),
            Some("/v1/location/orders")
        );
        assert_eq!(
            canonical_path("/a%20b/%c3%a9").unwrap().as_deref(),
            Some("/a%20b/%C3%A9")
        );
        assert_eq!(canonical_path("/a%20b").unwrap(), None);
        for bad in [
            "//v1/location",
            "/v1/location//orders",
            "/v1/location/x%2F..%2Forders",
            "/links;x",
            "/a/%2e%2e/b",
            "/a/%5c",
            "/a/%00",
            "/a/%zz",
            "/a/%2",
            "/a/%2E%2E",
        ] {
            assert!(canonical_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("a.example:8443"), "a.example");
        assert_eq!(strip_port("a.example"), "a.example");
        assert_eq!(strip_port("[::1]:8443"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }
}
