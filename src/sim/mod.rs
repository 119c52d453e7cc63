//! The in-memory network simulator: many real [`Swarm`](crate::Swarm)s in one process, connected by a
//! seeded, fault-injecting router instead of TCP, under virtual time.
//!
//! The simulator is a transport, not a second implementation: each node is a real `Swarm` started on a
//! [`SimTransport`](crate::transport::sim::SimTransport), so the routing table, lookups, request
//! matching, protocol registry and validation are the production code. Only sockets, the handshake and
//! session crypto are replaced.
//!
//! # Running a simulation
//!
//! Simulations run on a current-thread tokio runtime with the clock paused ([`SimNetwork::runtime`], or
//! the [`run`] helper): virtual time advances only when every task waits, straight to the next timer, so
//! a simulated minute takes as long as the work in it. With the same seed and parameters, a run makes the
//! same choices and produces the same results.
//!
//! ```
//! use std::time::Duration;
//! use kadmesh::sim::{self, SimConfig};
//! use kadmesh::Config;
//!
//! let received = sim::run(SimConfig::default(), 42, |net| async move {
//!     let a = net.add_node(Config::default()).await?;
//!     let b = net.add_node(Config::default()).await?;
//!     let mut inbox = b.register_protocol("chat")?;
//!     a.send_message_to(&b.local_node(), "chat", &b"hello"[..]).await?;
//!     net.run_until_idle().await;
//!     let message = inbox.recv().await.expect("delivered");
//!     Ok::<_, kadmesh::Error>(message.data().to_vec())
//! })
//! .expect("runtime")
//! .expect("simulation");
//! assert_eq!(received, b"hello");
//! ```
//!
//! # Model
//!
//! - **Addresses.** Nodes started with [`SimNetwork::add_node`] get synthetic addresses `127.a.b.1:7513`,
//!   one /24 per node, counting up from `127.0.1.1` ([`address_of`]), at most [`MAX_SIM_NODES`];
//!   [`SimNetwork::add_node_at`] starts a node at any free address instead (e.g. many Sybils in one
//!   /24). No socket is ever opened.
//! - **Connections and links.** A connection between two nodes opens on the first send or connect
//!   (both Swarms see `PeerConnected`) and costs no time. Each direction of a connection has a link: a
//!   bounded queue (`link_queue`) drained by a task that exists only while the queue holds messages. A
//!   message is due at `max(send time + latency + fault delay, due time of the previous message on the
//!   link)`: links are FIFO. When due, it is handed to the destination Swarm's inbound handler, and the
//!   link waits for the handler to finish, so a slow consumer holds up that link only (as with TCP).
//! - **Latency.** One-way, from [`SimConfig::latency`]: by default a fixed latency per pair of nodes,
//!   uniform in 5 to 50 ms, derived from the seed and the pair.
//! - **Faults** ([`SimNetwork::set_fault`]): [`Fault::Drop`] loses each message into or out of the node
//!   with probability `drop_rate` (the send still succeeds); [`Fault::Delay`] adds a draw from `delay` to
//!   each such message; [`Fault::Disconnect`] takes the node offline at a random moment within
//!   `disconnect_window`.
//! - **Offline and partitions** ([`SimNetwork::go_offline`], [`SimNetwork::partition`],
//!   [`SimNetwork::heal`]): sends between nodes that cannot reach each other fail after one round trip
//!   with [`TransportError::Unreachable`](crate::transport::TransportError::Unreachable), as a refused
//!   dial would; their connections close; messages already queued between them are dropped when due.
//! - **Departures.** A node that shuts down leaves the network: its connections close, its id and
//!   address are free again, and the network lets go of its Swarm and its router state, so a network
//!   with churn keeps a flat footprint.
//! - **Adversaries** ([`SimNetwork::set_adversary`]): the FindNode requests addressed to an
//!   adversarial node are answered by the router with a forged response ([`Forgery`]: garbage, only
//!   colluders, or empty) that travels back like any message; pings and everything else reach its Swarm,
//!   so it looks alive. The Swarm itself holds no attack code.
//! - **Determinism.** One seeded RNG per network, used in program order (identities and node seeds at
//!   [`SimNetwork::add_node`], delays and losses at each send, disconnect moments at
//!   [`SimNetwork::set_fault`], garbage when forging an answer); each node's own RNG is seeded from
//!   it; nothing iterates a hash map where order matters; the simulator's own `select!`s are `biased`.
//!   On a current-thread runtime with paused time, task and timer order follow from that, so a run is
//!   reproducible. Not covered: wall-clock values (message timestamps are real time), and code whose
//!   outcome depends on which of several ready branches an unbiased `tokio::select!` picks (tokio
//!   draws that from an unseeded RNG).
//!
//! # Observing
//!
//! Deliveries are observed through the Swarms themselves: a protocol's channel from
//! [`Swarm::register_protocol`](crate::Swarm::register_protocol), request results,
//! [`Swarm::events`](crate::Swarm::events) and [`Swarm::stats`](crate::Swarm::stats). The network adds
//! its own counters ([`SimNetwork::stats`]: sent, delivered, dropped by reason, refused, in flight,
//! forged answers) and the nodes and open connections at the moment.
//!
//! # Scale
//!
//! Nodes cost no thread and no preallocated buffers in the simulator (links and their tasks exist only
//! while used). The Swarm's own event channel is preallocated at `swarm.event_queue` entries: use
//! [`node_config`] (a small event queue) for networks of thousands of nodes.

use std::future::Future;

mod adversary;
mod config;
mod link;
mod network;
mod node;
pub(crate) mod router;
mod stats;
#[cfg(test)]
mod tests;

pub use adversary::{Forgery, MAX_FORGED_NODES};
pub use config::{Fault, Latency, SimConfig, Span};
pub use network::{IDLE_GRACE, SimNetwork};
pub use node::{MAX_SIM_NODES, SIM_PORT, address_of, index_of};
pub use stats::{DropCounts, SimDropReason, SimStats};

pub(crate) use link::run_link;
pub(crate) use node::SimNode;
pub(crate) use stats::Counters;

/// Builds a [`SimNetwork`] from `config` and `seed` on a fresh paused-clock runtime
/// ([`SimNetwork::runtime`]), runs `f` on it to completion, then shuts the network down.
///
/// Fails only if the runtime cannot be built.
pub fn run<F, Fut, T>(config: SimConfig, seed: u64, f: F) -> std::io::Result<T>
where
    F: FnOnce(SimNetwork) -> Fut,
    Fut: Future<Output = T>,
{
    let runtime = SimNetwork::runtime()?;
    Ok(runtime.block_on(async move {
        let net = SimNetwork::new(config, seed);
        let out = f(net.clone()).await;
        net.shutdown().await;
        out
    }))
}

/// A node [`Config`](crate::Config) for large simulations: the defaults with a 16-entry event channel
/// (the default 1024 entries are preallocated per node).
pub fn node_config() -> crate::Config {
    let mut config = crate::Config::default();
    config.swarm.event_queue = 16;
    config
}
