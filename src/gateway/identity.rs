//! Identity headers: the upstream learns who is calling (client id, subject, granted
//! scope, bound resource ids) from headers under `auth.identity_header_prefix`
//! (`X-Authgate-Client-Id`, `X-Authgate-Subject`, `X-Authgate-Scope`,
//! `X-Authgate-Location-Id`, …). Whatever the client sent under that prefix is removed
//! first, so identity cannot be spoofed; the token header is removed unless the route
//! passes it on.

use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};

use super::authenticate::X_ACCESS_TOKEN;
use super::authorize::Authorized;

/// Resource keys that would collide with the identity headers themselves.
pub const RESERVED_KEYS: [&str; 3] = ["client_id", "subject", "scope"];

/// Precomputed header names for one prefix.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    prefix: String,
    client_id: HeaderName,
    subject: HeaderName,
    scope: HeaderName,
}

impl IdentityHeaders {
    /// Names under `prefix` (lower case, validated by config).
    pub fn new(prefix: &str) -> IdentityHeaders {
        let name = |suffix: &str| {
            HeaderName::from_bytes(format!("{prefix}{suffix}").as_bytes())
                .unwrap_or_else(|_| HeaderName::from_static("x-authgate-invalid"))
        };
        IdentityHeaders {
            prefix: prefix.to_owned(),
            client_id: name("client-id"),
            subject: name("subject"),
            scope: name("scope"),
        }
    }

    /// Rewrites `headers` for the upstream.
    pub fn apply(&self, headers: &mut HeaderMap, caller: Option<&Authorized>, pass_token: bool) {
        // `_` counts as `-`: CGI-style upstreams (WSGI, Rack, PHP) map both to the same
        // variable, so `X_Authgate_Subject` would otherwise shadow the real header.
        let prefix = self.prefix.as_bytes();
        let spoofed: Vec<HeaderName> = headers
            .keys()
            .filter(|k| {
                let name = k.as_str().as_bytes();
                name.len() >= prefix.len()
                    && name
                        .iter()
                        .zip(prefix)
                        .all(|(a, b)| a == b || (*a == b'_' && *b == b'-'))
            })
            .cloned()
            .collect();
        for k in spoofed {
            headers.remove(&k);
        }
        let Some(caller) = caller else { return };
        if !pass_token {
            headers.remove(AUTHORIZATION);
            headers.remove(&X_ACCESS_TOKEN);
        }
        let t = &*caller.token.grant;
        let mut set = |name: HeaderName, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(name, v);
            }
        };
        set(self.client_id.clone(), &t.client_id);
        if let Some(s) = &t.subject {
            set(self.subject.clone(), s);
        }
        set(self.scope.clone(), &t.scope_text);
        for (key, value) in &t.extra {
            let suffix = key.replace('_', "-").to_ascii_lowercase();
            let Ok(name) = HeaderName::from_bytes(format!("{}{suffix}", self.prefix).as_bytes())
            else {
                continue;
            };
            match value {
                serde_json::Value::String(s) => set(name, s),
                other => set(name, &other.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Scope;
    use crate::token_table::{CachedToken, Grant};

    #[test]
    fn spoofed_headers_go_and_identity_arrives() {
        let ids = IdentityHeaders::new("x-authgate-");
        let mut h = HeaderMap::new();
        h.insert("x-authgate-client-id", "evil".parse().unwrap());
        h.insert("x-authgate-admin", "true".parse().unwrap());
        h.insert("x_authgate_subject", "root".parse().unwrap());
        h.insert("authorization", "Bearer t".parse().unwrap());
        h.insert("x-other", "kept".parse().unwrap());
        let mut extra = serde_json::Map::new();
        extra.insert("location_id".into(), "3r4s3-1".into());
        let caller = Authorized {
            token: CachedToken::new(Grant {
                client_id: "app".into(),
                subject: Some("alice".into()),
                scope: Scope::parse("profile").unwrap(),
                scope_text: "profile".into(),
                extra,
            }),
        };
        ids.apply(&mut h, Some(&caller), false);
        assert_eq!(h["x-authgate-client-id"], "app");
        assert_eq!(h["x-authgate-subject"], "alice");
        assert_eq!(h["x-authgate-scope"], "profile");
        assert_eq!(h["x-authgate-location-id"], "3r4s3-1");
        assert!(!h.contains_key("x-authgate-admin"));
        assert!(!h.contains_key("x_authgate_subject"));
        assert!(!h.contains_key("authorization"));
        assert_eq!(h["x-other"], "kept");

        let mut public = HeaderMap::new();
        public.insert("x-authgate-subject", "root".parse().unwrap());
        public.insert("authorization", "Basic x".parse().unwrap());
        ids.apply(&mut public, None, false);
        assert!(!public.contains_key("x-authgate-subject"));
        assert!(
            public.contains_key("authorization"),
            "public routes pass credentials through"
        );
    }
}
