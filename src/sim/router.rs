//! The shared state of a simulated network and its routing decisions: the node registry, the seeded RNG,
//! reachability (online flags and partition groups), latency and fault sampling, and opening and
//! closing connections.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use rand::RngExt;
use rand::rngs::StdRng;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::adversary::Colluders;
use super::config::{Fault, Latency, SimConfig};
use super::link::Link;
use super::node::{NodeSettings, SimNode, address_of, lock};
use super::stats::{Counters, SimDropReason};
use crate::error::Error;
use crate::identity::{Keypair, NodeId};
use crate::peer::NodeInfo;
use crate::swarm::Swarm;
use crate::transport::{CloseReason, Direction, InboundHandler, PeerEvent, TransportError};

/// The nodes in the network (from their start to their shutdown), by index, id and address.
#[derive(Default)]
struct Registry {
    /// Nodes by index (a `BTreeMap`: iteration in the order added).
    nodes: BTreeMap<u32, Arc<SimNode>>,
    /// Index of each node's id.
    by_id: HashMap<NodeId, u32>,
    /// Index of each node's address.
    by_addr: HashMap<SocketAddr, u32>,
    /// Indices handed out so far (the next node's index).
    added: u32,
    /// The next synthetic address number to try ([`address_of`]).
    next_slot: u32,
}

impl Registry {
    /// The address for a new node: `chosen` if it is free and usable, else the next free synthetic one.
    fn address(&mut self, chosen: Option<SocketAddr>) -> Result<SocketAddr, Error> {
        let bind = |addr, reason: &str| Error::Bind {
            addr,
            reason: reason.to_owned(),
        };
        if let Some(addr) = chosen {
            if addr.port() == 0 || addr.ip().is_unspecified() {
                return Err(bind(
                    addr,
                    "a simulated node needs a concrete address and port",
                ));
            }
            if self.by_addr.contains_key(&addr) {
                return Err(bind(addr, "address in use in this network"));
            }
            return Ok(addr);
        }
        loop {
            let Some(addr) = address_of(self.next_slot) else {
                let first = address_of(0).unwrap_or_else(|| ([127, 0, 1, 1], 7513).into());
                return Err(bind(first, "the simulator's address range is exhausted"));
            };
            self.next_slot += 1;
            if !self.by_addr.contains_key(&addr) {
                return Ok(addr);
            }
        }
    }
}

/// What a send or connect attempt does.
pub(crate) enum Route {
    /// Fails with `error` after `after` (a refused or unreachable dial).
    Refuse {
        /// How long the failure takes to show.
        after: Duration,
        /// The failure.
        error: TransportError,
    },
    /// Accepted, then lost to a drop fault.
    Lose,
    /// Delivered to `dst` after `delay` (subject to per-link FIFO order).
    Deliver {
        /// The destination.
        dst: Arc<SimNode>,
        /// Latency plus any fault delay.
        delay: Duration,
    },
}

/// State shared by the [`SimNetwork`](super::SimNetwork) handles and every node's transport.
pub(crate) struct NetInner {
    /// Parameters (normalised).
    pub(crate) cfg: SimConfig,
    /// The network seed (also keys the per-link latencies).
    seed: u64,
    /// The network's random choices, in call order; never held across an await.
    rng: Mutex<StdRng>,
    /// The nodes.
    registry: RwLock<Registry>,
    /// The Swarm of each node, by index; cleared by shutdown (it breaks the network-swarm cycle).
    pub(crate) swarms: Mutex<BTreeMap<u32, Swarm>>,
    /// Every node marked adversarial, for [`Forgery::OnlyColluders`](super::Forgery::OnlyColluders).
    pub(crate) colluders: Colluders,
    /// Message counters.
    pub(crate) counters: Counters,
    /// Cancelled by the network's shutdown.
    pub(crate) cancel: CancellationToken,
    /// Network tasks (scheduled disconnects).
    pub(crate) tasks: TaskTracker,
}

impl NetInner {
    pub(crate) fn new(cfg: SimConfig, seed: u64, rng: StdRng) -> Self {
        Self {
            cfg: cfg.normalised(),
            seed,
            rng: Mutex::new(rng),
            registry: RwLock::default(),
            swarms: Mutex::default(),
            colluders: Colluders::default(),
            counters: Counters::default(),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }

    /// The network RNG.
    pub(crate) fn rng(&self) -> MutexGuard<'_, StdRng> {
        lock(&self.rng)
    }

    fn registry(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn node_by_index(&self, index: u32) -> Option<Arc<SimNode>> {
        self.registry().nodes.get(&index).cloned()
    }

    pub(crate) fn node_by_id(&self, id: &NodeId) -> Option<Arc<SimNode>> {
        let registry = self.registry();
        let index = registry.by_id.get(id)?;
        registry.nodes.get(index).cloned()
    }

    fn node_by_addr(&self, addr: &SocketAddr) -> Option<Arc<SimNode>> {
        let registry = self.registry();
        let index = registry.by_addr.get(addr)?;
        registry.nodes.get(index).cloned()
    }

    /// Every node in the network, in the order added.
    pub(crate) fn all_nodes(&self) -> Vec<Arc<SimNode>> {
        self.registry().nodes.values().cloned().collect()
    }

    /// Nodes added so far, including those that left.
    pub(crate) fn added(&self) -> u32 {
        self.registry().added
    }

    /// Nodes in the network now and their open connections (each counted once).
    pub(crate) fn population(&self) -> (u64, u64) {
        let registry = self.registry();
        let connections: usize = registry
            .nodes
            .values()
            .map(|n| n.peers().into_iter().filter(|&p| p > n.index).count())
            .sum();
        (registry.nodes.len() as u64, connections as u64)
    }

    /// Adds a node for `keypair` at `addr`, or at the next free synthetic address when `None`. Fails if a
    /// node with this id is in the network, the address is taken or unusable, or the synthetic address
    /// range is exhausted.
    pub(crate) fn register(
        &self,
        keypair: &Keypair,
        handler: std::sync::Weak<dyn InboundHandler>,
        addr: Option<SocketAddr>,
        settings: NodeSettings,
    ) -> Result<Arc<SimNode>, Error> {
        let id = keypair.node_id();
        let mut registry = self.registry.write().unwrap_or_else(|e| e.into_inner());
        if let Some(&old) = registry.by_id.get(&id) {
            let addr = registry.nodes.get(&old).map_or_else(
                || addr.unwrap_or_else(|| ([127, 0, 1, 1], 7513).into()),
                |n| n.info.addr,
            );
            return Err(Error::Bind {
                addr,
                reason: format!("node {} is already running in this network", id.short()),
            });
        }
        let addr = registry.address(addr)?;
        let index = registry.added;
        registry.added = index.checked_add(1).ok_or_else(|| Error::Bind {
            addr,
            reason: "the simulator's node count is exhausted".into(),
        })?;
        let node = Arc::new(SimNode::new(
            index,
            NodeInfo::new(id, addr),
            handler,
            settings,
        ));
        registry.nodes.insert(index, Arc::clone(&node));
        registry.by_id.insert(id, index);
        registry.by_addr.insert(addr, index);
        Ok(node)
    }

    /// Takes a node that shut down out of the network: its id and address become free, its Swarm is
    /// released, and it no longer colludes. What still refers to it (links draining) lets go on its own.
    pub(crate) fn remove(&self, node: &SimNode) {
        {
            let mut registry = self.registry.write().unwrap_or_else(|e| e.into_inner());
            if registry
                .nodes
                .get(&node.index)
                .is_some_and(|n| std::ptr::eq(Arc::as_ptr(n), node))
            {
                registry.nodes.remove(&node.index);
                registry.by_id.remove(&node.info.id);
                registry.by_addr.remove(&node.info.addr);
            }
        }
        self.colluders.remove(node.index);
        // Dropped outside the lock: the last handle of a Swarm may go with it.
        let swarm = lock(&self.swarms).remove(&node.index);
        drop(swarm);
    }

    /// Whether `src` can reach `dst` now; the reason if not.
    pub(crate) fn reachable(&self, src: &SimNode, dst: &SimNode) -> Result<(), SimDropReason> {
        if src.is_shut_down() || dst.is_shut_down() {
            Err(SimDropReason::Shutdown)
        } else if !src.is_online() || !dst.is_online() {
            Err(SimDropReason::Offline)
        } else if src.group() != dst.group() {
            Err(SimDropReason::Partitioned)
        } else {
            Ok(())
        }
    }

    /// The fixed latency between nodes `a` and `b` (per-link model), from a hash of the seed and the pair.
    fn link_latency(&self, span: super::config::Span, a: u32, b: u32) -> Duration {
        let (lo, hi) = (a.min(b), a.max(b));
        let pair = (u64::from(lo) << 32) | u64::from(hi);
        span.at(splitmix64(self.seed ^ splitmix64(pair)))
    }

    /// One-way latency from `src` to `dst` for one message.
    fn latency(&self, rng: &mut StdRng, src: &SimNode, dst: &SimNode) -> Duration {
        match self.cfg.latency {
            Latency::UniformPerLink(span) => self.link_latency(span, src.index, dst.index),
            Latency::UniformPerMessage(span) => span.sample(rng),
        }
    }

    /// Decides what happens to a message (or, with `faults` false, a connect) from `src` to `to`.
    ///
    /// Draws from the network RNG in a fixed order: the latency (per-message model), then a delay for each
    /// [`Fault::Delay`] endpoint (source first), then a loss check for each [`Fault::Drop`] endpoint.
    pub(crate) fn route(&self, src: &SimNode, to: &NodeInfo, faults: bool) -> Route {
        let rtt = |one_way: Duration| one_way.saturating_mul(2);
        let refused = |reason: &str| TransportError::Dial {
            addr: to.addr,
            reason: reason.to_owned(),
        };
        let Some(dst) = self.node_by_addr(&to.addr) else {
            return Route::Refuse {
                after: rtt(self.cfg.latency.span().min),
                error: refused("connection refused (no simulated node at this address)"),
            };
        };
        let mut rng = self.rng();
        let latency = self.latency(&mut rng, src, &dst);
        if dst.info.id != to.id {
            return Route::Refuse {
                after: rtt(latency),
                error: TransportError::Handshake {
                    addr: to.addr,
                    reason: "the node at this address has another key".into(),
                },
            };
        }
        if dst.index == src.index {
            return Route::Refuse {
                after: Duration::ZERO,
                error: TransportError::Handshake {
                    addr: to.addr,
                    reason: "connection to ourselves".into(),
                },
            };
        }
        if dst.is_shut_down() {
            return Route::Refuse {
                after: rtt(latency),
                error: refused("connection refused (node shut down)"),
            };
        }
        if self.reachable(src, &dst).is_err() {
            return Route::Refuse {
                after: rtt(latency),
                error: TransportError::Unreachable(to.id),
            };
        }
        if !faults {
            return Route::Deliver {
                dst,
                delay: latency,
            };
        }
        let ends = [src.fault(), dst.fault()];
        let mut delay = latency;
        for _ in ends.iter().filter(|f| **f == Fault::Delay) {
            delay = delay.saturating_add(self.cfg.delay.sample(&mut rng));
        }
        let mut lost = false;
        for _ in ends.iter().filter(|f| **f == Fault::Drop) {
            lost |= rng.random_bool(self.cfg.drop_rate);
        }
        if lost {
            Route::Lose
        } else {
            Route::Deliver { dst, delay }
        }
    }

    /// The link from `src` to `dst`, opening the connection on both sides (with `Connected` events) if
    /// it does not exist.
    pub(crate) fn open_link(&self, src: &SimNode, dst: &SimNode) -> Arc<Link> {
        let (link, created) = src.link_to(dst.index, self.cfg.link_queue);
        if created {
            self.announce(src, dst);
        }
        link
    }

    /// Opens the connection from `src` to `dst` without a link, if it does not exist.
    pub(crate) fn open_conn(&self, src: &SimNode, dst: &SimNode) {
        if src.ensure_conn(dst.index) {
            self.announce(src, dst);
        }
    }

    /// `src` just opened a connection to `dst`: registers it at `dst` and tells both Swarms.
    fn announce(&self, src: &SimNode, dst: &SimNode) {
        let inbound_new = dst.ensure_conn(src.index);
        src.event(PeerEvent::Connected {
            peer: dst.info,
            direction: Direction::Outbound,
        });
        if inbound_new {
            dst.event(PeerEvent::Connected {
                peer: src.info,
                direction: Direction::Inbound,
            });
        }
    }

    /// Closes every connection of `node`: peers see `peer_reason`; `node` itself sees `own_reason` if
    /// given. In peer order.
    pub(crate) fn close_all(
        &self,
        node: &SimNode,
        own_reason: Option<CloseReason>,
        peer_reason: CloseReason,
    ) {
        for (index, _) in node.take_conns() {
            let Some(peer) = self.node_by_index(index) else {
                continue;
            };
            peer.remove_conn(node.index);
            peer.event(PeerEvent::Disconnected {
                peer: node.info.id,
                reason: peer_reason.clone(),
            });
            if let Some(reason) = &own_reason {
                node.event(PeerEvent::Disconnected {
                    peer: peer.info.id,
                    reason: reason.clone(),
                });
            }
        }
    }

    /// Closes every connection between nodes of different partition groups, in node order.
    pub(crate) fn close_across_groups(&self) {
        for node in &self.all_nodes() {
            for index in node.peers() {
                let Some(peer) = self.node_by_index(index) else {
                    continue;
                };
                if peer.index <= node.index || peer.group() == node.group() {
                    continue;
                }
                node.remove_conn(peer.index);
                peer.remove_conn(node.index);
                for (a, b) in [(node, &peer), (&peer, node)] {
                    a.event(PeerEvent::Disconnected {
                        peer: b.info.id,
                        reason: CloseReason::Unreachable,
                    });
                }
            }
        }
    }

    /// Takes `node` offline: it and its peers see its connections close.
    pub(crate) fn go_offline(&self, node: &SimNode) {
        if !node.is_online() {
            return;
        }
        node.set_online(false);
        node.set_disconnect_at(None);
        tracing::debug!(node = %node.info, "simulated node offline");
        self.close_all(
            node,
            Some(CloseReason::Unreachable),
            CloseReason::Unreachable,
        );
    }

    /// Connected peers of `node`, by index.
    pub(crate) fn connected(&self, node: &SimNode) -> Vec<NodeInfo> {
        let registry = self.registry();
        node.peers()
            .into_iter()
            .filter_map(|i| registry.nodes.get(&i).map(|n| n.info))
            .collect()
    }
}

/// SplitMix64: a fast, well-mixed 64-bit hash (Steele, Lea and Flood).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::config::Span;
    use rand::SeedableRng;

    #[test]
    fn per_link_latency_is_symmetric_stable_and_in_range() {
        let span = Span::new(Duration::from_millis(5), Duration::from_millis(50));
        let net = NetInner::new(SimConfig::default(), 7, StdRng::seed_from_u64(7));
        let mut distinct = std::collections::BTreeSet::new();
        for a in 0..20 {
            for b in 0..20 {
                let l = net.link_latency(span, a, b);
                assert_eq!(l, net.link_latency(span, b, a));
                assert!(l >= span.min && l <= span.max);
                distinct.insert(l);
            }
        }
        assert!(distinct.len() > 100, "latencies look degenerate");
        let other = NetInner::new(SimConfig::default(), 8, StdRng::seed_from_u64(8));
        assert_ne!(net.link_latency(span, 1, 2), other.link_latency(span, 1, 2));
    }
}
