//! Shared test harness: a programmable upstream, an in-process gateway on port 0, and
//! TLS clients. Every server stops when its handle is dropped or the test ends.
#![allow(dead_code)]

pub mod flow;
pub mod process;
pub mod relay;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use authgate::config::Config;
use authgate::server::Server;
use tokio::sync::oneshot;

pub use upstream::Upstream;

/// Bound on anything a test waits for.
pub const LIMIT: Duration = Duration::from_secs(20);

/// An in-process authgate on loopback ports.
pub struct Gate {
    /// The HTTPS address (or the plain one when HTTPS is off).
    pub https: SocketAddr,
    pub http: Option<SocketAddr>,
    pub cert_pem: Vec<u8>,
    pub store_url: String,
    /// The metrics listener, when `metrics.listen` is set.
    pub metrics: Option<SocketAddr>,
    pub reloader: Arc<authgate::reload::Reloader>,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Gate {
    /// Starts a gateway. `server` lines go under `[server]`, `tls` lines under `[tls]`,
    /// and `rest` (routes, `[upstream]`, `[oauth]`, clients) after them. The store is a
    /// fresh SQLite file in a temporary directory unless `rest` has a `[store]`.
    pub async fn start(server: &str, tls: &str, rest: &str) -> Gate {
        Gate::start_with_clock(server, tls, rest, authgate::oauth::system_clock()).await
    }

    /// [`Gate::start`] with a clock of the test's.
    pub async fn start_with_clock(
        server: &str,
        tls: &str,
        rest: &str,
        clock: authgate::oauth::Clock,
    ) -> Gate {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        authgate::certs::generate(&cert, &key, &names, false).unwrap();
        // Listener defaults unless the test sets its own.
        let https_line = if server.contains("https =") {
            ""
        } else {
            "https = \"127.0.0.1:0\"\n"
        };
        let store = if rest.contains("[store]") {
            String::new()
        } else {
            format!(
                "[store]\nurl = \"sqlite://{}\"\n",
                dir.path().join("authgate.db").display()
            )
        };
        let text = format!(
            "[server]\n{https_line}http = \"127.0.0.1:0\"\n{server}\n\
             [tls]\ncert = {cert:?}\nkey = {key:?}\n{tls}\n{store}{rest}"
        );
        Gate::launch_with_clock(&text, test_keys(&text, &[]), dir, clock).await
    }

    /// Starts a gateway from a whole config text and environment overrides; `dir` is
    /// kept alive as long as the gateway.
    pub async fn launch(text: &str, vars: Vec<(String, String)>, dir: tempfile::TempDir) -> Gate {
        Gate::launch_with_clock(text, vars, dir, authgate::oauth::system_clock()).await
    }

    async fn launch_with_clock(
        text: &str,
        vars: Vec<(String, String)>,
        dir: tempfile::TempDir,
        clock: authgate::oauth::Clock,
    ) -> Gate {
        let config = Config::parse(text, "test.toml", vars.into_iter())
            .unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"));
        Gate::serve(config, dir, clock).await
    }

    /// Starts a gateway from the file `path` (so it can be reloaded); `dir` is kept
    /// alive as long as the gateway.
    pub async fn from_file(path: &std::path::Path, dir: tempfile::TempDir) -> Gate {
        let config = Config::load(path).unwrap_or_else(|e| panic!("test config invalid: {e}"));
        Gate::serve(config, dir, authgate::oauth::system_clock()).await
    }

    async fn serve(config: Config, dir: tempfile::TempDir, clock: authgate::oauth::Clock) -> Gate {
        let cert = config.tls.as_ref().map(|t| t.cert.clone());
        let store_url = config.store.url.clone();
        let server = Server::bind_with_clock(config, clock).await.unwrap();
        let http = server.http_addr();
        let https = server.https_addr().or(http).unwrap();
        let metrics = server.metrics_addr();
        let reloader = server.reloader();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Gate {
            https,
            http,
            cert_pem: cert.map(|c| std::fs::read(c).unwrap()).unwrap_or_default(),
            store_url,
            metrics,
            reloader,
            stop: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    /// Starts one of `config/examples/NAME.toml` on loopback ports with a temporary store
    /// and certificate; `vars` are extra environment overrides (secrets, upstreams).
    pub async fn example(name: &str, vars: &[(&str, &str)]) -> Gate {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let text =
            std::fs::read_to_string(root.join(format!("config/examples/{name}.toml"))).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut all: Vec<(String, String)> = vec![
            ("AUTHGATE_SERVER__HTTPS".into(), "127.0.0.1:0".into()),
            ("AUTHGATE_SERVER__HTTP".into(), "127.0.0.1:0".into()),
            (
                "AUTHGATE_TLS__CERT".into(),
                dir.path().join("cert.pem").display().to_string(),
            ),
            (
                "AUTHGATE_TLS__KEY".into(),
                dir.path().join("key.pem").display().to_string(),
            ),
            ("AUTHGATE_TLS__SELF_SIGNED_IF_MISSING".into(), "true".into()),
            (
                "AUTHGATE_STORE__URL".into(),
                format!("sqlite://{}", dir.path().join("store.db").display()),
            ),
        ];
        all.extend(test_keys(&text, vars));
        all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Gate::launch(&text, all, dir).await
    }

    /// Opens this gateway's store (SQLite allows a second connection pool).
    pub async fn store(&self) -> std::sync::Arc<dyn authgate::store::Store> {
        authgate::store::open(&self.store_url).await.unwrap()
    }

    /// A gateway with one public route `/` to `upstream`.
    pub async fn to(upstream: &Upstream) -> Gate {
        Gate::start(
            "http_mode = \"serve\"",
            "",
            &route("/", &upstream.url(), ""),
        )
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.https.port())
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http.unwrap().port())
    }

    /// A reqwest client trusting this gateway's certificate (HTTP/1.1 or h2 by ALPN).
    pub fn client(&self) -> reqwest::Client {
        self.client_builder().build().unwrap()
    }

    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&self.cert_pem).unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(LIMIT)
    }

    /// Starts graceful shutdown and waits for `run` to return.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(LIMIT, task).await.unwrap().unwrap();
        }
    }

    /// A rustls client config trusting this gateway, restricted to `versions`.
    pub fn tls_client(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> Arc<rustls::ClientConfig> {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(&self.cert_pem) {
            roots.add(c.unwrap()).unwrap();
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(authgate::tls::provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }

    /// Opens a TLS connection with the given versions and ALPN offer.
    pub async fn tls_connect(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let connector = tokio_rustls::TlsConnector::from(self.tls_client(versions, alpn));
        let tcp = tokio::net::TcpStream::connect(self.https).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await.unwrap()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The keyring of [`Gate::start`] and [`Gate::example`] gates (`oauth.secrets_…`, which
/// `reuse_tokens` clients need), unless the test names keys of its own.
pub const TEST_KEYS: &str = "test-1:dGVzdCBrZXksIGZvciB0ZXN0cyBvbmx5LCAzMiBieXQ=";

/// `AUTHGATE_OAUTH__SECRETS_KEYS` = [`TEST_KEYS`], unless `text` or `vars` set keys.
fn test_keys(text: &str, vars: &[(&str, &str)]) -> Vec<(String, String)> {
    let file: toml::Table = text.parse().unwrap_or_default();
    let in_file = file
        .get("oauth")
        .and_then(|o| o.get("secrets_key_file"))
        .is_some();
    let in_vars = vars
        .iter()
        .any(|(k, _)| k.starts_with("AUTHGATE_OAUTH__SECRETS_KEY"));
    if in_file || in_vars {
        return Vec::new();
    }
    vec![(authgate::keyring::KEYS_VAR.into(), TEST_KEYS.into())]
}

/// A `[[route]]` block.
pub fn route(path: &str, upstream: &str, extra: &str) -> String {
    format!("[[route]]\npath = {path:?}\nupstream = {upstream:?}\npublic = true\n{extra}\n")
}

/// POSTs a form to `path` with optional Basic credentials.
pub async fn post_form(
    gate: &Gate,
    path: &str,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = gate.client().post(gate.url(path)).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    req.send().await.unwrap()
}

/// A `client_credentials` access token for client `id` (asserts 200).
pub async fn token(gate: &Gate, id: &str, secret: &str) -> String {
    let resp = post_form(
        gate,
        "/oauth/token",
        Some((id, secret)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    json(resp).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Reads a JSON response body.
pub async fn json(resp: reqwest::Response) -> serde_json::Value {
    let bytes = resp.bytes().await.unwrap();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}
