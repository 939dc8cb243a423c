//! Forwarding: what reaches the upstream and what comes back.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{route, upstream, Gate, Upstream, LIMIT};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn forwards_method_path_query_headers_and_body() {
    let up = Upstream::start().await;
    let gate = Gate::to(&up).await;
    let c = gate.client();
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let resp = c
            .request(method.parse().unwrap(), gate.url("/a/b%20c?x=1&y=%2F&x=2"))
            .header("x-custom", "value-1")
            .header("accept", "application/json")
            .body(if method == "GET" { "" } else { "payload" })
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{method}");
        assert!(resp.headers()["via"]
            .to_str()
            .unwrap()
            .ends_with("authgate"));
        let v = common::json(resp).await;
        assert_eq!(v["method"], method);
        assert_eq!(v["uri"], "/a/b%20c?x=1&y=%2F&x=2");
        assert_eq!(v["headers"]["x-custom"], "value-1");
        assert_eq!(v["headers"]["host"], up.addr.to_string());
        if method != "GET" {
            assert_eq!(v["body"], "payload");
        }
    }
}

#[tokio::test]
async fn strip_prefix_base_path_and_preserve_host() {
    let up = Upstream::start().await;
    let gate = Gate::start(
        "http_mode = \"serve\"",
        "",
        &format!(
            "{}{}",
            route("/api", &format!("{}/v1", up.url()), "strip_prefix = true"),
            route("/keep", &up.url(), "preserve_host = true")
        ),
    )
    .await;
    let c = gate.client();
    let v = common::json(c.get(gate.url("/api/users?id=7")).send().await.unwrap()).await;
    assert_eq!(v["uri"], "/v1/users?id=7");
    let v = common::json(c.get(gate.url("/api")).send().await.unwrap()).await;
    assert_eq!(v["uri"], "/v1/");
    let v = common::json(
        c.get(gate.http_url("/keep/x"))
            .header("host", "public.example")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["uri"], "/keep/x");
    assert_eq!(v["headers"]["host"], "public.example");
    // An HTTP/2 client sends :authority, not Host: that is the host preserved.
    let resp = c.get(gate.url("/keep/h2")).send().await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let v = common::json(resp).await;
    assert_eq!(
        v["headers"]["host"],
        format!("127.0.0.1:{}", gate.https.port())
    );
}

#[tokio::test]
async fn host_routes_and_404() {
    let a = Upstream::start().await;
    let b = Upstream::start().await;
    let gate = Gate::start(
        "http_mode = \"serve\"",
        "",
        &format!(
            "{}{}",
            route("/", &a.url(), "host = \"a.example\""),
            route("/only", &b.url(), "")
        ),
    )
    .await;
    let c = gate.client();
    let status = |host: &'static str, path: &'static str| {
        let c = c.clone();
        let url = gate.http_url(path);
        async move {
            c.get(url)
                .header("host", host)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(status("a.example:80", "/x").await, 200);
    assert_eq!(a.hits(), 1);
    assert_eq!(status("b.example", "/only/y").await, 200);
    assert_eq!(b.hits(), 1);
    assert_eq!(status("b.example", "/x").await, 404);
    assert_eq!(
        status("A.EXAMPLE", "/only").await,
        200,
        "longer prefix wins"
    );
    assert_eq!(b.hits(), 2);
}

/// Sends a raw HTTP/1.1 request and returns the raw response head and body.
async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(LIMIT, tcp.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    let up = Upstream::start().await;
    let gate = Gate::to(&up).await;
    let resp = raw(
        gate.http.unwrap(),
        "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close, X-Client-Hop\r\n\
         X-Client-Hop: secret\r\nKeep-Alive: timeout=9\r\nTE: gzip\r\n\
         Proxy-Authorization: Basic abc\r\nProxy-Connection: keep-alive\r\n\
         X-End-To-End: kept\r\n\r\n",
    )
    .await;
    let body = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let h = v["headers"].as_object().unwrap();
    for gone in [
        "x-client-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(!h.contains_key(gone), "{gone} reached the upstream: {h:?}");
    }
    assert_eq!(h["x-end-to-end"], "kept");
    assert_ne!(
        h.get("connection").and_then(|v| v.as_str()),
        Some("close, X-Client-Hop")
    );

    let resp = gate.client().get(gate.url("/hop")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    for gone in [
        "x-upstream-hop",
        "keep-alive",
        "proxy-authenticate",
        "connection",
    ] {
        assert!(h.get(gone).is_none(), "{gone} reached the client: {h:?}");
    }
    assert_eq!(h["x-end-to-end"], "kept");
}

#[tokio::test]
async fn forwarded_headers_replace_spoofs_from_untrusted_peers() {
    let up = Upstream::start().await;
    let gate = Gate::to(&up).await;
    let v = common::json(
        gate.client()
            .get(gate.url("/who"))
            .header("x-forwarded-for", "6.6.6.6")
            .header("x-forwarded-proto", "http")
            .header("x-forwarded-host", "evil.example")
            .header("forwarded", "for=6.6.6.6;proto=http")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let h = &v["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(
        h["x-forwarded-host"],
        format!("127.0.0.1:{}", gate.https.port())
    );
    assert_eq!(
        h["forwarded"],
        format!(
            "for=127.0.0.1;host=\"127.0.0.1:{}\";proto=https",
            gate.https.port()
        )
    );
}

#[tokio::test]
async fn trusted_proxies_extend_the_chain_and_set_the_scheme() {
    let up = Upstream::start().await;
    let gate = Gate::start(
        "http_mode = \"serve\"\ntrusted_proxies = [\"127.0.0.0/8\"]",
        "",
        &route("/", &up.url(), ""),
    )
    .await;
    let resp = gate
        .client()
        .get(gate.http_url("/who"))
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "api.example")
        .send()
        .await
        .unwrap();
    // A trusted balancer said the client used HTTPS: HSTS applies.
    assert_eq!(
        resp.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    let v = common::json(resp).await;
    let h = &v["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "api.example");
}

#[tokio::test]
async fn round_robin_and_failover_to_the_next_upstream() {
    let a = Upstream::start().await;
    let b = Upstream::start().await;
    let dead = upstream::dead_addr().await;
    let list = format!("[\"{}\", \"http://{dead}\", \"{}\"]", a.url(), b.url());
    let gate = Gate::start(
        "http_mode = \"serve\"",
        "",
        &format!("[[route]]\npath = \"/\"\nupstreams = {list}\npublic = true\n"),
    )
    .await;
    let c = gate.client();
    for i in 0..12 {
        let resp = c
            .post(gate.url("/rr"))
            .body(format!("body-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
        // The body survives a failed connection attempt.
        assert_eq!(common::json(resp).await["body"], format!("body-{i}"));
    }
    assert_eq!(a.hits() + b.hits(), 12);
    assert!(
        a.hits() >= 4 && b.hits() >= 4,
        "a={} b={}",
        a.hits(),
        b.hits()
    );
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_without_buffering() {
    const SIZE: u64 = 300 * 1024 * 1024;
    let up = Upstream::start().await;
    let gate = Gate::start(
        "http_mode = \"serve\"",
        "",
        &route("/", &up.url(), &format!("max_body_bytes = {}", SIZE + 1)),
    )
    .await;
    let before = peak_rss_kib();
    // 600 MiB through TLS twice: allow for a busy 2-core machine.
    let c = gate
        .client_builder()
        .timeout(Duration::from_secs(180))
        .build()
        .unwrap();

    // Upload, chunked (no Content-Length), over TLS.
    let body = reqwest::Body::wrap_stream(upstream::pattern_stream(SIZE, 256 * 1024));
    let resp = c.post(gate.url("/upload")).body(body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v = common::json(resp).await;
    assert_eq!(v["bytes"], SIZE);
    assert_eq!(v["pattern_ok"], true);

    // Download, streamed.
    let mut resp = c
        .get(gate.url(&format!("/big/{SIZE}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (mut n, mut ok) = (0u64, true);
    while let Some(chunk) = resp.chunk().await.unwrap() {
        for &b in chunk.iter() {
            ok &= b == upstream::pattern(n);
            n += 1;
        }
    }
    assert_eq!(n, SIZE);
    assert!(ok, "pattern mismatch in the download");

    // Had either body been buffered whole, the peak would have grown by ≥ 300 MiB.
    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    assert!(grown_mib < 100, "peak RSS grew by {grown_mib} MiB");
}

#[tokio::test]
async fn websocket_style_upgrade_is_tunnelled() {
    let up = Upstream::start().await;
    let gate = Gate::to(&up).await;
    let mut tcp = tokio::net::TcpStream::connect(gate.http.unwrap())
        .await
        .unwrap();
    tcp.write_all(
        b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(LIMIT, tcp.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    tcp.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 9];
    tokio::time::timeout(LIMIT, tcp.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"echo:ping");
}

#[tokio::test]
async fn grpc_style_trailers_pass_over_http2() {
    let up = Upstream::start().await;
    let gate = Gate::start(
        "http_mode = \"serve\"",
        "",
        &route("/", &up.url(), "upstream_http2 = true"),
    )
    .await;
    let stream = gate.tls_connect(&[&rustls::version::TLS13], &[b"h2"]).await;
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::post("https://localhost/trailers")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\x00")))
        .unwrap();
    let resp = tokio::time::timeout(LIMIT, send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected
        .trailers()
        .cloned()
        .expect("trailers were dropped");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "fine");
    assert_eq!(&collected.to_bytes()[..], b"\0\0\0\0\x02hi");
}

#[tokio::test]
async fn h2c_requests_on_the_plain_listener_in_serve_mode() {
    let up = Upstream::start().await;
    let gate = Gate::to(&up).await;
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let resp = c.get(gate.http_url("/h2c")).send().await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn https_upstreams_are_verified_against_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start_tls(dir.path()).await;
    let ca = dir.path().join("upstream-cert.pem");
    let gate = Gate::start(
        "http_mode = \"serve\"",
        "",
        &format!(
            "[upstream]\nca_file = {ca:?}\n{}{}",
            route("/h1", &up.url(), ""),
            route("/h2", &up.url(), "upstream_http2 = true")
        ),
    )
    .await;
    let c = gate.client();
    let v = common::json(c.get(gate.url("/h1/x")).send().await.unwrap()).await;
    // The default client lets ALPN choose (this upstream prefers h2, which sees the
    // absolute URI); either way the path arrives intact.
    assert!(v["uri"].as_str().unwrap().ends_with("/h1/x"), "{v}");
    // ALPN picks h2 with the upstream when the route asks for HTTP/2.
    let v = common::json(c.get(gate.url("/h2/x")).send().await.unwrap()).await;
    assert_eq!(v["version"], "HTTP/2.0");
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn https_upstream_with_an_untrusted_certificate_is_502() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start_tls(dir.path()).await;
    let gate = Gate::to(&up).await;
    let resp = gate.client().get(gate.url("/x")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(
        up.hits(),
        0,
        "an unverified upstream must not get the request"
    );
}

#[tokio::test]
async fn upstream_connections_are_pooled_and_kept_alive() {
    let up = Upstream::start().await;
    let gate = Gate::to(&up).await;
    let c = gate.client();
    for i in 0..20 {
        let resp = c
            .get(gate.url(&format!("/pooled/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    assert_eq!(up.hits(), 20);
    assert_eq!(
        up.conns.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "sequential requests should reuse one upstream connection"
    );
}

#[tokio::test]
async fn dot_segments_are_refused_before_routing() {
    let up = Upstream::start().await;
    let gate = Gate::to(&up).await;
    for path in ["/api/../admin", "/a/%2e%2e/b", "/a/./b"] {
        let resp = raw(
            gate.http.unwrap(),
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(resp.starts_with("HTTP/1.1 400"), "{path}: {resp}");
        assert!(resp.contains("invalid_request"), "{resp}");
    }
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn only_websocket_upgrades_are_tunnelled() {
    let up = Upstream::start().await;
    let gate = Gate::to(&up).await;
    let resp = raw(
        gate.http.unwrap(),
        "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings, close\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let body = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let h = v["headers"].as_object().unwrap();
    assert!(
        !h.contains_key("upgrade") && !h.contains_key("http2-settings"),
        "{h:?}"
    );
}
