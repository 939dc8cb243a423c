//! Validation of `[store]`, `[oauth]` and `[[client]]`.

use std::sync::Arc;
use std::time::Duration;

use super::raw::{RawAccount, RawAuth, RawClient, RawOAuth, RawStore, RawUser};
use super::{ConfigError, ServerConfig};
use crate::keyring::Keyring;
use crate::oauth::client::{ClientSettings, SecretHash};
use crate::secret::Secret;
use crate::store::{is_postgres, redact_url, PoolOptions};

/// `[store]`.
#[derive(Clone)]
pub struct StoreConfig {
    /// `sqlite://PATH` or `postgres://…` (may hold a password: never printed as is).
    pub url: String,
    /// Pool size and timeouts.
    pub pool: PoolOptions,
    /// How often expired and revoked rows are deleted; `None`: never.
    pub sweep_interval: Option<Duration>,
    /// How long expired and revoked tokens and codes are kept (for `authgate token
    /// list` and introspection answers) before the sweep deletes them.
    pub keep_expired: Duration,
    /// Tokens kept in the in-memory token table at most.
    pub cache_capacity: u64,
    /// How long a cached token is trusted before it is read again from the store.
    pub cache_ttl: Duration,
    /// How long an unknown/revoked token is remembered as such.
    pub negative_cache_ttl: Duration,
    /// How often the revocation log is read (revocations by other processes).
    pub revocation_poll: Duration,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &redact_url(&self.url))
            .field("pool", &self.pool)
            .field("cache_capacity", &self.cache_capacity)
            .field("cache_ttl", &self.cache_ttl)
            .field("negative_cache_ttl", &self.negative_cache_ttl)
            .field("revocation_poll", &self.revocation_poll)
            .field("sweep_interval", &self.sweep_interval)
            .field("keep_expired", &self.keep_expired)
            .finish()
    }
}

impl StoreConfig {
    /// How long revocation log entries are kept: long enough for an instance that lost
    /// the store for a while to catch up, and always longer than a cached entry lives.
    pub fn log_retention(&self) -> Duration {
        (self.cache_ttl * 4).max(Duration::from_secs(3600))
    }
}

/// Where proxied requests carry their token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenHeader {
    /// `Authorization: Bearer …` (RFC 6750 §2.1).
    Authorization,
    /// `X-Access-Token: …` (HubRise).
    XAccessToken,
}

impl TokenHeader {
    fn parse(s: &str) -> Option<TokenHeader> {
        match s.to_ascii_lowercase().as_str() {
            "authorization" => Some(TokenHeader::Authorization),
            "x-access-token" => Some(TokenHeader::XAccessToken),
            _ => None,
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `realm` of `WWW-Authenticate: Bearer` challenges.
    pub realm: String,
    /// Headers accepted on routes that don't say otherwise.
    pub token_headers: Vec<TokenHeader>,
    /// Lower-case prefix of identity headers sent upstream (`x-authgate-`).
    pub identity_header_prefix: String,
}

pub(super) fn token_headers(
    file: &str,
    key: &str,
    list: Vec<String>,
) -> Result<Vec<TokenHeader>, ConfigError> {
    if list.is_empty() {
        return Err(err(file, key, "must name at least one header"));
    }
    list.iter()
        .map(|h| {
            TokenHeader::parse(h).ok_or_else(|| {
                err(
                    file,
                    key,
                    format!("{h:?}: expected \"authorization\" or \"x-access-token\""),
                )
            })
        })
        .collect()
}

pub(super) fn auth(file: &str, raw: RawAuth) -> Result<AuthConfig, ConfigError> {
    let realm = raw.realm.unwrap_or_else(|| "authgate".into());
    if realm.is_empty()
        || !realm.chars().all(|c| c.is_ascii_graphic() || c == ' ')
        || realm.contains(['"', '\\'])
    {
        return Err(err(
            file,
            "auth.realm",
            "printable ASCII without quotes or backslashes",
        ));
    }
    let prefix = raw
        .identity_header_prefix
        .unwrap_or_else(|| "X-Authgate-".into())
        .to_ascii_lowercase();
    if prefix.len() < 3 || http::HeaderName::from_bytes(format!("{prefix}x").as_bytes()).is_err() {
        return Err(err(
            file,
            "auth.identity_header_prefix",
            format!("{prefix:?} is not a header name prefix like \"X-Authgate-\""),
        ));
    }
    Ok(AuthConfig {
        realm,
        token_headers: token_headers(
            file,
            "auth.token_headers",
            raw.token_headers
                .unwrap_or_else(|| vec!["authorization".into(), "x-access-token".into()]),
        )?,
        identity_header_prefix: prefix,
    })
}

/// A token lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    Never,
    After(Duration),
}

impl Ttl {
    /// Parses `"1h"`, `"30m"` or `"never"`.
    pub fn parse(text: &str) -> Result<Ttl, String> {
        if text == "never" {
            return Ok(Ttl::Never);
        }
        match humantime::parse_duration(text) {
            Ok(d) if !d.is_zero() => Ok(Ttl::After(d)),
            Ok(_) => Err("must be longer than zero".into()),
            Err(e) => Err(format!(
                "{text:?} is not a duration like \"1h\" or \"30m\", or \"never\": {e}"
            )),
        }
    }

    /// Seconds, or `None` for never.
    pub fn secs(self) -> Option<i64> {
        match self {
            Ttl::Never => None,
            Ttl::After(d) => Some(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        }
    }
}

/// `[oauth]`.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// The `iss` of introspection responses and the metadata document.
    pub issuer: String,
    /// Every path that serves the token endpoint (aliases for seed systems).
    pub token_paths: Vec<String>,
    pub revoke_path: String,
    pub introspect_path: String,
    pub access_token_ttl: Ttl,
    pub refresh_token_ttl: Ttl,
    /// Seals the tokens of reused connections (`reuse_tokens`) in the store; from
    /// `secrets_key_file` or `AUTHGATE_OAUTH__SECRETS_KEYS`. `None`: neither is set.
    pub secrets: Option<Arc<Keyring>>,
    /// Where the account + secret grant is served; `None`: not served.
    pub account_token_path: Option<String>,
    /// The authorization endpoint (login + consent page).
    pub authorize_path: String,
    /// Lifetime of authorization codes.
    pub code_ttl: Duration,
    /// Accept `code_challenge_method=plain` (RFC 7636 allows it; off by default).
    pub allow_plain_pkce: bool,
    /// Failed logins allowed per user name, and per client address, in `login_window`.
    pub login_attempts_per_user: u32,
    pub login_attempts_per_ip: u32,
    pub login_window: Duration,
    /// How the account grant's own path answers an unknown account.
    pub account_not_found: AccountNotFound,
}

/// `oauth.account_not_found`: the Hubler path's answer to an account id no
/// `[[account]]` has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountNotFound {
    /// 400 "The account not found!", as Hubler documents it: callers learn which
    /// account ids exist.
    Distinct,
    /// The same status and body as a wrong secret (401), so they do not.
    Uniform,
}

/// One validated `[[user]]`.
#[derive(Debug, Clone)]
pub struct UserConfig {
    pub name: String,
    /// argon2 PHC string.
    pub password_hash: String,
    /// What the user may grant; `None`: whatever the client may have.
    pub scope: Option<crate::scope::Scope>,
    /// Bound resource ids and names, e.g. `account_id`, `location_name`.
    pub resources: std::collections::BTreeMap<String, String>,
}

pub(super) fn user(
    file: &str,
    i: usize,
    raw: RawUser,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<UserConfig, ConfigError> {
    let key = |k: &str| format!("user[{i}].{k}");
    let name = raw
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| err(file, &key("name"), "missing: every user needs a name"))?;
    let password_hash =
        match (raw.password_hash, raw.password_env) {
            (Some(h), None) => {
                crate::oauth::password::check_phc(&h)
                    .map_err(|e| err(file, &key("password_hash"), e))?;
                h
            }
            (None, Some(var)) => {
                let pw = vars(&var).ok_or_else(|| {
                    err(
                        file,
                        &key("password_env"),
                        format!("environment variable {var} is not set"),
                    )
                })?;
                crate::oauth::password::check_new(&pw)
                    .map_err(|e| err(file, &key("password_env"), format!("{var}: {e}")))?;
                crate::oauth::password::hash(&pw).map_err(|e| err(file, &key("password_env"), e))?
            }
            (None, None) => return Err(err(
                file,
                &key("password_hash"),
                "missing: set password_hash (from `authgate user hash-password`) or password_env",
            )),
            (Some(_), Some(_)) => {
                return Err(err(
                    file,
                    &key("password_hash"),
                    "set password_hash or password_env, not both",
                ))
            }
        };
    let scope = raw
        .scopes
        .map(|s| crate::scope::Scope::parse(&s))
        .transpose()
        .map_err(|e| err(file, &key("scopes"), e.to_string()))?;
    let resources = raw.resources.unwrap_or_default();
    if let Some(k) = resources.keys().find(|k| {
        let n = k.replace('-', "_").to_ascii_lowercase();
        crate::gateway::identity::RESERVED_KEYS.contains(&n.as_str())
    }) {
        return Err(err(
            file,
            &key("resources"),
            format!("{k:?} would collide with an identity header; choose another key"),
        ));
    }
    Ok(UserConfig {
        name,
        password_hash,
        scope,
        resources,
    })
}

/// One validated `[[account]]`.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    /// 24 lower-case hex digits (a MongoDB ObjectId).
    pub id: String,
    pub name: String,
    pub secret: SecretHash,
    /// User ids (ObjectIds) tokens may be issued for.
    pub users: Vec<String>,
    pub scope: crate::scope::Scope,
    pub access_token_ttl: Option<Ttl>,
}

/// Whether `s` is a 24-hex-digit ObjectId.
pub fn is_object_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// One validated `[[client]]`.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub id: String,
    pub name: String,
    /// `None` for public clients.
    pub secret: Option<SecretHash>,
    pub settings: ClientSettings,
}

fn err(file: &str, key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        file: file.to_owned(),
        key: key.to_owned(),
        reason: reason.into(),
    }
}

pub(super) fn store(file: &str, raw: RawStore) -> Result<StoreConfig, ConfigError> {
    let url = raw
        .url
        .unwrap_or_else(|| "sqlite://data/authgate.db".into());
    if !url.starts_with("sqlite:") && !is_postgres(&url) {
        return Err(err(
            file,
            "store.url",
            format!(
                "{:?}: use sqlite://PATH or postgres://USER@HOST/DATABASE",
                redact_url(&url)
            ),
        ));
    }
    let duration = |key: &str, value: Option<String>, default: &str| {
        let text = value.unwrap_or_else(|| default.to_owned());
        match humantime::parse_duration(&text) {
            Ok(d) if !d.is_zero() => Ok(d),
            _ => Err(err(
                file,
                key,
                format!("{text:?} is not a duration like \"30s\" longer than zero"),
            )),
        }
    };
    let cache_capacity = raw.cache_capacity.unwrap_or(1_000_000);
    if cache_capacity == 0 {
        return Err(err(file, "store.cache_capacity", "must be at least 1"));
    }
    let pool_size = raw.pool_size.unwrap_or(10);
    if is_postgres(&url) && pool_size < 2 {
        return Err(err(
            file,
            "store.pool_size",
            "must be at least 2 (token checks and issuance wait for a free connection)",
        ));
    }
    let sweep_interval = match raw.sweep_interval.as_deref() {
        Some("off") => None,
        other => Some(duration(
            "store.sweep_interval",
            other.map(str::to_owned),
            "10m",
        )?),
    };
    Ok(StoreConfig {
        pool: PoolOptions {
            max_connections: pool_size,
            connect_timeout: duration("store.connect_timeout", raw.connect_timeout, "5s")?,
            query_timeout: duration("store.query_timeout", raw.query_timeout, "5s")?,
        },
        sweep_interval,
        keep_expired: duration("store.keep_expired", raw.keep_expired, "1d")?,
        url,
        cache_capacity,
        cache_ttl: duration("store.cache_ttl", raw.cache_ttl, "30s")?,
        negative_cache_ttl: duration("store.negative_cache_ttl", raw.negative_cache_ttl, "5s")?,
        revocation_poll: duration("store.revocation_poll", raw.revocation_poll, "1s")?,
    })
}

fn path(file: &str, key: &str, value: String) -> Result<String, ConfigError> {
    if !value.starts_with('/') || value.contains(['?', '#', ' ']) {
        return Err(err(
            file,
            key,
            format!("{value:?} must be a path starting with /"),
        ));
    }
    Ok(value)
}

pub(super) fn oauth(
    file: &str,
    raw: RawOAuth,
    server: &ServerConfig,
) -> Result<OAuthConfig, ConfigError> {
    let issuer = match raw.issuer {
        Some(i) => {
            let uri: http::Uri = i
                .parse()
                .map_err(|_| err(file, "oauth.issuer", format!("{i:?} is not a URL")))?;
            if uri.scheme_str() != Some("https") || uri.query().is_some() {
                return Err(err(
                    file,
                    "oauth.issuer",
                    "must be an https:// URL without query (RFC 8414 §2)",
                ));
            }
            // Endpoints are served at fixed paths on this host, so an issuer with a path
            // would advertise URLs that are not served.
            if !matches!(uri.path(), "" | "/") {
                return Err(err(
                    file,
                    "oauth.issuer",
                    "must have no path: authgate serves its endpoints at the host's root",
                ));
            }
            i.trim_end_matches('/').to_owned()
        }
        None => {
            // From the HTTPS listener; an unspecified bind address (0.0.0.0) is no name
            // a client could use, so it becomes localhost: set oauth.issuer in production.
            let port = server.https.or(server.http).map_or(443, |a| a.port());
            match server.https {
                Some(a) if !a.ip().is_unspecified() => format!("https://{a}"),
                _ if port == 443 => "https://localhost".into(),
                _ => format!("https://localhost:{port}"),
            }
        }
    };
    let token_paths = raw
        .token_paths
        .unwrap_or_else(|| vec!["/oauth/token".into()])
        .into_iter()
        .enumerate()
        .map(|(i, p)| path(file, &format!("oauth.token_paths[{i}]"), p))
        .collect::<Result<Vec<_>, _>>()?;
    if token_paths.is_empty() {
        return Err(err(
            file,
            "oauth.token_paths",
            "must list at least one path",
        ));
    }
    let ttl = |key: &str, value: Option<String>, default: &str| {
        Ttl::parse(value.as_deref().unwrap_or(default)).map_err(|e| err(file, key, e))
    };
    Ok(OAuthConfig {
        issuer,
        token_paths,
        revoke_path: path(
            file,
            "oauth.revoke_path",
            raw.revoke_path.unwrap_or_else(|| "/oauth/revoke".into()),
        )?,
        introspect_path: path(
            file,
            "oauth.introspect_path",
            raw.introspect_path
                .unwrap_or_else(|| "/oauth/introspect".into()),
        )?,
        access_token_ttl: ttl("oauth.access_token_ttl", raw.access_token_ttl, "1h")?,
        refresh_token_ttl: ttl("oauth.refresh_token_ttl", raw.refresh_token_ttl, "30d")?,
        secrets: secrets(file, raw.secrets_key_file, raw.secrets_keys)?,
        account_token_path: raw
            .account_token_path
            .map(|p| path(file, "oauth.account_token_path", p))
            .transpose()?,
        authorize_path: path(
            file,
            "oauth.authorize_path",
            raw.authorize_path
                .unwrap_or_else(|| "/oauth/authorize".into()),
        )?,
        code_ttl: match Ttl::parse(raw.code_ttl.as_deref().unwrap_or("10m")) {
            Ok(Ttl::After(d)) => d,
            Ok(Ttl::Never) => return Err(err(file, "oauth.code_ttl", "codes must expire")),
            Err(e) => return Err(err(file, "oauth.code_ttl", e)),
        },
        allow_plain_pkce: raw.allow_plain_pkce.unwrap_or(false),
        login_attempts_per_user: match raw.login_attempts_per_user.unwrap_or(5) {
            0 => {
                return Err(err(
                    file,
                    "oauth.login_attempts_per_user",
                    "must be at least 1",
                ))
            }
            n => n,
        },
        login_attempts_per_ip: match raw.login_attempts_per_ip.unwrap_or(20) {
            0 => {
                return Err(err(
                    file,
                    "oauth.login_attempts_per_ip",
                    "must be at least 1",
                ))
            }
            n => n,
        },
        login_window: match Ttl::parse(raw.login_window.as_deref().unwrap_or("15m")) {
            Ok(Ttl::After(d)) => d,
            _ => return Err(err(file, "oauth.login_window", "a duration like \"15m\"")),
        },
        account_not_found: match raw.account_not_found.as_deref().unwrap_or("distinct") {
            "distinct" => AccountNotFound::Distinct,
            "uniform" => AccountNotFound::Uniform,
            other => {
                return Err(err(
                    file,
                    "oauth.account_not_found",
                    format!(
                        "expected \"distinct\" (Hubler's 400 \"The account not found!\") or \"uniform\" (answered like a wrong secret), got {:?}",
                        other
                    ),
                ))
            }
        },
    })
}

/// The keyring of `oauth.secrets_key_file` or of `AUTHGATE_OAUTH__SECRETS_KEYS` (one of
/// them); `None` when neither is set.
fn secrets(
    file: &str,
    key_file: Option<String>,
    keys: Option<Secret>,
) -> Result<Option<Arc<Keyring>>, ConfigError> {
    let ring = match (key_file, keys) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(err(
                file,
                "oauth.secrets_key_file",
                "AUTHGATE_OAUTH__SECRETS_KEYS is set too: use one of them",
            ))
        }
        (Some(path), None) => Keyring::read_file(std::path::Path::new(&path))
            .map_err(|e| err(file, "oauth.secrets_key_file", e))?,
        (None, Some(keys)) => Keyring::parse(keys.expose()).map_err(|reason| ConfigError::Env {
            var: crate::keyring::KEYS_VAR.into(),
            reason,
        })?,
    };
    Ok(Some(Arc::new(ring)))
}

/// Reads one of `secret_hash`, `secret_env`, `secret` (exactly one must be set).
fn secret_of(
    file: &str,
    key: &dyn Fn(&str) -> String,
    hash: Option<String>,
    env: Option<String>,
    clear: Option<String>,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<SecretHash>, ConfigError> {
    match (hash, env, clear) {
        (None, None, None) => Ok(None),
        (Some(h), None, None) => SecretHash::parse(&h)
            .map(Some)
            .map_err(|e| err(file, &key("secret_hash"), e)),
        (None, Some(var), None) => match vars(&var) {
            Some(v) => Ok(Some(SecretHash::of(&v))),
            None => Err(err(
                file,
                &key("secret_env"),
                format!("environment variable {var} is not set"),
            )),
        },
        (None, None, Some(s)) => Ok(Some(SecretHash::of(&s))),
        _ => Err(err(
            file,
            &key("secret_hash"),
            "set only one of secret_hash, secret_env and secret",
        )),
    }
}

pub(super) fn account(
    file: &str,
    i: usize,
    raw: RawAccount,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<AccountConfig, ConfigError> {
    let key = |k: &str| format!("account[{i}].{k}");
    let id = raw
        .id
        .ok_or_else(|| err(file, &key("id"), "missing: every account needs an id"))?;
    if !is_object_id(&id) {
        return Err(err(
            file,
            &key("id"),
            format!("{id:?} is not an ObjectId (24 hex digits)"),
        ));
    }
    let secret = secret_of(
        file,
        &key,
        raw.secret_hash,
        raw.secret_env,
        raw.secret,
        vars,
    )?
    .ok_or_else(|| {
        err(
            file,
            &key("secret_hash"),
            "missing: set one of secret_hash, secret_env or secret",
        )
    })?;
    let users = raw.users.unwrap_or_default();
    if let Some(u) = users.iter().find(|u| !is_object_id(u)) {
        return Err(err(
            file,
            &key("users"),
            format!("{u:?} is not an ObjectId (24 hex digits)"),
        ));
    }
    Ok(AccountConfig {
        name: raw.name.unwrap_or_else(|| id.clone()),
        id: id.to_ascii_lowercase(),
        secret,
        users: users.iter().map(|u| u.to_ascii_lowercase()).collect(),
        scope: crate::scope::Scope::parse(raw.scopes.as_deref().unwrap_or(""))
            .map_err(|e| err(file, &key("scopes"), e.to_string()))?,
        access_token_ttl: raw
            .access_token_ttl
            .as_deref()
            .map(Ttl::parse)
            .transpose()
            .map_err(|e| err(file, &key("access_token_ttl"), e))?,
    })
}

pub(super) fn client(
    file: &str,
    i: usize,
    raw: RawClient,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<ClientConfig, ConfigError> {
    let key = |k: &str| format!("client[{i}].{k}");
    let id = raw
        .id
        .ok_or_else(|| err(file, &key("id"), "missing: every client needs an id"))?;
    crate::oauth::client::check_id(&id).map_err(|e| err(file, &key("id"), e))?;
    let public = raw.public.unwrap_or(false);
    let secret = secret_of(
        file,
        &key,
        raw.secret_hash,
        raw.secret_env,
        raw.secret,
        vars,
    )?;
    let secret = match (public, secret) {
        (true, None) => None,
        (true, Some(_)) => {
            return Err(err(
                file,
                &key("public"),
                "a public client has no secret: remove secret/secret_hash/secret_env",
            ))
        }
        (false, None) => return Err(err(
            file,
            &key("secret_hash"),
            "missing: set one of secret_hash (recommended), secret_env or secret, or public = true",
        )),
        (false, Some(h)) => Some(h),
    };
    let settings = ClientSettings {
        grants: raw
            .grants
            .unwrap_or_else(|| vec!["client_credentials".into()]),
        scopes: raw.scopes.unwrap_or_default(),
        redirect_uris: raw.redirect_uris.unwrap_or_default(),
        access_token_ttl: raw.access_token_ttl,
        refresh_tokens: raw.refresh_tokens.unwrap_or(false),
        rotate_refresh_tokens: raw.rotate_refresh_tokens.unwrap_or(true),
        public,
        subject: raw.subject,
        pkce: raw.pkce,
        token_response_extra: raw.token_response_extra.unwrap_or(false),
        relaxed_parameters: raw.relaxed_parameters.unwrap_or(false),
        reuse_tokens: raw.reuse_tokens.unwrap_or(false),
        default_response_type: raw.default_response_type,
        callback_scope: raw.callback_scope.unwrap_or(false),
    };
    settings
        .validate()
        .map_err(|(k, reason)| err(file, &key(k), reason))?;
    Ok(ClientConfig {
        name: raw.name.unwrap_or_else(|| id.clone()),
        id,
        secret,
        settings,
    })
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    const NO_TLS: &str = "[server]\nhttps = \"off\"\nhttp_mode = \"serve\"\n";

    fn load_err(rest: &str, vars: &[(&str, &str)]) -> String {
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        match Config::parse(&format!("{NO_TLS}{rest}"), "test.toml", vars) {
            Ok(_) => panic!("accepted:\n{rest}"),
            Err(e) => e.to_string(),
        }
    }

    const REUSE_CLIENT: &str = "[[client]]\nid = \"pos\"\nsecret = \"s\"\n\
        grants = [\"authorization_code\"]\nredirect_uris = [\"https://pos.example/cb\"]\n\
        reuse_tokens = true\n";
    /// A keyring entry (id "k1", 32 bytes of 7 in base64).
    const K1: &str = "k1:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

    #[test]
    fn reuse_clients_need_a_key_the_store_does_not_hold() {
        let e = load_err(REUSE_CLIENT, &[]);
        assert!(e.starts_with("test.toml: client[0].reuse_tokens:"), "{e}");
        assert!(
            e.contains("oauth.secrets_key_file") && e.contains("AUTHGATE_OAUTH__SECRETS_KEYS"),
            "{e}"
        );
        let vars = [(
            "AUTHGATE_OAUTH__SECRETS_KEYS".to_string(),
            format!("k2:{},{K1}", &K1[3..]),
        )];
        let c = Config::parse(
            &format!("{NO_TLS}{REUSE_CLIENT}"),
            "test.toml",
            vars.into_iter(),
        )
        .unwrap();
        let ring = c.oauth.secrets.as_ref().unwrap();
        assert_eq!(ring.ids().collect::<Vec<_>>(), ["k2", "k1"]);
        assert!(!format!("{c:?}").contains(&K1[3..]), "keys never print");
    }

    #[test]
    fn keys_come_from_a_file_or_the_environment_never_this_file() {
        let e = load_err(&format!("[oauth]\nsecrets_keys = \"{K1}\"\n"), &[]);
        assert!(
            e.starts_with("test.toml: oauth.secrets_keys: keys do not belong"),
            "{e}"
        );
        assert!(!e.contains(&K1[3..]), "{e}");
        let e = load_err("", &[("AUTHGATE_OAUTH__SECRETS_KEYS", "k1:c2hvcnQ=")]);
        assert!(
            e.starts_with("environment variable AUTHGATE_OAUTH__SECRETS_KEYS: entry 1 (key id \"k1\"): the key must be 32 bytes"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.keys");
        let e = load_err(&format!("[oauth]\nsecrets_key_file = {missing:?}\n"), &[]);
        assert!(
            e.starts_with("test.toml: oauth.secrets_key_file: cannot read"),
            "{e}"
        );
        assert!(e.contains("none.keys"), "{e}");
        let file = dir.path().join("secrets.keys");
        std::fs::write(&file, format!("# authgate\n{K1}\nk2 no colon\n")).unwrap();
        let with_file = format!("[oauth]\nsecrets_key_file = {file:?}\n");
        let e = load_err(&with_file, &[]);
        assert!(e.contains("secrets.keys: line 3: expected ID:KEY"), "{e}");
        std::fs::write(&file, format!("# authgate\n{K1}\n")).unwrap();
        let e = load_err(&with_file, &[("AUTHGATE_OAUTH__SECRETS_KEYS", K1)]);
        assert!(
            e.contains("oauth.secrets_key_file: AUTHGATE_OAUTH__SECRETS_KEYS is set too"),
            "{e}"
        );
        let c = Config::parse(
            &format!("{NO_TLS}{with_file}{REUSE_CLIENT}"),
            "test.toml",
            std::iter::empty(),
        )
        .unwrap();
        assert_eq!(c.oauth.secrets.unwrap().primary_id(), "k1");
    }

    #[test]
    fn file_users_obey_the_cli_password_length() {
        let user = "[[user]]\nname = \"demo\"\npassword_env = \"DEMO_PW\"\n";
        let short = "x".repeat(crate::oauth::password::MIN_PASSWORD_LEN - 1);
        let e = load_err(user, &[("DEMO_PW", &short)]);
        assert!(
            e.starts_with("test.toml: user[0].password_env: DEMO_PW:"),
            "{e}"
        );
        assert!(e.contains("at least 8 characters"), "{e}");
        let long = "x".repeat(crate::oauth::password::MIN_PASSWORD_LEN);
        let vars = [("DEMO_PW".to_string(), long)];
        Config::parse(&format!("{NO_TLS}{user}"), "test.toml", vars.into_iter()).unwrap();
    }

    #[test]
    fn public_clients_with_refresh_tokens_must_rotate_them() {
        let e = load_err(
            "[[client]]\nid = \"app\"\npublic = true\ngrants = [\"authorization_code\", \"refresh_token\"]\n\
             redirect_uris = [\"https://app.example/cb\"]\nrefresh_tokens = true\nrotate_refresh_tokens = false\n",
            &[],
        );
        assert!(
            e.starts_with("test.toml: client[0].rotate_refresh_tokens: a public client"),
            "{e}"
        );
    }

    #[test]
    fn plain_http_redirect_uris_only_for_loopback() {
        let client = |uri: &str| {
            format!(
                "[[client]]\nid = \"app\"\nsecret = \"s\"\ngrants = [\"authorization_code\"]\n\
                 redirect_uris = [\"{uri}\"]\n"
            )
        };
        let e = load_err(&client("http://app.example/cb"), &[]);
        assert!(e.starts_with("test.toml: client[0].redirect_uris:"), "{e}");
        assert!(e.contains("loopback"), "{e}");
        for ok in [
            "http://127.0.0.1:8000/cb",
            "http://[::1]/cb",
            "http://localhost:3000/cb",
            "https://app.example/cb",
            "com.example.app://cb",
        ] {
            Config::parse(
                &format!("{NO_TLS}{}", client(ok)),
                "test.toml",
                std::iter::empty(),
            )
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }
}
