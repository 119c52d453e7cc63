//! Benchmark and test scenarios from the seed's table, shared by `kadmesh bench` and the tests.
//!
//! Every scenario builds its network on a [`network::Testbed`] (the simulator or real TCP), runs its
//! flow, fills a [`report::Report`], and checks the row's expected result: every non-faulty node
//! bootstraps, and messages to non-faulty targets arrive (all of them without faults; at least 99% with
//! up to 10% faulty nodes; at least 95% beyond).

use std::fmt;

use tokio::time::Instant;

pub mod connections;
pub mod latency;
pub mod network;
pub mod params;
pub mod report;
pub mod stats;
pub mod unknown;

use network::Network;
use params::{FaultKind, ScenarioParams};
use report::Report;

use crate::error::Error;

/// The scenarios of `kadmesh bench`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenarioKind {
    /// Nodes bootstrap from boot nodes (seed rows "Bootstrap", with faults).
    Bootstrap,
    /// After bootstrap, sends to nodes not in the sender's table (seed rows "Send message to node we
    /// don't know after Bootstrap" and "Measure SendMessage to unknown after bootstrap").
    Unknown,
    /// Request/response round trips between two nodes against raw TCP (seed row "Measure message latency").
    Latency,
    /// New authenticated connections per second, dialer and listener in one process (TCP only).
    Connections,
}

impl fmt::Display for ScenarioKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScenarioKind::Bootstrap => "bootstrap",
            ScenarioKind::Unknown => "unknown",
            ScenarioKind::Latency => "latency",
            ScenarioKind::Connections => "connections",
        })
    }
}

/// Runs a network scenario (`bootstrap` or `unknown`) and checks its expected result.
pub async fn run(kind: ScenarioKind, params: &ScenarioParams) -> Result<Report, Error> {
    let wall = std::time::Instant::now();
    let mut report = base_report(kind, params);
    let mut net = Network::build(params).await?;
    report.time_base = net.testbed.time_base().to_owned();
    let started = Instant::now();
    match kind {
        ScenarioKind::Bootstrap | ScenarioKind::Latency | ScenarioKind::Connections => {}
        ScenarioKind::Unknown => unknown::run(&mut net, params, &mut report).await?,
    }
    tracing::debug!(elapsed = ?started.elapsed(), "scenario flow done");
    report.bootstrap = Some(net.bootstrap.clone());
    net.shutdown().await;
    check_expected(params, &mut report);
    report.wall_ms = wall.elapsed().as_secs_f64() * 1e3;
    report.peak_rss_mb = report::peak_rss_mb();
    Ok(report)
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
