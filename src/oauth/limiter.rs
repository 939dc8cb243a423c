//! Rate limiting of guesses. Logins on the authorize page (and the account grant):
//! attempts are counted per user name and per client address (IPv6 by /64) in fixed
//! windows. An attempt is counted *before* the password is checked, so parallel requests
//! cannot all slip under the limit; a success takes it back and clears the user's count.
//! Past the limit, attempts are refused with 429 until the window ends (even with the
//! right password, so guessing cannot continue). Client secrets: [`FailureLimiter`],
//! per client id *and* address with a doubling wait. Memory is bounded: expired entries
//! are dropped when the tables grow, and names longer than 256 bytes share one entry or
//! are refused before counting.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use super::Clock;

/// Most entries kept per table before expired ones are swept.
const SWEEP_AT: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    failures: u32,
}

struct Table<K> {
    entries: Mutex<HashMap<K, Window>>,
    max: u32,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(max: u32) -> Table<K> {
        Table {
            entries: Mutex::new(HashMap::new()),
            max,
        }
    }

    /// Seconds until `key` may try again, if it is over the limit.
    fn blocked(&self, key: &K, now: i64, window: i64) -> Option<i64> {
        let map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let w = map.get(key)?;
        let left = w.start + window - now;
        (left > 0 && w.failures >= self.max).then_some(left)
    }

    fn fail(&self, key: &K, now: i64, window: i64) {
        let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= SWEEP_AT {
            map.retain(|_, w| w.start + window > now);
        }
        let w = map.entry(key.clone()).or_insert(Window {
            start: now,
            failures: 0,
        });
        if w.start + window <= now {
            *w = Window {
                start: now,
                failures: 0,
            };
        }
        w.failures += 1;
    }

    fn undo(&self, key: &K) {
        let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(w) = map.get_mut(key) {
            w.failures = w.failures.saturating_sub(1);
        }
    }

    fn clear(&self, key: &K) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

/// The address an attempt is counted under: IPv4 as is, IPv6 by its /64 (one host
/// usually holds a whole /64).
pub fn bucket(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Failed-login counters.
pub struct LoginLimiter {
    users: Table<String>,
    ips: Table<IpAddr>,
    window: i64,
    clock: Clock,
}

impl LoginLimiter {
    /// At most `per_user` failures per user name and `per_ip` per address in `window_secs`.
    pub fn new(per_user: u32, per_ip: u32, window_secs: i64, clock: Clock) -> LoginLimiter {
        LoginLimiter {
            users: Table::new(per_user),
            ips: Table::new(per_ip),
            window: window_secs,
            clock,
        }
    }

    /// Starts an attempt: `Err(seconds to wait)` if this user or address is over the
    /// limit; otherwise the attempt is counted now (see [`LoginLimiter::succeeded`]).
    pub fn attempt(&self, user: &str, ip: IpAddr) -> Result<(), i64> {
        let now = (self.clock)();
        let ip = bucket(ip);
        let key = user.to_owned();
        let u = self.users.blocked(&key, now, self.window);
        let i = self.ips.blocked(&ip, now, self.window);
        if let Some(wait) = u.max(i) {
            return Err(wait);
        }
        self.users.fail(&key, now, self.window);
        self.ips.fail(&ip, now, self.window);
        Ok(())
    }

    /// The attempt succeeded: the user's count is cleared and the address's attempt
    /// taken back.
    pub fn succeeded(&self, user: &str, ip: IpAddr) {
        self.users.clear(&user.to_owned());
        self.ips.undo(&bucket(ip));
    }
}

/// How client authentication failures are limited (`[rate_limits] client_failures_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicy {
    /// Failures of one client id from one address before that pair must wait.
    pub per_id_and_ip: u32,
    /// Failures from one address (any client id) per `window`; past it, the address
    /// waits until the window ends.
    pub per_ip: u32,
    /// The per-address counting window; also how long a pair's count is remembered
    /// after its last wait ended.
    pub window: i64,
    /// The first wait of a pair, in seconds; it doubles with each further failure.
    pub backoff: i64,
    /// The longest wait of a pair, in seconds.
    pub backoff_max: i64,
}

/// One (client id, address) pair's failures.
#[derive(Debug, Clone, Copy)]
struct Strikes {
    failures: u32,
    /// Until when the pair is refused (unix seconds); in the past when it may try.
    until: i64,
}

/// Failed client authentications (token, revocation and introspection endpoints).
///
/// Failures are counted per (claimed client id, address) pair, not per client id: a
/// wrong secret sent from one address must not lock the client out everywhere (anyone
/// who knows a client id could otherwise deny it service). After
/// [`FailurePolicy::per_id_and_ip`] failures the pair waits [`FailurePolicy::backoff`],
/// twice as long after each further failure, up to [`FailurePolicy::backoff_max`]; a
/// success from that address clears the pair. The per-address count (any client id,
/// fixed window) stays, so one address cannot guess many clients' secrets either.
///
/// Unlike logins, an attempt is only checked before (a waiting pair or address gets 429
/// even with the right secret) and counted after it failed, so a client sending many
/// good requests at once is never refused; a flood of parallel guesses gets at most its
/// concurrency past the limit before the count catches up. Attempts refused while
/// waiting are not counted: the wait grows with failed secrets only.
pub struct FailureLimiter {
    pairs: Mutex<HashMap<(String, IpAddr), Strikes>>,
    ips: Table<IpAddr>,
    policy: FailurePolicy,
    clock: Clock,
}

impl FailureLimiter {
    /// A limiter following `policy`.
    pub fn new(policy: FailurePolicy, clock: Clock) -> FailureLimiter {
        FailureLimiter {
            pairs: Mutex::new(HashMap::new()),
            ips: Table::new(policy.per_ip),
            policy,
            clock,
        }
    }

    /// Ids longer than any real one share one entry, so junk cannot grow the table.
    fn key(id: &str, ip: IpAddr) -> (String, IpAddr) {
        let id = if id.len() > 256 { "" } else { id };
        (id.to_owned(), bucket(ip))
    }

    /// Whether a pair's count is forgotten at `now`: its wait ended a window ago.
    fn forgotten(&self, s: &Strikes, now: i64) -> bool {
        s.until.saturating_add(self.policy.window) <= now
    }

    /// `Err(seconds to wait)` if this id from this address, or this address, must wait.
    pub fn check(&self, id: &str, ip: IpAddr) -> Result<(), i64> {
        let now = (self.clock)();
        let by_pair = {
            let pairs = self.pairs.lock().unwrap_or_else(PoisonError::into_inner);
            pairs
                .get(&Self::key(id, ip))
                .map(|s| s.until - now)
                .filter(|left| *left > 0)
        };
        let by_ip = self.ips.blocked(&bucket(ip), now, self.policy.window);
        match by_pair.max(by_ip) {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Counts a failed authentication; returns how long the pair must now wait (0: it
    /// may try again at once).
    pub fn failed(&self, id: &str, ip: IpAddr) -> i64 {
        let now = (self.clock)();
        self.ips.fail(&bucket(ip), now, self.policy.window);
        let mut pairs = self.pairs.lock().unwrap_or_else(PoisonError::into_inner);
        if pairs.len() >= SWEEP_AT {
            pairs.retain(|_, s| !self.forgotten(s, now));
        }
        let s = pairs.entry(Self::key(id, ip)).or_insert(Strikes {
            failures: 0,
            until: now,
        });
        if self.forgotten(s, now) {
            s.failures = 0;
        }
        s.failures = s.failures.saturating_add(1);
        let wait = self.wait_after(s.failures);
        s.until = now.saturating_add(wait);
        wait
    }

    /// The wait after the `failures`-th failure of a pair.
    fn wait_after(&self, failures: u32) -> i64 {
        let p = &self.policy;
        let Some(over) = failures.checked_sub(p.per_id_and_ip) else {
            return 0;
        };
        // backoff × 2^over, without overflow: past 2^40 the cap has long been reached.
        let factor = 1i64 << over.min(40);
        p.backoff.saturating_mul(factor).min(p.backoff_max)
    }

    /// The client authenticated from this address: its pair starts over. (The
    /// address's count stays: it counts guesses at any client.)
    pub fn succeeded(&self, id: &str, ip: IpAddr) {
        let mut pairs = self.pairs.lock().unwrap_or_else(PoisonError::into_inner);
        // The usual case: nothing to clear, and no key to build.
        if !pairs.is_empty() {
            pairs.remove(&Self::key(id, ip));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    #[test]
    fn limits_per_user_and_per_ip_and_recovers_after_the_window() {
        let now = Arc::new(AtomicI64::new(1000));
        let n = now.clone();
        let l = LoginLimiter::new(3, 5, 60, Arc::new(move || n.load(Ordering::SeqCst)));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(l.attempt("alice", ip), Ok(()));
        }
        assert_eq!(
            l.attempt("alice", other),
            Err(60),
            "per user, from any address"
        );
        assert_eq!(l.attempt("bob", ip), Ok(()));
        assert_eq!(l.attempt("carol", ip), Ok(()));
        assert_eq!(
            l.attempt("dave", ip),
            Err(60),
            "per address (5 counted), for any user"
        );
        now.store(1060, Ordering::SeqCst);
        assert_eq!(l.attempt("alice", other), Ok(()), "window over");
        assert_eq!(l.attempt("erin", other), Ok(()));
        l.succeeded("erin", other);
        assert_eq!(
            l.users
                .entries
                .lock()
                .unwrap()
                .get("erin")
                .map(|w| w.failures),
            None
        );
        assert_eq!(
            l.ips.entries.lock().unwrap()[&other].failures,
            1,
            "erin's attempt taken back"
        );
        // One /64 is one bucket.
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        for i in 0..5 {
            assert_eq!(
                l.attempt(&format!("u{i}"), if i % 2 == 0 { a } else { b }),
                Ok(())
            );
        }
        assert!(l.attempt("u9", b).is_err());
    }

    fn failures(policy: FailurePolicy) -> (FailureLimiter, Arc<AtomicI64>) {
        let now = Arc::new(AtomicI64::new(1000));
        let n = now.clone();
        let l = FailureLimiter::new(policy, Arc::new(move || n.load(Ordering::SeqCst)));
        (l, now)
    }

    const POLICY: FailurePolicy = FailurePolicy {
        per_id_and_ip: 2,
        per_ip: 100,
        window: 60,
        backoff: 1,
        backoff_max: 30,
    };

    #[test]
    fn client_failures_are_counted_after_and_checked_before() {
        let (l, now) = failures(POLICY);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        // Checks alone never count.
        for _ in 0..100 {
            assert_eq!(l.check("svc", ip), Ok(()));
        }
        assert_eq!(l.failed("svc", ip), 0);
        assert_eq!(l.check("svc", ip), Ok(()), "one failure is free");
        assert_eq!(l.failed("svc", ip), 1);
        assert_eq!(l.check("svc", ip), Err(1), "even the right secret waits");
        assert_eq!(
            l.check("svc", "10.0.0.9".parse().unwrap()),
            Ok(()),
            "elsewhere: no"
        );
        assert_eq!(l.check("other", ip), Ok(()), "another client from here: no");
        now.store(1001, Ordering::SeqCst);
        assert_eq!(l.check("svc", ip), Ok(()));
        l.failed(&"x".repeat(300), ip);
        assert!(l.pairs.lock().unwrap().contains_key(&(String::new(), ip)));
    }

    #[test]
    fn waits_double_up_to_the_cap_and_a_success_or_a_quiet_window_clears_them() {
        let (l, now) = failures(POLICY);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut waits = Vec::new();
        for _ in 0..9 {
            let wait = l.failed("svc", ip);
            if wait > 0 {
                assert_eq!(l.check("svc", ip), Err(wait));
            }
            waits.push(wait);
            now.fetch_add(wait, Ordering::SeqCst);
        }
        assert_eq!(waits, [0, 1, 2, 4, 8, 16, 30, 30, 30]);
        // A success from the address starts the pair over.
        l.succeeded("svc", ip);
        assert_eq!(l.failed("svc", ip), 0);
        assert_eq!(l.failed("svc", ip), 1);
        // So does a window without failures after the wait ended.
        now.fetch_add(1 + 60, Ordering::SeqCst);
        assert_eq!(l.failed("svc", ip), 0);
        // One /64 is one address.
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        l.failed("svc", a);
        assert_eq!(l.failed("svc", b), 1);
    }

    #[test]
    fn the_per_address_limit_stays() {
        let (l, now) = failures(FailurePolicy {
            per_ip: 3,
            ..POLICY
        });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for id in ["a", "b", "c"] {
            l.failed(id, ip);
        }
        assert_eq!(l.check("d", ip), Err(60), "three ids from one address");
        assert_eq!(l.check("d", "10.0.0.2".parse().unwrap()), Ok(()));
        now.fetch_add(60, Ordering::SeqCst);
        assert_eq!(l.check("d", ip), Ok(()), "window over");
    }
}
