//! `application/x-www-form-urlencoded` request bodies for OAuth endpoints: POST only,
//! that content type only (a JSON body is refused, as hubiC documents), a size cap, and
//! no repeated parameter (RFC 6749 §3.2). Empty values count as absent (RFC 6749 §3.1).

use crate::body::Incoming;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request};
use http_body_util::{BodyExt, Limited};

use super::error::OAuthError;

/// Largest form accepted.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// A parsed form.
#[derive(Debug, Default)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// Parses a body; repeated names are an error.
    pub fn parse(body: &[u8]) -> Result<Form, OAuthError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(body) {
            if pairs.iter().any(|(seen, _)| *seen == k) {
                return Err(OAuthError::InvalidRequest(format!(
                    "parameter {} is repeated",
                    printable(&k)
                )));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Form { pairs })
    }

    /// The value of `name`, if present and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Parameter names present with a value.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pairs
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, _)| k.as_str())
    }
}

/// A parameter name safe to echo in an `error_description` (RFC 6749 §5.2 charset).
pub fn printable(name: &str) -> String {
    name.chars()
        .take(40)
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Checks method and content type, then reads and parses the body.
pub async fn read(req: Request<Incoming>) -> Result<(http::request::Parts, Form), OAuthError> {
    if req.method() != Method::POST {
        return Err(OAuthError::MethodNotAllowed);
    }
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        let why = if essence.to_ascii_lowercase().contains("json") {
            "JSON bodies are not supported: send application/x-www-form-urlencoded".to_string()
        } else {
            "the body must be application/x-www-form-urlencoded".to_string()
        };
        return Err(OAuthError::InvalidRequest(why));
    }
    let (parts, body) = req.into_parts();
    let bytes: Bytes = Limited::new(body, MAX_FORM_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                OAuthError::TooLarge
            } else {
                OAuthError::InvalidRequest("the request body could not be read".into())
            }
        })?
        .to_bytes();
    Ok((parts, Form::parse(&bytes)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_repeats() {
        let f = Form::parse(b"grant_type=client_credentials&scope=a+b&empty=").unwrap();
        assert_eq!(f.get("grant_type"), Some("client_credentials"));
        assert_eq!(f.get("scope"), Some("a b"));
        assert_eq!(f.get("empty"), None);
        assert_eq!(f.names().collect::<Vec<_>>(), vec!["grant_type", "scope"]);
        let e = Form::parse(b"a=1&b=2&a=3").unwrap_err();
        assert_eq!(
            e,
            OAuthError::InvalidRequest("parameter a is repeated".into())
        );
        let e = Form::parse(b"%22x%22=1&%22x%22=2").unwrap_err();
        assert!(!e.description().contains('"'));
    }
}
