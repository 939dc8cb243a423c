//! The configuration file exactly as written: plain serde structs that reject unknown
//! keys. Nothing here is validated beyond types; [`super::Config::from_raw`] does that.

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub upstream: RawUpstream,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub oauth: RawOAuth,
    #[serde(default)]
    pub client: Vec<RawClient>,
    #[serde(default)]
    pub account: Vec<RawAccount>,
    #[serde(default)]
    pub user: Vec<RawUser>,
    #[serde(default)]
    pub route: Vec<RawRoute>,
    #[serde(default)]
    pub metrics: super::ops::RawMetrics,
    #[serde(default)]
    pub reload: super::ops::RawReload,
    #[serde(default)]
    pub forward_auth: super::ops::RawForwardAuth,
    #[serde(default)]
    pub rate_limits: super::ops::RawRateLimits,
}

/// `[store]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub url: Option<String>,
    pub cache_capacity: Option<u64>,
    pub cache_ttl: Option<String>,
    pub negative_cache_ttl: Option<String>,
    pub revocation_poll: Option<String>,
    pub pool_size: Option<u32>,
    pub connect_timeout: Option<String>,
    pub query_timeout: Option<String>,
    pub sweep_interval: Option<String>,
    pub keep_expired: Option<String>,
}

/// `[auth]`: how proxied requests present and prove their token.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub realm: Option<String>,
    pub token_headers: Option<Vec<String>>,
    pub identity_header_prefix: Option<String>,
}

/// `[oauth]`: the authorization server's endpoints and defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth {
    pub issuer: Option<String>,
    pub token_paths: Option<Vec<String>>,
    pub revoke_path: Option<String>,
    pub introspect_path: Option<String>,
    pub access_token_ttl: Option<String>,
    pub refresh_token_ttl: Option<String>,
    pub secrets_key_file: Option<String>,
    /// Only from `AUTHGATE_OAUTH__SECRETS_KEYS` (refused in the file).
    pub secrets_keys: Option<crate::secret::Secret>,
    pub account_token_path: Option<String>,
    pub authorize_path: Option<String>,
    pub code_ttl: Option<String>,
    pub allow_plain_pkce: Option<bool>,
    pub login_attempts_per_user: Option<u32>,
    pub login_attempts_per_ip: Option<u32>,
    pub login_window: Option<String>,
    pub account_not_found: Option<String>,
}

/// `[[user]]`: a resource owner who can log in on the authorize page.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub name: Option<String>,
    pub password_hash: Option<String>,
    pub password_env: Option<String>,
    pub scopes: Option<String>,
    pub resources: Option<std::collections::BTreeMap<String, String>>,
}

/// `[[account]]`: an account that gets tokens with its id and secret (Hubler style).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccount {
    pub id: Option<String>,
    pub name: Option<String>,
    pub secret: Option<String>,
    pub secret_hash: Option<String>,
    pub secret_env: Option<String>,
    pub users: Option<Vec<String>>,
    pub scopes: Option<String>,
    pub access_token_ttl: Option<String>,
}

/// `[[client]]`: an OAuth client declared in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub id: Option<String>,
    pub name: Option<String>,
    pub secret: Option<String>,
    pub secret_hash: Option<String>,
    pub secret_env: Option<String>,
    pub grants: Option<Vec<String>>,
    pub scopes: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub access_token_ttl: Option<String>,
    pub refresh_tokens: Option<bool>,
    pub rotate_refresh_tokens: Option<bool>,
    pub public: Option<bool>,
    pub subject: Option<String>,
    pub pkce: Option<String>,
    pub token_response_extra: Option<bool>,
    pub relaxed_parameters: Option<bool>,
    pub reuse_tokens: Option<bool>,
    pub default_response_type: Option<String>,
    pub callback_scope: Option<bool>,
}

/// `[server]`: listeners and limits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub https: Option<String>,
    pub http: Option<String>,
    pub http_mode: Option<String>,
    pub redirect_https_port: Option<u16>,
    pub trusted_proxies: Option<Vec<String>>,
    pub client_ip_header: Option<String>,
    pub max_connections: Option<usize>,
    pub workers: Option<usize>,
    pub header_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_header_bytes: Option<usize>,
    pub max_body_bytes: Option<u64>,
    pub http2_max_concurrent_streams: Option<u32>,
    pub shutdown_grace: Option<String>,
    pub underscores_in_headers: Option<bool>,
    pub max_connections_per_ip: Option<u32>,
    pub websocket_idle_timeout: Option<String>,
    pub body_read_timeout: Option<String>,
    pub body_min_rate: Option<u64>,
}

/// `[tls]`: server certificates and HSTS.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub self_signed_if_missing: Option<bool>,
    pub hsts: Option<String>,
    pub handshake_timeout: Option<String>,
    #[serde(default)]
    pub sni: Vec<RawSni>,
}

/// `[[tls.sni]]`: an extra certificate chosen by the client's server name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSni {
    pub server_name: String,
    pub cert: String,
    pub key: String,
}

/// `[upstream]`: how authgate talks to the APIs behind it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub connect_timeout: Option<String>,
    pub timeout: Option<String>,
    pub pool_idle_timeout: Option<String>,
    pub pool_max_idle_per_host: Option<usize>,
    pub ca_file: Option<String>,
    pub retry_after_failure: Option<String>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
}

/// `[[route]]`: a path prefix (and optional host) forwarded to an upstream.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Option<String>,
    pub path: Option<String>,
    pub host: Option<String>,
    pub upstream: Option<String>,
    pub upstreams: Option<Vec<String>>,
    pub strip_prefix: Option<bool>,
    pub public: Option<bool>,
    pub preserve_host: Option<bool>,
    pub upstream_http2: Option<bool>,
    pub timeout: Option<String>,
    pub max_body_bytes: Option<u64>,
    pub perimeter: Option<String>,
    pub level: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub method_scopes: Option<std::collections::BTreeMap<String, Vec<String>>>,
    pub token_headers: Option<Vec<String>>,
    pub allow_query_token: Option<bool>,
    pub pass_token: Option<bool>,
    pub rate_limit: Option<super::ops::RawRate>,
    pub method_override: Option<String>,
}
