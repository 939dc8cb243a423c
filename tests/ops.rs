//! Operations: Prometheus metrics, request ids, rate limits, forward-auth (in process and
//! behind real nginx `auth_request`), hot reload under load, bad reloads, certificate
//! rotation, and SIGHUP on the real binary.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{json, post_form, token, Gate, Upstream, LIMIT};

const CLIENTS: &str = r#"
[[client]]
id = "reader"
secret = "s1"
scopes = "items.r"
[[client]]
id = "writer"
secret = "s2"
scopes = "items.rw"
"#;

fn api_route(upstream: &str, extra: &str) -> String {
    format!(
        "[[route]]\npath = \"/api\"\nupstream = \"{upstream}\"\nperimeter = \"items\"\n{extra}\n"
    )
}

/// `method path` with `token` as Bearer.
async fn call(gate: &Gate, method: &str, path: &str, token: &str) -> reqwest::Response {
    gate.client()
        .request(method.parse().unwrap(), gate.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// A gateway with `section` (TOML), the two clients and the `/api` route to `up`.
async fn api_gate(up: &Upstream, section: &str) -> Gate {
    let rest = format!("{section}\n{CLIENTS}{}", api_route(&up.url(), ""));
    Gate::start("http_mode = \"serve\"", "", &rest).await
}

async fn scrape(addr: SocketAddr) -> String {
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}/metrics"))
        .timeout(LIMIT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    resp.text().await.unwrap()
}

/// The value of the sample `series` (name with labels), 0 if absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn metrics_are_scraped_and_change_with_traffic() {
    let up = Upstream::start().await;
    let gate = api_gate(&up, "[metrics]\nlisten = \"127.0.0.1:0\"").await;
    let ops = gate.metrics.expect("metrics listener");
    let before = scrape(ops).await;
    assert_eq!(
        value(
            &before,
            r#"authgate_requests_total{route="/api",status="2xx",auth="allowed"}"#
        ),
        0.0
    );
    assert!(before.contains("authgate_config_info{hash=\""));

    let c = gate.client();
    assert_eq!(
        c.get(gate.url("/api/x")).send().await.unwrap().status(),
        401
    );
    let reader = token(&gate, "reader", "s1").await;
    for _ in 0..3 {
        let r = call(&gate, "GET", "/api/x", &reader).await;
        assert_eq!(r.status(), 200);
    }
    let r = call(&gate, "POST", "/api/x", &reader).await;
    assert_eq!(r.status(), 403);
    let r = c
        .get(gate.url("/api/x"))
        .bearer_auth("agat_bogus")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A failed TLS handshake: plain bytes on the HTTPS port.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(gate.https).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let _ = tokio::time::timeout(LIMIT, tcp.read(&mut buf)).await;
    }

    // The handshake failure is counted just after the alert is sent: wait for it.
    let deadline = std::time::Instant::now() + LIMIT;
    let after = loop {
        let text = scrape(ops).await;
        if value(&text, "authgate_tls_handshake_failures_total") >= 1.0 {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no handshake failure counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let expect = [
        (
            r#"authgate_requests_total{route="/api",status="4xx",auth="missing_token"}"#,
            1.0,
        ),
        (
            r#"authgate_requests_total{route="/api",status="2xx",auth="allowed"}"#,
            3.0,
        ),
        (
            r#"authgate_requests_total{route="/api",status="4xx",auth="insufficient_scope"}"#,
            1.0,
        ),
        (
            r#"authgate_requests_total{route="/api",status="4xx",auth="invalid_token"}"#,
            1.0,
        ),
        (
            r#"authgate_requests_total{route="oauth",status="2xx",auth=""}"#,
            1.0,
        ),
        (
            r#"authgate_tokens_issued_total{grant="client_credentials",client_id="reader"}"#,
            1.0,
        ),
        (
            r#"authgate_upstream_latency_seconds_count{route="/api"}"#,
            3.0,
        ),
        ("authgate_token_cache_misses_total", 1.0),
        ("authgate_token_cache_hits_total", 3.0),
        ("authgate_tls_handshake_failures_total", 1.0),
        (
            r#"authgate_store_query_duration_seconds_count{op="insert_tokens"}"#,
            1.0,
        ),
    ];
    for (series, want) in expect {
        assert_eq!(value(&after, series), want, "{series}\n{after}");
    }
    assert!(value(&after, "authgate_token_cache_entries") >= 1.0);
    assert!(value(&after, "authgate_open_connections") >= 1.0);
    assert!(after.ends_with("# EOF\n"));

    // The health endpoints are on the metrics listener too; nothing else is.
    let plain = reqwest::Client::new();
    let health = plain
        .get(format!("http://{ops}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let other = plain
        .get(format!("http://{ops}/api/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    // With a listener of its own, /metrics is not served on the main listeners.
    let main = c.get(gate.url("/metrics")).send().await.unwrap();
    assert_eq!(main.status(), 404);
}

#[tokio::test]
async fn metrics_on_the_main_listener_are_for_allowed_addresses_only() {
    let up = Upstream::start().await;
    let open = Gate::start(
        "http_mode = \"serve\"",
        "",
        &format!(
            "[metrics]\nallow = [\"127.0.0.0/8\"]\n{}",
            common::route("/", &up.url(), "")
        ),
    )
    .await;
    let resp = open
        .client()
        .get(open.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("authgate_open_connections"), "{text}");
    assert_eq!(up.hits(), 0);

    // Not allowed (and by default, when allow is empty): the path is routed like any
    // other, here to the upstream.
    for metrics in ["[metrics]\nallow = [\"10.0.0.0/8\"]\n", ""] {
        let closed = Gate::start(
            "http_mode = \"serve\"",
            "",
            &format!("{metrics}{}", common::route("/", &up.url(), "")),
        )
        .await;
        let resp = closed
            .client()
            .get(closed.url("/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(json(resp).await["uri"], "/metrics");
    }
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn request_ids_are_kept_or_generated_and_reach_upstream_and_error_bodies() {
    let up = Upstream::start().await;
    let gate = Gate::start(
        "http_mode = \"serve\"",
        "",
        &format!(
            "{CLIENTS}{}{}",
            api_route(&up.url(), ""),
            common::route("/open", &up.url(), "")
        ),
    )
    .await;
    let c = gate.client();

    // Kept: the upstream and the response carry the client's id.
    let resp = c
        .get(gate.url("/open/a"))
        .header("x-request-id", "req-1234:abc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "req-1234:abc");
    let echoed = json(resp).await;
    assert_eq!(echoed["headers"]["x-request-id"], "req-1234:abc");

    // Generated when missing or not sane, and different each time.
    let mut seen = std::collections::HashSet::new();
    for sent in [None, Some("has space"), Some("<x>")] {
        let mut req = c.get(gate.url("/open/b"));
        if let Some(s) = sent {
            req = req.header("x-request-id", s);
        }
        let resp = req.send().await.unwrap();
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(id.len(), 32, "{id}");
        let echoed = json(resp).await;
        assert_eq!(echoed["headers"]["x-request-id"], id.as_str());
        assert!(seen.insert(id));
    }

    // Error bodies name it: gateway errors and OAuth errors.
    let resp = c
        .get(gate.url("/api/x"))
        .header("x-request-id", "err-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["x-request-id"], "err-1");
    assert_eq!(json(resp).await["request_id"], "err-1");
    let resp = c
        .post(gate.url("/oauth/token"))
        .header("x-request-id", "err-2")
        .basic_auth("reader", Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(json(resp).await["request_id"], "err-2");
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_and_recover() {
    let up = Upstream::start().await;
    let gate = Gate::start(
        "http_mode = \"serve\"",
        "",
        &format!(
            "[rate_limits]\noauth_per_ip = {{ rate = \"1/h\", burst = 3 }}\n\
             oauth_per_client = {{ rate = \"off\" }}\n{CLIENTS}{}{}",
            api_route(&up.url(), "rate_limit = { rate = \"1/h\", burst = 2 }"),
            common::route(
                "/open",
                &up.url(),
                "rate_limit = { rate = \"1/s\", burst = 1 }"
            ),
        ),
    )
    .await;
    let c = gate.client();

    // OAuth endpoints, per address: the burst, then 429.
    let reader = token(&gate, "reader", "s1").await;
    let writer = token(&gate, "writer", "s2").await;
    let _ = token(&gate, "reader", "s1").await;
    let refused = post_form(
        &gate,
        "/oauth/token",
        Some(("reader", "s1")),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(refused.status(), 429);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3000..=3600).contains(&wait), "{wait}");
    let body = json(refused).await;
    assert_eq!(body["error"], "too_many_requests");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("retry"));

    // A route limited per client: the burst of 2, then 429; another client is not
    // affected.
    for _ in 0..2 {
        let r = call(&gate, "GET", "/api/x", &reader).await;
        assert_eq!(r.status(), 200);
    }
    let r = call(&gate, "GET", "/api/x", &reader).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));

    let r = call(&gate, "GET", "/api/x", &writer).await;
    assert_eq!(r.status(), 200);

    // A public route, limited per address (1/s): refused within a few requests (one
    // may land after a refill on a slow machine), then served again after Retry-After.
    assert_eq!(c.get(gate.url("/open")).send().await.unwrap().status(), 200);
    let mut wait = None;
    for _ in 0..5 {
        let r = c.get(gate.url("/open")).send().await.unwrap();
        if r.status() == 429 {
            wait = Some(
                r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
            );
            break;
        }
    }
    let wait = wait.expect("never refused");
    assert_eq!(wait, 1);
    tokio::time::sleep(Duration::from_millis(wait * 1000 + 50)).await;
    assert_eq!(c.get(gate.url("/open")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn client_secrets_are_guarded_by_failure_counts_per_client_id_and_address() {
    let up = Upstream::start().await;
    let limits =
        "[rate_limits]\nclient_failures_per_id_and_ip = 3\nclient_failures_backoff = \"1h\"\n\
                  client_failures_backoff_max = \"2h\"";
    let gate = api_gate(&up, limits).await;
    let issue = |id: &'static str, secret: &'static str| {
        post_form(
            &gate,
            "/oauth/token",
            Some((id, secret)),
            &[("grant_type", "client_credentials")],
        )
    };
    // Many good requests at once are never refused: only failures count.
    let burst: Vec<_> = (0..20).map(|_| issue("reader", "s1")).collect();
    for r in futures_util::future::join_all(burst).await {
        assert_eq!(r.status(), 200);
    }
    for _ in 0..3 {
        assert_eq!(issue("reader", "guess").await.status(), 401);
    }
    // Even the right secret waits now, from this address; the other client is not
    // affected.
    let r = issue("reader", "s1").await;
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait > 3000, "{wait}");
    assert_eq!(json(r).await["error"], "too_many_requests");
    assert_eq!(issue("writer", "s2").await.status(), 200);
}

/// `Retry-After` of a 429, in seconds.
fn retry_after(r: &reqwest::Response) -> i64 {
    r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn wrong_secrets_from_one_address_never_lock_the_client_out_of_another() {
    let up = Upstream::start().await;
    let now = Arc::new(AtomicI64::new(2_000_000_000));
    let n = now.clone();
    // The default limits.
    let rest = format!("{CLIENTS}{}", api_route(&up.url(), ""));
    let clock = Arc::new(move || n.load(Ordering::SeqCst));
    let gate = Gate::start_with_clock("http_mode = \"serve\"", "", &rest, clock).await;
    // Two client addresses: all of 127.0.0.0/8 is loopback.
    let from = |ip: &str| {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        gate.client_builder().local_address(ip).build().unwrap()
    };
    let (attacker, legit) = (from("127.0.0.2"), from("127.0.0.1"));
    let issue = |c: &reqwest::Client, secret: &str| {
        c.post(gate.url("/oauth/token"))
            .basic_auth("reader", Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    // The attacker fails 25 times, waiting out each refusal.
    let (mut failed, mut waits) = (0, Vec::new());
    while failed < 25 {
        let r = issue(&attacker, "guess").await.unwrap();
        match r.status().as_u16() {
            401 => failed += 1,
            429 => {
                let wait = retry_after(&r);
                waits.push(wait);
                now.fetch_add(wait, Ordering::SeqCst);
            }
            other => panic!("unexpected {other}"),
        }
        let ok = issue(&legit, "s1").await.unwrap();
        assert_eq!(
            ok.status(),
            200,
            "the client works from its own address after {failed} failures elsewhere"
        );
    }
    // Ten free failures, then 1 s doubling per failure, capped at 15 min.
    let expected: Vec<i64> = (0..15).map(|k| (1i64 << k).min(900)).collect();
    assert_eq!(waits, expected);
    // The attacker's address waits even with the right secret.
    let r = issue(&attacker, "s1").await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(retry_after(&r), 900);
    assert_eq!(json(r).await["error"], "too_many_requests");
    // Once it has waited, the right secret works from there too, and clears its count.
    now.fetch_add(900, Ordering::SeqCst);
    assert_eq!(issue(&attacker, "s1").await.unwrap().status(), 200);
    assert_eq!(issue(&attacker, "guess").await.unwrap().status(), 401);
    assert_eq!(issue(&attacker, "s1").await.unwrap().status(), 200);
}

fn forward_auth_config(upstream: &str, headers: &str) -> String {
    format!(
        "[forward_auth]\npath = \"/auth/verify\"\nheaders = \"{headers}\"\n{CLIENTS}{}{}",
        api_route(upstream, ""),
        "[[route]]\npath = \"/pub\"\nupstream = \"http://127.0.0.1:9\"\npublic = true\n"
    )
}

#[tokio::test]
async fn forward_auth_decides_like_the_proxy() {
    let up = Upstream::start().await;
    let config = forward_auth_config(&up.url(), "x-forwarded");
    let gate = Gate::start("http_mode = \"serve\"", "", &config).await;
    let reader = token(&gate, "reader", "s1").await;
    let c = gate.client();
    let verify = |method: &'static str, uri: &'static str, token: Option<&str>| {
        let mut req = c
            .get(gate.http_url("/auth/verify"))
            .header("x-forwarded-method", method)
            .header("x-forwarded-uri", uri)
            .header("x-forwarded-host", "api.example");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };

    let ok = verify("GET", "/api/items?x=1", Some(&reader))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-authgate-client-id"], "reader");
    assert_eq!(ok.headers()["x-authgate-scope"], "items.r");

    let missing = verify("GET", "/api/items", None).await.unwrap();
    assert_eq!(missing.status(), 401);
    assert!(missing.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer realm="));

    let scope = verify("DELETE", "/api/items/1", Some(&reader))
        .await
        .unwrap();
    assert_eq!(scope.status(), 403);
    assert!(scope.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("error=\"insufficient_scope\""));

    let public = verify("POST", "/pub/x", None).await.unwrap();
    assert_eq!(public.status(), 200);
    assert!(!public.headers().contains_key("x-authgate-client-id"));

    let unrouted = verify("GET", "/elsewhere", Some(&reader)).await.unwrap();
    assert_eq!(unrouted.status(), 403);

    let bare = c.get(gate.http_url("/auth/verify")).send().await.unwrap();
    assert_eq!(bare.status(), 400);
    // Nothing was forwarded: forward-auth only decides.
    assert_eq!(up.hits(), 0);
}

/// nginx from Debian (scripts/test installs `nginx-light`); skipped outside CI when it
/// is missing.
fn nginx() -> Option<std::path::PathBuf> {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if std::path::Path::new(p).exists() {
            return Some(p.into());
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "nginx is required under CI (scripts/test installs nginx-light)"
    );
    eprintln!("skipped: nginx is not installed");
    None
}

struct Nginx(std::process::Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn forward_auth_behind_real_nginx_auth_request() {
    let Some(nginx) = nginx() else { return };
    let up = Upstream::start().await;
    let config = forward_auth_config(&up.url(), "x-original");
    let gate = Gate::start("http_mode = \"serve\"", "", &config).await;
    let reader = token(&gate, "reader", "s1").await;
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let d = dir.path().display();
    let conf = format!(
        r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{}}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      auth_request /_authgate;
      auth_request_set $authgate_client $upstream_http_x_authgate_client_id;
      auth_request_set $authgate_subject $upstream_http_x_authgate_subject;
      auth_request_set $authgate_scope $upstream_http_x_authgate_scope;
      proxy_set_header X-Authgate-Client-Id $authgate_client;
      proxy_set_header X-Authgate-Subject $authgate_subject;
      proxy_set_header X-Authgate-Scope $authgate_scope;
      proxy_pass {upstream};
    }}
    location = /_authgate {{
      internal;
      proxy_pass http://{authgate}/auth/verify;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
    }}
  }}
}}
"#,
        upstream = up.url(),
        authgate = gate.http.unwrap(),
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
    let child = std::process::Command::new(nginx)
        .args(["-p", &d.to_string(), "-e", "error.log", "-c", "nginx.conf"])
        .spawn()
        .unwrap();
    let _nginx = Nginx(child);
    let c = reqwest::Client::builder().timeout(LIMIT).build().unwrap();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    // Wait (bounded) for nginx to listen.
    let deadline = std::time::Instant::now() + LIMIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(std::time::Instant::now() < deadline, "nginx did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A client's own identity headers never reach the upstream.
    let ok = c
        .get(url("/api/items"))
        .bearer_auth(&reader)
        .header("x-authgate-subject", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let echoed = json(ok).await;
    assert_eq!(echoed["headers"]["x-authgate-client-id"], "reader");
    assert_eq!(echoed["headers"]["x-authgate-scope"], "items.r");
    assert!(
        echoed["headers"].get("x-authgate-subject").is_none(),
        "{echoed}"
    );
    // A client cannot choose what is decided with headers of either family.
    let spoofed = c
        .delete(url("/api/items/1"))
        .bearer_auth(&reader)
        .header("x-forwarded-uri", "/pub/x")
        .header("x-forwarded-method", "GET")
        .header("x-original-uri", "/pub/x")
        .header("x-original-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), 403);
    assert_eq!(c.get(url("/api/items")).send().await.unwrap().status(), 401);
    assert_eq!(
        c.delete(url("/api/items/1"))
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(up.hits(), 1);
}

/// A gateway whose configuration lives in a file, with `routes` under it.
async fn file_gate(dir: tempfile::TempDir, base: &str, routes: &str) -> (Gate, std::path::PathBuf) {
    let path = dir.path().join("authgate.toml");
    std::fs::write(&path, format!("{base}{routes}")).unwrap();
    (Gate::from_file(&path, dir).await, path)
}

fn names() -> Vec<String> {
    vec!["localhost".to_string(), "127.0.0.1".to_string()]
}

fn file_base(dir: &std::path::Path, extra: &str) -> String {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if !cert.exists() {
        authgate::certs::generate(&cert, &key, &names(), false).unwrap();
    }
    format!(
        "[server]\nhttps = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nhttp_mode = \"serve\"\n\
         [tls]\ncert = {cert:?}\nkey = {key:?}\n\
         [store]\nurl = \"sqlite://{}\"\n[reload]\nwatch = \"off\"\n{extra}\n{CLIENTS}",
        dir.join("store.db").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_fail_no_request() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let base = file_base(dir.path(), "");
    let routes = |n: usize| {
        format!(
            "{}[[route]]\npath = \"/v{n}\"\nupstream = \"{}\"\npublic = true\n",
            api_route(&up.url(), ""),
            up.url()
        )
    };
    let (gate, path) = file_gate(dir, &base, &routes(0)).await;
    let reader = token(&gate, "reader", "s1").await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (c, url, reader) = (gate.client(), gate.url("/api/items"), reader.clone());
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let outcome = match c.get(&url).bearer_auth(&reader).send().await {
                    Ok(r) if r.status() == 200 => {
                        r.bytes().await.map(|_| ()).map_err(|e| e.to_string())
                    }
                    Ok(r) => Err(format!("status {}", r.status())),
                    Err(e) => Err(e.to_string()),
                };
                match outcome {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    for n in 1..=20 {
        std::fs::write(&path, format!("{base}{}", routes(n))).unwrap();
        gate.reloader.reload("test").await.unwrap();
        // The new route answers at once; the previous one is gone.
        let c = gate.client();
        assert_eq!(
            c.get(gate.url(&format!("/v{n}")))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        assert_eq!(
            c.get(gate.url(&format!("/v{}", n - 1)))
                .send()
                .await
                .unwrap()
                .status(),
            404
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        tokio::time::timeout(LIMIT, t).await.unwrap().unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(ok.load(Ordering::Relaxed) > 20);
    let _ = gate;
}

#[tokio::test]
async fn a_bad_reload_is_refused_and_the_old_configuration_keeps_serving() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let base = file_base(dir.path(), "[metrics]\nlisten = \"127.0.0.1:0\"");
    let (gate, path) = file_gate(dir, &base, &api_route(&up.url(), "")).await;
    let reader = token(&gate, "reader", "s1").await;
    let get = || {
        gate.client()
            .get(gate.url("/api/items"))
            .bearer_auth(&reader)
            .send()
    };
    assert_eq!(get().await.unwrap().status(), 200);
    let hash = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("authgate_config_info{"))
            .unwrap()
            .to_owned()
    };
    let first = hash(&scrape(gate.metrics.unwrap()).await);

    for bad in [
        "[server\nbroken toml".to_string(),
        format!("{base}[[route]]\npath = \"/x\"\nupstream = \"ftp://nope\"\npublic = true\n"),
        format!("{base}{}", api_route(&up.url(), "perimeter_typo = 1")),
    ] {
        std::fs::write(&path, &bad).unwrap();
        let err = gate.reloader.reload("test").await.unwrap_err();
        assert!(!err.to_string().is_empty());
        assert_eq!(get().await.unwrap().status(), 200, "after {bad}");
    }
    let text = scrape(gate.metrics.unwrap()).await;
    assert_eq!(
        value(&text, r#"authgate_config_reloads_total{result="failure"}"#),
        3.0
    );
    assert_eq!(hash(&text), first);

    // A good file again: applied, and the hash changes.
    std::fs::write(
        &path,
        format!("{base}{}", common::route("/api", &up.url(), "")),
    )
    .unwrap();
    gate.reloader.reload("test").await.unwrap();
    assert_eq!(
        gate.client()
            .get(gate.url("/api/items"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let text = scrape(gate.metrics.unwrap()).await;
    assert_eq!(
        value(&text, r#"authgate_config_reloads_total{result="success"}"#),
        1.0
    );
    assert_ne!(hash(&text), first);
}

/// The certificate a new TLS handshake gets.
async fn served_cert(gate: &Gate) -> Vec<u8> {
    #[derive(Debug)]
    struct AnyCert;
    impl rustls::client::danger::ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &rustls_pki_types::CertificateDer<'_>,
            _: &[rustls_pki_types::CertificateDer<'_>],
            _: &rustls_pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls_pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls_pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &rustls_pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            authgate::tls::provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    let cfg = rustls::ClientConfig::builder_with_provider(authgate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(gate.https).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn rotated_certificates_are_seen_by_new_handshakes_via_the_watcher() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let base = file_base(dir.path(), "").replace("watch = \"off\"", "watch = \"50ms\"");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (gate, _path) = file_gate(dir, &base, &common::route("/", &up.url(), "")).await;
    let first = served_cert(&gate).await;
    // An open connection before the rotation keeps working after it.
    let c = gate.client();
    assert_eq!(c.get(gate.url("/a")).send().await.unwrap().status(), 200);

    authgate::certs::generate(&cert, &key, &names(), true).unwrap();
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        if served_cert(&gate).await != first {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(c.get(gate.url("/b")).send().await.unwrap().status(), 200);

    // A broken key is refused; the last good pair keeps serving.
    std::fs::write(&key, "not a key").unwrap();
    let err = gate.reloader.reload("test").await.unwrap_err();
    assert!(err.to_string().contains("tls.key"), "{err}");
    let now = served_cert(&gate).await;
    assert_ne!(now, first);
    let fresh = common::process::insecure_client();
    assert_eq!(
        fresh.get(gate.url("/c")).send().await.unwrap().status(),
        200
    );
}

#[cfg(unix)]
#[test]
fn sighup_reloads_the_binary_and_log_lines_carry_the_request_id() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let up = runtime.block_on(Upstream::start());
    let dir = tempfile::tempdir().unwrap();
    let config = |public: bool| {
        format!(
            "[server]\nhttps = \"127.0.0.1:0\"\nhttp = \"off\"\n\
             [tls]\nself_signed_if_missing = true\n[log]\nformat = \"json\"\n\
             [reload]\nwatch = \"off\"\n\
             [[route]]\npath = \"/api\"\nupstream = \"{}\"\n{}\n",
            up.url(),
            if public {
                "public = true"
            } else {
                "scopes = []"
            }
        )
    };
    let (child, addr, _, logs) = common::process::spawn_serving(dir.path(), &config(false));
    let client = common::process::insecure_client();
    let get = |id: &'static str| {
        runtime.block_on(async {
            client
                .get(format!("https://{addr}/api/x"))
                .header("x-request-id", id)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    assert_eq!(get("before-hup"), 401);

    std::fs::write(dir.path().join("authgate.toml"), config(true)).unwrap();
    let pid = child.0.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = std::time::Instant::now() + LIMIT;
    let mut lines = Vec::new();
    loop {
        let line = logs
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .expect("no reload line");
        let done = line.contains("configuration reloaded");
        lines.push(line);
        if done {
            break;
        }
    }
    assert_eq!(get("after-hup"), 200);

    // Every line logged for a request carries its id in the request span.
    std::thread::sleep(Duration::from_millis(200));
    while let Ok(line) = logs.try_recv() {
        lines.push(line);
    }
    let request_lines: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["target"] == "authgate::access")
        .collect();
    let ids: Vec<&str> = request_lines
        .iter()
        .map(|v| v["span"]["request_id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(ids, vec!["before-hup", "after-hup"], "{lines:?}");
    drop(child);
}
