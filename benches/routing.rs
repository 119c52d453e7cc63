//! Routing-table hot paths on a full 20x20 table: `update` (known node, newcomer to a full bucket) and
//! `nearest(target, 20)`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use kadmesh::dht::table::{RoutingTable, Seen, TableConfig, UpdateOutcome};
use kadmesh::identity::{DhtId, NodeId};
use kadmesh::peer::NodeInfo;
use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};
use tokio::time::Instant;

/// A node with a random id in a random public /24 (the subnet limits apply, as on a public node).
fn random_node(rng: &mut StdRng) -> NodeInfo {
    let mut bytes = [0u8; 33];
    rng.fill_bytes(&mut bytes);
    let ip = [rng.random_range(11..224), rng.random(), rng.random(), 1];
    NodeInfo::new(
        NodeId::from_raw_unchecked(bytes),
        std::net::SocketAddr::from((ip, 4000)),
    )
}

/// A table whose 20 buckets all hold 20 entries (the deep buckets take a few million random ids to fill),
/// its entries, and two more nodes for every bucket: all first ones, then all second ones.
fn full_table(now: Instant) -> (RoutingTable, Vec<NodeInfo>, Vec<NodeInfo>) {
    let mut rng = StdRng::seed_from_u64(42);
    let cfg = TableConfig::default();
    let mut table = RoutingTable::new(DhtId::random(&mut rng), cfg);
    let mut entries = Vec::new();
    let mut newcomers = vec![Vec::new(); cfg.bucket_count];
    while entries.len() < cfg.bucket_count * cfg.bucket_size
        || newcomers.iter().any(|n| n.len() < 2)
    {
        let node = random_node(&mut rng);
        let Some(idx) = table.bucket_index(&node.dht_id()) else {
            continue;
        };
        if table
            .buckets()
            .nth(idx)
            .is_some_and(|b| b.entries().len() < cfg.bucket_size)
        {
            assert_eq!(
                table.update(&node, Seen::Answered, now),
                UpdateOutcome::Inserted
            );
            entries.push(node);
        } else if newcomers[idx].len() < 2 {
            newcomers[idx].push(node);
        }
    }
    let newcomers = (0..2)
        .flat_map(|i| newcomers.iter().map(move |n| n[i]))
        .collect();
    (table, entries, newcomers)
}

fn bench_routing(c: &mut Criterion) {
    let start = Instant::now();
    let (table, entries, newcomers) = full_table(start);
    let mut rng = StdRng::seed_from_u64(7);
    let targets: Vec<DhtId> = (0..1024).map(|_| DhtId::random(&mut rng)).collect();

    c.bench_function("update/known_node", |b| {
        let mut table = table.clone();
        let (mut i, mut now) = (0, start);
        b.iter(|| {
            i = (i + 1) % entries.len();
            now += Duration::from_millis(1);
            black_box(table.update(black_box(&entries[i]), Seen::Answered, now))
        })
    });

    c.bench_function("update/newcomer_to_full_bucket", |b| {
        // Time jumps past the pending timeout each call, so every call caches the newcomer (or moves it to
        // the front of the replacement cache) and asks for a ping (the most work an insert can do).
        let mut table = table.clone();
        let (mut i, mut now) = (0, start);
        for n in newcomers.iter().chain(&newcomers) {
            now += Duration::from_secs(11);
            let outcome = table.update(n, Seen::Answered, now);
            assert!(
                matches!(outcome, UpdateOutcome::PingNeeded { .. }),
                "{outcome:?}"
            );
        }
        b.iter(|| {
            i = (i + 1) % newcomers.len();
            now += Duration::from_secs(11);
            black_box(table.update(black_box(&newcomers[i]), Seen::Answered, now))
        })
    });

    c.bench_function("nearest/20", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % targets.len();
            black_box(table.nearest(black_box(&targets[i]), 20))
        })
    });
}

criterion_group!(benches, bench_routing);
criterion_main!(benches);
