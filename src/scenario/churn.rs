//! `kadmesh bench churn`: nodes leave and join every virtual minute while live nodes look each other
//! up.
//!
//! After the usual build and bootstrap, every virtual minute: `churn_percent` of the live nodes (never
//! boot nodes, drawn with the seed) shut down, as many new nodes (new identities) start and bootstrap
//! from the boot nodes, then `lookups` lookups run, each of a random live node by another; then the
//! minute runs out and the network is sampled: nodes, open connections, runtime tasks, resident
//! memory, and the share of routing-table entries that name departed nodes. The first sample is taken after the initial bootstrap, so "flat" compares like with like.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use super::attack;
use super::network::{Network, pick_non_boot};
use super::params::ScenarioParams;
use super::progress::Stage;
use super::report::{ChurnMinute, ChurnSection, Report, Spread, peak_rss_mb, rate, rss_mb};
use crate::error::Error;
use crate::identity::NodeId;
use crate::peer::NodeInfo;
use crate::sim::SimNetwork;
use crate::swarm::Swarm;

/// One virtual minute.
const MINUTE: Duration = Duration::from_secs(60);
/// Joining nodes that bootstrap at once.
const JOIN_CONCURRENCY: usize = 64;

/// The network's footprint at one moment.
struct Footprint {
    nodes: u64,
    connections: u64,
    tasks: usize,
    rss_mb: f64,
    stale_share: f64,
}

impl Footprint {
    /// Samples the network whose live nodes are `live`.
    fn now(sim: &SimNetwork, live: &[Swarm]) -> Self {
        let stats = sim.stats();
        Self {
            nodes: stats.nodes,
            connections: stats.connections,
            tasks: tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
            rss_mb: rss_mb(),
            stale_share: stale_share(live),
        }
    }
}

/// The share of the routing-table entries of `live` nodes that name nodes no longer live.
pub fn stale_share(live: &[Swarm]) -> f64 {
    let ids: BTreeSet<NodeId> = live.iter().map(|n| n.local_node().id).collect();
    let (mut entries, mut stale) = (0, 0);
    for node in live {
        for (_, bucket) in node.table_snapshot() {
            entries += bucket.len();
            stale += bucket.iter().filter(|n| !ids.contains(&n.id)).count();
        }
    }
    rate(stale, entries)
}

/// Nodes that leave (and join) in a minute: `percent` of `live`, rounded, sparing the boot nodes.
pub fn churn_count(percent: f64, live: usize, boot_nodes: usize) -> usize {
    ((percent / 100.0) * live as f64)
        .round()
        .min(live.saturating_sub(boot_nodes) as f64) as usize
}

/// Runs the churn on a built network (without faults) and returns the `churn` section. `net.nodes`
/// holds the live nodes throughout (boot nodes first); departed nodes are shut down and dropped.
pub async fn run(net: &mut Network, params: &ScenarioParams) -> Result<ChurnSection, Error> {
    if !net.faulty.is_empty() {
        return Err(Error::Unsupported("faulty nodes in the churn scenario"));
    }
    let sim = net.testbed.sim()?.clone();
    let boot: Vec<NodeInfo> = net.nodes[..params.boot_nodes]
        .iter()
        .map(|n| n.local_node())
        .collect();
    let config = params.node_config();
    sim.run_until_idle().await;
    let start = Footprint::now(&sim, &net.nodes);
    let mut section = ChurnSection {
        churn_percent: params.churn_percent,
        minutes: params.minutes(),
        lookups_per_minute: params.lookups,
        rss_start_mb: start.rss_mb,
        tasks_start: start.tasks,
        connections_start: start.connections,
        nodes_start: start.nodes,
        ..ChurnSection::default()
    };
    let (mut rounds, mut rpcs) = (Vec::new(), Vec::new());
    let stage = Stage::new("minutes", usize::try_from(params.minutes()).unwrap_or(0));
    for minute in 1..=params.minutes() {
        let ends = Instant::now() + MINUTE;
        let count = churn_count(params.churn_percent, net.nodes.len(), params.boot_nodes);
        let leaving = pick_non_boot(net.nodes.len(), params.boot_nodes, count, &mut net.rng);
        for &i in leaving.iter().rev() {
            net.nodes.remove(i).shutdown().await;
        }
        let mut joining = Vec::with_capacity(count);
        for _ in 0..count {
            joining.push(sim.add_node(config.clone()).await?);
        }
        let failures = futures::stream::iter(&joining)
            .map(|node| node.bootstrap_from(boot.clone()))
            .buffer_unordered(JOIN_CONCURRENCY)
            .filter(|r| std::future::ready(r.is_err()))
            .count()
            .await;
        net.nodes.extend(joining);
        let everyone: Vec<usize> = (0..net.nodes.len()).collect();
        let tally =
            attack::honest_lookups(&net.nodes, &everyone, None, params.lookups, &mut net.rng).await;
        tokio::time::sleep_until(ends).await;
        let at = Footprint::now(&sim, &net.nodes);
        section.departed += count;
        section.joined += count;
        section.join_failures += failures;
        section.lookups += tally.lookups;
        section.succeeded += tally.succeeded;
        rounds.extend(tally.rounds);
        rpcs.extend(tally.rpcs);
        section.series.push(ChurnMinute {
            minute,
            departed: count,
            joined: count,
            lookups: tally.lookups,
            success_rate: rate(tally.succeeded, tally.lookups),
            nodes: at.nodes,
            connections: at.connections,
            tasks: at.tasks,
            rss_mb: at.rss_mb,
            stale_share: at.stale_share,
        });
        stage.inc();
    }
    drop(stage);
    let end = Footprint::now(&sim, &net.nodes);
    section.lookup_success_rate = rate(section.succeeded, section.lookups);
    section.rounds = Spread::of(&mut rounds);
    section.findnode_rpcs = Spread::of(&mut rpcs);
    section.peak_rss_mb = peak_rss_mb();
    section.rss_end_mb = end.rss_mb;
    section.tasks_end = end.tasks;
    section.connections_end = end.connections;
    section.nodes_end = end.nodes;
    section.stale_share_end = end.stale_share;
    Ok(section)
}

/// Builds the network, runs the churn, and fills the bootstrap and churn sections of `report`.
pub async fn run_scenario(params: &ScenarioParams, report: &mut Report) -> Result<(), Error> {
    let mut net = Network::build(params).await?;
    report.time_base = net.testbed.time_base().to_owned();
    report.bootstrap = Some(net.bootstrap.clone());
    let churn = run(&mut net, params).await;
    net.shutdown().await;
    report.churn = Some(churn?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn churn_counts_round_and_spare_boot_nodes() {
        assert_eq!(churn_count(20.0, 1000, 5), 200);
        assert_eq!(churn_count(20.0, 102, 5), 20);
        assert_eq!(churn_count(20.0, 103, 5), 21);
        assert_eq!(churn_count(0.0, 1000, 5), 0);
        assert_eq!(churn_count(100.0, 10, 5), 5);
        assert_eq!(churn_count(50.0, 3, 5), 0);
    }
}
