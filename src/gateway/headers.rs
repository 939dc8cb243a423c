//! Header rewriting between client and upstream (RFC 9110 §7.6).
//!
//! - Hop-by-hop fields (`Connection` and every field it names, `Keep-Alive`,
//!   `Proxy-Connection`, `TE` but for `trailers`, `Transfer-Encoding`, `Upgrade`,
//!   `Proxy-Authenticate`, `Proxy-Authorization`) are removed in both directions, except
//!   the `Connection: upgrade` + `Upgrade` pair of a protocol upgrade. The request's are
//!   removed before authgate adds its own (identity, `X-Request-Id`, `Forwarded`, `Via`),
//!   and a `Connection` token naming a field that frames the message or that authgate
//!   vouches for ([`is_protected`]) is ignored: a client cannot delete them.
//! - Header names spelled with `_` are dropped unless `server.underscores_in_headers`:
//!   CGI-style upstreams read `X_Foo` as `X-Foo`.
//! - `X-Forwarded-For/-Proto/-Host` and `Forwarded` (RFC 7239) describe the client. From
//!   a trusted proxy the chain is extended; from anyone else, whatever the client sent is
//!   replaced, so it cannot spoof its address or scheme.
//! - `Via` (RFC 9110 §7.6.3) is appended both ways.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Version;

/// `X-Forwarded-For`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Who the client is, as authgate saw it.
#[derive(Debug, Clone, Copy)]
pub struct ClientView<'a> {
    /// The TCP peer.
    pub peer: IpAddr,
    /// Whether the peer is a configured trusted proxy.
    pub trusted_peer: bool,
    /// `"https"` or `"http"`: the scheme the client used.
    pub proto: &'static str,
    /// The `Host` (or `:authority`) the client asked for.
    pub host: Option<&'a str>,
}

/// Whether the request is a WebSocket opening handshake (RFC 6455 §4.1): HTTP/1.1
/// `GET` with `Connection: upgrade`, `Upgrade: websocket`, a `Sec-WebSocket-Key` and
/// `Sec-WebSocket-Version: 13`. Other upgrades (h2c, custom protocols) are not
/// tunnelled: a tunnel escapes routing, header cleaning and limits, so only WebSocket
/// gets one, and [`strip_hop_by_hop`] then leaves `Upgrade: websocket` alone.
pub fn is_upgrade(method: &http::Method, headers: &HeaderMap, version: Version) -> bool {
    version == Version::HTTP_11
        && method == http::Method::GET
        && connection_has(headers, "upgrade")
        && headers.get(&SEC_WEBSOCKET_KEY).is_some()
        && headers
            .get(&SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v.as_bytes() == b"13")
        && headers
            .get_all(header::UPGRADE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| {
                let name = p.trim().split('/').next().unwrap_or("");
                name.eq_ignore_ascii_case("websocket")
            })
}

/// `Sec-WebSocket-Key`.
pub static SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
/// `Sec-WebSocket-Version`.
pub static SEC_WEBSOCKET_VERSION: HeaderName = HeaderName::from_static("sec-websocket-version");
/// `Sec-WebSocket-Accept`.
pub static SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Whether an upstream's 101 answers the WebSocket handshake whose key was `key`: it
/// names `websocket` and proves with `Sec-WebSocket-Accept` that it read the key
/// (RFC 6455 §4.2.2). Anything else must not become a tunnel.
pub fn accepts_websocket(response: &HeaderMap, key: &[u8]) -> bool {
    use base64::Engine;
    use sha1::Digest;
    let upgrade_ok = response
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let expected = sha1::Sha1::new()
        .chain_update(key)
        .chain_update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
        .finalize();
    let expected = base64::engine::general_purpose::STANDARD.encode(expected);
    let accept_ok = response.get(&SEC_WEBSOCKET_ACCEPT).is_some_and(|v| {
        bool::from(subtle::ConstantTimeEq::ct_eq(
            v.as_bytes(),
            expected.as_bytes(),
        ))
    });
    upgrade_ok && accept_ok
}

/// All lines of a header joined with ", " (proxies may add a line rather than extend
/// the last one).
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut out: Option<String> = None;
    for v in headers.get_all(name) {
        let text = String::from_utf8_lossy(v.as_bytes());
        match &mut out {
            Some(s) => {
                s.push_str(", ");
                s.push_str(&text);
            }
            None => out = Some(text.into_owned()),
        }
    }
    out
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether a `Connection` token naming `name` is ignored: fields that frame the message
/// or route it (`Host`, `Content-Length`), and the ones authgate sets or vouches for
/// (`X-Request-Id`, `Forwarded`, `X-Forwarded-*`, `Via`). Identity headers need no
/// entry: they are removed and set after this step.
pub fn is_protected(name: &HeaderName) -> bool {
    name == header::HOST
        || name == header::CONTENT_LENGTH
        || name == header::FORWARDED
        || name == header::VIA
        || name == crate::request_id::HEADER
        || name.as_str().starts_with("x-forwarded-")
}

/// Removes hop-by-hop fields. With `upgrade`, keeps `Upgrade` and sets
/// `Connection: upgrade`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|name| !is_protected(name))
            .collect();
        for name in named {
            if !(upgrade && name == header::UPGRADE) {
                headers.remove(&name);
            }
        }
        headers.remove(header::CONNECTION);
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(header::TRANSFER_ENCODING);
    headers.remove(header::PROXY_AUTHENTICATE);
    headers.remove(header::PROXY_AUTHORIZATION);
    headers.remove(&HTTP2_SETTINGS);
    if headers.contains_key(header::TE) {
        // `TE: trailers` is what gRPC needs end to end; anything else is per hop. Every
        // line counts: a second `TE: gzip` line must not ride along.
        let trailers = headers
            .get_all(header::TE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| {
                let name = t.split(';').next().unwrap_or("").trim();
                name.eq_ignore_ascii_case("trailers")
            });
        headers.remove(header::TE);
        if trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
    }
    if upgrade {
        // Exactly the one protocol that may become a tunnel.
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Removes fields whose name has a `_`: all of them, or with `all = false`
/// (`server.underscores_in_headers = true`) those that would read as a field authgate
/// sets, checks or strips once `_` is read as `-` ([`is_sensitive`]). Returns how many
/// names went.
pub fn drop_underscored(headers: &mut HeaderMap, all: bool) -> usize {
    if !headers.keys().any(|k| k.as_str().contains('_')) {
        return 0;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            k.as_str().contains('_') && (all || is_sensitive(&k.as_str().replace('_', "-")))
        })
        .cloned()
        .collect();
    for name in &names {
        headers.remove(name);
    }
    names.len()
}

/// Whether a field named `name` (lower case, `-` spelling) is one authgate sets,
/// checks or strips: protected and hop-by-hop fields, token headers, method overrides.
/// Identity headers are handled by [`super::identity`], which folds `_` itself.
pub fn is_sensitive(name: &str) -> bool {
    HeaderName::from_bytes(name.as_bytes()).is_ok_and(|n| is_protected(&n))
        || name.starts_with("x-forwarded")
        || super::method_override::NAMES
            .iter()
            .any(|n| n.as_str() == name)
        || matches!(
            name,
            "authorization"
                | "x-access-token"
                | "connection"
                | "keep-alive"
                | "proxy-connection"
                | "proxy-authorization"
                | "transfer-encoding"
                | "te"
                | "trailer"
                | "upgrade"
                | "x-real-ip"
        )
}

/// Sets `X-Forwarded-*` and `Forwarded` for the upstream.
pub fn set_forwarded(headers: &mut HeaderMap, client: &ClientView<'_>) {
    let peer = client.peer.to_string();
    let trusted = client.trusted_peer;

    match joined(headers, &X_FORWARDED_FOR).filter(|_| trusted) {
        Some(prev) => insert_str(headers, &X_FORWARDED_FOR, &format!("{prev}, {peer}")),
        None => insert_str(headers, &X_FORWARDED_FOR, &peer),
    }
    if !(trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(client.proto));
    }
    if !(trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        match client.host {
            Some(h) => insert_str(headers, &X_FORWARDED_HOST, h),
            None => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
    }

    let mut element = match client.peer {
        IpAddr::V4(ip) => format!("for={ip}"),
        IpAddr::V6(ip) => format!("for=\"[{ip}]\""),
    };
    if let Some(h) = client.host {
        if h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_~".contains(&b))
        {
            element.push_str(";host=");
            element.push_str(h);
        } else if !h.contains(['"', '\\']) {
            element.push_str(";host=\"");
            element.push_str(h);
            element.push('"');
        }
    }
    element.push_str(";proto=");
    element.push_str(client.proto);
    match joined(headers, &header::FORWARDED).filter(|_| trusted) {
        Some(prev) => insert_str(headers, &header::FORWARDED, &format!("{prev}, {element}")),
        None => insert_str(headers, &header::FORWARDED, &element),
    }
}

/// Appends this hop to `Via`.
pub fn add_via(headers: &mut HeaderMap, version: Version) {
    let hop = match version {
        Version::HTTP_09 => "0.9 authgate",
        Version::HTTP_10 => "1.0 authgate",
        Version::HTTP_2 => "2 authgate",
        Version::HTTP_3 => "3 authgate",
        _ => "1.1 authgate",
    };
    headers.append(header::VIA, HeaderValue::from_static(hop));
}

fn insert_str(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    // The values are built from parsed addresses and already-valid header values, so this
    // only fails for obs-text a client put in a trusted header; drop it then.
    match HeaderValue::from_str(value) {
        Ok(v) => {
            headers.insert(name, v);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

/// The client's address (logs, rate limits, `metrics.allow`): behind trusted proxies,
/// the right-most address that is not itself a trusted proxy in `X-Forwarded-For`, or
/// in the `for=` parameters of `Forwarded` (RFC 7239), as `server.client_ip_header`
/// says (only that header is read: a proxy that sets one and passes the other through
/// from the client cannot be fooled). From any other peer the headers are ignored: the
/// peer's own address counts.
pub fn client_ip(
    headers: &HeaderMap,
    peer: IpAddr,
    trusted_peer: bool,
    from: crate::config::ClientIpHeader,
    is_trusted: impl Fn(IpAddr) -> bool,
) -> IpAddr {
    if !trusted_peer {
        return peer;
    }
    let mut chain: Vec<IpAddr> = match from {
        crate::config::ClientIpHeader::XForwardedFor => headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse().ok())
            .collect(),
        crate::config::ClientIpHeader::Forwarded => headers
            .get_all(header::FORWARDED)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(forwarded_for)
            .collect(),
    };
    chain.reverse();
    chain
        .iter()
        .copied()
        .find(|ip| !is_trusted(*ip))
        .or_else(|| chain.last().copied())
        .unwrap_or(peer)
}

/// The address in one `Forwarded` element's `for=` parameter (`for=192.0.2.60`,
/// `for="[2001:db8::17]:4711"`); `None` for `unknown` or obfuscated identifiers.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let value = element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case("for").then(|| v.trim())
    })?;
    let value = value.trim_matches('"');
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    value
        .parse()
        .ok()
        .or_else(|| value.rsplit_once(':')?.0.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_fields() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "gzip"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("x-end-to-end", "kept"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-end-to-end"], "kept");
    }

    #[test]
    fn connection_cannot_name_protected_fields() {
        let mut h = map(&[
            (
                "connection",
                "Host, Content-Length, X-Request-Id, Forwarded, X-Forwarded-For, Via, X-Hop",
            ),
            ("host", "a.example"),
            ("content-length", "3"),
            ("x-request-id", "abc"),
            ("forwarded", "for=1.2.3.4"),
            ("x-forwarded-for", "1.2.3.4"),
            ("via", "1.1 lb"),
            ("x-hop", "gone"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 6, "{h:?}");
        assert!(!h.contains_key("x-hop") && !h.contains_key("connection"));
    }

    #[test]
    fn underscored_names_are_dropped() {
        let mut h = map(&[
            ("x_custom", "1"),
            ("transfer_encoding", "chunked"),
            ("x-ok", "2"),
        ]);
        assert_eq!(drop_underscored(&mut h, true), 2);
        assert_eq!(h.len(), 1);
        assert_eq!(drop_underscored(&mut h, true), 0);
        // Allowed, but never for names that read as ones authgate vouches for.
        let mut h = map(&[
            ("x_custom", "1"),
            ("x_forwarded_for", "6.6.6.6"),
            ("x_request_id", "forged"),
            ("x_http_method_override", "DELETE"),
            ("x_access_token", "t"),
        ]);
        assert_eq!(drop_underscored(&mut h, false), 4);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x_custom"], "1");
    }

    #[test]
    fn keeps_te_trailers_and_upgrade_pairs() {
        let mut h = map(&[("te", "trailers")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h["te"], "trailers");
        let mut h = map(&[("te", "trailers"), ("te", "gzip")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.get_all("te").iter().collect::<Vec<_>>(), ["trailers"]);
        let mut h = map(&[("te", "gzip, deflate")]);
        strip_hop_by_hop(&mut h, false);
        assert!(!h.contains_key("te"));

        let h2c = map(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
        ]);
        assert!(!is_upgrade(&http::Method::GET, &h2c, Version::HTTP_11));
        let ws = [
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
        ];
        let get = http::Method::GET;
        let mut h = map(&ws);
        assert!(is_upgrade(&get, &h, Version::HTTP_11));
        assert!(!is_upgrade(&get, &h, Version::HTTP_2));
        assert!(!is_upgrade(&http::Method::POST, &h, Version::HTTP_11));
        assert!(!is_upgrade(&get, &map(&ws[..3]), Version::HTTP_11));
        // A second Upgrade line (h2c) and HTTP2-Settings do not survive the strip.
        h.append("upgrade", HeaderValue::from_static("h2c"));
        h.append(
            "http2-settings",
            HeaderValue::from_static("AAMAAABkAAQAoAAAAAIAAAAA"),
        );
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(
            h.get_all("upgrade").iter().collect::<Vec<_>>(),
            ["websocket"]
        );
        assert!(!h.contains_key("http2-settings"));
    }

    fn view(trusted: bool) -> ClientView<'static> {
        ClientView {
            peer: "10.0.0.9".parse().unwrap(),
            trusted_peer: trusted,
            proto: "https",
            host: Some("api.example:8443"),
        }
    }

    #[test]
    fn untrusted_peers_cannot_spoof() {
        let mut h = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "evil"),
            ("forwarded", "for=6.6.6.6"),
        ]);
        set_forwarded(&mut h, &view(false));
        assert_eq!(h["x-forwarded-for"], "10.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "api.example:8443");
        assert_eq!(
            h["forwarded"],
            "for=10.0.0.9;host=\"api.example:8443\";proto=https"
        );
    }

    #[test]
    fn trusted_peers_extend_the_chain() {
        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=1.2.3.4"),
        ]);
        let mut v = view(true);
        v.proto = "http";
        set_forwarded(&mut h, &v);
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert!(h["forwarded"]
            .to_str()
            .unwrap()
            .starts_with("for=1.2.3.4, for=10.0.0.9"));
    }

    #[test]
    fn every_line_of_a_trusted_chain_is_kept() {
        let mut h = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "1.2.3.4"),
        ]);
        set_forwarded(&mut h, &view(true));
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-for"], "6.6.6.6, 1.2.3.4, 10.0.0.9");
    }

    #[test]
    fn ipv6_forwarded_is_quoted() {
        let mut h = HeaderMap::new();
        let v = ClientView {
            peer: "::1".parse().unwrap(),
            trusted_peer: false,
            proto: "http",
            host: None,
        };
        set_forwarded(&mut h, &v);
        assert_eq!(h["forwarded"], "for=\"[::1]\";proto=http");
    }

    #[test]
    fn client_ip_walks_trusted_chain() {
        use crate::config::ClientIpHeader::{Forwarded as FWD, XForwardedFor as XFF};
        let h = map(&[("x-forwarded-for", "9.9.9.9, 1.1.1.1, 10.0.0.2")]);
        let trusted = |ip: IpAddr| ip.to_string().starts_with("10.");
        let peer = "10.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(&h, peer, true, XFF, trusted).to_string(),
            "1.1.1.1"
        );
        assert_eq!(client_ip(&h, peer, false, XFF, trusted), peer);
        // Only the configured header is read.
        assert_eq!(client_ip(&h, peer, true, FWD, trusted), peer);

        // RFC 7239 `Forwarded`.
        let h = map(&[(
            "forwarded",
            "for=9.9.9.9, for=\"[2001:db8::17]:4711\";proto=https, for=10.0.0.2:80",
        )]);
        assert_eq!(
            client_ip(&h, peer, true, FWD, trusted).to_string(),
            "2001:db8::17"
        );
        let h = map(&[("forwarded", "for=unknown, for=_hidden;by=10.0.0.9")]);
        assert_eq!(client_ip(&h, peer, true, FWD, trusted), peer);
        assert_eq!(
            forwarded_for("for=192.0.2.60:8080"),
            "192.0.2.60".parse().ok()
        );
        assert_eq!(forwarded_for("by=1.2.3.4"), None);
    }

    #[test]
    fn a_101_must_answer_the_websocket_key() {
        // RFC 6455 §1.3's example.
        let key = b"dGhlIHNhbXBsZSBub25jZQ==";
        let ok = map(&[
            ("upgrade", "websocket"),
            ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ]);
        assert!(accepts_websocket(&ok, key));
        let h2c = map(&[
            ("upgrade", "h2c"),
            ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ]);
        assert!(!accepts_websocket(&h2c, key));
        assert!(!accepts_websocket(&map(&[("upgrade", "websocket")]), key));
        assert!(!accepts_websocket(&ok, b"another key"));
    }

    #[test]
    fn via_is_appended() {
        let mut h = map(&[("via", "1.0 fred")]);
        add_via(&mut h, Version::HTTP_2);
        let all: Vec<_> = h.get_all("via").iter().collect();
        assert_eq!(all, vec!["1.0 fred", "2 authgate"]);
    }
}
