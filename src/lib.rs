//! kadmesh: a Kademlia-DHT-backed, authenticated peer-to-peer overlay node.

#![warn(missing_docs)]

pub mod api;
pub mod config;
pub mod crypto;
pub mod daemon;
pub mod dht;
pub mod error;
pub mod identity;
pub mod metrics;
pub mod peer;
pub mod persist;
pub mod swarm;
pub mod transport;
pub mod wire;

pub use config::Config;
pub use error::Error;
pub use identity::{DhtId, Keypair, NodeId};
pub use peer::NodeInfo;
pub use swarm::{Message, Swarm, SwarmEvent};
pub mod cli;
pub mod scenario;
