//! The gossip scenario: after bootstrap, random non-faulty nodes broadcast on one protocol, one after
//! another, and each broadcast is followed until it settles: on the simulator until the network is idle;
//! on TCP until every non-faulty node has it and no gossip is in flight any more (or a timeout). Then
//! it is summarised: the share of the non-faulty nodes (author excluded) that received it, and when;
//! over the run, the duplicates the nodes received and the envelopes the broadcasts cost.
//!
//! Every node drains its channel in a task of its own and records each broadcast it receives, so the
//! runner also checks that no node receives a broadcast twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::RngExt;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::network::{Network, Testbed};
use super::params::ScenarioParams;
use super::report::{CoverageTimes, GossipSection, MedianMax, Report};
use super::stats::quantile;
use crate::error::Error;
use crate::swarm::Swarm;

/// Protocol the scenario's broadcasts use.
pub const PROTOCOL: &str = "bench/gossip";
/// Longest wait for one broadcast to settle (time base of the testbed).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a TCP run checks whether gossip is still in flight.
const POLL: Duration = Duration::from_millis(5);
/// The shares of the nodes whose time to coverage is reported (`p50`, `p90`, `p100`).
const SHARES: [f64; 3] = [0.5, 0.9, 1.0];

/// Runs the scenario on a built network and fills the gossip section of `report`.
///
/// Broadcast `b` carries `b` as 8 bytes big-endian. Fails only if the protocol cannot be registered.
pub async fn run(
    net: &mut Network,
    params: &ScenarioParams,
    report: &mut Report,
) -> Result<(), Error> {
    let tracker = Arc::new(Mutex::new(Tracker::new(net.nodes.len(), params.broadcasts)));
    let notify = Arc::new(Notify::new());
    let mut drains = JoinSet::new();
    for (i, node) in net.nodes.iter().enumerate() {
        let mut inbox = node.register_protocol(PROTOCOL)?;
        let (tracker, notify) = (Arc::clone(&tracker), Arc::clone(&notify));
        drains.spawn(async move {
            while let Some(message) = inbox.recv().await {
                let at = Instant::now();
                lock(&tracker).record(i, message.data(), at);
                notify.notify_one();
            }
        });
    }
    let healthy = net.healthy();
    let before = counters(&net.nodes);
    let mut outcomes = Vec::with_capacity(params.broadcasts);
    for b in 0..params.broadcasts {
        if healthy.is_empty() {
            break;
        }
        let pick = net.rng.random_range(0..healthy.len());
        let Some((author, node)) = healthy
            .get(pick)
            .and_then(|&i| Some((i, net.nodes.get(i)?)))
        else {
            break;
        };
        let population: Vec<usize> = healthy.iter().copied().filter(|&i| i != author).collect();
        lock(&tracker).start(b);
        let started = Instant::now();
        let payload = u64::try_from(b).unwrap_or(u64::MAX).to_be_bytes().to_vec();
        if let Err(e) = node.broadcast(PROTOCOL, payload).await {
            report
                .failures
                .push(format!("broadcast {b} from node {author} failed: {e}"));
        }
        settle(net, &tracker, &notify, &population).await;
        outcomes.push(lock(&tracker).summarise(&population, started));
    }
    let after = counters(&net.nodes);
    drains.abort_all();

    let broadcasts = outcomes.len().max(1) as f64;
    let mut duplicates: Vec<f64> = healthy
        .iter()
        .filter_map(|&i| Some(after.get(i)?.duplicates - before.get(i)?.duplicates))
        .map(|d| d as f64 / broadcasts)
        .collect();
    duplicates.sort_by(f64::total_cmp);
    let sent: u64 = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.sent.saturating_sub(b.sent))
        .sum();
    let coverages: Vec<f64> = outcomes.iter().map(|o| o.coverage).collect();
    let mean_time = |k: usize| {
        let times: Vec<f64> = outcomes
            .iter()
            .filter_map(|o| o.times_ms.get(k).copied().flatten())
            .collect();
        (!times.is_empty()).then(|| times.iter().sum::<f64>() / times.len() as f64)
    };
    report.gossip = Some(GossipSection {
        broadcasts: outcomes.len(),
        fanout: params.fanout,
        coverage: coverages.iter().sum::<f64>() / broadcasts,
        coverage_min: coverages.iter().copied().fold(1.0, f64::min),
        duplicates_per_node: MedianMax {
            median: quantile(&duplicates, 0.5),
            max: duplicates.last().copied().unwrap_or(0.0),
        },
        messages_per_broadcast: sent as f64 / broadcasts,
        time_to_coverage_ms: CoverageTimes {
            p50: mean_time(0),
            p90: mean_time(1),
            p100: mean_time(2),
        },
    });
    let repeats = lock(&tracker).repeats;
    if repeats > 0 {
        report.failures.push(format!(
            "{repeats} deliveries of a broadcast to a node that had already received it"
        ));
    }
    if outcomes.len() < params.broadcasts {
        report.failures.push(format!(
            "only {} of {} broadcasts ran: no non-faulty node",
            outcomes.len(),
            params.broadcasts
        ));
    }
    Ok(())
}

/// Lets broadcast settle: on the simulator, until the network is idle; on TCP, until every node of
/// `population` has it and no gossip is in flight. Either way at most [`SETTLE_TIMEOUT`].
async fn settle(net: &Network, tracker: &Mutex<Tracker>, notify: &Notify, population: &[usize]) {
    match &net.testbed {
        Testbed::Sim(sim) => {
            // Lost copies are never retried, so an idle network means the broadcast is over.
            if tokio::time::timeout(SETTLE_TIMEOUT, sim.run_until_idle())
                .await
                .is_err()
            {
                tracing::warn!("the simulated network did not go idle after a broadcast");
            }
        }
        Testbed::Tcp => {
            let deadline = Instant::now() + SETTLE_TIMEOUT;
            loop {
                if lock(tracker).received_all(population) {
                    break;
                }
                // A notification sent since the check is kept for this wait.
                if tokio::time::timeout_at(deadline, notify.notified())
                    .await
                    .is_err()
                {
                    break;
                }
            }
            // Then the relays still running and the duplicates still on the way.
            while !quiescent(&net.nodes) && Instant::now() < deadline {
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// True if no node is relaying and every gossip envelope sent has been handled by its receiver (TCP
/// loses nothing between live nodes).
fn quiescent(nodes: &[Swarm]) -> bool {
    let load = |f: fn(&crate::swarm::GossipStats) -> &AtomicU64| -> u64 {
        nodes
            .iter()
            .map(|n| f(&n.stats().gossip).load(Ordering::SeqCst))
            .sum()
    };
    nodes.iter().all(|n| n.gossip_relays_in_flight() == 0)
        && load(|s| &s.sent) == load(|s| &s.handled)
}

/// A node's gossip counters at one moment.
#[derive(Clone, Copy)]
struct Counters {
    /// Copies of already-seen messages received.
    duplicates: u64,
    /// Gossip envelopes sent.
    sent: u64,
}

fn counters(nodes: &[Swarm]) -> Vec<Counters> {
    nodes
        .iter()
        .map(|n| {
            let g = &n.stats().gossip;
            Counters {
                duplicates: g.duplicates.load(Ordering::SeqCst),
                sent: g.sent.load(Ordering::SeqCst),
            }
        })
        .collect()
}

/// How one broadcast went.
struct Outcome {
    /// Share of the nodes that received it.
    coverage: f64,
    /// Time until each of [`SHARES`] of the nodes had it, ms (none if that share never did).
    times_ms: [Option<f64>; 3],
}

/// What the nodes received, written by the drain tasks.
struct Tracker {
    /// Nodes in the network.
    nodes: usize,
    /// Broadcasts in the run.
    broadcasts: usize,
    /// Bit `b * nodes + i` is set once node `i` received broadcast `b`.
    received: Vec<u64>,
    /// The broadcast being followed.
    current: usize,
    /// When each node received the current broadcast.
    times: Vec<Option<Instant>>,
    /// Deliveries of a broadcast to a node that had already received it.
    repeats: usize,
}

impl Tracker {
    fn new(nodes: usize, broadcasts: usize) -> Self {
        Self {
            nodes,
            broadcasts,
            received: vec![0; nodes.saturating_mul(broadcasts).div_ceil(64)],
            current: 0,
            times: vec![None; nodes],
            repeats: 0,
        }
    }

    /// Starts following broadcast `b`.
    fn start(&mut self, b: usize) {
        self.current = b;
        self.times.fill(None);
    }

    /// Node `node` received `payload` at `at`.
    fn record(&mut self, node: usize, payload: &[u8], at: Instant) {
        let Some(b) = <[u8; 8]>::try_from(payload)
            .ok()
            .and_then(|p| usize::try_from(u64::from_be_bytes(p)).ok())
            .filter(|&b| b < self.broadcasts && node < self.nodes)
        else {
            return;
        };
        let bit = b * self.nodes + node;
        let Some(word) = self.received.get_mut(bit / 64) else {
            return;
        };
        let mask = 1u64 << (bit % 64);
        if *word & mask != 0 {
            self.repeats += 1;
            return;
        }
        *word |= mask;
        if b == self.current
            && let Some(t) = self.times.get_mut(node)
        {
            *t = Some(at);
        }
    }

    /// True if every node of `population` received the current broadcast.
    fn received_all(&self, population: &[usize]) -> bool {
        population
            .iter()
            .all(|&i| self.times.get(i).is_some_and(Option::is_some))
    }

    /// The current broadcast, sent at `started`, as received by `population`.
    fn summarise(&self, population: &[usize], started: Instant) -> Outcome {
        let mut ms: Vec<f64> = population
            .iter()
            .filter_map(|&i| self.times.get(i).copied().flatten())
            .map(|t| t.saturating_duration_since(started).as_secs_f64() * 1e3)
            .collect();
        ms.sort_by(f64::total_cmp);
        let coverage = if population.is_empty() {
            1.0
        } else {
            ms.len() as f64 / population.len() as f64
        };
        let times_ms = SHARES.map(|share| {
            let need = ((share * population.len() as f64).ceil() as usize).max(1);
            ms.get(need - 1).copied()
        });
        Outcome { coverage, times_ms }
    }
}

fn lock(tracker: &Mutex<Tracker>) -> MutexGuard<'_, Tracker> {
    // The tracker's fields are plain counters; a panic elsewhere leaves them usable.
    tracker.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_counts_first_receipts_repeats_and_coverage_times() {
        let start = Instant::now();
        let mut t = Tracker::new(5, 2);
        t.start(0);
        let b0 = 0u64.to_be_bytes();
        t.record(1, &b0, start + Duration::from_millis(10));
        t.record(2, &b0, start + Duration::from_millis(30));
        t.record(2, &b0, start + Duration::from_millis(40));
        t.record(3, b"not ours", start);
        t.record(3, &7u64.to_be_bytes(), start);
        assert_eq!(t.repeats, 1);
        let population = [1, 2, 3, 4];
        assert!(!t.received_all(&population));
        let o = t.summarise(&population, start);
        assert_eq!(o.coverage, 0.5);
        assert_eq!(o.times_ms, [Some(30.0), None, None]);
        t.record(3, &b0, start + Duration::from_millis(50));
        t.record(4, &b0, start + Duration::from_millis(60));
        assert!(t.received_all(&population));
        let o = t.summarise(&population, start);
        assert_eq!(o.coverage, 1.0);
        assert_eq!(o.times_ms, [Some(30.0), Some(60.0), Some(60.0)]);

        // The next broadcast starts from nothing; a late copy of the first is still a repeat.
        t.start(1);
        t.record(1, &b0, start);
        assert_eq!(t.repeats, 2);
        t.record(1, &1u64.to_be_bytes(), start + Duration::from_millis(5));
        let o = t.summarise(&[1, 2], start);
        assert_eq!(o.coverage, 0.5);
        assert_eq!(o.times_ms, [Some(5.0), None, None]);
        assert_eq!(t.summarise(&[], start).coverage, 1.0);
    }
}
