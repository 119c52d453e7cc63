//! `kadmesh bench`: runs a scenario, prints a summary table, and writes the JSON report if asked.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::CliResult;
use crate::scenario::latency::{self, LatencyParams};

/// Arguments of `kadmesh bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The scenario.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// The scenarios.
#[derive(Subcommand, Debug)]
pub enum Scenario {
    /// Request/response round trips between two nodes on loopback TCP, against raw TCP.
    Latency(LatencyArgs),
}

/// Arguments of `kadmesh bench latency`.
#[derive(Args, Debug)]
pub struct LatencyArgs {
    /// Round trips to measure (each of kadmesh and raw TCP).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub messages: u32,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(0..=1_048_576))]
    pub size: u32,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// Runs the chosen scenario.
pub fn run(args: BenchArgs) -> CliResult {
    match args.scenario {
        Scenario::Latency(a) => run_latency(a),
    }
}

fn run_latency(args: LatencyArgs) -> CliResult {
    let params = LatencyParams {
        messages: args.messages as usize,
        size: args.size as usize,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(latency::run(&params))?;
    println!("scenario   latency (tcp, loopback, one process)");
    println!(
        "messages   {} round trips of {} bytes, each kind",
        report.messages, report.size
    );
    println!("                      median       p99       min       max");
    println!(
        "kadmesh (us)      {:>10.1}{:>10.1}{:>10.1}{:>10.1}",
        report.latency_us.median,
        report.latency_us.p99,
        report.latency_us.min,
        report.latency_us.max
    );
    println!(
        "raw tcp (us)      {:>10.1}{:>10.1}",
        report.baseline_tcp_rtt_us.median, report.baseline_tcp_rtt_us.p99
    );
    println!("ratio (median)    {:>10.2}", report.ratio_median);
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(ExitCode::SUCCESS)
}
