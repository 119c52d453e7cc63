//! Builds a scenario's network: boot nodes that know each other, the other nodes, the faulty set, and the
//! bootstrap of every node, measured.

use std::collections::BTreeSet;

use futures::StreamExt;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::index::sample;
use tokio::time::Instant;

use super::params::{ScenarioParams, TransportKind};
use super::report::{BootstrapSection, median_min, rate};
use crate::config::Config;
use crate::error::Error;
use crate::peer::NodeInfo;
use crate::swarm::Swarm;

/// Bootstraps run at once (bounds sockets and memory on TCP).
const BOOTSTRAP_CONCURRENCY: usize = 64;

/// Where scenario nodes are started.
pub enum Testbed {
    /// Real TCP on 127.0.0.1.
    Tcp,
}

impl Testbed {
    /// A testbed for `params`.
    pub fn new(params: &ScenarioParams) -> Result<Self, Error> {
        match params.transport {
            TransportKind::Tcp => Ok(Testbed::Tcp),
            TransportKind::Sim => Err(Error::Unsupported("the simulator transport")),
        }
    }

    /// Starts one node.
    pub async fn spawn(&self, config: Config) -> Result<Swarm, Error> {
        match self {
            Testbed::Tcp => Swarm::start(config).await,
        }
    }

    /// "virtual" or "wall": what `tokio::time` measures here.
    pub fn time_base(&self) -> &'static str {
        match self {
            Testbed::Tcp => "wall",
        }
    }
}

/// A running scenario network.
pub struct Network {
    /// Where the nodes run.
    pub testbed: Testbed,
    /// Every node; the first `boot_nodes` are the boot nodes.
    pub nodes: Vec<Swarm>,
    /// Indices of the faulty nodes.
    pub faulty: BTreeSet<usize>,
    /// The scenario's random choices.
    pub rng: StdRng,
    /// How bootstrap went.
    pub bootstrap: BootstrapSection,
}

impl Network {
    /// Starts the nodes, marks the faulty ones, and bootstraps everyone from the boot nodes.
    pub async fn build(params: &ScenarioParams) -> Result<Network, Error> {
        let testbed = Testbed::new(params)?;
        let mut rng = StdRng::seed_from_u64(params.seed);
        let config = params.node_config();
        let mut nodes = Vec::with_capacity(params.nodes);
        for _ in 0..params.nodes {
            nodes.push(testbed.spawn(config.clone()).await?);
        }
        let eligible = params.nodes - params.boot_nodes;
        let faulty: BTreeSet<usize> = sample(&mut rng, eligible, params.faulty_count())
            .into_iter()
            .map(|i| i + params.boot_nodes)
            .collect();
        let boot: Vec<NodeInfo> = nodes[..params.boot_nodes]
            .iter()
            .map(|n| n.local_node())
            .collect();

        let started = Instant::now();
        // Boot nodes first learn each other.
        for b in &nodes[..params.boot_nodes] {
            let others: Vec<NodeInfo> = boot
                .iter()
                .filter(|i| i.id != b.local_node().id)
                .copied()
                .collect();
            if !others.is_empty() {
                let _ = b.bootstrap_from(others).await;
            }
        }
        let results: Vec<(usize, bool)> = futures::stream::iter(params.boot_nodes..params.nodes)
            .map(|i| {
                let node = nodes[i].clone();
                let boot = boot.clone();
                async move { (i, node.bootstrap_from(boot).await.is_ok()) }
            })
            .buffer_unordered(BOOTSTRAP_CONCURRENCY)
            .collect()
            .await;
        let total_ms = started.elapsed().as_secs_f64() * 1e3;
        let healthy: Vec<usize> = (params.boot_nodes..params.nodes)
            .filter(|i| !faulty.contains(i))
            .collect();
        let healthy_ok = results
            .iter()
            .filter(|(i, ok)| *ok && !faulty.contains(i))
            .count();
        let sizes: Vec<usize> = healthy.iter().map(|&i| nodes[i].table_len()).collect();
        let bootstrap = BootstrapSection {
            attempted: results.len(),
            succeeded: results.iter().filter(|(_, ok)| *ok).count(),
            success_rate: rate(healthy_ok, healthy.len()),
            total_ms,
            table_size: median_min(&sizes),
        };
        Ok(Network {
            testbed,
            nodes,
            faulty,
            rng,
            bootstrap,
        })
    }

    /// Indices of the nodes that are not faulty.
    pub fn healthy(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| !self.faulty.contains(i))
            .collect()
    }

    /// Shuts every node down.
    pub async fn shutdown(self) {
        for n in self.nodes {
            n.shutdown().await;
        }
    }
}
