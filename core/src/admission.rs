//! Admission of new TCP connections: how many are open in total and from each peer address.
//!
//! [`ConnectionTable`] is only the counting. It takes no lock and reads no clock; a runtime shares
//! one table between its workers (behind a mutex) and asks it at accept time, before it allocates
//! anything for the connection, then releases the address when the connection closes.
//! A refused connection is closed at once and never reaches the engine.

use std::collections::HashMap;
use std::net::IpAddr;

/// How many TCP connections (on every listener together) may be open at once. `0` = unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open in total.
    pub max_connections: u32,
    /// Connections open from one peer address (IPv4-mapped IPv6 counts as the IPv4 address).
    pub max_connections_per_ip: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 20_000,
            max_connections_per_ip: 1_000,
        }
    }
}

/// Why a connection was refused: which limit it would have passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// `limit` connections are open in total.
    Total {
        /// The limit reached.
        limit: u32,
    },
    /// `limit` connections are open from `ip`.
    PerIp {
        /// The peer address as counted: an IPv4 address, or the /64 prefix of an IPv6 one.
        ip: IpAddr,
        /// The limit reached.
        limit: u32,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Total { limit } => write!(
                f,
                "admission: the server has reached limits.max_connections = {limit}"
            ),
            Refusal::PerIp { ip, limit } => {
                let prefix = if ip.is_ipv6() { "/64" } else { "" };
                write!(
                    f,
                    "admission: {ip}{prefix} has reached limits.max_connections_per_ip = {limit}"
                )
            }
        }
    }
}

impl std::error::Error for Refusal {}

/// Open connections, in total and per peer address, against [`ConnectionLimits`].
///
/// Every [`admit`](Self::admit) that succeeds must be matched by one [`release`](Self::release)
/// of the same address. An address is forgotten when its count falls to zero, so the table holds
/// at most one entry per open connection. With no per-address limit, addresses are not tracked.
#[derive(Clone, Debug, Default)]
pub struct ConnectionTable {
    limits: ConnectionLimits,
    total: u32,
    per_ip: HashMap<IpAddr, u32>,
    /// Connections admitted while addresses were not tracked (no per-address limit), still
    /// open after a limit was set: their release finds no entry.
    untracked: u32,
}

/// What one client is counted as: an IPv4 address (also when written IPv4-mapped), or the /64
/// prefix of an IPv6 address, since one IPv6 host usually holds a whole /64 and could otherwise
/// pick a fresh address for every connection.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

/// A configured limit, with `0` (unlimited) as the largest count.
fn effective(limit: u32) -> u32 {
    if limit == 0 {
        u32::MAX
    } else {
        limit
    }
}

impl ConnectionTable {
    /// An empty table enforcing `limits`.
    pub fn new(limits: ConnectionLimits) -> Self {
        ConnectionTable {
            limits,
            total: 0,
            per_ip: HashMap::new(),
            untracked: 0,
        }
    }

    /// Enforces `limits` from now on (a config reload): connections open stay, new ones are
    /// admitted against the new limits. Setting a per-address limit starts counting addresses
    /// with the connections that come next.
    pub fn set_limits(&mut self, limits: ConnectionLimits) {
        let tracked_before = self.limits.max_connections_per_ip != 0;
        let tracked_now = limits.max_connections_per_ip != 0;
        if tracked_before && !tracked_now {
            self.per_ip.clear();
            self.untracked = 0;
        } else if !tracked_before && tracked_now {
            self.untracked = self.total;
        }
        self.limits = limits;
    }

    /// The limits enforced.
    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    /// Counts a new connection from `ip`, or says which limit refuses it (nothing is counted then).
    pub fn admit(&mut self, ip: IpAddr) -> Result<(), Refusal> {
        let ip = client_key(ip);
        let per_ip_limit = self.limits.max_connections_per_ip;
        if per_ip_limit != 0 && self.count(ip) >= per_ip_limit {
            return Err(Refusal::PerIp {
                ip,
                limit: per_ip_limit,
            });
        }
        if self.total >= effective(self.limits.max_connections) {
            return Err(Refusal::Total {
                limit: effective(self.limits.max_connections),
            });
        }
        self.total += 1;
        if per_ip_limit != 0 {
            *self.per_ip.entry(ip).or_insert(0) += 1;
        }
        Ok(())
    }

    /// Forgets one connection from `ip`. Returns false (and changes nothing) when no connection
    /// from `ip` was admitted.
    pub fn release(&mut self, ip: IpAddr) -> bool {
        let ip = client_key(ip);
        if self.limits.max_connections_per_ip != 0 {
            match self.per_ip.get_mut(&ip) {
                Some(n) => {
                    *n -= 1; // entries are removed at zero, so a present count is at least 1
                    if *n == 0 {
                        self.per_ip.remove(&ip);
                    }
                }
                None if self.untracked > 0 => self.untracked -= 1,
                None => return false,
            }
        }
        match self.total.checked_sub(1) {
            Some(t) => {
                self.total = t;
                true
            }
            None => false,
        }
    }

    /// Connections open in total.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// Connections open from `ip` (0 when addresses are not tracked: no per-address limit).
    pub fn count(&self, ip: IpAddr) -> u32 {
        self.per_ip.get(&client_key(ip)).copied().unwrap_or(0)
    }

    /// Addresses with at least one open connection (0 when addresses are not tracked).
    pub fn tracked_ips(&self) -> usize {
        self.per_ip.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    fn table(total: u32, per_ip: u32) -> ConnectionTable {
        ConnectionTable::new(ConnectionLimits {
            max_connections: total,
            max_connections_per_ip: per_ip,
        })
    }

    #[test]
    fn per_ip_limit_refuses_only_that_address() {
        let mut t = table(0, 2);
        assert_eq!(t.admit(ip(1)), Ok(()));
        assert_eq!(t.admit(ip(1)), Ok(()));
        let refused = t.admit(ip(1)).unwrap_err();
        assert_eq!(
            refused,
            Refusal::PerIp {
                ip: ip(1),
                limit: 2
            }
        );
        assert_eq!(
            refused.to_string(),
            "admission: 10.0.0.1 has reached limits.max_connections_per_ip = 2"
        );
        assert_eq!(t.admit(ip(2)), Ok(()));
        assert_eq!((t.total(), t.count(ip(1)), t.count(ip(2))), (3, 2, 1));
        assert!(t.release(ip(1)));
        assert_eq!(t.admit(ip(1)), Ok(()));
    }

    #[test]
    fn total_limit_counts_every_address() {
        let mut t = table(3, 0);
        for i in 1..=3 {
            assert_eq!(t.admit(ip(i)), Ok(()));
        }
        let refused = t.admit(ip(4)).unwrap_err();
        assert_eq!(refused, Refusal::Total { limit: 3 });
        assert!(refused.to_string().ends_with("limits.max_connections = 3"));
        assert!(t.release(ip(2)));
        assert_eq!(t.admit(ip(4)), Ok(()));
        assert_eq!(t.total(), 3);
    }

    #[test]
    fn new_limits_apply_to_new_connections_and_the_counts_stay_right() {
        // Lowered below what is open: nothing closes, new ones wait until it is below.
        let mut t = table(0, 0);
        for i in 1..=3 {
            t.admit(ip(i)).unwrap();
        }
        t.set_limits(ConnectionLimits {
            max_connections: 2,
            max_connections_per_ip: 1,
        });
        assert_eq!(t.total(), 3);
        assert_eq!(t.admit(ip(9)), Err(Refusal::Total { limit: 2 }));
        // Those admitted before addresses were counted release cleanly.
        for i in 1..=2 {
            assert!(t.release(ip(i)));
        }
        assert_eq!(t.admit(ip(9)), Ok(()));
        assert_eq!(
            t.admit(ip(9)).unwrap_err(),
            Refusal::PerIp {
                ip: ip(9),
                limit: 1
            }
        );
        assert!(t.release(ip(3)));
        assert!(t.release(ip(9)));
        assert_eq!((t.total(), t.tracked_ips()), (0, 0));
        assert!(!t.release(ip(9)), "nothing left to release");
        // Per-address counting off again: the table forgets addresses.
        t.admit(ip(4)).unwrap();
        t.set_limits(ConnectionLimits {
            max_connections: 0,
            max_connections_per_ip: 0,
        });
        assert_eq!(t.tracked_ips(), 0);
        assert!(t.release(ip(4)));
        assert_eq!(t.total(), 0);
    }

    #[test]
    fn entries_are_removed_at_zero() {
        let mut t = table(10, 5);
        t.admit(ip(1)).unwrap();
        t.admit(ip(1)).unwrap();
        t.admit(ip(2)).unwrap();
        assert_eq!(t.tracked_ips(), 2);
        t.release(ip(1));
        assert_eq!(t.tracked_ips(), 2);
        t.release(ip(1));
        t.release(ip(2));
        assert_eq!((t.tracked_ips(), t.total()), (0, 0));
    }

    #[test]
    fn release_without_admit_changes_nothing() {
        let mut t = table(10, 5);
        assert!(!t.release(ip(1)));
        t.admit(ip(1)).unwrap();
        assert!(!t.release(ip(2)));
        assert_eq!((t.total(), t.count(ip(1))), (1, 1));
        let mut unlimited = table(0, 0);
        assert!(!unlimited.release(ip(1)));
        assert_eq!(unlimited.total(), 0);
    }

    #[test]
    fn zero_means_unlimited() {
        let mut t = table(0, 0);
        for i in 0..5000u32 {
            assert_eq!(t.admit(ip((i % 3) as u8)), Ok(()));
        }
        assert_eq!(t.total(), 5000);
        // No per-address limit: addresses are not tracked at all.
        assert_eq!(t.tracked_ips(), 0);
        for i in 0..5000u32 {
            assert!(t.release(ip((i % 3) as u8)));
        }
        assert_eq!(t.total(), 0);
    }

    #[test]
    fn ipv4_mapped_ipv6_is_the_ipv4_address() {
        let mut t = table(0, 1);
        t.admit(ip(7)).unwrap();
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 7).to_ipv6_mapped());
        assert_eq!(
            t.admit(mapped),
            Err(Refusal::PerIp {
                ip: ip(7),
                limit: 1
            })
        );
        assert!(t.release(mapped));
        assert_eq!(t.tracked_ips(), 0);
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        t.admit(v6).unwrap();
        assert_eq!(t.count(v6), 1);
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_prefix() {
        let mut t = table(0, 2);
        let host = |low: u64| {
            IpAddr::V6(Ipv6Addr::from(
                (0x2001_0db8_0000_0001u128 << 64) | u128::from(low),
            ))
        };
        t.admit(host(1)).unwrap();
        t.admit(host(2)).unwrap();
        let refused = t.admit(host(3)).unwrap_err();
        assert!(
            refused.to_string().contains("2001:db8:0:1::/64"),
            "{refused}"
        );
        // Another /64 is another client.
        let other = IpAddr::V6(Ipv6Addr::from(0x2001_0db8_0000_0002u128 << 64));
        t.admit(other).unwrap();
        assert!(t.release(host(2)));
        t.admit(host(9)).unwrap();
        assert!(t.release(host(1)) && t.release(host(9)) && t.release(other));
        assert_eq!(t.tracked_ips(), 0);
    }

    #[test]
    fn defaults() {
        let l = ConnectionLimits::default();
        assert_eq!(
            (l.max_connections, l.max_connections_per_ip),
            (20_000, 1_000)
        );
    }

    #[derive(Clone, Debug)]
    enum Op {
        Admit(u8),
        /// Releases the admitted connection at this index (modulo how many are open).
        Release(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..6).prop_map(Op::Admit),
            any::<usize>().prop_map(Op::Release)
        ]
    }

    proptest! {
        #[test]
        fn counts_stay_within_limits_and_the_table_empties(
            total in 0u32..8,
            per_ip in 0u32..4,
            ops in proptest::collection::vec(op(), 0..200),
        ) {
            let mut t = table(total, per_ip);
            let mut open: Vec<IpAddr> = Vec::new();
            for op in ops {
                match op {
                    Op::Admit(i) => {
                        let a = ip(i);
                        let from_a = open.iter().filter(|x| **x == a).count() as u32;
                        let expect_ok = (per_ip == 0 || from_a < per_ip)
                            && (total == 0 || (open.len() as u32) < total);
                        let got = t.admit(a);
                        prop_assert_eq!(got.is_ok(), expect_ok, "{:?}", got);
                        if got.is_ok() {
                            open.push(a);
                        }
                    }
                    Op::Release(k) => {
                        if !open.is_empty() {
                            let a = open.swap_remove(k % open.len());
                            prop_assert!(t.release(a));
                        }
                    }
                }
                prop_assert_eq!(t.total() as usize, open.len());
                if total != 0 {
                    prop_assert!(t.total() <= total);
                }
                for i in 0..6u8 {
                    let n = open.iter().filter(|x| **x == ip(i)).count() as u32;
                    if per_ip != 0 {
                        prop_assert_eq!(t.count(ip(i)), n);
                        prop_assert!(n <= per_ip);
                    }
                }
                prop_assert!(t.tracked_ips() <= open.len());
            }
            for a in open.drain(..) {
                prop_assert!(t.release(a));
            }
            prop_assert_eq!(t.total(), 0);
            prop_assert_eq!(t.tracked_ips(), 0);
        }
    }
}
