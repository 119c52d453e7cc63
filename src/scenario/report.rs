//! The JSON report every scenario writes (keys absent where they do not apply).

use serde::Serialize;

use super::stats::{Summary, quantile};

/// Median and minimum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct MedianMin {
    /// 50th percentile.
    pub median: f64,
    /// Smallest value.
    pub min: f64,
}

/// Median, 99th percentile, maximum and mean.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Spread {
    /// 50th percentile.
    pub median: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Spread {
    /// Summarises samples.
    pub fn of(samples: &mut [f64]) -> Self {
        let s = Summary::of(samples);
        Self {
            median: s.median,
            p99: s.p99,
            max: s.max,
            mean: s.mean,
        }
    }
}

/// How the nodes bootstrapped.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BootstrapSection {
    /// Nodes that tried (non-faulty and faulty).
    pub attempted: usize,
    /// Nodes whose bootstrap succeeded.
    pub succeeded: usize,
    /// Of the non-faulty nodes, the fraction that succeeded.
    pub success_rate: f64,
    /// Time for all bootstraps, in the report's time base.
    pub total_ms: f64,
    /// Routing table sizes of the non-faulty nodes after bootstrap.
    pub table_size: MedianMin,
}

/// Lookups done by sends to unknown nodes.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LookupsSection {
    /// Lookups run.
    pub attempted: usize,
    /// Lookups that found their target.
    pub succeeded: usize,
    /// `succeeded / attempted`.
    pub success_rate: f64,
    /// Path lengths (hops) of the successful lookups.
    pub rounds: Spread,
    /// FindNode requests per lookup (the seed's "FindNode operations (Hops)").
    pub findnode_rpcs: Spread,
    /// Time of all lookups together.
    pub total_ms: f64,
    /// Mean time of one answered FindNode request.
    pub avg_findnode_ms: f64,
}

/// Messages sent by the scenario and whether they arrived.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MessagesSection {
    /// Messages sent (to non-faulty targets).
    pub sent: usize,
    /// Messages that arrived.
    pub delivered: usize,
    /// `delivered / sent`.
    pub delivery_rate: f64,
}

/// Round-trip latency in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencySection {
    /// 50th percentile.
    pub median: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl LatencySection {
    /// Summarises round trips given in microseconds.
    pub fn of(samples: &mut [f64]) -> Self {
        let s = Summary::of(samples);
        Self {
            median: s.median,
            p99: s.p99,
            min: s.min,
            max: s.max,
        }
    }
}

/// Median and maximum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct MedianMax {
    /// 50th percentile.
    pub median: f64,
    /// Largest value.
    pub max: f64,
}

/// Time from a broadcast until a share of the nodes had received it, in the report's time base: the
/// mean over the broadcasts that reached that share (`null` if none did).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct CoverageTimes {
    /// Until half of the non-faulty nodes had it.
    pub p50: Option<f64>,
    /// Until 90% of them had it.
    pub p90: Option<f64>,
    /// Until all of them had it.
    pub p100: Option<f64>,
}

/// Gossip broadcasts and how far they reached. "Nodes" are the non-faulty nodes other than the author.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GossipSection {
    /// Broadcasts followed.
    pub broadcasts: usize,
    /// Gossip fanout of every node.
    pub fanout: usize,
    /// Mean over the broadcasts of the fraction of nodes that received it.
    pub coverage: f64,
    /// Smallest such fraction.
    pub coverage_min: f64,
    /// Copies of already-seen messages a non-faulty node received, per broadcast (its total over the run
    /// divided by `broadcasts`).
    pub duplicates_per_node: MedianMax,
    /// Gossip envelopes sent by all nodes (authored and relayed), per broadcast.
    pub messages_per_broadcast: f64,
    /// How fast the broadcasts spread.
    pub time_to_coverage_ms: CoverageTimes,
}

/// Adversaries and how honest lookups fared against them (`eclipse`, `poison`). "Honest" nodes are the
/// non-adversarial ones; table counts are taken at the end of the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AttackSection {
    /// Adversarial identities.
    pub attackers: usize,
    /// How they answered FindNode requests (`mixed`, `garbage`, `colluders`, `empty`).
    pub strategy: String,
    /// Most attacker entries in any honest node's routing table.
    pub attacker_entries_max: usize,
    /// Mean attacker entries per honest routing table.
    pub attacker_entries_mean: f64,
    /// Honest nodes with at least one attacker in their table.
    pub honest_tables_with_attackers: usize,
    /// Attacker entries in the victim's table (`eclipse`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub victim_attacker_entries: Option<usize>,
    /// Size of the victim's table (`eclipse`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub victim_table_size: Option<usize>,
    /// Lookups of honest targets by honest nodes.
    pub lookups: usize,
    /// Lookups that found their target.
    pub succeeded: usize,
    /// `succeeded / lookups`.
    pub honest_lookup_success_rate: f64,
    /// Of the lookups, those run by the victim (`eclipse`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub victim_lookups: Option<usize>,
    /// Success rate of the victim's lookups (`eclipse`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub victim_lookup_success_rate: Option<f64>,
    /// Hops of the successful lookups.
    pub rounds: Spread,
    /// FindNode requests per successful lookup.
    pub findnode_rpcs: Spread,
    /// FindNode answers the simulator forged for the adversaries over the whole run.
    pub forged_responses: u64,
    /// FindNode responses the honest nodes rejected (malformed or oversized) over the whole run.
    pub rejected_responses: u64,
}

/// One virtual minute of the churn scenario, sampled at its end.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ChurnMinute {
    /// Minute number, from 1.
    pub minute: u64,
    /// Nodes that left.
    pub departed: usize,
    /// Nodes that joined.
    pub joined: usize,
    /// Lookups run.
    pub lookups: usize,
    /// Their success rate.
    pub success_rate: f64,
    /// Nodes in the simulated network.
    pub nodes: u64,
    /// Open connections.
    pub connections: u64,
    /// Tasks alive in the runtime.
    pub tasks: usize,
    /// Resident memory of the process, MiB.
    pub rss_mb: f64,
    /// Share of the live nodes' routing-table entries that name departed nodes.
    pub stale_share: f64,
}

/// Nodes leaving and joining every virtual minute while live nodes look each other up (`churn`). The
/// `*_start` figures are sampled after the initial bootstrap, the `*_end` ones after the last minute.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ChurnSection {
    /// Share of the live nodes replaced every minute, percent.
    pub churn_percent: f64,
    /// Virtual minutes run.
    pub minutes: u64,
    /// Lookups run every minute.
    pub lookups_per_minute: usize,
    /// Nodes that left in all.
    pub departed: usize,
    /// Nodes that joined in all.
    pub joined: usize,
    /// Joining nodes whose bootstrap failed (they stay in the network).
    pub join_failures: usize,
    /// Lookups of live nodes by live nodes.
    pub lookups: usize,
    /// Lookups that found their target.
    pub succeeded: usize,
    /// `succeeded / lookups`.
    pub lookup_success_rate: f64,
    /// Hops of the successful lookups.
    pub rounds: Spread,
    /// FindNode requests per successful lookup.
    pub findnode_rpcs: Spread,
    /// Peak resident memory of the process over the run, MiB.
    pub peak_rss_mb: f64,
    /// Resident memory after the initial bootstrap, MiB.
    pub rss_start_mb: f64,
    /// Resident memory at the end, MiB.
    pub rss_end_mb: f64,
    /// Tasks alive in the runtime after the initial bootstrap.
    pub tasks_start: usize,
    /// Tasks alive at the end.
    pub tasks_end: usize,
    /// Open connections after the initial bootstrap.
    pub connections_start: u64,
    /// Open connections at the end.
    pub connections_end: u64,
    /// Nodes in the simulated network after the initial bootstrap.
    pub nodes_start: u64,
    /// Nodes in the simulated network at the end.
    pub nodes_end: u64,
    /// Share of the live nodes' routing-table entries that name departed nodes, at the end.
    pub stale_share_end: f64,
    /// Minute by minute.
    pub series: Vec<ChurnMinute>,
}

impl ChurnSection {
    /// Clears the figures that depend on the machine (memory), for comparing runs.
    pub fn without_memory(mut self) -> Self {
        self.peak_rss_mb = 0.0;
        self.rss_start_mb = 0.0;
        self.rss_end_mb = 0.0;
        for m in &mut self.series {
            m.rss_mb = 0.0;
        }
        self
    }
}

/// One scenario run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// "sim" or "tcp".
    pub transport: String,
    /// Seed of every random choice.
    pub seed: u64,
    /// Nodes in the network, boot nodes included.
    pub nodes: usize,
    /// Boot nodes.
    pub boot_nodes: usize,
    /// k.
    pub bucket_size: usize,
    /// Number of buckets.
    pub bucket_count: usize,
    /// Bootstrap target table size.
    pub min_routing_table: usize,
    /// Lookup parallelism.
    pub alpha: usize,
    /// Share of faulty nodes, percent.
    pub faulty_percent: f64,
    /// Fault kind of the faulty nodes.
    pub fault: String,
    /// Bootstrap figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<BootstrapSection>,
    /// Lookup figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookups: Option<LookupsSection>,
    /// Message figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<MessagesSection>,
    /// Round-trip latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<LatencySection>,
    /// Gossip figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gossip: Option<GossipSection>,
    /// Adversaries and honest lookups (eclipse, poison).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attack: Option<AttackSection>,
    /// Churn figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub churn: Option<ChurnSection>,
    /// What the `*_ms` figures are: "virtual" (simulator clock) or "wall".
    pub time_base: String,
    /// Wall-clock time of the whole run.
    pub wall_ms: f64,
    /// Peak resident memory of the process, MiB (0 where unknown).
    pub peak_rss_mb: f64,
    /// Why the scenario's expected result failed, if it did (not part of the schema when it passed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

impl Report {
    /// True when the expected result of the row held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Table-size median and minimum of `sizes`.
pub fn median_min(sizes: &[usize]) -> MedianMin {
    let mut v: Vec<f64> = sizes.iter().map(|&s| s as f64).collect();
    v.sort_by(f64::total_cmp);
    MedianMin {
        median: quantile(&v, 0.5),
        min: v.first().copied().unwrap_or(0.0),
    }
}

/// Peak resident set size of this process in MiB, from `/proc/self/status` (0 where unavailable).
pub fn peak_rss_mb() -> f64 {
    status_mb("VmHWM:")
}

/// Resident set size of this process now in MiB, from `/proc/self/status` (0 where unavailable).
pub fn rss_mb() -> f64 {
    status_mb("VmRSS:")
}

/// The `/proc/self/status` line starting with `key` (a size in kB), in MiB.
fn status_mb(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// `part / whole`, 0 for an empty whole.
pub fn rate(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}
