//! Benchmark and test scenarios from the seed's table, shared by `kadmesh bench` and the tests.
//!
//! Every scenario builds its network on a [`network::Testbed`] (the simulator or real TCP), runs its
//! flow, fills a [`report::Report`], and checks the row's expected result: every non-faulty node
//! bootstraps, and messages to non-faulty targets arrive, as do gossip broadcasts to non-faulty nodes
//! (all of them without faults; at least 99% with up to 10% faulty nodes; at least 95% beyond).

use std::fmt;

pub mod attack;
pub mod churn;
pub mod connections;
pub mod eclipse;
pub mod gossip;
pub mod latency;
pub mod network;
pub mod params;
pub mod poison;
pub mod progress;
pub mod report;
pub mod rows;
pub mod stats;
pub mod unknown;

use network::Network;
use params::{FaultKind, ParamError, ScenarioParams, TransportKind};
use report::Report;

use crate::error::Error;

/// The scenarios of `kadmesh bench`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenarioKind {
    /// Two nodes: a request, the answer, and the receiver learns the sender (seed row "Simple message
    /// exchange").
    Exchange,
    /// Every node sends a request to the first node and gets an answer (seed row "Multiple messages with
    /// one target node").
    OneTarget,
    /// Three nodes: 2 and 3 know only 1; 2 sends to 3 through a FindNode lookup (seed row "Send message to
    /// unknown node (Simple FindNode)").
    FindNode,
    /// Nodes bootstrap from boot nodes (seed rows "Bootstrap", with faults).
    Bootstrap,
    /// After bootstrap, sends to nodes not in the sender's table (seed rows "Send message to node we
    /// don't know after Bootstrap" and "Measure SendMessage to unknown after bootstrap").
    Unknown,
    /// Request/response round trips between two nodes against raw TCP (seed row "Measure message latency").
    Latency,
    /// New authenticated connections per second, dialer and listener in one process (TCP only).
    Connections,
    /// After bootstrap, random non-faulty nodes broadcast by gossip, one after another; coverage,
    /// duplicates, messages and time to coverage of each broadcast.
    Gossip,
    /// Sybils from one /24 try to fill a victim's table and answer lookups with each other; honest
    /// nodes then look up honest targets (simulator only).
    Eclipse,
    /// Colluders that joined normally answer FindNode with garbage or only each other; honest nodes
    /// look up honest targets (simulator only).
    Poison,
    /// Every virtual minute some nodes leave and new ones join while live nodes look each other up;
    /// lookup success and the network's footprint over time (simulator only).
    Churn,
}

impl fmt::Display for ScenarioKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScenarioKind::Exchange => "exchange",
            ScenarioKind::OneTarget => "one-target",
            ScenarioKind::FindNode => "find-node",
            ScenarioKind::Bootstrap => "bootstrap",
            ScenarioKind::Unknown => "unknown",
            ScenarioKind::Latency => "latency",
            ScenarioKind::Connections => "connections",
            ScenarioKind::Gossip => "gossip",
            ScenarioKind::Eclipse => "eclipse",
            ScenarioKind::Poison => "poison",
            ScenarioKind::Churn => "churn",
        })
    }
}

/// Runs a scenario (all but `connections`) and checks its expected result. Simulated runs must run on
/// [`SimNetwork::runtime`](crate::sim::SimNetwork::runtime) (paused virtual clock); see [`runtime_for`].
pub async fn run(kind: ScenarioKind, params: &ScenarioParams) -> Result<Report, Error> {
    let wall = std::time::Instant::now();
    let mut report = base_report(kind, params);
    match kind {
        ScenarioKind::Bootstrap | ScenarioKind::Unknown | ScenarioKind::Gossip => {
            let mut net = Network::build(params).await?;
            report.time_base = net.testbed.time_base().to_owned();
            if kind == ScenarioKind::Unknown {
                unknown::run(&mut net, params, &mut report).await?;
            }
            if kind == ScenarioKind::Gossip {
                gossip::run(&mut net, params, &mut report).await?;
            }
            report.bootstrap = Some(net.bootstrap.clone());
            net.shutdown().await;
        }
        ScenarioKind::Exchange
        | ScenarioKind::OneTarget
        | ScenarioKind::FindNode
        | ScenarioKind::Latency => {
            let testbed = network::Testbed::new(params)?;
            report.time_base = testbed.time_base().to_owned();
            match kind {
                ScenarioKind::Exchange => rows::exchange(&testbed, params, &mut report).await?,
                ScenarioKind::OneTarget => rows::one_target(&testbed, params, &mut report).await?,
                ScenarioKind::Latency => rows::latency(&testbed, params, &mut report).await?,
                _ => rows::find_node(&testbed, params, &mut report).await?,
            }
        }
        ScenarioKind::Eclipse => eclipse::run(params, &mut report).await?,
        ScenarioKind::Poison => poison::run(params, &mut report).await?,
        ScenarioKind::Churn => churn::run_scenario(params, &mut report).await?,
        ScenarioKind::Connections => {
            return Err(Error::Unsupported(
                "the connections scenario through scenario::run",
            ));
        }
    }
    check_expected(params, &mut report);
    report.wall_ms = wall.elapsed().as_secs_f64() * 1e3;
    report.peak_rss_mb = report::peak_rss_mb();
    Ok(report)
}

/// Checks `params` for `kind`: [`ScenarioParams::validate`], and the simulator-only scenarios' own
/// limits (no faults beside their own adversaries, at most [`MAX_SIM_NODES`](crate::sim::MAX_SIM_NODES)
/// nodes over the whole run).
pub fn validate(kind: ScenarioKind, params: &ScenarioParams) -> Result<(), ParamError> {
    params.validate()?;
    let err = |name, reason: String| Err(ParamError { name, reason });
    if !matches!(
        kind,
        ScenarioKind::Eclipse | ScenarioKind::Poison | ScenarioKind::Churn
    ) {
        return Ok(());
    }
    if params.transport != TransportKind::Sim {
        return err(
            "--transport",
            format!("the {kind} scenario runs on sim only"),
        );
    }
    if params.fault != FaultKind::None {
        return err(
            "--fault",
            format!("the {kind} scenario brings its own misbehaviour"),
        );
    }
    let max = crate::sim::MAX_SIM_NODES as usize;
    match kind {
        ScenarioKind::Eclipse if params.attackers == 0 => {
            err("--attackers", "must be at least 1".into())
        }
        ScenarioKind::Eclipse if params.nodes.saturating_add(params.attackers) > max => err(
            "--attackers",
            format!(
                "{} nodes and attackers exceed the simulator's {max}",
                params.nodes
            ),
        ),
        ScenarioKind::Poison if params.faulty_share() == 0 => err(
            "--faulty",
            format!(
                "{}% of {} nodes is no colluder",
                params.faulty_percent, params.nodes
            ),
        ),
        ScenarioKind::Churn => {
            let per_minute =
                churn::churn_count(params.churn_percent, params.nodes, params.boot_nodes);
            let minutes = usize::try_from(params.minutes()).unwrap_or(usize::MAX);
            let total = per_minute
                .saturating_mul(minutes)
                .saturating_add(params.nodes);
            if total > max {
                return err(
                    "--duration",
                    format!("{total} nodes over the run exceed the simulator's {max}"),
                );
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn base_report(kind: ScenarioKind, params: &ScenarioParams) -> Report {
    Report {
        scenario: kind.to_string(),
        transport: params.transport.to_string(),
        seed: params.seed,
        nodes: params.nodes,
        boot_nodes: params.boot_nodes,
        bucket_size: params.bucket_size,
        bucket_count: params.bucket_count,
        min_routing_table: params.min_table,
        alpha: params.alpha,
        faulty_percent: params.faulty_percent,
        fault: params.fault.to_string(),
        ..Report::default()
    }
}

/// Least delivery rate to non-faulty targets that passes a row with these faults.
pub fn required_delivery(params: &ScenarioParams) -> f64 {
    if params.fault == FaultKind::None || params.faulty_count() == 0 {
        1.0
    } else if params.faulty_percent <= 10.0 {
        0.99
    } else {
        0.95
    }
}

fn check_expected(params: &ScenarioParams, report: &mut Report) {
    if let Some(b) = &report.bootstrap
        && b.success_rate < 1.0
    {
        report.failures.push(format!(
            "bootstrap succeeded for {:.1}% of non-faulty nodes, expected 100%",
            b.success_rate * 100.0
        ));
    }
    if let Some(g) = &report.gossip {
        let need = required_delivery(params);
        if g.coverage < need {
            report.failures.push(format!(
                "broadcasts reached {:.2}% of non-faulty nodes on average (least {:.2}%), expected at \
                 least {:.0}%",
                g.coverage * 100.0,
                g.coverage_min * 100.0,
                need * 100.0
            ));
        }
    }
    if let Some(c) = &report.churn
        && c.nodes_end != c.nodes_start
    {
        report.failures.push(format!(
            "the network held {} nodes after the churn, {} before",
            c.nodes_end, c.nodes_start
        ));
    }
    if let Some(m) = &report.messages {
        let need = required_delivery(params);
        if m.delivery_rate < need {
            report.failures.push(format!(
                "{} of {} messages arrived ({:.1}%), expected at least {:.0}%",
                m.delivered,
                m.sent,
                m.delivery_rate * 100.0,
                need * 100.0
            ));
        }
    }
}

/// The runtime a scenario on `params.transport` needs: the simulator's paused current-thread runtime, or
/// a multi-threaded one for TCP.
pub fn runtime_for(params: &ScenarioParams) -> std::io::Result<tokio::runtime::Runtime> {
    match params.transport {
        params::TransportKind::Sim => crate::sim::SimNetwork::runtime(),
        params::TransportKind::Tcp => tokio::runtime::Runtime::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::report::{BootstrapSection, MessagesSection};

    fn report(delivered: usize, sent: usize, bootstrap_rate: f64) -> Report {
        Report {
            bootstrap: Some(BootstrapSection {
                success_rate: bootstrap_rate,
                ..BootstrapSection::default()
            }),
            messages: Some(MessagesSection {
                sent,
                delivered,
                delivery_rate: report::rate(delivered, sent),
            }),
            ..Report::default()
        }
    }

    #[test]
    fn expected_results_are_checked() {
        let healthy = ScenarioParams::default();
        let mut r = report(10, 10, 1.0);
        check_expected(&healthy, &mut r);
        assert!(r.passed());

        let mut r = report(9, 10, 1.0);
        check_expected(&healthy, &mut r);
        assert_eq!(
            r.failures.len(),
            1,
            "every message must arrive without faults"
        );

        let mut r = report(10, 10, 0.99);
        check_expected(&healthy, &mut r);
        assert_eq!(r.failures.len(), 1, "every non-faulty node must bootstrap");

        let ten = ScenarioParams {
            faulty_percent: 10.0,
            fault: FaultKind::Drop,
            ..ScenarioParams::default()
        };
        let mut r = report(99, 100, 1.0);
        check_expected(&ten, &mut r);
        assert!(r.passed(), "99% passes with 10% faulty");
        let mut r = report(98, 100, 1.0);
        check_expected(&ten, &mut r);
        assert!(!r.passed());

        let thirty = ScenarioParams {
            faulty_percent: 30.0,
            ..ten
        };
        let mut r = report(95, 100, 1.0);
        check_expected(&thirty, &mut r);
        assert!(r.passed(), "95% passes with 30% faulty");
    }
}
