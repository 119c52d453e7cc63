//! [`NodeInfo`]: a node's id and address, its descriptor text form `ip:port/base58`, and the seed's helpers
//! (`union`, sort by distance).

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::identity::{DhtId, IdentityError, NodeId};

/// Whether `ip` is loopback, private or link-local: 127/8, 10/8, 172.16/12, 192.168/16, 169.254/16, 100.64/10
/// (carrier-grade NAT), `::1`, `fc00::/7`, `fe80::/10`, or an IPv4-mapped IPv6 form of one of these.
/// [`NetConfig::exempt_local`](crate::config::NetConfig::exempt_local) exempts such addresses from per-IP
/// and per-subnet limits.
pub fn is_local_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_local_ip(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
            }
        },
    }
}

/// Why a node descriptor could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DescriptorError {
    /// No `/` between the address and the key.
    #[error("descriptor {0:?} has no '/' between address and node id (expected ip:port/base58key)")]
    MissingSeparator(String),
    /// The address part is not `ip:port` or `[v6]:port`.
    #[error("descriptor {descriptor:?}: bad address {address:?} (expected ip:port or [v6]:port)")]
    BadAddress {
        /// The whole descriptor.
        descriptor: String,
        /// The address part.
        address: String,
    },
    /// The key part is not a valid base58 secp256k1 public key.
    #[error("descriptor {descriptor:?}: bad node id: {reason}")]
    BadNodeId {
        /// The whole descriptor.
        descriptor: String,
        /// Why the key was rejected.
        reason: String,
    },
}

/// A node: its id and the address it listens on.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct NodeInfo {
    /// The node's public key.
    pub id: NodeId,
    /// Where it accepts connections.
    pub addr: SocketAddr,
}

impl NodeInfo {
    /// Builds a node from its id and address.
    pub fn new(id: NodeId, addr: SocketAddr) -> Self {
        Self { id, addr }
    }

    /// The node's DHT position.
    pub fn dht_id(&self) -> DhtId {
        self.id.dht_id()
    }
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SocketAddr's Display already brackets IPv6: "[::1]:3572".
        write!(f, "{}/{}", self.addr, self.id)
    }
}

impl FromStr for NodeInfo {
    type Err = DescriptorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (address, key) = s
            .rsplit_once('/')
            .ok_or_else(|| DescriptorError::MissingSeparator(s.to_owned()))?;
        let addr: SocketAddr = address.parse().map_err(|_| DescriptorError::BadAddress {
            descriptor: s.to_owned(),
            address: address.to_owned(),
        })?;
        let id: NodeId = key
            .parse()
            .map_err(|e: IdentityError| DescriptorError::BadNodeId {
                descriptor: s.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(NodeInfo { id, addr })
    }
}

/// Combines two node lists without duplicates (by id), keeping the first occurrence and the order.
pub fn union(a: &[NodeInfo], b: &[NodeInfo]) -> Vec<NodeInfo> {
    let mut seen = HashSet::with_capacity(a.len() + b.len());
    a.iter()
        .chain(b.iter())
        .filter(|n| seen.insert(n.id))
        .copied()
        .collect()
}

/// Sorts nodes by XOR distance of their DHT ids to `target`, closest first.
pub fn sort_by_distance(nodes: &mut [NodeInfo], target: &DhtId) {
    nodes.sort_by_cached_key(|n| n.dht_id().distance(target));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    #[test]
    fn local_addresses_are_recognised() {
        for local in [
            "127.0.0.1",
            "127.5.6.7",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.0.9",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_local_ip(local.parse().unwrap()), "{local} is local");
        }
        for public in [
            "8.8.8.8",
            "172.32.0.1",
            "192.169.0.1",
            "100.128.0.1",
            "1.1.1.1",
            "2001:db8::1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_local_ip(public.parse().unwrap()), "{public} is public");
        }
    }

    fn node(port: u16) -> NodeInfo {
        NodeInfo::new(
            Keypair::random().node_id(),
            format!("127.0.0.1:{port}").parse().unwrap(),
        )
    }

    #[test]
    fn descriptor_round_trip_v4_and_v6() {
        let n = node(3572);
        let text = n.to_string();
        assert!(text.starts_with("127.0.0.1:3572/"));
        assert_eq!(text.parse::<NodeInfo>().unwrap(), n);
        let v6 = NodeInfo::new(n.id, "[::1]:3572".parse().unwrap());
        let text = v6.to_string();
        assert!(text.starts_with("[::1]:3572/"), "{text}");
        assert_eq!(text.parse::<NodeInfo>().unwrap(), v6);
    }

    #[test]
    fn descriptor_errors_are_typed() {
        let id = Keypair::random().node_id();
        assert!(matches!(
            "127.0.0.1:1".parse::<NodeInfo>(),
            Err(DescriptorError::MissingSeparator(_))
        ));
        assert!(matches!(
            format!("localhost:1/{id}").parse::<NodeInfo>(),
            Err(DescriptorError::BadAddress { .. })
        ));
        assert!(matches!(
            format!("127.0.0.1/{id}").parse::<NodeInfo>(),
            Err(DescriptorError::BadAddress { .. })
        ));
        assert!(matches!(
            "127.0.0.1:1/notakey0".parse::<NodeInfo>(),
            Err(DescriptorError::BadNodeId { .. })
        ));
        // Base58 of 33 bytes that is not a curve point.
        let not_a_point = bs58::encode([7u8; 33]).into_string();
        assert!(matches!(
            format!("127.0.0.1:1/{not_a_point}").parse::<NodeInfo>(),
            Err(DescriptorError::BadNodeId { .. })
        ));
    }

    #[test]
    fn union_removes_duplicates_and_keeps_order() {
        let (a, b, c) = (node(1), node(2), node(3));
        let u = union(&[a, b], &[b, c, a]);
        assert_eq!(u, vec![a, b, c]);
    }

    #[test]
    fn sort_by_distance_orders_closest_first() {
        let mut nodes: Vec<NodeInfo> = (0..20).map(node).collect();
        let target = nodes[7].dht_id();
        sort_by_distance(&mut nodes, &target);
        assert_eq!(nodes[0].dht_id(), target);
        for w in nodes.windows(2) {
            assert!(w[0].dht_id().distance(&target) <= w[1].dht_id().distance(&target));
        }
    }
}
