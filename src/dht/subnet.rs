//! Address rules of the DHT: the subnet an address belongs to (for the routing table's and the lookup's
//! per-subnet limits) and whether an address can be dialled at all.
//!
//! - **Subnet:** an IPv4 address counts by its /24, an IPv6 address by its /48; an IPv4-mapped IPv6 address
//!   (`::ffff:a.b.c.d`) counts as the IPv4 address it maps.
//! - **Exempt:** with [`SubnetPolicy::exempt_local`], loopback and private addresses
//!   ([`is_local_ip`]) belong to no subnet, so no limit applies to them (local test networks, where every
//!   node shares 127.0.0.1).
//! - **Routable:** a port other than 0 and an IP that is not unspecified (`0.0.0.0`, `::`), multicast or
//!   the IPv4 broadcast address. Nothing else is judged: a private address is routable.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use crate::peer::is_local_ip;

/// The network an address counts in for per-subnet limits: an IPv4 /24 or an IPv6 /48.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subnet {
    /// The first three octets of an IPv4 address.
    V4([u8; 3]),
    /// The first six bytes (48 bits) of an IPv6 address.
    V6([u8; 6]),
}

impl Subnet {
    /// The subnet of `ip` (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn of(ip: IpAddr) -> Subnet {
        let v4 = match ip {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4,
                None => {
                    let o = v6.octets();
                    return Subnet::V6([o[0], o[1], o[2], o[3], o[4], o[5]]);
                }
            },
        };
        let [a, b, c, _] = v4.octets();
        Subnet::V4([a, b, c])
    }
}

/// Which addresses per-subnet limits apply to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubnetPolicy {
    /// Loopback and private addresses belong to no subnet (no limit applies to them).
    pub exempt_local: bool,
}

impl SubnetPolicy {
    /// The subnet `addr` counts in, or `None` if it is exempt.
    pub fn subnet(&self, addr: &SocketAddr) -> Option<Subnet> {
        let ip = addr.ip();
        (!(self.exempt_local && is_local_ip(ip))).then(|| Subnet::of(ip))
    }
}

/// How many nodes of each subnet a set holds: O(1) checks and updates instead of scans.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubnetCounts(HashMap<Subnet, usize>);

impl SubnetCounts {
    /// Nodes of `subnet` (0 for an exempt node).
    pub fn get(&self, subnet: Option<Subnet>) -> usize {
        subnet.and_then(|s| self.0.get(&s).copied()).unwrap_or(0)
    }

    /// Counts one more node of `subnet` (exempt: nothing).
    pub fn add(&mut self, subnet: Option<Subnet>) {
        if let Some(s) = subnet {
            *self.0.entry(s).or_insert(0) += 1;
        }
    }

    /// Counts one node of `subnet` less (exempt: nothing); a subnet at zero is forgotten.
    pub fn remove(&mut self, subnet: Option<Subnet>) {
        if let Some(s) = subnet
            && let std::collections::hash_map::Entry::Occupied(mut e) = self.0.entry(s)
        {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }

    /// Every subnet with at least one node, and its count.
    pub fn iter(&self) -> impl Iterator<Item = (Subnet, usize)> + '_ {
        self.0.iter().map(|(s, n)| (*s, *n))
    }
}

/// Whether a node could be listening at `addr`: port not 0; IP not unspecified, multicast or the IPv4
/// broadcast address (checked on the IPv4 form of an IPv4-mapped address too).
pub fn is_routable(addr: &SocketAddr) -> bool {
    let ip = match addr.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let bad_ip = match ip {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    };
    addr.port() != 0 && !bad_ip
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn subnets_are_ipv4_24_and_ipv6_48_and_mapped_counts_as_ipv4() {
        let of = |t: &str| Subnet::of(sa(t).ip());
        assert_eq!(of("1.2.3.4:1"), Subnet::V4([1, 2, 3]));
        assert_eq!(of("1.2.3.200:9"), of("1.2.3.4:1"));
        assert_ne!(of("1.2.4.4:1"), of("1.2.3.4:1"));
        assert_eq!(of("[::ffff:1.2.3.9]:1"), Subnet::V4([1, 2, 3]));
        assert_eq!(of("[2001:db8:1::1]:1"), of("[2001:db8:1:ffff::2]:1"));
        assert_ne!(of("[2001:db8:1::1]:1"), of("[2001:db8:2::1]:1"));
    }

    #[test]
    fn exempt_local_only_when_asked() {
        let strict = SubnetPolicy::default();
        let lenient = SubnetPolicy { exempt_local: true };
        for local in ["127.0.0.1:1", "10.1.2.3:1", "192.168.0.1:1", "[::1]:1"] {
            assert!(strict.subnet(&sa(local)).is_some(), "{local}");
            assert_eq!(lenient.subnet(&sa(local)), None, "{local}");
        }
        assert!(lenient.subnet(&sa("8.8.8.8:1")).is_some());
    }

    #[test]
    fn counts_go_up_and_down_and_forget_zero() {
        let mut c = SubnetCounts::default();
        let s = Some(Subnet::V4([1, 2, 3]));
        c.add(s);
        c.add(s);
        c.add(None);
        assert_eq!(c.get(s), 2);
        assert_eq!(c.get(None), 0);
        c.remove(s);
        c.remove(s);
        c.remove(s);
        assert_eq!(c.get(s), 0);
        assert_eq!(c.iter().count(), 0);
    }

    #[test]
    fn routable_addresses() {
        for ok in ["1.2.3.4:1", "127.0.0.1:7513", "[::1]:5", "10.0.0.1:80"] {
            assert!(is_routable(&sa(ok)), "{ok}");
        }
        for bad in [
            "1.2.3.4:0",
            "0.0.0.0:1",
            "[::]:1",
            "224.0.0.1:1",
            "255.255.255.255:1",
            "[ff02::1]:1",
            "[::ffff:0.0.0.0]:1",
            "[::ffff:239.1.1.1]:1",
        ] {
            assert!(!is_routable(&sa(bad)), "{bad}");
        }
    }
}
