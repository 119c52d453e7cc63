//! One simulated node as the router sees it: its address, online flag, partition group, fault,
//! adversary role, and its connections (one [`Conn`] per peer, each with the outbound [`Link`] queue once
//! used).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::adversary::Forgery;
use super::config::Fault;
use super::link::Link;
use crate::config::Config;
use crate::peer::NodeInfo;
use crate::transport::{InboundHandler, PeerEvent};

/// The port of every simulated node.
pub const SIM_PORT: u16 = 7513;
/// Most nodes a simulated network can hold: one /24 subnet each inside 127.0.0.0/8.
pub const MAX_SIM_NODES: u32 = 65_535;

/// The synthetic address number `index` (the `index`-th node started without a chosen address):
/// `127.a.b.1:7513` where `a.b` is `index + 1` written in base 256 (127.0.1.1, 127.0.2.1, ...,
/// 127.255.255.1), so every node has a /24 of its own, as honest nodes spread over the internet do; `None`
/// from index [`MAX_SIM_NODES`] on.
pub fn address_of(index: u32) -> Option<SocketAddr> {
    let n = index.checked_add(1).filter(|&n| n <= MAX_SIM_NODES)?;
    let [_, _, a, b] = n.to_be_bytes();
    Some(SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::new(127, a, b, 1),
        SIM_PORT,
    )))
}

/// The synthetic address number of `addr` (the inverse of [`address_of`]).
pub fn index_of(addr: &SocketAddr) -> Option<u32> {
    let SocketAddr::V4(v4) = addr else {
        return None;
    };
    let [net, a, b, host] = v4.ip().octets();
    if v4.port() != SIM_PORT || net != 127 || host != 1 {
        return None;
    }
    let n = u32::from(u16::from_be_bytes([a, b]));
    n.checked_sub(1)
}

/// A connection to one peer, seen from one side.
pub(crate) struct Conn {
    /// Our outbound queue to the peer, created by the first message we send on this connection.
    pub(crate) link: Option<Arc<Link>>,
}

/// What the router takes from a node's [`Config`].
#[derive(Clone, Debug)]
pub(crate) struct NodeSettings {
    /// Largest envelope accepted, as in the TCP transport (sealed size).
    pub(crate) max_frame_len: usize,
    /// The client version the node's envelopes carry (forged answers carry it too).
    pub(crate) client_version: String,
}

impl NodeSettings {
    pub(crate) fn of(config: &Config) -> Self {
        Self {
            max_frame_len: config.net.max_frame_len,
            client_version: config.client_version.clone(),
        }
    }
}

/// The router's view of one node.
pub(crate) struct SimNode {
    /// Order of arrival in the network (never reused); keys the per-link latency.
    pub(crate) index: u32,
    /// Id and address.
    pub(crate) info: NodeInfo,
    /// The node's Swarm.
    handler: Weak<dyn InboundHandler>,
    /// Limits and envelope fields from the node's config.
    pub(crate) settings: NodeSettings,
    /// Reachable at all (not offline).
    online: AtomicBool,
    /// Set by shutdown (a cheap mirror of `cancel`, read on every send).
    shut_down: AtomicBool,
    /// Partition group; only nodes of the same group reach each other (0 = not partitioned).
    group: AtomicU32,
    /// The node's [`Fault`].
    fault: AtomicU8,
    /// The node's adversary role ([`Forgery::code`]; 0 = honest).
    adversary: AtomicU8,
    /// Bumped by every fault change; a scheduled disconnect only fires if it is unchanged.
    fault_generation: AtomicU64,
    /// When a scheduled [`Fault::Disconnect`] takes the node offline.
    disconnect_at: Mutex<Option<Instant>>,
    /// Connections by peer index (a `BTreeMap`, so iteration order is deterministic).
    conns: Mutex<BTreeMap<u32, Conn>>,
    /// Cancelled when the node's transport shuts down.
    pub(crate) cancel: CancellationToken,
    /// The node's link tasks, joined on shutdown.
    pub(crate) tasks: TaskTracker,
}

impl SimNode {
    pub(crate) fn new(
        index: u32,
        info: NodeInfo,
        handler: Weak<dyn InboundHandler>,
        settings: NodeSettings,
    ) -> Self {
        Self {
            index,
            info,
            handler,
            settings,
            online: AtomicBool::new(true),
            shut_down: AtomicBool::new(false),
            group: AtomicU32::new(0),
            fault: AtomicU8::new(Fault::None.to_u8()),
            adversary: AtomicU8::new(0),
            fault_generation: AtomicU64::new(0),
            disconnect_at: Mutex::new(None),
            conns: Mutex::new(BTreeMap::new()),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// The node's Swarm, unless it is gone.
    pub(crate) fn handler(&self) -> Option<Arc<dyn InboundHandler>> {
        self.handler.upgrade()
    }

    /// Reports a connection event to the node's Swarm.
    pub(crate) fn event(&self, event: PeerEvent) {
        if let Some(h) = self.handler() {
            h.peer_event(event);
        }
    }

    /// True once the transport shut down.
    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    /// Marks the node shut down and offline for good, and cancels its tasks.
    pub(crate) fn mark_shut_down(&self) {
        self.shut_down.store(true, Ordering::Release);
        self.set_online(false);
        self.cancel.cancel();
    }

    pub(crate) fn is_online(&self) -> bool {
        self.online.load(Ordering::Acquire)
    }

    pub(crate) fn set_online(&self, online: bool) {
        self.online.store(online, Ordering::Release);
    }

    pub(crate) fn group(&self) -> u32 {
        self.group.load(Ordering::Acquire)
    }

    pub(crate) fn set_group(&self, group: u32) {
        self.group.store(group, Ordering::Release);
    }

    pub(crate) fn fault(&self) -> Fault {
        Fault::from_u8(self.fault.load(Ordering::Acquire))
    }

    /// Sets the fault, cancels any scheduled disconnect and returns the new fault generation.
    pub(crate) fn set_fault(&self, fault: Fault) -> u64 {
        self.fault.store(fault.to_u8(), Ordering::Release);
        *lock(&self.disconnect_at) = None;
        self.fault_generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The node's adversary role, if any.
    pub(crate) fn adversary(&self) -> Option<Forgery> {
        Forgery::from_code(self.adversary.load(Ordering::Acquire))
    }

    pub(crate) fn set_adversary(&self, role: Option<Forgery>) {
        self.adversary
            .store(role.map_or(0, Forgery::code), Ordering::Release);
    }

    pub(crate) fn fault_generation(&self) -> u64 {
        self.fault_generation.load(Ordering::Acquire)
    }

    pub(crate) fn disconnect_at(&self) -> Option<Instant> {
        *lock(&self.disconnect_at)
    }

    pub(crate) fn set_disconnect_at(&self, at: Option<Instant>) {
        *lock(&self.disconnect_at) = at;
    }

    /// Makes sure a connection to `peer` exists; true if it was created now.
    pub(crate) fn ensure_conn(&self, peer: u32) -> bool {
        let mut conns = lock(&self.conns);
        if conns.contains_key(&peer) {
            return false;
        }
        conns.insert(peer, Conn { link: None });
        true
    }

    /// The outbound link to `peer`, creating the connection and the link as needed; the flag
    /// says whether the connection is new.
    pub(crate) fn link_to(&self, peer: u32, capacity: usize) -> (Arc<Link>, bool) {
        let mut conns = lock(&self.conns);
        let mut created = false;
        let conn = conns.entry(peer).or_insert_with(|| {
            created = true;
            Conn { link: None }
        });
        let link = conn
            .link
            .get_or_insert_with(|| Arc::new(Link::new(capacity)));
        (Arc::clone(link), created)
    }

    /// Removes the connection to `peer`, closing its link.
    pub(crate) fn remove_conn(&self, peer: u32) -> Option<Conn> {
        let conn = lock(&self.conns).remove(&peer);
        if let Some(link) = conn.as_ref().and_then(|c| c.link.as_ref()) {
            link.close();
        }
        conn
    }

    /// Removes every connection, closing their links; in peer order.
    pub(crate) fn take_conns(&self) -> Vec<(u32, Conn)> {
        let conns = std::mem::take(&mut *lock(&self.conns));
        for link in conns.values().filter_map(|c| c.link.as_ref()) {
            link.close();
        }
        conns.into_iter().collect()
    }

    /// Indices of the connected peers, ascending.
    pub(crate) fn peers(&self) -> Vec<u32> {
        lock(&self.conns).keys().copied().collect()
    }
}

/// Locks `m`, ignoring poisoning: every value guarded here is valid between statements.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_loopback_one_per_subnet_and_invertible() {
        assert_eq!(address_of(0).unwrap().to_string(), "127.0.1.1:7513");
        assert_eq!(address_of(254).unwrap().to_string(), "127.0.255.1:7513");
        assert_eq!(address_of(255).unwrap().to_string(), "127.1.0.1:7513");
        let mut subnets = std::collections::HashSet::new();
        for i in [0, 1, 254, 255, 256, 1000, 65_533, MAX_SIM_NODES - 1] {
            let a = address_of(i).unwrap();
            assert!(a.ip().is_loopback());
            assert_eq!(index_of(&a), Some(i));
            let SocketAddr::V4(v4) = a else { panic!("v4") };
            assert!(subnets.insert(u32::from(*v4.ip()) >> 8), "{a} shares a /24");
        }
        assert_eq!(
            address_of(MAX_SIM_NODES - 1).unwrap().to_string(),
            "127.255.255.1:7513"
        );
        assert_eq!(address_of(MAX_SIM_NODES), None);
        assert_eq!(address_of(u32::MAX), None);
        assert_eq!(index_of(&"127.0.1.1:7514".parse().unwrap()), None);
        assert_eq!(index_of(&"127.0.1.2:7513".parse().unwrap()), None);
        assert_eq!(index_of(&"127.0.0.1:7513".parse().unwrap()), None);
        assert_eq!(index_of(&"10.0.1.1:7513".parse().unwrap()), None);
        assert_eq!(index_of(&"[::1]:7513".parse().unwrap()), None);
    }
}
