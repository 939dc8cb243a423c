//! The request pipeline. [`Gateway::handle`] runs the phases in order:
//!
//! ```text
//! request id ─▶ limits, Host ─▶ own endpoints (/healthz, /readyz, /metrics, forward-auth)
//!        ─▶ redirect (plain HTTP, redirect mode)
//!        ─▶ OAuth endpoints (rate limit per address; token, revoke, introspect, …)
//!        ─▶ route ─▶ clean the head (hop-by-hop, `_` names, method overrides)
//!        ─▶ authenticate ─▶ rate limit ─▶ authorize (public routes: no token)
//!        ─▶ forward (with identity headers) ─▶ finish (HSTS, metrics, access log)
//! ```
//!
//! Phases return `Result<_, GatewayError>`; failures become responses in one place
//! ([`crate::error`]), and `finish` runs for every response, errors included. Each
//! request runs on one [`Snapshot`] of the configuration, swapped whole by a reload.

pub mod authenticate;
pub mod authorize;
pub mod forward;
pub mod forward_auth;
pub mod headers;
pub mod host;
pub mod identity;
pub mod method_override;
pub mod path;
pub mod upgrade;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::body::Incoming;
use arc_swap::ArcSwap;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use ipnet::IpNet;
use tracing::Instrument;

use crate::body::{self, Body};
use crate::config::{Access, Config, HttpMode};
use crate::error::{Fault, GatewayError};
use crate::health;
use crate::metrics::{self, GatewayMetrics, Metrics, RequestLabels};
use crate::oauth::OAuth;
use crate::ratelimit::Limiters;
use crate::request_id;
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
    pub slot: Arc<ConnSlot>,
    /// The worker thread serving the connection ([`crate::workers`]).
    pub worker: usize,
}

/// A connection's hold on `server.max_connections` and on `authgate_open_connections`,
/// released when the connection, or the tunnel it became, closes.
#[derive(Debug)]
pub struct ConnSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    /// Its place under `server.max_connections_per_ip` (none for trusted proxies).
    _per_ip: Option<crate::conn_limit::Hold>,
    open: prometheus_client::metrics::gauge::Gauge,
}

impl ConnSlot {
    /// Holds `permit` (and `per_ip`) and counts the connection in `metrics`.
    pub fn new(
        permit: tokio::sync::OwnedSemaphorePermit,
        per_ip: Option<crate::conn_limit::Hold>,
        metrics: &GatewayMetrics,
    ) -> ConnSlot {
        metrics.open_connections.inc();
        ConnSlot {
            _permit: permit,
            _per_ip: per_ip,
            open: metrics.open_connections.clone(),
        }
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// Everything one configuration builds. A reload builds a new one and swaps it in
/// whole: a request runs start to finish on the snapshot it started with.
pub struct Snapshot {
    pub config: Arc<Config>,
    router: Router,
    upstreams: forward::Upstreams,
    oauth: OAuth,
    identity: identity::IdentityHeaders,
    redirect_port: Option<u16>,
    limits: Arc<Limiters>,
    /// Metric labels, by route index.
    route_labels: Vec<Arc<str>>,
}

impl Snapshot {
    fn build(
        config: Arc<Config>,
        https_port: Option<u16>,
        oauth: OAuth,
        limits: Arc<Limiters>,
    ) -> Result<Snapshot, forward::UpstreamSetupError> {
        Ok(Snapshot {
            router: Router::new(&config.routes),
            upstreams: forward::Upstreams::new(&config.upstream, config.server.workers)?,
            oauth,
            identity: identity::IdentityHeaders::new(&config.auth.identity_header_prefix),
            redirect_port: config.server.redirect_https_port.or(https_port),
            limits,
            route_labels: config
                .routes
                .iter()
                .map(|r| Arc::from(r.name.as_str()))
                .collect(),
            config,
        })
    }

    /// Whether `ip` is a trusted proxy.
    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.config
            .server
            .trusted_proxies
            .iter()
            .any(|net: &IpNet| net.contains(&ip))
    }
}

/// Labels of what authgate answers itself.
struct OwnLabels {
    oauth: Arc<str>,
    health: Arc<str>,
    metrics: Arc<str>,
    redirect: Arc<str>,
    none: Arc<str>,
}

/// Shared state of the request pipeline.
pub struct Gateway {
    current: ArcSwap<Snapshot>,
    tokens: Arc<TokenTable>,
    metrics: GatewayMetrics,
    /// Every metric of this server, for `/metrics`.
    registry: prometheus_client::registry::Registry,
    labels: OwnLabels,
    draining: AtomicBool,
    https_port: Option<u16>,
}

/// Per-request facts gathered along the phases, for the log line and the metrics.
struct RequestCtx {
    route: Option<usize>,
    upstream: Option<usize>,
    /// The client an OAuth endpoint authenticated.
    client_id: Option<String>,
    /// The grant of the request's access token (shared, so no copy of its client id).
    grant: Option<Arc<crate::token_table::Grant>>,
    /// `public`, `allowed`, or why access was refused.
    auth: &'static str,
    /// What answered, when not a route.
    own: Option<Arc<str>>,
    /// A 429 already counted.
    rate_limited: bool,
    /// When the request went to the upstream (for the latency histogram).
    sent: Option<Instant>,
}

impl RequestCtx {
    /// The client the request acted for, if it was authenticated.
    fn client_id(&self) -> Option<&str> {
        match &self.grant {
            Some(g) => Some(&g.client_id),
            None => self.client_id.as_deref(),
        }
    }
}

impl Gateway {
    /// Builds the pipeline from a validated configuration. `https_port` is the port the
    /// HTTPS listener actually bound (it differs from the config's for port 0).
    /// `metrics` holds the handles of every part (cache, store, OAuth) to serve them.
    pub fn new(
        config: Arc<Config>,
        https_port: Option<u16>,
        oauth: OAuth,
        tokens: Arc<TokenTable>,
        metrics: Metrics,
    ) -> Result<Gateway, forward::UpstreamSetupError> {
        let limits = oauth.limits().clone();
        let snapshot = Snapshot::build(config, https_port, oauth, limits)?;
        let label = |s: &str| Arc::<str>::from(s);
        Ok(Gateway {
            current: ArcSwap::from_pointee(snapshot),
            tokens,
            registry: metrics.registry(),
            metrics: metrics.gateway,
            labels: OwnLabels {
                oauth: label("oauth"),
                health: label("health"),
                metrics: label("metrics"),
                redirect: label("redirect"),
                none: label("none"),
            },
            draining: AtomicBool::new(false),
            https_port,
        })
    }

    /// Builds everything `config` needs (routes, upstream pools, clients, users,
    /// accounts, scope rules, HSTS, OAuth endpoints, rate limits) without putting it in
    /// force: see [`Gateway::install`]. Rate-limit buckets carry over when the limits
    /// did not change.
    pub fn prepare(&self, config: Config) -> Result<Snapshot, forward::UpstreamSetupError> {
        let old = self.current.load();
        let same_limits = old.config.rate_limits == config.rate_limits
            && old
                .config
                .routes
                .iter()
                .map(|r| (&r.name, r.rate_limit))
                .eq(config.routes.iter().map(|r| (&r.name, r.rate_limit)));
        let limits = if same_limits {
            old.limits.clone()
        } else {
            Arc::new(Limiters::new(&config))
        };
        let oauth = old.oauth.reconfigured(&config, limits.clone());
        Snapshot::build(Arc::new(config), self.https_port, oauth, limits)
    }

    /// Puts a prepared snapshot in force: the next request uses it; requests in flight
    /// finish on the one they started with.
    pub fn install(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.current.load().config.clone()
    }

    /// The listeners' metrics (connections, TLS handshakes).
    pub fn metrics(&self) -> &GatewayMetrics {
        &self.metrics
    }

    /// Whether `ip` is a trusted proxy (under the configuration in force).
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.current.load().is_trusted(ip)
    }

    /// Marks the gateway as shutting down: `/readyz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Forgets rate-limit buckets that have refilled (called periodically).
    pub fn purge_rate_limits(&self) {
        self.current.load().limits.purge();
    }

    /// Handles one request, start to finish. Never fails: errors become responses.
    /// Every log line of the request carries its id (the `request` span), and so do
    /// the upstream request, the response and JSON error bodies.
    pub async fn handle(&self, mut req: Request<Incoming>, conn: &ConnInfo) -> Response<Body> {
        let id = request_id::accept_or_generate(req.headers());
        req.headers_mut().insert(&request_id::HEADER, id.clone());
        let span = tracing::info_span!("request", request_id = id.to_str().unwrap_or_default());
        // Boxed once: the wrappers below then move a pointer, not the whole (large)
        // state machine of the phases.
        let inner = Box::pin(self.handle_in_span(req, conn));
        let mut resp = request_id::scope(id.clone(), inner).instrument(span).await;
        resp.headers_mut().insert(&request_id::HEADER, id);
        resp
    }

    async fn handle_in_span(&self, req: Request<Incoming>, conn: &ConnInfo) -> Response<Body> {
        let started = Instant::now();
        let snap = self.current.load_full();
        let method = req.method().clone();
        let version = req.version();
        // A clone shares the request's bytes: no allocation.
        let uri = req.uri().clone();
        let path = uri.path();
        let peer = conn.peer.ip().to_canonical();
        // Trust follows the configuration in force, also on connections opened before a
        // reload changed `trusted_proxies`.
        let updated;
        let conn = match snap.is_trusted(peer) {
            t if t == conn.trusted_peer => conn,
            t => {
                updated = ConnInfo {
                    trusted_peer: t,
                    ..conn.clone()
                };
                &updated
            }
        };
        let client_ip = headers::client_ip(
            req.headers(),
            peer,
            conn.trusted_peer,
            snap.config.server.client_ip_header,
            |ip| snap.is_trusted(ip),
        );
        let secure = self.is_secure(&req, conn);
        let mut ctx = RequestCtx {
            route: None,
            upstream: None,
            client_id: None,
            grant: None,
            auth: "",
            own: None,
            rate_limited: false,
            sent: None,
        };

        let mut resp = match self
            .phases(&snap, req, conn, secure, client_ip, &mut ctx)
            .await
        {
            Ok(resp) => resp,
            Err(err) => {
                match err.fault() {
                    Fault::Upstream => tracing::warn!(error = %err, %path, "upstream failure"),
                    Fault::Client => tracing::debug!(error = %err, %path, "request refused"),
                }
                if let Some(decision) = err.auth_decision() {
                    ctx.auth = decision;
                }
                if let GatewayError::RateLimited { limit, .. } = &err {
                    self.count_rate_limited(limit);
                    ctx.rate_limited = true;
                }
                let close = err.closes_connection() && version <= http::Version::HTTP_11;
                let mut resp = err.into_response(&snap.config.auth.realm);
                if close {
                    resp.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                resp
            }
        };
        let status = resp.status().as_u16();
        if status == 429 && !ctx.rate_limited && ctx.own.as_ref() == Some(&self.labels.oauth) {
            self.count_rate_limited("oauth");
        }

        // finish: HSTS on every response that reached the client over HTTPS.
        if secure {
            resp.headers_mut()
                .insert(header::STRICT_TRANSPORT_SECURITY, snap.config.hsts.clone());
        }
        // One clock read for the access line and the upstream's latency.
        let done = Instant::now();
        if let (Some(sent), Some(r), Some(_)) = (ctx.sent, ctx.route, ctx.upstream) {
            self.metrics
                .upstream_latency
                .get_or_create(&metrics::RouteLabel {
                    route: snap.route_labels[r].clone(),
                })
                .observe(done.saturating_duration_since(sent).as_secs_f64());
        }
        let label = match (ctx.route, &ctx.own) {
            (Some(r), _) => snap.route_labels[r].clone(),
            (None, Some(own)) => own.clone(),
            (None, None) => self.labels.none.clone(),
        };
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                route: label,
                status: metrics::status_class(status),
                auth: ctx.auth,
            })
            .inc();
        let upstream: &dyn std::fmt::Display = match (ctx.route, ctx.upstream) {
            (Some(r), Some(u)) => &snap.config.routes[r].upstreams[u],
            _ => &"",
        };
        tracing::info!(
            target: "authgate::access",
            %method,
            %path,
            status,
            latency_us = done.saturating_duration_since(started).as_micros() as u64,
            route = ctx.route.map(|r| r as i64).unwrap_or(-1),
            %upstream,
            client_id = ctx.client_id().unwrap_or(""),
            auth = ctx.auth,
            client_ip = %client_ip,
            "request"
        );
        resp
    }

    fn count_rate_limited(&self, limit: &'static str) {
        self.metrics
            .rate_limited
            .get_or_create(&metrics::KindLabel { kind: limit })
            .inc();
    }

    async fn phases(
        &self,
        snap: &Snapshot,
        req: Request<Incoming>,
        conn: &ConnInfo,
        secure: bool,
        client_ip: IpAddr,
        ctx: &mut RequestCtx,
    ) -> Result<Response<Body>, GatewayError> {
        // limits
        let limit = snap.config.server.max_header_bytes;
        let size = header_bytes(&req);
        if size > limit {
            return Err(GatewayError::HeadersTooLarge { size, limit });
        }
        // own endpoints: health first, so probes that send no Host still work
        let path = req.uri().path();
        if let Some(resp) = health::serve(req.method(), path, self.readiness(snap)).await {
            ctx.own = Some(self.labels.health.clone());
            return Ok(resp);
        }
        // One valid Host (or `:authority`) before anything reads it (RFC 9112 §3.2).
        host::request_host(req.uri(), req.headers(), req.version())?;
        // A gateway is no forward proxy: CONNECT would ask an upstream for a tunnel, and
        // TRACE echoes the request (credentials included) back to a script.
        if req.method() == Method::CONNECT || req.method() == Method::TRACE {
            return Err(GatewayError::MethodNotAllowed);
        }
        // Metrics on the main listeners, to `metrics.allow` only; for anyone else the
        // path is routed like any other.
        let m = &snap.config.metrics;
        if m.enabled
            && m.listen.is_none()
            && path == m.path
            && m.allow.iter().any(|net| net.contains(&client_ip))
        {
            ctx.own = Some(self.labels.metrics.clone());
            return Ok(self.serve_metrics(req.method()).await);
        }
        if snap.config.forward_auth.path.as_deref() == Some(path) {
            return forward_auth::verify(self, snap, &req, client_ip, ctx).await;
        }
        // A trusted TLS-terminating proxy already speaks HTTPS to the client: redirecting
        // it would loop.
        if conn.listener == Listener::Http(HttpMode::Redirect) && !secure {
            ctx.own = Some(self.labels.redirect.clone());
            return redirect(snap, &req);
        }
        // One canonical path for routing, scope checks and forwarding, so a path cannot
        // match a lenient route here and reach a stricter resource upstream.
        let mut req = req;
        if let Some(canonical) = path::canonical_path(req.uri().path())? {
            replace_path(&mut req, &canonical)?;
        }
        let path = req.uri().path();
        if let Some(endpoint) = snap.oauth.endpoint(path) {
            ctx.own = Some(self.labels.oauth.clone());
            // Credentials and tokens never travel in clear (RFC 6749 §2.3.1, §3.2).
            if !secure {
                return Err(GatewayError::BadRequest(
                    "OAuth endpoints are served over HTTPS only",
                ));
            }
            if endpoint != crate::oauth::Endpoint::Metadata {
                snap.limits
                    .oauth_ip(client_ip)
                    .map_err(|wait| GatewayError::RateLimited {
                        limit: "oauth_per_ip",
                        wait,
                    })?;
            }
            return Ok(snap
                .oauth
                .handle(endpoint, req, client_ip, &mut ctx.client_id)
                .await);
        }

        // route
        let host_owned = request_host(&req).map(str::to_owned);
        let bare_host = host_owned.as_deref().map(route_host);
        let route = snap
            .router
            .find(bare_host.as_deref(), req.uri().path())
            .ok_or(GatewayError::NoRoute)?;
        ctx.route = Some(route.index);
        let rc = &route.config;

        // clean the head: what the client may not say to the upstream goes before
        // authgate adds its own headers, so no client field can remove those.
        let upgrade = headers::is_upgrade(req.method(), req.headers(), req.version());
        headers::strip_hop_by_hop(req.headers_mut(), upgrade);
        let all = !snap.config.server.underscores_in_headers;
        let dropped = headers::drop_underscored(req.headers_mut(), all);
        if dropped > 0 {
            tracing::debug!(dropped, "header names with _ dropped");
        }
        // Request trailers would arrive after every check here: none go upstream
        // (`body::Limited` drops the frames), so neither does their announcement.
        req.headers_mut().remove(header::TRAILER);
        // A `Uri` clone shares the request's bytes.
        let uri = req.uri().clone();
        let overridden =
            method_override::apply(req.headers_mut(), uri.query(), rc.method_override)?;

        // authenticate + authorize
        let caller = decide(
            &self.tokens,
            snap,
            route.index,
            req.method(),
            req.headers(),
            req.uri().query(),
            client_ip,
            ctx,
        )
        .await?;
        if let (Some(method), Some(caller)) = (&overridden, &caller) {
            authorize::check(&rc.access, method, &caller.token)?;
        }
        // A WebSocket tunnel lives while the token that opened it does.
        let tunnel = upgrade.then(|| upgrade::TunnelLimits {
            idle_timeout: snap.config.server.websocket_idle_timeout,
            token: caller.as_ref().and_then(|_| {
                let accepted = rc
                    .token_headers
                    .as_deref()
                    .unwrap_or(&snap.config.auth.token_headers);
                let query = req.uri().query();
                authenticate::extract(req.headers(), query, accepted, rc.allow_query_token)
                    .ok()
                    .map(|v| {
                        (
                            self.tokens.clone(),
                            crate::secret::Secret::new(v.to_owned()),
                        )
                    })
            }),
        });

        // forward
        let client = ClientView {
            peer: conn.peer.ip().to_canonical(),
            trusted_peer: conn.trusted_peer,
            proto: if secure { "https" } else { "http" },
            host: host_owned.as_deref(),
        };
        snap.identity
            .apply(req.headers_mut(), caller.as_ref(), rc.pass_token);
        if rc.allow_query_token && !rc.pass_token {
            strip_query_token(&mut req);
        }
        ctx.sent = Some(Instant::now());
        snap.upstreams
            .forward(route, req, &client, conn, &mut ctx.upstream, tunnel)
            .await
    }

    /// `GET /metrics`.
    async fn serve_metrics(&self, method: &Method) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            let mut resp = crate::error::json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "use GET or HEAD",
            );
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        self.tokens.refresh_gauges().await;
        let mut resp = Response::new(body::full(Metrics::render(&self.registry)));
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(metrics::CONTENT_TYPE),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }

    /// The separate metrics listener (`metrics.listen`): metrics, `/healthz` and
    /// `/readyz`; 404 for anything else.
    pub async fn handle_ops<B>(&self, req: Request<B>) -> Response<Body> {
        let snap = self.current.load_full();
        let path = req.uri().path();
        if let Some(resp) = health::serve(req.method(), path, self.readiness(&snap)).await {
            return resp;
        }
        if snap.config.metrics.enabled && path == snap.config.metrics.path {
            return self.serve_metrics(req.method()).await;
        }
        GatewayError::NoRoute.into_response(&snap.config.auth.realm)
    }

    /// Ready: not draining, and the store answers within a second.
    async fn readiness(&self, snap: &Snapshot) -> health::Readiness {
        if self.draining.load(Ordering::Acquire) {
            return health::Readiness::Draining;
        }
        let ping = snap.oauth.store().ping();
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
}

/// The authenticate and authorize phases (and the route's rate limit) for route
/// `index`: the caller, or `None` on a public route. Shared with forward-auth.
#[allow(clippy::too_many_arguments)]
async fn decide(
    tokens: &TokenTable,
    snap: &Snapshot,
    index: usize,
    method: &Method,
    headers: &http::HeaderMap,
    query: Option<&str>,
    client_ip: IpAddr,
    ctx: &mut RequestCtx,
) -> Result<Option<authorize::Authorized>, GatewayError> {
    let rc = &snap.config.routes[index];
    let limited = |wait| GatewayError::RateLimited {
        limit: "route",
        wait,
    };
    match &rc.access {
        Access::Public => {
            ctx.auth = "public";
            snap.limits.route(index, None, client_ip).map_err(limited)?;
            Ok(None)
        }
        access => {
            let accepted = rc
                .token_headers
                .as_deref()
                .unwrap_or(&snap.config.auth.token_headers);
            let auth =
                authenticate::authenticate(tokens, headers, query, accepted, rc.allow_query_token)
                    .await?;
            let grant = ctx.grant.insert(auth.token.grant.clone());
            snap.limits
                .route(index, Some(&grant.client_id), client_ip)
                .map_err(limited)?;
            let authorized = authorize::authorize(access, method, auth)?;
            ctx.auth = "allowed";
            Ok(Some(authorized))
        }
    }
}

/// 308 to the same host, path and query over HTTPS.
fn redirect(snap: &Snapshot, req: &Request<Incoming>) -> Result<Response<Body>, GatewayError> {
    let host = request_host(req)
        .map(strip_port)
        .filter(|h| !h.is_empty())
        .ok_or(GatewayError::BadRequest("a Host header is required"))?;
    let port = match snap.redirect_port {
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

/// The host the client asked for: `:authority` (HTTP/2, absolute form) or `Host`,
/// as checked by [`host::request_host`] at the start of the phases.
fn request_host<B>(req: &Request<B>) -> Option<&str> {
    host::request_host(req.uri(), req.headers(), req.version())
        .ok()
        .flatten()
}

/// The host routes match on: lower case, without port, without the trailing dot of a
/// fully qualified name (`API.example.:8443` → `api.example`), so `admin.example.`
/// cannot slip past a route bound to `admin.example`.
pub(crate) fn route_host(host: &str) -> String {
    let bare = strip_port(host);
    let bare = bare.strip_suffix('.').unwrap_or(bare);
    bare.to_ascii_lowercase()
}

pub(crate) fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
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
    fn ports_are_stripped() {
        assert_eq!(strip_port("a.example:8443"), "a.example");
        assert_eq!(strip_port("a.example"), "a.example");
        assert_eq!(strip_port("[::1]:8443"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }
}
