//! kadmesh: a Kademlia-DHT-backed, authenticated peer-to-peer overlay node.

#![warn(missing_docs)]

pub mod crypto;
pub mod dht;
pub mod identity;
pub mod peer;
pub mod wire;
