use std::collections::{HashMap, HashSet};
use std::time::Duration;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};
use tokio::time::Instant;

use super::*;
use crate::dht::subnet::SubnetPolicy;

const SEC: Duration = Duration::from_secs(1);

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// A node with a random id at a random public address (so subnet limits rarely bite); the table only uses
/// the DHT id derived from the id, and the address's subnet.
fn random_node(rng: &mut StdRng) -> NodeInfo {
    let ip = [rng.random_range(11..224), rng.random(), rng.random(), 1];
    node_at(rng, std::net::SocketAddr::from((ip, 4000)))
}

/// A node with a random id at `addr`.
fn node_at(rng: &mut StdRng, addr: std::net::SocketAddr) -> NodeInfo {
    let mut bytes = [0u8; 33];
    rng.fill_bytes(&mut bytes);
    NodeInfo::new(NodeId::from_raw_unchecked(bytes), addr)
}

const A: Seen = Seen::Answered;

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
        ..TableConfig::default()
    }
}

/// The ids of bucket `idx`'s entries, most recent first.
fn order(table: &RoutingTable, idx: usize) -> Vec<NodeId> {
    let bucket = table.buckets().nth(idx).unwrap();
    bucket.entries().iter().map(|r| r.node().id).collect()
}

/// The ids of bucket `idx`'s replacement candidates, most recent first.
fn cached(table: &RoutingTable, idx: usize) -> Vec<NodeId> {
    let bucket = table.buckets().nth(idx).unwrap();
    bucket.candidates().iter().map(|r| r.node().id).collect()
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
            table.update(n, A, t0 + SEC * i as u32),
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
        table.update(&node, A, now);
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
        table.update(&me, A, Instant::now()),
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
    assert_eq!(table.update(&node, A, t0), UpdateOutcome::Inserted);
    assert_eq!(table.update(&node, A, t0 + SEC), UpdateOutcome::Refreshed);
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
        Entry::Present(e) => e.refresh(A, t0 + 10 * SEC),
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
            e.update_address(addr).unwrap();
            assert_eq!(e.node().addr, addr);
        }
        other => panic!("expected present, got {other:?}"),
    }
    assert_eq!(table.get(&n[1].id).unwrap().addr, addr);
    assert_eq!(order(&table, 0), vec![n[2].id, n[1].id, n[0].id]);
    // update() refreshes but keeps the stored address.
    table.update(&n[1], A, t0 + 5 * SEC);
    assert_eq!(table.get(&n[1].id).unwrap().addr, addr);
}

#[test]
fn full_bucket_caches_the_newcomer_and_asks_for_a_ping() {
    let t0 = Instant::now();
    let (mut table, n, newcomer) = full_bucket(3, t0);
    match table.entry(&newcomer) {
        Entry::Absent(e) => assert_eq!(
            e.insert(A, t0 + 5 * SEC),
            UpdateOutcome::PingNeeded { lru: n[0] }
        ),
        other => panic!("expected absent, got {other:?}"),
    }
    assert_eq!(table.len(), 3);
    assert!(!table.contains(&newcomer.id));
    assert_eq!(cached(&table, 0), vec![newcomer.id]);
    match table.entry(&newcomer) {
        Entry::Candidate(e) => assert_eq!(e.last_seen(), t0 + 5 * SEC),
        other => panic!("expected a candidate, got {other:?}"),
    }
    // Seeing the candidate again while the ping is out does not ask for another ping.
    assert_eq!(
        table.update(&newcomer, A, t0 + 6 * SEC),
        UpdateOutcome::Cached
    );
    // An inbound-only newcomer is refused by a full bucket.
    let inbound = node_where(table.local(), &mut rng(98), |c| c == 0);
    assert_eq!(
        table.update(&inbound, Seen::Inbound, t0 + 6 * SEC),
        UpdateOutcome::Rejected {
            reason: RejectReason::BucketFull
        }
    );
}

#[test]
fn live_lru_survives_and_the_candidate_stays_cached() {
    let t0 = Instant::now();
    let (mut table, n, newcomer) = full_bucket(3, t0);
    let t1 = t0 + 5 * SEC;
    assert_eq!(
        table.update(&newcomer, A, t1),
        UpdateOutcome::PingNeeded { lru: n[0] }
    );
    assert_eq!(
        table.on_ping_result(&n[0].id, true, t1 + SEC),
        PingOutcome::Kept
    );
    assert_eq!(order(&table, 0), vec![n[0].id, n[2].id, n[1].id]);
    assert_eq!(cached(&table, 0), vec![newcomer.id]);
    // The ping is over: the next sighting of a candidate asks for the new LRU's.
    assert_eq!(
        table.update(&newcomer, A, t1 + 2 * SEC),
        UpdateOutcome::PingNeeded { lru: n[1] }
    );
}

#[test]
fn dead_lru_is_replaced_by_the_candidate() {
    let t0 = Instant::now();
    let (mut table, n, newcomer) = full_bucket(3, t0);
    let t1 = t0 + 5 * SEC;
    table.update(&newcomer, A, t1);
    assert_eq!(
        table.on_ping_result(&n[0].id, false, t1 + SEC),
        PingOutcome::Evicted {
            removed: n[0],
            promoted: Some(newcomer)
        }
    );
    assert_eq!(order(&table, 0), vec![newcomer.id, n[2].id, n[1].id]);
    match table.entry(&newcomer) {
        Entry::Present(e) => {
            assert_eq!(e.last_seen(), t1, "promoted as last seen");
            assert!(e.is_verified());
        }
        other => panic!("expected present, got {other:?}"),
    }
    assert!(cached(&table, 0).is_empty());
    assert!(!table.contains(&n[0].id));
    // A second report for the same node finds nothing to do.
    assert_eq!(
        table.on_ping_result(&n[0].id, false, t1 + SEC),
        PingOutcome::Unknown
    );
}

#[test]
fn replacement_cache_is_most_recent_first_deduplicated_and_bounded() {
    let t0 = Instant::now();
    let (mut table, n, first) = full_bucket(3, t0);
    let mut r = rng(97);
    let more: Vec<NodeInfo> = (0..5)
        .map(|_| node_where(table.local(), &mut r, |c| c == 0))
        .collect();
    table.update(&first, A, t0 + 5 * SEC);
    for (i, m) in more.iter().enumerate() {
        // Within the pending timeout: cached, no second ping.
        assert_eq!(
            table.update(m, A, t0 + 6 * SEC + SEC * i as u32),
            UpdateOutcome::Cached
        );
    }
    // 6 candidates for a cache of 5: the oldest (`first`) went.
    assert_eq!(
        cached(&table, 0),
        vec![more[4].id, more[3].id, more[2].id, more[1].id, more[0].id]
    );
    // Seen again: to the front, once.
    table.update(&more[1], Seen::Inbound, t0 + 20 * SEC);
    assert_eq!(
        cached(&table, 0),
        vec![more[1].id, more[4].id, more[3].id, more[2].id, more[0].id]
    );
    // Removing entries promotes the most recent candidates in turn.
    assert_eq!(table.remove(&n[2].id), Some(n[2]));
    assert!(table.contains(&more[1].id));
    match table.entry(&n[1]) {
        Entry::Present(e) => assert_eq!(e.remove(), n[1]),
        other => panic!("expected present, got {other:?}"),
    }
    assert!(table.contains(&more[4].id));
    assert_eq!(cached(&table, 0), vec![more[3].id, more[2].id, more[0].id]);
    // A candidate that fails a request is dropped; a candidate can be removed.
    assert_eq!(
        table.on_request_failed(&more[2].id),
        FailureOutcome::CandidateDropped
    );
    assert_eq!(table.remove(&more[0].id), Some(more[0]));
    match table.entry(&more[3]) {
        Entry::Candidate(e) => assert_eq!(e.remove(), more[3]),
        other => panic!("expected a candidate, got {other:?}"),
    }
    assert!(cached(&table, 0).is_empty());
    assert_eq!(table.len(), 3);
    assert_eq!(table.remove(&more[0].id), None);
    assert_eq!(table.remove(&random_node(&mut r).id), None);
}

#[test]
fn a_new_ping_is_asked_for_after_the_pending_timeout() {
    let t0 = Instant::now();
    let (mut table, n, newcomer) = full_bucket(3, t0);
    let other = node_where(table.local(), &mut rng(99), |c| c == 0);
    table.update(&newcomer, A, t0 + 5 * SEC);
    let at_timeout = t0 + 15 * SEC; // exactly pending_timeout later: the ping still counts
    assert_eq!(table.update(&other, A, at_timeout), UpdateOutcome::Cached);
    let later = at_timeout + Duration::from_millis(1);
    assert_eq!(
        table.update(&newcomer, A, later),
        UpdateOutcome::PingNeeded { lru: n[0] }
    );
    // The answer promotes the most recent candidate.
    assert_eq!(
        table.on_ping_result(&n[0].id, false, later),
        PingOutcome::Evicted {
            removed: n[0],
            promoted: Some(newcomer)
        }
    );
    assert_eq!(cached(&table, 0), vec![other.id]);
}

#[test]
fn repeated_failures_evict_and_promote_and_an_answer_resets_them() {
    let t0 = Instant::now();
    let (mut table, n, newcomer) = full_bucket(3, t0);
    table.update(&newcomer, A, t0 + 5 * SEC);
    assert_eq!(
        table.on_request_failed(&n[1].id),
        FailureOutcome::Counted(1)
    );
    table.update(&n[1], A, t0 + 6 * SEC);
    assert_eq!(
        table.on_request_failed(&n[1].id),
        FailureOutcome::Counted(1)
    );
    // Inbound contact proves nothing about our requests: no reset.
    table.update(&n[1], Seen::Inbound, t0 + 7 * SEC);
    assert_eq!(
        table.on_request_failed(&n[1].id),
        FailureOutcome::Evicted {
            removed: n[1],
            promoted: Some(newcomer)
        }
    );
    assert!(!table.contains(&n[1].id));
    assert!(table.contains(&newcomer.id));
    assert_eq!(table.on_request_failed(&n[1].id), FailureOutcome::Unknown);
}

/// `count` nodes in bucket 0 at addresses `addr(i)`.
fn bucket0_at(
    local: &DhtId,
    seed: u64,
    count: usize,
    addr: impl Fn(usize) -> std::net::SocketAddr,
) -> Vec<NodeInfo> {
    let mut r = rng(seed);
    (0..count)
        .map(|i| {
            loop {
                let n = node_at(&mut r, addr(i));
                if local.common_prefix_len(&n.dht_id()) == 0 {
                    break n;
                }
            }
        })
        .collect()
}

#[test]
fn a_hundred_ids_from_one_24_leave_two_per_bucket_and_ten_in_the_table() {
    let mut r = rng(95);
    let local = DhtId::random(&mut r);
    let now = Instant::now();
    let fill = |table: &mut RoutingTable, ip: [u8; 3], r: &mut StdRng| {
        let mut rejected = Vec::new();
        for i in 0..100u8 {
            let n = node_at(r, ([ip[0], ip[1], ip[2], i], 7513).into());
            if let UpdateOutcome::Rejected { reason } = table.update(&n, A, now) {
                rejected.push(reason);
            }
        }
        rejected
    };
    let per_bucket = |table: &RoutingTable| table.buckets().map(|b| b.entries().len()).max();

    let mut table = RoutingTable::new(local, TableConfig::default());
    let rejected = fill(&mut table, [1, 2, 3], &mut r);
    assert!(per_bucket(&table) <= Some(2));
    assert!(table.len() <= 10);
    // 100 random ids spread over enough buckets to reach the table limit.
    assert_eq!(table.len(), 10);
    assert_eq!(rejected.len(), 90);
    assert!(rejected.contains(&RejectReason::SubnetBucket));
    assert!(rejected.contains(&RejectReason::SubnetTable));
    // Another /24 is not affected by the first.
    fill(&mut table, [1, 2, 4], &mut r);
    assert_eq!(table.len(), 20);

    // Loopback: limited unless the table exempts local addresses.
    let mut strict = RoutingTable::new(local, TableConfig::default());
    fill(&mut strict, [127, 0, 0], &mut r);
    assert_eq!(strict.len(), 10);
    let exempt = TableConfig {
        subnets: SubnetPolicy { exempt_local: true },
        ..TableConfig::default()
    };
    let mut lenient = RoutingTable::new(local, exempt);
    fill(&mut lenient, [127, 0, 0], &mut r);
    fill(&mut lenient, [192, 168, 1], &mut r);
    assert!(per_bucket(&lenient) > Some(2));
    assert!(lenient.len() > 20, "{}", lenient.len());
    assert!(
        lenient.subnets.iter().next().is_none(),
        "exempt nodes are not counted"
    );
    // Exemption is for local addresses only.
    let mut public = RoutingTable::new(local, exempt);
    fill(&mut public, [8, 8, 8], &mut r);
    assert_eq!(public.len(), 10);
}

#[test]
fn ipv6_counts_by_48_and_mapped_ipv4_by_24() {
    let local = DhtId::random(&mut rng(94));
    let now = Instant::now();
    let mut table = RoutingTable::new(local, cfg(4, 20));
    let v6 = bucket0_at(&local, 1, 3, |i| {
        format!("[2001:db8:1:{i}::1]:7513").parse().unwrap()
    });
    let mapped = bucket0_at(&local, 2, 3, |i| {
        format!("[::ffff:5.6.7.{i}]:7513").parse().unwrap()
    });
    let outcomes: Vec<UpdateOutcome> = v6.iter().map(|n| table.update(n, A, now)).collect();
    assert_eq!(
        outcomes[2],
        UpdateOutcome::Rejected {
            reason: RejectReason::SubnetBucket
        }
    );
    table.update(
        &node_at(&mut rng(1), "5.6.7.200:1".parse().unwrap()),
        A,
        now,
    );
    let outcomes: Vec<UpdateOutcome> = mapped.iter().map(|n| table.update(n, A, now)).collect();
    assert!(
        outcomes.contains(&UpdateOutcome::Rejected {
            reason: RejectReason::SubnetBucket
        }) || outcomes.contains(&UpdateOutcome::Rejected {
            reason: RejectReason::SubnetTable
        }),
        "{outcomes:?}"
    );
}

#[test]
fn address_changes_and_candidates_respect_the_subnet_limits() {
    let t0 = Instant::now();
    let local = DhtId::random(&mut rng(93));
    let mut table = RoutingTable::new(local, cfg(4, 3));
    let same = bucket0_at(&local, 1, 4, |i| ([9, 9, 9, i as u8], 1).into());
    let other = bucket0_at(&local, 2, 1, |_| "20.0.0.1:1".parse().unwrap())[0];
    assert_eq!(table.update(&same[0], A, t0), UpdateOutcome::Inserted);
    assert_eq!(table.update(&same[1], A, t0), UpdateOutcome::Inserted);
    assert_eq!(table.update(&other, A, t0), UpdateOutcome::Inserted);
    // Moving `other` into the full /24 is refused; the address stays.
    match table.entry(&other) {
        Entry::Present(mut e) => assert_eq!(
            e.update_address("9.9.9.77:1".parse().unwrap()),
            Err(RejectReason::SubnetBucket)
        ),
        e => panic!("{e:?}"),
    }
    assert_eq!(table.get(&other.id), Some(other));
    // A third node of the /24 cannot even be a candidate of the full bucket.
    assert_eq!(
        table.update(&same[2], A, t0),
        UpdateOutcome::Rejected {
            reason: RejectReason::SubnetBucket
        }
    );
    // Moving within the /24, or out of it, is fine and keeps the counters right.
    match table.entry(&same[0]) {
        Entry::Present(mut e) => e.update_address("30.0.0.1:1".parse().unwrap()).unwrap(),
        e => panic!("{e:?}"),
    }
    let moved = table.get(&same[0].id).unwrap();
    assert_eq!(
        table.update(&same[2], A, t0),
        UpdateOutcome::PingNeeded { lru: moved }
    );
    assert_eq!(cached(&table, 0), vec![same[2].id]);
    // When `same[0]` moves back into the /24 while the candidate waits, promotion finds the /24 full again
    // and drops the candidate.
    match table.entry(&same[0]) {
        Entry::Present(mut e) => e.update_address("9.9.9.1:1".parse().unwrap()).unwrap(),
        e => panic!("{e:?}"),
    }
    assert_eq!(table.remove(&other.id), Some(other));
    assert!(cached(&table, 0).is_empty());
    assert_eq!(table.len(), 2);
}

#[test]
fn inbound_only_entries_are_capped_and_never_served_until_they_answer() {
    let t0 = Instant::now();
    let local = DhtId::random(&mut rng(92));
    let mut table = RoutingTable::new(
        local,
        TableConfig {
            max_inbound_per_bucket: 2,
            ..cfg(4, 4)
        },
    );
    let n: Vec<NodeInfo> = nodes_in_bucket0(&local, &mut rng(91), 5);
    assert_eq!(
        table.update(&n[0], Seen::Inbound, t0),
        UpdateOutcome::Inserted
    );
    assert_eq!(
        table.update(&n[1], Seen::Inbound, t0),
        UpdateOutcome::Inserted
    );
    assert_eq!(
        table.update(&n[2], Seen::Inbound, t0),
        UpdateOutcome::Rejected {
            reason: RejectReason::InboundLimit
        }
    );
    assert_eq!(table.update(&n[3], A, t0), UpdateOutcome::Inserted);
    // Entries for us, but only the verified one for others.
    let key = n[0].dht_id();
    assert_eq!(table.nearest(&key, 10).len(), 3);
    assert_eq!(table.nearest_verified(&key, 10), vec![n[3]]);
    assert!(table.contains(&n[0].id) && !table.is_verified(&n[0].id));
    // Another inbound contact does not verify it; an answer does, and frees a slot under the cap.
    table.update(&n[0], Seen::Inbound, t0 + SEC);
    assert!(!table.is_verified(&n[0].id));
    assert_eq!(
        table.update(&n[0], A, t0 + 2 * SEC),
        UpdateOutcome::Refreshed
    );
    assert!(table.is_verified(&n[0].id));
    assert_eq!(table.nearest_verified(&key, 10), vec![n[0], n[3]]);
    assert_eq!(
        table.update(&n[2], Seen::Inbound, t0),
        UpdateOutcome::Inserted
    );
    assert_eq!(table.buckets().next().unwrap().inbound_only(), 2);
}

#[test]
fn nearest_equals_a_brute_force_sort() {
    let mut rng = rng(4);
    let now = Instant::now();
    for (buckets, k) in [(20, 20), (6, 4)] {
        let local = DhtId::random(&mut rng);
        let mut table = RoutingTable::new(local, cfg(buckets, k));
        for _ in 0..2000 {
            table.update(&random_node(&mut rng), A, now);
        }
        for cpl in [8, 10, 12] {
            table.update(&node_where(&local, &mut rng, |c| c >= cpl), A, now);
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
                assert_eq!(table.nearest_verified(&target, n), got);
            }
        }
        // A present target comes first.
        assert_eq!(table.nearest(&all[3].dht_id(), 1), vec![all[3]]);
    }
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
    let cfg = *table.config();
    let k = cfg.bucket_size;
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut subnets: HashMap<crate::dht::subnet::Subnet, usize> = HashMap::new();
    for bucket in table.buckets() {
        let entries = bucket.entries();
        let cache = bucket.candidates();
        total += entries.len();
        prop_assert!(entries.len() <= k, "bucket {} over k", bucket.index());
        prop_assert!(
            cache.is_empty() || entries.len() == k,
            "candidates wait in a bucket with room"
        );
        prop_assert!(cache.len() <= cfg.replacement_cache);
        prop_assert!(
            cache.iter().all(NodeRecord::is_verified),
            "unverified candidate"
        );
        let inbound = entries.iter().filter(|r| !r.is_verified()).count();
        prop_assert_eq!(bucket.inbound_only(), inbound);
        prop_assert!(inbound <= cfg.max_inbound_per_bucket);
        let mut in_bucket: HashMap<crate::dht::subnet::Subnet, usize> = HashMap::new();
        for r in entries {
            if let Some(s) = cfg.subnets.subnet(&r.node().addr) {
                *in_bucket.entry(s).or_default() += 1;
                *subnets.entry(s).or_default() += 1;
            }
        }
        prop_assert!(in_bucket.values().all(|&n| n <= cfg.max_per_subnet_bucket));
        let mut in_cache: HashMap<crate::dht::subnet::Subnet, usize> = HashMap::new();
        for r in cache {
            if let Some(s) = cfg.subnets.subnet(&r.node().addr) {
                *in_cache.entry(s).or_default() += 1;
            }
        }
        prop_assert!(in_cache.values().all(|&n| n <= cfg.max_per_subnet_bucket));
        for r in entries.iter().chain(cache) {
            prop_assert_eq!(*r.dht_id(), r.node().dht_id());
            prop_assert_eq!(table.bucket_index(r.dht_id()), Some(bucket.index()));
            prop_assert!(r.dht_id() != table.local(), "self in table");
            prop_assert!(seen.insert(r.node().id), "duplicate {:?}", r.node().id);
            prop_assert!(r.failures() < cfg.max_failures);
        }
        for w in entries.windows(2) {
            prop_assert!(
                w[0].last_seen() >= w[1].last_seen(),
                "not most recent first"
            );
        }
    }
    prop_assert!(subnets.values().all(|&n| n <= cfg.max_per_subnet_table));
    // The table's own counters agree with a recount.
    let counted: HashMap<_, _> = table.subnets.iter().collect();
    prop_assert_eq!(counted, subnets);
    prop_assert_eq!(table.len(), total);
    prop_assert_eq!(table.is_empty(), total == 0);
    Ok(())
}

#[derive(Clone, Debug)]
enum Op {
    Update(usize, bool),
    Insert(usize, bool),
    Refresh(usize),
    Remove(usize),
    /// Answer the ping of bucket `.0`'s LRU (if it has candidates), or of node `.0` if `.2`.
    Ping(usize, bool, bool),
    Fail(usize),
    /// Move node `.0` to the address of node `.1`.
    Move(usize, usize),
    Touch(usize),
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let node = 0..POOL;
    prop_oneof![
        4 => (node.clone(), any::<bool>()).prop_map(|(i, a)| Op::Update(i, a)),
        2 => (node.clone(), any::<bool>()).prop_map(|(i, a)| Op::Insert(i, a)),
        1 => node.clone().prop_map(Op::Refresh),
        2 => node.clone().prop_map(Op::Remove),
        3 => (node.clone(), any::<bool>(), prop::bool::weighted(0.2)).prop_map(|(i, a, r)| Op::Ping(i, a, r)),
        2 => node.clone().prop_map(Op::Fail),
        1 => (node.clone(), node).prop_map(|(i, j)| Op::Move(i, j)),
        1 => (0..5usize).prop_map(Op::Touch),
        2 => (0..6000u64).prop_map(Op::Wait),
    ]
}

/// Pool size; node 0 is the local node. With 4 buckets the pool fills bucket 0 and 1 past k = 3.
const POOL: usize = 40;

fn seen(answered: bool) -> Seen {
    if answered {
        Seen::Answered
    } else {
        Seen::Inbound
    }
}

fn apply(table: &mut RoutingTable, pool: &[NodeInfo], op: &Op, now: &mut Instant) {
    match *op {
        Op::Update(i, a) => {
            table.update(&pool[i], seen(a), *now);
        }
        Op::Insert(i, a) => {
            if let Entry::Absent(e) = table.entry(&pool[i]) {
                e.insert(seen(a), *now);
            }
        }
        Op::Refresh(i) => {
            if let Entry::Present(e) = table.entry(&pool[i]) {
                e.refresh(Seen::Answered, *now);
            }
        }
        Op::Remove(i) => {
            table.remove(&pool[i].id);
        }
        Op::Ping(i, alive, random) => {
            let lru = table
                .buckets()
                .nth(i % 4)
                .filter(|b| !b.candidates().is_empty())
                .and_then(|b| b.entries().last())
                .map(|r| r.node().id);
            let target = if random { Some(pool[i].id) } else { lru };
            if let Some(id) = target {
                table.on_ping_result(&id, alive, *now);
            }
        }
        Op::Fail(i) => {
            table.on_request_failed(&pool[i].id);
        }
        Op::Move(i, j) => {
            if let Entry::Present(mut e) = table.entry(&pool[i]) {
                let _ = e.update_address(pool[j].addr);
            }
        }
        Op::Touch(i) => table.touch_bucket(i, *now),
        Op::Wait(ms) => *now += Duration::from_millis(ms),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random inserts (answered and inbound), removals, pings, failures and moves keep every invariant,
    /// the subnet counters among them; the pool's addresses share three /24s, so the limits bite.
    #[test]
    fn random_operations_keep_the_invariants(
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..150),
    ) {
        let mut rng = rng(seed);
        let pool: Vec<NodeInfo> = (0..POOL)
            .map(|i| {
                let addr = std::net::SocketAddr::from(([5, 5, (i % 3) as u8, i as u8], 1));
                node_at(&mut rng, addr)
            })
            .collect();
        let mut table = RoutingTable::new(pool[0].dht_id(), TableConfig {
            bucket_count: 4,
            bucket_size: 3,
            pending_timeout: 5 * SEC,
            replacement_cache: 3,
            max_inbound_per_bucket: 1,
            max_per_subnet_bucket: 2,
            max_per_subnet_table: 4,
            subnets: SubnetPolicy::default(),
            max_failures: 2,
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
            table.update(n, A, now);
            now += SEC;
        }
        let watched = originals[0];
        // Pings are answered with a delay: the latest request is answered every `answer_every` newcomers.
        let mut asked: Option<NodeInfo> = None;
        for i in 0..1000 {
            let newcomer = node_where(&local, &mut rng, |c| c == 0);
            if let UpdateOutcome::PingNeeded { lru } = table.update(&newcomer, A, now) {
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
