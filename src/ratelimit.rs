//! Request rate limits (GCRA token buckets from `governor`), refused with 429, a
//! `Retry-After` and an RFC-shaped JSON body:
//!
//! - on the OAuth endpoints, per client address (IPv6 by /64) before anything is read,
//!   and per claimed client id (or account id) before its secret is checked: guessing
//!   secrets and passwords is slowed whatever the source;
//! - on proxied routes with a `rate_limit`, per token client id or per address.
//!
//! The client address is the peer's, or what a trusted proxy says in
//! `X-Forwarded-For`/`Forwarded` ([`crate::gateway::headers::client_ip`]). Memory is
//! bounded by [`Limiters::purge`], which drops buckets that are full again.

use std::net::IpAddr;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::DefaultKeyedRateLimiter;

use crate::config::{Config, LimitBy, Rate};
use crate::oauth::limiter::bucket;

type Keyed<K> = DefaultKeyedRateLimiter<K>;

/// A request over its limit; it may try again after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
}

impl Limited {
    /// Whole seconds for `Retry-After`, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }
}

/// Every limiter of one configuration.
pub struct Limiters {
    oauth_ip: Option<Keyed<IpAddr>>,
    oauth_client: Option<Keyed<String>>,
    /// By route index.
    routes: Vec<Option<RouteLimiter>>,
    clock: DefaultClock,
}

/// A route's limiter and what it counts.
pub struct RouteLimiter {
    pub by: LimitBy,
    ip: Keyed<IpAddr>,
    client: Keyed<String>,
}

fn keyed<K: std::hash::Hash + Eq + Clone>(rate: &Rate) -> Keyed<K> {
    governor::RateLimiter::keyed(rate.quota())
}

impl Limiters {
    /// The limiters `config` asks for.
    pub fn new(config: &Config) -> Limiters {
        let l = &config.rate_limits;
        Limiters {
            oauth_ip: l.oauth_per_ip.as_ref().map(keyed),
            oauth_client: l.oauth_per_client.as_ref().map(keyed),
            routes: config
                .routes
                .iter()
                .map(|r| {
                    r.rate_limit.map(|rl| RouteLimiter {
                        by: rl.by,
                        ip: keyed(&rl.rate),
                        client: keyed(&rl.rate),
                    })
                })
                .collect(),
            clock: DefaultClock::default(),
        }
    }

    fn check<K: std::hash::Hash + Eq + Clone>(
        &self,
        limiter: Option<&Keyed<K>>,
        key: &K,
    ) -> Result<(), Limited> {
        match limiter.map(|l| l.check_key(key)) {
            Some(Err(not_until)) => Err(Limited {
                retry_after: not_until.wait_time_from(self.clock.now()),
            }),
            _ => Ok(()),
        }
    }

    /// One request to an OAuth endpoint from `ip`.
    pub fn oauth_ip(&self, ip: IpAddr) -> Result<(), Limited> {
        self.check(self.oauth_ip.as_ref(), &bucket(ip))
    }

    /// One attempt to authenticate as client (or account) `id`.
    pub fn oauth_client(&self, id: &str) -> Result<(), Limited> {
        let Some(limiter) = &self.oauth_client else {
            return Ok(());
        };
        // Ids longer than any real one share a bucket, so junk cannot grow the table.
        let key = if id.len() > 256 { "" } else { id };
        self.check(Some(limiter), &key.to_owned())
    }

    /// One request on route `index` by `client_id` from `ip`.
    pub fn route(&self, index: usize, client_id: Option<&str>, ip: IpAddr) -> Result<(), Limited> {
        let Some(Some(r)) = self.routes.get(index) else {
            return Ok(());
        };
        match (r.by, client_id) {
            (LimitBy::Client, Some(id)) => self.check(Some(&r.client), &id.to_owned()),
            _ => self.check(Some(&r.ip), &bucket(ip)),
        }
    }

    /// Drops buckets that have refilled (called periodically).
    pub fn purge(&self) {
        if let Some(l) = &self.oauth_ip {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.oauth_client {
            l.retain_recent();
            l.shrink_to_fit();
        }
        for r in self.routes.iter().flatten() {
            r.ip.retain_recent();
            r.ip.shrink_to_fit();
            r.client.retain_recent();
            r.client.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            "[server]\nhttps = \"off\"\nhttp = \"127.0.0.1:0\"\nhttp_mode = \"serve\"\n{extra}"
        );
        Config::parse(&text, "t.toml", std::iter::empty()).unwrap()
    }

    #[test]
    fn burst_then_refused_with_a_wait() {
        let l = Limiters::new(&config(
            "[rate_limits]\noauth_per_ip = { rate = \"1/h\", burst = 2 }\noauth_per_client = { rate = \"off\" }",
        ));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(l.oauth_ip(ip).is_ok());
        assert!(l.oauth_ip(ip).is_ok());
        let refused = l.oauth_ip(ip).unwrap_err();
        assert!(refused.retry_after > Duration::from_secs(3000));
        assert!(refused.retry_after_secs() <= 3600);
        // Another address has its own bucket; one /64 shares one.
        assert!(l.oauth_ip("192.0.2.2".parse().unwrap()).is_ok());
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        assert!(l.oauth_ip(a).is_ok());
        assert!(l.oauth_ip(b).is_ok());
        assert!(l.oauth_ip(a).is_err());
        // Off: never refused.
        for _ in 0..1000 {
            assert!(l.oauth_client("c").is_ok());
        }
    }

    #[test]
    fn routes_count_clients_or_addresses() {
        let l = Limiters::new(&config(
            "[[route]]\npath = \"/a\"\nupstream = \"http://127.0.0.1:1\"\nscopes = []\nrate_limit = { rate = \"1/h\" }\n\
             [[route]]\npath = \"/b\"\nupstream = \"http://127.0.0.1:1\"\npublic = true\nrate_limit = { rate = \"1/h\" }\n\
             [[route]]\npath = \"/c\"\nupstream = \"http://127.0.0.1:1\"\npublic = true",
        ));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(l.route(0, Some("x"), ip).is_ok());
        assert!(l.route(0, Some("x"), ip).is_err());
        assert!(l.route(0, Some("y"), ip).is_ok());
        assert!(l.route(1, None, ip).is_ok());
        assert!(l.route(1, None, ip).is_err());
        for _ in 0..100 {
            assert!(l.route(2, None, ip).is_ok());
        }
        l.purge();
    }
}
