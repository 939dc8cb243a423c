//! CSRF protection of the authorize page's form, without I/O (the authorize endpoint
//! spends values in the store and renders the answers):
//!
//! - a `__Host-` cookie ([`COOKIE`]) holds a random nonce that binds the page's forms to
//!   one browser: a form value fetched with another cookie jar (the attacker's own) is
//!   worthless in the victim's browser;
//! - each form carries `expires.id.mac` ([`issue`]): an HMAC under the store's key of the
//!   nonce, a random id, the expiry and the authorization request the form carries, so
//!   it cannot be moved to another request, another browser, or past `code_ttl`;
//! - each value is spent once (`Store::spend_nonce`, keyed by [`Checked::hash`]), in the
//!   store so that a value used on one instance of an edge tier is refused on the others;
//! - a POST whose `Origin` is not the issuer's is refused ([`origin_allowed`]).
//!
//! The cookie is `SameSite=Lax`, not `Strict`: the page is reached by a top-level
//! navigation from the client's site, and a `Strict` cookie would not come with it, so
//! every visit would replace the nonce and a second open page (another tab) would lose
//! its form. `Lax` is still never sent on a cross-site POST, the request CSRF forges;
//! `Origin` and the nonce stop the rest.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use http::header::{HeaderMap, HeaderValue, COOKIE as COOKIE_HEADER, ORIGIN};

use crate::token::{self, Codec, TokenHash};

/// The cookie's name. `__Host-`: the browser keeps it only if it is `Secure`, has
/// `Path=/` and no `Domain`, so no other host (a sibling subdomain) can set or shadow it.
pub const COOKIE: &str = "__Host-authgate-csrf";

/// The label separating these MACs from the codec's other uses.
const LABEL: &str = "authorize-csrf";

/// Length of a nonce: 32 random bytes, base64url without padding.
const NONCE_LEN: usize = 43;

/// A new random nonce for the cookie.
pub fn new_nonce() -> String {
    let mut bytes = [0u8; 32];
    token::fill_random(&mut bytes);
    B64.encode(bytes)
}

/// The nonce of the request's cookie, if it carries a well-formed one.
pub fn cookie_nonce(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| v.len() == NONCE_LEN && v.bytes().all(is_base64url))
        .map(str::to_owned)
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// The `Set-Cookie` value that keeps `nonce` for `max_age` seconds.
pub fn set_cookie(nonce: &str, max_age: u64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{COOKIE}={nonce}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}"
    ))
    .ok()
}

fn signed(nonce: &str, id: &str, expires: i64, request: &str) -> String {
    format!("{expires}\n{id}\n{nonce}\n{request}")
}

/// A form value for the browser holding `nonce`, carrying `request` (the authorization
/// request's parameters), good until `expires` (unix seconds).
pub fn issue(codec: &Codec, nonce: &str, request: &str, expires: i64) -> String {
    let id = token::random_id();
    let mac = codec.sign(LABEL, &signed(nonce, &id, expires, request));
    format!("{expires}.{id}.{mac}")
}

/// Why a form value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The request has no (well-formed) cookie: cookies are off, or the form was
    /// posted from elsewhere.
    NoCookie,
    /// Missing, malformed, expired, or made for another request or another browser.
    Invalid,
}

/// A form value that checked out; it still has to be spent once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// What the store records as spent.
    pub hash: TokenHash,
    /// Until when the store must remember it.
    pub expires: i64,
}

/// Checks a submitted form `value` against the request's cookie `nonce`, the carried
/// `request` and the clock.
pub fn verify(
    codec: &Codec,
    value: Option<&str>,
    nonce: Option<&str>,
    request: &str,
    now: i64,
) -> Result<Checked, Refused> {
    let nonce = nonce.ok_or(Refused::NoCookie)?;
    let value = value.ok_or(Refused::Invalid)?;
    let mut parts = value.splitn(3, '.');
    let (Some(exp), Some(id), Some(mac)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Refused::Invalid);
    };
    let expires: i64 = exp.parse().map_err(|_| Refused::Invalid)?;
    if expires <= now || id.len() > 64 {
        return Err(Refused::Invalid);
    }
    if !codec.verify_signature(LABEL, &signed(nonce, id, expires, request), mac) {
        return Err(Refused::Invalid);
    }
    Ok(Checked {
        hash: token::hash(value),
        expires,
    })
}

/// Whether a POST may come from where its `Origin` says: absent (older browsers, other
/// user agents: the nonce still binds the form), or exactly the issuer's origin. `null`
/// (an opaque origin), another site, several values or garbage are refused. `Err`
/// carries what was sent, for the log.
pub fn origin_allowed(headers: &HeaderMap, issuer: &str) -> Result<(), String> {
    let mut values = headers.get_all(ORIGIN).iter();
    let Some(first) = values.next() else {
        return Ok(());
    };
    let sent = String::from_utf8_lossy(first.as_bytes()).into_owned();
    if values.next().is_some() {
        return Err(format!("{sent} (and more Origin headers)"));
    }
    match (parts(&sent), parts(issuer)) {
        (Some(o), Some(i)) if o == i => Ok(()),
        _ => Err(sent),
    }
}

/// Scheme, host and port of an origin or of the issuer (an `https://` URL without
/// path), lower-cased, with the scheme's default port filled in.
fn parts(origin: &str) -> Option<(String, String, u16)> {
    let uri: http::Uri = origin.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    if authority.as_str().contains('@') || !matches!(uri.path(), "" | "/") || uri.query().is_some()
    {
        return None;
    }
    let port = match (authority.port_u16(), scheme.as_str()) {
        (Some(p), _) => p,
        (None, "https") => 443,
        (None, "http") => 80,
        _ => return None,
    };
    Some((scheme, authority.host().to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretKey;

    fn codec() -> Codec {
        Codec::new(SecretKey::new([7; 32]))
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_value_is_bound_to_the_nonce_the_request_and_the_clock() {
        let c = codec();
        let (nonce, other) = (new_nonce(), new_nonce());
        assert_ne!(nonce, other);
        let value = issue(&c, &nonce, "req", 100);
        let ok = verify(&c, Some(&value), Some(&nonce), "req", 99).unwrap();
        assert_eq!(ok.hash, token::hash(&value));
        assert_eq!(ok.expires, 100);
        assert_ne!(issue(&c, &nonce, "req", 100), value, "a new id each time");
        let refused = |v: Option<&str>, n: Option<&str>, r: &str, now: i64| {
            verify(&c, v, n, r, now).unwrap_err()
        };
        assert_eq!(refused(Some(&value), None, "req", 99), Refused::NoCookie);
        assert_eq!(
            refused(Some(&value), Some(&other), "req", 99),
            Refused::Invalid
        );
        assert_eq!(
            refused(Some(&value), Some(&nonce), "req2", 99),
            Refused::Invalid
        );
        assert_eq!(
            refused(Some(&value), Some(&nonce), "req", 100),
            Refused::Invalid
        );
        assert_eq!(refused(None, Some(&nonce), "req", 99), Refused::Invalid);
        let later = value.replacen("100.", "200.", 1);
        assert_eq!(
            refused(Some(&later), Some(&nonce), "req", 99),
            Refused::Invalid
        );
        for junk in ["", "x", "1.2", "a.b.c", "100..", "100.x.y.z"] {
            assert_eq!(
                refused(Some(junk), Some(&nonce), "req", 99),
                Refused::Invalid
            );
        }
        let foreign = Codec::new(SecretKey::new([8; 32]));
        let v = issue(&foreign, &nonce, "req", 100);
        assert_eq!(refused(Some(&v), Some(&nonce), "req", 99), Refused::Invalid);
    }

    #[test]
    fn the_cookie_is_read_only_when_well_formed() {
        let n = new_nonce();
        let h = headers(&[("cookie", &format!("a=1; {COOKIE}={n}; b=2"))]);
        assert_eq!(cookie_nonce(&h), Some(n.clone()));
        let h = headers(&[("cookie", "a=1"), ("cookie", &format!("{COOKIE}={n}"))]);
        assert_eq!(cookie_nonce(&h), Some(n.clone()), "HTTP/2 splits cookies");
        for bad in ["short", &format!("{n}x"), &n.replace(&n[..1], "!")] {
            let h = headers(&[("cookie", &format!("{COOKIE}={bad}"))]);
            assert_eq!(cookie_nonce(&h), None, "{bad}");
        }
        let h = headers(&[("cookie", &format!("authgate-csrf={n}"))]);
        assert_eq!(cookie_nonce(&h), None, "only the __Host- name");
        let set = set_cookie(&n, 600).unwrap();
        let set = set.to_str().unwrap();
        for part in [
            "Path=/",
            "Secure",
            "HttpOnly",
            "SameSite=Lax",
            "Max-Age=600",
        ] {
            assert!(set.split("; ").any(|p| p == part), "{set}");
        }
        assert!(set.starts_with(&format!("{COOKIE}={n};")) && !set.contains("Domain"));
    }

    #[test]
    fn only_the_issuers_origin_or_none_may_post() {
        let issuer = "https://auth.example";
        let with = |o: &str| origin_allowed(&headers(&[("origin", o)]), issuer);
        assert_eq!(origin_allowed(&HeaderMap::new(), issuer), Ok(()));
        for same in [
            "https://auth.example",
            "https://AUTH.example:443",
            "https://auth.example/",
        ] {
            assert_eq!(with(same), Ok(()), "{same}");
        }
        for other in [
            "null",
            "https://evil.example",
            "http://auth.example",
            "https://auth.example:8443",
            "https://auth.example.evil.example",
            "https://user@auth.example",
            "",
        ] {
            assert!(with(other).is_err(), "{other}");
        }
        let two = headers(&[("origin", issuer), ("origin", issuer)]);
        assert!(origin_allowed(&two, issuer).is_err());
        assert_eq!(
            origin_allowed(
                &headers(&[("origin", "https://127.0.0.1:8443")]),
                "https://127.0.0.1:8443"
            ),
            Ok(())
        );
    }
}
