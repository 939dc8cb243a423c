//! Open connections per client address (`server.max_connections_per_ip`): one address
//! cannot take every slot of `server.max_connections`. Counted by TCP peer, IPv6 by
//! /64 (one host usually holds the whole prefix); trusted proxies are not counted,
//! since every client behind a balancer arrives from its few addresses. A sharded map
//! (dashmap): connections are accepted on one thread but closed on every worker, and
//! a single lock would serialize the closes.

use std::net::IpAddr;
use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

/// The counts, shared by the accept loop and every connection.
#[derive(Debug)]
pub struct PerIp {
    open: DashMap<IpAddr, u32>,
    max: u32,
}

/// One counted connection; dropping it (the connection, or the tunnel it became,
/// closed) gives the place back.
#[derive(Debug)]
pub struct Hold {
    key: IpAddr,
    table: Arc<PerIp>,
}

impl PerIp {
    /// At most `max` (≥ 1) connections per address.
    pub fn new(max: u32) -> Arc<PerIp> {
        Arc::new(PerIp {
            open: DashMap::new(),
            max: max.max(1),
        })
    }

    /// Counts a connection from `ip`, or `None` when that address has `max` open.
    pub fn try_hold(self: &Arc<Self>, ip: IpAddr) -> Option<Hold> {
        let key = key(ip);
        let mut n = self.open.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        drop(n);
        Some(Hold {
            key,
            table: self.clone(),
        })
    }

    /// Addresses with an open connection (tests, metrics).
    pub fn addresses(&self) -> usize {
        self.open.len()
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Entry::Occupied(mut e) = self.table.open.entry(self.key) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

/// The address counted: IPv4 (also IPv4-mapped IPv6) as is, IPv6 by its /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address_and_gives_places_back() {
        let t = PerIp::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let h1 = t.try_hold(a).unwrap();
        let _h2 = t.try_hold(a).unwrap();
        assert!(t.try_hold(a).is_none());
        let hb = t.try_hold(b).unwrap();
        drop(h1);
        let _h3 = t.try_hold(a).expect("a place came back");
        drop(hb);
        assert_eq!(
            t.addresses(),
            1,
            "an address with nothing open is forgotten"
        );
        // IPv6 hosts count by /64; IPv4-mapped addresses as IPv4.
        let t = PerIp::new(1);
        let _x = t.try_hold("2001:db8::1".parse().unwrap()).unwrap();
        assert!(t.try_hold("2001:db8::ffff:2".parse().unwrap()).is_none());
        let _y = t.try_hold("::ffff:192.0.2.9".parse().unwrap()).unwrap();
        assert!(t.try_hold("192.0.2.9".parse().unwrap()).is_none());
    }
}
