//! Connection-level defences: a cap per client address, HTTP/2 PINGs that do not keep
//! an idle connection open, and ALPN that decides the protocol on TLS.

mod common;

use std::time::Duration;

use common::{route, Gate, Upstream, LIMIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get_on(tcp: &mut tokio::net::TcpStream) -> String {
    tcp.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(LIMIT, tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Whether the server closes `tcp` without answering a request.
async fn closed_at_once(tcp: &mut tokio::net::TcpStream) -> bool {
    let _ = tcp.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = vec![0u8; 1024];
    matches!(
        tokio::time::timeout(LIMIT, tcp.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn one_address_cannot_open_more_than_its_share() {
    let up = Upstream::start().await;
    let gate = Gate::start(
        "http_mode = \"serve\"\nmax_connections_per_ip = 2",
        "",
        &route("/", &up.url(), ""),
    )
    .await;
    let addr = gate.http.unwrap();
    let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(get_on(&mut first).await.starts_with("HTTP/1.1 200"));
    assert!(get_on(&mut second).await.starts_with("HTTP/1.1 200"));
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_at_once(&mut third).await,
        "a third connection was served"
    );
    // The first two still work; closing one gives its place back.
    assert!(get_on(&mut first).await.starts_with("HTTP/1.1 200"));
    drop(second);
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let mut next = tokio::net::TcpStream::connect(addr).await.unwrap();
        if !closed_at_once(&mut next).await {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn trusted_proxies_are_not_capped_per_address() {
    let up = Upstream::start().await;
    let gate = Gate::start(
        "http_mode = \"serve\"\nmax_connections_per_ip = 1\ntrusted_proxies = [\"127.0.0.1\"]",
        "",
        &route("/", &up.url(), ""),
    )
    .await;
    let addr = gate.http.unwrap();
    let mut conns = Vec::new();
    for _ in 0..3 {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(get_on(&mut c).await.starts_with("HTTP/1.1 200"));
        conns.push(c);
    }
}

#[tokio::test]
async fn http2_pings_do_not_keep_an_idle_connection_open() {
    let up = Upstream::start().await;
    let gate = Gate::start(
        "http_mode = \"serve\"\nidle_timeout = \"400ms\"",
        "",
        &route("/", &up.url(), ""),
    )
    .await;
    let tls = gate.tls_connect(&[&rustls::version::TLS13], &[b"h2"]).await;
    let (mut send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_millis(50))
            .keep_alive_while_idle(true)
            .handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get(format!("https://localhost:{}/x", gate.https.port()))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(send.send_request(req).await.unwrap().status(), 200);
    // Only pings from now on: the server must still end the connection.
    tokio::time::timeout(LIMIT, conn)
        .await
        .expect("pings kept an idle HTTP/2 connection open")
        .unwrap()
        .ok();
}

#[tokio::test]
async fn an_http2_preface_is_refused_where_alpn_chose_http1() {
    let up = Upstream::start().await;
    let gate = Gate::start("http_mode = \"serve\"", "", &route("/", &up.url(), "")).await;
    let mut tls = gate
        .tls_connect(&[&rustls::version::TLS13], &[b"http/1.1"])
        .await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    // The connection preface and an empty SETTINGS frame.
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(LIMIT, tls.read_to_end(&mut out))
        .await
        .expect("the connection stayed open");
    // An HTTP/2 server answers with its own SETTINGS frame (type 4 at byte 3).
    assert!(
        out.is_empty() || out.starts_with(b"HTTP/1.1 4"),
        "served HTTP/2: {out:?}"
    );
    assert_eq!(up.hits(), 0);
}

/// Sends `head`, then one body byte every `every` until the server answers; returns the
/// answer (empty if the server only closed).
async fn trickle<S>(mut stream: S, head: &str, every: Duration) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a trickled body kept the connection open"
        );
        match tokio::time::timeout(every, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&out).into_owned(),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) if out.is_empty() => {
                // Still waiting: one more byte of the body.
                if stream.write_all(b"x").await.is_err() {
                    return String::new();
                }
            }
            Err(_) => return String::from_utf8_lossy(&out).into_owned(),
        }
    }
}

const PACE: &str = "http_mode = \"serve\"\nbody_read_timeout = \"400ms\"\nbody_min_rate = 1000";

#[tokio::test]
async fn a_trickled_body_to_a_route_is_cut_off_with_408() {
    let up = Upstream::start().await;
    let gate = Gate::start(PACE, "", &route("/", &up.url(), "")).await;
    let tcp = tokio::net::TcpStream::connect(gate.http.unwrap())
        .await
        .unwrap();
    // One byte every 100 ms: never a 400 ms pause, but far below 1000 bytes/s.
    let resp = trickle(
        tcp,
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
        Duration::from_millis(100),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert!(resp.contains("request_timeout"), "{resp}");
    // A body that stops altogether is cut off after the gap.
    let tcp = tokio::net::TcpStream::connect(gate.http.unwrap())
        .await
        .unwrap();
    let resp = trickle(
        tcp,
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab",
        LIMIT,
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    // A body sent at a normal pace is unaffected.
    let resp = gate
        .client()
        .post(gate.url("/upload"))
        .body(vec![0u8; 200_000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_trickled_body_to_the_token_endpoint_is_cut_off() {
    let up = Upstream::start().await;
    let gate = Gate::start(
        PACE,
        "",
        &format!(
            "[[client]]\nid = \"c\"\nsecret = \"s\"\n{}",
            route("/", &up.url(), "")
        ),
    )
    .await;
    let tls = gate
        .tls_connect(&[&rustls::version::TLS13], &[b"http/1.1"])
        .await;
    let resp = trickle(
        tls,
        "POST /oauth/token HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 5000\r\n\r\ng",
        Duration::from_millis(100),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 4"), "{resp}");
}

/// Runs the machine's curl; returns its exit status and what `-w` printed.
fn curl(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(args)
        .output()
        .expect("curl is installed (scripts/test installs it)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn early_answers_reach_curl_over_http2() {
    let up = Upstream::start().await;
    let gate = Gate::start(
        "http_mode = \"serve\"",
        "",
        &format!(
            "[[client]]\nid = \"c\"\nsecret = \"s\"\n[[route]]\npath = \"/links\"\nupstream = \"{}\"\nperimeter = \"links\"\n",
            up.url()
        ),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    std::fs::write(&body, vec![b'a'; 100_000]).unwrap();
    let data = format!("@{}", body.display());
    let route = format!("https://localhost:{}/links/1", gate.https.port());
    let token = format!("https://localhost:{}/oauth/token", gate.https.port());
    let tries = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for _ in 0..15 {
            // Refused before the body is read: no token.
            seen.push(curl(&[
                "--http2",
                "-X",
                "POST",
                "--data-binary",
                &data,
                &route,
            ]));
            // hubiC's "JSON is refused" request.
            seen.push(curl(&[
                "--http2",
                "-u",
                "c:s",
                "-H",
                "content-type: application/json",
                "--data-binary",
                "{\"grant_type\":\"client_credentials\"}",
                &token,
            ]));
        }
        seen
    })
    .await
    .unwrap();
    for (i, (code, status)) in tries.iter().enumerate() {
        let want = if i % 2 == 0 { "401" } else { "400" };
        assert_eq!((*code, status.as_str()), (0, want), "try {i}: {tries:?}");
    }
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn hypers_own_error_answers_carry_hsts() {
    let up = Upstream::start().await;
    let gate = Gate::start(
        "http_mode = \"serve\"\nmax_header_bytes = 2048",
        "",
        &route("/", &up.url(), ""),
    )
    .await;
    let huge = "a".repeat(500 * 1024);
    for (what, request) in [
        (
            "NUL in a header",
            "GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\0b\r\n\r\n".to_string(),
        ),
        (
            "bad request line",
            "GET  / HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        ),
        (
            "head past the parser's buffer",
            format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {huge}\r\n\r\n"),
        ),
    ] {
        let mut tls = gate
            .tls_connect(&[&rustls::version::TLS13], &[b"http/1.1"])
            .await;
        let _ = tls.write_all(request.as_bytes()).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(LIMIT, tls.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
        assert!(text.starts_with("http/1.1 4"), "{what}: {text}");
        assert!(
            text.contains("strict-transport-security: max-age="),
            "{what}: {text}"
        );
    }
    // A request after a served one on the same connection: still hyper's, still HSTS.
    let mut tls = gate
        .tls_connect(&[&rustls::version::TLS13], &[b"http/1.1"])
        .await;
    tls.write_all(
        b"GET /x HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\0b\r\n\r\n",
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(LIMIT, tls.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
    assert_eq!(
        text.matches("strict-transport-security").count(),
        2,
        "{text}"
    );
    assert!(text.contains("http/1.1 400"), "{text}");
}

#[tokio::test]
async fn a_client_that_never_opens_its_window_cannot_hold_a_connection_with_pings() {
    let up = Upstream::start().await;
    let gate = Gate::start(
        "http_mode = \"serve\"\nidle_timeout = \"400ms\"",
        "",
        &route("/", &up.url(), ""),
    )
    .await;
    let tls = gate.tls_connect(&[&rustls::version::TLS13], &[b"h2"]).await;
    let (mut send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .initial_stream_window_size(0)
            .keep_alive_interval(Duration::from_millis(50))
            .keep_alive_while_idle(true)
            .handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get(format!(
        "https://localhost:{}/big/100000",
        gate.https.port()
    ))
    .body(http_body_util::Empty::<bytes::Bytes>::new())
    .unwrap();
    // The head arrives; the body never can. Pings keep the socket busy.
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    tokio::time::timeout(LIMIT, conn)
        .await
        .expect("a stalled HTTP/2 request kept its connection open")
        .unwrap()
        .ok();
    drop(resp);
}
