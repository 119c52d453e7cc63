//! Benchmark and test scenarios from the seed's table, shared by `kadmesh bench` and the tests.

pub mod latency;
pub mod stats;
