//! `kadmesh bench eclipse`: Sybils from one /24 try to fill a victim's routing table and answer its
//! lookups with each other.
//!
//! `nodes` honest nodes are built and bootstrapped as usual; a victim is drawn among the non-boot ones.
//! Then `attackers` Sybil identities (random keys, drawn with the seed) start at addresses of one /24
//! ([`sybil_address`]), are marked adversarial with the scenario's strategy (default: only colluders),
//! and each pings the victim, so the victim meets them all (and keeps them where its buckets have
//! room). Honest nodes meet Sybils the normal way: through the victim's FindNode answers and the
//! Sybils' own forged answers. Finally honest nodes, the victim every
//! [`VICTIM_EVERY`](attack::VICTIM_EVERY)-th time, look
//! up honest targets.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};

use futures::StreamExt;
use rand::RngExt;

use super::attack;
use super::network::Network;
use super::params::ScenarioParams;
use super::progress::Stage;
use super::report::{AttackSection, Report};
use crate::error::Error;
use crate::identity::{Keypair, NodeId};
use crate::sim::{SIM_PORT, SimNetwork};
use crate::swarm::Swarm;

/// The Sybils' subnet: `10.66.0.0/24`.
pub const SYBIL_SUBNET: [u8; 3] = [10, 66, 0];
/// Sybils that contact the victim at once.
const CONTACT_CONCURRENCY: usize = 64;

/// The address of Sybil `j`: hosts `10.66.0.1` to `.254` on port 7513, then the same hosts on 7514, and
/// so on; `None` once the ports run out.
pub fn sybil_address(j: usize) -> Option<SocketAddr> {
    let host = u8::try_from(1 + j % 254).ok()?;
    let port = SIM_PORT.checked_add(u16::try_from(j / 254).ok()?)?;
    let [a, b, c] = SYBIL_SUBNET;
    Some(SocketAddr::from((Ipv4Addr::new(a, b, c, host), port)))
}

/// A built eclipse attack: the honest network, its victim and the Sybils.
pub struct Eclipse {
    /// The honest nodes (`faulty` is empty).
    pub net: Network,
    /// The simulated network under `net`.
    pub sim: SimNetwork,
    /// Index of the victim in `net.nodes`.
    pub victim: usize,
    /// The Sybils' Swarms.
    pub sybils: Vec<Swarm>,
    /// The Sybils' ids.
    pub sybil_ids: BTreeSet<NodeId>,
    /// Sybils whose ping the victim answered.
    pub contacted: usize,
}

impl Eclipse {
    /// Builds and bootstraps the honest network, then starts the Sybils and has them contact the victim.
    pub async fn build(params: &ScenarioParams) -> Result<Eclipse, Error> {
        let mut net = Network::build(params).await?;
        let sim = net.testbed.sim()?.clone();
        let victim = net.rng.random_range(params.boot_nodes..params.nodes);
        let config = params.node_config();
        let mut sybils = Vec::with_capacity(params.attackers);
        let stage = Stage::new("sybils", params.attackers);
        for j in 0..params.attackers {
            let addr = sybil_address(j).ok_or(Error::Unsupported("so many Sybils in one /24"))?;
            let keypair = Keypair::generate(&mut net.rng);
            let sybil = sim.add_node_at(config.clone(), keypair, addr).await?;
            sim.set_adversary(&sybil.local_node().id, Some(params.strategy.role(j)))?;
            sybils.push(sybil);
            stage.inc();
        }
        drop(stage);
        let target = net.nodes[victim].local_node();
        let contacted = futures::stream::iter(&sybils)
            .map(|sybil| async move { sybil.add_node(&target).await.is_ok() })
            .buffer_unordered(CONTACT_CONCURRENCY)
            .filter(|ok| std::future::ready(*ok))
            .count()
            .await;
        let sybil_ids = sybils.iter().map(|s| s.local_node().id).collect();
        Ok(Eclipse {
            net,
            sim,
            victim,
            sybils,
            sybil_ids,
            contacted,
        })
    }

    /// Runs `lookups` honest lookups and returns the `attack` section.
    pub async fn attack(&mut self, params: &ScenarioParams, lookups: usize) -> AttackSection {
        let honest: Vec<usize> = (0..self.net.nodes.len()).collect();
        let victim = Some(self.victim);
        let (net, sim, ids) = (&mut self.net, &self.sim, &self.sybil_ids);
        attack::measure(params, net, sim, &honest, ids, victim, lookups).await
    }

    /// Shuts the Sybils and the network down.
    pub async fn shutdown(self) {
        for s in self.sybils {
            s.shutdown().await;
        }
        self.net.shutdown().await;
    }
}

/// Runs the scenario and fills the bootstrap and attack sections of `report`.
pub async fn run(params: &ScenarioParams, report: &mut Report) -> Result<(), Error> {
    let mut eclipse = Eclipse::build(params).await?;
    report.time_base = eclipse.net.testbed.time_base().to_owned();
    report.attack = Some(eclipse.attack(params, params.lookups).await);
    report.bootstrap = Some(eclipse.net.bootstrap.clone());
    eclipse.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sybils_share_one_subnet_with_distinct_addresses() {
        let addrs: BTreeSet<SocketAddr> = (0..1000).map(|j| sybil_address(j).unwrap()).collect();
        assert_eq!(addrs.len(), 1000);
        for a in &addrs {
            let SocketAddr::V4(v4) = a else { panic!("v4") };
            assert_eq!(v4.ip().octets()[..3], SYBIL_SUBNET);
            assert_ne!(v4.ip().octets()[3], 0);
            assert_ne!(v4.ip().octets()[3], 255);
        }
        assert_eq!(sybil_address(0).unwrap().to_string(), "10.66.0.1:7513");
        assert_eq!(sybil_address(254).unwrap().to_string(), "10.66.0.1:7514");
        assert_eq!(sybil_address(254 * 60_000), None);
    }
}
