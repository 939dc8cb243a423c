//! What reaches the upstream is decided by authgate alone: a client cannot remove the
//! gateway's own headers with `Connection`, smuggle another method past the scope check,
//! name a host that is not a host, sneak a `\` or `_`-spelled header through, or make a
//! cut-off body look complete to the upstream.

mod common;

use std::time::Duration;

use common::{json, token, Gate, Upstream, LIMIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(upstream: &str) -> String {
    format!(
        r#"
[[client]]
id = "rw-app"
secret = "s1"
scopes = "links.rw"
subject = "alice"
[[client]]
id = "rwd-app"
secret = "s2"
scopes = "links.rwd"
subject = "bob"
[[route]]
path = "/links"
upstream = "{upstream}"
perimeter = "links"
[[route]]
path = "/override"
upstream = "{upstream}"
perimeter = "links"
method_override = "authorize"
[[route]]
path = "/public"
upstream = "{upstream}"
public = true
strip_prefix = true
"#
    )
}

async fn setup(server: &str) -> (Gate, Upstream) {
    let up = Upstream::start().await;
    let gate = Gate::start(
        &format!("http_mode = \"serve\"\n{server}"),
        "",
        &config(&up.url()),
    )
    .await;
    (gate, up)
}

/// Sends raw bytes on a plain connection; returns everything until the server closes.
async fn raw(gate: &Gate, request: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(gate.http.unwrap())
        .await
        .unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(LIMIT, tcp.read_to_end(&mut out))
        .await
        .expect("the connection was not closed")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn status(resp: &str) -> u16 {
    resp.get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a response: {resp:?}"))
}

/// The upstream's echo of the request, from a raw response.
fn echoed(resp: &str) -> serde_json::Value {
    assert_eq!(status(resp), 200, "{resp}");
    let body = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test]
async fn connection_cannot_remove_what_the_gateway_adds() {
    let (gate, _up) = setup("").await;
    let t = token(&gate, "rw-app", "s1").await;
    let resp = raw(
        &gate,
        &format!(
            "GET /links/1 HTTP/1.1\r\nHost: api.example\r\nAuthorization: Bearer {t}\r\n\
             Connection: close, X-Authgate-Subject, x-authgate-client-id, X-Authgate-Scope, \
             X-Request-Id, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, Forwarded, \
             Via, Host, Content-Length, X-Client-Hop\r\nX-Client-Hop: 1\r\n\r\n"
        ),
    )
    .await;
    let v = echoed(&resp);
    let h = &v["headers"];
    assert_eq!(h["x-authgate-subject"], "alice", "{h}");
    assert_eq!(h["x-authgate-client-id"], "rw-app");
    assert_eq!(h["x-authgate-scope"], "links.rw");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "api.example");
    assert!(h["forwarded"]
        .as_str()
        .unwrap()
        .starts_with("for=127.0.0.1"));
    assert!(h["via"].as_str().unwrap().ends_with("authgate"));
    assert_eq!(h["x-request-id"].as_str().unwrap().len(), 32);
    assert!(h.get("host").is_some());
    // Ordinary end-to-end fields a client lists are still hop-by-hop.
    assert!(h.get("x-client-hop").is_none(), "{h}");
}

#[tokio::test]
async fn method_overrides_are_stripped_or_authorized() {
    let (gate, up) = setup("").await;
    let rw = token(&gate, "rw-app", "s1").await;
    let rwd = token(&gate, "rwd-app", "s2").await;
    let c = gate.client();
    // Default: forwarded as the POST it is, without the override headers.
    let resp = c
        .post(gate.url("/links/1"))
        .bearer_auth(&rw)
        .header("x-http-method-override", "DELETE")
        .header("x-http-method", "DELETE")
        .header("x-method-override", "DELETE")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v = json(resp).await;
    assert_eq!(v["method"], "POST");
    for name in [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    ] {
        assert!(
            v["headers"].get(name).is_none(),
            "{name} reached the upstream"
        );
    }
    // `method_override = "authorize"`: the overridden method needs its own right.
    let hits = up.hits();
    let resp = c
        .post(gate.url("/override/1"))
        .bearer_auth(&rw)
        .header("x-http-method-override", "DELETE")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(json(resp).await["error"], "insufficient_scope");
    assert_eq!(up.hits(), hits, "the refused override reached the upstream");
    let resp = c
        .post(gate.url("/override/1"))
        .bearer_auth(&rwd)
        .header("x-http-method-override", "DELETE")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        json(resp).await["headers"]["x-http-method-override"],
        "DELETE"
    );
    // An override that is not a method is refused there.
    let resp = c
        .post(gate.url("/override/1"))
        .bearer_auth(&rwd)
        .header("x-http-method-override", "DE LETE")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn hosts_that_are_not_hosts_are_refused() {
    let (gate, up) = setup("").await;
    for (what, head) in [
        ("no Host", "GET /public/x HTTP/1.1\r\n"),
        (
            "two Hosts",
            "GET /public/x HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n",
        ),
        ("empty Host", "GET /public/x HTTP/1.1\r\nHost: \r\n"),
        ("space", "GET /public/x HTTP/1.1\r\nHost: a b\r\n"),
        (
            "userinfo",
            "GET /public/x HTTP/1.1\r\nHost: user@evil.example\r\n",
        ),
        (
            "path",
            "GET /public/x HTTP/1.1\r\nHost: evil.example/path\r\n",
        ),
        (
            "bad port",
            "GET /public/x HTTP/1.1\r\nHost: a.example:99999\r\n",
        ),
        (
            "absolute-form mismatch",
            "GET http://b.example/public/x HTTP/1.1\r\nHost: a.example\r\n",
        ),
    ] {
        let resp = raw(&gate, &format!("{head}Connection: close\r\n\r\n")).await;
        assert_eq!(status(&resp), 400, "{what}: {resp}");
        assert!(resp.contains("invalid_request"), "{what}: {resp}");
    }
    assert_eq!(up.hits(), 0);
    // What is valid still passes, and reaches the upstream as sent.
    for host in [
        "a.example",
        "a.example:8080",
        "127.0.0.1:1",
        "[::1]:8443",
        "A-b_c.example",
    ] {
        let resp = raw(
            &gate,
            &format!("GET /public/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(echoed(&resp)["headers"]["x-forwarded-host"], host);
    }
    // HTTP/1.0 may omit Host.
    let resp = raw(&gate, "GET /public/x HTTP/1.0\r\n\r\n").await;
    assert_eq!(status(&resp), 200, "{resp}");
}

#[tokio::test]
async fn redirects_never_carry_a_raw_host() {
    let up = Upstream::start().await;
    let gate = Gate::start("http_mode = \"redirect\"", "", &config(&up.url())).await;
    let resp = raw(
        &gate,
        "GET /links HTTP/1.1\r\nHost: evil.example/path\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&resp), 400, "{resp}");
    assert!(!resp.to_ascii_lowercase().contains("location:"), "{resp}");
    let resp = raw(
        &gate,
        "GET /links?a=1 HTTP/1.1\r\nHost: api.example:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&resp), 308, "{resp}");
    assert!(resp.contains("https://api.example:"), "{resp}");
}

#[tokio::test]
async fn http2_authority_and_host_must_agree() {
    let (gate, up) = setup("").await;
    let tls = gate.tls_connect(&[&rustls::version::TLS13], &[b"h2"]).await;
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let port = gate.https.port();
    let request = |host: &str| {
        http::Request::builder()
            .uri(format!("https://localhost:{port}/public/x"))
            .header("host", host)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let resp = send.send_request(request("evil.example")).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(up.hits(), 0);
    let resp = send
        .send_request(request(&format!("localhost:{port}")))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn backslashes_in_the_path_are_refused_raw_and_encoded() {
    let (gate, up) = setup("").await;
    for path in [
        "/public/..\\links/1",
        "/public/a\\b",
        "/public/a%5Cb",
        "/public/a%5cb",
    ] {
        let resp = raw(
            &gate,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status(&resp), 400, "{path}: {resp}");
    }
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn header_names_with_underscores_are_dropped_unless_allowed() {
    let (gate, _up) = setup("").await;
    let resp = raw(
        &gate,
        "GET /public/x HTTP/1.1\r\nHost: x\r\nX_Custom: 1\r\nTransfer_Encoding: chunked\r\n\
         X-Fine: 2\r\nConnection: close\r\n\r\n",
    )
    .await;
    let v = echoed(&resp);
    let h = v["headers"].as_object().unwrap();
    assert!(
        !h.contains_key("x_custom") && !h.contains_key("transfer_encoding"),
        "{h:?}"
    );
    assert_eq!(h["x-fine"], "2");

    let (gate, _up) = setup("underscores_in_headers = true").await;
    let resp = raw(
        &gate,
        "GET /public/x HTTP/1.1\r\nHost: x\r\nX_Custom: 1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(echoed(&resp)["headers"]["x_custom"], "1");
}

#[tokio::test]
async fn a_malformed_chunked_body_is_the_clients_fault_and_aborts_upstream() {
    for (what, chunks) in [
        ("not hex", "5\r\nhello\r\nZ\r\n\r\n"),
        ("0x prefix", "5\r\nhello\r\n0x5\r\nhello\r\n0\r\n\r\n"),
        (
            "overflow",
            "5\r\nhello\r\nFFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n",
        ),
        ("bare LF", "5\nhello\n0\n\n"),
    ] {
        let (gate, up) = setup("").await;
        let resp = raw(
            &gate,
            &format!(
                "POST /public/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
                 Connection: close\r\n\r\n{chunks}"
            ),
        )
        .await;
        assert_eq!(status(&resp), 400, "{what}: {resp}");
        assert!(resp.contains("invalid_request"), "{what}: {resp}");
        // The upstream saw the request start (or not at all), never complete.
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            let seen = up.uploads();
            if seen.iter().all(|u| u.starts_with("aborted")) && up.hits() == seen.len() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: the upstream saw {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn a_431_closes_the_connection() {
    let (gate, up) = setup("max_header_bytes = 2048").await;
    // Two requests pipelined: the first is too large, the second must not be served.
    let big = "a".repeat(4000);
    let resp = raw(
        &gate,
        &format!(
            "GET /public/x HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n\
             GET /public/y HTTP/1.1\r\nHost: x\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status(&resp), 431, "{resp}");
    assert_eq!(resp.matches("HTTP/1.1 ").count(), 1, "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("connection: close"),
        "{resp}"
    );
    assert_eq!(up.hits(), 0);
}
