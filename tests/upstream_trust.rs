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
[[route]]
path = "/ws"
upstream = "{upstream}"
strip_prefix = true
perimeter = "links"
[[route]]
path = "/site"
upstream = "{upstream}/general"
public = true
[[route]]
path = "/site"
host = "admin.example"
upstream = "{upstream}/admin"
perimeter = "links"
[forward_auth]
path = "/auth/verify"
headers = "x-original"
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
        "GET /public/x HTTP/1.1\r\nHost: x\r\nX_Custom: 1\r\nX_Forwarded_For: 6.6.6.6\r\n\
         X_Request_Id: forged\r\nX_HTTP_Method_Override: DELETE\r\nConnection: close\r\n\r\n",
    )
    .await;
    let v = echoed(&resp);
    let h = v["headers"].as_object().unwrap();
    assert_eq!(h["x_custom"], "1");
    // Allowed, but not under a name that reads as one authgate vouches for.
    for gone in ["x_forwarded_for", "x_request_id", "x_http_method_override"] {
        assert!(!h.contains_key(gone), "{gone}: {h:?}");
    }
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

/// Reads a response head byte by byte (the connection may go on as a tunnel).
async fn read_head(tcp: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(LIMIT, tcp.read_exact(&mut byte))
            .await
            .expect("no response head")
            .unwrap();
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).to_ascii_lowercase()
}

const WS_HEAD: &str = "Connection: Upgrade\r\nUpgrade: websocket\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

/// Opens a WebSocket tunnel through `/ws/upgrade` with `token`; checks it echoes.
async fn open_tunnel(gate: &Gate, token: &str) -> tokio::net::TcpStream {
    let mut tcp = tokio::net::TcpStream::connect(gate.http.unwrap())
        .await
        .unwrap();
    tcp.write_all(
        format!(
            "GET /ws/upgrade HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{WS_HEAD}\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    tcp.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 9];
    tokio::time::timeout(LIMIT, tcp.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"echo:ping");
    tcp
}

/// Waits (bounded) for the server to close `tcp`.
async fn closed(tcp: &mut tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(LIMIT, tcp.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn only_an_answered_websocket_handshake_becomes_a_tunnel() {
    let (gate, up) = setup("").await;
    // A second Upgrade line (h2c) and HTTP2-Settings do not reach the upstream.
    let resp = raw(
        &gate,
        &format!(
            "GET /public/echo HTTP/1.1\r\nHost: x\r\n{WS_HEAD}Upgrade: h2c\r\n\
             HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"
        ),
    )
    .await;
    let v = echoed(&resp);
    assert_eq!(v["headers"]["upgrade"], "websocket", "{v}");
    assert!(v["headers"].get("http2-settings").is_none(), "{v}");
    // An upstream 101 that names another protocol, or does not answer the key, is a
    // failure of the upstream: no tunnel.
    for path in ["/public/upgrade/h2c", "/public/upgrade/no-accept"] {
        let mut tcp = tokio::net::TcpStream::connect(gate.http.unwrap())
            .await
            .unwrap();
        tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{WS_HEAD}\r\n").as_bytes())
            .await
            .unwrap();
        let head = read_head(&mut tcp).await;
        assert!(head.starts_with("http/1.1 502"), "{path}: {head}");
    }
    // A 101 to a request that asked for no WebSocket is refused too.
    let resp = raw(
        &gate,
        "GET /public/upgrade HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&resp), 502, "{resp}");
    assert!(up.hits() >= 3);
}

#[tokio::test]
async fn a_tunnel_ends_when_its_token_is_revoked() {
    let (gate, _up) = setup("").await;
    let t = token(&gate, "rw-app", "s1").await;
    let mut tcp = open_tunnel(&gate, &t).await;
    let resp = common::post_form(
        &gate,
        "/oauth/revoke",
        Some(("rw-app", "s1")),
        &[("token", &t)],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(
        closed(&mut tcp).await,
        "the tunnel outlived its revoked token"
    );
}

#[tokio::test]
async fn a_tunnel_ends_when_its_token_expires() {
    let up = Upstream::start().await;
    let now = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(2_000_000_000));
    let n = now.clone();
    let gate = Gate::start_with_clock(
        "http_mode = \"serve\"",
        "",
        &format!("[oauth]\naccess_token_ttl = \"60s\"\n{}", config(&up.url())),
        std::sync::Arc::new(move || n.load(std::sync::atomic::Ordering::SeqCst)),
    )
    .await;
    let t = token(&gate, "rw-app", "s1").await;
    let mut tcp = open_tunnel(&gate, &t).await;
    now.fetch_add(61, std::sync::atomic::Ordering::SeqCst);
    assert!(closed(&mut tcp).await, "the tunnel outlived its token");
}

#[tokio::test]
async fn a_quiet_tunnel_is_closed() {
    let (gate, _up) = setup("websocket_idle_timeout = \"300ms\"").await;
    let t = token(&gate, "rw-app", "s1").await;
    let mut tcp = open_tunnel(&gate, &t).await;
    assert!(closed(&mut tcp).await, "an idle tunnel stayed open");
}

#[tokio::test]
async fn request_trailers_never_reach_the_upstream() {
    let (gate, _up) = setup("").await;
    let resp = raw(
        &gate,
        "POST /public/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
         Trailer: X-HTTP-Method-Override, X-Authgate-Subject\r\nConnection: close\r\n\r\n\
         5\r\nhello\r\n0\r\nX-HTTP-Method-Override: DELETE\r\nX-Authgate-Subject: root\r\n\r\n",
    )
    .await;
    let v = echoed(&resp);
    assert_eq!(v["body"], "hello");
    assert!(v["trailers"].is_null(), "{v}");
    assert!(v["headers"].get("trailer").is_none(), "{v}");
}

#[tokio::test]
async fn a_method_query_parameter_is_refused_or_authorized() {
    let (gate, up) = setup("").await;
    let rw = token(&gate, "rw-app", "s1").await;
    let c = gate.client();
    let resp = c
        .post(gate.url("/links/1?_method=DELETE"))
        .bearer_auth(&rw)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = c
        .post(gate.url("/override/1?_method=DELETE"))
        .bearer_auth(&rw)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn forward_auth_refuses_method_overrides_it_cannot_strip() {
    let (gate, _up) = setup("").await;
    let rw = token(&gate, "rw-app", "s1").await;
    let verify = |extra: Option<(&'static str, &'static str)>, uri: &'static str| {
        let mut req = gate
            .client()
            .get(gate.http_url("/auth/verify"))
            .header("x-original-method", "POST")
            .header("x-original-uri", uri)
            .bearer_auth(&rw);
        if let Some((k, v)) = extra {
            req = req.header(k, v);
        }
        req.send()
    };
    assert_eq!(verify(None, "/links/1").await.unwrap().status(), 200);
    for (header, uri) in [
        (Some(("x-http-method-override", "DELETE")), "/links/1"),
        (Some(("x_http_method_override", "DELETE")), "/links/1"),
        (None, "/links/1?_method=DELETE"),
    ] {
        let resp = verify(header, uri).await.unwrap();
        assert_eq!(resp.status(), 403, "{header:?} {uri}");
    }
    // Where overrides are authorized, the overriding method needs its right.
    let resp = verify(Some(("x-http-method-override", "DELETE")), "/override/1")
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));
}

#[tokio::test]
async fn a_trailing_dot_does_not_dodge_a_host_bound_route() {
    let (gate, _up) = setup("").await;
    for host in ["admin.example", "ADMIN.example.", "admin.example.:8080"] {
        let resp = raw(
            &gate,
            &format!("GET /site/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(
            status(&resp),
            401,
            "{host} reached the public route: {resp}"
        );
    }
    let resp = raw(
        &gate,
        "GET /site/x HTTP/1.1\r\nHost: www.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(echoed(&resp)["uri"], "/general/site/x");
}

#[tokio::test]
async fn health_probes_need_no_host() {
    let (gate, _up) = setup("").await;
    let resp = raw(&gate, "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&resp), 200, "{resp}");
}

#[tokio::test]
async fn connect_and_trace_are_refused() {
    let (gate, up) = setup("").await;
    for request in [
        "CONNECT upstream.example:443 HTTP/1.1\r\nHost: upstream.example:443\r\nConnection: close\r\n\r\n",
        "TRACE /public/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ] {
        let resp = raw(&gate, request).await;
        assert_eq!(status(&resp), 405, "{resp}");
    }
    assert_eq!(up.hits(), 0);
}
