//! Route table: a request's host and path pick the [`Route`] with the longest matching
//! path prefix; a route bound to the request's host beats a host-less one of the same
//! length. Prefixes match whole path segments: `/api` matches `/api` and `/api/x`, never
//! `/apix`.
//!
//! Lookup cost depends on the depth of the request path, not on the number of routes:
//! each segment prefix of the path (`/a/b/c`, `/a/b`, `/a`, `/`) is one hash lookup,
//! longest first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::config::{RouteConfig, UpstreamTarget};

/// Most upstreams one route may list.
pub const MAX_UPSTREAMS: usize = 64;

/// A configured route with its balancer state.
#[derive(Debug)]
pub struct Route {
    pub config: RouteConfig,
    /// Position in the configuration, for logs and metrics.
    pub index: usize,
    pub balancer: Balancer,
}

/// The route table.
#[derive(Debug, Default)]
pub struct Router {
    /// Routes by path prefix.
    by_prefix: HashMap<String, Slot>,
}

/// The routes sharing one path prefix.
#[derive(Debug, Default)]
struct Slot {
    by_host: HashMap<String, Arc<Route>>,
    any_host: Option<Arc<Route>>,
}

impl Router {
    /// Builds the table from validated routes (validation rejects duplicate
    /// path + host pairs).
    pub fn new(configs: &[RouteConfig]) -> Router {
        let mut by_prefix: HashMap<String, Slot> = HashMap::new();
        for (index, c) in configs.iter().enumerate() {
            let route = Arc::new(Route {
                balancer: Balancer::new(c.upstreams.len()),
                config: c.clone(),
                index,
            });
            let slot = by_prefix.entry(c.path.clone()).or_default();
            match &c.host {
                Some(h) => {
                    slot.by_host.insert(h.clone(), route);
                }
                None => slot.any_host = Some(route),
            }
        }
        Router { by_prefix }
    }

    /// Finds the route for `host` (lower-case, without port) and `path`.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&Arc<Route>> {
        let mut candidate = path;
        loop {
            if let Some(slot) = self.by_prefix.get(candidate) {
                let bound = host.and_then(|h| slot.by_host.get(h));
                if let Some(route) = bound.or(slot.any_host.as_ref()) {
                    return Some(route);
                }
            }
            if candidate.len() <= 1 {
                return None;
            }
            // Next shorter segment prefix: "/a/b/c" → "/a/b" → "/a" → "/".
            candidate = match candidate.rfind('/') {
                Some(0) | None => "/",
                Some(i) => &candidate[..i],
            };
        }
    }
}

/// Whether `prefix` covers `path` on a segment boundary.
///
/// ```
/// use authgate::router::prefix_matches;
/// assert!(prefix_matches("/api", "/api"));
/// assert!(prefix_matches("/api", "/api/users"));
/// assert!(!prefix_matches("/api", "/apix"));
/// assert!(prefix_matches("/", "/anything"));
/// ```
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Strips the route prefix from `path`, keeping a leading `/`.
///
/// ```
/// use authgate::router::strip_prefix;
/// assert_eq!(strip_prefix("/api", "/api/users"), "/users");
/// assert_eq!(strip_prefix("/api", "/api"), "/");
/// ```
pub fn strip_prefix<'a>(prefix: &str, path: &'a str) -> &'a str {
    if prefix == "/" {
        return path;
    }
    match path.strip_prefix(prefix) {
        Some("") => "/",
        Some(rest) => rest,
        None => path,
    }
}

/// Round robin over a route's upstreams, skipping for a while those that refused a
/// connection (passive health checking).
#[derive(Debug)]
pub struct Balancer {
    next: AtomicUsize,
    /// Per upstream: milliseconds since `epoch` until which it is considered down.
    down_until: Vec<AtomicU64>,
    epoch: Instant,
}

impl Balancer {
    fn new(n: usize) -> Balancer {
        Balancer {
            next: AtomicUsize::new(0),
            down_until: (0..n).map(|_| AtomicU64::new(0)).collect(),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The order in which to try upstreams for one request: round robin, with upstreams
    /// that are up first and those marked down last (better than failing outright).
    /// Health is read once, so marking one down mid-request does not repeat it.
    pub fn order(&self) -> impl Iterator<Item = usize> + '_ {
        let n = self.down_until.len();
        let start = if n > 1 {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        } else {
            0
        };
        let now = self.now_ms();
        // Config validation caps a route at MAX_UPSTREAMS (64), so a u64 holds them all.
        let up: u64 = (0..n)
            .filter(|&i| self.down_until[i].load(Ordering::Relaxed) <= now)
            .fold(0, |mask, i| mask | (1 << i));
        let ring = move || (0..n).map(move |k| (start + k) % n);
        ring()
            .filter(move |&i| up & (1 << i) != 0)
            .chain(ring().filter(move |&i| up & (1 << i) == 0))
    }

    /// Marks upstream `i` as down for `for_ms` milliseconds.
    pub fn mark_down(&self, i: usize, for_ms: u64) {
        if let Some(slot) = self.down_until.get(i) {
            slot.store(self.now_ms() + for_ms, Ordering::Relaxed);
        }
    }
}

impl Route {
    /// The upstream at position `i`.
    pub fn upstream(&self, i: usize) -> &UpstreamTarget {
        &self.config.upstreams[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn route(path: &str, host: Option<&str>, n: usize) -> RouteConfig {
        RouteConfig {
            name: path.into(),
            path: path.into(),
            host: host.map(Into::into),
            upstreams: (0..n)
                .map(|i| UpstreamTarget {
                    scheme: http::uri::Scheme::HTTP,
                    authority: format!("127.0.0.1:{}", 9000 + i).parse().unwrap(),
                    base_path: String::new(),
                })
                .collect(),
            strip_prefix: false,
            public: true,
            preserve_host: false,
            upstream_http2: false,
            timeout: Duration::from_secs(1),
            max_body_bytes: 1,
            access: crate::config::Access::Public,
            token_headers: None,
            allow_query_token: false,
            pass_token: false,
            rate_limit: None,
            method_override: Default::default(),
        }
    }

    #[test]
    fn longest_prefix_wins_on_segment_boundaries() {
        let r = Router::new(&[
            route("/", None, 1),
            route("/api", None, 1),
            route("/api/v2", None, 1),
        ]);
        let path = |p| r.find(None, p).map(|r| r.config.path.as_str());
        assert_eq!(path("/api/v2/x"), Some("/api/v2"));
        assert_eq!(path("/api/v2/"), Some("/api/v2"));
        assert_eq!(path("/api/"), Some("/api"));
        assert_eq!(path("/api//v2"), Some("/api"));
        assert_eq!(path("*"), None);
        assert_eq!(path("/api/v2"), Some("/api/v2"));
        assert_eq!(path("/api/v20"), Some("/api"));
        assert_eq!(path("/apix"), Some("/"));
        assert_eq!(path("/"), Some("/"));
        let no_root = Router::new(&[route("/api", None, 1)]);
        assert!(no_root.find(None, "/other").is_none());
        assert!(no_root.find(None, "").is_none());
    }

    #[test]
    fn a_longer_host_less_prefix_beats_a_shorter_host_bound_one() {
        let r = Router::new(&[route("/", Some("a.example"), 1), route("/api", None, 1)]);
        assert_eq!(r.find(Some("a.example"), "/api/x").unwrap().index, 1);
        assert_eq!(r.find(Some("a.example"), "/other").unwrap().index, 0);
    }

    #[test]
    fn host_bound_routes_win_and_require_the_host() {
        let r = Router::new(&[route("/api", None, 1), route("/api", Some("a.example"), 1)]);
        assert_eq!(r.find(Some("a.example"), "/api").unwrap().index, 1);
        assert_eq!(r.find(Some("b.example"), "/api").unwrap().index, 0);
        assert_eq!(r.find(None, "/api").unwrap().index, 0);
        let only_host = Router::new(&[route("/", Some("a.example"), 1)]);
        assert!(only_host.find(Some("b.example"), "/").is_none());
    }

    #[test]
    fn strip() {
        assert_eq!(strip_prefix("/api", "/api/users"), "/users");
        assert_eq!(strip_prefix("/api", "/api"), "/");
        assert_eq!(strip_prefix("/", "/x"), "/x");
    }

    #[test]
    fn round_robin_skips_down_upstreams() {
        let b = Balancer::new(3);
        let firsts: Vec<usize> = (0..6).map(|_| b.order().next().unwrap()).collect();
        assert_eq!(firsts, vec![0, 1, 2, 0, 1, 2]);
        b.mark_down(1, 60_000);
        let orders: Vec<Vec<usize>> = (0..3).map(|_| b.order().collect()).collect();
        assert_eq!(orders[0], vec![0, 2, 1]);
        assert_eq!(orders[1], vec![2, 0, 1]);
        assert_eq!(orders[2], vec![2, 0, 1]);
    }

    #[test]
    fn marking_down_mid_request_does_not_repeat_an_upstream() {
        let b = Balancer::new(1);
        let mut order = b.order();
        assert_eq!(order.next(), Some(0));
        b.mark_down(0, 60_000);
        assert_eq!(order.next(), None);
    }
}
