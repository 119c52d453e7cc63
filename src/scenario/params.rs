//! Parameters shared by the scenarios (the columns of the seed's table).

use std::fmt;
use std::time::Duration;

use crate::config::Config;
use crate::sim::Forgery;

/// Which network the nodes run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportKind {
    /// The in-memory simulator: virtual time, seeded faults.
    Sim,
    /// Real TCP on 127.0.0.1, one process.
    Tcp,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Sim => "sim",
            TransportKind::Tcp => "tcp",
        })
    }
}

/// How the faulty nodes misbehave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FaultKind {
    /// They behave.
    None,
    /// Each message they send or receive is lost with probability `drop_rate`.
    Drop,
    /// Each message they send or receive is delayed by an extra 0-3 s.
    Delay,
    /// They go offline at a random moment in their first 10 s.
    Disconnect,
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultKind::None => "none",
            FaultKind::Drop => "drop",
            FaultKind::Delay => "delay",
            FaultKind::Disconnect => "disconnect",
        })
    }
}

/// How the adversaries of `eclipse` and `poison` answer FindNode requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StrategyKind {
    /// Half of them (every other one) garbage, the other half only colluders.
    Mixed,
    /// Random bytes that do not decode.
    Garbage,
    /// Only colluders, the closest to the target first.
    Colluders,
    /// A well-formed, empty answer.
    Empty,
}

impl StrategyKind {
    /// What the `i`-th adversary answers.
    pub fn role(self, i: usize) -> Forgery {
        match self {
            StrategyKind::Mixed if i.is_multiple_of(2) => Forgery::Garbage,
            StrategyKind::Mixed | StrategyKind::Colluders => Forgery::OnlyColluders,
            StrategyKind::Garbage => Forgery::Garbage,
            StrategyKind::Empty => Forgery::Empty,
        }
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StrategyKind::Mixed => "mixed",
            StrategyKind::Garbage => "garbage",
            StrategyKind::Colluders => "colluders",
            StrategyKind::Empty => "empty",
        })
    }
}

/// Why scenario parameters were rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid scenario parameter {name}: {reason}")]
pub struct ParamError {
    /// The flag.
    pub name: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// One scenario's parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct ScenarioParams {
    /// Where the nodes run.
    pub transport: TransportKind,
    /// Nodes in all, boot nodes included.
    pub nodes: usize,
    /// Boot nodes (never faulty).
    pub boot_nodes: usize,
    /// k.
    pub bucket_size: usize,
    /// Number of buckets.
    pub bucket_count: usize,
    /// Bootstrap stops at this table size.
    pub min_table: usize,
    /// Lookup parallelism.
    pub alpha: usize,
    /// Share of faulty nodes among the non-boot nodes, percent.
    pub faulty_percent: f64,
    /// What the faulty nodes do.
    pub fault: FaultKind,
    /// Loss probability of the `drop` fault.
    pub drop_rate: f64,
    /// Sends to unknown nodes (lookups) to measure.
    pub lookups: usize,
    /// Round trips to measure (latency).
    pub messages: usize,
    /// Payload size in bytes (latency).
    pub size: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Gossip broadcasts to follow (gossip).
    pub broadcasts: usize,
    /// Gossip fanout of every node (`gossip.fanout`).
    pub fanout: usize,
    /// Sybil identities (eclipse), on top of `nodes` honest ones.
    pub attackers: usize,
    /// How adversaries answer FindNode requests (eclipse, poison).
    pub strategy: StrategyKind,
    /// Share of the live nodes that leave, and of new ones that join, every virtual minute (churn).
    pub churn_percent: f64,
    /// Virtual time the churn runs for, whole minutes (churn).
    pub duration: Duration,
    /// Disjoint lookup paths of every node (`lookup.disjoint_paths`).
    pub disjoint_paths: usize,
}

impl Default for ScenarioParams {
    fn default() -> Self {
        Self {
            transport: TransportKind::Sim,
            nodes: 1000,
            boot_nodes: 5,
            bucket_size: 20,
            bucket_count: 20,
            min_table: 20,
            alpha: 3,
            faulty_percent: 0.0,
            fault: FaultKind::None,
            drop_rate: 0.5,
            lookups: 1000,
            messages: 2000,
            size: 64,
            seed: 1,
            broadcasts: 20,
            fanout: crate::config::GossipConfig::default().fanout,
            attackers: 1000,
            strategy: StrategyKind::Mixed,
            churn_percent: 20.0,
            duration: Duration::from_secs(3600),
            disjoint_paths: crate::config::LookupSettings::default().disjoint_paths,
        }
    }
}

impl ScenarioParams {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), ParamError> {
        let err = |name, reason: String| Err(ParamError { name, reason });
        if self.nodes < 2 {
            return err("--nodes", format!("{} is below 2", self.nodes));
        }
        if self.boot_nodes == 0 || self.boot_nodes >= self.nodes {
            return err(
                "--boot-nodes",
                format!("{} is outside 1..{}", self.boot_nodes, self.nodes),
            );
        }
        if !(0.0..=100.0).contains(&self.faulty_percent) {
            return err(
                "--faulty",
                format!("{} is outside 0..=100", self.faulty_percent),
            );
        }
        if !(0.0..=1.0).contains(&self.drop_rate) {
            return err(
                "--drop-rate",
                format!("{} is outside 0..=1", self.drop_rate),
            );
        }
        if self.broadcasts == 0 {
            return err("--broadcasts", "must be at least 1".into());
        }
        if !(0.0..=100.0).contains(&self.churn_percent) {
            return err(
                "--churn",
                format!("{} is outside 0..=100", self.churn_percent),
            );
        }
        if self.duration < Duration::from_secs(60) || !self.duration.as_secs().is_multiple_of(60) {
            return err(
                "--duration",
                format!(
                    "{:?} is not a whole number of minutes (at least 1m)",
                    self.duration
                ),
            );
        }
        if self.transport == TransportKind::Tcp
            && self.fault != FaultKind::None
            && self.faulty_percent > 0.0
        {
            return err(
                "--fault",
                "faults are simulated: use --transport sim".into(),
            );
        }
        let mut config = self.node_config();
        config.listen = "127.0.0.1:0".parse().map_err(|_| ParamError {
            name: "--transport",
            reason: "no loopback".into(),
        })?;
        config.validate().map_err(|e| ParamError {
            name: match e.key {
                "dht.bucket_size" => "--bucket-size",
                "dht.bucket_count" => "--bucket-count",
                "dht.alpha" => "--alpha",
                "gossip.fanout" => "--fanout",
                "lookup.disjoint_paths" => "--disjoint-paths",
                _ => e.key,
            },
            reason: e.reason,
        })
    }

    /// The node configuration these parameters describe.
    pub fn node_config(&self) -> Config {
        let mut config = Config {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Config::default()
        };
        // Real TCP nodes all share 127.0.0.1; simulated nodes each have a /24 of their own.
        config.net.exempt_local = self.transport == TransportKind::Tcp;
        if self.transport == TransportKind::Sim {
            // Thousands of nodes in one process: keep per-node preallocations small.
            config.swarm.event_queue = crate::sim::node_config().swarm.event_queue;
        }
        config.dht.bucket_size = self.bucket_size;
        config.dht.bucket_count = self.bucket_count;
        config.dht.min_routing_table = self.min_table;
        config.dht.alpha = self.alpha;
        config.gossip.fanout = self.fanout;
        config.lookup.disjoint_paths = self.disjoint_paths;
        config
    }

    /// Number of faulty nodes.
    pub fn faulty_count(&self) -> usize {
        if self.fault == FaultKind::None {
            return 0;
        }
        self.faulty_share()
    }

    /// `faulty_percent` of the nodes, at most the non-boot nodes, whatever the fault (poison's
    /// colluders).
    pub fn faulty_share(&self) -> usize {
        let eligible = self.nodes.saturating_sub(self.boot_nodes);
        ((self.faulty_percent / 100.0) * self.nodes as f64)
            .round()
            .min(eligible as f64) as usize
    }

    /// Whole virtual minutes of churn.
    pub fn minutes(&self) -> u64 {
        self.duration.as_secs() / 60
    }
}
