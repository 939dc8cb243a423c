//! Prometheus metrics (OpenMetrics text, `prometheus-client`).
//!
//! Each part of authgate owns the metrics it updates (the token table its cache
//! counters, the store wrapper its query histogram, the gateway its request counters);
//! [`Metrics::registry`] gathers them into one registry once everything is built, and
//! [`Metrics::render`] encodes it for `GET /metrics`. There is no global registry: two
//! servers in one process (tests) keep separate counts.
//!
//! Names (all prefixed `authgate_`) are listed in the README's "Metrics" section.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A response's status class label (`2xx`, `4xx`, …).
pub fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// Labels of `authgate_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route's name, or what authgate served itself (`oauth`, `health`, `metrics`,
    /// `forward_auth`, `none`).
    pub route: Arc<str>,
    pub status: &'static str,
    /// `public`, `allowed`, `missing_token`, `invalid_token`, `insufficient_scope`,
    /// `bad_token_request`, `store_unavailable`, `rate_limited`, or empty.
    pub auth: &'static str,
}

/// A single `route` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: Arc<str>,
}

/// Labels of `authgate_tokens_issued_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuedLabels {
    pub grant: &'static str,
    pub client_id: String,
}

/// A single `kind` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// A single `op` label (store operations).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: &'static str,
}

/// A single `result` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// A single `hash` label (the loaded configuration's).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HashLabel {
    pub hash: String,
}

/// Latency buckets from 100 µs to ≈ 13 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// A family of latency histograms.
pub type LatencyFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// An empty family of latency histograms.
pub fn latency_family<L: Clone + std::hash::Hash + Eq>() -> LatencyFamily<L> {
    Family::new_with_constructor(latency_histogram as fn() -> Histogram)
}

/// Metrics of the request pipeline and the listeners.
#[derive(Debug, Clone)]
pub struct GatewayMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub upstream_latency: LatencyFamily<RouteLabel>,
    pub open_connections: Gauge,
    pub tls_handshake_failures: Counter,
    /// Connections closed at accept: their address had `max_connections_per_ip` open.
    pub connections_refused_per_ip: Counter,
    pub rate_limited: Family<KindLabel, Counter>,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        GatewayMetrics {
            requests: Family::default(),
            upstream_latency: latency_family(),
            open_connections: Gauge::default(),
            tls_handshake_failures: Counter::default(),
            connections_refused_per_ip: Counter::default(),
            rate_limited: Family::default(),
        }
    }
}

/// Metrics of the token table (cache) and of revocations applied to it.
#[derive(Debug, Clone, Default)]
pub struct CacheMetrics {
    pub hits: Counter,
    pub misses: Counter,
    pub negative_hits: Counter,
    pub size: Gauge,
    pub revocations: Family<KindLabel, Counter>,
}

/// Metrics of the authorization server.
#[derive(Debug, Clone, Default)]
pub struct OAuthMetrics {
    pub issued: Family<IssuedLabels, Counter>,
}

/// Metrics of the store.
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    pub latency: LatencyFamily<OpLabel>,
    pub errors: Family<OpLabel, Counter>,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics {
            latency: latency_family(),
            errors: Family::default(),
        }
    }
}

/// Metrics of configuration reloads.
#[derive(Debug, Clone, Default)]
pub struct ReloadMetrics {
    pub reloads: Family<ResultLabel, Counter>,
    pub config_hash: Family<HashLabel, Gauge>,
}

impl ReloadMetrics {
    /// Records the hash of the configuration now in force.
    pub fn set_hash(&self, hash: &str) {
        self.config_hash.clear();
        self.config_hash
            .get_or_create(&HashLabel {
                hash: hash.to_owned(),
            })
            .set(1);
    }
}

/// Every metric of one server.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub gateway: GatewayMetrics,
    pub cache: CacheMetrics,
    pub oauth: OAuthMetrics,
    pub store: StoreMetrics,
    pub reload: ReloadMetrics,
}

impl Metrics {
    /// The registry over all metrics (handles share their values with it).
    pub fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("authgate");
        let g = &self.gateway;
        r.register(
            "requests",
            "Requests answered, by route, status class and authentication decision",
            g.requests.clone(),
        );
        r.register(
            "upstream_latency_seconds",
            "Time from forwarding a request to the upstream's response headers",
            g.upstream_latency.clone(),
        );
        r.register(
            "open_connections",
            "Client connections open now",
            g.open_connections.clone(),
        );
        r.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            g.tls_handshake_failures.clone(),
        );
        r.register(
            "connections_refused_per_ip",
            "Connections closed at accept because their address had server.max_connections_per_ip open",
            g.connections_refused_per_ip.clone(),
        );
        r.register(
            "rate_limited",
            "Requests refused with 429, by limit",
            g.rate_limited.clone(),
        );
        let c = &self.cache;
        r.register(
            "token_cache_hits",
            "Token lookups answered by the cache with a valid token",
            c.hits.clone(),
        );
        r.register(
            "token_cache_negative_hits",
            "Token lookups answered by the cache with a known-bad token",
            c.negative_hits.clone(),
        );
        r.register(
            "token_cache_misses",
            "Token lookups that went to the store",
            c.misses.clone(),
        );
        r.register(
            "token_cache_entries",
            "Entries in the token cache",
            c.size.clone(),
        );
        r.register(
            "revocations",
            "Revocations applied to this instance's token cache (local and from other instances), by kind",
            c.revocations.clone(),
        );
        r.register(
            "tokens_issued",
            "Access tokens issued, by grant and client",
            self.oauth.issued.clone(),
        );
        r.register(
            "store_query_duration_seconds",
            "Store operation latency, by operation",
            self.store.latency.clone(),
        );
        r.register(
            "store_errors",
            "Store operations that failed, by operation",
            self.store.errors.clone(),
        );
        r.register(
            "config_reloads",
            "Configuration reloads, by result",
            self.reload.reloads.clone(),
        );
        r.register(
            "config_info",
            "The loaded configuration's SHA-256 (first 16 hex digits) as a label",
            self.reload.config_hash.clone(),
        );
        r
    }

    /// The registry's OpenMetrics text.
    pub fn render(registry: &Registry) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labels_and_counts() {
        let m = Metrics::default();
        let registry = m.registry();
        m.gateway
            .requests
            .get_or_create(&RequestLabels {
                route: Arc::from("items"),
                status: status_class(403),
                auth: "insufficient_scope",
            })
            .inc();
        m.oauth
            .issued
            .get_or_create(&IssuedLabels {
                grant: "client_credentials",
                client_id: "bench".into(),
            })
            .inc_by(2);
        m.reload.set_hash("abc");
        m.reload.set_hash("def");
        let text = Metrics::render(&registry);
        assert!(text.contains(
            r#"authgate_requests_total{route="items",status="4xx",auth="insufficient_scope"} 1"#
        ));
        assert!(text.contains(
            r#"authgate_tokens_issued_total{grant="client_credentials",client_id="bench"} 2"#
        ));
        assert!(text.contains(r#"authgate_config_info{hash="def"} 1"#));
        assert!(!text.contains(r#"hash="abc""#));
        assert!(text.ends_with("# EOF\n"));
    }
}
