//! [`SimNetwork`]: the public handle of a simulated network.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::time::Instant;

use super::adversary::Forgery;
use super::config::{Fault, SimConfig, Span};
use super::node::{NodeSettings, SimNode, lock};
use super::router::NetInner;
use super::stats::SimStats;
use crate::config::Config;
use crate::error::Error;
use crate::identity::{Keypair, NodeId};
use crate::swarm::Swarm;
use crate::transport::Transport;
use crate::transport::sim::SimTransport;

/// How long the network must carry no message before [`SimNetwork::run_until_idle`] returns.
pub const IDLE_GRACE: Duration = Duration::from_millis(1);

/// An in-memory network of real [`Swarm`]s (see the [module documentation](super)). Cheap to clone.
///
/// Call [`SimNetwork::shutdown`] at the end (the [`run`](super::run) helper does): the network keeps
/// every node's Swarm, and each Swarm's transport keeps the network.
#[derive(Clone)]
pub struct SimNetwork {
    /// Shared state.
    inner: Arc<NetInner>,
}

impl SimNetwork {
    /// Creates an empty network. Every random choice of the network (identities, node seeds, latencies,
    /// faults) comes from `seed`. Out-of-range config values are normalised (see
    /// [`SimConfig::validate`]).
    pub fn new(config: SimConfig, seed: u64) -> Self {
        Self {
            inner: Arc::new(NetInner::new(config, seed, StdRng::seed_from_u64(seed))),
        }
    }

    /// A current-thread tokio runtime with time enabled and the clock paused, as the simulator needs:
    /// virtual time advances only when every task waits, straight to the next timer.
    pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
    }

    /// The parameters in use (normalised).
    pub fn config(&self) -> &SimConfig {
        &self.inner.cfg
    }

    /// The network seed.
    pub fn seed(&self) -> u64 {
        self.inner.seed()
    }

    /// Starts a node with a new identity drawn from the network RNG, at the next free synthetic address
    /// (`127.0.1.1:7513`, `127.0.2.1:7513`, ...). The node's own RNG seed is drawn from the network RNG
    /// too. `config.listen` is ignored; `config.net.max_frame_len` applies to what the node sends.
    pub async fn add_node(&self, config: Config) -> Result<Swarm, Error> {
        let (keypair, seed) = self.draw_identity();
        self.start(config, keypair, seed, None).await
    }

    /// Starts a node with the given identity (its RNG seed still comes from the network RNG). Fails with
    /// [`Error::Bind`] if a node with this id is running in the network; a node that shut down may come
    /// back this way, at a new address.
    pub async fn add_node_from(&self, config: Config, keypair: Keypair) -> Result<Swarm, Error> {
        let seed = self.inner.rng().random::<u64>();
        self.start(config, keypair, seed, None).await
    }

    /// Starts a node with the given identity at `addr`: any IPv4 or IPv6 socket address with a port,
    /// not in use in this network (so many nodes can share one subnet, or one IP on several ports).
    /// Fails with [`Error::Bind`] if the address is taken, unspecified or has port 0, or a node with this
    /// id is running. Addresses of nodes that shut down are free again.
    pub async fn add_node_at(
        &self,
        config: Config,
        keypair: Keypair,
        addr: SocketAddr,
    ) -> Result<Swarm, Error> {
        let seed = self.inner.rng().random::<u64>();
        self.start(config, keypair, seed, Some(addr)).await
    }

    /// A new identity and node seed from the network RNG.
    fn draw_identity(&self) -> (Keypair, u64) {
        let mut rng = self.inner.rng();
        let keypair = Keypair::generate(&mut *rng);
        (keypair, rng.random::<u64>())
    }

    async fn start(
        &self,
        config: Config,
        keypair: Keypair,
        seed: u64,
        addr: Option<SocketAddr>,
    ) -> Result<Swarm, Error> {
        let net = Arc::clone(&self.inner);
        let settings = NodeSettings::of(&config);
        let swarm =
            Swarm::start_with_transport(config, keypair, Some(seed), move |keypair, handler| {
                Box::pin(async move {
                    let node = net.register(&keypair, handler, addr, settings)?;
                    Ok(Arc::new(SimTransport::new(net, node)) as Arc<dyn Transport>)
                })
            })
            .await?;
        if let Some(node) = self.inner.node_by_id(&swarm.local_node().id) {
            lock(&self.inner.swarms).insert(node.index, swarm.clone());
        }
        Ok(swarm)
    }

    /// The Swarm of every node in the network, in the order they were added. A node leaves the network
    /// when it shuts down: the network then lets go of its Swarm and everything the router kept for it.
    pub fn nodes(&self) -> Vec<Swarm> {
        lock(&self.inner.swarms).values().cloned().collect()
    }

    /// The Swarm of the node with id `id`, if it is in the network.
    pub fn node(&self, id: &NodeId) -> Option<Swarm> {
        let index = self.inner.node_by_id(id)?.index;
        lock(&self.inner.swarms).get(&index).cloned()
    }

    /// Number of nodes added, including those that left since.
    pub fn len(&self) -> usize {
        self.inner.added() as usize
    }

    /// True if no node was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn find(&self, id: &NodeId) -> Result<Arc<SimNode>, Error> {
        self.inner.node_by_id(id).ok_or(Error::NodeNotFound(*id))
    }

    /// Applies `fault` to the node `id`, replacing its previous fault (and cancelling a disconnect not
    /// yet happened). [`Fault::Disconnect`] draws the moment, uniformly within
    /// [`SimConfig::disconnect_window`] from now, at which the node goes offline (see
    /// [`SimNetwork::disconnect_at`]); setting [`Fault::None`] does not bring an offline node back (use
    /// [`SimNetwork::go_online`]).
    pub fn set_fault(&self, id: &NodeId, fault: Fault) -> Result<(), Error> {
        let node = self.find(id)?;
        let generation = node.set_fault(fault);
        if fault != Fault::Disconnect {
            return Ok(());
        }
        let after = Span::new(Duration::ZERO, self.inner.cfg.disconnect_window)
            .sample(&mut self.inner.rng());
        let at = Instant::now() + after;
        node.set_disconnect_at(Some(at));
        let net = Arc::clone(&self.inner);
        self.inner.tasks.spawn(async move {
            tokio::select! {
                biased;
                _ = net.cancel.cancelled() => return,
                _ = node.cancel.cancelled() => return,
                _ = tokio::time::sleep_until(at) => {}
            }
            // Only if neither a fault change nor a manual go_offline cancelled it meanwhile.
            if node.fault_generation() == generation && node.disconnect_at() == Some(at) {
                net.go_offline(&node);
            }
        });
        Ok(())
    }

    /// Makes node `id` an adversary (`Some`) or honest again (`None`): the FindNode requests addressed
    /// to an adversary are answered by the router as `role` says, and never reach its Swarm; everything
    /// else, pings included, does. Every adversary is a colluder: it appears in
    /// [`Forgery::OnlyColluders`] answers, whatever its own role.
    pub fn set_adversary(&self, id: &NodeId, role: Option<Forgery>) -> Result<(), Error> {
        let node = self.find(id)?;
        node.set_adversary(role);
        self.inner.colluders.set(&node, role);
        Ok(())
    }

    /// The adversary role of node `id` (`None` for an honest or unknown node).
    pub fn adversary(&self, id: &NodeId) -> Option<Forgery> {
        self.inner.node_by_id(id).and_then(|n| n.adversary())
    }

    /// The fault of node `id`.
    pub fn fault(&self, id: &NodeId) -> Option<Fault> {
        self.inner.node_by_id(id).map(|n| n.fault())
    }

    /// When the scheduled [`Fault::Disconnect`] of node `id` takes it offline, if one is pending.
    pub fn disconnect_at(&self, id: &NodeId) -> Option<Instant> {
        self.inner.node_by_id(id).and_then(|n| n.disconnect_at())
    }

    /// Takes node `id` offline: its connections close (both sides see
    /// [`CloseReason::Unreachable`](crate::transport::CloseReason::Unreachable)), messages to or from it
    /// that are due from now on are dropped, and sends to or from it fail with
    /// [`TransportError::Unreachable`](crate::transport::TransportError::Unreachable). Its Swarm keeps
    /// running (its timers fire, its own sends fail).
    pub fn go_offline(&self, id: &NodeId) -> Result<(), Error> {
        let node = self.find(id)?;
        self.inner.go_offline(&node);
        Ok(())
    }

    /// Brings node `id` back online (a node that shut down stays down).
    pub fn go_online(&self, id: &NodeId) -> Result<(), Error> {
        let node = self.find(id)?;
        if !node.is_shut_down() {
            node.set_online(true);
        }
        Ok(())
    }

    /// Whether node `id` is online (added, not shut down, not taken offline).
    pub fn is_online(&self, id: &NodeId) -> bool {
        self.inner
            .node_by_id(id)
            .is_some_and(|n| n.is_online() && !n.is_shut_down())
    }

    /// Splits the network: nodes in different groups cannot reach each other. Nodes not listed form one
    /// more group of their own (they reach each other, not the listed ones). A node listed twice belongs
    /// to its last group. Replaces any previous partition; connections across groups close (both sides
    /// see [`CloseReason::Unreachable`](crate::transport::CloseReason::Unreachable)) and messages across
    /// them that are due from now on are dropped. Fails, changing nothing, if an id is unknown.
    pub fn partition(&self, groups: Vec<Vec<NodeId>>) -> Result<(), Error> {
        let groups = groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(|id| self.find(id))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        for node in self.inner.all_nodes() {
            node.set_group(0);
        }
        for (i, group) in groups.iter().enumerate() {
            let label = u32::try_from(i + 1).unwrap_or(u32::MAX);
            for node in group {
                node.set_group(label);
            }
        }
        self.inner.close_across_groups();
        Ok(())
    }

    /// Ends the partition: every online node can reach every other again.
    pub fn heal(&self) {
        for node in self.inner.all_nodes() {
            node.set_group(0);
        }
    }

    /// Lets the network and every node run for `d` of virtual time.
    pub async fn run_for(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }

    /// Lets everything run until the network is idle: no message in flight (queued or being handled by
    /// its destination), no refused send still waiting to fail, and no send or connect attempted during
    /// the last [`IDLE_GRACE`] of virtual time.
    ///
    /// Nodes may still have timers pending (request and lookup timeouts, bucket refresh): a node that
    /// waits for the answer to a lost message acts again when its timeout fires, after this returns.
    pub async fn run_until_idle(&self) {
        let counters = &self.inner.counters;
        loop {
            counters.wait_idle().await;
            let attempts = counters.attempts();
            tokio::time::sleep(IDLE_GRACE).await;
            if counters.is_idle() && counters.attempts() == attempts {
                return;
            }
        }
    }

    /// A snapshot of the counters, with the nodes and open connections now.
    pub fn stats(&self) -> SimStats {
        let (nodes, connections) = self.inner.population();
        SimStats {
            nodes,
            connections,
            ..self.inner.counters.snapshot()
        }
    }

    /// Shuts every node down (in the order added), stops the network's tasks and releases the Swarms.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        let swarms = std::mem::take(&mut *lock(&self.inner.swarms));
        for swarm in swarms.values() {
            swarm.shutdown().await;
        }
        self.inner.tasks.wait().await;
    }
}
