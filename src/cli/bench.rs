//! `kadmesh bench SCENARIO`: runs a scenario, prints a summary table, writes the JSON report if asked,
//! and exits non-zero when the scenario's expected result fails.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::CliResult;
use crate::scenario::connections::{self, ConnectionsParams};
use crate::scenario::latency::{self, LatencyParams};
use crate::scenario::params::{FaultKind, ScenarioParams, StrategyKind, TransportKind};
use crate::scenario::report::{AttackSection, ChurnSection, GossipSection, Report};
use crate::scenario::{self, ScenarioKind};

/// Arguments of `kadmesh bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The scenario.
    #[arg(value_enum)]
    pub scenario: ScenarioKind,
    /// Where the nodes run [default: sim; tcp for latency and connections].
    #[arg(long, value_enum)]
    pub transport: Option<TransportKind>,
    /// Nodes in all, boot nodes included [default: 1000 (100 on tcp); exchange 2, find-node 3,
    /// one-target 500].
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..=1_000_000))]
    pub nodes: Option<u32>,
    /// Boot nodes.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub boot_nodes: u32,
    /// Bucket size k.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub bucket_size: u32,
    /// Number of buckets.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub bucket_count: u32,
    /// Bootstrap stops at this routing-table size.
    #[arg(long, default_value_t = 20)]
    pub min_table: u32,
    /// Lookup parallelism.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub alpha: u32,
    /// Percent of the nodes that are faulty (never boot nodes); poison: colluders [default: 0; poison
    /// 20].
    #[arg(long)]
    pub faulty: Option<f64>,
    /// What faulty nodes do.
    #[arg(long, value_enum, default_value_t = FaultKind::None)]
    pub fault: FaultKind,
    /// Loss probability of the drop fault.
    #[arg(long, default_value_t = 0.5)]
    pub drop_rate: f64,
    /// Sends to unknown nodes (unknown), lookups (eclipse, poison) or lookups per virtual minute (churn)
    /// [default: 1000; 100 on tcp; churn 100].
    #[arg(long)]
    pub lookups: Option<u32>,
    /// Round trips to measure (latency).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub messages: u32,
    /// Payload size in bytes (latency).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(0..=1_048_576))]
    pub size: u32,
    /// Connections to open (connections).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=15_000))]
    pub connections: u32,
    /// Dials in flight at once (connections).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
    /// Run handshake crypto on tokio's blocking pool (connections).
    #[arg(long)]
    pub offload_handshake: bool,
    /// Broadcasts to follow (gossip).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub broadcasts: u32,
    /// Gossip fanout of every node (gossip) [default: the `gossip.fanout` default, 8].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub fanout: Option<u32>,
    /// Sybil identities, on top of the honest nodes (eclipse).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=65_535))]
    pub attackers: u32,
    /// How adversaries answer FindNode (eclipse, poison) [default: eclipse colluders; poison mixed].
    #[arg(long, value_enum)]
    pub strategy: Option<StrategyKind>,
    /// Percent of the live nodes replaced every virtual minute (churn).
    #[arg(long, default_value_t = 20.0)]
    pub churn: f64,
    /// Virtual time of the churn, whole minutes, e.g. 5m or 1h (churn).
    #[arg(long, value_name = "DURATION", default_value = "60m",
          value_parser = humantime_serde::re::humantime::parse_duration)]
    pub duration: Duration,
    /// Disjoint lookup paths of every node (S/Kademlia; 1 is a plain lookup) [default: the
    /// `lookup.disjoint_paths` default].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub disjoint_paths: Option<u32>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// Runs the chosen scenario.
pub fn run(args: BenchArgs) -> CliResult {
    match (args.scenario, args.transport) {
        (ScenarioKind::Latency, None | Some(TransportKind::Tcp)) => return run_latency(&args),
        (ScenarioKind::Connections, _) => return run_connections(&args),
        _ => {}
    }
    let transport = args.transport.unwrap_or(TransportKind::Sim);
    let small = transport == TransportKind::Tcp;
    let default_nodes = match args.scenario {
        ScenarioKind::Exchange | ScenarioKind::Latency => 2,
        ScenarioKind::FindNode => 3,
        ScenarioKind::OneTarget => 500,
        _ if small => 100,
        _ => 1000,
    };
    let params = ScenarioParams {
        transport,
        nodes: args.nodes.map_or(default_nodes, |n| n as usize),
        // In the small rows the first node plays the boot node.
        boot_nodes: match args.scenario {
            ScenarioKind::Exchange
            | ScenarioKind::FindNode
            | ScenarioKind::OneTarget
            | ScenarioKind::Latency => 1,
            _ => args.boot_nodes as usize,
        },
        bucket_size: args.bucket_size as usize,
        bucket_count: args.bucket_count as usize,
        min_table: args.min_table as usize,
        alpha: args.alpha as usize,
        faulty_percent: args.faulty.unwrap_or(match args.scenario {
            ScenarioKind::Poison => 20.0,
            _ => 0.0,
        }),
        fault: args.fault,
        drop_rate: args.drop_rate,
        lookups: args.lookups.map_or(
            if small || args.scenario == ScenarioKind::Churn {
                100
            } else {
                1000
            },
            |n| n as usize,
        ),
        messages: args.messages as usize,
        size: args.size as usize,
        seed: args.seed,
        broadcasts: args.broadcasts as usize,
        fanout: args
            .fanout
            .map_or(ScenarioParams::default().fanout, |f| f as usize),
        attackers: args.attackers as usize,
        strategy: args.strategy.unwrap_or(match args.scenario {
            ScenarioKind::Eclipse => StrategyKind::Colluders,
            _ => StrategyKind::Mixed,
        }),
        churn_percent: args.churn,
        duration: args.duration,
        disjoint_paths: args
            .disjoint_paths
            .map_or(ScenarioParams::default().disjoint_paths, |d| d as usize),
    };
    scenario::validate(args.scenario, &params)?;
    scenario::progress::enable(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let runtime = scenario::runtime_for(&params)?;
    let report = runtime.block_on(scenario::run(args.scenario, &params))?;
    print_report(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    if report.passed() {
        Ok(ExitCode::SUCCESS)
    } else {
        for f in &report.failures {
            eprintln!("kadmesh: expected result failed: {f}");
        }
        Ok(ExitCode::FAILURE)
    }
}

fn print_report(r: &Report) {
    println!(
        "scenario {}  transport {}  nodes {}  boot {}  k {}  buckets {}  alpha {}  faulty {}% ({})  seed {}",
        r.scenario,
        r.transport,
        r.nodes,
        r.boot_nodes,
        r.bucket_size,
        r.bucket_count,
        r.alpha,
        r.faulty_percent,
        r.fault,
        r.seed
    );
    if let Some(b) = &r.bootstrap {
        println!(
            "bootstrap  {}/{} ok, non-faulty success {:.1}%, {:.0} ms ({}), table size median {} min {}",
            b.succeeded,
            b.attempted,
            b.success_rate * 100.0,
            b.total_ms,
            r.time_base,
            b.table_size.median,
            b.table_size.min
        );
    }
    if let Some(l) = &r.lookups {
        println!(
            "lookups    {}/{} found ({:.1}%), {:.0} ms, avg FindNode {:.2} ms",
            l.succeeded,
            l.attempted,
            l.success_rate * 100.0,
            l.total_ms,
            l.avg_findnode_ms
        );
        println!("           median    p99    max   mean");
        println!(
            "rounds     {:>6} {:>6} {:>6} {:>6.2}",
            l.rounds.median, l.rounds.p99, l.rounds.max, l.rounds.mean
        );
        println!(
            "rpcs       {:>6} {:>6} {:>6} {:>6.2}",
            l.findnode_rpcs.median, l.findnode_rpcs.p99, l.findnode_rpcs.max, l.findnode_rpcs.mean
        );
    }
    if let Some(m) = &r.messages {
        println!(
            "messages   {}/{} delivered ({:.1}%)",
            m.delivered,
            m.sent,
            m.delivery_rate * 100.0
        );
    }
    if let Some(g) = &r.gossip {
        print_gossip(g, r.nodes, &r.time_base);
    }
    if let Some(a) = &r.attack {
        print_attack(a);
    }
    if let Some(c) = &r.churn {
        print_churn(c);
    }
    println!(
        "wall {:.0} ms, peak RSS {:.0} MiB",
        r.wall_ms, r.peak_rss_mb
    );
}

fn print_gossip(g: &GossipSection, nodes: usize, time_base: &str) {
    let ms = |t: Option<f64>| t.map_or_else(|| "never".to_owned(), |t| format!("{t:.0} ms"));
    println!(
        "gossip     {} broadcasts, fanout {}: coverage {:.2}% (min {:.2}%) of non-faulty nodes",
        g.broadcasts,
        g.fanout,
        g.coverage * 100.0,
        g.coverage_min * 100.0
    );
    println!(
        "           {:.0} messages per broadcast ({:.2} per node), duplicates per node per broadcast \
         median {:.2} max {:.2}",
        g.messages_per_broadcast,
        g.messages_per_broadcast / nodes.max(1) as f64,
        g.duplicates_per_node.median,
        g.duplicates_per_node.max
    );
    let t = &g.time_to_coverage_ms;
    println!(
        "           time to coverage ({time_base}, mean): 50% {}, 90% {}, 100% {}",
        ms(t.p50),
        ms(t.p90),
        ms(t.p100)
    );
}

fn print_attack(a: &AttackSection) {
    // The <= 10 target is the eclipse one (Sybils from one /24); poison's colluders each have a /24.
    let target = if a.victim_attacker_entries.is_some() {
        " (target <= 10)"
    } else {
        ""
    };
    println!(
        "attack     {} attackers ({}): attacker entries in honest tables max {}{target}, mean \
         {:.1}, {} tables with any",
        a.attackers,
        a.strategy,
        a.attacker_entries_max,
        a.attacker_entries_mean,
        a.honest_tables_with_attackers
    );
    if let (Some(entries), Some(size)) = (a.victim_attacker_entries, a.victim_table_size) {
        println!("           victim: {entries} attacker entries of {size}");
    }
    println!(
        "           honest lookups {}/{} found ({:.1}%, target >= 99%), rounds median {} p99 {}, \
         FindNode RPCs median {} p99 {}",
        a.succeeded,
        a.lookups,
        a.honest_lookup_success_rate * 100.0,
        a.rounds.median,
        a.rounds.p99,
        a.findnode_rpcs.median,
        a.findnode_rpcs.p99
    );
    if let (Some(n), Some(rate)) = (a.victim_lookups, a.victim_lookup_success_rate) {
        println!(
            "           of them by the victim: {n}, {:.1}% found",
            rate * 100.0
        );
    }
    println!(
        "           {} forged FindNode answers, {} rejected by honest nodes",
        a.forged_responses, a.rejected_responses
    );
}

fn print_churn(c: &ChurnSection) {
    println!(
        "churn      {}% a minute for {} virtual minutes: {} left, {} joined ({} joins failed)",
        c.churn_percent, c.minutes, c.departed, c.joined, c.join_failures
    );
    println!(
        "           lookups {}/{} found ({:.1}%, target >= 95%), rounds median {} p99 {}, FindNode RPCs \
         median {} p99 {}",
        c.succeeded,
        c.lookups,
        c.lookup_success_rate * 100.0,
        c.rounds.median,
        c.rounds.p99,
        c.findnode_rpcs.median,
        c.findnode_rpcs.p99
    );
    println!("                      start      end");
    println!("           nodes {:>10} {:>8}", c.nodes_start, c.nodes_end);
    println!(
        "           conns {:>10} {:>8}",
        c.connections_start, c.connections_end
    );
    println!("           tasks {:>10} {:>8}", c.tasks_start, c.tasks_end);
    println!(
        "           RSS   {:>7.0} MiB {:>4.0} MiB (peak {:.0} MiB)",
        c.rss_start_mb, c.rss_end_mb, c.peak_rss_mb
    );
    println!(
        "           {:.1}% of the routing-table entries name departed nodes at the end",
        c.stale_share_end * 100.0
    );
}

fn run_latency(args: &BenchArgs) -> CliResult {
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
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn run_connections(args: &BenchArgs) -> CliResult {
    if args.transport == Some(TransportKind::Sim) {
        return Err("the connections scenario runs on tcp only".into());
    }
    let params = ConnectionsParams {
        connections: args.connections as usize,
        concurrency: args.concurrency as usize,
        offload: args.offload_handshake,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(connections::run(&params))?;
    println!(
        "scenario   connections (tcp, loopback, dialer and listener in one process, handshake crypto {})",
        if report.offload_handshake {
            "on the blocking pool"
        } else {
            "inline"
        }
    );
    println!(
        "opened     {} connections in {:.0} ms: {:.0} per second ({} dials in flight)",
        report.connections, report.elapsed_ms, report.connections_per_sec, report.concurrency
    );
    println!("1 ms ticker lateness (us)   median       p99       max");
    let t = report.ticker_lateness_us;
    let i = report.idle_ticker_lateness_us;
    println!(
        "  during the storm       {:>10.0}{:>10.0}{:>10.0}",
        t.median, t.p99, t.max
    );
    println!(
        "  idle, just before      {:>10.0}{:>10.0}{:>10.0}",
        i.median, i.p99, i.max
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    if report.connections < params.connections {
        eprintln!(
            "kadmesh: only {} of {} connections were established",
            report.connections, params.connections
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
