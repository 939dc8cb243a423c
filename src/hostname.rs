//! Host names as authgate accepts them, in requests (`Host`, `:authority`) and in the
//! configuration (`route.host`). No I/O, no dependencies: a ground-floor check both
//! the gateway and the configuration use.

/// The longest host accepted (a DNS name is at most 253 characters, plus a port).
const MAX_LEN: usize = 261;

/// Whether `value` is `host[:port]`: a DNS name or IPv4 address (labels of letters,
/// digits, `-` and `_`, none empty, one trailing dot allowed) or a bracketed IPv6
/// address, with an optional port of 1–5 digits up to 65535.
pub fn is_valid(value: &str) -> bool {
    if value.is_empty() || value.len() > MAX_LEN {
        return false;
    }
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("[v6]", Some(port)),
                None => return false,
            },
        }
    } else {
        match value.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (value, None),
        }
    };
    // Labels of letters, digits, `-` and `_`, none empty (no `..`, no leading dot); one
    // trailing dot (a fully qualified name) is allowed.
    let name = host.strip_suffix('.').unwrap_or(host);
    let host_ok = host == "[v6]"
        || (!name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
            }));
    let port_ok = port.is_none_or(|p| {
        (1..=5).contains(&p.len())
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| n <= 65535)
    });
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for ok in [
            "a.example",
            "a.example:8443",
            "127.0.0.1",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:8443",
            "[2001:db8::17]:65535",
            "A-b_c.example",
            "localhost",
            "admin.example.",
            "admin.example.:8443",
        ] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "user@evil.example",
            "evil.example/path",
            "a.example:",
            "a.example:99999",
            "a.example:123456",
            "a.example:8x",
            ":80",
            "[::1",
            "[::1]x",
            "[zz]:80",
            "a,b",
            "a\"b",
            "a\\b",
            "a.example:80:80",
            "admin.example..",
            ".admin.example",
            "a..b",
            ".",
            &"a".repeat(300),
        ] {
            assert!(!is_valid(bad), "{bad}");
        }
    }
}
