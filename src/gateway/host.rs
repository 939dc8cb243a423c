//! The host a request names, checked once before anything uses it (routing,
//! `X-Forwarded-Host`, `Forwarded: host=`, redirects, `preserve_host`).
//!
//! RFC 9112 §3.2: an HTTP/1.1 request carries exactly one `Host`; a server answers 400
//! to none, to several, or to an invalid one. In absolute form (`GET http://a/ …`) and
//! on HTTP/2 (`:authority`) the URI names the host; a `Host` sent beside it must name
//! the same (RFC 9113 §8.3.1). Accepted: a DNS name or IPv4 address (letters, digits,
//! `-`, `.`, `_`), or a bracketed IPv6 address, each with an optional port of 1–5
//! digits up to 65535. Refused: userinfo (`user@evil`), paths (`evil/path`), spaces and
//! anything else a downstream could read as more than a host.

use http::header::{self, HeaderMap};
use http::{Uri, Version};

use crate::error::GatewayError;

/// The request's host as `host[:port]`, checked; `None` only for HTTP/1.0 without one.
pub fn request_host<'a>(
    uri: &'a Uri,
    headers: &'a HeaderMap,
    version: Version,
) -> Result<Option<&'a str>, GatewayError> {
    let bad = |why| Err(GatewayError::BadRequest(why));
    let mut fields = headers.get_all(header::HOST).iter();
    let field = fields.next();
    if fields.next().is_some() {
        return bad("the request has more than one Host header");
    }
    let field = match field {
        Some(v) => match v.to_str() {
            Ok(s) if is_valid(s) => Some(s),
            Ok("") => return bad("the Host header is empty"),
            _ => return bad("the Host header is not a valid host"),
        },
        None => None,
    };
    match uri.authority().map(|a| a.as_str()) {
        Some(authority) => {
            if !is_valid(authority) {
                return bad("the request URI's authority is not a valid host");
            }
            if field.is_some_and(|f| !f.eq_ignore_ascii_case(authority)) {
                return bad("the Host header and the request's authority differ");
            }
            Ok(Some(authority))
        }
        None if field.is_some() => Ok(field),
        None if version <= Version::HTTP_10 => Ok(None),
        None => bad("a Host header is required"),
    }
}

pub use crate::hostname::is_valid;

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(hosts: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in hosts {
            h.append(header::HOST, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn one_host_that_agrees_with_the_uri() {
        let origin: Uri = "/x".parse().unwrap();
        let absolute: Uri = "http://b.example/x".parse().unwrap();
        let h1 = Version::HTTP_11;
        assert_eq!(
            request_host(&origin, &headers(&["a.example"]), h1).unwrap(),
            Some("a.example")
        );
        assert!(request_host(&origin, &headers(&[]), h1).is_err());
        assert_eq!(
            request_host(&origin, &headers(&[]), Version::HTTP_10).unwrap(),
            None
        );
        assert!(request_host(&origin, &headers(&["a", "b"]), h1).is_err());
        assert!(request_host(&origin, &headers(&[""]), h1).is_err());
        assert!(request_host(&absolute, &headers(&["a.example"]), h1).is_err());
        assert_eq!(
            request_host(&absolute, &headers(&["B.example"]), h1).unwrap(),
            Some("b.example")
        );
        assert_eq!(
            request_host(&absolute, &headers(&[]), Version::HTTP_2).unwrap(),
            Some("b.example")
        );
        let userinfo: Uri = "http://user@b.example/x".parse().unwrap();
        assert!(request_host(&userinfo, &headers(&[]), h1).is_err());
    }
}
