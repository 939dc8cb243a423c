//! Validation of `[store]`, `[oauth]` and `[[client]]`.

use std::time::Duration;

use super::raw::{RawClient, RawOAuth, RawStore};
use super::{ConfigError, ServerConfig};
use crate::oauth::client::{ClientSettings, SecretHash};

/// `[store]`.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `sqlite://PATH` (PostgreSQL arrives with the edge-tier work).
    pub url: String,
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
            Ttl::After(d) => Some(d.as_secs() as i64),
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
    if !url.starts_with("sqlite:") {
        return Err(err(
            file,
            "store.url",
            format!("{url:?}: only sqlite://PATH is supported by this build"),
        ));
    }
    Ok(StoreConfig { url })
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
            i.trim_end_matches('/').to_owned()
        }
        None => match server.https.or(server.http) {
            Some(a) if server.https.is_some() => format!("https://{a}"),
            Some(a) => format!("http://{a}"),
            None => "https://localhost".into(),
        },
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
    let given = [
        raw.secret.is_some(),
        raw.secret_hash.is_some(),
        raw.secret_env.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    let secret = match (public, given) {
        (true, 0) => None,
        (true, _) => {
            return Err(err(
                file,
                &key("public"),
                "a public client has no secret: remove secret/secret_hash/secret_env",
            ))
        }
        (false, 0) => return Err(err(
            file,
            &key("secret_hash"),
            "missing: set one of secret_hash (recommended), secret_env or secret, or public = true",
        )),
        (false, 1) => Some(if let Some(h) = raw.secret_hash {
            SecretHash::parse(&h).map_err(|e| err(file, &key("secret_hash"), e))?
        } else if let Some(var) = raw.secret_env {
            let value = vars(&var).ok_or_else(|| {
                err(
                    file,
                    &key("secret_env"),
                    format!("environment variable {var} is not set"),
                )
            })?;
            SecretHash::of(&value)
        } else {
            SecretHash::of(raw.secret.as_deref().unwrap_or_default())
        }),
        (false, _) => {
            return Err(err(
                file,
                &key("secret_hash"),
                "set only one of secret_hash, secret_env and secret",
            ))
        }
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
