use std::collections::{HashMap, HashSet};
use std::time::Duration;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};
use tokio::time::Instant;

use super::*;
use crate::dht::subnet::SubnetPolicy;

const MS: Duration = Duration::from_millis(1);

/// A node with a random id; `port` picks its address: a /24 of its own (`20.p.p.1`) and port 1000 + p, so
/// ports keep their order and no subnet limit bites.
fn node(rng: &mut StdRng, port: u16) -> NodeInfo {
    let mut bytes = [0u8; 33];
    rng.fill_bytes(&mut bytes);
    let [hi, lo] = port.to_be_bytes();
    NodeInfo::new(
        NodeId::from_raw_unchecked(bytes),
        ([20, hi, lo, 1], port.wrapping_add(1000).max(1)).into(),
    )
}

/// What an honest node answers from the nodes it knows: not itself, sorted by distance to `key`, at most
/// `k`.
fn honest(me: &NodeInfo, known: &[NodeInfo], key: &DhtId, k: usize) -> Vec<NodeInfo> {
    let mut v: Vec<NodeInfo> = crate::peer::union(known, &[])
        .into_iter()
        .filter(|n| n.id != me.id)
        .collect();
    crate::peer::sort_by_distance(&mut v, key);
    v.truncate(k);
    v
}

fn nodes(seed: u64, n: usize) -> Vec<NodeInfo> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|i| node(&mut rng, i as u16)).collect()
}

fn sorted(mut v: Vec<NodeInfo>, key: &DhtId) -> Vec<NodeInfo> {
    crate::peer::sort_by_distance(&mut v, key);
    v
}

fn cfg(alpha: usize, k: usize) -> LookupConfig {
    LookupConfig {
        alpha,
        k,
        ..LookupConfig::default()
    }
}

fn query(lookup: &mut Lookup, now: Instant) -> NodeInfo {
    match lookup.next(now) {
        LookupAction::Query(n) => n,
        other => panic!("expected a query, got {other:?}"),
    }
}

fn outcome(lookup: &mut Lookup, now: Instant) -> LookupOutcome {
    match lookup.next(now) {
        LookupAction::Finished(o) => o,
        other => panic!("expected the end, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------------------
// A driver: answers queries through a responder, delivers them in time order, checks invariants each step.
// ---------------------------------------------------------------------------------------------------------

/// How a queried node reacts.
enum Reply {
    /// Answers with these nodes after this delay.
    Answer(Duration, Vec<NodeInfo>),
    /// Reports a failure after this delay.
    Fail(Duration),
    /// Never answers (the request times out).
    Silent,
}

struct Driven {
    outcome: LookupOutcome,
    max_in_flight: usize,
    /// The longest the candidate list got.
    max_candidates: usize,
}

/// Drives `lookup` to the end. Asserts on every step: at most `alpha` requests in flight (counted by the
/// driver, independently of the lookup), the lookup's own count agrees, no node queried twice, never
/// ourselves, time always advances, and no more than `max_steps` steps.
fn drive(
    lookup: &mut Lookup,
    local: NodeId,
    start: Instant,
    max_steps: usize,
    respond: &mut dyn FnMut(&NodeInfo) -> Reply,
) -> Driven {
    let (alpha, timeout) = (
        lookup.cfg.alpha * lookup.cfg.disjoint_paths,
        lookup.cfg.request_timeout,
    );
    let mut now = start;
    let mut events: Vec<(Instant, NodeId, Option<Vec<NodeInfo>>)> = Vec::new();
    let mut outstanding: HashMap<NodeId, Instant> = HashMap::new();
    let mut queried = HashSet::new();
    let (mut steps, mut max_in_flight, mut max_candidates) = (0, 0, 0);
    loop {
        steps += 1;
        max_candidates = max_candidates.max(lookup.all_candidates().len());
        assert!(steps <= max_steps, "no end after {max_steps} steps");
        match lookup.next(now) {
            LookupAction::Finished(outcome) => {
                return Driven {
                    outcome,
                    max_in_flight,
                    max_candidates,
                };
            }
            LookupAction::Query(n) => {
                assert_ne!(n.id, local, "queried ourselves");
                assert!(queried.insert(n.id), "queried {:?} twice", n.id);
                outstanding.insert(n.id, now);
                outstanding.retain(|_, sent| now < *sent + timeout);
                assert!(
                    outstanding.len() <= alpha,
                    "{} in flight",
                    outstanding.len()
                );
                assert_eq!(lookup.in_flight(), outstanding.len());
                max_in_flight = max_in_flight.max(outstanding.len());
                match respond(&n) {
                    Reply::Answer(delay, nodes) => events.push((now + delay, n.id, Some(nodes))),
                    Reply::Fail(delay) => events.push((now + delay, n.id, None)),
                    Reply::Silent => {}
                }
            }
            LookupAction::Wait(deadline) => {
                if let Some(d) = deadline {
                    assert!(d > now, "deadline {d:?} not after now {now:?}");
                }
                let due = (0..events.len())
                    .min_by_key(|&i| events[i].0)
                    .filter(|&i| deadline.is_none_or(|d| events[i].0 <= d));
                if let Some(i) = due {
                    let (at, from, reply) = events.swap_remove(i);
                    now = now.max(at);
                    outstanding.remove(&from);
                    match reply {
                        Some(nodes) => {
                            lookup.on_response(&from, nodes, now);
                        }
                        None => lookup.on_failure(&from, now),
                    }
                } else {
                    now = deadline.expect("stalled: nothing pending and no deadline");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Unit tests
// ---------------------------------------------------------------------------------------------------------

#[test]
fn empty_seeds_finish_immediately() {
    let t0 = Instant::now();
    let n = nodes(1, 2);
    let local = n[0].id;
    for seeds in [vec![], vec![n[0]]] {
        let mut node_lookup = Lookup::new(
            LookupTarget::Node(n[1].id),
            local,
            seeds.clone(),
            cfg(3, 20),
            t0,
        );
        assert!(node_lookup.is_finished());
        let o = outcome(&mut node_lookup, t0);
        assert_eq!(o.result, LookupResult::NotFound);
        assert_eq!((o.report.rpcs, o.report.rounds), (0, 0));

        let key = n[1].dht_id();
        let mut closest = Lookup::new(LookupTarget::Closest(key), local, seeds, cfg(3, 20), t0);
        assert!(closest.is_finished());
        assert_eq!(
            outcome(&mut closest, t0).result,
            LookupResult::Closest(vec![])
        );
        assert_eq!(closest.target(), &LookupTarget::Closest(key));
    }
}

#[test]
fn target_among_seeds_is_found_in_round_zero() {
    let t0 = Instant::now();
    let n = nodes(2, 5);
    let mut lookup = Lookup::new(
        LookupTarget::Node(n[3].id),
        n[0].id,
        n[1..].to_vec(),
        cfg(3, 20),
        t0,
    );
    let o = outcome(&mut lookup, t0 + MS);
    assert_eq!(o.result, LookupResult::Found(n[3]));
    assert_eq!(o.report.rounds, 0);
    assert_eq!(o.report.rpcs, 0);
    assert_eq!(o.report.elapsed, Duration::ZERO);
    // Finished is returned again, unchanged.
    assert_eq!(outcome(&mut lookup, t0 + 2 * MS), o);
}

#[test]
fn node_mode_finds_target_and_counts_hops() {
    let t0 = Instant::now();
    let n = nodes(3, 6);
    let (local, target) = (n[0].id, n[5]);
    // Seeds 1, 2; node 1 knows 3, node 3 knows 4, node 4 knows the target.
    let mut lookup = Lookup::new(
        LookupTarget::Node(target.id),
        local,
        vec![n[1], n[2]],
        cfg(3, 20),
        t0,
    );
    let mut sent = vec![query(&mut lookup, t0), query(&mut lookup, t0)];
    sent.sort_by_key(|x| x.addr.port());
    assert_eq!(sent, vec![n[1], n[2]]);
    assert!(matches!(lookup.next(t0), LookupAction::Wait(Some(_))));
    let key = target.dht_id();
    assert_eq!(
        lookup.on_response(&n[2].id, vec![], t0 + MS),
        Verdict::Accepted
    );
    // Our own id in an answer is legitimate (the responder knows us) and skipped.
    lookup.on_response(&n[1].id, sorted(vec![n[3], n[0]], &key), t0 + MS);
    assert_eq!(query(&mut lookup, t0 + MS), n[3]);
    lookup.on_response(&n[3].id, vec![n[4]], t0 + 2 * MS);
    assert_eq!(query(&mut lookup, t0 + 2 * MS), n[4]);
    lookup.on_response(&n[4].id, sorted(vec![n[1], target], &key), t0 + 3 * MS);
    assert!(lookup.is_finished());
    let o = outcome(&mut lookup, t0 + 4 * MS);
    assert_eq!(o.result, LookupResult::Found(target));
    assert_eq!(o.report.rounds, 3, "seed 1 -> 3 -> 4 -> target");
    assert_eq!(o.report.rpcs, 4);
    assert_eq!(o.report.elapsed, 3 * MS);
    assert_eq!(o.responded.len(), 4);
}

#[test]
fn closest_mode_terminates_when_window_has_answered() {
    let t0 = Instant::now();
    let n = nodes(4, 8);
    let local = n[0].id;
    let key = DhtId::random(&mut StdRng::seed_from_u64(9));
    // A complete network of 7 nodes besides us: everyone answers with everyone.
    let all: Vec<NodeInfo> = n.clone();
    let mut lookup = Lookup::new(LookupTarget::Closest(key), local, vec![n[1]], cfg(2, 3), t0);
    let driven = drive(&mut lookup, local, t0, 100, &mut |me| {
        Reply::Answer(MS, honest(me, &all, &key, 3))
    });
    let want = sorted(n[1..].to_vec(), &key)[..3].to_vec();
    assert_eq!(driven.outcome.result, LookupResult::Closest(want.clone()));
    // Only the 3 closest plus the seed can have been queried.
    assert!(driven.outcome.report.rpcs <= 4);
    assert_eq!(driven.outcome.report.rounds, 1);
    assert!(!driven.outcome.report.timed_out);
    for w in want {
        assert!(driven.outcome.responded.contains(&w));
    }
}

#[test]
fn never_more_than_alpha_in_flight() {
    let t0 = Instant::now();
    let n = nodes(5, 30);
    let mut lookup = Lookup::new(
        LookupTarget::Closest(n[29].dht_id()),
        n[0].id,
        n[1..].to_vec(),
        cfg(3, 20),
        t0,
    );
    for _ in 0..3 {
        query(&mut lookup, t0);
    }
    assert_eq!(
        lookup.next(t0),
        LookupAction::Wait(Some(t0 + Duration::from_secs(5)))
    );
    assert_eq!(lookup.in_flight(), 3);
}

#[test]
fn huge_timeouts_do_not_overflow() {
    let t0 = Instant::now();
    let n = nodes(14, 3);
    let config = LookupConfig {
        request_timeout: Duration::MAX,
        overall_timeout: Duration::MAX,
        ..LookupConfig::default()
    };
    let mut lookup = Lookup::new(LookupTarget::Node(n[2].id), n[0].id, vec![n[1]], config, t0);
    assert_eq!(query(&mut lookup, t0), n[1]);
    assert_eq!(lookup.next(t0), LookupAction::Wait(None));
    lookup.on_response(&n[1].id, vec![], t0 + Duration::from_secs(3600));
    assert_eq!(outcome(&mut lookup, t0).result, LookupResult::NotFound);
}

#[test]
fn failure_and_timeout_free_a_slot() {
    let t0 = Instant::now();
    let n = nodes(6, 10);
    let key = n[9].dht_id();
    let seeds = sorted(n[1..9].to_vec(), &key);
    let mut lookup = Lookup::new(
        LookupTarget::Closest(key),
        n[0].id,
        seeds.clone(),
        cfg(1, 20),
        t0,
    );
    assert_eq!(query(&mut lookup, t0), seeds[0]);
    assert!(matches!(lookup.next(t0), LookupAction::Wait(_)));
    lookup.on_failure(&seeds[0].id, t0 + MS);
    assert_eq!(query(&mut lookup, t0 + MS), seeds[1]);
    // No answer: at the deadline the request fails and the next node is queried.
    let deadline = t0 + MS + Duration::from_secs(5);
    assert_eq!(
        lookup.next(deadline - MS),
        LookupAction::Wait(Some(deadline))
    );
    assert_eq!(query(&mut lookup, deadline), seeds[2]);
    assert_eq!(lookup.failures, 2);
}

#[test]
fn overall_timeout_finishes_with_what_we_have() {
    let t0 = Instant::now();
    let n = nodes(7, 10);
    let config = LookupConfig {
        alpha: 2,
        k: 20,
        request_timeout: Duration::from_secs(60),
        overall_timeout: Duration::from_secs(30),
        ..LookupConfig::default()
    };
    let end = t0 + Duration::from_secs(30);
    for target in [
        LookupTarget::Node(n[9].id),
        LookupTarget::Closest(n[9].dht_id()),
    ] {
        let mut lookup = Lookup::new(target, n[0].id, n[1..9].to_vec(), config, t0);
        let a = query(&mut lookup, t0);
        let b = query(&mut lookup, t0);
        lookup.on_response(&a.id, vec![], t0 + MS);
        let c = query(&mut lookup, t0 + MS);
        assert_eq!(lookup.next(t0 + MS), LookupAction::Wait(Some(end)));
        let o = outcome(&mut lookup, end);
        assert!(o.report.timed_out);
        assert_eq!(o.report.elapsed, Duration::from_secs(30));
        assert_eq!(o.report.rpcs, 3);
        assert_eq!(o.responded, vec![a]);
        let expected = match target {
            LookupTarget::Node(_) => LookupResult::NotFound,
            LookupTarget::Closest(_) => LookupResult::Closest(vec![a]),
        };
        assert_eq!(o.result, expected);
        // Answers after the end are ignored.
        lookup.on_response(&b.id, vec![n[9]], end + MS);
        lookup.on_failure(&c.id, end + MS);
        assert_eq!(outcome(&mut lookup, end + MS), o);
    }
}

#[test]
fn peer_answering_with_itself_is_rejected_and_does_not_stall() {
    let t0 = Instant::now();
    let n = nodes(8, 3);
    for target in [
        LookupTarget::Node(n[2].id),
        LookupTarget::Closest(n[2].dht_id()),
    ] {
        let mut lookup = Lookup::new(target, n[0].id, vec![n[1]], cfg(3, 20), t0);
        let driven = drive(&mut lookup, n[0].id, t0, 10, &mut |me| {
            Reply::Answer(MS, vec![*me])
        });
        let o = driven.outcome;
        assert_eq!(o.report.rpcs, 1);
        assert_eq!((o.report.failures, o.report.rejected), (1, 1));
        assert!(!o.report.timed_out);
        assert!(o.responded.is_empty());
        match target {
            LookupTarget::Node(_) => assert_eq!(o.result, LookupResult::NotFound),
            LookupTarget::Closest(_) => assert_eq!(o.result, LookupResult::Closest(vec![])),
        }
    }
}

#[test]
fn far_garbage_does_not_break_the_lookup() {
    let t0 = Instant::now();
    let mut rng = StdRng::seed_from_u64(10);
    let real = nodes(11, 40);
    let local = real[0].id;
    let key = DhtId::random(&mut rng);
    let liar = real[1];
    // Nodes that do not exist, all in the far half of the key space: a well-formed answer.
    let mut garbage = Vec::new();
    while garbage.len() < 5 {
        let g = node(&mut rng, 10_000 + garbage.len() as u16);
        if g.dht_id().common_prefix_len(&key) == 0 {
            garbage.push(g);
        }
    }
    let garbage = sorted(garbage, &key);
    let real_ids: HashSet<NodeId> = real.iter().map(|r| r.id).collect();
    let mut lookup = Lookup::new(
        LookupTarget::Closest(key),
        local,
        vec![liar, real[2]],
        cfg(3, 5),
        t0,
    );
    let mut queried_garbage = 0;
    let driven = drive(&mut lookup, local, t0, 100, &mut |n| {
        if n.id == liar.id {
            Reply::Answer(MS, garbage.clone())
        } else if real_ids.contains(&n.id) {
            Reply::Answer(2 * MS, honest(n, &real, &key, 5))
        } else {
            queried_garbage += 1;
            Reply::Silent
        }
    });
    // Garbage heard before the real answer is the closest known for a while, so a couple of requests go
    // to it; once real nodes are known the lookup neither queries garbage nor waits for its timeouts.
    assert!(queried_garbage <= 2, "{queried_garbage} garbage queries");
    assert!(driven.outcome.report.elapsed < Duration::from_secs(1));
    let want = sorted(real[1..].to_vec(), &key)[..5].to_vec();
    assert_eq!(driven.outcome.result, LookupResult::Closest(want));
    assert!(!driven.outcome.report.timed_out);
    // The list stays bounded: 3k not-queried candidates at most, plus the queried ones.
    let rpcs = driven.outcome.report.rpcs as usize;
    assert!(
        driven.max_candidates <= 15 + rpcs,
        "{}",
        driven.max_candidates
    );
}

/// A lookup with one request in flight to `responder` (the only seed).
fn asked(responder: NodeInfo, local: NodeId, key: DhtId, k: usize, t0: Instant) -> Lookup {
    let mut lookup = Lookup::new(
        LookupTarget::Closest(key),
        local,
        vec![responder],
        cfg(3, k),
        t0,
    );
    assert_eq!(query(&mut lookup, t0), responder);
    lookup
}

#[test]
fn impossible_answers_are_rejected_count_as_failures_and_contribute_nothing() {
    let t0 = Instant::now();
    let n = nodes(20, 8);
    let (local, responder) = (n[0], n[1]);
    let key = DhtId::random(&mut StdRng::seed_from_u64(21));
    let good = sorted(n[2..6].to_vec(), &key);
    let at = |addr: &str| NodeInfo::new(n[6].id, addr.parse().unwrap());
    let mut unsorted = good.clone();
    unsorted.swap(0, 3);
    let cases: Vec<(Vec<NodeInfo>, InvalidResponse)> = vec![
        (n[2..8].to_vec(), InvalidResponse::Oversized),
        (vec![good[0], good[0]], InvalidResponse::Duplicate),
        (
            sorted(vec![good[0], responder], &key),
            InvalidResponse::ListsResponder,
        ),
        (vec![at("1.2.3.4:0")], InvalidResponse::Unroutable),
        (vec![at("0.0.0.0:7513")], InvalidResponse::Unroutable),
        (vec![at("[::]:7513")], InvalidResponse::Unroutable),
        (vec![at("239.1.2.3:7513")], InvalidResponse::Unroutable),
        (
            vec![at("255.255.255.255:7513")],
            InvalidResponse::Unroutable,
        ),
        (unsorted, InvalidResponse::Unsorted),
    ];
    for (answer, reason) in cases {
        let mut lookup = asked(responder, local.id, key, 5, t0);
        assert_eq!(
            lookup.on_response(&responder.id, answer.clone(), t0 + MS),
            Verdict::Rejected(reason),
            "{answer:?}"
        );
        assert_eq!(
            lookup.all_candidates().len(),
            1,
            "nothing merged from {answer:?}"
        );
        let o = outcome(&mut lookup, t0 + MS);
        assert_eq!(
            (o.report.failures, o.report.rejected, o.report.answered),
            (1, 1, 0)
        );
        assert_eq!(o.result, LookupResult::Closest(vec![]));
        // Once rejected, later answers of the same node are ignored.
        assert_eq!(
            lookup.on_response(&responder.id, good.clone(), t0 + MS),
            Verdict::Ignored
        );
    }
    // The same nodes, well formed (with our own id among them), are accepted.
    let mut lookup = asked(responder, local.id, key, 5, t0);
    let fine = sorted(vec![good[0], good[1], local], &key);
    assert_eq!(
        lookup.on_response(&responder.id, fine, t0 + MS),
        Verdict::Accepted
    );
    assert_eq!(lookup.all_candidates().len(), 3);
}

#[test]
fn one_subnet_fills_at_most_max_per_subnet_candidates_of_a_path() {
    let t0 = Instant::now();
    let mut rng = StdRng::seed_from_u64(22);
    let n = nodes(23, 3);
    let key = DhtId::random(&mut rng);
    // 20 Sybils of one /24, well formed.
    let sybils = sorted(
        (0..20u8)
            .map(|i| {
                let mut s = node(&mut rng, 0);
                s.addr = ([66, 6, 6, i], 7513).into();
                s
            })
            .collect(),
        &key,
    );
    for (exempt, ip, kept) in [
        (false, [66, 6, 6], 5),
        (true, [66, 6, 6], 5),
        (true, [127, 0, 0], 20),
    ] {
        let sybils: Vec<NodeInfo> = sybils
            .iter()
            .enumerate()
            .map(|(i, s)| NodeInfo::new(s.id, ([ip[0], ip[1], ip[2], i as u8], 7513).into()))
            .collect();
        let config = LookupConfig {
            subnets: SubnetPolicy {
                exempt_local: exempt,
            },
            ..cfg(3, 20)
        };
        let mut lookup = Lookup::new(LookupTarget::Closest(key), n[0].id, vec![n[1]], config, t0);
        assert_eq!(query(&mut lookup, t0), n[1]);
        assert_eq!(
            lookup.on_response(&n[1].id, sybils, t0 + MS),
            Verdict::Accepted
        );
        assert_eq!(
            lookup.all_candidates().len(),
            1 + kept,
            "exempt {exempt} {ip:?}"
        );
    }
}

#[test]
fn seeds_are_dealt_over_the_paths_and_each_path_has_its_own_alpha() {
    let t0 = Instant::now();
    let n = nodes(24, 10);
    let key = DhtId::random(&mut StdRng::seed_from_u64(25));
    let seeds = sorted(n[1..].to_vec(), &key);
    let config = LookupConfig {
        disjoint_paths: 3,
        ..cfg(2, 20)
    };
    let mut lookup = Lookup::new(
        LookupTarget::Closest(key),
        n[0].id,
        seeds.clone(),
        config,
        t0,
    );
    for (p, path) in lookup.paths.iter().enumerate() {
        let ids: Vec<NodeId> = path.candidates.iter().map(|c| c.info.id).collect();
        let dealt: Vec<NodeId> = seeds.iter().skip(p).step_by(3).map(|s| s.id).collect();
        assert_eq!(ids, dealt, "path {p}");
    }
    let sent: Vec<NodeInfo> = (0..6).map(|_| query(&mut lookup, t0)).collect();
    assert!(matches!(lookup.next(t0), LookupAction::Wait(_)));
    assert_eq!(lookup.in_flight(), 6);
    for p in 0..3 {
        assert_eq!(lookup.paths[p].in_flight(), 2);
    }
    // A node one path queried leaves the others, and is never added to them again.
    let first = sent[0];
    let (p, _) = lookup.waiting(&first.id).unwrap();
    let other = (p + 1) % 3;
    let q = sent.iter().find(|s| lookup.owner[&s.id] == other).unwrap();
    let answer = sorted(vec![first, seeds[8]], &key);
    assert_eq!(
        lookup.on_response(&q.id, answer, t0 + MS),
        Verdict::Accepted
    );
    for (i, path) in lookup.paths.iter().enumerate() {
        let has_first = path.candidates.iter().any(|c| c.info.id == first.id);
        assert_eq!(has_first, i == p, "path {i}");
    }
}

/// Six nodes and a `Node`-mode lookup of node 5 from node 0, seeded with `seeds` of them (returned sorted
/// by distance to the target).
fn node_lookup(
    seed: u64,
    seeds: std::ops::Range<usize>,
    config: LookupConfig,
    t0: Instant,
) -> (Vec<NodeInfo>, Vec<NodeInfo>, Lookup) {
    let n = nodes(seed, 6);
    let seeds = sorted(n[seeds].to_vec(), &n[5].dht_id());
    let lookup = Lookup::new(
        LookupTarget::Node(n[5].id),
        n[0].id,
        seeds.clone(),
        config,
        t0,
    );
    (n, seeds, lookup)
}

#[test]
fn a_node_lookup_succeeds_if_any_path_finds_the_target_and_waits_for_every_path() {
    let t0 = Instant::now();
    let config = LookupConfig {
        disjoint_paths: 2,
        request_timeout: 100 * MS,
        ..cfg(3, 20)
    };
    let (n, seeds, mut lookup) = node_lookup(26, 1..3, config, t0);
    let target = n[5];
    let a = query(&mut lookup, t0);
    let b = query(&mut lookup, t0);
    assert_eq!(vec![a, b], seeds);
    // Path 1 finds the target; path 0 still waits for `a`.
    lookup.on_response(&b.id, vec![target], t0 + MS);
    assert!(!lookup.is_finished());
    // `a` answers with a node that never answers: path 0 ends by its timeout.
    lookup.on_response(&a.id, vec![n[3]], t0 + 2 * MS);
    assert_eq!(query(&mut lookup, t0 + 2 * MS), n[3]);
    assert!(!lookup.is_finished());
    let o = outcome(&mut lookup, t0 + 102 * MS);
    assert_eq!(o.result, LookupResult::Found(target));
    assert_eq!(o.report.rounds, 1);
    assert_eq!((o.report.rpcs, o.report.failures), (3, 1));
    assert!(!o.report.timed_out);
}

#[test]
fn paths_that_disagree_on_the_address_are_outvoted() {
    let t0 = Instant::now();
    let config = LookupConfig {
        disjoint_paths: 3,
        ..cfg(3, 20)
    };
    let (n, _, mut lookup) = node_lookup(27, 1..4, config, t0);
    let target = n[5];
    let asked: Vec<NodeInfo> = (0..3).map(|_| query(&mut lookup, t0)).collect();
    let forged = NodeInfo::new(target.id, "6.6.6.6:6666".parse().unwrap());
    lookup.on_response(&asked[0].id, vec![forged], t0 + MS);
    lookup.on_response(&asked[1].id, vec![target], t0 + MS);
    lookup.on_response(&asked[2].id, vec![target], t0 + MS);
    assert_eq!(
        outcome(&mut lookup, t0 + MS).result,
        LookupResult::Found(target)
    );
}

#[test]
fn late_response_after_timeout_is_ignored() {
    let t0 = Instant::now();
    let n = nodes(12, 4);
    let target = n[3];
    let deadline = t0 + Duration::from_secs(5);
    // Late without an intervening `next`, and late after `next` saw the timeout.
    for observe_timeout in [false, true] {
        let mut lookup = Lookup::new(
            LookupTarget::Node(target.id),
            n[0].id,
            vec![n[1], n[2]],
            cfg(1, 20),
            t0,
        );
        let first = query(&mut lookup, t0);
        if observe_timeout {
            let second = query(&mut lookup, deadline);
            assert_ne!(second, first);
        }
        assert_eq!(
            lookup.on_response(&first.id, vec![target], deadline),
            Verdict::Ignored
        );
        assert!(!lookup.is_finished());
        assert_eq!(lookup.failures, 1);
        assert!(
            lookup
                .all_candidates()
                .iter()
                .all(|c| c.info.id != target.id)
        );
    }
}

#[test]
fn responses_from_unqueried_nodes_are_ignored() {
    let t0 = Instant::now();
    let n = nodes(13, 6);
    let target = n[5];
    let mut lookup = Lookup::new(
        LookupTarget::Node(target.id),
        n[0].id,
        vec![n[1], n[2]],
        cfg(1, 20),
        t0,
    );
    let asked = query(&mut lookup, t0);
    let other = if asked == n[1] { n[2] } else { n[1] };
    // A known seed we did not query, and a total stranger.
    lookup.on_response(&other.id, vec![target], t0 + MS);
    lookup.on_response(&n[4].id, vec![target], t0 + MS);
    lookup.on_failure(&other.id, t0 + MS);
    assert!(!lookup.is_finished());
    assert_eq!(lookup.failures, 0);
    // A second answer from a node that already answered is ignored too.
    lookup.on_response(&asked.id, vec![n[3]], t0 + MS);
    lookup.on_response(&asked.id, vec![target], t0 + 2 * MS);
    assert!(!lookup.is_finished());
    assert_eq!(lookup.all_candidates().len(), 3);
}

// ---------------------------------------------------------------------------------------------------------
// Network simulation
// ---------------------------------------------------------------------------------------------------------

const K: usize = 20;
const BUCKETS: u32 = 20;

struct Net {
    nodes: Vec<NodeInfo>,
    ids: Vec<DhtId>,
    /// Each node's routing table (indices): per CPL bucket up to K random nodes of that bucket.
    tables: Vec<Vec<usize>>,
    index: HashMap<NodeId, usize>,
    dead: Vec<bool>,
}

impl Net {
    fn build(n: usize, dead_fraction: f64, rng: &mut StdRng) -> Net {
        let nodes: Vec<NodeInfo> = (0..n).map(|i| node(rng, i as u16)).collect();
        let ids: Vec<DhtId> = nodes.iter().map(|x| x.dht_id()).collect();
        let tables = (0..n)
            .map(|i| {
                let mut buckets = vec![Vec::new(); BUCKETS as usize];
                for j in (0..n).filter(|&j| j != i) {
                    let cpl = ids[i].common_prefix_len(&ids[j]).min(BUCKETS - 1);
                    buckets[cpl as usize].push(j);
                }
                buckets
                    .into_iter()
                    .flat_map(|mut b| {
                        for t in 0..K.min(b.len()) {
                            let r = rng.random_range(t..b.len());
                            b.swap(t, r);
                        }
                        b.truncate(K);
                        b
                    })
                    .collect()
            })
            .collect();
        let index = nodes.iter().enumerate().map(|(i, x)| (x.id, i)).collect();
        let dead = (0..n).map(|_| rng.random_bool(dead_fraction)).collect();
        Net {
            nodes,
            ids,
            tables,
            index,
            dead,
        }
    }

    /// The k nodes of `of`'s table closest to `key`: its answer to a FindNode.
    fn find_node(&self, of: usize, key: &DhtId, skip: Option<NodeId>) -> Vec<NodeInfo> {
        let mut known: Vec<usize> = self.tables[of]
            .iter()
            .copied()
            .filter(|&j| Some(self.nodes[j].id) != skip)
            .collect();
        known.sort_by_cached_key(|&j| self.ids[j].distance(key));
        known.iter().take(K).map(|&j| self.nodes[j]).collect()
    }

    /// The true k closest live nodes to `key`, except `local`.
    fn true_closest(&self, key: &DhtId, local: usize) -> Vec<NodeInfo> {
        let mut all: Vec<usize> = (0..self.nodes.len())
            .filter(|&j| j != local && !self.dead[j])
            .collect();
        all.sort_by_cached_key(|&j| self.ids[j].distance(key));
        all.iter().take(K).map(|&j| self.nodes[j]).collect()
    }

    fn random_live(&self, rng: &mut StdRng, except: Option<usize>) -> usize {
        loop {
            let i = rng.random_range(0..self.nodes.len());
            if !self.dead[i] && Some(i) != except {
                return i;
            }
        }
    }

    /// Runs one lookup with `paths` disjoint paths from `local`, seeded with its table's k closest to the
    /// target (minus the target).
    fn lookup(&self, local: usize, target: LookupTarget, paths: usize, rng: &mut StdRng) -> Driven {
        let key = target.dht_id();
        let skip = match target {
            LookupTarget::Node(id) => Some(id),
            LookupTarget::Closest(_) => None,
        };
        let t0 = Instant::now();
        let me = self.nodes[local].id;
        let seeds = self.find_node(local, &key, skip);
        let config = LookupConfig {
            disjoint_paths: paths,
            ..LookupConfig::default()
        };
        let mut lookup = Lookup::new(target, me, seeds, config, t0);
        drive(&mut lookup, me, t0, 10 * self.nodes.len(), &mut |n| {
            let i = self.index[&n.id];
            if self.dead[i] {
                Reply::Silent
            } else {
                Reply::Answer(rng.random_range(2..40) * MS, self.find_node(i, &key, None))
            }
        })
    }
}

fn percentile(values: &mut [u32], p: usize) -> u32 {
    values.sort_unstable();
    values[(values.len() * p / 100).min(values.len() - 1)]
}

struct Stats {
    /// Lookups with exactly the expected result.
    ok: usize,
    /// Closest mode: how many of the true k closest were returned, and how many there were.
    recalled: usize,
    wanted: usize,
    rounds: Vec<u32>,
    rpcs: Vec<u32>,
}

fn run(net: &Net, lookups: usize, node_mode: bool, paths: usize, rng: &mut StdRng) -> Stats {
    let mut stats = Stats {
        ok: 0,
        recalled: 0,
        wanted: 0,
        rounds: vec![],
        rpcs: vec![],
    };
    for _ in 0..lookups {
        let local = net.random_live(rng, None);
        let (target, want) = if node_mode {
            let t = net.nodes[net.random_live(rng, Some(local))];
            (LookupTarget::Node(t.id), LookupResult::Found(t))
        } else {
            let key = DhtId::random(rng);
            let want = LookupResult::Closest(net.true_closest(&key, local));
            (LookupTarget::Closest(key), want)
        };
        let driven = net.lookup(local, target, paths, rng);
        let report = driven.outcome.report;
        assert!(driven.max_in_flight <= 3 * paths);
        assert!(!report.timed_out);
        stats.ok += usize::from(driven.outcome.result == want);
        if let (LookupResult::Closest(got), LookupResult::Closest(want)) =
            (&driven.outcome.result, &want)
        {
            stats.recalled += want.iter().filter(|w| got.contains(w)).count();
            stats.wanted += want.len();
        }
        stats.rounds.push(report.rounds);
        stats.rpcs.push(report.rpcs);
    }
    stats
}

fn report(label: &str, lookups: usize, stats: &mut Stats) -> (u32, u32) {
    let (r50, r99) = (
        percentile(&mut stats.rounds, 50),
        percentile(&mut stats.rounds, 99),
    );
    let (c50, c99) = (
        percentile(&mut stats.rpcs, 50),
        percentile(&mut stats.rpcs, 99),
    );
    let recall = match stats.wanted {
        0 => String::new(),
        wanted => format!(" (recall {:.3})", stats.recalled as f64 / wanted as f64),
    };
    println!(
        "{label}: {}/{lookups} exact{recall}; rounds median {r50} p99 {r99}; rpcs median {c50} p99 {c99}",
        stats.ok
    );
    (r50, c50)
}

fn network_test(n: usize, seed: u64, paths: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let net = Net::build(n, 0.0, &mut rng);
    let lookups = 200;
    let label = |what: &str| format!("N={n} d={paths} {what}");

    let mut closest = run(&net, lookups, false, paths, &mut rng);
    let (rounds, _) = report(&label("closest"), lookups, &mut closest);
    assert!(closest.ok * 100 >= lookups * 99, "{} exact", closest.ok);
    assert!(rounds <= 3);

    let mut node = run(&net, lookups, true, paths, &mut rng);
    let (rounds, rpcs) = report(&label("node"), lookups, &mut node);
    assert_eq!(node.ok, lookups);
    assert!(rounds <= 3);
    // Each path has its own budget: d paths cost up to d times as much.
    assert!(rpcs <= 10 * paths as u32);

    let net = Net::build(n, 0.1, &mut rng);
    let mut dead = run(&net, lookups, true, paths, &mut rng);
    report(&label("node, 10% dead"), lookups, &mut dead);
    assert!(dead.ok * 100 >= lookups * 99, "{} found", dead.ok);
    // Responders list dead nodes among their k nearest, so the k-th closest live node is sometimes never
    // mentioned by anyone: only near-complete recall can be expected.
    let mut dead = run(&net, lookups, false, paths, &mut rng);
    report(&label("closest live, 10% dead"), lookups, &mut dead);
    assert!(
        dead.recalled * 100 >= dead.wanted * 95,
        "recall {}/{}",
        dead.recalled,
        dead.wanted
    );
}

#[test]
fn network_100_nodes() {
    network_test(100, 100, 1);
}

#[test]
fn network_1000_nodes() {
    network_test(1000, 1000, 1);
}

#[test]
fn network_1000_nodes_three_disjoint_paths() {
    network_test(1000, 1001, 3);
}

// ---------------------------------------------------------------------------------------------------------
// Property test
// ---------------------------------------------------------------------------------------------------------

/// Up to 24 random picks from `from`.
fn pick(rng: &mut StdRng, from: &[NodeInfo]) -> Vec<NodeInfo> {
    (0..rng.random_range(0..25))
        .map(|_| from[rng.random_range(0..from.len())])
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Random networks with peers that answer properly, fail, stay silent, answer with themselves, with
    /// unsorted picks or with garbage, over 1 to 4 disjoint paths: the lookup ends within a bounded number
    /// of steps, never exceeds alpha in flight per path, never queries a node twice (so no node is queried
    /// by two paths), and impossible answers are rejected.
    #[test]
    fn lookup_always_terminates(
        n in 1usize..40,
        alpha in 0usize..5,
        k in 0usize..8,
        paths in 1usize..5,
        seed_count in 0usize..6,
        node_mode in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let real = nodes(seed, n + 1);
        let garbage: Vec<NodeInfo> = (0..2 * n).map(|i| node(&mut rng, 1000 + i as u16)).collect();
        let local = real[0].id;
        let target = if node_mode {
            LookupTarget::Node(real[rng.random_range(0..real.len())].id)
        } else {
            LookupTarget::Closest(DhtId::random(&mut rng))
        };
        let key = target.dht_id();
        let seeds = (0..seed_count).map(|_| real[rng.random_range(0..real.len())]).collect();
        let config = LookupConfig {
            alpha,
            k,
            request_timeout: Duration::from_millis(rng.random_range(1..100)),
            overall_timeout: Duration::from_millis(rng.random_range(1..2000)),
            disjoint_paths: paths,
            ..LookupConfig::default()
        };
        let t0 = Instant::now();
        let mut lookup = Lookup::new(target, local, seeds, config, t0);
        let max_steps = 4 * (real.len() + garbage.len()) + 8;
        let driven = drive(&mut lookup, local, t0, max_steps, &mut |me| {
            let delay = rng.random_range(0..150) * MS;
            match rng.random_range(0..7) {
                0 => Reply::Silent,
                1 => Reply::Fail(delay),
                2 => Reply::Answer(delay, vec![*me]),
                3 => Reply::Answer(delay, honest(me, &pick(&mut rng, &garbage), &key, k.max(1))),
                4 => Reply::Answer(delay, pick(&mut rng, &real)),
                _ => Reply::Answer(delay, honest(me, &pick(&mut rng, &real), &key, k.max(1))),
            }
        });
        prop_assert!(driven.max_in_flight <= alpha.max(1) * paths);
        let o = driven.outcome;
        prop_assert!(o.report.elapsed <= config.overall_timeout);
        prop_assert!(o.report.failures <= o.report.rpcs);
        prop_assert!(o.report.rejected <= o.report.failures);
        prop_assert_eq!(o.responded.len() + o.report.failures as usize
            <= o.report.rpcs as usize, true);
        if let LookupResult::Closest(found) = &o.result {
            prop_assert!(found.len() <= k.max(1));
            prop_assert!(found.iter().all(|f| o.responded.contains(f)));
            prop_assert!(found.windows(2).all(|w| w[0].dht_id().distance(&key) < w[1].dht_id().distance(&key)));
        }
        // Every queried node belongs to exactly one path.
        for (id, p) in &lookup.owner {
            for (q, path) in lookup.paths.iter().enumerate() {
                prop_assert_eq!(path.candidates.iter().any(|c| c.info.id == *id), q == *p);
            }
        }
    }
}

#[test]
fn answer_times_are_summed_for_answered_requests_only() {
    let all = nodes(91, 3);
    let (local, a, b) = (all[0], all[1], all[2]);
    let t0 = Instant::now();
    let mut lookup = Lookup::new(
        LookupTarget::Closest(local.dht_id()),
        local.id,
        vec![a, b],
        LookupConfig {
            request_timeout: 100 * MS,
            ..cfg(2, 2)
        },
        t0,
    );
    let first = query(&mut lookup, t0);
    let second = query(&mut lookup, t0 + 10 * MS);
    lookup.on_response(&first.id, vec![], t0 + 30 * MS);
    // The second never answers: its timeout is a failure, not an answer time.
    let report = outcome(&mut lookup, t0 + 500 * MS).report;
    assert_ne!(first.id, second.id);
    assert_eq!(report.answered, 1);
    assert_eq!(report.answer_time, 30 * MS);
    assert_eq!(report.failures, 1);
}
