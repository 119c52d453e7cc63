//! Kademlia DHT: the routing table, the iterative lookup and seed lists.

pub mod lookup;
pub mod seeds;
pub mod table;
