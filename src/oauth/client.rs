//! OAuth clients: their settings (the same shape in `[[client]]` and in the store),
//! secret hashes, and the registry that finds a client by id (file first, then store).

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{ClientConfig, Ttl};
use crate::scope::Scope;
use crate::store::{ClientRecord, Store, StoreError};

/// Checks a client id: 1 to 128 visible ASCII characters.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(format!(
            "{id:?} must be 1 to 128 visible ASCII characters (no spaces)"
        ));
    }
    if id.starts_with("account:") {
        return Err(format!(
            "{id:?}: the account: prefix is reserved for account tokens"
        ));
    }
    Ok(())
}

/// SHA-256 of a client secret, written `sha256:<hex>`. Secrets authgate generates carry
/// 256 random bits, so a fast hash is enough (unlike user passwords, which use argon2).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash([u8; 32]);

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHash(…)")
    }
}

impl SecretHash {
    /// Hashes `secret`.
    pub fn of(secret: &str) -> SecretHash {
        SecretHash(Sha256::digest(secret.as_bytes()).into())
    }

    /// Parses `sha256:<64 hex digits>`.
    pub fn parse(text: &str) -> Result<SecretHash, String> {
        let hex = text
            .strip_prefix("sha256:")
            .ok_or("must look like sha256:<64 hex digits> (see `authgate client hash-secret`)")?;
        if hex.len() != 64 {
            return Err("must have 64 hex digits after sha256:".into());
        }
        let mut out = [0u8; 32];
        for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
            let pair = std::str::from_utf8(chunk).map_err(|_| "not hex")?;
            out[i] = u8::from_str_radix(pair, 16).map_err(|_| "not hex")?;
        }
        Ok(SecretHash(out))
    }

    /// Compares `secret` with this hash in constant time.
    pub fn verify(&self, secret: &str) -> bool {
        bool::from(SecretHash::of(secret).0.ct_eq(&self.0))
    }
}

impl std::fmt::Display for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sha256:")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Grant types a client may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    AuthorizationCode,
    ClientCredentials,
    RefreshToken,
}

impl GrantType {
    /// All supported grants, as advertised in the metadata document.
    pub const ALL: [GrantType; 3] = [
        GrantType::AuthorizationCode,
        GrantType::ClientCredentials,
        GrantType::RefreshToken,
    ];

    /// The `grant_type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::RefreshToken => "refresh_token",
        }
    }

    /// Parses a `grant_type` value.
    pub fn parse(s: &str) -> Option<GrantType> {
        GrantType::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

/// A client's settings as written in `[[client]]` and stored as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    pub grants: Vec<String>,
    /// The scope the client may be granted (DESIGN §4 grammar).
    pub scopes: String,
    pub redirect_uris: Vec<String>,
    /// `"1h"`, `"never"`; `None`: `oauth.access_token_ttl`.
    pub access_token_ttl: Option<String>,
    /// Whether grants that can issue refresh tokens do.
    pub refresh_tokens: bool,
    /// Each refresh exchange returns a new refresh token and retires the old one.
    pub rotate_refresh_tokens: bool,
    pub public: bool,
    /// The user or account this client acts for (e.g. a Hub API client's user).
    pub subject: Option<String>,
    /// `"required"` or `"optional"` (default; public clients always need PKCE).
    #[serde(default)]
    pub pkce: Option<String>,
    /// Add the bound resource ids and names to token responses (HubRise).
    #[serde(default)]
    pub token_response_extra: bool,
    /// Accept requests that leave out parameters RFC 6749 requires, as some providers
    /// document them (HubRise): `response_type` defaults to `code`, `grant_type` is
    /// inferred from `code`, and the token request may omit `redirect_uri`.
    #[serde(default)]
    pub relaxed_parameters: bool,
    /// Connection reuse (HubRise): re-authorizing the same user and bound resource
    /// returns the same access token; a `device_id` keys a separate one per device.
    #[serde(default)]
    pub reuse_tokens: bool,
    /// `"code"`: an authorization request without `response_type` means `code`
    /// (HubSpot's documented authorize URL has none). Nothing else is relaxed.
    #[serde(default)]
    pub default_response_type: Option<String>,
    /// The authorization response names the granted `scope` next to `code` and
    /// `state` (hubiC).
    #[serde(default)]
    pub callback_scope: bool,
}

/// A usable client.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub name: String,
    pub secret: Option<SecretHash>,
    pub grants: Vec<GrantType>,
    pub scope: Scope,
    pub redirect_uris: Vec<String>,
    pub access_token_ttl: Option<Ttl>,
    pub refresh_tokens: bool,
    pub rotate_refresh_tokens: bool,
    pub public: bool,
    pub subject: Option<String>,
    /// PKCE is mandatory (always for public clients).
    pub pkce_required: bool,
    pub token_response_extra: bool,
    pub relaxed_parameters: bool,
    pub reuse_tokens: bool,
    /// A missing `response_type` means `code` (`default_response_type`, or
    /// `relaxed_parameters`).
    pub default_response_code: bool,
    pub callback_scope: bool,
}

/// The out-of-band redirect URI of installed apps (the code is shown on a page).
pub const OOB: &str = "urn:ietf:wg:oauth:2.0:oob";

impl ClientSettings {
    /// Checks the settings; the error names the offending key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        self.grant_types()?;
        Scope::parse(&self.scopes).map_err(|e| ("scopes", e.to_string()))?;
        if let Some(t) = &self.access_token_ttl {
            Ttl::parse(t).map_err(|e| ("access_token_ttl", e))?;
        }
        for u in &self.redirect_uris {
            let parsed = u
                .parse::<http::Uri>()
                .ok()
                .filter(|p| p.scheme().is_some() && p.authority().is_some() && !u.contains('#'));
            if u != OOB && parsed.is_none() {
                return Err((
                    "redirect_uris",
                    format!("{u:?} is not an absolute URI without fragment (or {OOB})"),
                ));
            }
            // RFC 9700 §2.6 / RFC 8252 §7.3: plain http only to this machine, where
            // nobody on the way can read the code.
            if let Some(p) = parsed.filter(|p| {
                p.scheme_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case("http"))
            }) {
                if !is_loopback_host(p.host().unwrap_or("")) {
                    return Err((
                        "redirect_uris",
                        format!("{u:?}: http:// is allowed only for loopback hosts (127.0.0.1, [::1], localhost); use https:// or a private-use scheme"),
                    ));
                }
            }
        }
        match self.pkce.as_deref() {
            None | Some("required") | Some("optional") => {}
            Some(other) => {
                return Err((
                    "pkce",
                    format!("{other:?}: expected \"required\" or \"optional\""),
                ))
            }
        }
        match self.default_response_type.as_deref() {
            None | Some("code") => {}
            Some(other) => {
                return Err((
                    "default_response_type",
                    format!("{other:?}: the only response type is \"code\""),
                ))
            }
        }
        let has = |g: &str| self.grants.iter().any(|x| x == g);
        if self.refresh_tokens && !has("refresh_token") {
            return Err((
                "refresh_tokens",
                "needs the refresh_token grant (add it to grants)".into(),
            ));
        }
        // RFC 9700 §4.14.2: a public client's refresh token is not bound to a secret, so
        // rotation is what detects a stolen one.
        if self.public && self.refresh_tokens && !self.rotate_refresh_tokens {
            return Err((
                "rotate_refresh_tokens",
                "a public client with refresh tokens must rotate them (set it to true)".into(),
            ));
        }
        let code_only = [
            ("pkce", self.pkce.is_some()),
            ("relaxed_parameters", self.relaxed_parameters),
            ("reuse_tokens", self.reuse_tokens),
            ("token_response_extra", self.token_response_extra),
            (
                "default_response_type",
                self.default_response_type.is_some(),
            ),
            ("callback_scope", self.callback_scope),
        ];
        if let Some((key, _)) = code_only.iter().find(|(_, set)| *set) {
            if !has("authorization_code") {
                return Err((key, "only applies to the authorization_code grant".into()));
            }
        }
        if self.grants.iter().any(|g| g == "authorization_code") && self.redirect_uris.is_empty() {
            return Err((
                "redirect_uris",
                "authorization_code needs at least one registered redirect URI".into(),
            ));
        }
        if self.public && self.grants.iter().any(|g| g == "client_credentials") {
            return Err((
                "grants",
                "a public client cannot use client_credentials (it has no secret)".into(),
            ));
        }
        Ok(())
    }

    fn grant_types(&self) -> Result<Vec<GrantType>, (&'static str, String)> {
        if self.grants.is_empty() {
            return Err(("grants", "must list at least one grant".into()));
        }
        self.grants
            .iter()
            .map(|g| match GrantType::parse(g) {
                Some(t) => Ok(t),
                None => Err((
                    "grants",
                    format!(
                        "{g:?} is not one of authorization_code, client_credentials, refresh_token"
                    ),
                )),
            })
            .collect()
    }

    /// Builds a client from validated settings.
    pub fn into_client(
        self,
        id: String,
        name: String,
        secret: Option<SecretHash>,
    ) -> Result<Client, (&'static str, String)> {
        self.validate()?;
        Ok(Client {
            grants: self.grant_types()?,
            scope: Scope::parse(&self.scopes).map_err(|e| ("scopes", e.to_string()))?,
            access_token_ttl: self
                .access_token_ttl
                .as_deref()
                .map(Ttl::parse)
                .transpose()
                .map_err(|e| ("access_token_ttl", e))?,
            id,
            name,
            secret,
            redirect_uris: self.redirect_uris,
            refresh_tokens: self.refresh_tokens,
            rotate_refresh_tokens: self.rotate_refresh_tokens,
            public: self.public,
            subject: self.subject,
            pkce_required: self.public || self.pkce.as_deref() == Some("required"),
            token_response_extra: self.token_response_extra,
            relaxed_parameters: self.relaxed_parameters,
            reuse_tokens: self.reuse_tokens,
            default_response_code: self.relaxed_parameters
                || self.default_response_type.as_deref() == Some("code"),
            callback_scope: self.callback_scope,
        })
    }
}

/// Whether a redirect URI's host is this machine: 127.0.0.0/8, `[::1]` or `localhost`.
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Client {
    /// Whether the client may use `grant`.
    pub fn allows(&self, grant: GrantType) -> bool {
        self.grants.contains(&grant)
    }
}

/// Finds clients: those in the file first, then those in the store.
pub struct Clients {
    from_file: HashMap<String, Arc<Client>>,
    store: Arc<dyn Store>,
}

impl Clients {
    /// Builds the registry. File clients are validated already.
    pub fn new(configs: &[ClientConfig], store: Arc<dyn Store>) -> Clients {
        let from_file = configs
            .iter()
            .filter_map(|c| {
                let client = c
                    .settings
                    .clone()
                    .into_client(c.id.clone(), c.name.clone(), c.secret.clone())
                    .ok()?;
                Some((c.id.clone(), Arc::new(client)))
            })
            .collect();
        Clients { from_file, store }
    }

    /// The client with `id`, if any.
    pub async fn get(&self, id: &str) -> Result<Option<Arc<Client>>, StoreError> {
        if let Some(c) = self.from_file.get(id) {
            return Ok(Some(c.clone()));
        }
        let Some(record) = self.store.get_client(id).await? else {
            return Ok(None);
        };
        match client_from_record(record) {
            Ok(c) => Ok(Some(Arc::new(c))),
            Err(reason) => {
                tracing::error!(client_id = id, %reason, "stored client is invalid; treating as unknown");
                Ok(None)
            }
        }
    }

    /// Ids of clients declared in the file.
    pub fn file_ids(&self) -> impl Iterator<Item = &str> {
        self.from_file.keys().map(String::as_str)
    }
}

/// Reads a stored client.
pub fn client_from_record(record: ClientRecord) -> Result<Client, String> {
    let settings: ClientSettings =
        serde_json::from_value(record.settings).map_err(|e| format!("settings: {e}"))?;
    let secret = record
        .secret_hash
        .as_deref()
        .map(SecretHash::parse)
        .transpose()?;
    settings
        .into_client(record.id, record.name, secret)
        .map_err(|(k, r)| format!("{k}: {r}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_hashes_round_trip_and_verify() {
        let h = SecretHash::of("s3cret");
        let text = h.to_string();
        assert!(text.starts_with("sha256:") && text.len() == 71);
        let back = SecretHash::parse(&text).unwrap();
        assert!(back.verify("s3cret"));
        assert!(!back.verify("s3cret "));
        assert!(SecretHash::parse("md5:abc").is_err());
        assert!(SecretHash::parse("sha256:zz").is_err());
        assert!(SecretHash::parse(&format!("sha256:{}", "g".repeat(64))).is_err());
        assert_eq!(format!("{h:?}"), "SecretHash(…)");
    }

    fn settings(grants: &[&str]) -> ClientSettings {
        ClientSettings {
            grants: grants.iter().map(|g| g.to_string()).collect(),
            scopes: "usage.r,account.r,links.wd".into(),
            redirect_uris: vec![],
            access_token_ttl: Some("never".into()),
            refresh_tokens: false,
            rotate_refresh_tokens: true,
            public: false,
            subject: None,
            pkce: None,
            token_response_extra: false,
            relaxed_parameters: false,
            reuse_tokens: false,
            default_response_type: None,
            callback_scope: false,
        }
    }

    #[test]
    fn settings_validate_with_named_keys() {
        assert!(settings(&["client_credentials", "refresh_token"])
            .validate()
            .is_ok());
        assert_eq!(settings(&[]).validate().unwrap_err().0, "grants");
        assert_eq!(
            settings(&["authorization_code"]).validate().unwrap_err().0,
            "redirect_uris"
        );
        let mut with_uri = settings(&["authorization_code"]);
        with_uri.redirect_uris = vec!["https://app.example/cb".into(), OOB.into()];
        assert!(with_uri.validate().is_ok());
        with_uri.redirect_uris = vec!["/relative".into()];
        assert_eq!(with_uri.validate().unwrap_err().0, "redirect_uris");
        with_uri.redirect_uris = vec!["https://app.example/cb#frag".into()];
        assert_eq!(with_uri.validate().unwrap_err().0, "redirect_uris");
        with_uri.redirect_uris = vec!["https://app.example/cb".into()];
        with_uri.pkce = Some("sometimes".into());
        assert_eq!(with_uri.validate().unwrap_err().0, "pkce");
        assert_eq!(settings(&["password"]).validate().unwrap_err().0, "grants");
        let mut s = settings(&["client_credentials"]);
        s.scopes = "location[a.r],account[b.r]".into();
        assert_eq!(s.validate().unwrap_err().0, "scopes");
        let mut s = settings(&["client_credentials"]);
        s.access_token_ttl = Some("soon".into());
        assert_eq!(s.validate().unwrap_err().0, "access_token_ttl");
        let mut s = settings(&["client_credentials"]);
        s.public = true;
        assert_eq!(s.validate().unwrap_err().0, "grants");
        let c = settings(&["client_credentials"])
            .into_client("c".into(), "C".into(), None)
            .unwrap();
        assert_eq!(c.access_token_ttl, Some(Ttl::Never));
        assert!(c.allows(GrantType::ClientCredentials) && !c.allows(GrantType::RefreshToken));
    }

    #[test]
    fn plain_http_redirects_only_to_loopback() {
        let mut s = settings(&["authorization_code"]);
        for ok in [
            "http://127.0.0.1:53682/cb",
            "http://127.1.2.3/cb",
            "http://[::1]:8000/cb",
            "http://localhost/cb",
            "HTTP://LOCALHOST:9/cb",
            "https://app.example/cb",
            "com.example.app://oauth/cb",
        ] {
            s.redirect_uris = vec![ok.into()];
            assert!(s.validate().is_ok(), "{ok}");
        }
        for bad in [
            "http://app.example/cb",
            "http://10.0.0.1/cb",
            "http://localhost.evil.example/cb",
            "http://[::2]/cb",
            "http://128.0.0.1/cb",
        ] {
            s.redirect_uris = vec!["https://app.example/cb".into(), bad.into()];
            let (key, reason) = s.validate().unwrap_err();
            assert_eq!(key, "redirect_uris", "{bad}");
            assert!(reason.contains("loopback"), "{reason}");
        }
    }

    #[test]
    fn public_clients_rotate_their_refresh_tokens() {
        let mut s = settings(&["authorization_code", "refresh_token"]);
        s.redirect_uris = vec!["https://app.example/cb".into()];
        s.public = true;
        s.refresh_tokens = true;
        s.rotate_refresh_tokens = false;
        assert_eq!(s.validate().unwrap_err().0, "rotate_refresh_tokens");
        s.rotate_refresh_tokens = true;
        assert!(s.validate().is_ok());
        // Without refresh tokens there is nothing to rotate; a confidential client may
        // keep its refresh token (hubiC, HubSpot).
        s.refresh_tokens = false;
        s.rotate_refresh_tokens = false;
        assert!(s.validate().is_ok());
        s.public = false;
        s.refresh_tokens = true;
        assert!(s.validate().is_ok());
    }

    #[test]
    fn response_type_defaults_and_callback_scope_are_code_grant_settings() {
        let mut s = settings(&["authorization_code"]);
        s.redirect_uris = vec!["https://app.example/cb".into()];
        s.default_response_type = Some("token".into());
        assert_eq!(s.validate().unwrap_err().0, "default_response_type");
        s.default_response_type = Some("code".into());
        s.callback_scope = true;
        let c = s.clone().into_client("c".into(), "C".into(), None).unwrap();
        assert!(c.default_response_code && c.callback_scope);
        let mut cc = settings(&["client_credentials"]);
        cc.callback_scope = true;
        assert_eq!(cc.validate().unwrap_err().0, "callback_scope");
        cc.callback_scope = false;
        cc.default_response_type = Some("code".into());
        assert_eq!(cc.validate().unwrap_err().0, "default_response_type");
        assert!(
            !settings(&["client_credentials"])
                .into_client("c".into(), "C".into(), None)
                .unwrap()
                .default_response_code
        );
    }

    #[test]
    fn ids() {
        assert!(check_id("api_hubic_123").is_ok());
        assert!(check_id("").is_err());
        assert!(check_id("has space").is_err());
        assert!(check_id(&"x".repeat(129)).is_err());
        assert!(check_id("account:5723073937d63a18396a1bae").is_err());
    }
}
