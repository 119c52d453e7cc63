//! Builds a scenario's network: boot nodes that know each other, the other nodes, the faulty set, and the
//! bootstrap of every node, measured.

use std::collections::BTreeSet;

use futures::StreamExt;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::index::sample;
use tokio::time::Instant;

use super::params::{FaultKind, ScenarioParams, TransportKind};
use super::progress::Stage;
use super::report::{BootstrapSection, median_min, rate};
use crate::config::Config;
use crate::error::Error;
use crate::peer::NodeInfo;
use crate::sim::{Fault, SimConfig, SimNetwork};
use crate::swarm::Swarm;

/// Bootstraps run at once (bounds sockets and memory on TCP).
const BOOTSTRAP_CONCURRENCY: usize = 64;

/// Where scenario nodes are started.
pub enum Testbed {
    /// Real TCP on 127.0.0.1.
    Tcp,
    /// The in-memory simulator (run it on [`SimNetwork::runtime`]).
    Sim(SimNetwork),
}

impl Testbed {
    /// A testbed for `params`.
    pub fn new(params: &ScenarioParams) -> Result<Self, Error> {
        Ok(match params.transport {
            TransportKind::Tcp => Testbed::Tcp,
            TransportKind::Sim => Testbed::Sim(SimNetwork::new(
                SimConfig {
                    drop_rate: params.drop_rate,
                    ..SimConfig::default()
                },
                params.seed,
            )),
        })
    }

    /// Starts one node.
    pub async fn spawn(&self, config: Config) -> Result<Swarm, Error> {
        match self {
            Testbed::Tcp => Swarm::start(config).await,
            Testbed::Sim(net) => net.add_node(config).await,
        }
    }

    /// Makes `node` misbehave as `fault` says (simulator only; a no-op for `FaultKind::None`).
    pub fn set_fault(&self, node: &Swarm, fault: FaultKind) -> Result<(), Error> {
        let fault = match fault {
            FaultKind::None => return Ok(()),
            FaultKind::Drop => Fault::Drop,
            FaultKind::Delay => Fault::Delay,
            FaultKind::Disconnect => Fault::Disconnect,
        };
        match self {
            Testbed::Sim(net) => net.set_fault(&node.local_node().id, fault),
            Testbed::Tcp => Err(Error::Unsupported("faults on real TCP")),
        }
    }

    /// The simulated network, for scenarios that only run on it.
    pub fn sim(&self) -> Result<&SimNetwork, Error> {
        match self {
            Testbed::Sim(net) => Ok(net),
            Testbed::Tcp => Err(Error::Unsupported("this scenario on real TCP")),
        }
    }

    /// "virtual" or "wall": what `tokio::time` measures here.
    pub fn time_base(&self) -> &'static str {
        match self {
            Testbed::Tcp => "wall",
            Testbed::Sim(_) => "virtual",
        }
    }

    /// Stops the simulator (TCP nodes are shut down one by one by their owners).
    pub async fn shutdown(&self) {
        if let Testbed::Sim(net) = self {
            net.shutdown().await;
        }
    }
}

/// Makes boot nodes learn each other: each bootstraps from all the others. Returns the first error.
pub async fn introduce(boots: &[Swarm]) -> Result<(), Error> {
    let infos: Vec<NodeInfo> = boots.iter().map(|b| b.local_node()).collect();
    let mut first_error = None;
    for b in boots {
        let others: Vec<NodeInfo> = infos
            .iter()
            .filter(|i| i.id != b.local_node().id)
            .copied()
            .collect();
        if others.is_empty() {
            continue;
        }
        if let Err(e) = b.bootstrap_from(others).await {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Picks `count` of `nodes` nodes with `rng`, never one of the first `boot_nodes`.
pub fn pick_non_boot(
    nodes: usize,
    boot_nodes: usize,
    count: usize,
    rng: &mut StdRng,
) -> BTreeSet<usize> {
    let eligible = nodes.saturating_sub(boot_nodes);
    sample(rng, eligible, count.min(eligible))
        .into_iter()
        .map(|i| i + boot_nodes)
        .collect()
}

/// Picks the faulty nodes (never the first `boot_nodes`) with `rng` and applies the fault to them.
pub fn make_faulty(
    testbed: &Testbed,
    params: &ScenarioParams,
    nodes: &[Swarm],
    rng: &mut StdRng,
) -> Result<BTreeSet<usize>, Error> {
    let faulty = pick_non_boot(nodes.len(), params.boot_nodes, params.faulty_count(), rng);
    for &i in &faulty {
        testbed.set_fault(&nodes[i], params.fault)?;
    }
    Ok(faulty)
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
    /// Starts the nodes, marks the faulty ones, bootstraps everyone from the boot nodes, then runs one
    /// round of the periodic table refresh on every node.
    pub async fn build(params: &ScenarioParams) -> Result<Network, Error> {
        Self::build_marking(params, make_faulty).await
    }

    /// Like [`Network::build`], with `mark` choosing the faulty nodes and making them misbehave, after
    /// every node started and before any bootstraps (`build` passes [`make_faulty`]).
    pub async fn build_marking(
        params: &ScenarioParams,
        mark: impl FnOnce(
            &Testbed,
            &ScenarioParams,
            &[Swarm],
            &mut StdRng,
        ) -> Result<BTreeSet<usize>, Error>,
    ) -> Result<Network, Error> {
        let testbed = Testbed::new(params)?;
        let mut rng = StdRng::seed_from_u64(params.seed);
        let config = params.node_config();
        let mut nodes = Vec::with_capacity(params.nodes);
        let stage = Stage::new("start", params.nodes);
        for _ in 0..params.nodes {
            nodes.push(testbed.spawn(config.clone()).await?);
            stage.inc();
        }
        drop(stage);
        let faulty = mark(&testbed, params, &nodes, &mut rng)?;
        let boot: Vec<NodeInfo> = nodes[..params.boot_nodes]
            .iter()
            .map(|n| n.local_node())
            .collect();

        let started = Instant::now();
        // Boot nodes first learn each other; one that cannot shows up in the expected-result check.
        let _ = introduce(&nodes[..params.boot_nodes]).await;
        let stage = Stage::new("bootstrap", params.nodes - params.boot_nodes);
        let results: Vec<(usize, bool)> = futures::stream::iter(params.boot_nodes..params.nodes)
            .map(|i| {
                let node = nodes[i].clone();
                let boot = boot.clone();
                let stage = &stage;
                async move {
                    let ok = node.bootstrap_from(boot).await.is_ok();
                    stage.inc();
                    (i, ok)
                }
            })
            .buffer_unordered(BOOTSTRAP_CONCURRENCY)
            .collect()
            .await;
        // Then one round of the periodic refresh on every node, as a running network would do: nodes that
        // joined side by side learn of each other.
        drop(stage);
        let stage = Stage::new("refresh", nodes.len());
        let _: Vec<()> = futures::stream::iter(nodes.iter().cloned())
            .map(|node| {
                let stage = &stage;
                async move {
                    if let Err(e) = node.refresh().await {
                        tracing::debug!(node = %node.local_node(), error = %e, "refresh failed");
                    }
                    stage.inc();
                }
            })
            .buffer_unordered(BOOTSTRAP_CONCURRENCY)
            .collect()
            .await;
        drop(stage);
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
        self.testbed.shutdown().await;
    }
}
