//! Client authentication at OAuth endpoints (RFC 6749 §2.3.1): HTTP Basic
//! (`client_secret_basic`, id and secret form-url-encoded before base64) or form fields
//! (`client_secret_post`), never both; public clients identify with `client_id` alone.
//!
//! RFC 6749 wants Basic credentials form-url-encoded before base64, but many client
//! libraries send them raw. The decoded reading is tried first and the raw one second;
//! they differ only for values containing `+` or `%`, which generated secrets never do.
//! Secrets are compared in constant time, and an unknown client costs the same hash as a
//! known one.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::header::{HeaderMap, AUTHORIZATION};

use super::client::{Client, Clients, SecretHash};
use super::error::OAuthError;
use super::form::Form;

/// Authenticates the client of a token, revocation or introspection request.
pub async fn authenticate(
    clients: &Clients,
    headers: &HeaderMap,
    form: &Form,
) -> Result<Arc<Client>, OAuthError> {
    let form_id = form.get("client_id");
    let form_secret = form.get("client_secret");
    match basic_credentials(headers) {
        Some(Err(reason)) => Err(OAuthError::InvalidClient {
            basic: true,
            reason: reason.into(),
        }),
        Some(Ok(creds)) => {
            if form_secret.is_some() {
                return Err(OAuthError::InvalidRequest(
                    "use either HTTP Basic or client_secret in the body, not both".into(),
                ));
            }
            if form_id.is_some_and(|f| f != creds.id && f != creds.raw_id) {
                return Err(OAuthError::InvalidRequest(
                    "client_id does not match the HTTP Basic credentials".into(),
                ));
            }
            let first = check(clients, &creds.id, Some(&creds.secret), true).await;
            match first {
                Err(OAuthError::InvalidClient { .. })
                    if creds.raw_id != creds.id || creds.raw_secret != creds.secret =>
                {
                    check(clients, &creds.raw_id, Some(&creds.raw_secret), true).await
                }
                other => other,
            }
        }
        None => match (form_id, form_secret) {
            (Some(id), secret) => check(clients, id, secret, false).await,
            (None, Some(_)) => Err(OAuthError::InvalidRequest(
                "client_secret was sent without client_id".into(),
            )),
            (None, None) => Err(OAuthError::InvalidClient {
                basic: false,
                reason: "client authentication is required".into(),
            }),
        },
    }
}

async fn check(
    clients: &Clients,
    id: &str,
    secret: Option<&str>,
    basic: bool,
) -> Result<Arc<Client>, OAuthError> {
    let fail = |reason: &str| OAuthError::InvalidClient {
        basic,
        reason: reason.into(),
    };
    let client = clients.get(id).await?;
    match (client, secret) {
        (None, s) => {
            // Same work as a real check, so response time does not reveal unknown ids.
            let _ = SecretHash::of("").verify(s.unwrap_or(""));
            Err(fail("unknown client or wrong secret"))
        }
        (Some(c), Some(s)) => match &c.secret {
            Some(h) if h.verify(s) => Ok(c),
            Some(_) => Err(fail("unknown client or wrong secret")),
            None => Err(fail("this public client has no secret")),
        },
        (Some(c), None) if c.public => Ok(c),
        (Some(_), None) => Err(fail("client authentication is required")),
    }
}

/// The client id a request claims (Basic or `client_id`), before anything is checked:
/// the key of the per-client rate limit.
pub fn claimed_id(headers: &HeaderMap, form: &Form) -> Option<String> {
    match basic_credentials(headers) {
        Some(Ok(creds)) => Some(creds.id),
        Some(Err(_)) => None,
        None => form.get("client_id").map(str::to_owned),
    }
}

/// Whether the request carries client credentials at all: an `Authorization: Basic`
/// header (well-formed or not), `client_id` or `client_secret`.
pub fn sends_credentials(headers: &HeaderMap, form: &Form) -> bool {
    basic_credentials(headers).is_some()
        || form.get("client_id").is_some()
        || form.get("client_secret").is_some()
}

/// Basic credentials, form-decoded and as sent.
#[derive(Debug, PartialEq, Eq)]
struct BasicCreds {
    id: String,
    secret: String,
    raw_id: String,
    raw_secret: String,
}

/// `Authorization: Basic …` decoded; `None` when absent or another scheme.
fn basic_credentials(headers: &HeaderMap) -> Option<Result<BasicCreds, &'static str>> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    Some(decode_basic(rest.trim()))
}

fn decode_basic(b64: &str) -> Result<BasicCreds, &'static str> {
    let raw = STANDARD
        .decode(b64)
        .map_err(|_| "the Basic credentials are not valid base64")?;
    let text = String::from_utf8(raw).map_err(|_| "the Basic credentials are not UTF-8")?;
    let (id, secret) = text
        .split_once(':')
        .ok_or("the Basic credentials have no ':' between id and secret")?;
    if id.is_empty() {
        return Err("the Basic credentials have an empty client id");
    }
    Ok(BasicCreds {
        id: form_decode(id).unwrap_or_else(|| id.to_owned()),
        secret: form_decode(secret).unwrap_or_else(|| secret.to_owned()),
        raw_id: id.to_owned(),
        raw_secret: secret.to_owned(),
    })
}

/// `application/x-www-form-urlencoded` decoding of one value (RFC 6749 §2.3.1).
fn form_decode(s: &str) -> Option<String> {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(raw: &str) -> Result<(String, String), &'static str> {
        decode_basic(&STANDARD.encode(raw)).map(|c| (c.id, c.secret))
    }

    #[test]
    fn basic_credentials_are_form_decoded_and_kept_raw() {
        assert_eq!(basic("id:secret").unwrap(), ("id".into(), "secret".into()));
        assert_eq!(
            basic("my%20id:p%3Ass+word").unwrap(),
            ("my id".into(), "p:ss word".into())
        );
        let c = decode_basic(&STANDARD.encode("a+b:c%zz")).unwrap();
        assert_eq!((c.raw_id.as_str(), c.raw_secret.as_str()), ("a+b", "c%zz"));
        assert_eq!(c.id, "a b");
        assert_eq!(basic("id:").unwrap(), ("id".into(), String::new()));
        assert!(basic("no-colon").is_err());
        assert!(basic(":secret").is_err());
        assert!(decode_basic("***").is_err());
        assert!(decode_basic(&STANDARD.encode([0xff, b':', 0xfe])).is_err());
    }

    #[test]
    fn other_schemes_are_not_basic() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert!(basic_credentials(&h).is_none());
        h.insert(
            AUTHORIZATION,
            format!("bAsIc {}", STANDARD.encode("a:b")).parse().unwrap(),
        );
        assert_eq!(basic_credentials(&h).unwrap().unwrap().id, "a");
    }
}
