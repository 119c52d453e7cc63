//! Kademlia DHT: the routing table, the iterative lookup, seed lists and the address rules (subnets).

pub mod lookup;
pub mod seeds;
pub mod subnet;
pub mod table;
