//! The seed's scenario table on the simulator: every row at 10 and 100 nodes, with each fault kind at
//! 10% faulty and three seeds, asserting the row's expected result; and reproducibility from a seed.

use kadmesh::scenario::params::{FaultKind, ScenarioParams, TransportKind};
use kadmesh::scenario::report::Report;
use kadmesh::scenario::{self, ScenarioKind};

const SEEDS: [u64; 3] = [1, 2, 3];
const FAULTS: [FaultKind; 4] = [
    FaultKind::None,
    FaultKind::Drop,
    FaultKind::Delay,
    FaultKind::Disconnect,
];

fn params(nodes: usize, fault: FaultKind, seed: u64) -> ScenarioParams {
    ScenarioParams {
        transport: TransportKind::Sim,
        nodes,
        boot_nodes: 3.min(nodes - 1),
        faulty_percent: if fault == FaultKind::None { 0.0 } else { 10.0 },
        fault,
        lookups: 20,
        messages: 20,
        seed,
        ..ScenarioParams::default()
    }
}

fn run(kind: ScenarioKind, p: &ScenarioParams) -> Report {
    p.validate().unwrap();
    let runtime = scenario::runtime_for(p).unwrap();
    let report = runtime.block_on(scenario::run(kind, p)).unwrap();
    assert!(
        report.passed(),
        "{kind} nodes={} fault={} seed={}: {:?}",
        p.nodes,
        p.fault,
        p.seed,
        report.failures
    );
    report
}

/// Runs `kind` at the given sizes for every fault kind and seed.
fn matrix(kind: ScenarioKind, sizes: &[usize]) {
    for &nodes in sizes {
        for fault in FAULTS {
            for seed in SEEDS {
                let r = run(kind, &params(nodes, fault, seed));
                if fault != FaultKind::None {
                    assert_eq!(r.fault, fault.to_string());
                }
            }
        }
    }
}

#[test]
fn bootstrap_rows() {
    matrix(ScenarioKind::Bootstrap, &[10, 100]);
}

#[test]
fn unknown_rows() {
    // With k = 20 every node of a 10-node network knows every other: there is no "unknown" node. k = 2
    // leaves the tables partial, so the row still has its meaning at that size.
    for fault in FAULTS {
        for seed in SEEDS {
            run(
                ScenarioKind::Unknown,
                &ScenarioParams {
                    bucket_size: 2,
                    lookups: 5,
                    ..params(10, fault, seed)
                },
            );
        }
    }
    matrix(ScenarioKind::Unknown, &[100]);
}

#[test]
fn one_target_rows() {
    matrix(ScenarioKind::OneTarget, &[10, 100]);
}

#[test]
fn small_rows() {
    // exchange (2 nodes), find-node (3) and latency (2): 10% of so few nodes is none faulty.
    matrix(ScenarioKind::Exchange, &[2]);
    matrix(ScenarioKind::FindNode, &[3]);
    matrix(ScenarioKind::Latency, &[2]);
}

/// A report with the machine-dependent figures cleared.
fn comparable(mut r: Report) -> Report {
    r.wall_ms = 0.0;
    r.peak_rss_mb = 0.0;
    r
}

#[test]
fn same_seed_same_report_other_seed_other_report() {
    for fault in [FaultKind::None, FaultKind::Drop] {
        let a = comparable(run(ScenarioKind::Unknown, &params(100, fault, 7)));
        let b = comparable(run(ScenarioKind::Unknown, &params(100, fault, 7)));
        assert_eq!(a, b, "fault {fault}");
        let c = comparable(run(ScenarioKind::Unknown, &params(100, fault, 8)));
        assert_ne!(a, c, "fault {fault}");
    }
}
