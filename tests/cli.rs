//! The real binary: config errors and exit codes, `certs generate`, `check-config`, and
//! graceful shutdown on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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
            "bad.toml: route[0].public",
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

/// Starts the binary and returns it with the HTTPS address it logged.
/// A running authgate, killed if the test ends early.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Also returns the log lines read so far and a receiver for the rest.
fn spawn_serving(
    dir: &Path,
    config: &str,
) -> (
    Running,
    std::net::SocketAddr,
    Vec<String>,
    std::sync::mpsc::Receiver<String>,
) {
    std::fs::write(dir.join("authgate.toml"), config).unwrap();
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_authgate"))
            .args(["--config", "authgate.toml", "serve"])
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + LIMIT;
    let mut early = Vec::new();
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("authgate never logged its HTTPS address");
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        if v["message"] == "listening (HTTPS)" {
            let addr = v["addr"].as_str().unwrap().parse().unwrap();
            early.push(line);
            return (child, addr, early, rx);
        }
        early.push(line);
    }
}

fn wait_exit(child: &mut Running) -> i32 {
    let child = &mut child.0;
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "authgate did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
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
