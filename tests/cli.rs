//! The real binary: config errors and exit codes, `certs generate`, `check-config`, and
//! graceful shutdown on SIGTERM.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::process::{insecure_client, spawn_serving, wait_exit};
use common::{Upstream, LIMIT};

fn authgate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(args)
        .current_dir(dir)
        .env_remove("AUTHGATE_CONFIG")
        .output()
        .unwrap()
}

fn check(dir: &Path, config: &str) -> (i32, String) {
    std::fs::write(dir.join("bad.toml"), config).unwrap();
    let out = authgate(dir, &["--config", "bad.toml", "check-config"]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn bad_config_files_name_file_key_and_reason_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[server]\nlisten = \"x\"", "bad.toml: server.listen: unknown field `listen`"),
        ("[server]\nmax_connections = \"many\"", "bad.toml: server.max_connections: invalid type"),
        ("[server]\nhttps = \"127.0.0.1\"", "bad.toml: server.https: \"127.0.0.1\" is not an address"),
        (
            "[tls]\ncert = \"missing.pem\"\nkey = \"missing.key\"",
            "bad.toml: tls.cert: file \"missing.pem\" does not exist",
        ),
        ("[server\n", "bad.toml: not valid TOML"),
        (
            "[server]\nhttps = \"off\"\nhttp_mode = \"serve\"\n[[route]]\npath = \"/\"\nupstream = \"http://a\"",
            "bad.toml: route[0].perimeter: missing",
        ),
    ];
    for (config, expected) in cases {
        let (code, stderr) = check(dir.path(), config);
        assert_eq!(code, 2, "{config:?}: {stderr}");
        assert!(stderr.contains(expected), "{config:?}:\n{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let out = authgate(dir.path(), &["--config", "nope.toml", "check-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.toml: cannot read"));
}

/// `reuse_tokens` needs keys the store does not hold: without them neither `check-config`
/// nor `serve` gets past the configuration, and the error names where keys come from;
/// with them, only their ids are ever shown.
#[test]
fn reuse_clients_need_keys_and_keys_never_print() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[server]\nhttps = \"off\"\nhttp = \"127.0.0.1:0\"\nhttp_mode = \"serve\"\n\
        [[client]]\nid = \"pos\"\nsecret = \"s\"\ngrants = [\"authorization_code\"]\n\
        redirect_uris = [\"https://pos.example/cb\"]\nreuse_tokens = true\n";
    std::fs::write(dir.path().join("reuse.toml"), config).unwrap();
    let out = authgate(dir.path(), &["--config", "reuse.toml", "check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("reuse.toml: client[0].reuse_tokens:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("oauth.secrets_key_file")
            && stderr.contains("AUTHGATE_OAUTH__SECRETS_KEYS"),
        "{stderr}"
    );
    // `serve` stops before it binds (the wait is bounded: a gateway that started fails
    // the test rather than hanging it).
    let mut serving = common::process::Running(
        Command::new(env!("CARGO_BIN_EXE_authgate"))
            .args(["--config", "reuse.toml", "serve"])
            .current_dir(dir.path())
            .env_remove("AUTHGATE_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert_eq!(wait_exit(&mut serving), 2);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut serving.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("client[0].reuse_tokens"), "{stderr}");

    let key = "c2VjcmV0cyBhdCByZXN0LCBrZXB0IG91dCBvZiB0aGU=";
    std::fs::write(
        dir.path().join("secrets.keys"),
        format!("new:{key}\nold:{key}\n"),
    )
    .unwrap();
    let with_file = format!("{config}[oauth]\nsecrets_key_file = \"secrets.keys\"\n");
    std::fs::write(dir.path().join("reuse.toml"), &with_file).unwrap();
    let out = authgate(dir.path(), &["--config", "reuse.toml", "check-config"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("secrets keys: new, old (the first seals)"),
        "{stdout}"
    );
    assert!(!stdout.contains(key), "{stdout}");
    let out = Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(["--config", "reuse.toml", "check-config"])
        .current_dir(dir.path())
        .env("AUTHGATE_OAUTH__SECRETS_KEYS", format!("k1:{}", &key[..20]))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("oauth.secrets_key_file: AUTHGATE_OAUTH__SECRETS_KEYS is set too"),
        "{stderr}"
    );
    std::fs::write(dir.path().join("reuse.toml"), config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(["--config", "reuse.toml", "check-config"])
        .current_dir(dir.path())
        .env("AUTHGATE_OAUTH__SECRETS_KEYS", format!("k1:{}", &key[..20]))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr
            .contains("environment variable AUTHGATE_OAUTH__SECRETS_KEYS: entry 1 (key id \"k1\")"),
        "{stderr}"
    );
    assert!(!stderr.contains(&key[..20]), "{stderr}");
}

#[test]
fn garbage_certificate_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.pem"), "garbage").unwrap();
    std::fs::write(dir.path().join("k.pem"), "garbage").unwrap();
    let (code, stderr) = check(
        dir.path(),
        "[server]\nhttps = \"127.0.0.1:0\"\nhttp = \"off\"\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"",
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("tls.cert"), "{stderr}");
}

#[test]
fn shipped_config_checks_and_certs_generate_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::copy(
        root.join("config/authgate.toml"),
        dir.path().join("config/authgate.toml"),
    )
    .unwrap();

    let out = authgate(dir.path(), &["check-config"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("will be generated"), "{stdout}");

    let out = authgate(dir.path(), &["certs", "generate"]);
    assert_eq!(out.status.code(), Some(0));
    let cert = std::fs::read(dir.path().join("certs/dev-cert.pem")).unwrap();
    let out = authgate(dir.path(), &["certs", "generate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert_eq!(
        std::fs::read(dir.path().join("certs/dev-cert.pem")).unwrap(),
        cert
    );
    let out = authgate(dir.path(), &["certs", "generate", "--force"]);
    assert_eq!(out.status.code(), Some(0));
    assert_ne!(
        std::fs::read(dir.path().join("certs/dev-cert.pem")).unwrap(),
        cert
    );

    let out = authgate(dir.path(), &["check-config"]);
    assert_eq!(out.status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_0() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[server]\nhttps = \"127.0.0.1:0\"\nhttp = \"off\"\nshutdown_grace = \"10s\"\n\
         [tls]\nself_signed_if_missing = true\n[log]\nformat = \"json\"\n\
         [[route]]\npath = \"/\"\nupstream = \"{}\"\npublic = true\n",
        up.url()
    );
    let (mut child, addr, early, logs) = spawn_serving(dir.path(), &config);
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(LIMIT)
        .build()
        .unwrap();
    let url = format!("https://{addr}/slow/1000");
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.get(url).send().await }
    });
    // Let the request reach the upstream, then ask authgate to stop.
    let deadline = Instant::now() + LIMIT;
    while up.hits() == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let kill = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200, "the in-flight request was cut");
    let code = tokio::task::spawn_blocking(move || wait_exit(&mut child))
        .await
        .unwrap();
    assert_eq!(code, 0);

    let lines: Vec<String> = early.into_iter().chain(logs.try_iter()).collect();
    let all = lines.join("\n");
    assert!(all.contains("SIGTERM received"), "{all}");
    assert!(all.contains("drained; exiting"), "{all}");
    // One access line for the request, with the fields operators rely on.
    let access = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["target"] == "authgate::access")
        .expect("no access log line");
    assert_eq!(access["method"], "GET");
    assert_eq!(access["path"], "/slow/1000");
    assert_eq!(access["status"], 200);
    assert!(access["latency_us"].as_u64().unwrap() >= 900_000);
    assert_eq!(access["upstream"], up.url());
    // The generated development certificate was announced.
    assert!(all.contains("self-signed development certificate"), "{all}");
}

fn serve_config(dir: &Path, extra: &str) -> String {
    format!(
        "[server]\nhttps = \"127.0.0.1:0\"\nhttp = \"off\"\n\
         [tls]\nself_signed_if_missing = true\n[log]\nformat = \"json\"\n\
         [store]\nurl = \"sqlite://{}\"\n{extra}",
        dir.join("data/authgate.db").display()
    )
}

async fn client_credentials(
    http: &reqwest::Client,
    addr: std::net::SocketAddr,
    id: &str,
    secret: &str,
) -> reqwest::Response {
    http.post(format!("https://{addr}/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
}

fn field<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_and_token_commands_work_against_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let config = serve_config(dir.path(), "");
    std::fs::write(dir.path().join("authgate.toml"), &config).unwrap();
    let cmd = |args: &[&str]| {
        let mut all = vec!["--config", "authgate.toml"];
        all.extend_from_slice(args);
        authgate(dir.path(), &all)
    };
    let out = cmd(&[
        "client",
        "add",
        "--id",
        "hub-app",
        "--scopes",
        "orders.read",
        "--subject",
        "user-42",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let secret = field(&stdout, "client_secret:").to_owned();
    assert!(secret.starts_with("agcs_"));
    assert!(stdout.contains("only this once"));
    let out = cmd(&["client", "add", "--id", "hub-app"]);
    assert_eq!(out.status.code(), Some(1), "a duplicate id is refused");
    let out = cmd(&["client", "add", "--id", "bad", "--grant", "password"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("grants"));
    let listed = String::from_utf8_lossy(&cmd(&["client", "list"]).stdout).to_string();
    assert!(listed.starts_with("hub-app\t"), "{listed}");
    assert!(!listed.contains(&secret), "the secret is never shown again");

    let (mut child, addr, _early, _logs) = spawn_serving(dir.path(), &config);
    let http = insecure_client();
    let resp = client_credentials(&http, addr, "hub-app", &secret).await;
    assert_eq!(resp.status(), 200);
    let token = common::json(resp).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let listed =
        String::from_utf8_lossy(&cmd(&["token", "list", "--client", "hub-app"]).stdout).to_string();
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(
        listed.contains("\taccess\tactive\thub-app\t") && listed.contains("sub=user-42"),
        "{listed}"
    );
    assert!(!listed.contains(&token), "token values are never stored");
    let out = cmd(&["token", "revoke", &token]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "revoked");
    let listed = String::from_utf8_lossy(&cmd(&["token", "list"]).stdout).to_string();
    assert!(listed.contains("\trevoked\t"), "{listed}");

    let out = cmd(&["client", "rotate-secret", "hub-app"]);
    let new_secret = field(&String::from_utf8_lossy(&out.stdout), "client_secret:").to_owned();
    assert_eq!(
        client_credentials(&http, addr, "hub-app", &secret)
            .await
            .status(),
        401
    );
    assert_eq!(
        client_credentials(&http, addr, "hub-app", &new_secret)
            .await
            .status(),
        200
    );

    assert_eq!(cmd(&["client", "remove", "hub-app"]).status.code(), Some(0));
    assert_eq!(cmd(&["client", "remove", "hub-app"]).status.code(), Some(1));
    assert_eq!(
        client_credentials(&http, addr, "hub-app", &new_secret)
            .await
            .status(),
        401
    );

    let hashed = Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(["client", "hash-secret"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"s3cret\n")?;
            c.wait_with_output()
        })
        .unwrap();
    let hash = String::from_utf8_lossy(&hashed.stdout).trim().to_owned();
    assert!(authgate::oauth::client::SecretHash::parse(&hash)
        .unwrap()
        .verify("s3cret"));
    drop(child.0.kill());
}

#[test]
fn an_unwritable_store_stops_startup_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("blocker"), "a file, not a folder").unwrap();
    let config = format!(
        "[server]\nhttps = \"127.0.0.1:0\"\nhttp = \"off\"\n[tls]\nself_signed_if_missing = true\n\
         [store]\nurl = \"sqlite://{}\"\n",
        dir.path().join("blocker/authgate.db").display()
    );
    std::fs::write(dir.path().join("authgate.toml"), config).unwrap();
    let out = authgate(dir.path(), &["--config", "authgate.toml", "serve"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("store.url") && stderr.contains("cannot open the store"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_token_a_client_received_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let config = serve_config(
        dir.path(),
        "[[client]]\nid = \"svc\"\nsecret = \"svc-secret\"\ngrants = [\"client_credentials\"]\nscopes = \"profile\"\n",
    );
    let (mut child, addr, _early, _logs) = spawn_serving(dir.path(), &config);
    let http = insecure_client();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let http = http.clone();
        tasks.push(tokio::spawn(async move {
            let resp = client_credentials(&http, addr, "svc", "svc-secret").await;
            assert_eq!(resp.status(), 200);
            common::json(resp).await["access_token"]
                .as_str()
                .unwrap()
                .to_owned()
        }));
    }
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap());
    }
    // No graceful anything: SIGKILL right after the burst.
    child.0.kill().unwrap();
    child.0.wait().unwrap();

    let (_child, addr, _early, _logs) = spawn_serving(dir.path(), &config);
    for t in &tokens {
        let v = common::json(
            http.post(format!("https://{addr}/oauth/introspect"))
                .basic_auth("svc", Some("svc-secret"))
                .form(&[("token", t.as_str())])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(v["active"], true, "a token lost in the crash");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_revocation_reaches_the_running_gateway_within_the_poll() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = serve_config(
        dir.path(),
        &format!(
            "revocation_poll = \"200ms\"\n\
             [[client]]\nid = \"svc\"\nsecret = \"svc-secret\"\nscopes = \"profile\"\n\
             [[route]]\npath = \"/\"\nupstream = \"{}\"\nscopes = []\n",
            up.url()
        ),
    );
    // serve_config ends inside the [store] table, so revocation_poll lands in it.
    let (_child, addr, _early, _logs) = spawn_serving(dir.path(), &config);
    let http = insecure_client();
    let token = common::json(client_credentials(&http, addr, "svc", "svc-secret").await).await
        ["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let call = || {
        http.get(format!("https://{addr}/api"))
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(call().await.unwrap().status(), 200, "cached now");

    let out = authgate(
        dir.path(),
        &["--config", "authgate.toml", "token", "revoke", &token],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "revoked");
    let started = Instant::now();
    loop {
        let status = call().await.unwrap().status();
        if status == 401 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still {status} after a CLI revoke"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn authgate_stdin(dir: &Path, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_users_log_in_and_their_removal_revokes_their_tokens() {
    use common::flow;
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = serve_config(
        dir.path(),
        &format!(
            "revocation_poll = \"200ms\"\n\
             [[client]]\nid = \"web\"\nsecret = \"web-secret\"\ngrants = [\"authorization_code\"]\n\
             scopes = \"profile links.rw\"\nredirect_uris = [\"https://app.example/cb\"]\n\
             [[route]]\npath = \"/\"\nupstream = \"{}\"\nscopes = [\"profile\"]\n",
            up.url()
        ),
    );
    std::fs::write(dir.path().join("authgate.toml"), &config).unwrap();
    fn with<'a>(rest: &[&'a str]) -> Vec<&'a str> {
        [&["--config", "authgate.toml"][..], rest].concat()
    }
    let out = authgate_stdin(
        dir.path(),
        &with(&[
            "user",
            "add",
            "--name",
            "zoe",
            "--scopes",
            "profile",
            "--resource",
            "account_id=42",
        ]),
        "zoe-password-1\n",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = authgate_stdin(
        dir.path(),
        &with(&["user", "add", "--name", "zoe"]),
        "another-pw\n",
    );
    assert_eq!(out.status.code(), Some(1), "duplicate names are refused");
    let out = authgate_stdin(
        dir.path(),
        &with(&["user", "add", "--name", "short"]),
        "123\n",
    );
    assert_eq!(out.status.code(), Some(1), "short passwords are refused");
    let listed =
        String::from_utf8_lossy(&authgate(dir.path(), &with(&["user", "list"])).stdout).to_string();
    assert!(
        listed.starts_with("zoe\t") && !listed.contains("argon2"),
        "{listed}"
    );
    let out = authgate_stdin(
        dir.path(),
        &with(&["user", "passwd", "zoe"]),
        "zoe-password-2\n",
    );
    assert_eq!(out.status.code(), Some(0));

    let (_child, addr, _early, _logs) = spawn_serving(dir.path(), &config);
    // The harness's browser helpers need a Gate; drive the page by hand here, without
    // following the redirect to the (unreachable) client.
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(LIMIT)
        .build()
        .unwrap();
    let page_url = format!(
        "https://{addr}/oauth/authorize?response_type=code&client_id=web&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&scope=profile"
    );
    let page = http.get(&page_url).send().await.unwrap();
    let cookie = flow::csrf_cookie(&page);
    let html = page.text().await.unwrap();
    let mut form = flow::hidden_fields(&html);
    form.push(("username".into(), "zoe".into()));
    form.push(("password".into(), "zoe-password-2".into()));
    form.push(("decision".into(), "approve".into()));
    let resp = http
        .post(format!("https://{addr}/oauth/authorize"))
        .header("cookie", cookie)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        303,
        "the stored user logs in with the new password"
    );
    let code = flow::param(&flow::location(&resp).1, "code")
        .unwrap()
        .to_owned();
    let token = common::json(
        http.post(format!("https://{addr}/oauth/token"))
            .basic_auth("web", Some("web-secret"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "https://app.example/cb"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = http
        .get(format!("https://{addr}/x"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        common::json(resp).await["headers"]["x-authgate-account-id"],
        "42"
    );

    assert_eq!(
        authgate(dir.path(), &with(&["user", "remove", "zoe"]))
            .status
            .code(),
        Some(0)
    );
    let started = Instant::now();
    while http
        .get(format!("https://{addr}/x"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .status()
        != 401
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the removed user's token still works"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `user hash-password` makes hashes for `[[user]] password_hash`: it refuses the
/// passwords `user add` refuses, so a file user cannot get one either.
#[test]
fn hash_password_enforces_the_minimum_length() {
    let dir = tempfile::tempdir().unwrap();
    let out = authgate_stdin(dir.path(), &["user", "hash-password"], "seven77\n");
    assert_ne!(
        out.status.code(),
        Some(0),
        "a 7-character password was hashed"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at least 8 characters"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = authgate_stdin(dir.path(), &["user", "hash-password"], "eight888\n");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("$argon2id$"));
}
