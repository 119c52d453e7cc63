//! kadmesh: a Kademlia-DHT-backed, authenticated peer-to-peer overlay node.
//!
//! A [`Swarm`] is a running node. Protocols register by name and receive bounded channels of
//! validated [`Message`]s; they send to a node id (the DHT finds its address when the routing table
//! does not), make requests matched by request id, and look nodes up. Every connection is authenticated
//! with secp256k1 keys (ephemeral ECDH, signed transcripts) and sealed with AES-256-CBC + HMAC-SHA256.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), kadmesh::Error> {
//! use std::time::Duration;
//! use kadmesh::{Config, Swarm};
//!
//! let config = Config { listen: "127.0.0.1:0".parse().unwrap(), ..Config::default() };
//! let alice = Swarm::start(config.clone()).await?;
//! let bob = Swarm::start(config).await?;
//! let mut inbox = bob.register_protocol("chat")?;
//!
//! // Bob answers every request on "chat".
//! tokio::spawn(async move {
//!     while let Some(msg) = inbox.recv().await {
//!         let _ = msg.respond(format!("hi {}", msg.sender().id.short())).await;
//!     }
//! });
//!
//! // Alice knows Bob's descriptor ("ip:port/base58key"); later peers are found through the DHT.
//! alice.connect(&bob.local_node().to_string()).await?;
//! let reply = alice
//!     .request(&bob.local_node().id, "chat", &b"hello"[..], Duration::from_secs(5))
//!     .await?;
//! assert!(reply.data().starts_with(b"hi "));
//! alice.shutdown().await;
//! bob.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! Pure core (no sockets, no clock reads, randomness passed in):
//! - [`identity`]: keys, [`NodeId`] (base58), [`DhtId`] (SHA-256 of the key), XOR distance, key files.
//! - [`peer`]: [`NodeInfo`] and its descriptor text form `ip:port/base58key`.
//! - [`wire`]: protobuf types generated from `proto/kadmesh.proto` and the length-prefixed frame codec.
//! - [`crypto`]: the sans-IO handshake and the sealed-frame session.
//! - [`dht`]: the k-bucket routing table, the iterative lookup state machine, seed lists.
//! - [`gossip`]: author-signed gossip messages, the seen-cache, relay peer choice.
//!
//! Async shell:
//! - [`transport`]: the boundary the Swarm talks to, and its TCP implementation (listener, connection
//!   actors, connection pool).
//! - [`swarm`]: the public handle, inbound dispatch, requests, the DHT driver (FindNode, lookups,
//!   bootstrap, refresh), the gossip driver (verify, deliver, relay).
//! - [`sim`]: the in-memory network simulator: a transport with seeded latency, drops, delays,
//!   disconnects and partitions on tokio's paused clock, running the real Swarm.
//! - [`scenario`]: the seed's scenario table as runnable benchmarks (`kadmesh bench`).
//! - [`daemon`]: the long-running node of `kadmesh node`, with [`persist`] (data directory: identity,
//!   routing-table snapshot), [`metrics`] (per-node Prometheus registry) and [`api`] (HTTP API, SSE).
//! - [`ban`]: bans of misbehaving peers (by node id, and by IP beyond a threshold), persisted by the
//!   daemon.
//! - [`cli`]: the `kadmesh` command line.

#![warn(missing_docs)]

pub mod api;
pub mod ban;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod daemon;
pub mod dht;
pub mod error;
/// Fuzzing harnesses: hostile bytes through the real decoders and state machines (see `fuzz/`).
pub mod fuzzing;
pub mod gossip;
pub mod identity;
pub mod metrics;
pub mod peer;
pub mod persist;
pub mod scenario;
pub mod sim;
pub mod swarm;
pub mod transport;
pub mod wire;

pub use config::Config;
pub use error::Error;
pub use identity::{DhtId, Keypair, NodeId};
pub use peer::NodeInfo;
pub use swarm::{Delivery, Message, Swarm, SwarmEvent};
