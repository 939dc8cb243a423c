//! The account + secret grant (Hubler, seed 002): `POST` to `oauth.account_token_path`
//! with `account` (an ObjectId), `secret` and optionally `user_id`, as JSON or as a form.
//! Success is `200 {"status": "success", "token": "agat_…"}`.
//!
//! Errors follow the seed's table: `{"error": "Validation" | "Error",
//! "error_description": …}` with 400 for validation (missing, unsupported or repeated
//! parameter; account not an ObjectId; secret not a string; account not found), 401 when
//! authentication fails, and 503 `"Error"` when the token cannot be stored. "Account not
//! found" tells callers which account ids exist; `oauth.account_not_found = "uniform"`
//! answers it like a wrong secret instead.
//!
//! The same grant is served at the token endpoint as an RFC 6749 §4.5 extension grant
//! ([`GRANT_TYPE`], see `token_endpoint`); both use [`OAuth::authenticate_account`] and
//! [`OAuth::issue_account_token`], so their tokens are alike.

use std::fmt;

use crate::body::Incoming;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::{form, json_no_store, OAuth};
use crate::body::Body;
use crate::config::{is_object_id, AccountConfig, AccountNotFound};
use crate::error::json_error;
use crate::store::{TokenKind, TokenRecord};
use crate::token::{self, Kind};

/// A failure of the account grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountError {
    /// 400 `Validation`.
    Validation(String),
    /// 401 `Validation`: wrong secret, or a user that is not the account's.
    AuthFailed(&'static str),
    /// 405.
    Method,
    /// 413.
    TooLarge,
    /// 503 `Error`: the store failed.
    Internal,
    /// 429: too many attempts for this account or address (seconds to wait).
    TooMany(i64),
}

impl AccountError {
    fn into_response(self) -> Response<Body> {
        let retry_after = match &self {
            AccountError::TooMany(wait) => Some(*wait),
            _ => None,
        };
        let (status, code, text) = match self {
            AccountError::Validation(t) => (StatusCode::BAD_REQUEST, "Validation", t),
            AccountError::AuthFailed(t) => (StatusCode::UNAUTHORIZED, "Validation", t.into()),
            AccountError::Method => (
                StatusCode::METHOD_NOT_ALLOWED,
                "Validation",
                "Use POST.".into(),
            ),
            AccountError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "Validation",
                "The request body is too large.".into(),
            ),
            AccountError::Internal => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Error",
                "Error in generating auth token!".into(),
            ),
            AccountError::TooMany(wait) => (
                StatusCode::TOO_MANY_REQUESTS,
                "Validation",
                format!("Too many attempts. Retry in {wait} seconds."),
            ),
        };
        let mut resp = json_error(status, code, &text);
        if let Some(wait) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        }
        resp.headers_mut()
            .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if status == StatusCode::METHOD_NOT_ALLOWED {
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        resp
    }
}

fn invalid(text: impl Into<String>) -> AccountError {
    AccountError::Validation(text.into())
}

/// A parameter value: JSON may carry non-strings, forms only strings.
#[derive(Debug)]
enum Value {
    Str(String),
    Other,
}

/// The body as an ordered list of parameters, repeats included.
struct Pairs(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Pairs, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                    let v = match v {
                        serde_json::Value::String(s) => Value::Str(s),
                        _ => Value::Other,
                    };
                    out.push((k, v));
                }
                Ok(Pairs(out))
            }
        }
        d.deserialize_map(V)
    }
}

const PARAMS: [&str; 3] = ["account", "secret", "user_id"];

async fn read_params(req: Request<Incoming>) -> Result<Vec<(String, Value)>, AccountError> {
    if req.method() != Method::POST {
        return Err(AccountError::Method);
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let bytes: Bytes = Limited::new(req.into_body(), form::MAX_FORM_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                AccountError::TooLarge
            } else {
                invalid("The request body could not be read.")
            }
        })?
        .to_bytes();
    match content_type.as_str() {
        "application/json" => serde_json::from_slice::<Pairs>(&bytes)
            .map(|p| p.0)
            .map_err(|_| invalid("The request body must be a JSON object.")),
        "application/x-www-form-urlencoded" => Ok(form_urlencoded::parse(&bytes)
            .map(|(k, v)| (k.into_owned(), Value::Str(v.into_owned())))
            .collect()),
        _ => Err(invalid(
            "The request body must be application/json or application/x-www-form-urlencoded.",
        )),
    }
}

/// The `grant_type` of the account + secret grant at the token endpoint (RFC 6749 §4.5
/// wants an absolute URI). It has the shape of the IANA `urn:ietf:params:oauth:grant-type:`
/// names (RFC 6755) without claiming that namespace, which is for registered grants.
pub const GRANT_TYPE: &str = "urn:authgate:params:oauth:grant-type:account-secret";

/// The validated request.
#[derive(Debug)]
pub(super) struct AccountRequest {
    /// 24 lower-case hex digits.
    pub account: String,
    pub secret: crate::secret::Secret,
    /// 24 lower-case hex digits.
    pub user_id: Option<String>,
}

/// Why [`OAuth::authenticate_account`] refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Over `rate_limits.oauth_per_client` for this account id.
    Limited(crate::ratelimit::Limited),
    /// Over the login limits (`oauth.login_*`): seconds to wait.
    TooMany(i64),
    /// No `[[account]]` has this id.
    NotFound,
    /// The secret is not the account's.
    WrongSecret,
    /// `user_id` is not one of the account's `users`.
    NotAUser,
}

/// Validation in the seed's order, without I/O.
fn validate(params: Vec<(String, Value)>) -> Result<AccountRequest, AccountError> {
    for (i, (k, _)) in params.iter().enumerate() {
        if !PARAMS.contains(&k.as_str()) {
            return Err(invalid(format!(
                "The request includes an unsupported parameter {}.",
                form::printable(k)
            )));
        }
        if params[..i].iter().any(|(seen, _)| seen == k) {
            return Err(invalid(format!("The request repeats the parameter {k}.")));
        }
    }
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let account = match get("account") {
        None => return Err(invalid("The request is missing an account.")),
        Some(Value::Str(s)) if s.is_empty() => {
            return Err(invalid("The request is missing an account."))
        }
        Some(Value::Str(s)) if is_object_id(s) => s.to_ascii_lowercase(),
        Some(_) => return Err(invalid("The account must be object id.")),
    };
    let secret = match get("secret") {
        None => return Err(invalid("The request is missing a secret.")),
        Some(Value::Str(s)) if s.is_empty() => {
            return Err(invalid("The request is missing a secret."))
        }
        Some(Value::Str(s)) => crate::secret::Secret::new(s.clone()),
        Some(Value::Other) => return Err(invalid("The secret must be str")),
    };
    let user_id = match get("user_id") {
        None => None,
        Some(Value::Str(s)) if s.is_empty() => None,
        Some(Value::Str(s)) if is_object_id(s) => Some(s.to_ascii_lowercase()),
        Some(_) => return Err(invalid("The user_id must be object id.")),
    };
    Ok(AccountRequest {
        account,
        secret,
        user_id,
    })
}

/// The account request of a token endpoint form (the extension grant): `account` and
/// `secret` required, `user_id` optional; other parameters are not this function's
/// (RFC 6749 §3.2: unknown ones are ignored). Errors are `invalid_request`.
pub(super) fn from_token_form(f: &form::Form) -> Result<AccountRequest, super::OAuthError> {
    let bad = |m: &str| super::OAuthError::InvalidRequest(m.into());
    let account = match f.get("account") {
        None => return Err(bad("account is missing")),
        Some(a) if is_object_id(a) => a.to_ascii_lowercase(),
        Some(_) => return Err(bad("account must be an ObjectId (24 hex digits)")),
    };
    let secret = f.get("secret").ok_or_else(|| bad("secret is missing"))?;
    let user_id = match f.get("user_id") {
        None => None,
        Some(u) if is_object_id(u) => Some(u.to_ascii_lowercase()),
        Some(_) => return Err(bad("user_id must be an ObjectId (24 hex digits)")),
    };
    Ok(AccountRequest {
        account,
        secret: crate::secret::Secret::new(secret.to_owned()),
        user_id,
    })
}

impl OAuth {
    pub(super) async fn account_grant(
        &self,
        req: Request<Incoming>,
        client_ip: std::net::IpAddr,
        who: &mut Option<String>,
    ) -> Response<Body> {
        match self.account_token(req, client_ip, who).await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::info!(error = ?e, "account token refused");
                e.into_response()
            }
        }
    }

    async fn account_token(
        &self,
        req: Request<Incoming>,
        client_ip: std::net::IpAddr,
        who: &mut Option<String>,
    ) -> Result<Response<Body>, AccountError> {
        let request = validate(read_params(req).await?)?;
        let failed = invalid_account_or_secret();
        let account = match self.authenticate_account(&request, client_ip, who) {
            Ok(a) => a,
            Err(Refusal::Limited(l)) => {
                return Err(AccountError::TooMany(l.retry_after_secs() as i64))
            }
            Err(Refusal::TooMany(wait)) => return Err(AccountError::TooMany(wait)),
            Err(Refusal::NotFound) => {
                return Err(match self.cfg.account_not_found {
                    AccountNotFound::Distinct => invalid("The account not found!"),
                    AccountNotFound::Uniform => failed,
                })
            }
            Err(Refusal::WrongSecret) => return Err(failed),
            Err(Refusal::NotAUser) => {
                return Err(AccountError::AuthFailed(
                    "User authentication failed: the user does not belong to this account.",
                ))
            }
        };
        let scope = account.scope.clone();
        let Ok((value, _)) = self
            .issue_account_token(account, request.user_id.as_deref(), &scope)
            .await
        else {
            return Err(AccountError::Internal);
        };
        Ok(json_no_store(
            StatusCode::OK,
            &serde_json::json!({ "status": "success", "token": value.expose() }),
        ))
    }

    /// Checks an account request: the request limits, then the account, its secret and
    /// the user. Every attempt counts against the login limits (`oauth.login_*`, per
    /// account id and address) before the secret is checked; a success takes it back.
    /// An unknown account costs the same hash as a known one. `who` is the token's
    /// client id (`account:<id>`) once the account is known, for the access log.
    pub(super) fn authenticate_account(
        &self,
        request: &AccountRequest,
        client_ip: std::net::IpAddr,
        who: &mut Option<String>,
    ) -> Result<&AccountConfig, Refusal> {
        self.limits
            .oauth_client(&request.account)
            .map_err(Refusal::Limited)?;
        // Counted before the secret is checked, so parallel guesses cannot outrun it.
        self.account_attempts
            .attempt(&request.account, client_ip)
            .map_err(Refusal::TooMany)?;
        let Some(account) = self.accounts.iter().find(|a| a.id == request.account) else {
            let _ = super::client::SecretHash::of("").verify(request.secret.expose());
            return Err(Refusal::NotFound);
        };
        *who = Some(format!("account:{}", account.id));
        if !account.secret.verify(request.secret.expose()) {
            return Err(Refusal::WrongSecret);
        }
        if let Some(u) = &request.user_id {
            if !account.users.contains(u) {
                return Err(Refusal::NotAUser);
            }
        }
        self.account_attempts.succeeded(&request.account, client_ip);
        Ok(account)
    }

    /// Issues and stores (committed before returning) an access token for `account`,
    /// acting for `user_id` (or the account), with `scope`. Returns the token and its
    /// lifetime in seconds (`None`: never expires).
    pub(super) async fn issue_account_token(
        &self,
        account: &AccountConfig,
        user_id: Option<&str>,
        scope: &crate::scope::Scope,
    ) -> Result<(crate::secret::Secret, Option<i64>), crate::store::StoreError> {
        let now = (self.clock)();
        let value = self.codec.mint(Kind::Access);
        let ttl = account
            .access_token_ttl
            .unwrap_or(self.cfg.access_token_ttl)
            .secs();
        let mut extra = serde_json::Map::new();
        extra.insert("account_id".into(), account.id.clone().into());
        if let Some(u) = user_id {
            extra.insert("user_id".into(), u.into());
        }
        let record = TokenRecord {
            hash: token::hash(value.expose()),
            kind: TokenKind::Access,
            client_id: format!("account:{}", account.id),
            subject: Some(user_id.unwrap_or(&account.id).to_owned()),
            scope: scope.to_string(),
            family: token::random_id(),
            parent: None,
            extra,
            issued_at: now,
            expires_at: ttl.map(|t| now.saturating_add(t)),
            revoked_at: None,
            used_at: None,
        };
        if let Err(e) = self.store.insert_tokens(&[record]).await {
            tracing::error!(error = %e, "cannot store an account token");
            return Err(e);
        }
        tracing::info!(account = %account.id, "account token issued");
        self.count_issued("account", &format!("account:{}", account.id));
        Ok((value, ttl))
    }
}

/// The answer to a wrong secret (and, with `oauth.account_not_found = "uniform"`, to an
/// unknown account).
fn invalid_account_or_secret() -> AccountError {
    AccountError::AuthFailed("User authentication failed: invalid account or secret.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Result<AccountRequest, AccountError> {
        validate(serde_json::from_str::<Pairs>(text).map(|p| p.0).unwrap())
    }

    const ID: &str = "5723073937d63a18396a1bae";

    #[test]
    fn token_endpoint_requests_are_rfc_shaped() {
        let form = |body: &str| from_token_form(&form::Form::parse(body.as_bytes()).unwrap());
        let upper = ID.to_ascii_uppercase();
        let ok = form(&format!(
            "account={upper}&secret=s&user_id={ID}&scope=x&other=1"
        ))
        .unwrap();
        assert_eq!((ok.account.as_str(), ok.user_id.as_deref()), (ID, Some(ID)));
        for (body, want) in [
            ("secret=s".to_string(), "account is missing"),
            ("account=&secret=s".into(), "account is missing"),
            ("account=xyz&secret=s".into(), "account must be an ObjectId"),
            (format!("account={ID}"), "secret is missing"),
            (
                format!("account={ID}&secret=s&user_id=u"),
                "user_id must be",
            ),
        ] {
            let e = form(&body).unwrap_err();
            assert_eq!(e.code(), "invalid_request", "{body}");
            assert!(e.description().starts_with(want), "{body}: {e}");
        }
    }

    #[test]
    fn validation_follows_the_seed_table() {
        let ok = json(&format!(r#"{{"account":"{ID}","secret":"hubble"}}"#)).unwrap();
        assert_eq!(ok.account, ID);
        assert_eq!(ok.user_id, None);
        let cases = [
            (
                r#"{"secret":"x"}"#.to_string(),
                "The request is missing an account.",
            ),
            (
                format!(r#"{{"account":"{ID}"}}"#),
                "The request is missing a secret.",
            ),
            (
                r#"{"account":"xyz","secret":"x"}"#.into(),
                "The account must be object id.",
            ),
            (
                r#"{"account":42,"secret":"x"}"#.into(),
                "The account must be object id.",
            ),
            (
                format!(r#"{{"account":"{ID}","secret":7}}"#),
                "The secret must be str",
            ),
            (
                format!(r#"{{"account":"{ID}","secret":"x","user_id":"nope"}}"#),
                "The user_id must be object id.",
            ),
            (
                format!(r#"{{"account":"{ID}","secret":"x","extra":1}}"#),
                "The request includes an unsupported parameter extra.",
            ),
            (
                format!(r#"{{"account":"{ID}","secret":"x","secret":"y"}}"#),
                "The request repeats the parameter secret.",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(json(&body).unwrap_err(), invalid(want), "{body}");
        }
    }
}
