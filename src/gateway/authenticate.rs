//! Authenticate phase: find the access token (RFC 6750) and look it up in the token
//! table. Returns the [`Authenticated`] proof that the authorize phase requires.
//!
//! Where a token may be: `Authorization: Bearer …` (scheme case-insensitive) and/or
//! `X-Access-Token: …`, per `auth.token_headers` or the route's `token_headers`; in the
//! query string (`access_token=`) only where the route allows it. Two `Authorization`
//! headers, two different tokens, or a refused query token are 400 `invalid_request`.

use http::header::{HeaderMap, HeaderName, AUTHORIZATION};

use crate::config::TokenHeader;
use crate::error::GatewayError;
use crate::token_table::{CachedToken, TokenTable};

/// `X-Access-Token`.
pub static X_ACCESS_TOKEN: HeaderName = HeaderName::from_static("x-access-token");

/// Proof that the request carries a valid access token.
#[derive(Debug)]
pub struct Authenticated {
    pub token: CachedToken,
}

/// Finds the token value the request presents. No I/O, no allocation.
pub fn extract<'a>(
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    accepted: &[TokenHeader],
    allow_query: bool,
) -> Result<&'a str, GatewayError> {
    let mut found: Option<&str> = None;
    let mut offer = |value: &'a str| -> Result<(), GatewayError> {
        match found {
            Some(prev) if prev != value => Err(GatewayError::BadToken(
                "the request carries two different access tokens",
            )),
            _ => {
                found = Some(value);
                Ok(())
            }
        }
    };
    for header in accepted {
        match header {
            TokenHeader::Authorization => {
                let text = single(
                    headers,
                    &AUTHORIZATION,
                    "several Authorization headers",
                    "the Authorization header is not ASCII",
                )?;
                if let Some((scheme, rest)) = text.and_then(|t| t.split_once(' ')) {
                    if scheme.eq_ignore_ascii_case("bearer") {
                        offer(rest.trim())?;
                    }
                }
            }
            TokenHeader::XAccessToken => {
                let text = single(
                    headers,
                    &X_ACCESS_TOKEN,
                    "several X-Access-Token headers",
                    "the X-Access-Token header is not ASCII",
                )?;
                if let Some(text) = text {
                    offer(text.trim())?;
                }
            }
        }
    }
    if let Some(q) = query {
        let in_query = q
            .split('&')
            .filter_map(|pair| pair.strip_prefix("access_token="))
            .find(|v| !v.is_empty());
        if let Some(v) = in_query {
            if !allow_query {
                return Err(GatewayError::BadToken(
                    "access tokens in the query string are refused (RFC 6750 §2.3); send a header",
                ));
            }
            offer(v)?;
        }
    }
    found
        .filter(|v| !v.is_empty())
        .ok_or(GatewayError::MissingToken)
}

/// The one value of header `name`, if present; several values, or a non-ASCII one,
/// are a bad request.
fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    several: &'static str,
    not_ascii: &'static str,
) -> Result<Option<&'a str>, GatewayError> {
    let mut all = headers.get_all(name).iter();
    let Some(v) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(GatewayError::BadToken(several));
    }
    v.to_str()
        .map(Some)
        .map_err(|_| GatewayError::BadToken(not_ascii))
}

/// Extracts and validates the token.
pub async fn authenticate(
    table: &TokenTable,
    headers: &HeaderMap,
    query: Option<&str>,
    accepted: &[TokenHeader],
    allow_query: bool,
) -> Result<Authenticated, GatewayError> {
    let value = extract(headers, query, accepted, allow_query)?;
    match table.lookup(value).await {
        Ok(Some(token)) => Ok(Authenticated { token }),
        Ok(None) => Err(GatewayError::InvalidToken),
        Err(e) => Err(GatewayError::StoreUnavailable(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: [TokenHeader; 2] = [TokenHeader::Authorization, TokenHeader::XAccessToken];

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    #[test]
    fn finds_bearer_and_x_access_token() {
        assert_eq!(
            extract(&h(&[("authorization", "Bearer abc")]), None, &BOTH, false),
            Ok("abc")
        );
        assert_eq!(
            extract(&h(&[("authorization", "bEaReR  abc ")]), None, &BOTH, false),
            Ok("abc")
        );
        assert_eq!(
            extract(&h(&[("x-access-token", "abc")]), None, &BOTH, false),
            Ok("abc")
        );
        let same = h(&[("authorization", "Bearer abc"), ("x-access-token", "abc")]);
        assert_eq!(extract(&same, None, &BOTH, false), Ok("abc"));
    }

    #[test]
    fn only_configured_headers_count() {
        let x = h(&[("x-access-token", "abc")]);
        assert_eq!(
            extract(&x, None, &[TokenHeader::Authorization], false),
            Err(GatewayError::MissingToken)
        );
        let basic = h(&[("authorization", "Basic abc")]);
        assert_eq!(
            extract(&basic, None, &BOTH, false),
            Err(GatewayError::MissingToken)
        );
    }

    #[test]
    fn ambiguity_and_query_tokens_are_bad_requests() {
        let two = h(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert!(matches!(
            extract(&two, None, &BOTH, false),
            Err(GatewayError::BadToken(_))
        ));
        let differ = h(&[("authorization", "Bearer a"), ("x-access-token", "b")]);
        assert!(matches!(
            extract(&differ, None, &BOTH, false),
            Err(GatewayError::BadToken(_))
        ));
        let none = HeaderMap::new();
        assert!(matches!(
            extract(&none, Some("x=1&access_token=abc"), &BOTH, false),
            Err(GatewayError::BadToken(_))
        ));
        assert_eq!(
            extract(&none, Some("x=1&access_token=abc"), &BOTH, true),
            Ok("abc")
        );
        assert_eq!(
            extract(&none, Some("x=1"), &BOTH, false),
            Err(GatewayError::MissingToken)
        );
    }
}
