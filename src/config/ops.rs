//! Operations sections: `[metrics]`, `[reload]`, `[forward_auth]`, `[rate_limits]`, and
//! the per-route `rate_limit`.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::{ConfigError, Validator};

/// `[metrics]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub enabled: Option<bool>,
    pub path: Option<String>,
    pub listen: Option<String>,
    pub allow: Option<Vec<String>>,
}

/// `[reload]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReload {
    pub watch: Option<String>,
}

/// `[forward_auth]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForwardAuth {
    pub path: Option<String>,
    pub headers: Option<String>,
}

/// `[rate_limits]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimits {
    pub oauth_per_ip: Option<RawRate>,
    pub oauth_per_client: Option<RawRate>,
    /// The former name of `client_failures_per_id_and_ip`.
    pub client_failures_per_id: Option<u32>,
    pub client_failures_per_id_and_ip: Option<u32>,
    pub client_failures_per_ip: Option<u32>,
    pub client_failures_window: Option<String>,
    pub client_failures_backoff: Option<String>,
    pub client_failures_backoff_max: Option<String>,
}

/// `{ rate = "20/s", burst = 40 }` (and `by` on routes).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRate {
    pub rate: Option<String>,
    pub burst: Option<u32>,
    pub by: Option<String>,
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub path: String,
    /// A separate plain-HTTP listener for metrics and health (`None`: the metrics are
    /// served on the main listeners, to `allow` only).
    pub listen: Option<SocketAddr>,
    /// Who may read the metrics on the main listeners (empty: nobody; the path is then
    /// routed like any other).
    pub allow: Vec<IpNet>,
}

/// `[reload]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadConfig {
    /// How often the config and certificate files are checked (`None`: SIGHUP only).
    pub watch: Option<Duration>,
}

/// `[forward_auth]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAuthConfig {
    /// The decision endpoint (`None`: off).
    pub path: Option<String>,
    /// Which headers describe the original request.
    pub headers: OriginalHeaders,
}

/// The header family a forward-auth caller describes the original request with. Only
/// that family is read: a client's own header of the other family, passed along by the
/// proxy, cannot choose what is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginalHeaders {
    /// `X-Forwarded-Method`, `X-Forwarded-Uri`, `X-Forwarded-Host` (Traefik, Caddy).
    XForwarded,
    /// `X-Original-Method`, `X-Original-URI`, `X-Original-Host` (nginx, set by
    /// `proxy_set_header`).
    XOriginal,
}

/// A token bucket: `burst` requests at once, refilled at `count` per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub period: Duration,
    pub burst: NonZeroU32,
}

impl Rate {
    /// The governor quota.
    pub fn quota(&self) -> governor::Quota {
        let every = self.period / self.count.get();
        governor::Quota::with_period(every.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| governor::Quota::per_second(self.count))
            .allow_burst(self.burst)
    }
}

/// Who a route's limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitBy {
    /// The token's client id.
    Client,
    /// The client address (after trusted proxies).
    Ip,
}

/// A route's `rate_limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRate {
    pub rate: Rate,
    pub by: LimitBy,
}

/// `[rate_limits]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitsConfig {
    /// Per client address on the OAuth endpoints (token, authorize, revoke, introspect,
    /// account grant).
    pub oauth_per_ip: Option<Rate>,
    /// Per client id (as claimed, before its secret is checked) on the token,
    /// revocation and introspection endpoints, and per account id on the account grant.
    pub oauth_per_client: Option<Rate>,
    /// Failed client authentications (brute force of client secrets), per client id
    /// and address with a doubling wait, and per address (`client_failures_*`).
    pub client_failures: crate::oauth::limiter::FailurePolicy,
}

impl Validator<'_> {
    pub(super) fn metrics(&self, m: RawMetrics) -> Result<MetricsConfig, ConfigError> {
        let path = m.path.unwrap_or_else(|| "/metrics".into());
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
            return Err(self.err(
                "metrics.path",
                format!("{path:?} must start with / and contain no ?, # or spaces"),
            ));
        }
        let allow = match m.allow {
            None => Vec::new(),
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(i, a)| self.ip_net(&format!("metrics.allow[{i}]"), a))
                .collect::<Result<_, _>>()?,
        };
        Ok(MetricsConfig {
            enabled: m.enabled.unwrap_or(true),
            path,
            listen: self.listen("metrics.listen", m.listen.as_deref(), "off")?,
            allow,
        })
    }

    pub(super) fn reload(&self, r: RawReload) -> Result<ReloadConfig, ConfigError> {
        Ok(ReloadConfig {
            watch: match r.watch.as_deref().unwrap_or("2s") {
                "off" => None,
                text => Some(self.duration("reload.watch", Some(text), "")?),
            },
        })
    }

    pub(super) fn forward_auth(&self, f: RawForwardAuth) -> Result<ForwardAuthConfig, ConfigError> {
        let path = match f.path.as_deref().unwrap_or("off") {
            "off" => None,
            p if !p.starts_with('/') || p.contains(['?', '#', ' ']) => {
                return Err(self.err(
                    "forward_auth.path",
                    format!(
                        "{p:?} must start with / and contain no ?, # or spaces (or be \"off\")"
                    ),
                ))
            }
            p => Some(p.to_owned()),
        };
        let headers = match f.headers.as_deref().unwrap_or("x-forwarded") {
            "x-forwarded" => OriginalHeaders::XForwarded,
            "x-original" => OriginalHeaders::XOriginal,
            other => {
                return Err(self.err(
                    "forward_auth.headers",
                    format!(
                    "expected \"x-forwarded\" (Traefik) or \"x-original\" (nginx), got {other:?}"
                ),
                ))
            }
        };
        Ok(ForwardAuthConfig { path, headers })
    }

    pub(super) fn rate_limits(&self, r: RawRateLimits) -> Result<RateLimitsConfig, ConfigError> {
        let off = || RawRate {
            rate: Some("off".into()),
            burst: None,
            by: None,
        };
        let client_failures = self.client_failures(&r)?;
        Ok(RateLimitsConfig {
            oauth_per_ip: self.rate(
                "rate_limits.oauth_per_ip",
                r.oauth_per_ip.unwrap_or_else(off),
                false,
            )?,
            oauth_per_client: self.rate(
                "rate_limits.oauth_per_client",
                r.oauth_per_client.unwrap_or_else(off),
                false,
            )?,
            client_failures,
        })
    }

    /// `client_failures_*`: whole seconds, each wait at least one second and the cap
    /// no shorter than the first wait.
    fn client_failures(
        &self,
        r: &RawRateLimits,
    ) -> Result<crate::oauth::limiter::FailurePolicy, ConfigError> {
        let at_least_one = |key: &str, n: Option<u32>, default: u32| match n.unwrap_or(default) {
            0 => Err(self.err(key, "must be at least 1")),
            n => Ok(n),
        };
        let per_id_and_ip = match (r.client_failures_per_id_and_ip, r.client_failures_per_id) {
            (Some(_), Some(_)) => {
                return Err(self.err(
                    "rate_limits.client_failures_per_id",
                    "the former name of client_failures_per_id_and_ip: set only that one",
                ))
            }
            (Some(n), None) => {
                at_least_one("rate_limits.client_failures_per_id_and_ip", Some(n), 10)?
            }
            (None, old) => at_least_one("rate_limits.client_failures_per_id", old, 10)?,
        };
        let secs = |key: &str, text: &Option<String>, default: &str| {
            let d = self.duration(key, text.as_deref(), default)?;
            match d.as_secs() {
                0 => Err(self.err(key, "must be at least 1s")),
                s => Ok(i64::try_from(s).unwrap_or(i64::MAX)),
            }
        };
        let backoff = secs(
            "rate_limits.client_failures_backoff",
            &r.client_failures_backoff,
            "1s",
        )?;
        let backoff_max = secs(
            "rate_limits.client_failures_backoff_max",
            &r.client_failures_backoff_max,
            "15m",
        )?;
        if backoff_max < backoff {
            return Err(self.err(
                "rate_limits.client_failures_backoff_max",
                "must not be shorter than client_failures_backoff",
            ));
        }
        Ok(crate::oauth::limiter::FailurePolicy {
            per_id_and_ip,
            per_ip: at_least_one(
                "rate_limits.client_failures_per_ip",
                r.client_failures_per_ip,
                50,
            )?,
            window: secs(
                "rate_limits.client_failures_window",
                &r.client_failures_window,
                "15m",
            )?,
            backoff,
            backoff_max,
        })
    }

    /// A route's `rate_limit` (`public`: counted by address unless told otherwise).
    pub(super) fn route_rate(
        &self,
        key: &str,
        raw: Option<RawRate>,
        public: bool,
    ) -> Result<Option<RouteRate>, ConfigError> {
        let Some(raw) = raw else { return Ok(None) };
        let by = match raw.by.as_deref() {
            None if public => LimitBy::Ip,
            None | Some("client") if !public => LimitBy::Client,
            Some("ip") => LimitBy::Ip,
            Some("client") => {
                return Err(self.err(
                    &format!("{key}.by"),
                    "a public route has no token, hence no client: use \"ip\"",
                ))
            }
            Some(other) => {
                return Err(self.err(
                    &format!("{key}.by"),
                    format!("expected \"client\" or \"ip\", got {other:?}"),
                ))
            }
            None => LimitBy::Client,
        };
        Ok(self
            .rate(key, raw, true)?
            .map(|rate| RouteRate { rate, by }))
    }

    /// `{ rate = "N/s" | "N/m" | "N/h" | "off", burst = M }`; `burst` defaults to N.
    fn rate(&self, key: &str, raw: RawRate, by_allowed: bool) -> Result<Option<Rate>, ConfigError> {
        if raw.by.is_some() && !by_allowed {
            return Err(self.err(
                &format!("{key}.by"),
                "not a key here: this limit counts what its name says",
            ));
        }
        let text = raw
            .rate
            .ok_or_else(|| self.err(&format!("{key}.rate"), "missing: e.g. \"20/s\" or \"off\""))?;
        if text == "off" {
            return Ok(None);
        }
        let bad = || {
            self.err(
                &format!("{key}.rate"),
                format!(
                    "{text:?} is not a rate like \"20/s\", \"600/m\" or \"1000/h\" (or \"off\")"
                ),
            )
        };
        let (n, unit) = text.split_once('/').ok_or_else(bad)?;
        let count: NonZeroU32 = n.trim().parse().map_err(|_| bad())?;
        let period = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        let burst = match raw.burst {
            None => count,
            Some(b) => NonZeroU32::new(b)
                .ok_or_else(|| self.err(&format!("{key}.burst"), "must be at least 1"))?,
        };
        Ok(Some(Rate {
            count,
            period,
            burst,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v() -> Validator<'static> {
        Validator { file: "t.toml" }
    }

    fn raw(rate: &str, burst: Option<u32>, by: Option<&str>) -> RawRate {
        RawRate {
            rate: Some(rate.into()),
            burst,
            by: by.map(Into::into),
        }
    }

    #[test]
    fn rates_parse_and_bad_ones_name_the_key() {
        let r = v()
            .rate("k", raw("600/m", None, None), false)
            .unwrap()
            .unwrap();
        assert_eq!(r.count.get(), 600);
        assert_eq!(r.period, Duration::from_secs(60));
        assert_eq!(r.burst.get(), 600);
        assert_eq!(v().rate("k", raw("off", None, None), false).unwrap(), None);
        for bad in ["20", "0/s", "x/s", "20/d", "-1/s"] {
            let e = v().rate("k", raw(bad, None, None), false).unwrap_err();
            assert!(e.to_string().contains("t.toml: k.rate"), "{e}");
        }
        let e = v().rate("k", raw("1/s", Some(0), None), false).unwrap_err();
        assert!(e.to_string().contains("k.burst"));
        let e = v()
            .rate("k", raw("1/s", None, Some("ip")), false)
            .unwrap_err();
        assert!(e.to_string().contains("k.by"));
    }

    #[test]
    fn route_limits_count_clients_unless_public() {
        let r =
            |by, public| v().route_rate("route[0].rate_limit", Some(raw("5/s", None, by)), public);
        assert_eq!(r(None, false).unwrap().unwrap().by, LimitBy::Client);
        assert_eq!(r(None, true).unwrap().unwrap().by, LimitBy::Ip);
        assert_eq!(r(Some("ip"), false).unwrap().unwrap().by, LimitBy::Ip);
        assert!(r(Some("client"), true).is_err());
        assert!(r(Some("user"), false).is_err());
    }

    #[test]
    fn client_failure_limits_are_validated_and_the_former_name_is_read() {
        let limits = |r: RawRateLimits| v().rate_limits(r).map(|c| c.client_failures);
        let d = limits(RawRateLimits::default()).unwrap();
        assert_eq!(
            (
                d.per_id_and_ip,
                d.per_ip,
                d.window,
                d.backoff,
                d.backoff_max
            ),
            (10, 50, 900, 1, 900)
        );
        let old = limits(RawRateLimits {
            client_failures_per_id: Some(3),
            ..Default::default()
        });
        assert_eq!(old.unwrap().per_id_and_ip, 3);
        let cases = [
            (
                RawRateLimits {
                    client_failures_per_id: Some(3),
                    client_failures_per_id_and_ip: Some(3),
                    ..Default::default()
                },
                "rate_limits.client_failures_per_id: the former name",
            ),
            (
                RawRateLimits {
                    client_failures_per_id_and_ip: Some(0),
                    ..Default::default()
                },
                "rate_limits.client_failures_per_id_and_ip: must be at least 1",
            ),
            (
                RawRateLimits {
                    client_failures_backoff: Some("500ms".into()),
                    ..Default::default()
                },
                "rate_limits.client_failures_backoff: must be at least 1s",
            ),
            (
                RawRateLimits {
                    client_failures_backoff: Some("1h".into()),
                    ..Default::default()
                },
                "rate_limits.client_failures_backoff_max: must not be shorter",
            ),
            (
                RawRateLimits {
                    client_failures_backoff_max: Some("soon".into()),
                    ..Default::default()
                },
                "rate_limits.client_failures_backoff_max: \"soon\" is not a duration",
            ),
        ];
        for (raw, want) in cases {
            let e = limits(raw).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn quota_refills_at_the_rate() {
        let rate = Rate {
            count: NonZeroU32::new(10).unwrap(),
            period: Duration::from_secs(1),
            burst: NonZeroU32::new(3).unwrap(),
        };
        let q = rate.quota();
        assert_eq!(q.burst_size().get(), 3);
        assert_eq!(q.replenish_interval(), Duration::from_millis(100));
    }
}
