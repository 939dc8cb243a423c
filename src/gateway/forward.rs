//! Forward phase: send the request to one of the route's upstreams over a pooled,
//! kept-alive connection, stream both bodies, and map failures (refused → next upstream
//! or 502, slow → 504, body over the limit → 413, a malformed or cut-off request body
//! → 400).

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming as UpstreamBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::headers::{self, ClientView};
use super::upgrade;
use super::ConnInfo;
use crate::body::{self, Body, BodyWatch, Deferred, Limited};
use crate::config::{UpstreamConfig, UpstreamTarget};
use crate::error::GatewayError;
use crate::router::{self, Route};

type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

/// Why the upstream clients could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamSetupError {
    #[error("upstream.ca_file {path:?}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("upstream TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
}

/// The pooled clients used to reach upstreams: one set per connection worker, so that a
/// request and the upstream connection it uses run on the same thread
/// ([`crate::workers`]).
pub struct Upstreams {
    clients: Vec<Clients>,
    retry_after_failure_ms: u64,
}

/// One worker's clients.
struct Clients {
    /// HTTP/1.1 to `http://`, ALPN-negotiated (h2 or http/1.1) to `https://`.
    default: HttpClient,
    /// HTTP/2 only: prior knowledge (h2c) to `http://`, ALPN h2 to `https://`.
    http2: HttpClient,
}

impl Upstreams {
    /// Builds the clients of `workers` workers: system roots plus `ca_file` for
    /// `https://` upstreams.
    pub fn new(cfg: &UpstreamConfig, workers: usize) -> Result<Upstreams, UpstreamSetupError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(path) = &cfg.ca_file {
            use rustls_pki_types::pem::PemObject;
            let bad = |reason: String| UpstreamSetupError::CaFile {
                path: path.display().to_string(),
                reason,
            };
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no CERTIFICATE block found".into()));
            }
            for c in certs {
                roots.add(c).map_err(|e| bad(e.to_string()))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();

        let connector = |h2_only: bool| {
            let mut http = HttpConnector::new();
            http.enforce_http(false);
            http.set_nodelay(true);
            http.set_connect_timeout(Some(cfg.connect_timeout));
            let builder = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls.clone())
                .https_or_http();
            if h2_only {
                builder.enable_http2().wrap_connector(http)
            } else {
                builder.enable_http1().enable_http2().wrap_connector(http)
            }
        };
        let client = |h2_only: bool| {
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(cfg.pool_idle_timeout)
                .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .http2_only(h2_only)
                .build(connector(h2_only))
        };
        Ok(Upstreams {
            clients: (0..workers.max(1))
                .map(|_| Clients {
                    default: client(false),
                    http2: client(true),
                })
                .collect(),
            retry_after_failure_ms: cfg.retry_after_failure.as_millis() as u64,
        })
    }

    /// Forwards `req` along `route` with the pool of `worker`; returns the upstream's
    /// response and which upstream answered (for the log line).
    pub async fn forward(
        &self,
        route: &Route,
        mut req: Request<body::Incoming>,
        client: &ClientView<'_>,
        conn: &ConnInfo,
        upstream_used: &mut Option<usize>,
        tunnel: Option<upgrade::TunnelLimits>,
    ) -> Result<Response<Body>, GatewayError> {
        let conn_slot = &conn.slot;
        let clients = &self.clients[conn.worker % self.clients.len()];
        let cfg = &route.config;
        let limit = cfg.max_body_bytes;
        if let Some(len) = content_length(req.headers()) {
            if len > limit {
                return Err(GatewayError::BodyTooLarge { limit });
            }
        }

        // The head was cleaned of hop-by-hop fields before identity headers were added
        // (see `gateway::phases`); an upgrade kept `Connection: upgrade` + `Upgrade`.
        let upgrade = headers::is_upgrade(req.method(), req.headers(), req.version());
        let ws_key = upgrade
            .then(|| req.headers().get(&headers::SEC_WEBSOCKET_KEY).cloned())
            .flatten();
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let mut tunnel = tunnel;
        let (parts, incoming) = req.into_parts();
        let mut head = parts.headers;
        headers::set_forwarded(&mut head, client);
        headers::add_via(&mut head, parts.version);

        let path = if cfg.strip_prefix {
            router::strip_prefix(&cfg.path, parts.uri.path())
        } else {
            parts.uri.path()
        };
        let query = parts.uri.query();

        let watch = Arc::new(BodyWatch::default());
        let mut body: Body = Limited::new(incoming, limit, watch.clone()).boxed_unsync();
        let (http, version) = if cfg.upstream_http2 {
            (&clients.http2, Version::HTTP_2)
        } else {
            (&clients.default, Version::HTTP_11)
        };

        let mut last_err = None;
        let several = cfg.upstreams.len() > 1;
        for i in route.balancer.order() {
            let target = route.upstream(i);
            *upstream_used = Some(i);
            let uri = upstream_uri(target, path, query)?;
            let mut out_headers = if several {
                head.clone()
            } else {
                std::mem::take(&mut head)
            };
            // HTTP/2 clients send `:authority` rather than `Host`, so the host to preserve
            // is the one the client asked for, whichever way it came.
            let host = match (cfg.preserve_host, client.host) {
                (true, Some(h)) => h,
                _ => target.authority.as_str(),
            };
            out_headers.insert(
                header::HOST,
                HeaderValue::from_str(host)
                    .map_err(|_| GatewayError::BadRequest("the Host header is not valid"))?,
            );
            let (deferred, slot) = Deferred::new(body);
            let mut out = Request::new(deferred.boxed_unsync());
            *out.method_mut() = parts.method.clone();
            *out.uri_mut() = uri;
            *out.version_mut() = version;
            *out.headers_mut() = out_headers;

            match tokio::time::timeout(cfg.timeout, http.request(out)).await {
                Err(_) => {
                    return Err(GatewayError::UpstreamTimeout {
                        upstream: target.to_string(),
                        after: cfg.timeout,
                    })
                }
                Ok(Ok(resp)) => {
                    let upgrade = match (client_upgrade, &ws_key, tunnel.take()) {
                        (Some(client_side), Some(key), Some(limits)) => {
                            Some((client_side, key, limits))
                        }
                        _ => None,
                    };
                    return self.respond(resp, upgrade, parts.version, conn_slot, target);
                }
                Ok(Err(e)) => {
                    if watch.too_large() {
                        return Err(GatewayError::BodyTooLarge { limit });
                    }
                    if body::is_too_slow(&e) {
                        tracing::info!(upstream = %target, "request body too slow; upstream request aborted");
                        return Err(GatewayError::BodyTimeout);
                    }
                    // The client's body failed mid-way (bad chunked framing, cut off):
                    // its fault, and the upstream saw an aborted request, never a
                    // complete one (hyper ends the upstream connection or stream).
                    if watch.client_failed() {
                        tracing::info!(upstream = %target, reason = %error_chain(&e), "request body failed; upstream request aborted");
                        return Err(GatewayError::BadRequest(
                            "the request body is malformed or was cut off",
                        ));
                    }
                    let reason = error_chain(&e);
                    if e.is_connect() {
                        route.balancer.mark_down(i, self.retry_after_failure_ms);
                        tracing::warn!(upstream = %target, %reason, "upstream connection failed");
                        last_err = Some(GatewayError::UpstreamUnreachable {
                            upstream: target.to_string(),
                            reason,
                        });
                        // Unread body: try the next upstream with it.
                        match body::reclaim(&slot) {
                            Some(b) => {
                                body = b;
                                continue;
                            }
                            None => break,
                        }
                    }
                    return Err(GatewayError::UpstreamFailed {
                        upstream: target.to_string(),
                        reason,
                    });
                }
            }
        }
        Err(last_err.unwrap_or(GatewayError::NoRoute))
    }

    /// The upstream's response for the client. A 101 becomes a tunnel only when it
    /// answers the client's WebSocket handshake; any other 101 is the upstream's failure
    /// (502), never a raw connection past the gateway.
    fn respond(
        &self,
        mut resp: Response<UpstreamBody>,
        upgrade: Option<(
            hyper::upgrade::OnUpgrade,
            &HeaderValue,
            upgrade::TunnelLimits,
        )>,
        client_version: Version,
        conn_slot: &Arc<super::ConnSlot>,
        target: &UpstreamTarget,
    ) -> Result<Response<Body>, GatewayError> {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some((client_side, _, limits)) = upgrade
                .filter(|(_, key, _)| headers::accepts_websocket(resp.headers(), key.as_bytes()))
            else {
                return Err(GatewayError::UpstreamFailed {
                    upstream: target.to_string(),
                    reason: "101 Switching Protocols that does not answer the client's WebSocket handshake".into(),
                });
            };
            let upstream_side = hyper::upgrade::on(&mut resp);
            upgrade::tunnel(client_side, upstream_side, conn_slot.clone(), limits);
            headers::strip_hop_by_hop(resp.headers_mut(), true);
        } else {
            headers::strip_hop_by_hop(resp.headers_mut(), false);
        }
        let upstream_version = resp.version();
        headers::add_via(resp.headers_mut(), upstream_version);
        *resp.version_mut() = client_version;
        Ok(resp.map(|b| b.map_err(Into::into).boxed_unsync()))
    }
}

fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn upstream_uri(
    target: &UpstreamTarget,
    path: &str,
    query: Option<&str>,
) -> Result<Uri, GatewayError> {
    let mut pq =
        String::with_capacity(target.base_path.len() + path.len() + 1 + query.map_or(0, str::len));
    pq.push_str(&target.base_path);
    pq.push_str(path);
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    let pq = PathAndQuery::from_maybe_shared(Bytes::from(pq))
        .map_err(|_| GatewayError::BadRequest("the request path cannot be forwarded"))?;
    Uri::builder()
        .scheme(target.scheme.clone())
        .authority(target.authority.clone())
        .path_and_query(pq)
        .build()
        .map_err(|_| GatewayError::BadRequest("the request path cannot be forwarded"))
}

/// The error and its causes on one line (hyper's top-level messages are terse).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_joins_base_path_and_query() {
        let t = UpstreamTarget {
            scheme: http::uri::Scheme::HTTP,
            authority: "10.0.0.1:80".parse().unwrap(),
            base_path: "/v1".into(),
        };
        assert_eq!(
            upstream_uri(&t, "/users", Some("a=1&b=2"))
                .unwrap()
                .to_string(),
            "http://10.0.0.1:80/v1/users?a=1&b=2"
        );
        let t = UpstreamTarget {
            base_path: String::new(),
            ..t
        };
        assert_eq!(
            upstream_uri(&t, "/", None).unwrap().to_string(),
            "http://10.0.0.1:80/"
        );
    }
}
