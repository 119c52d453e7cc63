//! Kademlia DHT: the routing table and the iterative lookup.

pub mod lookup;
pub mod table;
