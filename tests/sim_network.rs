//! The in-memory simulator (`kadmesh::sim`) running real Swarms under virtual time: messaging, bootstrap
//! and send-to-unknown, determinism, faults and partitions, and a timing run at 1,000 nodes.

use std::time::Duration;

use kadmesh::sim::{self, Fault, Latency, SimConfig, SimNetwork, SimStats, Span};
use kadmesh::swarm::BootstrapReport;
use kadmesh::transport::TransportError;
use kadmesh::{Config, Error, NodeId, NodeInfo, Swarm};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::task::JoinSet;
use tokio::time::Instant;

const MIN_LATENCY: Duration = Duration::from_millis(5);

/// Adds `n` nodes with the large-simulation node config.
async fn add_many(net: &SimNetwork, n: usize) -> Vec<Swarm> {
    add_many_with(net, n, &sim::node_config()).await
}

/// Adds `n` nodes with `config`.
async fn add_many_with(net: &SimNetwork, n: usize, config: &Config) -> Vec<Swarm> {
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        nodes.push(net.add_node(config.clone()).await.unwrap());
    }
    nodes
}

/// Boot nodes that bootstrap from each other.
async fn boot_nodes(net: &SimNetwork, boot: usize) -> Vec<Swarm> {
    let boots = add_many(net, boot).await;
    kadmesh::scenario::network::introduce(&boots).await.unwrap();
    boots
}

/// Bootstraps every node of `nodes` from `boot` concurrently; the reports in node order.
async fn bootstrap_all(nodes: &[Swarm], boot: &[NodeInfo]) -> Vec<Result<BootstrapReport, Error>> {
    let mut joins = JoinSet::new();
    for (i, node) in nodes.iter().enumerate() {
        let (node, boot) = (node.clone(), boot.to_vec());
        joins.spawn(async move { (i, node.bootstrap_from(boot).await) });
    }
    let mut reports: Vec<_> = joins.join_all().await;
    reports.sort_by_key(|(i, _)| *i);
    reports.into_iter().map(|(_, r)| r).collect()
}

/// `boot` boot nodes, then `n` nodes bootstrapped from all of them concurrently.
async fn network(net: &SimNetwork, boot: usize, n: usize) -> (Vec<Swarm>, Vec<Swarm>) {
    network_with(net, boot, n, &sim::node_config()).await
}

/// Like [`network`], the joining nodes with `config`.
async fn network_with(
    net: &SimNetwork,
    boot: usize,
    n: usize,
    config: &Config,
) -> (Vec<Swarm>, Vec<Swarm>) {
    let boots = boot_nodes(net, boot).await;
    let infos: Vec<NodeInfo> = boots.iter().map(|b| b.local_node()).collect();
    let nodes = add_many_with(net, n, config).await;
    for report in bootstrap_all(&nodes, &infos).await {
        let report = report.expect("every node bootstraps");
        assert!(report.boot_nodes_answered >= 1);
        assert!(report.table_size >= 1);
    }
    (boots, nodes)
}

fn accounted(stats: &SimStats) -> bool {
    stats.sent == stats.delivered + stats.dropped.total() + stats.in_flight
}

#[test]
fn two_nodes_exchange_a_message_and_a_request() {
    sim::run(SimConfig::default(), 1, |net| async move {
        let a = net.add_node(sim::node_config()).await.unwrap();
        let b = net.add_node(sim::node_config()).await.unwrap();
        assert!(a.local_node().addr.ip().is_loopback());
        assert_ne!(a.local_node().addr, b.local_node().addr);
        let mut chat = b.register_protocol("chat").unwrap();
        let mut echo = b.register_protocol("echo").unwrap();

        let start = Instant::now();
        a.send_message_to(&b.local_node(), "chat", &b"hello"[..])
            .await
            .unwrap();
        let got = chat.recv().await.unwrap();
        let one_way = start.elapsed();
        assert_eq!(got.data(), b"hello");
        assert_eq!(
            *got.sender(),
            a.local_node(),
            "from is the sender's address"
        );
        assert!(one_way >= MIN_LATENCY, "{one_way:?}");

        let server = tokio::spawn(async move {
            let req = echo.recv().await.unwrap();
            assert!(req.is_request());
            req.respond(req.payload().clone()).await.unwrap();
        });
        let start = Instant::now();
        let response = a
            .request_to(
                &b.local_node(),
                "echo",
                &b"ping"[..],
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        let rtt = start.elapsed();
        assert_eq!(response.data(), b"ping");
        assert!(rtt >= 2 * MIN_LATENCY, "{rtt:?}");
        // Per-link latency: the round trip is exactly twice the one-way time (ms timer granularity).
        assert!(
            rtt.abs_diff(2 * one_way) <= Duration::from_millis(2),
            "{rtt:?} vs {one_way:?}"
        );
        server.await.unwrap();

        assert!(
            a.connected_peers()
                .iter()
                .any(|p| p.id == b.local_node().id)
        );
        assert!(
            b.connected_peers()
                .iter()
                .any(|p| p.id == a.local_node().id)
        );
        net.run_until_idle().await;
        let stats = net.stats();
        assert_eq!(stats.sent, 3);
        assert_eq!(stats.delivered, 3);
        assert_eq!(stats.in_flight, 0);
        assert!(accounted(&stats));
    })
    .unwrap();
}

#[test]
fn hundred_nodes_bootstrap_and_messages_to_unknown_nodes_arrive() {
    let wall = std::time::Instant::now();
    sim::run(SimConfig::default(), 2, |net| async move {
        let (boots, nodes) = network(&net, 3, 97).await;
        assert_eq!(net.len(), 100);
        for n in &nodes {
            assert!(n.table_len() >= 3, "table of {} nodes", n.table_len());
        }
        let mut inboxes: Vec<_> = nodes
            .iter()
            .map(|n| n.register_protocol("chat").unwrap())
            .collect();
        let mut rng = StdRng::seed_from_u64(3);
        let mut sent = 0;
        let mut lookups = 0;
        while sent < 20 {
            let from = rng.random_range(0..nodes.len());
            let to = rng.random_range(0..nodes.len());
            let target = nodes[to].local_node().id;
            if from == to || nodes[from].table_contains(&target) {
                continue;
            }
            let before = nodes[from]
                .stats()
                .lookups
                .load(std::sync::atomic::Ordering::Relaxed);
            let body = format!("message {sent}");
            nodes[from]
                .send_message(&target, "chat", body.clone())
                .await
                .unwrap();
            let got = inboxes[to].recv().await.unwrap();
            assert_eq!(got.data(), body.as_bytes());
            assert_eq!(got.sender().id, nodes[from].local_node().id);
            lookups += nodes[from]
                .stats()
                .lookups
                .load(std::sync::atomic::Ordering::Relaxed)
                - before;
            sent += 1;
        }
        assert!(lookups >= 20, "every send to an unknown node looked it up");
        assert_eq!(boots.len(), 3);
        net.run_until_idle().await;
        assert!(accounted(&net.stats()));
    })
    .unwrap();
    eprintln!(
        "100-node bootstrap + 20 sends to unknown nodes: {:?} wall",
        wall.elapsed()
    );
}

/// What a run shows: each node's id prefix and table size after bootstrap, 50 lookups' reports, the
/// network counters and the virtual time taken.
type Fingerprint = (
    Vec<(String, usize)>,
    Vec<(u32, u32, u32, Duration)>,
    SimStats,
    Duration,
);

fn fingerprint(seed: u64, faults: bool) -> Fingerprint {
    sim::run(SimConfig::default(), seed, |net| async move {
        let start = Instant::now();
        // A minimum table above what the own-id lookup finds makes bootstrap look up random ids too.
        let mut config = sim::node_config();
        config.dht.min_routing_table = 25;
        let (boots, nodes) = network_with(&net, 3, 20, &config).await;
        let tables = boots
            .iter()
            .chain(&nodes)
            .map(|n| (n.local_node().id.short(), n.table_len()))
            .collect();
        if faults {
            for (i, n) in nodes.iter().enumerate().skip(12) {
                let fault = [Fault::Drop, Fault::Delay, Fault::Disconnect][i % 3];
                net.set_fault(&n.local_node().id, fault).unwrap();
            }
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut reports = Vec::new();
        while reports.len() < 50 {
            let from = &nodes[rng.random_range(0..nodes.len())];
            let to = &nodes[rng.random_range(0..nodes.len())];
            if from.local_node().id == to.local_node().id {
                continue;
            }
            match from.lookup(&to.local_node().id).await {
                Ok((_, r)) => reports.push((r.rounds, r.rpcs, r.failures, r.elapsed)),
                Err(e) => {
                    assert!(faults, "{e}");
                    reports.push((0, 0, 0, Duration::ZERO));
                }
            }
        }
        net.run_until_idle().await;
        (tables, reports, net.stats(), start.elapsed())
    })
    .unwrap()
}

#[test]
fn the_same_seed_gives_the_same_run_and_another_seed_another() {
    let first = fingerprint(7, false);
    let again = fingerprint(7, false);
    assert_eq!(first.0, again.0, "tables after bootstrap");
    assert_eq!(first.1, again.1, "lookup reports");
    assert_eq!(first.2, again.2, "network counters");
    assert_eq!(first.3, again.3, "virtual time");
    assert_eq!(first.1.len(), 50);
    let other = fingerprint(8, false);
    assert_ne!(first.0, other.0);
    assert_ne!(first.2, other.2);
}

#[test]
fn runs_with_faults_are_reproducible_too() {
    // The first seed from 30 on whose lookups reach the dropping nodes (tables of 23 nodes are nearly
    // complete, so most lookups find their target among their seeds): a fixed seed, found the same way
    // on every run, that keeps working when table or lookup details change.
    let (seed, first) = (30..80)
        .map(|seed| (seed, fingerprint(seed, true)))
        .find(|(_, run)| run.2.dropped.fault > 0)
        .expect("some seed's lookups meet a dropping node");
    assert_eq!(first, fingerprint(seed, true));
}

#[test]
fn a_drop_fault_at_rate_one_loses_everything_in_and_out() {
    let config = SimConfig {
        drop_rate: 1.0,
        ..SimConfig::default()
    };
    sim::run(config, 3, |net| async move {
        let a = net.add_node(sim::node_config()).await.unwrap();
        let b = net.add_node(sim::node_config()).await.unwrap();
        let c = net.add_node(sim::node_config()).await.unwrap();
        let mut b_inbox = b.register_protocol("chat").unwrap();
        let mut a_inbox = a.register_protocol("chat").unwrap();
        let mut c_inbox = c.register_protocol("chat").unwrap();
        net.set_fault(&b.local_node().id, Fault::Drop).unwrap();
        assert_eq!(net.fault(&b.local_node().id), Some(Fault::Drop));
        for i in 0..10 {
            // Lost messages still count as sent: the sender cannot tell.
            a.send_message_to(&b.local_node(), "chat", format!("{i}"))
                .await
                .unwrap();
            b.send_message_to(&a.local_node(), "chat", format!("{i}"))
                .await
                .unwrap();
        }
        let r = a
            .request_to(&b.local_node(), "chat", &b"?"[..], Duration::from_secs(1))
            .await;
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        // Healthy pairs are unaffected.
        a.send_message_to(&c.local_node(), "chat", &b"fine"[..])
            .await
            .unwrap();
        assert_eq!(c_inbox.recv().await.unwrap().data(), b"fine");
        net.run_until_idle().await;
        assert!(b_inbox.try_recv().is_err());
        assert!(a_inbox.try_recv().is_err());
        let stats = net.stats();
        assert_eq!(stats.dropped.fault, 21);
        assert_eq!(stats.delivered, 1);
        assert!(accounted(&stats));
    })
    .unwrap();
}

#[test]
fn a_delay_fault_adds_at_least_its_minimum() {
    let extra = Span::new(Duration::from_secs(1), Duration::from_secs(2));
    let config = SimConfig {
        delay: extra,
        ..SimConfig::default()
    };
    sim::run(config, 4, |net| async move {
        let a = net.add_node(sim::node_config()).await.unwrap();
        let b = net.add_node(sim::node_config()).await.unwrap();
        let mut inbox = b.register_protocol("chat").unwrap();
        let start = Instant::now();
        a.send_message_to(&b.local_node(), "chat", &b"1"[..])
            .await
            .unwrap();
        inbox.recv().await.unwrap();
        let normal = start.elapsed();
        assert!(normal < extra.min);

        net.set_fault(&b.local_node().id, Fault::Delay).unwrap();
        for _ in 0..5 {
            let start = Instant::now();
            a.send_message_to(&b.local_node(), "chat", &b"2"[..])
                .await
                .unwrap();
            inbox.recv().await.unwrap();
            let delayed = start.elapsed();
            assert!(delayed >= normal + extra.min, "{delayed:?}");
            assert!(
                delayed <= normal + extra.max + Duration::from_millis(2),
                "{delayed:?}"
            );
        }
        // Back to normal once cleared.
        net.set_fault(&b.local_node().id, Fault::None).unwrap();
        let start = Instant::now();
        a.send_message_to(&b.local_node(), "chat", &b"3"[..])
            .await
            .unwrap();
        inbox.recv().await.unwrap();
        assert!(start.elapsed() < extra.min);
    })
    .unwrap();
}

#[test]
fn a_disconnect_fault_makes_the_node_unreachable_after_its_moment() {
    sim::run(SimConfig::default(), 5, |net| async move {
        let (_boots, nodes) = network(&net, 3, 30).await;
        let victim = nodes[0].clone();
        let vid = victim.local_node().id;
        let mut inbox = victim.register_protocol("chat").unwrap();
        net.set_fault(&vid, Fault::Disconnect).unwrap();
        let at = net.disconnect_at(&vid).expect("a moment is scheduled");
        assert!(at <= Instant::now() + net.config().disconnect_window);
        if Instant::now() < at {
            nodes[1]
                .send_message_to(&victim.local_node(), "chat", &b"before"[..])
                .await
                .unwrap();
            if Instant::now() + Duration::from_millis(50) < at {
                assert_eq!(inbox.recv().await.unwrap().data(), b"before");
            }
        }
        tokio::time::sleep_until(at + Duration::from_millis(1)).await;
        assert!(!net.is_online(&vid));
        assert_eq!(net.disconnect_at(&vid), None);
        assert!(victim.connected_peers().is_empty());

        // Sends to it fail fast, like a refused dial.
        let start = Instant::now();
        let r = nodes[1]
            .send_message_to(&victim.local_node(), "chat", &b"after"[..])
            .await;
        assert!(
            matches!(r, Err(Error::Transport(TransportError::Unreachable(id))) if id == vid),
            "{r:?}"
        );
        assert!(start.elapsed() >= 2 * MIN_LATENCY);
        assert!(start.elapsed() < Duration::from_secs(1));
        // Its own sends fail too.
        let r = victim
            .send_message_to(&nodes[1].local_node(), "chat", &b"out"[..])
            .await;
        assert!(
            matches!(r, Err(Error::Transport(TransportError::Unreachable(_)))),
            "{r:?}"
        );

        // Lookups skip it: closest-node lookups never return it, and other lookups still succeed.
        for n in &nodes[1..6] {
            let (closest, report) = n.closest_nodes(&vid.dht_id()).await.unwrap();
            assert!(closest.iter().all(|c| c.id != vid));
            assert!(!closest.is_empty());
            assert!(!report.timed_out);
            let other = nodes[10].local_node().id;
            if n.local_node().id != other {
                n.lookup(&other).await.unwrap();
            }
        }
        net.go_online(&vid).unwrap();
        nodes[1]
            .send_message_to(&victim.local_node(), "chat", &b"back"[..])
            .await
            .unwrap();
        assert_eq!(inbox.recv().await.unwrap().data(), b"back");
    })
    .unwrap();
}

#[test]
fn lookups_across_a_partition_fail_and_succeed_after_heal() {
    sim::run(SimConfig::default(), 6, |net| async move {
        // Boot nodes know each other; then the network splits and each half joins on its side.
        let boots = boot_nodes(&net, 4).await;
        let boot_infos: Vec<NodeInfo> = boots.iter().map(|b| b.local_node()).collect();
        let left = add_many(&net, 7).await;
        let right = add_many(&net, 7).await;
        let ids = |s: &[Swarm]| s.iter().map(|n| n.local_node().id).collect::<Vec<NodeId>>();
        let mut left_ids = ids(&boots[..2]);
        left_ids.extend(ids(&left));
        let mut right_ids = ids(&boots[2..]);
        right_ids.extend(ids(&right));
        net.partition(vec![left_ids, right_ids]).unwrap();
        for r in bootstrap_all(&left, &boot_infos)
            .await
            .into_iter()
            .chain(bootstrap_all(&right, &boot_infos).await)
        {
            let r = r.unwrap();
            assert_eq!(
                r.boot_nodes_answered, 2,
                "only the boot nodes on its side answer"
            );
        }
        let target = right[3].local_node().id;
        for from in &left {
            let r = from.lookup(&target).await;
            assert!(
                matches!(r, Err(Error::NodeNotFound(id)) if id == target),
                "{r:?}"
            );
            let r = from.send_message(&target, "chat", &b"x"[..]).await;
            assert!(matches!(r, Err(Error::NodeNotFound(_))), "{r:?}");
        }
        // A known address across the partition is unreachable.
        let r = left[0]
            .send_message_to(&boots[3].local_node(), "chat", &b"x"[..])
            .await;
        assert!(
            matches!(r, Err(Error::Transport(TransportError::Unreachable(_)))),
            "{r:?}"
        );
        assert!(net.stats().refused > 0);

        net.heal();
        let mut inbox = right[3].register_protocol("chat").unwrap();
        for from in &left {
            let (found, _) = from.lookup(&target).await.unwrap();
            assert_eq!(found, right[3].local_node());
        }
        left[0]
            .send_message(&target, "chat", &b"across"[..])
            .await
            .unwrap();
        assert_eq!(inbox.recv().await.unwrap().data(), b"across");
    })
    .unwrap();
}

#[test]
fn partitions_close_connections_and_drop_what_is_in_flight() {
    let config = SimConfig {
        latency: Latency::UniformPerLink(Span::new(
            Duration::from_millis(20),
            Duration::from_millis(20),
        )),
        ..SimConfig::default()
    };
    sim::run(config, 9, |net| async move {
        let a = net.add_node(sim::node_config()).await.unwrap();
        let b = net.add_node(sim::node_config()).await.unwrap();
        let mut events = b.events();
        let _inbox = b.register_protocol("chat").unwrap();
        a.send_message_to(&b.local_node(), "chat", &b"doomed"[..])
            .await
            .unwrap();
        // Unlisted nodes (b) form their own group.
        net.partition(vec![vec![a.local_node().id]]).unwrap();
        assert!(a.connected_peers().is_empty());
        loop {
            if let kadmesh::SwarmEvent::PeerDisconnected { peer, .. } = events.recv().await.unwrap()
            {
                assert_eq!(peer, a.local_node().id);
                break;
            }
        }
        net.run_until_idle().await;
        let stats = net.stats();
        assert_eq!(stats.dropped.partitioned, 1);
        assert_eq!(stats.delivered, 0);
        net.heal();
        a.send_message_to(&b.local_node(), "chat", &b"ok"[..])
            .await
            .unwrap();
        net.run_until_idle().await;
        assert_eq!(net.stats().delivered, 1);
    })
    .unwrap();
}

#[test]
fn wrong_keys_unknown_addresses_and_duplicate_identities_are_refused() {
    sim::run(SimConfig::default(), 10, |net| async move {
        let a = net.add_node(sim::node_config()).await.unwrap();
        let b = net.add_node(sim::node_config()).await.unwrap();
        let impostor = NodeInfo::new(kadmesh::Keypair::random().node_id(), b.local_node().addr);
        let r = a.send_message_to(&impostor, "chat", &b"x"[..]).await;
        assert!(
            matches!(r, Err(Error::Transport(TransportError::Handshake { .. }))),
            "{r:?}"
        );
        let nowhere = NodeInfo::new(b.local_node().id, sim::address_of(5000).unwrap());
        let r = a.send_message_to(&nowhere, "chat", &b"x"[..]).await;
        assert!(
            matches!(r, Err(Error::Transport(TransportError::Dial { .. }))),
            "{r:?}"
        );

        let keypair = kadmesh::Keypair::random();
        let c = net
            .add_node_from(sim::node_config(), keypair.clone())
            .await
            .unwrap();
        assert_eq!(c.local_node().id, keypair.node_id());
        let r = net.add_node_from(sim::node_config(), keypair.clone()).await;
        assert!(matches!(r, Err(Error::Bind { .. })), "{:?}", r.err());
        // Once it shut down, the identity may come back, at a new address.
        c.shutdown().await;
        let r = a.send_message_to(&c.local_node(), "chat", &b"x"[..]).await;
        assert!(
            matches!(r, Err(Error::Transport(TransportError::Dial { .. }))),
            "{r:?}"
        );
        let c2 = net
            .add_node_from(sim::node_config(), keypair)
            .await
            .unwrap();
        assert_ne!(c2.local_node().addr, c.local_node().addr);
        assert_eq!(
            net.node(&c2.local_node().id).unwrap().local_node(),
            c2.local_node()
        );
        // The node that shut down left the network; its return is a new node.
        assert_eq!(net.nodes().len(), 3);
        assert_eq!(net.len(), 4);
    })
    .unwrap();
}

/// The scale target: 1,000 nodes (`KADMESH_SIM_NODES` to change) bootstrap concurrently
/// (`KADMESH_SIM_SEQUENTIAL=1`: one after the other) from 5 boot nodes, then 1,000 sends to nodes not in the sender's table (each a lookup first). Prints wall and
/// virtual time, the counters and peak RSS. Runs in release builds only:
/// `cargo test --release --test sim_network -- --nocapture`.
#[test]
#[cfg_attr(debug_assertions, ignore = "timing run: use --release")]
fn thousand_nodes_bootstrap_and_send_to_unknown() {
    let n: usize = std::env::var("KADMESH_SIM_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let sequential = std::env::var_os("KADMESH_SIM_SEQUENTIAL").is_some();
    let mode = if sequential {
        "sequential"
    } else {
        "concurrent"
    };
    let wall = std::time::Instant::now();
    let summary = sim::run(SimConfig::default(), 11, |net| async move {
        let start = Instant::now();
        let (boots, nodes) = if sequential {
            let boots = boot_nodes(&net, 5).await;
            let infos: Vec<NodeInfo> = boots.iter().map(|b| b.local_node()).collect();
            let nodes = add_many(&net, n - 5).await;
            for node in &nodes {
                node.bootstrap_from(infos.clone()).await.unwrap();
            }
            (boots, nodes)
        } else {
            network(&net, 5, n - 5).await
        };
        let bootstrap_virtual = start.elapsed();
        let bootstrap_wall = wall.elapsed();
        let tables: Vec<usize> = nodes.iter().map(|n| n.table_len()).collect();
        let mut inboxes: Vec<_> = nodes
            .iter()
            .map(|n| n.register_protocol("chat").unwrap())
            .collect();
        let mut rng = StdRng::seed_from_u64(12);
        let (mut sent, mut not_found, mut unknown_to_all) = (0, 0, 0);
        let lookups_start = Instant::now();
        while sent + not_found < 1000 {
            let from = rng.random_range(0..nodes.len());
            let to = rng.random_range(0..nodes.len());
            let target = nodes[to].local_node().id;
            if from == to || nodes[from].table_contains(&target) {
                continue;
            }
            match nodes[from].send_message(&target, "chat", &b"hi"[..]).await {
                Ok(_) => {
                    inboxes[to].recv().await.unwrap();
                    sent += 1;
                }
                Err(Error::NodeNotFound(_)) => {
                    not_found += 1;
                    if !boots.iter().chain(&nodes).any(|n| n.table_contains(&target)) {
                        unknown_to_all += 1;
                    }
                }
                Err(e) => panic!("{e}"),
            }
        }
        let lookups_virtual = lookups_start.elapsed();
        net.run_until_idle().await;
        let min_table = tables.iter().min().copied().unwrap_or(0);
        let mean_table = tables.iter().sum::<usize>() as f64 / tables.len().max(1) as f64;
        format!(
            "bootstrap ({mode}, 5 boot nodes): {bootstrap_wall:?} wall, {bootstrap_virtual:?} virtual, \
             tables min {min_table} mean {mean_table:.1}; 1000 sends to unknown nodes: {sent} delivered, \
             {not_found} NodeNotFound ({unknown_to_all} of them in no routing table at all), \
             {lookups_virtual:?} virtual; {:?}",
            net.stats()
        )
    })
    .unwrap();
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    eprintln!(
        "{n} nodes: {summary}; total {:?} wall; {rss}",
        wall.elapsed()
    );
}

#[test]
fn nodes_that_went_offline_leave_the_tables_after_two_failed_requests() {
    sim::run(SimConfig::default(), 21, |net| async move {
        let (_boots, nodes) = network(&net, 3, 40).await;
        let victim = nodes[0].local_node();
        net.go_offline(&victim.id).unwrap();
        let holders: Vec<&Swarm> = nodes[1..]
            .iter()
            .filter(|n| n.table_contains(&victim.id))
            .collect();
        assert!(!holders.is_empty());
        for n in holders {
            // A lookup next to the victim asks it first (it is the closest the table knows): one failure
            // is counted, the second removes it.
            n.closest_nodes(&victim.dht_id()).await.unwrap();
            assert!(n.table_contains(&victim.id), "removed after one failure");
            n.closest_nodes(&victim.dht_id()).await.unwrap();
            assert!(!n.table_contains(&victim.id), "kept after two failures");
            assert!(n.stats().dht.table_evicted.get("failures") >= 1);
        }
    })
    .unwrap();
}

#[test]
fn lookups_over_three_disjoint_paths_find_their_targets() {
    sim::run(SimConfig::default(), 22, |net| async move {
        let mut config = sim::node_config();
        config.lookup.disjoint_paths = 3;
        let (_boots, nodes) = network_with(&net, 3, 100, &config).await;
        let mut rng = StdRng::seed_from_u64(23);
        let mut found = 0;
        while found < 20 {
            let (from, to) = (
                rng.random_range(0..nodes.len()),
                rng.random_range(0..nodes.len()),
            );
            let target = nodes[to].local_node();
            if from == to || nodes[from].table_contains(&target.id) {
                continue;
            }
            let (node, report) = nodes[from].lookup(&target.id).await.unwrap();
            assert_eq!(node, target);
            assert!(report.rpcs >= 1);
            found += 1;
        }
    })
    .unwrap();
}
