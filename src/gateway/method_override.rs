//! Method overrides: `X-HTTP-Method-Override`, `X-HTTP-Method` and `X-Method-Override`
//! make many frameworks (Rails, Express's method-override, Spring's filter, ASP.NET)
//! treat a `POST` as the method they name. Left alone, a token that may only write
//! could `DELETE` through a `POST`. By default they are removed; a route with
//! `method_override = "authorize"` forwards them, and the method they name must then be
//! authorized as well as the real one.

use http::header::{HeaderMap, HeaderName};
use http::Method;

use crate::config::MethodOverride;
use crate::error::GatewayError;

/// The override fields, lower case.
pub static NAMES: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// Applies the route's rule to `headers`: the method the upstream may act as beside the
/// request's own, if the route authorizes overrides and the request asks for one.
pub fn apply(
    headers: &mut HeaderMap,
    mode: MethodOverride,
) -> Result<Option<Method>, GatewayError> {
    match mode {
        MethodOverride::Strip => {
            for name in &NAMES {
                if headers.contains_key(name) {
                    headers.remove(name);
                }
            }
            Ok(None)
        }
        MethodOverride::Authorize => requested(headers),
    }
}

/// The one method the override fields name; refused if they name several, or anything
/// that is not an upper-case method token.
fn requested(headers: &HeaderMap) -> Result<Option<Method>, GatewayError> {
    let bad = || GatewayError::BadRequest("the method override is not a single method name");
    let mut found: Option<Method> = None;
    for name in &NAMES {
        for value in headers.get_all(name) {
            let text = value.as_bytes();
            if text.is_empty()
                || !text
                    .iter()
                    .all(|b| b.is_ascii_uppercase() || b"-_".contains(b))
            {
                return Err(bad());
            }
            let method = Method::from_bytes(text).map_err(|_| bad())?;
            match &found {
                Some(m) if *m != method => return Err(bad()),
                _ => found = Some(method),
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn stripped_by_default() {
        let mut h = with(&[(&NAMES[0], "DELETE"), (&NAMES[1], "PUT"), (&NAMES[2], "x")]);
        assert_eq!(apply(&mut h, MethodOverride::Strip).unwrap(), None);
        assert!(h.is_empty());
    }

    #[test]
    fn authorized_overrides_name_one_method() {
        let mut h = with(&[(&NAMES[0], "DELETE"), (&NAMES[2], "DELETE")]);
        assert_eq!(
            apply(&mut h, MethodOverride::Authorize).unwrap(),
            Some(Method::DELETE)
        );
        assert_eq!(h.len(), 2, "kept for the upstream");
        for bad in [
            with(&[(&NAMES[0], "DELETE"), (&NAMES[1], "PUT")]),
            with(&[(&NAMES[0], "delete")]),
            with(&[(&NAMES[0], "DE LETE")]),
            with(&[(&NAMES[0], "")]),
        ] {
            let mut h = bad;
            assert!(apply(&mut h, MethodOverride::Authorize).is_err(), "{h:?}");
        }
        let mut none = HeaderMap::new();
        assert_eq!(apply(&mut none, MethodOverride::Authorize).unwrap(), None);
    }
}
