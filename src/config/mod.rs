//! Configuration: raw TOML (plus `AUTHGATE_…` environment overrides) parsed once into a
//! validated [`Config`] of typed values (`SocketAddr`, `Duration`, `IpNet`, upstream
//! URIs). Every error names the file (or variable), the key and the reason; the process
//! exits with status 2 before it binds a port.
//!
//! Relative paths (certificates, CA file) are resolved against the working directory, the
//! way `cargo run --release` from the repository root expects.

mod env;
mod oauth;
mod ops;
mod raw;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Uri};
use ipnet::IpNet;

pub use oauth::{
    is_object_id, AccountConfig, AccountNotFound, AuthConfig, ClientConfig, OAuthConfig,
    StoreConfig, TokenHeader, Ttl, UserConfig,
};
pub use ops::{
    ForwardAuthConfig, LimitBy, MetricsConfig, OriginalHeaders, Rate, RateLimitsConfig,
    ReloadConfig, RouteRate,
};
pub use raw::RawConfig;

/// Where the default configuration lives, relative to the working directory.
pub const DEFAULT_PATH: &str = "config/authgate.toml";

/// Everything that can be wrong with a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{file}: not valid TOML: {message}")]
    Syntax { file: String, message: String },
    /// A key has a wrong type, is unknown, or has a value that makes no sense.
    #[error("{file}: {key}: {reason}")]
    Key {
        file: String,
        key: String,
        reason: String,
    },
    /// An `AUTHGATE_…` environment variable could not be applied.
    #[error("environment variable {var}: {reason}")]
    Env { var: String, reason: String },
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (for messages).
    pub file: String,
    /// The first 16 hex digits of the SHA-256 of the text it was parsed from
    /// (`authgate_config_info`); empty when not parsed from text.
    pub source_hash: String,
    pub server: ServerConfig,
    /// `None` when the HTTPS listener is off.
    pub tls: Option<TlsConfig>,
    pub upstream: UpstreamConfig,
    pub log: LogConfig,
    pub store: StoreConfig,
    pub auth: AuthConfig,
    pub oauth: OAuthConfig,
    /// Clients declared in the file (more live in the store, see `authgate client`).
    pub clients: Vec<ClientConfig>,
    /// Accounts for the account + secret grant.
    pub accounts: Vec<AccountConfig>,
    /// Users who can log in on the authorize page.
    pub users: Vec<UserConfig>,
    pub routes: Vec<RouteConfig>,
    /// `Strict-Transport-Security` for every response that reached the client over HTTPS
    /// (directly, or through a trusted TLS-terminating proxy when `server.https = "off"`).
    pub hsts: HeaderValue,
    pub metrics: MetricsConfig,
    pub reload: ReloadConfig,
    pub forward_auth: ForwardAuthConfig,
    pub rate_limits: RateLimitsConfig,
}

/// What the plain-HTTP listener does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMode {
    /// Answer every request (but `/healthz` and `/readyz`) with a 308 to HTTPS.
    Redirect,
    /// Serve like the HTTPS listener: for sidecars behind a TLS-terminating balancer.
    Serve,
}

/// Which header a trusted proxy names the client in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIpHeader {
    XForwardedFor,
    Forwarded,
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub https: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub http_mode: HttpMode,
    /// The port in redirects; defaults to the HTTPS listener's port.
    pub redirect_https_port: Option<u16>,
    /// Peers whose `X-Forwarded-*` / `Forwarded` headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Where trusted proxies name the client's address.
    pub client_ip_header: ClientIpHeader,
    pub max_connections: usize,
    /// Open connections per client address (IPv6 by /64); `None`: no cap.
    pub max_connections_per_ip: Option<u32>,
    /// Connection worker threads (each a single-threaded runtime).
    pub workers: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
    pub http2_max_concurrent_streams: u32,
    pub shutdown_grace: Duration,
    /// Forward header names spelled with `_` (dropped by default, as nginx does: CGI-style
    /// upstreams read `X_Foo` and `X-Foo` as one variable).
    pub underscores_in_headers: bool,
    /// A WebSocket tunnel with no byte either way for this long is closed.
    pub websocket_idle_timeout: Duration,
    /// The longest pause between two pieces of a request body.
    pub body_read_timeout: Duration,
    /// Bytes per second a request body must average after `body_read_timeout` (0: off).
    pub body_min_rate: u64,
}

/// `[tls]`.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Generate a self-signed development certificate when `cert` and `key` are missing.
    pub self_signed_if_missing: bool,
    pub handshake_timeout: Duration,
    pub sni: Vec<SniCert>,
}

/// `[[tls.sni]]`.
#[derive(Debug, Clone)]
pub struct SniCert {
    /// Lower-case DNS name, or `*.suffix` for a wildcard.
    pub server_name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[upstream]`.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub connect_timeout: Duration,
    /// Time allowed for an upstream's response headers (routes may override).
    pub timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    /// Extra CA certificates for `https://` upstreams, beside the system roots.
    pub ca_file: Option<PathBuf>,
    /// How long an upstream that refused a connection is skipped by the balancer.
    pub retry_after_failure: Duration,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter (`info`, `authgate=debug,hyper=warn`).
    pub level: String,
}

/// One `[[route]]`.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// For metrics and logs: `name`, or host + path.
    pub name: String,
    /// Path prefix, starting with `/`, without a trailing `/` (except `/` itself).
    pub path: String,
    /// Lower-case host without port, if the route is bound to one.
    pub host: Option<String>,
    pub upstreams: Vec<UpstreamTarget>,
    pub strip_prefix: bool,
    pub public: bool,
    pub preserve_host: bool,
    pub upstream_http2: bool,
    pub timeout: Duration,
    pub max_body_bytes: u64,
    /// Who may use the route.
    pub access: Access,
    /// Where the token may be; `None`: `auth.token_headers`.
    pub token_headers: Option<Vec<TokenHeader>>,
    /// Accept `?access_token=` (RFC 6750 §2.3; refused by default).
    pub allow_query_token: bool,
    /// Forward the token header upstream (it is removed by default).
    pub pass_token: bool,
    /// Requests per client (or address) on this route.
    pub rate_limit: Option<RouteRate>,
    /// What `X-HTTP-Method-Override` and its kin do on this route.
    pub method_override: MethodOverride,
}

/// `route.method_override`: what becomes of `X-HTTP-Method-Override`, `X-HTTP-Method`
/// and `X-Method-Override`, which many frameworks obey in place of the request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MethodOverride {
    /// Removed before the request is forwarded (the default): the upstream sees the
    /// method that was authorized.
    #[default]
    Strip,
    /// Forwarded, and the overriding method must be authorized as well as the real one.
    Authorize,
}

/// What a route requires of the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// No token needed.
    Public,
    /// A right on `resource` chosen by the method (GET/HEAD/OPTIONS → r,
    /// POST/PUT/PATCH → w, DELETE → d), inside access level `level` if set.
    Perimeter {
        resource: String,
        level: Option<String>,
    },
    /// Every item of this scope (empty: any valid token).
    Scopes(crate::scope::Scope),
    /// Per method: every item of that method's scope; methods not listed get `other`
    /// (`None`: 405).
    MethodScopes {
        methods: Vec<(http::Method, crate::scope::Scope)>,
        other: Option<crate::scope::Scope>,
    },
}

/// An upstream base URI: `http(s)://authority[/base/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTarget {
    pub scheme: Scheme,
    pub authority: Authority,
    /// Path prefix prepended to forwarded paths; empty or starting with `/`, no trailing `/`.
    pub base_path: String,
}

impl fmt::Display for UpstreamTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

impl Config {
    /// Reads `path`, applies the process environment, and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Self::parse(&text, &file, std::env::vars())
    }

    /// Parses `text` (named `file` in messages) with the given environment overrides.
    pub fn parse(
        text: &str,
        file: &str,
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    file: file.to_owned(),
                    message: e.to_string().trim().to_owned(),
                })?;
        // Keys belong in the environment or a file of their own, not in this file, which
        // is shared, committed, and printed in support tickets.
        if table
            .get("oauth")
            .and_then(|o| o.get("secrets_keys"))
            .is_some()
        {
            return Err(ConfigError::Key {
                file: file.to_owned(),
                key: "oauth.secrets_keys".into(),
                reason: format!("keys do not belong in the configuration file: set {} in the environment, or name a file of keys with oauth.secrets_key_file", crate::keyring::KEYS_VAR),
            });
        }
        let vars: Vec<(String, String)> = vars.collect();
        env::apply(&mut table, vars.iter().cloned())?;
        let lookup = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let raw: RawConfig =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                ConfigError::Key {
                    file: file.to_owned(),
                    key: if key == "." {
                        "(top level)".into()
                    } else {
                        key
                    },
                    reason: e.into_inner().message().trim().to_owned(),
                }
            })?;
        let mut config = Self::from_raw(raw, file, &lookup)?;
        config.source_hash = short_hash(text.as_bytes());
        Ok(config)
    }

    /// Validates raw values into typed ones. `vars` looks up environment variables (for
    /// `client[].secret_env`).
    pub fn from_raw(
        raw: RawConfig,
        file: &str,
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let v = Validator { file };
        let s = raw.server;
        let https = v.listen("server.https", s.https.as_deref(), "127.0.0.1:8443")?;
        let http = v.listen("server.http", s.http.as_deref(), "127.0.0.1:8080")?;
        if https.is_none() && http.is_none() {
            return Err(v.err(
                "server.https",
                "both listeners are \"off\": nothing would be served",
            ));
        }
        let http_mode = match s.http_mode.as_deref().unwrap_or("redirect") {
            "redirect" => HttpMode::Redirect,
            "serve" => HttpMode::Serve,
            other => {
                return Err(v.err(
                    "server.http_mode",
                    format!("expected \"redirect\" or \"serve\", got {other:?}"),
                ))
            }
        };
        if http_mode == HttpMode::Redirect && https.is_none() && http.is_some() {
            return Err(v.err(
                "server.http_mode",
                "\"redirect\" needs the HTTPS listener; use \"serve\" or turn server.https on",
            ));
        }
        let trusted_proxies = s
            .trusted_proxies
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, p)| v.ip_net(&format!("server.trusted_proxies[{i}]"), p))
            .collect::<Result<_, _>>()?;
        let max_connections = s.max_connections.unwrap_or(10_000);
        if max_connections == 0 {
            return Err(v.err("server.max_connections", "must be at least 1"));
        }
        let workers = s.workers.unwrap_or_else(crate::workers::default_count);
        if !(1..=1024).contains(&workers) {
            return Err(v.err("server.workers", "must be between 1 and 1024"));
        }
        let max_header_bytes = s.max_header_bytes.unwrap_or(32 * 1024);
        if !(1024..=1024 * 1024).contains(&max_header_bytes) {
            return Err(v.err(
                "server.max_header_bytes",
                "must be between 1024 and 1048576",
            ));
        }
        let http2_max_concurrent_streams = s.http2_max_concurrent_streams.unwrap_or(256);
        if http2_max_concurrent_streams == 0 {
            return Err(v.err("server.http2_max_concurrent_streams", "must be at least 1"));
        }
        let client_ip_header = match s.client_ip_header.as_deref().unwrap_or("x-forwarded-for") {
            "x-forwarded-for" => ClientIpHeader::XForwardedFor,
            "forwarded" => ClientIpHeader::Forwarded,
            other => {
                return Err(v.err(
                    "server.client_ip_header",
                    format!("expected \"x-forwarded-for\" or \"forwarded\", got {other:?}"),
                ))
            }
        };
        let server = ServerConfig {
            https,
            http,
            http_mode,
            redirect_https_port: s.redirect_https_port,
            trusted_proxies,
            client_ip_header,
            max_connections,
            max_connections_per_ip: match s.max_connections_per_ip.unwrap_or(256) {
                0 => None,
                n => Some(n),
            },
            workers,
            header_read_timeout: v.duration(
                "server.header_read_timeout",
                s.header_read_timeout.as_deref(),
                "10s",
            )?,
            idle_timeout: v.duration("server.idle_timeout", s.idle_timeout.as_deref(), "60s")?,
            max_header_bytes,
            max_body_bytes: s.max_body_bytes.unwrap_or(10 * 1024 * 1024),
            http2_max_concurrent_streams,
            shutdown_grace: v.duration(
                "server.shutdown_grace",
                s.shutdown_grace.as_deref(),
                "30s",
            )?,
            underscores_in_headers: s.underscores_in_headers.unwrap_or(false),
            websocket_idle_timeout: v.duration(
                "server.websocket_idle_timeout",
                s.websocket_idle_timeout.as_deref(),
                "5m",
            )?,
            body_read_timeout: v.duration(
                "server.body_read_timeout",
                s.body_read_timeout.as_deref(),
                "30s",
            )?,
            body_min_rate: s.body_min_rate.unwrap_or(1024),
        };

        let hsts = v.hsts(raw.tls.hsts.as_deref())?;
        let tls = match https {
            None => None,
            Some(_) => Some(v.tls(raw.tls)?),
        };

        let u = raw.upstream;
        let upstream = UpstreamConfig {
            connect_timeout: v.duration(
                "upstream.connect_timeout",
                u.connect_timeout.as_deref(),
                "5s",
            )?,
            timeout: v.duration("upstream.timeout", u.timeout.as_deref(), "60s")?,
            pool_idle_timeout: v.duration(
                "upstream.pool_idle_timeout",
                u.pool_idle_timeout.as_deref(),
                "90s",
            )?,
            pool_max_idle_per_host: u.pool_max_idle_per_host.unwrap_or(256),
            ca_file: match u.ca_file {
                None => None,
                Some(p) => Some(v.existing_file("upstream.ca_file", &p)?),
            },
            retry_after_failure: v.duration(
                "upstream.retry_after_failure",
                u.retry_after_failure.as_deref(),
                "2s",
            )?,
        };

        let log = LogConfig {
            format: match raw.log.format.as_deref().unwrap_or("human") {
                "human" => LogFormat::Human,
                "json" => LogFormat::Json,
                other => {
                    return Err(v.err(
                        "log.format",
                        format!("expected \"human\" or \"json\", got {other:?}"),
                    ))
                }
            },
            level: {
                let level = raw.log.level.unwrap_or_else(|| "info".into());
                tracing_subscriber::EnvFilter::try_new(&level)
                    .map_err(|e| v.err("log.level", format!("not a tracing filter: {e}")))?;
                level
            },
        };

        let routes = raw
            .route
            .into_iter()
            .enumerate()
            .map(|(i, r)| v.route(i, r, &server, &upstream))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, a) in routes.iter().enumerate() {
            if let Some(j) = routes[..i]
                .iter()
                .position(|b| b.path == a.path && b.host == a.host)
            {
                return Err(v.err(
                    &format!("route[{i}].path"),
                    format!("route[{j}] already has path {:?} for the same host", a.path),
                ));
            }
        }

        let store = oauth::store(file, raw.store)?;
        let auth = oauth::auth(file, raw.auth)?;
        let oauth_cfg = oauth::oauth(file, raw.oauth, &server)?;
        let mut own_paths: Vec<(String, &str)> = oauth_cfg
            .token_paths
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("oauth.token_paths[{i}]"), p.as_str()))
            .collect();
        own_paths.push(("oauth.revoke_path".into(), &oauth_cfg.revoke_path));
        own_paths.push(("oauth.introspect_path".into(), &oauth_cfg.introspect_path));
        own_paths.push(("oauth.authorize_path".into(), &oauth_cfg.authorize_path));
        if let Some(p) = &oauth_cfg.account_token_path {
            own_paths.push(("oauth.account_token_path".into(), p));
        }
        let metrics = v.metrics(raw.metrics)?;
        if metrics.enabled && metrics.listen.is_none() && !metrics.allow.is_empty() {
            own_paths.push(("metrics.path".into(), &metrics.path));
        }
        let forward_auth = v.forward_auth(raw.forward_auth)?;
        if let Some(p) = &forward_auth.path {
            own_paths.push(("forward_auth.path".into(), p));
        }
        for (i, (key, p)) in own_paths.iter().enumerate() {
            let reserved = [
                crate::health::HEALTHZ,
                crate::health::READYZ,
                crate::oauth::METADATA_PATH,
            ];
            if reserved.contains(p) || own_paths[..i].iter().any(|(_, q)| q == p) {
                return Err(v.err(key, format!("{p:?} is already served by authgate")));
            }
        }
        let clients = raw
            .client
            .into_iter()
            .enumerate()
            .map(|(i, c)| oauth::client(file, i, c, vars))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, c) in clients.iter().enumerate() {
            if clients[..i].iter().any(|d| d.id == c.id) {
                return Err(v.err(
                    &format!("client[{i}].id"),
                    format!("{:?} is declared twice", c.id),
                ));
            }
        }
        if let Some(i) = clients.iter().position(|c| c.settings.reuse_tokens) {
            if oauth_cfg.secrets.is_none() {
                return Err(v.err(
                    &format!("client[{i}].reuse_tokens"),
                    format!("the store keeps these tokens encrypted, under a key it does not hold: set oauth.secrets_key_file or {} (README: \"Secrets at rest\")", crate::keyring::KEYS_VAR),
                ));
            }
        }

        let accounts = raw
            .account
            .into_iter()
            .enumerate()
            .map(|(i, a)| oauth::account(file, i, a, vars))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, a) in accounts.iter().enumerate() {
            if accounts[..i].iter().any(|b| b.id == a.id) {
                return Err(v.err(
                    &format!("account[{i}].id"),
                    format!("{:?} is declared twice", a.id),
                ));
            }
        }
        let users = raw
            .user
            .into_iter()
            .enumerate()
            .map(|(i, u)| oauth::user(file, i, u, vars))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, u) in users.iter().enumerate() {
            if users[..i].iter().any(|o| o.name == u.name) {
                return Err(v.err(
                    &format!("user[{i}].name"),
                    format!("{:?} is declared twice", u.name),
                ));
            }
        }
        if !accounts.is_empty() && oauth_cfg.account_token_path.is_none() {
            return Err(v.err(
                "oauth.account_token_path",
                "accounts are declared but no path serves the account + secret grant",
            ));
        }

        Ok(Config {
            file: file.to_owned(),
            source_hash: String::new(),
            server,
            tls,
            upstream,
            log,
            store,
            auth,
            oauth: oauth_cfg,
            clients,
            accounts,
            users,
            routes,
            hsts,
            metrics,
            reload: v.reload(raw.reload)?,
            forward_auth,
            rate_limits: v.rate_limits(raw.rate_limits)?,
        })
    }
}

/// The first 16 hex digits of the SHA-256 of `bytes`.
pub fn short_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Validation helpers that know the file name, so every error names it.
struct Validator<'a> {
    file: &'a str,
}

impl Validator<'_> {
    fn err(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Key {
            file: self.file.to_owned(),
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    fn listen(
        &self,
        key: &str,
        value: Option<&str>,
        default: &str,
    ) -> Result<Option<SocketAddr>, ConfigError> {
        match value.unwrap_or(default) {
            "off" => Ok(None),
            addr => addr.parse().map(Some).map_err(|_| {
                self.err(
                    key,
                    format!("{addr:?} is not an address like \"127.0.0.1:8443\" or \"[::]:443\" (or \"off\")"),
                )
            }),
        }
    }

    fn duration(
        &self,
        key: &str,
        value: Option<&str>,
        default: &str,
    ) -> Result<Duration, ConfigError> {
        let text = value.unwrap_or(default);
        let d = humantime::parse_duration(text).map_err(|e| {
            self.err(
                key,
                format!("{text:?} is not a duration like \"10s\", \"5m\" or \"1h\": {e}"),
            )
        })?;
        if d.is_zero() {
            return Err(self.err(key, "must be longer than zero"));
        }
        // Far beyond any sensible setting, and far from where adding it to a clock
        // could overflow.
        if d > Duration::from_secs(10 * 365 * 24 * 3600) {
            return Err(self.err(key, format!("{text:?} is longer than ten years")));
        }
        Ok(d)
    }

    fn ip_net(&self, key: &str, value: &str) -> Result<IpNet, ConfigError> {
        if let Ok(net) = value.parse::<IpNet>() {
            return Ok(net);
        }
        value
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| self.err(key, format!("{value:?} is not an IP address or CIDR block")))
    }

    fn existing_file(&self, key: &str, path: &str) -> Result<PathBuf, ConfigError> {
        let p = PathBuf::from(path);
        if !p.is_file() {
            return Err(self.err(key, format!("file {path:?} does not exist")));
        }
        Ok(p)
    }

    fn hsts(&self, value: Option<&str>) -> Result<HeaderValue, ConfigError> {
        let text = value.unwrap_or("max-age=31536000; includeSubDomains");
        if !text
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("max-age=")
        {
            return Err(self.err(
                "tls.hsts",
                format!("{text:?} must start with max-age= (RFC 6797 §6.1)"),
            ));
        }
        HeaderValue::from_str(text).map_err(|_| self.err("tls.hsts", "not a valid header value"))
    }

    fn tls(&self, t: raw::RawTls) -> Result<TlsConfig, ConfigError> {
        let self_signed_if_missing = t.self_signed_if_missing.unwrap_or(false);
        let cert = PathBuf::from(t.cert.unwrap_or_else(|| "certs/dev-cert.pem".into()));
        let key = PathBuf::from(t.key.unwrap_or_else(|| "certs/dev-key.pem".into()));
        if !self_signed_if_missing {
            for (name, path) in [("tls.cert", &cert), ("tls.key", &key)] {
                if !path.is_file() {
                    return Err(self.err(
                        name,
                        format!(
                            "file {:?} does not exist (run `authgate certs generate`, or set tls.self_signed_if_missing = true for development)",
                            path.display()
                        ),
                    ));
                }
            }
        }
        let sni = t
            .sni
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let name = s.server_name.trim().to_ascii_lowercase();
                let bare = name.strip_prefix("*.").unwrap_or(&name);
                if bare.is_empty() || bare.contains('*') || bare.contains(':') {
                    return Err(self.err(
                        &format!("tls.sni[{i}].server_name"),
                        format!("{:?} is not a DNS name or *.wildcard", s.server_name),
                    ));
                }
                Ok(SniCert {
                    server_name: name,
                    cert: self.existing_file(&format!("tls.sni[{i}].cert"), &s.cert)?,
                    key: self.existing_file(&format!("tls.sni[{i}].key"), &s.key)?,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(TlsConfig {
            cert,
            key,
            self_signed_if_missing,
            handshake_timeout: self.duration(
                "tls.handshake_timeout",
                t.handshake_timeout.as_deref(),
                "10s",
            )?,
            sni,
        })
    }

    fn route(
        &self,
        i: usize,
        r: raw::RawRoute,
        server: &ServerConfig,
        upstream: &UpstreamConfig,
    ) -> Result<RouteConfig, ConfigError> {
        let key = |k: &str| format!("route[{i}].{k}");
        let path = r
            .path
            .ok_or_else(|| self.err(&key("path"), "missing: every route needs a path prefix"))?;
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
            return Err(self.err(
                &key("path"),
                format!("{path:?} must start with / and contain no ?, # or spaces"),
            ));
        }
        // Trailing slashes go, but `//` is `/`, not the empty prefix.
        let path = match path.trim_end_matches('/') {
            "" => "/".to_owned(),
            trimmed => trimmed.to_owned(),
        };
        let host = match r.host {
            None => None,
            Some(h) => {
                let h = h.trim().to_ascii_lowercase();
                if h.is_empty() || h.parse::<Authority>().is_err() || h.contains(['/', '@']) {
                    return Err(self.err(&key("host"), format!("{h:?} is not a host name")));
                }
                if h.contains(':') && !(h.starts_with('[') && h.ends_with(']')) {
                    return Err(self.err(
                        &key("host"),
                        format!(
                            "{h:?}: leave the port out; routes match the host name on any port"
                        ),
                    ));
                }
                // Requests are routed on the name without the trailing dot of a fully
                // qualified name; so is the route.
                let h = h.strip_suffix('.').unwrap_or(&h).to_owned();
                if !crate::hostname::is_valid(&h) {
                    return Err(self.err(&key("host"), format!("{h:?} is not a host name")));
                }
                Some(h)
            }
        };
        let mut list = Vec::new();
        match (r.upstream, r.upstreams) {
            (Some(_), Some(_)) => {
                return Err(self.err(
                    &key("upstreams"),
                    "set either upstream or upstreams, not both",
                ))
            }
            (None, None) => {
                return Err(self.err(&key("upstream"), "missing: where should requests go?"))
            }
            (Some(u), None) => list.push((key("upstream"), u)),
            (None, Some(us)) => {
                if us.is_empty() {
                    return Err(self.err(&key("upstreams"), "must list at least one upstream"));
                }
                if us.len() > crate::router::MAX_UPSTREAMS {
                    return Err(self.err(
                        &key("upstreams"),
                        format!(
                            "at most {} upstreams per route",
                            crate::router::MAX_UPSTREAMS
                        ),
                    ));
                }
                list.extend(
                    us.into_iter()
                        .enumerate()
                        .map(|(j, u)| (format!("route[{i}].upstreams[{j}]"), u)),
                );
            }
        }
        let upstreams = list
            .iter()
            .map(|(k, u)| self.upstream_target(k, u))
            .collect::<Result<_, _>>()?;
        if r.preserve_host == Some(true) && r.upstream_http2 == Some(true) {
            return Err(self.err(
                &key("preserve_host"),
                "cannot be combined with upstream_http2: HTTP/2 upstreams read :authority, which is the upstream's",
            ));
        }
        let public = r.public.unwrap_or(false);
        let method_scopes = match r.method_scopes {
            None => None,
            Some(map) => {
                if map.is_empty() {
                    return Err(self.err(&key("method_scopes"), "must name at least one method"));
                }
                let mut methods: Vec<(http::Method, crate::scope::Scope)> = Vec::new();
                for (m, list) in map {
                    let method = http::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                        .map_err(|_| {
                            self.err(&key("method_scopes"), format!("{m:?} is not a method"))
                        })?;
                    if methods.iter().any(|(seen, _)| *seen == method) {
                        return Err(self.err(
                            &key("method_scopes"),
                            format!("{m:?} is listed twice (methods are case-insensitive here)"),
                        ));
                    }
                    let scope = crate::scope::Scope::parse(&list.join(" ")).map_err(|e| {
                        self.err(&format!("route[{i}].method_scopes.{m}"), e.to_string())
                    })?;
                    methods.push((method, scope));
                }
                Some(methods)
            }
        };
        if method_scopes.is_some() && (public || r.perimeter.is_some()) {
            return Err(self.err(
                &key("method_scopes"),
                "goes with scopes (as the default for other methods) or alone, not with perimeter or public",
            ));
        }
        let access = match (public, r.perimeter, r.scopes) {
            (false, None, other) if method_scopes.is_some() => {
                if r.level.is_some() {
                    return Err(self.err(&key("level"), "level goes with perimeter"));
                }
                let other = match other {
                    None => None,
                    Some(list) => Some(
                        crate::scope::Scope::parse(&list.join(" "))
                            .map_err(|e| self.err(&key("scopes"), e.to_string()))?,
                    ),
                };
                Access::MethodScopes {
                    methods: method_scopes.unwrap_or_default(),
                    other,
                }
            }
            (true, None, None) => {
                if r.level.is_some() {
                    return Err(self.err(&key("level"), "a public route takes no level"));
                }
                // Token settings would silently do nothing on a route without tokens.
                for (k, set) in [
                    ("token_headers", r.token_headers.is_some()),
                    ("pass_token", r.pass_token.is_some()),
                    ("allow_query_token", r.allow_query_token.is_some()),
                ] {
                    if set {
                        return Err(self.err(&key(k), "a public route takes no token settings"));
                    }
                }
                Access::Public
            }
            (true, _, _) => {
                return Err(self.err(
                    &key("public"),
                    "a public route takes no perimeter or scopes",
                ))
            }
            (false, Some(_), Some(_)) => {
                return Err(self.err(&key("scopes"), "set either perimeter or scopes, not both"))
            }
            (false, None, None) => {
                // Fail closed: a route must say who may use it.
                return Err(self.err(
                    &key("perimeter"),
                    "missing: set perimeter (a resource whose r/w/d right follows the method), scopes (required scopes; [] for any valid token), or public = true",
                ));
            }
            (false, Some(p), None) => {
                let valid = |s: &str| {
                    !s.is_empty()
                        && s.bytes()
                            .all(|b| b.is_ascii_graphic() && !b"[],\"\\".contains(&b))
                };
                if !valid(&p) {
                    return Err(
                        self.err(&key("perimeter"), format!("{p:?} is not a resource name"))
                    );
                }
                if let Some(l) = &r.level {
                    if !valid(l) || l.contains('.') {
                        return Err(self.err(&key("level"), format!("{l:?} is not a level name")));
                    }
                }
                Access::Perimeter {
                    resource: p,
                    level: r.level,
                }
            }
            (false, None, Some(list)) => {
                if r.level.is_some() {
                    return Err(self.err(&key("level"), "level goes with perimeter"));
                }
                let scope = crate::scope::Scope::parse(&list.join(" "))
                    .map_err(|e| self.err(&key("scopes"), e.to_string()))?;
                Access::Scopes(scope)
            }
        };
        let token_headers = match r.token_headers {
            None => None,
            Some(list) => Some(oauth::token_headers(
                self.file,
                &key("token_headers"),
                list,
            )?),
        };
        let name = match r.name {
            Some(n) if n.trim().is_empty() || n.len() > 128 => {
                return Err(self.err(&key("name"), "must be 1 to 128 characters"))
            }
            Some(n) => n,
            None => format!("{}{}", host.as_deref().unwrap_or(""), path),
        };
        let rate_limit = self.route_rate(&key("rate_limit"), r.rate_limit, public)?;
        let method_override = match r.method_override.as_deref() {
            None | Some("strip") => MethodOverride::Strip,
            Some("authorize") if public => {
                return Err(self.err(
                    &key("method_override"),
                    "a public route authorizes nothing: leave it \"strip\"",
                ))
            }
            Some("authorize") => MethodOverride::Authorize,
            Some(other) => {
                return Err(self.err(
                    &key("method_override"),
                    format!("expected \"strip\" or \"authorize\", got {other:?}"),
                ))
            }
        };
        Ok(RouteConfig {
            name,
            path,
            host,
            upstreams,
            strip_prefix: r.strip_prefix.unwrap_or(false),
            public,
            preserve_host: r.preserve_host.unwrap_or(false),
            upstream_http2: r.upstream_http2.unwrap_or(false),
            timeout: match r.timeout {
                None => upstream.timeout,
                Some(t) => self.duration(&key("timeout"), Some(&t), "")?,
            },
            max_body_bytes: r.max_body_bytes.unwrap_or(server.max_body_bytes),
            access,
            token_headers,
            allow_query_token: r.allow_query_token.unwrap_or(false),
            pass_token: r.pass_token.unwrap_or(false),
            rate_limit,
            method_override,
        })
    }

    fn upstream_target(&self, key: &str, value: &str) -> Result<UpstreamTarget, ConfigError> {
        let bad = |why: &str| self.err(key, format!("{value:?} {why}"));
        let uri: Uri = value
            .parse()
            .map_err(|_| bad("is not a URI like \"http://127.0.0.1:9000\""))?;
        let scheme = uri.scheme().cloned().ok_or_else(|| bad("has no scheme"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(bad("must start with http:// or https://"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| bad("has no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("must not contain credentials"));
        }
        if uri.query().is_some() {
            return Err(bad("must not have a query"));
        }
        let base_path = uri.path().trim_end_matches('/').to_owned();
        Ok(UpstreamTarget {
            scheme,
            authority,
            base_path,
        })
    }
}

#[cfg(test)]
mod tests;
