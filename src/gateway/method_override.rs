//! Method overrides: `X-HTTP-Method-Override`, `X-HTTP-Method` and `X-Method-Override`
//! make many frameworks (Express's method-override, Rack, ASP.NET) treat a `POST` as
//! the method they name, and so does a `_method` query parameter (Symfony, Laravel,
//! Rack). Left alone, a token that may only write could `DELETE` through a `POST`. By
//! default the headers are removed and a `_method` query parameter is refused (400); a
//! route with `method_override = "authorize"` forwards both, and the method they name
//! must then be authorized as well as the real one. A `_method` field inside a form
//! body (Rails, Spring's `HiddenHttpMethodFilter`) is not seen: the README says so.

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

/// Applies the route's rule to `headers` and `query`: the method the upstream may act
/// as beside the request's own, if the route authorizes overrides and the request asks
/// for one.
pub fn apply(
    headers: &mut HeaderMap,
    query: Option<&str>,
    mode: MethodOverride,
) -> Result<Option<Method>, GatewayError> {
    match mode {
        MethodOverride::Strip => {
            for name in &NAMES {
                if headers.contains_key(name) {
                    headers.remove(name);
                }
            }
            if query_values(query).next().is_some() {
                return Err(GatewayError::BadRequest(
                    "a _method query parameter would override the method; it is refused here",
                ));
            }
            Ok(None)
        }
        MethodOverride::Authorize => requested(headers, query),
    }
}

/// The one method the override fields (also spelled with `_`, which CGI-style
/// upstreams read the same) and `_method` query parameters name; refused if they name
/// several, or anything that is not an upper-case method token.
pub fn requested(headers: &HeaderMap, query: Option<&str>) -> Result<Option<Method>, GatewayError> {
    let bad = || GatewayError::BadRequest("the method override is not a single method name");
    let mut found: Option<Method> = None;
    let mut offer = |text: &[u8]| -> Result<(), GatewayError> {
        if text.is_empty()
            || !text
                .iter()
                .all(|b| b.is_ascii_uppercase() || b"-_".contains(b))
        {
            return Err(bad());
        }
        let method = Method::from_bytes(text).map_err(|_| bad())?;
        match &found {
            Some(m) if *m != method => Err(bad()),
            _ => {
                found = Some(method);
                Ok(())
            }
        }
    };
    for (name, value) in headers {
        if NAMES.iter().any(|n| same_folded(name.as_str(), n.as_str())) {
            offer(value.as_bytes())?;
        }
    }
    for value in query_values(query) {
        offer(value.as_bytes())?;
    }
    Ok(found)
}

/// Whether `name` is `canonical` once `_` is read as `-`.
fn same_folded(name: &str, canonical: &str) -> bool {
    name.len() == canonical.len()
        && name
            .bytes()
            .zip(canonical.bytes())
            .all(|(a, b)| a == b || (a == b'_' && b == b'-'))
}

/// The values of `_method` parameters in `query`, as the frameworks read them: keys
/// percent-decoded (`%5Fmethod`), PHP's mangling of `.`, ` ` and `[` into `_`
/// (`.method`), any case, and pairs split on `;` as well as `&` (older Rack).
fn query_values(query: Option<&str>) -> impl Iterator<Item = String> + '_ {
    let worth_parsing = |q: &&str| {
        q.contains('%')
            || q.as_bytes()
                .windows(6)
                .any(|w| w.eq_ignore_ascii_case(b"method"))
    };
    query
        .filter(worth_parsing)
        .into_iter()
        .flat_map(|q| q.split([';', '&']))
        .flat_map(|pair| form_urlencoded::parse(pair.as_bytes()))
        .filter(|(k, _)| {
            let k = k.trim_start_matches(' ');
            k.len() == 7
                && matches!(k.as_bytes()[0], b'_' | b'.' | b' ' | b'[')
                && k[1..].eq_ignore_ascii_case("method")
        })
        .map(|(_, v)| v.into_owned())
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
        assert_eq!(apply(&mut h, None, MethodOverride::Strip).unwrap(), None);
        assert!(h.is_empty());
        let mut h = HeaderMap::new();
        assert!(apply(&mut h, Some("a=1&_method=DELETE"), MethodOverride::Strip).is_err());
        assert!(apply(&mut h, Some("a=1&my_method=x"), MethodOverride::Strip).is_ok());
        for sneaky in [
            "%5Fmethod=DELETE",
            ".method=DELETE",
            "a=1;_method=DELETE",
            "_METHOD=DELETE",
            "[method=DELETE",
        ] {
            assert!(
                apply(&mut h, Some(sneaky), MethodOverride::Strip).is_err(),
                "{sneaky}"
            );
        }
    }

    #[test]
    fn authorized_overrides_name_one_method() {
        let mut h = with(&[(&NAMES[0], "DELETE"), (&NAMES[2], "DELETE")]);
        assert_eq!(
            apply(&mut h, None, MethodOverride::Authorize).unwrap(),
            Some(Method::DELETE)
        );
        assert_eq!(h.len(), 2, "kept for the upstream");
        let mut q = HeaderMap::new();
        assert_eq!(
            apply(&mut q, Some("_method=PUT"), MethodOverride::Authorize).unwrap(),
            Some(Method::PUT)
        );
        assert!(apply(&mut h, Some("_method=PUT"), MethodOverride::Authorize).is_err());
        let mut folded = HeaderMap::new();
        folded.insert(
            HeaderName::from_static("x_http_method_override"),
            HeaderValue::from_static("DELETE"),
        );
        assert_eq!(requested(&folded, None).unwrap(), Some(Method::DELETE));
        for bad in [
            with(&[(&NAMES[0], "DELETE"), (&NAMES[1], "PUT")]),
            with(&[(&NAMES[0], "delete")]),
            with(&[(&NAMES[0], "DE LETE")]),
            with(&[(&NAMES[0], "")]),
        ] {
            let mut h = bad;
            assert!(
                apply(&mut h, None, MethodOverride::Authorize).is_err(),
                "{h:?}"
            );
        }
        let mut none = HeaderMap::new();
        assert_eq!(
            apply(&mut none, None, MethodOverride::Authorize).unwrap(),
            None
        );
    }
}
