//! Login rate limiting on the authorize page: failed attempts are counted per user name
//! and per client IP in fixed windows; past the limit, logins are refused with 429 until
//! the window ends (even with the right password, so guessing cannot continue). A
//! successful login clears the user's count. Memory is bounded: expired windows are
//! dropped when the tables grow.

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

    fn clear(&self, key: &K) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
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

    /// Seconds to wait, if this user or address may not try now.
    pub fn check(&self, user: &str, ip: IpAddr) -> Option<i64> {
        let now = (self.clock)();
        let u = self.users.blocked(&user.to_owned(), now, self.window);
        let i = self.ips.blocked(&ip, now, self.window);
        u.max(i)
    }

    /// Records a failed attempt.
    pub fn failed(&self, user: &str, ip: IpAddr) {
        let now = (self.clock)();
        self.users.fail(&user.to_owned(), now, self.window);
        self.ips.fail(&ip, now, self.window);
    }

    /// Records a successful login.
    pub fn succeeded(&self, user: &str) {
        self.users.clear(&user.to_owned());
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
            assert_eq!(l.check("alice", ip), None);
            l.failed("alice", ip);
        }
        assert_eq!(
            l.check("alice", other),
            Some(60),
            "per user, from any address"
        );
        assert_eq!(l.check("bob", ip), None);
        l.failed("bob", ip);
        l.failed("carol", ip);
        assert_eq!(l.check("dave", ip), Some(60), "per address, for any user");
        now.store(1060, Ordering::SeqCst);
        assert_eq!(l.check("alice", other), None, "window over");
        l.failed("erin", other);
        l.succeeded("erin");
        assert_eq!(
            l.users
                .entries
                .lock()
                .unwrap()
                .get("erin")
                .map(|w| w.failures),
            None
        );
    }
}
