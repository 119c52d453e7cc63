//! `kadmesh bench poison`: colluders that joined like everyone else answer FindNode with garbage or with
//! only each other.
//!
//! `faulty_percent` of the nodes (never boot nodes, drawn with the seed) are marked adversarial as soon
//! as they start, before anyone bootstraps, with the scenario's strategy (default `mixed`: every other
//! colluder garbage, the rest only colluders). They have addresses like everyone's, one /24 each, so
//! they look honest and enter tables; their own lookups and pings are honest. Once the network is
//! built, honest nodes look up honest targets.

use std::collections::BTreeSet;

use super::attack;
use super::network::{Network, Testbed, pick_non_boot};
use super::params::ScenarioParams;
use super::report::{AttackSection, Report};
use crate::error::Error;
use crate::identity::NodeId;
use crate::sim::SimNetwork;
use crate::swarm::Swarm;

/// A built poisoned network.
pub struct Poison {
    /// Every node; `net.faulty` holds the colluders.
    pub net: Network,
    /// The simulated network under `net`.
    pub sim: SimNetwork,
    /// The colluders' ids.
    pub colluder_ids: BTreeSet<NodeId>,
}

/// Picks the colluders and marks them adversarial (a `mark` for [`Network::build_marking`]).
fn mark_colluders(
    testbed: &Testbed,
    params: &ScenarioParams,
    nodes: &[Swarm],
    rng: &mut rand::rngs::StdRng,
) -> Result<BTreeSet<usize>, Error> {
    let sim = testbed.sim()?;
    let colluders = pick_non_boot(nodes.len(), params.boot_nodes, params.faulty_share(), rng);
    for (pos, &i) in colluders.iter().enumerate() {
        sim.set_adversary(&nodes[i].local_node().id, Some(params.strategy.role(pos)))?;
    }
    Ok(colluders)
}

impl Poison {
    /// Starts the nodes, marks the colluders, and bootstraps everyone.
    pub async fn build(params: &ScenarioParams) -> Result<Poison, Error> {
        let net = Network::build_marking(params, mark_colluders).await?;
        let sim = net.testbed.sim()?.clone();
        let colluder_ids = net
            .faulty
            .iter()
            .map(|&i| net.nodes[i].local_node().id)
            .collect();
        Ok(Poison {
            net,
            sim,
            colluder_ids,
        })
    }

    /// Runs `lookups` honest lookups and returns the `attack` section.
    pub async fn attack(&mut self, params: &ScenarioParams, lookups: usize) -> AttackSection {
        let honest = self.net.healthy();
        let (net, sim, ids) = (&mut self.net, &self.sim, &self.colluder_ids);
        attack::measure(params, net, sim, &honest, ids, None, lookups).await
    }
}

/// Runs the scenario and fills the bootstrap and attack sections of `report`.
pub async fn run(params: &ScenarioParams, report: &mut Report) -> Result<(), Error> {
    let mut poison = Poison::build(params).await?;
    report.time_base = poison.net.testbed.time_base().to_owned();
    report.fault = params.strategy.to_string();
    report.attack = Some(poison.attack(params, params.lookups).await);
    report.bootstrap = Some(poison.net.bootstrap.clone());
    poison.net.shutdown().await;
    Ok(())
}
