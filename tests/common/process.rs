//! authgate as a real process: started from the test binary's sibling `authgate`,
//! killed when the handle drops.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::LIMIT;

/// A running authgate, killed if the test ends early.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Starts the binary in `dir` with `config` and returns it with the HTTPS address it
/// logged, the log lines read so far and a receiver for the rest.
pub fn spawn_serving(
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

/// Waits (bounded) for the process to exit; its exit code.
pub fn wait_exit(child: &mut Running) -> i32 {
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

/// An HTTPS client for the self-signed development certificate.
pub fn insecure_client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(LIMIT)
        .build()
        .unwrap()
}

/// An instance serving in a directory of its own.
pub struct Instance {
    pub process: Running,
    pub addr: SocketAddr,
    /// Log lines after the listening line.
    pub logs: std::sync::Mutex<std::sync::mpsc::Receiver<String>>,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Instance {
    /// Writes `config` into a fresh directory and starts authgate there.
    pub fn start(config: &str) -> Instance {
        let dir = tempfile::tempdir().unwrap();
        let (process, addr, _, logs) = spawn_serving(dir.path(), config);
        Instance {
            process,
            addr,
            logs: std::sync::Mutex::new(logs),
            client: reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .redirect(reqwest::redirect::Policy::none())
                .timeout(LIMIT)
                .build()
                .unwrap(),
            _dir: dir,
        }
    }
}

impl super::flow::Target for Instance {
    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }
    fn client(&self) -> reqwest::Client {
        self.client.clone()
    }
}
