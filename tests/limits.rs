//! Failures and limits: 502, 504, slowloris, 431, 413, idle and connection limits,
//! graceful drain.

mod common;

use std::time::{Duration, Instant};

use common::{route, upstream, Gate, Upstream, LIMIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn unreachable_upstream_is_502_and_the_gateway_survives() {
    let dead = upstream::dead_addr().await;
    let up = Upstream::start().await;
    let gate = Gate::start(
        "http_mode = \"serve\"",
        "",
        &format!(
            "{}{}",
            route("/dead", &format!("http://{dead}"), ""),
            route("/", &up.url(), "")
        ),
    )
    .await;
    let c = gate.client();
    for _ in 0..3 {
        let resp = c.get(gate.url("/dead/x")).send().await.unwrap();
        assert_eq!(resp.status(), 502);
        let v = common::json(resp).await;
        assert_eq!(v["error"], "bad_gateway");
        assert!(!v["error_description"]
            .as_str()
            .unwrap()
            .contains(&dead.to_string()));
    }
    assert_eq!(c.get(gate.url("/fine")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn slow_upstream_is_504() {
    let up = Upstream::start().await;
    let gate = Gate::start(
        "http_mode = \"serve\"",
        "",
        &route("/", &up.url(), "timeout = \"300ms\""),
    )
    .await;
    let started = Instant::now();
    let resp = gate
        .client()
        .get(gate.url("/slow/3000"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    assert!(started.elapsed() < Duration::from_millis(2900));
    let v = common::json(resp).await;
    assert_eq!(v["error"], "gateway_timeout");
    assert_eq!(
        gate.client()
            .get(gate.url("/slow/10"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// Reads until EOF or error; returns the bytes and how long it took.
async fn read_until_closed(tcp: &mut tokio::net::TcpStream) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(LIMIT, tcp.read_to_end(&mut out))
        .await
        .expect("connection was never closed");
    (out, started.elapsed())
}

#[tokio::test]
async fn slowloris_is_cut_off() {
    let up = Upstream::start().await;
    let gate = Gate::start(
        "http_mode = \"serve\"\nheader_read_timeout = \"500ms\"",
        "",
        &route("/", &up.url(), ""),
    )
    .await;
    let mut tcp = tokio::net::TcpStream::connect(gate.http.unwrap())
        .await
        .unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Trickle a header byte every 100 ms: never completes the head.
    let trickle = async {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if tcp.write_all(b"X").await.is_err() {
                break;
            }
        }
    };
    let started = Instant::now();
    tokio::time::timeout(LIMIT, trickle).await.unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "cut after {elapsed:?}");
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn slow_tls_handshake_is_cut_off() {
    let up = Upstream::start().await;
    let gate = Gate::start(
        "http_mode = \"serve\"",
        "handshake_timeout = \"300ms\"",
        &route("/", &up.url(), ""),
    )
    .await;
    // Connect to the TLS port and say nothing.
    let mut tcp = tokio::net::TcpStream::connect(gate.https).await.unwrap();
    let (_, took) = read_until_closed(&mut tcp).await;
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn oversized_headers_get_431_with_hsts() {
    let up = Upstream::start().await;
    let gate = Gate::start(
        "http_mode = \"serve\"\nmax_header_bytes = 2048",
        "",
        &route("/", &up.url(), ""),
    )
    .await;
    let c = gate.client();
    let resp = c
        .get(gate.url("/"))
        .header("x-big", "a".repeat(4000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
    assert!(resp.headers().contains_key("strict-transport-security"));
    assert_eq!(
        common::json(resp).await["error"],
        "request_header_fields_too_large"
    );
    assert_eq!(up.hits(), 0);
    let resp = c
        .get(gate.url("/"))
        .header("x-small", "a".repeat(500))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let up = Upstream::start().await;
    let gate = Gate::start(
        "http_mode = \"serve\"\nmax_body_bytes = 100000",
        "",
        &format!(
            "{}{}",
            route("/small", &up.url(), "max_body_bytes = 1000"),
            route("/", &up.url(), "")
        ),
    )
    .await;
    let c = gate.client();
    // Declared length over the route's limit: refused before the upstream sees it.
    let resp = c
        .post(gate.url("/small/upload"))
        .body(vec![0u8; 1001])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        common::json(resp).await["error"],
        "request_entity_too_large"
    );
    assert_eq!(up.hits(), 0);
    assert_eq!(
        c.post(gate.url("/small/upload"))
            .body(vec![0u8; 1000])
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Chunked (no length) past the server-wide limit: cut off while streaming.
    let body = reqwest::Body::wrap_stream(upstream::pattern_stream(300_000, 10_000));
    let resp = c.post(gate.url("/upload")).body(body).send().await.unwrap();
    assert_eq!(resp.status(), 413);
}

#[tokio::test]
async fn idle_keepalive_connections_are_closed() {
    let up = Upstream::start().await;
    let gate = Gate::start(
        "http_mode = \"serve\"\nidle_timeout = \"400ms\"",
        "",
        &route("/", &up.url(), ""),
    )
    .await;
    let mut tcp = tokio::net::TcpStream::connect(gate.http.unwrap())
        .await
        .unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (out, took) = read_until_closed(&mut tcp).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        took >= Duration::from_millis(300),
        "closed too early: {took:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "idle connection kept {took:?}"
    );
}

#[tokio::test]
async fn connection_limit_queues_further_clients() {
    let up = Upstream::start().await;
    let gate = Gate::start(
        "http_mode = \"serve\"\nmax_connections = 1",
        "",
        &route("/", &up.url(), ""),
    )
    .await;
    let addr = gate.http.unwrap();
    let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
    first
        .write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    first.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");

    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    second
        .write_all(b"GET /2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut one = [0u8; 1];
    let waited = tokio::time::timeout(Duration::from_millis(300), second.read(&mut one)).await;
    assert!(
        waited.is_err(),
        "second connection was served while the first held the slot"
    );

    drop(first);
    let (out, _) = read_until_closed(&mut second).await;
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn graceful_shutdown_drains_in_flight_requests() {
    let up = Upstream::start().await;
    let gate = Gate::start(
        "http_mode = \"serve\"\nshutdown_grace = \"10s\"",
        "",
        &route("/", &up.url(), ""),
    )
    .await;
    let c = gate.client();
    let addr = gate.https;
    let url = gate.url("/slow/800");
    let in_flight = tokio::spawn(async move { c.get(url).send().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    gate.shutdown().await;
    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200, "in-flight request was cut");
    assert!(started.elapsed() < Duration::from_secs(8));
    // The listener is closed: no new connections.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_client_that_stops_reading_loses_its_slot() {
    let up = Upstream::start().await;
    let gate = Gate::start(
        "http_mode = \"serve\"\nmax_connections = 1\nidle_timeout = \"300ms\"",
        "",
        &route("/", &up.url(), ""),
    )
    .await;
    let addr = gate.http.unwrap();
    // Ask for 64 MiB and never read: the gateway's writes stall once buffers fill.
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(b"GET /big/67108864 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The only slot is taken; once the stalled connection is dropped (two quiet idle
    // periods), the next client is served.
    let mut next = tokio::net::TcpStream::connect(addr).await.unwrap();
    next.write_all(b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (out, took) = read_until_closed(&mut next).await;
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
    assert!(took < Duration::from_secs(10), "{took:?}");
    drop(stalled);
}
