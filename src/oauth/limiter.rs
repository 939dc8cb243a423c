//! Login rate limiting on the authorize page (and the account grant): attempts are
//! counted per user name and per client address (IPv6 by /64) in fixed windows. An
//! attempt is counted *before* the password is checked, so parallel requests cannot all
//! slip under the limit; a success takes it back and clears the user's count. Past the
//! limit, attempts are refused with 429 until the window ends (even with the right
//! password, so guessing cannot continue). Memory is bounded: expired windows are dropped
//! when the tables grow, and names longer than 256 bytes are refused before counting.

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

/// Failed client authentications (token, revocation and introspection endpoints), per
/// claimed client id and per address. Unlike logins, an attempt is only checked before
/// (a blocked id or address gets 429 even with the right secret) and counted after it
/// failed, so a client sending many good requests at once is never refused; a flood of
/// parallel guesses gets at most its concurrency past the limit before the count
/// catches up.
pub struct FailureLimiter {
    ids: Table<String>,
    ips: Table<IpAddr>,
    window: i64,
    clock: Clock,
}

impl FailureLimiter {
    /// At most `per_id` failures per client id and `per_ip` per address in `window_secs`.
    pub fn new(per_id: u32, per_ip: u32, window_secs: i64, clock: Clock) -> FailureLimiter {
        FailureLimiter {
            ids: Table::new(per_id),
            ips: Table::new(per_ip),
            window: window_secs,
            clock,
        }
    }

    /// Ids longer than any real one share one entry, so junk cannot grow the table.
    fn key(id: &str) -> String {
        if id.len() > 256 {
            String::new()
        } else {
            id.to_owned()
        }
    }

    /// `Err(seconds to wait)` if this id or address is over the limit.
    pub fn check(&self, id: &str, ip: IpAddr) -> Result<(), i64> {
        let now = (self.clock)();
        let by_id = self.ids.blocked(&Self::key(id), now, self.window);
        let by_ip = self.ips.blocked(&bucket(ip), now, self.window);
        match by_id.max(by_ip) {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Counts a failed authentication.
    pub fn failed(&self, id: &str, ip: IpAddr) {
        let now = (self.clock)();
        self.ids.fail(&Self::key(id), now, self.window);
        self.ips.fail(&bucket(ip), now, self.window);
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

    #[test]
    fn client_failures_are_counted_after_and_checked_before() {
        let now = Arc::new(AtomicI64::new(1000));
        let n = now.clone();
        let l = FailureLimiter::new(2, 3, 60, Arc::new(move || n.load(Ordering::SeqCst)));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        // Checks alone never count.
        for _ in 0..100 {
            assert_eq!(l.check("svc", ip), Ok(()));
        }
        l.failed("svc", ip);
        l.failed("svc", ip);
        assert_eq!(l.check("svc", "10.0.0.9".parse().unwrap()), Err(60));
        assert_eq!(l.check("other", ip), Ok(()));
        l.failed("other", ip);
        assert_eq!(l.check("third", ip), Err(60), "the address is over too");
        now.store(1060, Ordering::SeqCst);
        assert_eq!(l.check("svc", ip), Ok(()));
        l.failed(&"x".repeat(300), ip);
        assert!(l.ids.entries.lock().unwrap().contains_key(""));
    }
}
