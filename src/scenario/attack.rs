//! What `eclipse` and `poison` share: honest nodes looking up honest targets, and the `attack` section
//! (attacker entries in honest routing tables, lookup success and cost, forged and rejected answers).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use rand::RngExt;
use rand::rngs::StdRng;

use super::network::Network;
use super::params::ScenarioParams;
use super::progress::Stage;
use super::report::{AttackSection, Spread, rate};
use crate::identity::NodeId;
use crate::sim::SimNetwork;
use crate::swarm::Swarm;

/// With a victim, every this many lookups is run by the victim.
pub const VICTIM_EVERY: usize = 10;

/// Lookups counted so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    /// Lookups run.
    pub lookups: usize,
    /// Lookups that found their target at its address.
    pub succeeded: usize,
    /// Lookups run by the victim.
    pub victim_lookups: usize,
    /// Of those, the successful ones.
    pub victim_succeeded: usize,
    /// Hops of each successful lookup.
    pub rounds: Vec<f64>,
    /// FindNode requests of each successful lookup.
    pub rpcs: Vec<f64>,
}

/// Tries to find a pair of a source and a target outside its routing table per lookup (the last pair
/// tried is used if none is found).
const PAIR_TRIES: usize = 50;

/// A source (`from` if given, else random) and a random other target of `honest`, preferably one the
/// source's table does not hold, so the lookup has to go over the network. `honest` holds at least two
/// nodes.
fn pick_pair(
    nodes: &[Swarm],
    honest: &[usize],
    from: Option<usize>,
    rng: &mut StdRng,
) -> (usize, usize) {
    let mut pick = || honest[rng.random_range(0..honest.len())];
    let mut pair = (0, 0);
    for _ in 0..PAIR_TRIES {
        let source = from.unwrap_or_else(&mut pick);
        let mut target = pick();
        while target == source {
            target = pick();
        }
        pair = (source, target);
        if !nodes[source].table_contains(&nodes[target].local_node().id) {
            break;
        }
    }
    pair
}

/// Runs `count` lookups, one after another, each by a random honest node (by `victim` every
/// [`VICTIM_EVERY`]-th time, if given) for another honest node outside its routing table (if one is
/// found in 50 draws). A lookup succeeds when it finds the target at its real address. `churn` uses it with
/// every live node as "honest".
pub async fn honest_lookups(
    nodes: &[Swarm],
    honest: &[usize],
    victim: Option<usize>,
    count: usize,
    rng: &mut StdRng,
) -> Tally {
    let mut tally = Tally::default();
    if honest.len() < 2 {
        return tally;
    }
    let stage = Stage::new("lookups", count);
    for n in 0..count {
        let by_victim = victim.filter(|_| n.is_multiple_of(VICTIM_EVERY));
        let (from, to) = pick_pair(nodes, honest, by_victim, rng);
        let target = nodes[to].local_node();
        let found = match nodes[from].lookup(&target.id).await {
            Ok((node, report)) if node.addr == target.addr => {
                tally.rounds.push(f64::from(report.rounds));
                tally.rpcs.push(f64::from(report.rpcs));
                true
            }
            Ok((node, _)) => {
                tracing::debug!(target = %target, found = %node, "lookup found a wrong address");
                false
            }
            Err(e) => {
                tracing::debug!(from, to, error = %e, "lookup failed");
                false
            }
        };
        tally.lookups += 1;
        tally.succeeded += usize::from(found);
        if by_victim.is_some() {
            tally.victim_lookups += 1;
            tally.victim_succeeded += usize::from(found);
        }
        stage.inc();
    }
    tally
}

/// Entries of `node`'s routing table whose id is in `attackers`.
pub fn attacker_entries(node: &Swarm, attackers: &BTreeSet<NodeId>) -> usize {
    node.table_snapshot()
        .iter()
        .flat_map(|(_, bucket)| bucket)
        .filter(|n| attackers.contains(&n.id))
        .count()
}

/// Runs `lookups` lookups among the `honest` nodes of `net` (see [`honest_lookups`]), then returns the
/// `attack` section: those lookups, the attacker entries counted now in the honest tables (and the
/// victim's), and the answers `sim` forged.
pub async fn measure(
    params: &ScenarioParams,
    net: &mut Network,
    sim: &SimNetwork,
    honest: &[usize],
    attackers: &BTreeSet<NodeId>,
    victim: Option<usize>,
    lookups: usize,
) -> AttackSection {
    let mut tally = honest_lookups(&net.nodes, honest, victim, lookups, &mut net.rng).await;
    let nodes = &net.nodes;
    let entries: Vec<usize> = honest
        .iter()
        .map(|&i| attacker_entries(&nodes[i], attackers))
        .collect();
    let rejected = honest
        .iter()
        .map(|&i| nodes[i].stats().findnode_bad.load(Ordering::Relaxed))
        .sum();
    AttackSection {
        attackers: attackers.len(),
        strategy: params.strategy.to_string(),
        attacker_entries_max: entries.iter().copied().max().unwrap_or(0),
        attacker_entries_mean: entries.iter().sum::<usize>() as f64 / entries.len().max(1) as f64,
        honest_tables_with_attackers: entries.iter().filter(|&&e| e > 0).count(),
        victim_attacker_entries: victim.map(|v| attacker_entries(&nodes[v], attackers)),
        victim_table_size: victim.map(|v| nodes[v].table_len()),
        lookups: tally.lookups,
        succeeded: tally.succeeded,
        honest_lookup_success_rate: rate(tally.succeeded, tally.lookups),
        victim_lookups: victim.map(|_| tally.victim_lookups),
        victim_lookup_success_rate: victim
            .map(|_| rate(tally.victim_succeeded, tally.victim_lookups)),
        rounds: Spread::of(&mut tally.rounds),
        findnode_rpcs: Spread::of(&mut tally.rpcs),
        forged_responses: sim.stats().forged,
        rejected_responses: rejected,
    }
}
