//! Fuzz target bodies, shared by `fuzz/fuzz_targets/*.rs` (cargo-fuzz, nightly) and
//! `tests/fuzz_corpus.rs` (stable: replays `fuzz/corpus/<target>/*`), so a corpus input
//! runs the same code in both. Not an API: hidden from the docs, may change any time.
//!
//! Every function takes the raw fuzz input, must not panic, and asserts only
//! invariants that follow from the code it calls. Input layouts are plain bytes, so
//! seeds can be written by hand (see `fuzz/README.md`).

use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};

use crate::config::{Config, TokenHeader};
use crate::error::GatewayError;
use crate::oauth::client::{ClientSettings, OOB};
use crate::oauth::form::{printable, Form};
use crate::scope::{Scope, ScopeError, ScopeItem, MAX_ITEMS, MAX_LEN};
use crate::secret::SecretKey;
use crate::token::{Codec, Kind, TOKEN_LEN};

/// A target body: takes the raw fuzz input.
pub type Target = fn(&[u8]);

/// The targets, by name: the `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("token_headers", token_headers),
    ("token_codec", token_codec),
    ("scope", scope),
    ("form", form),
    ("client_basic", client_basic),
    ("config", config),
    ("redirect_uri", redirect_uri),
    ("canonical_path", canonical_path),
    ("host", host),
];

/// Characters RFC 6749 §5.2 allows in `error_description`.
fn is_description_char(c: char) -> bool {
    matches!(c, ' ' | '!' | '#'..='[' | ']'..='~')
}

// ---------------------------------------------------------------------------------
// token headers: gateway::authenticate::extract

/// Layout: byte 0 = flags (bit 0: query tokens allowed; bits 1-2: accepted headers,
/// 0 `[Authorization]`, 1 `[X-Access-Token]`, 2 both, 3 both in the other order);
/// then lines: `?query` is the query string, `name: value` a header (invalid names or
/// values are skipped, as hyper would refuse them).
pub fn token_headers(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let allow_query = flags & 1 == 1;
    let accepted: &[TokenHeader] = match (flags >> 1) & 3 {
        0 => &[TokenHeader::Authorization],
        1 => &[TokenHeader::XAccessToken],
        2 => &[TokenHeader::Authorization, TokenHeader::XAccessToken],
        _ => &[TokenHeader::XAccessToken, TokenHeader::Authorization],
    };
    let mut headers = HeaderMap::new();
    let mut query: Option<String> = None;
    for line in rest.split(|&b| b == b'\n') {
        if let Some(q) = line.strip_prefix(b"?") {
            query = Some(String::from_utf8_lossy(q).into_owned());
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii_start()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let q = query.as_deref();
    let got = crate::gateway::authenticate::extract(&headers, q, accepted, allow_query);

    // The order of the accepted headers does not matter: a token is found only when
    // every place offers the same value.
    let mut reversed = accepted.to_vec();
    reversed.reverse();
    let again = crate::gateway::authenticate::extract(&headers, q, &reversed, allow_query);
    assert_eq!(got.is_ok(), again.is_ok(), "{got:?} vs {again:?}");
    if let (Ok(a), Ok(b)) = (&got, &again) {
        assert_eq!(a, b);
    }

    let query_token = q.and_then(|q| {
        q.split('&')
            .filter_map(|p| p.strip_prefix("access_token="))
            .find(|v| !v.is_empty())
    });
    if query_token.is_some() && !allow_query {
        assert!(matches!(got, Err(GatewayError::BadToken(_))), "{got:?}");
    }
    match got {
        Ok(v) => {
            assert!(!v.is_empty());
            // The value comes from an accepted header (trimmed) or the query.
            let from_header = accepted.iter().any(|h| {
                let name = match h {
                    TokenHeader::Authorization => &AUTHORIZATION,
                    TokenHeader::XAccessToken => &crate::gateway::authenticate::X_ACCESS_TOKEN,
                };
                headers
                    .get_all(name)
                    .iter()
                    .filter_map(|hv| hv.to_str().ok())
                    .any(|s| s.contains(v) && v.trim() == v)
            });
            assert!(from_header || query_token == Some(v), "{v:?}");
        }
        Err(GatewayError::MissingToken | GatewayError::BadToken(_)) => {}
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

// ---------------------------------------------------------------------------------
// token codec: token::Kind::of, Codec::verify / mint / sign

fn codec() -> Codec {
    Codec::new(SecretKey::new([7; 32]))
}

const KINDS: [Kind; 4] = [Kind::Access, Kind::Refresh, Kind::Code, Kind::ClientSecret];

/// Layout: byte 0 selects a mode and kind; the rest is a value (lossy UTF-8).
/// Mode 0: `verify` the value as given. Mode 1: `mint` a genuine token, check it
/// verifies, then change the character at position byte 1 to byte 2 and check it no
/// longer does (tokens are random since connection reuse seals them rather than
/// deriving them, so the rest of the input is not used). Mode 2: `sign` /
/// `verify_signature`.
pub fn token_codec(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let kind = KINDS[usize::from(sel & 3)];
    let c = codec();
    match (sel >> 2) % 3 {
        0 => {
            let value = String::from_utf8_lossy(rest);
            let claimed = Kind::of(&value);
            if let Some(k) = claimed {
                assert!(value.starts_with(k.prefix()));
            }
            for k in KINDS {
                if c.verify(&value, k).is_ok() {
                    assert_eq!(value.len(), TOKEN_LEN);
                    assert_eq!(claimed, Some(k));
                    assert!(value[5..]
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
                }
            }
        }
        1 => {
            let edit = &rest[..rest.len().min(2)];
            let token = c.mint(kind);
            let v = token.expose();
            assert_eq!(v.len(), TOKEN_LEN);
            assert_eq!(Kind::of(v), Some(kind));
            assert_eq!(c.verify(v, kind), Ok(()));
            for other in KINDS.into_iter().filter(|k| *k != kind) {
                assert!(c.verify(v, other).is_err());
            }
            if let [pos, byte] = *edit {
                let pos = usize::from(pos) % TOKEN_LEN;
                if byte.is_ascii() && byte != v.as_bytes()[pos] {
                    let mut changed = v.as_bytes().to_vec();
                    changed[pos] = byte;
                    let changed = String::from_utf8(changed).expect("ASCII");
                    // Any change is a different MAC input or a different check value
                    // (8 base64url characters encode the 6 check bytes exactly).
                    assert!(c.verify(&changed, kind).is_err(), "{changed:?}");
                }
            }
        }
        _ => {
            let text = String::from_utf8_lossy(rest);
            let (label, data) = text.split_once('\n').unwrap_or(("", &text));
            let sig = c.sign(label, data);
            assert!(c.verify_signature(label, data, &sig));
            assert!(!c.verify_signature(label, data, &sig[1..]));
            assert!(!c.verify_signature(label, data, data) || data == sig);
        }
    }
}

// ---------------------------------------------------------------------------------
// scope grammar: scope::Scope

/// Checks what every parse result promises; returns the scope if it parsed.
fn parse_checked(s: &str) -> Option<Scope> {
    let parsed = Scope::parse(s);
    let scope = match parsed {
        Ok(scope) => scope,
        Err(e) => {
            let text = e.to_string();
            assert!(!text.is_empty());
            assert!(text.chars().all(is_description_char), "{text:?}");
            return None;
        }
    };
    assert!(s.len() <= MAX_LEN);
    assert!(scope.len() <= MAX_ITEMS);
    assert!(
        scope
            .items()
            .iter()
            .filter(|i| matches!(i, ScopeItem::Level { .. }))
            .count()
            <= 1
    );
    for item in scope.items() {
        match item {
            ScopeItem::Right {
                resource, rights, ..
            } => assert!(!resource.is_empty() && !rights.is_empty()),
            ScopeItem::Level { level, grants } => {
                assert!(!level.is_empty());
                assert!(grants.iter().all(|g| matches!(g, ScopeItem::Right { .. })));
            }
            ScopeItem::Name(n) => assert!(!n.is_empty()),
        }
    }
    assert!(scope == scope.clone());

    // Display writes a text that parses back to the same items.
    let text = scope.to_string();
    match Scope::parse(&text) {
        Ok(back) => {
            assert_eq!(back, scope, "{s:?} -> {text:?}");
            assert_eq!(back.items(), scope.items(), "{s:?} -> {text:?}");
            assert_eq!(back.to_string(), text, "{s:?} -> {text:?}");
        }
        // Known limitation (fuzz/README.md): a word-spelled item holding several rights
        // (`a.read a.wd`) is written as one `a.word` per right, so its text can be
        // longer, and have more items, than the parsed string; past MAX_LEN or
        // MAX_ITEMS it does not parse back. Nothing else may make it fail.
        Err(e) => {
            let expands = |items: &[ScopeItem]| {
                items.iter().any(|i| match i {
                    ScopeItem::Right { rights, word, .. } => *word && rights.len() > 1,
                    _ => false,
                })
            };
            let grows = expands(scope.items())
                || scope.items().iter().any(|i| match i {
                    ScopeItem::Level { grants, .. } => expands(grants),
                    _ => false,
                });
            assert!(
                grows && matches!(e, ScopeError::TooLong | ScopeError::TooManyItems),
                "{s:?} -> {text:?} does not parse back: {e:?}"
            );
        }
    }
    Some(scope)
}

/// Checks `a ∩ b` against what `intersect` and `is_subset_of` document.
fn algebra(a: &Scope, b: &Scope) {
    let i = a.intersect(b);
    assert!(i.len() <= a.len());
    assert_eq!(i.separator(), a.separator());
    // The result is granted by both, and intersecting again changes nothing.
    assert!(i.is_subset_of(a), "{a} ∩ {b} = {i}");
    assert!(i.is_subset_of(b), "{a} ∩ {b} = {i}");
    assert_eq!(i.intersect(b), i);
    assert_eq!(a.is_subset_of(b), i == *a);
    if a.is_subset_of(b) && b.is_subset_of(a) {
        assert_eq!(a, b);
    }
    // Every right the result grants, both grant.
    for item in i.items() {
        if let ScopeItem::Right {
            resource, rights, ..
        } = item
        {
            for r in rights.iter() {
                assert!(a.allows(resource, r) && b.allows(resource, r));
            }
        }
    }
}

/// Layout: two scope strings separated by `\n` (a character no scope may contain); a
/// single string is intersected with itself.
pub fn scope(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (left, right) = text.split_once('\n').unwrap_or((text, text));
    let (a, b) = (parse_checked(left), parse_checked(right));
    if let Some(a) = &a {
        assert!(a.is_subset_of(a));
        assert_eq!(a.intersect(a), *a);
        assert!(Scope::empty().is_subset_of(a));
    }
    if let (Some(a), Some(b)) = (&a, &b) {
        algebra(a, b);
        algebra(b, a);
    }
}

// ---------------------------------------------------------------------------------
// form bodies: oauth::form::Form

/// Layout: the body.
pub fn form(data: &[u8]) {
    match Form::parse(data) {
        Ok(f) => {
            let names: Vec<&str> = f.names().collect();
            for (n, name) in names.iter().enumerate() {
                assert!(!names[..n].contains(name), "{name:?} twice");
                assert!(f.get(name).is_some_and(|v| !v.is_empty()));
            }
            // What the parser saw: the same pairs, the same count.
            let pairs = form_urlencoded::parse(data).count();
            assert!(names.len() <= pairs);
        }
        Err(e) => {
            let text = e.description();
            assert!(text.chars().all(is_description_char), "{text:?}");
        }
    }
    let p = printable(&String::from_utf8_lossy(data));
    assert!(p.chars().count() <= 40);
    assert!(p
        .chars()
        .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\'));
}

// ---------------------------------------------------------------------------------
// HTTP Basic client credentials: oauth::client_auth::claimed_id (runs the private
// basic_credentials / decode_basic, id and secret)

fn basic_header(value: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(value) {
        h.insert(AUTHORIZATION, v);
    }
    h
}

/// Layout: byte 0 = mode. Even: the rest is the `Authorization` header value as sent.
/// Odd: the rest is the `id:secret` text, sent as `Basic base64(text)`; the claimed id
/// must be the form-decoded id (the raw one if it does not decode).
pub fn client_basic(data: &[u8]) {
    use base64::Engine;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let empty = Form::default();
    if mode & 1 == 0 {
        if let Some(id) = crate::oauth::client_auth::claimed_id(&basic_header(rest), &empty) {
            assert!(!id.is_empty());
        }
        return;
    }
    let value = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(rest)
    );
    let got = crate::oauth::client_auth::claimed_id(&basic_header(value.as_bytes()), &empty);
    let expected = std::str::from_utf8(rest)
        .ok()
        .and_then(|t| t.split_once(':'))
        .filter(|(id, _)| !id.is_empty())
        .map(|(id, _)| {
            let plus = id.replace('+', " ");
            percent_encoding::percent_decode_str(&plus)
                .decode_utf8()
                .map_or_else(|_| id.to_owned(), |d| d.into_owned())
        });
    assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(rest));
}

// ---------------------------------------------------------------------------------
// config loader: config::Config::parse (TOML text + AUTHGATE_… overrides)

/// Layout: TOML text, then optionally a NUL byte and `NAME=value` lines (the
/// environment; TOML text cannot contain a raw NUL).
pub fn config(data: &[u8]) {
    let (toml, env) = match data.iter().position(|&b| b == 0) {
        Some(n) => (&data[..n], &data[n + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(toml) else {
        return;
    };
    let env = String::from_utf8_lossy(env);
    let vars: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    match Config::parse(text, "fuzz.toml", vars.clone().into_iter()) {
        Ok(c) => {
            assert_eq!(c.source_hash, crate::config::short_hash(text.as_bytes()));
            // What RouteConfig documents: a path prefix starting with `/`, without a
            // trailing `/` (except `/` itself); a lower-case host without port.
            for r in &c.routes {
                assert!(r.path.starts_with('/'), "route path {:?}", r.path);
                assert!(
                    r.path == "/" || !r.path.ends_with('/'),
                    "route path {:?}",
                    r.path
                );
                if let Some(h) = &r.host {
                    assert_eq!(*h, h.to_ascii_lowercase());
                    assert_eq!(crate::gateway::strip_port(h), h, "route host {h:?}");
                }
            }
        }
        Err(e) => {
            let first = e.to_string();
            assert!(!first.is_empty());
            // Deterministic: the same input, the same error.
            let again = Config::parse(text, "fuzz.toml", vars.into_iter())
                .err()
                .map(|e| e.to_string());
            assert_eq!(again.as_deref(), Some(first.as_str()));
        }
    }
}

// ---------------------------------------------------------------------------------
// redirect URIs: oauth::client::ClientSettings::validate (what [[client]] and stored
// clients go through); the authorize endpoint then compares them exactly.

/// Layout: one redirect URI per line.
pub fn redirect_uri(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let uris: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let settings = ClientSettings {
        grants: vec!["authorization_code".into()],
        scopes: String::new(),
        redirect_uris: uris.clone(),
        access_token_ttl: None,
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
    };
    if settings.validate().is_err() {
        return;
    }
    for u in &uris {
        if u == OOB {
            continue;
        }
        let parsed: http::Uri = u.parse().expect("validated");
        assert!(parsed.scheme().is_some() && parsed.authority().is_some());
        assert!(!u.contains('#'));
        // The authorize endpoint redirects to `uri?code=…&state=…` (or `&…`): a
        // registered URI must make a valid Location header.
        let sep = if u.contains('?') { '&' } else { '?' };
        let location = format!("{u}{sep}code=agac_x&state=s%26t");
        assert!(HeaderValue::from_str(&location).is_ok(), "{location:?}");
    }
}

// ---------------------------------------------------------------------------------
// paths: gateway::path::canonical_path

/// `path` with every `%XX` escape decoded (bytes).
fn decoded(path: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(path).collect()
}

/// Layout: the path (UTF-8; hyper hands the gateway any path `http::Uri` accepts,
/// which includes non-ASCII UTF-8).
pub fn canonical_path(data: &[u8]) {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    match crate::gateway::path::canonical_path(path) {
        Ok(None) => {}
        Ok(Some(out)) => {
            assert_ne!(out, path);
            // Only escapes change: the path names the same bytes.
            assert_eq!(decoded(&out), decoded(path), "{path:?} -> {out:?}");
            // The canonical form is canonical.
            assert_eq!(
                crate::gateway::path::canonical_path(&out),
                Ok(None),
                "{path:?} -> {out:?}"
            );
            // A path the URI parser took stays one it takes (replace_path).
            if let Ok(pq) = path.parse::<http::uri::PathAndQuery>() {
                if pq.path() == path {
                    let back: http::uri::PathAndQuery = out.parse().expect("valid path");
                    assert_eq!(back.path(), out);
                }
            }
        }
        Err(GatewayError::BadRequest(_)) => {}
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

// ---------------------------------------------------------------------------------
// Host: hostname::is_valid, and the router's host key (gateway::route_host)

/// Layout: the Host header value.
pub fn host(data: &[u8]) {
    let Ok(v) = HeaderValue::from_bytes(data) else {
        return;
    };
    // request_host reads the header with to_str().
    let Ok(h) = v.to_str() else {
        return;
    };
    let bare = crate::gateway::strip_port(h);
    assert!(h.starts_with(bare), "{h:?} -> {bare:?}");
    if h.starts_with('[') && h.contains(']') {
        assert!(bare.ends_with(']') && !bare[1..bare.len() - 1].contains(']'));
    } else if !h.starts_with('[') {
        assert!(bare.len() == h.len() || h.as_bytes()[bare.len()] == b':');
    }
    // The Location of the HTTPS redirect is built from it.
    let location = HeaderValue::from_str(&format!("https://{bare}/"));
    if crate::hostname::is_valid(h) {
        // What passes the check is safe in every header it is copied into, and its
        // routing key has no port, no trailing dot and no upper case.
        assert!(location.is_ok(), "{h:?}");
        assert!(HeaderValue::from_str(&format!("for=1.2.3.4;host=\"{h}\"")).is_ok());
        let key = crate::gateway::route_host(h);
        assert!(
            !key.ends_with('.') && !key.contains(':') || key.starts_with('['),
            "{h:?} -> {key:?}"
        );
        assert_eq!(key, key.to_ascii_lowercase());
        assert!(!h.contains(['@', '/', ' ', ',', '"', '\\']), "{h:?}");
    }
}
