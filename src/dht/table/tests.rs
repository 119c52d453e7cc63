use std::collections::HashSet;
use std::time::Duration;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::*;

const SEC: Duration = Duration::from_secs(1);

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// A node with a random id; the table only uses the DHT id derived from it.
fn random_node(rng: &mut StdRng) -> NodeInfo {
    let mut bytes = [0u8; 33];
    rng.fill_bytes(&mut bytes);
    NodeInfo::new(
        NodeId::from_raw_unchecked(bytes),
        "127.0.0.1:4000".parse().unwrap(),
    )
}

/// A random node whose CPL with `local` satisfies `want`.
fn node_where(local: &DhtId, rng: &mut StdRng, want: impl Fn(u32) -> bool) -> NodeInfo {
    loop {
        let node = random_node(rng);
        if want(local.common_prefix_len(&node.dht_id())) {
            return node;
        }
    }
}

fn nodes_in_bucket0(local: &DhtId, rng: &mut StdRng, n: usize) -> Vec<NodeInfo> {
    (0..n).map(|_| node_where(local, rng, |c| c == 0)).collect()
}

fn cfg(bucket_count: usize, bucket_size: usize) -> TableConfig {
    TableConfig {
        bucket_count,
        bucket_size,
        pending_timeout: 10 * SEC,
    }
}

/// The ids of bucket `idx`'s entries, most recent first.
fn order(table: &RoutingTable, idx: usize) -> Vec<NodeId> {
    let bucket = table.buckets().nth(idx).unwrap();
    bucket.entries().iter().map(|r| r.node().id).collect()
}

fn pending(table: &RoutingTable, idx: usize) -> Option<NodeId> {
    let bucket = table.buckets().nth(idx).unwrap();
    bucket.pending().map(|r| r.node().id)
}

/// A table with `k` entries a, b, c, ... in bucket 0, inserted one second apart from `t0` (so the first
/// is the LRU), and one more bucket-0 node as the newcomer.
fn full_bucket(k: usize, t0: Instant) -> (RoutingTable, Vec<NodeInfo>, NodeInfo) {
    let mut rng = rng(7);
    let local = DhtId::random(&mut rng);
    let mut table = RoutingTable::new(local, cfg(4, k));
    let mut nodes = nodes_in_bucket0(&local, &mut rng, k + 1);
    let newcomer = nodes.pop().unwrap();
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(
            table.update(n, t0 + SEC * i as u32),
            UpdateOutcome::Inserted
        );
    }
    (table, nodes, newcomer)
}

#[test]
fn bucket_index_is_the_cpl_and_the_last_bucket_takes_longer_prefixes() {
    let mut rng = rng(1);
    let local = DhtId::random(&mut rng);
    let table = RoutingTable::new(local, TableConfig::default());
    for cpl in [0, 1, 7, 18, 19, 20, 100, 255] {
        let id = local.random_with_cpl(cpl, &mut rng);
        assert_eq!(
            table.bucket_index(&id),
            Some((cpl as usize).min(19)),
            "cpl {cpl}"
        );
    }
    assert_eq!(table.bucket_index(&local), None);

    // Inserted nodes with CPL 2, 3 and 5 all land in the last bucket of a 3-bucket table.
    let mut table = RoutingTable::new(local, cfg(3, 20));
    let now = Instant::now();
    for want in [2, 3, 5, 0, 1] {
        let node = node_where(&local, &mut rng, |c| c == want);
        table.update(&node, now);
    }
    let sizes: Vec<usize> = table.buckets().map(|b| b.entries().len()).collect();
    assert_eq!(sizes, vec![1, 1, 3]);
}

#[test]
fn self_is_never_inserted() {
    let mut rng = rng(2);
    let me = random_node(&mut rng);
    let mut table = RoutingTable::new(me.dht_id(), TableConfig::default());
    assert!(matches!(table.entry(&me), Entry::SelfEntry));
    assert_eq!(
        table.update(&me, Instant::now()),
        UpdateOutcome::Rejected {
            reason: RejectReason::SelfId
        }
    );
    assert!(table.is_empty());
    assert_eq!(
        table.on_ping_result(&me.id, false, Instant::now()),
        PingOutcome::Unknown
    );
}

#[test]
fn duplicate_insert_refreshes_instead_of_duplicating() {
    let mut rng = rng(3);
    let mut table = RoutingTable::new(DhtId::random(&mut rng), TableConfig::default());
    let node = random_node(&mut rng);
    let t0 = Instant::now();
    assert_eq!(table.update(&node, t0), UpdateOutcome::Inserted);
    assert_eq!(table.update(&node, t0 + SEC), UpdateOutcome::Refreshed);
    assert_eq!(table.len(), 1);
    match table.entry(&node) {
        Entry::Present(e) => assert_eq!(e.last_seen(), t0 + SEC),
        other => panic!("expected present, got {other:?}"),
    }
    // Absent entries insert; present ones cannot be inserted again through the entry API.
    assert!(matches!(
        table.entry(&random_node(&mut rng)),
        Entry::Absent(_)
    ));
}

#[test]
fn refresh_moves_an_entry_to_the_front() {
    let t0 = Instant::now();
    let (mut table, n, _) = full_bucket(3, t0);
    assert_eq!(order(&table, 0), vec![n[2].id, n[1].id, n[0].id]);
    match table.entry(&n[0]) {
        Entry::Present(e) => e.refresh(t0 + 10 * SEC),
        other => panic!("expected present, got {other:?}"),
    }
    assert_eq!(order(&table, 0), vec![n[0].id, n[2].id, n[1].id]);
    let bucket = table.buckets().next().unwrap();
    assert_eq!(bucket.last_touched(), Some(t0 + 10 * SEC));
}

#[test]
fn update_address_keeps_order_and_time() {
    let t0 = Instant::now();
    let (mut table, n, _) = full_bucket(3, t0);
    let addr = "10.0.0.1:9".parse().unwrap();
    match table.entry(&n[1]) {
        Entry::Present(mut e) => {
            e.update_address(addr);
            assert_eq!(e.node().addr, addr);
        }
        other => panic!("expected present, got {other:?}"),
    }
    assert_eq!(table.get(&n[1].id).unwrap().addr, addr);
    assert_eq!(order(&table, 0), vec![n[2].id, n[1].id, n[0].id]);
    // update() refreshes but keeps the stored address.
    table.update(&n[1], t0 + 5 * SEC);
    assert_eq!(table.get(&n[1].id).unwrap().addr, addr);
}

#[test]
fn full_bucket_makes_the_newcomer_pending_and_asks_for_a_ping() {
    let t0 = Instant::now();
    let (mut table, n, newcomer) = full_bucket(3, t0);
    match table.entry(&newcomer) {
        Entry::Absent(e) => assert_eq!(
            e.insert(t0 + 5 * SEC),
            InsertResult::Pending {
                disconnected_lru: n[0]
            }
        ),
        other => panic!("expected absent, got {other:?}"),
    }
    assert_eq!(table.len(), 3);
    assert!(!table.contains(&newcomer.id));
    assert_eq!(pending(&table, 0), Some(newcomer.id));
    match table.entry(&newcomer) {
        Entry::Pending(e) => assert_eq!(e.since(), t0 + 5 * SEC),
        other => panic!("expected pending, got {other:?}"),
    }
    // Seeing the candidate again does not ask for another ping.
    assert_eq!(
        table.update(&newcomer, t0 + 6 * SEC),
        UpdateOutcome::Rejected {
            reason: RejectReason::AlreadyPending
        }
    );
}

#[test]
fn live_lru_survives_and_the_candidate_is_dropped() {
    let t0 = Instant::now();
    let (mut table, n, newcomer) = full_bucket(3, t0);
    let t1 = t0 + 5 * SEC;
    assert_eq!(
        table.update(&newcomer, t1),
        UpdateOutcome::PingNeeded { lru: n[0] }
    );
    assert_eq!(
        table.on_ping_result(&n[0].id, true, t1 + SEC),
        PingOutcome::Kept {
            dropped: Some(newcomer)
        }
    );
    assert_eq!(order(&table, 0), vec![n[0].id, n[2].id, n[1].id]);
    assert_eq!(pending(&table, 0), None);
    assert!(matches!(table.entry(&newcomer), Entry::Absent(_)));
}

#[test]
fn dead_lru_is_replaced_by_the_candidate() {
    let t0 = Instant::now();
    let (mut table, n, newcomer) = full_bucket(3, t0);
    let t1 = t0 + 5 * SEC;
    table.update(&newcomer, t1);
    assert_eq!(
        table.on_ping_result(&n[0].id, false, t1 + SEC),
        PingOutcome::Evicted {
            removed: n[0],
            promoted: Some(newcomer)
        }
    );
    assert_eq!(order(&table, 0), vec![newcomer.id, n[2].id, n[1].id]);
    match table.entry(&newcomer) {
        Entry::Present(e) => assert_eq!(e.last_seen(), t1 + SEC, "promoted as seen at the answer"),
        other => panic!("expected present, got {other:?}"),
    }
    assert_eq!(pending(&table, 0), None);
    assert!(!table.contains(&n[0].id));
    // A second report for the same node finds nothing to do.
    assert_eq!(
        table.on_ping_result(&n[0].id, false, t1 + SEC),
        PingOutcome::Unknown
    );
}

#[test]
fn second_newcomer_while_pending_is_rejected() {
    let t0 = Instant::now();
    let (mut table, n, newcomer) = full_bucket(3, t0);
    let local = *table.local();
    let other = node_where(&local, &mut rng(99), |c| c == 0);
    table.update(&newcomer, t0 + 5 * SEC);
    let at_timeout = t0 + 15 * SEC; // exactly pending_timeout later: not yet stale
    match table.entry(&other) {
        Entry::Absent(e) => assert_eq!(e.insert(at_timeout), InsertResult::Full),
        other => panic!("expected absent, got {other:?}"),
    }
    assert_eq!(
        table.update(&other, at_timeout),
        UpdateOutcome::Rejected {
            reason: RejectReason::BucketFull
        }
    );
    assert_eq!(pending(&table, 0), Some(newcomer.id));
    assert_eq!(order(&table, 0), vec![n[2].id, n[1].id, n[0].id]);
}

#[test]
fn stale_pending_candidate_is_replaced() {
    let t0 = Instant::now();
    let (mut table, n, newcomer) = full_bucket(3, t0);
    let local = *table.local();
    let other = node_where(&local, &mut rng(99), |c| c == 0);
    table.update(&newcomer, t0 + 5 * SEC);
    let later = t0 + 15 * SEC + Duration::from_millis(1);
    assert_eq!(
        table.update(&other, later),
        UpdateOutcome::PingNeeded { lru: n[0] }
    );
    assert_eq!(pending(&table, 0), Some(other.id));
    assert!(matches!(table.entry(&newcomer), Entry::Absent(_)));
    // The answer now decides for the new candidate.
    assert_eq!(
        table.on_ping_result(&n[0].id, false, later),
        PingOutcome::Evicted {
            removed: n[0],
            promoted: Some(other)
        }
    );
}

#[test]
fn nearest_equals_a_brute_force_sort() {
    let mut rng = rng(4);
    let now = Instant::now();
    for (buckets, k) in [(20, 20), (6, 4)] {
        let local = DhtId::random(&mut rng);
        let mut table = RoutingTable::new(local, cfg(buckets, k));
        for _ in 0..2000 {
            table.update(&random_node(&mut rng), now);
        }
        for cpl in [8, 10, 12] {
            table.update(&node_where(&local, &mut rng, |c| c >= cpl), now);
        }
        let all: Vec<NodeInfo> = table
            .buckets()
            .flat_map(|b| b.entries().iter().map(|r| *r.node()))
            .collect();
        assert!(all.len() > 3 * k, "{}", all.len());
        let mut targets = vec![local, all[0].dht_id(), all[all.len() - 1].dht_id()];
        targets.extend((0..20).map(|_| DhtId::random(&mut rng)));
        targets.extend([0, 1, 3, 5, 18, 19, 40].map(|c| local.random_with_cpl(c, &mut rng)));
        for target in targets {
            let mut expect = all.clone();
            crate::peer::sort_by_distance(&mut expect, &target);
            for n in [0, 1, 5, 20, 21, all.len(), all.len() + 10] {
                let got = table.nearest(&target, n);
                assert_eq!(got, expect[..n.min(all.len())], "target {target} n {n}");
            }
        }
        // A present target comes first.
        assert_eq!(table.nearest(&all[3].dht_id(), 1), vec![all[3]]);
    }
}

#[test]
fn remove_an_entry_and_a_pending_candidate() {
    let t0 = Instant::now();
    let (mut table, n, newcomer) = full_bucket(3, t0);
    assert_eq!(table.remove(&random_node(&mut rng(5)).id), None);

    table.update(&newcomer, t0 + 5 * SEC);
    let stranger = node_where(table.local(), &mut rng(5), |c| c == 0);
    assert_eq!(
        table.remove(&stranger.id),
        None,
        "unknown node of a bucket with a candidate"
    );
    assert_eq!(pending(&table, 0), Some(newcomer.id));
    assert_eq!(table.remove(&newcomer.id), Some(newcomer));
    assert_eq!(pending(&table, 0), None);
    assert_eq!(table.len(), 3);
    assert_eq!(table.remove(&newcomer.id), None);

    assert_eq!(table.remove(&n[1].id), Some(n[1]));
    assert_eq!(order(&table, 0), vec![n[2].id, n[0].id]);
    assert_eq!(table.get(&n[1].id), None);

    // Removing an entry while a candidate waits gives the candidate the slot, placed by its time.
    table.update(&n[1], t0 + 6 * SEC);
    table.update(&newcomer, t0 + 7 * SEC);
    match table.entry(&n[0]) {
        Entry::Present(e) => assert_eq!(e.remove(), n[0]),
        other => panic!("expected present, got {other:?}"),
    }
    assert_eq!(order(&table, 0), vec![newcomer.id, n[1].id, n[2].id]);
    assert_eq!(pending(&table, 0), None);
    // A pending entry can be dropped through the entry API too.
    table.update(&n[0], t0 + 8 * SEC);
    match table.entry(&n[0]) {
        Entry::Pending(e) => assert_eq!(e.remove(), n[0]),
        other => panic!("expected pending, got {other:?}"),
    }
    assert_eq!(pending(&table, 0), None);
}

#[test]
fn stale_and_empty_buckets_and_touch() {
    let t0 = Instant::now();
    let (mut table, _, _) = full_bucket(3, t0);
    let t2 = t0 + 2 * SEC; // bucket 0 was last touched at t0 + 2 s
    assert_eq!(table.empty_buckets(), vec![1, 2, 3]);
    assert_eq!(table.stale_buckets(t2, SEC), vec![1, 2, 3]);
    assert_eq!(table.stale_buckets(t2 + SEC, SEC), vec![0, 1, 2, 3]);
    assert_eq!(table.stale_buckets(t2 + SEC, 2 * SEC), vec![1, 2, 3]);
    table.touch_bucket(2, t2);
    table.touch_bucket(99, t2);
    assert_eq!(table.stale_buckets(t2 + SEC, 2 * SEC), vec![1, 3]);
    assert_eq!(table.stale_buckets(t2 + 2 * SEC, 2 * SEC), vec![0, 1, 2, 3]);
}

#[test]
fn random_id_in_bucket_lands_in_that_bucket() {
    let mut rng = rng(6);
    let table = RoutingTable::new(DhtId::random(&mut rng), TableConfig::default());
    for idx in 0..20 {
        for _ in 0..10 {
            let id = table.random_id_in_bucket(idx, &mut rng);
            assert_eq!(table.bucket_index(&id), Some(idx));
        }
    }
    let id = table.random_id_in_bucket(500, &mut rng);
    assert_eq!(table.bucket_index(&id), Some(19));
}

#[test]
fn config_sizes_are_brought_into_range() {
    let table = RoutingTable::new(DhtId([0; 32]), cfg(0, 0));
    assert_eq!(
        (table.config().bucket_count, table.config().bucket_size),
        (1, 1)
    );
    assert_eq!(table.buckets().len(), 1);
    let table = RoutingTable::new(DhtId([0; 32]), cfg(1000, 3));
    assert_eq!(table.buckets().len(), 256);
}

/// Checks every structural invariant of the table.
fn check_invariants(table: &RoutingTable) -> Result<(), TestCaseError> {
    let k = table.config().bucket_size;
    let mut seen = HashSet::new();
    let mut total = 0;
    for bucket in table.buckets() {
        let entries = bucket.entries();
        total += entries.len();
        prop_assert!(entries.len() <= k, "bucket {} over k", bucket.index());
        prop_assert!(
            bucket.pending().is_none() || entries.len() == k,
            "candidate waits in a bucket with room"
        );
        for r in entries.iter().chain(bucket.pending()) {
            prop_assert_eq!(*r.dht_id(), r.node().dht_id());
            prop_assert_eq!(table.bucket_index(r.dht_id()), Some(bucket.index()));
            prop_assert!(r.dht_id() != table.local(), "self in table");
            prop_assert!(seen.insert(r.node().id), "duplicate {:?}", r.node().id);
        }
        for w in entries.windows(2) {
            prop_assert!(
                w[0].last_seen() >= w[1].last_seen(),
                "not most recent first"
            );
        }
    }
    prop_assert_eq!(table.len(), total);
    prop_assert_eq!(table.is_empty(), total == 0);
    Ok(())
}

#[derive(Clone, Debug)]
enum Op {
    Update(usize),
    Insert(usize),
    Refresh(usize),
    Remove(usize),
    /// Answer the ping of bucket `.0`'s LRU (if it has a candidate), or of node `.0` if `.2`.
    Ping(usize, bool, bool),
    Touch(usize),
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let node = 0..POOL;
    prop_oneof![
        4 => node.clone().prop_map(Op::Update),
        2 => node.clone().prop_map(Op::Insert),
        1 => node.clone().prop_map(Op::Refresh),
        2 => node.clone().prop_map(Op::Remove),
        3 => (node, any::<bool>(), prop::bool::weighted(0.2)).prop_map(|(i, a, r)| Op::Ping(i, a, r)),
        1 => (0..5usize).prop_map(Op::Touch),
        2 => (0..6000u64).prop_map(Op::Wait),
    ]
}

/// Pool size; node 0 is the local node. With 4 buckets the pool fills bucket 0 and 1 past k = 3.
const POOL: usize = 24;

fn apply(table: &mut RoutingTable, pool: &[NodeInfo], op: &Op, now: &mut Instant) {
    match *op {
        Op::Update(i) => {
            table.update(&pool[i], *now);
        }
        Op::Insert(i) => {
            if let Entry::Absent(e) = table.entry(&pool[i]) {
                e.insert(*now);
            }
        }
        Op::Refresh(i) => {
            if let Entry::Present(e) = table.entry(&pool[i]) {
                e.refresh(*now);
            }
        }
        Op::Remove(i) => {
            table.remove(&pool[i].id);
        }
        Op::Ping(i, alive, random) => {
            let lru = table
                .buckets()
                .nth(i % 4)
                .filter(|b| b.pending().is_some())
                .and_then(|b| b.entries().last())
                .map(|r| r.node().id);
            let target = if random { Some(pool[i].id) } else { lru };
            if let Some(id) = target {
                table.on_ping_result(&id, alive, *now);
            }
        }
        Op::Touch(i) => table.touch_bucket(i, *now),
        Op::Wait(ms) => *now += Duration::from_millis(ms),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_operations_keep_the_invariants(
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let mut rng = rng(seed);
        let pool: Vec<NodeInfo> = (0..POOL).map(|_| random_node(&mut rng)).collect();
        let mut table = RoutingTable::new(pool[0].dht_id(), TableConfig {
            bucket_count: 4,
            bucket_size: 3,
            pending_timeout: 5 * SEC,
        });
        let mut now = Instant::now();
        for op in &ops {
            apply(&mut table, &pool, op, &mut now);
            check_invariants(&table)?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn a_live_lru_survives_a_flood_and_a_dead_one_is_replaced(
        seed in any::<u64>(),
        dead in any::<bool>(),
        answer_every in 1usize..8,
        step_ms in 0u64..4000,
    ) {
        let mut rng = rng(seed);
        let local = DhtId::random(&mut rng);
        let mut table = RoutingTable::new(local, TableConfig::default());
        let originals = nodes_in_bucket0(&local, &mut rng, 20);
        let mut now = Instant::now();
        for n in &originals {
            table.update(n, now);
            now += SEC;
        }
        let watched = originals[0];
        // Pings are answered with a delay: the latest request is answered every `answer_every` newcomers.
        let mut asked: Option<NodeInfo> = None;
        for i in 0..1000 {
            let newcomer = node_where(&local, &mut rng, |c| c == 0);
            if let UpdateOutcome::PingNeeded { lru } = table.update(&newcomer, now) {
                asked = Some(lru);
            }
            if i % answer_every == 0
                && let Some(lru) = asked.take()
            {
                let alive = !(dead && lru.id == watched.id);
                table.on_ping_result(&lru.id, alive, now);
            }
            now += Duration::from_millis(step_ms);
            check_invariants(&table)?;
        }
        prop_assert_eq!(table.contains(&watched.id), !dead);
        // Every other original answered its pings: all of them are still there.
        for n in &originals[1..] {
            prop_assert!(table.contains(&n.id));
        }
        prop_assert_eq!(table.len(), 20);
    }
}
