//! Micro-benchmarks of per-request work that does no I/O: route lookup (10 and 10,000
//! routes, to show the cost does not grow with the table) and the header rewriting done
//! for every forwarded request.
//!
//! `cargo bench --bench gateway`. Under `cargo test` each benchmark runs once as a smoke
//! test.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Version};

use authgate::config::{RouteConfig, UpstreamTarget};
use authgate::gateway::headers::{self, ClientView};
use authgate::router::Router;

fn routes(n: usize) -> Vec<RouteConfig> {
    (0..n)
        .map(|i| RouteConfig {
            name: format!("svc{i}"),
            path: format!("/svc{i}/v1"),
            host: (i % 3 == 0).then(|| format!("h{i}.example")),
            upstreams: vec![UpstreamTarget {
                scheme: http::uri::Scheme::HTTP,
                authority: "127.0.0.1:9000".parse().expect("static authority"),
                base_path: String::new(),
            }],
            strip_prefix: false,
            public: true,
            preserve_host: false,
            upstream_http2: false,
            timeout: Duration::from_secs(1),
            max_body_bytes: 1 << 20,
            access: authgate::config::Access::Public,
            token_headers: None,
            allow_query_token: false,
            pass_token: false,
            rate_limit: None,
            method_override: Default::default(),
        })
        .collect()
}

fn routing(c: &mut Criterion) {
    for n in [10usize, 10_000] {
        let router = Router::new(&routes(n));
        let path = format!("/svc{}/v1/users/42/orders", n - 1);
        c.bench_function(&format!("route lookup, {n} routes"), |b| {
            b.iter(|| black_box(router.find(Some("api.example"), black_box(&path))))
        });
    }
}

fn typical_request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "api.example"),
        ("user-agent", "bench/1.0"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, br"),
        (
            "authorization",
            "Bearer ag_0123456789abcdef0123456789abcdef",
        ),
        ("content-type", "application/json"),
        ("x-request-id", "9f1c2a"),
        ("connection", "keep-alive"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    h
}

fn header_rewrite(c: &mut Criterion) {
    let template = typical_request_headers();
    let client = ClientView {
        peer: "203.0.113.9".parse().expect("static address"),
        trusted_peer: false,
        proto: "https",
        host: Some("api.example"),
    };
    c.bench_function(
        "forward header rewrite (hop-by-hop, X-Forwarded-*, Via)",
        |b| {
            b.iter_batched_ref(
                || template.clone(),
                |h| {
                    headers::strip_hop_by_hop(h, false);
                    headers::set_forwarded(h, &client);
                    headers::add_via(h, Version::HTTP_11);
                },
                criterion::BatchSize::SmallInput,
            )
        },
    );
}

criterion_group!(benches, routing, header_rewrite);
criterion_main!(benches);
