//! The one canonical path a request is routed, authorized and forwarded by: a path
//! cannot match a lenient route here and reach a stricter resource once an upstream
//! normalizes it.

use crate::error::GatewayError;

/// The canonical form of `path`, if it differs: percent-encoded unreserved characters
/// decoded (`%6Frders` → `orders`), other escapes upper-cased. Refused: `.`/`..`
/// segments, empty segments (`//`), `;` parameters, and encoded `/`, `\` or NUL — all
/// ways for one path to name another resource once an upstream normalizes it. A raw
/// `\` is refused like an encoded one: some upstreams (IIS, Windows file servers, a few
/// frameworks) read it as `/`.
pub fn canonical_path(path: &str) -> Result<Option<String>, GatewayError> {
    let bad = |why: &'static str| Err(GatewayError::BadRequest(why));
    if path.contains('\\') {
        return bad("the path has a \\");
    }
    if path.contains(';') {
        return bad("the path has ; parameters");
    }
    if path.contains("//") {
        return bad("the path has empty segments (//)");
    }
    if has_dot_segment(path) {
        return bad("the path has . or .. segments; send the normalized path");
    }
    if !path.contains('%') {
        return Ok(None);
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            // Up to the next escape, as it is: non-ASCII characters stay whole.
            let end = path[i..].find('%').map_or(path.len(), |n| i + n);
            out.push_str(&path[i..end]);
            i = end;
            continue;
        }
        let hex = path
            .get(i + 1..i + 3)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        let Some(hex) = hex else {
            return bad("the path has a malformed percent-escape");
        };
        let byte =
            u8::from_str_radix(hex, 16).map_err(|_| GatewayError::BadRequest("bad escape"))?;
        match byte {
            b'/' | b'\\' | 0 => return bad("the path has an encoded /, \\ or NUL"),
            b if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => out.push(b as char),
            _ => {
                out.push('%');
                out.push_str(&hex.to_ascii_uppercase());
            }
        }
        i += 3;
    }
    if has_dot_segment(&out) || out.contains("//") {
        return bad("the path has . or .. segments; send the normalized path");
    }
    Ok((out != path).then_some(out))
}

/// Whether `path` has a `.` or `..` segment, raw or percent-encoded (`%2e`). Such paths
/// could match one route here and reach another resource upstream once normalized.
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|seg| {
        if seg.is_empty() || seg.len() > 6 {
            return false;
        }
        let lower = seg.to_ascii_lowercase();
        let decoded = lower.replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_ascii_characters_survive_canonicalization() {
        // hyper accepts UTF-8 in the request target; each byte used to become a char.
        assert_eq!(
            canonical_path("/caf\u{e9}/%41").unwrap().as_deref(),
            Some("/caf\u{e9}/A")
        );
        assert_eq!(
            canonical_path("/\u{1F600}%2f").unwrap_err(),
            GatewayError::BadRequest("the path has an encoded /, \\ or NUL")
        );
    }

    #[test]
    fn dot_segments_are_found_raw_and_encoded() {
        for p in [
            "/api/../admin",
            "/a/./b",
            "/..",
            "/api/%2e%2E/x",
            "/x/.%2e",
            "/a/%2E",
        ] {
            assert!(has_dot_segment(p), "{p}");
        }
        for p in [
            "/",
            "/a/b",
            "/a/...",
            "/a/.well-known/x",
            "/v1.2/x",
            "/a/%2e%2e%2e",
        ] {
            assert!(!has_dot_segment(p), "{p}");
        }
    }

    #[test]
    fn paths_are_canonical_or_refused() {
        assert_eq!(canonical_path("/v1/location/orders").unwrap(), None);
        assert_eq!(
            canonical_path("/v1/location/%6Frders").unwrap().as_deref(),
            Some("/v1/location/orders")
        );
        assert_eq!(
            canonical_path("/a%20b/%c3%a9").unwrap().as_deref(),
            Some("/a%20b/%C3%A9")
        );
        assert_eq!(canonical_path("/a%20b").unwrap(), None);
        for bad in [
            "//v1/location",
            "/v1/location//orders",
            "/v1/location/x%2F..%2Forders",
            "/links;x",
            "/a/%2e%2e/b",
            "/a/%5c",
            "/a/%00",
            "/a/%zz",
            "/a/%2",
            "/a/%2E%2E",
            "/public/..\\api/secret",
            "/a\\b",
        ] {
            assert!(canonical_path(bad).is_err(), "{bad}");
        }
    }
}
