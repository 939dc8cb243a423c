//! TLS termination: versions, ALPN, HSTS on every HTTPS response, the plain-HTTP
//! listener's redirect, and health endpoints.

mod common;

use bytes::Bytes;
use common::{route, Gate, Upstream};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};

const HSTS: &str = "max-age=31536000; includeSubDomains";

async fn get_over(
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    h2: bool,
) -> http::Response<hyper::body::Incoming> {
    let io = TokioIo::new(stream);
    let req = http::Request::get("https://localhost/tls-check")
        .body(Empty::<Bytes>::new())
        .unwrap();
    if h2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        send.send_request(req).await.unwrap()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let mut req = req;
        *req.uri_mut() = "/tls-check".parse().unwrap();
        req.headers_mut()
            .insert("host", "localhost".parse().unwrap());
        send.send_request(req).await.unwrap()
    }
}

#[tokio::test]
async fn tls12_and_tls13_handshakes_with_alpn() {
    let up = Upstream::start().await;
    let gate = Gate::to(&up).await;
    let cases = [
        (
            &rustls::version::TLS12,
            rustls::ProtocolVersion::TLSv1_2,
            &b"http/1.1"[..],
        ),
        (
            &rustls::version::TLS12,
            rustls::ProtocolVersion::TLSv1_2,
            &b"h2"[..],
        ),
        (
            &rustls::version::TLS13,
            rustls::ProtocolVersion::TLSv1_3,
            &b"http/1.1"[..],
        ),
        (
            &rustls::version::TLS13,
            rustls::ProtocolVersion::TLSv1_3,
            &b"h2"[..],
        ),
    ];
    for (version, expect, alpn) in cases {
        let stream = gate.tls_connect(&[version], &[alpn]).await;
        let (_, session) = stream.get_ref();
        assert_eq!(session.protocol_version(), Some(expect));
        assert_eq!(session.alpn_protocol(), Some(alpn));
        let resp = get_over(stream, alpn == b"h2").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["strict-transport-security"], HSTS);
        let want = if alpn == b"h2" {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        assert_eq!(resp.version(), want);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["uri"], "/tls-check");
    }
}

#[tokio::test]
async fn no_alpn_falls_back_to_http11() {
    let up = Upstream::start().await;
    let gate = Gate::to(&up).await;
    let stream = gate.tls_connect(&[&rustls::version::TLS13], &[]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), None);
    let resp = get_over(stream, false).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn h2_is_negotiated_by_a_real_client() {
    let up = Upstream::start().await;
    let gate = Gate::to(&up).await;
    let resp = gate.client().get(gate.url("/h2")).send().await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let v = common::json(resp).await;
    // The upstream got HTTP/1.1 and a Via naming the client's protocol version.
    assert_eq!(v["version"], "HTTP/1.1");
    assert_eq!(v["headers"]["via"], "2 authgate");
}

#[tokio::test]
async fn hsts_on_200_404_502_and_configurable() {
    let up = Upstream::start().await;
    let dead = common::upstream::dead_addr().await;
    let gate = Gate::start(
        "http_mode = \"serve\"",
        "hsts = \"max-age=63072000; includeSubDomains; preload\"",
        &format!(
            "{}{}",
            route("/ok", &up.url(), ""),
            route("/dead", &format!("http://{dead}"), "")
        ),
    )
    .await;
    let c = gate.client();
    for (path, status) in [
        ("/ok", 200),
        ("/nowhere", 404),
        ("/dead", 502),
        ("/healthz", 200),
    ] {
        let resp = c.get(gate.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), status, "{path}");
        assert_eq!(
            resp.headers()["strict-transport-security"],
            "max-age=63072000; includeSubDomains; preload",
            "{path}"
        );
    }
    let resp = c.get(gate.url("/nowhere")).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v = common::json(resp).await;
    assert_eq!(v["error"], "not_found");
    assert!(v["error_description"].is_string());

    // Plain HTTP (serve mode) must not send HSTS (RFC 6797 §7.2)...
    let resp = c.get(gate.http_url("/ok")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("strict-transport-security").is_none());
}

#[tokio::test]
async fn plain_http_redirects_with_path_and_query() {
    let up = Upstream::start().await;
    let gate = Gate::start("http_mode = \"redirect\"", "", &route("/", &up.url(), "")).await;
    let resp = gate
        .client()
        .get(gate.http_url("/some/path?a=1&b=two"))
        .header("host", "api.example:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 308);
    assert_eq!(
        resp.headers()["location"],
        format!(
            "https://api.example:{}/some/path?a=1&b=two",
            gate.https.port()
        )
    );
    assert_eq!(up.hits(), 0, "a redirect must not reach the upstream");
    // Probes still work on the plain port.
    let resp = gate
        .client()
        .get(gate.http_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = gate
        .client()
        .get(gate.http_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn redirect_uses_the_configured_public_port() {
    let up = Upstream::start().await;
    let gate = Gate::start(
        "http_mode = \"redirect\"\nredirect_https_port = 443",
        "",
        &route("/", &up.url(), ""),
    )
    .await;
    let resp = gate
        .client()
        .get(gate.http_url("/x"))
        .header("host", "api.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["location"], "https://api.example/x");
}

#[tokio::test]
async fn sni_picks_the_matching_certificate() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("other.pem"), dir.path().join("other.key"));
    authgate::certs::generate(&cert, &key, &["other.test".to_string()], false).unwrap();
    let gate = Gate::start(
        "http_mode = \"serve\"",
        &format!("[[tls.sni]]\nserver_name = \"*.test\"\ncert = {cert:?}\nkey = {key:?}"),
        &route("/", &up.url(), ""),
    )
    .await;
    let other_pem = std::fs::read(&cert).unwrap();
    // Trusting only the SNI certificate, a handshake for other.test succeeds…
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&other_pem).unwrap())
        .resolve("other.test", gate.https)
        .build()
        .unwrap();
    let resp = client
        .get(format!("https://other.test:{}/", gate.https.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // …and the default name gets the default certificate.
    let resp = gate.client().get(gate.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn hsts_behind_a_trusted_tls_terminating_proxy() {
    let up = Upstream::start().await;
    let gate = Gate::start(
        "https = \"off\"\nhttp_mode = \"serve\"\ntrusted_proxies = [\"127.0.0.1\"]",
        "hsts = \"max-age=600\"",
        &route("/", &up.url(), ""),
    )
    .await;
    let c = gate.client();
    let resp = c
        .get(gate.http_url("/"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["strict-transport-security"], "max-age=600");
    let resp = c.get(gate.http_url("/")).send().await.unwrap();
    assert!(resp.headers().get("strict-transport-security").is_none());
}
