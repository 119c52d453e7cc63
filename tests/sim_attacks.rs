//! Hostile peers and churn on the simulator: nodes at chosen addresses, forged FindNode answers reaching
//! their requesters, departed nodes freed, and the `eclipse`, `poison` and `churn` scenarios (counts
//! checked against the routing tables themselves, reproducible from a seed).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use kadmesh::scenario::churn;
use kadmesh::scenario::eclipse::{Eclipse, SYBIL_SUBNET};
use kadmesh::scenario::network::Network;
use kadmesh::scenario::params::{ScenarioParams, StrategyKind};
use kadmesh::scenario::poison::Poison;
use kadmesh::scenario::report::Report;
use kadmesh::scenario::{self, ScenarioKind};
use kadmesh::sim::{self, Forgery, SimConfig, SimNetwork};
use kadmesh::{DhtId, Error, Keypair, NodeInfo, Swarm};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::broadcast::error::TryRecvError;

/// Runs `f` on a fresh simulated network with seed `seed`.
fn on_sim<T>(seed: u64, f: impl AsyncFnOnce(&SimNetwork) -> T) -> T {
    SimNetwork::runtime().unwrap().block_on(async {
        let net = SimNetwork::new(SimConfig::default(), seed);
        let out = f(&net).await;
        net.shutdown().await;
        out
    })
}

/// `n` nodes with deterministic identities from `rng` at `10.66.0.1:7513`, `10.66.0.2:7513`, ...
async fn add_at(net: &SimNetwork, n: u8, rng: &mut StdRng) -> Vec<Swarm> {
    let mut nodes = Vec::new();
    for i in 1..=n {
        let addr = SocketAddr::from(([10, 66, 0, i], 7513));
        let keypair = Keypair::generate(rng);
        nodes.push(
            net.add_node_at(sim::node_config(), keypair, addr)
                .await
                .unwrap(),
        );
    }
    nodes
}

fn findnode_bad(node: &Swarm) -> u64 {
    node.stats().findnode_bad.load(Ordering::Relaxed)
}

#[test]
fn nodes_start_at_chosen_addresses_and_leave_without_a_trace() {
    on_sim(1, async |net| {
        let mut rng = StdRng::seed_from_u64(101);
        let a = net.add_node(sim::node_config()).await.unwrap();
        let sybils = add_at(net, 2, &mut rng).await;
        let b = &sybils[0];
        assert_eq!(b.local_node().addr.to_string(), "10.66.0.1:7513");
        // Taken, unspecified or without a port: typed errors naming the address.
        for bad in ["10.66.0.1:7513", "0.0.0.0:7513", "10.66.0.9:0"] {
            let addr: SocketAddr = bad.parse().unwrap();
            let r = net
                .add_node_at(sim::node_config(), Keypair::generate(&mut rng), addr)
                .await;
            assert!(
                matches!(r, Err(Error::Bind { addr: got, .. }) if got == addr),
                "{bad}: {:?}",
                r.err()
            );
        }
        // IPv6 works as well; a second node on the same IP needs another port.
        let v6: SocketAddr = "[2001:db8::1]:7513".parse().unwrap();
        let c = net
            .add_node_at(sim::node_config(), Keypair::generate(&mut rng), v6)
            .await
            .unwrap();
        let same_ip: SocketAddr = "10.66.0.1:7514".parse().unwrap();
        net.add_node_at(sim::node_config(), Keypair::generate(&mut rng), same_ip)
            .await
            .unwrap();
        a.add_node(&b.local_node()).await.unwrap();
        c.add_node(&b.local_node()).await.unwrap();
        assert!(a.table_contains(&b.local_node().id));
        assert!(c.table_contains(&b.local_node().id));
        let stats = net.stats();
        assert_eq!((stats.nodes, stats.connections), (5, 2));

        // b leaves: its connections close, the network lets go of its Swarm, its address is free.
        let b = sybils.into_iter().next().unwrap();
        let info = b.local_node();
        let mut events = b.events();
        b.shutdown().await;
        drop(b);
        net.run_until_idle().await;
        let stats = net.stats();
        assert_eq!((stats.nodes, stats.connections), (4, 0));
        assert_eq!(net.nodes().len(), 4);
        assert_eq!(net.len(), 5, "nodes ever added");
        assert!(net.node(&info.id).is_none());
        // Nobody holds the departed Swarm any more: its event channel is closed.
        loop {
            match events.try_recv() {
                Ok(_) | Err(TryRecvError::Lagged(_)) => continue,
                Err(e) => {
                    assert_eq!(e, TryRecvError::Closed);
                    break;
                }
            }
        }
        assert!(a.add_node(&info).await.is_err(), "nobody answers there");
        let again = net
            .add_node_at(sim::node_config(), Keypair::generate(&mut rng), info.addr)
            .await
            .unwrap();
        assert_eq!(again.local_node().addr, info.addr);
    });
}

#[test]
fn garbage_answers_reach_the_requester_and_are_rejected_as_malformed() {
    on_sim(2, async |net| {
        let mut rng = StdRng::seed_from_u64(102);
        let a = net.add_node(sim::node_config()).await.unwrap();
        let liar = &add_at(net, 1, &mut rng).await[0];
        net.set_adversary(&liar.local_node().id, Some(Forgery::Garbage))
            .unwrap();
        assert_eq!(net.adversary(&liar.local_node().id), Some(Forgery::Garbage));
        // Pings are answered by the adversary's Swarm: it looks alive.
        a.add_node(&liar.local_node()).await.unwrap();
        assert!(a.table_contains(&liar.local_node().id));
        let seen_by_liar = liar.stats().messages_in.load(Ordering::Relaxed);

        let target = Keypair::generate(&mut rng).node_id();
        let r = a.lookup(&target).await;
        assert!(matches!(r, Err(Error::NodeNotFound(_))), "{r:?}");
        assert_eq!(net.stats().forged, 1);
        assert_eq!(findnode_bad(&a), 1, "the lookup rejected the answer");
        // The request never reached the adversary's Swarm.
        assert_eq!(
            liar.stats().messages_in.load(Ordering::Relaxed),
            seen_by_liar
        );
        assert_eq!(findnode_bad(liar), 0);
    });
}

#[test]
fn colluders_answer_with_each_other_and_honest_nodes_answer_as_ever() {
    on_sim(3, async |net| {
        let mut rng = StdRng::seed_from_u64(103);
        // One lookup path: its per-subnet cap is what this test counts.
        let mut one_path = sim::node_config();
        one_path.lookup.disjoint_paths = 1;
        let a = net.add_node(one_path).await.unwrap();
        let honest = net.add_node(sim::node_config()).await.unwrap();
        let colluders = add_at(net, 6, &mut rng).await;
        let ids: BTreeSet<_> = colluders.iter().map(|c| c.local_node().id).collect();
        for c in &colluders {
            net.set_adversary(&c.local_node().id, Some(Forgery::OnlyColluders))
                .unwrap();
        }
        // The honest node knows a colluder; a knows the honest node and one colluder.
        honest.add_node(&colluders[5].local_node()).await.unwrap();
        a.add_node(&honest.local_node()).await.unwrap();
        a.add_node(&colluders[0].local_node()).await.unwrap();

        let target = DhtId::random(&mut rng);
        let (closest, report) = a.closest_nodes(&target).await.unwrap();
        // Every colluder was named by another, and they share one /24: the lookup keeps at most
        // `lookup.max_per_subnet` of them, each a real, reachable node that answered; the honest node
        // answered honestly (and named colluder 5).
        let found: BTreeSet<_> = closest.iter().map(|n| n.id).collect();
        let kept: Vec<_> = colluders
            .iter()
            .filter(|c| found.contains(&c.local_node().id))
            .collect();
        let cap = kadmesh::config::LookupSettings::default().max_per_subnet;
        assert_eq!(kept.len(), cap.min(ids.len()), "{closest:?}");
        assert!(found.contains(&honest.local_node().id));
        for c in &kept {
            assert!(
                closest.contains(&c.local_node()),
                "real address of {}",
                c.local_node()
            );
        }
        assert_eq!(
            net.stats().forged,
            kept.len() as u64,
            "one forged answer per colluder queried"
        );
        assert_eq!(report.rpcs as u64, kept.len() as u64 + 1);
        assert_eq!(findnode_bad(&a), 0);

        // An empty answer is well formed, too.
        let quiet = net.add_node(sim::node_config()).await.unwrap();
        net.set_adversary(&quiet.local_node().id, Some(Forgery::Empty))
            .unwrap();
        let b = net.add_node(sim::node_config()).await.unwrap();
        b.add_node(&quiet.local_node()).await.unwrap();
        let (closest, _) = b.closest_nodes(&target).await.unwrap();
        assert_eq!(closest, vec![quiet.local_node()]);
        assert_eq!(findnode_bad(&b), 0);
        // Honest again: the Swarm answers itself.
        net.set_adversary(&quiet.local_node().id, None).unwrap();
        let before = net.stats().forged;
        b.closest_nodes(&target).await.unwrap();
        assert_eq!(net.stats().forged, before);
    });
}

fn params(nodes: usize, seed: u64) -> ScenarioParams {
    ScenarioParams {
        nodes,
        boot_nodes: 3,
        lookups: 100,
        seed,
        ..ScenarioParams::default()
    }
}

/// Attacker entries of `node`'s table counted by address: entries in the Sybils' /24.
fn sybil_subnet_entries(node: &Swarm) -> usize {
    let in_subnet = |n: &NodeInfo| match n.addr {
        SocketAddr::V4(v4) => v4.ip().octets()[..3] == SYBIL_SUBNET,
        SocketAddr::V6(_) => false,
    };
    node.table_snapshot()
        .iter()
        .flat_map(|(_, b)| b)
        .filter(|n| in_subnet(n))
        .count()
}

#[test]
fn eclipse_counts_match_the_tables() {
    let params = ScenarioParams {
        attackers: 100,
        strategy: StrategyKind::Colluders,
        ..params(100, 21)
    };
    scenario::validate(ScenarioKind::Eclipse, &params).unwrap();
    SimNetwork::runtime().unwrap().block_on(async {
        let mut eclipse = Eclipse::build(&params).await.unwrap();
        assert_eq!(eclipse.net.bootstrap.success_rate, 1.0);
        assert_eq!(eclipse.sybils.len(), 100);
        assert_eq!(eclipse.contacted, 100, "the victim answered every Sybil");
        assert!(eclipse.victim >= params.boot_nodes);
        let attack = eclipse.attack(&params, params.lookups).await;
        eprintln!("{attack:?}");

        let victim = &eclipse.net.nodes[eclipse.victim];
        // Whatever the routing table's defences let in (today: every free slot), the report counts it.
        let direct = sybil_subnet_entries(victim);
        assert_eq!(attack.victim_attacker_entries, Some(direct));
        assert_eq!(attack.victim_table_size, Some(victim.table_len()));
        let per_node: Vec<usize> = eclipse.net.nodes.iter().map(sybil_subnet_entries).collect();
        assert_eq!(attack.attacker_entries_max, *per_node.iter().max().unwrap());
        assert_eq!(
            attack.honest_tables_with_attackers,
            per_node.iter().filter(|&&e| e > 0).count()
        );
        assert_eq!(attack.attackers, 100);
        assert_eq!(attack.strategy, "colluders");
        assert_eq!(attack.lookups, 100);
        assert_eq!(attack.victim_lookups, Some(10));
        assert!(attack.succeeded <= attack.lookups);
        assert_eq!(
            attack.honest_lookup_success_rate,
            attack.succeeded as f64 / 100.0
        );
        assert_eq!(attack.forged_responses, eclipse.sim.stats().forged);
        eclipse.shutdown().await;
    });
}

#[test]
fn poison_colluders_enter_tables_and_garbage_is_rejected() {
    let params = ScenarioParams {
        faulty_percent: 20.0,
        strategy: StrategyKind::Mixed,
        ..params(100, 22)
    };
    scenario::validate(ScenarioKind::Poison, &params).unwrap();
    SimNetwork::runtime().unwrap().block_on(async {
        let mut poison = Poison::build(&params).await.unwrap();
        assert_eq!(poison.colluder_ids.len(), 20);
        assert_eq!(poison.net.bootstrap.success_rate, 1.0);
        for (pos, &i) in poison.net.faulty.iter().enumerate() {
            let id = poison.net.nodes[i].local_node().id;
            assert_eq!(poison.sim.adversary(&id), Some(params.strategy.role(pos)));
        }
        let attack = poison.attack(&params, params.lookups).await;
        eprintln!("{attack:?}");
        assert_eq!(attack.attackers, 20);
        assert!(attack.attacker_entries_max > 0, "colluders look honest");
        assert!(attack.rejected_responses > 0, "garbage was rejected");
        assert!(attack.forged_responses >= attack.rejected_responses);
        assert_eq!(attack.lookups, 100);
        assert_eq!(attack.victim_attacker_entries, None);
        poison.net.shutdown().await;
    });
}

/// A report with the machine-dependent figures cleared.
fn comparable(mut r: Report) -> Report {
    r.wall_ms = 0.0;
    r.peak_rss_mb = 0.0;
    r.churn = r.churn.map(|c| c.without_memory());
    r
}

fn run(kind: ScenarioKind, params: &ScenarioParams) -> Report {
    scenario::validate(kind, params).unwrap();
    let runtime = scenario::runtime_for(params).unwrap();
    let report = runtime.block_on(scenario::run(kind, params)).unwrap();
    assert!(report.passed(), "{kind}: {:?}", report.failures);
    report
}

#[test]
fn churn_keeps_the_network_size_and_frees_departed_nodes() {
    let params = ScenarioParams {
        churn_percent: 20.0,
        duration: std::time::Duration::from_secs(5 * 60),
        lookups: 20,
        ..params(100, 23)
    };
    scenario::validate(ScenarioKind::Churn, &params).unwrap();
    SimNetwork::runtime().unwrap().block_on(async {
        let mut net = Network::build(&params).await.unwrap();
        let sim = net.testbed.sim().unwrap().clone();
        let boot: Vec<_> = net.nodes[..3].iter().map(|n| n.local_node()).collect();
        let c = churn::run(&mut net, &params).await.unwrap();
        eprintln!("{c:?}");
        assert_eq!(c.minutes, 5);
        assert_eq!(c.series.len(), 5);
        assert_eq!((c.departed, c.joined), (100, 100));
        assert_eq!(c.lookups, 100);
        assert_eq!(c.lookup_success_rate, c.succeeded as f64 / 100.0);
        // The number of live nodes stays constant; the boot nodes never leave.
        assert_eq!((c.nodes_start, c.nodes_end), (100, 100));
        assert!(c.series.iter().all(|m| m.nodes == 100 && m.departed == 20));
        assert_eq!(net.nodes.len(), 100);
        let live: Vec<_> = net.nodes[..3].iter().map(|n| n.local_node()).collect();
        assert_eq!(live, boot);
        // Departed nodes are gone from the network: only the live Swarms are held.
        assert_eq!(sim.nodes().len(), 100);
        assert_eq!(sim.len(), 200);
        assert_eq!(sim.stats().nodes, 100);
        // Connections and tasks do not grow with the nodes that came and went.
        assert!(c.connections_end <= c.connections_start, "{c:?}");
        assert!(
            c.series
                .iter()
                .all(|m| m.connections <= c.connections_start)
        );
        assert!(
            c.series.iter().all(|m| m.tasks <= c.tasks_start + 10),
            "{c:?}"
        );
        assert_eq!(c.stale_share_end, churn::stale_share(&net.nodes));
        assert!((0.0..=1.0).contains(&c.stale_share_end));
        net.shutdown().await;
    });
}

#[test]
fn same_seed_same_report() {
    let churn = ScenarioParams {
        duration: std::time::Duration::from_secs(3 * 60),
        lookups: 20,
        ..params(60, 31)
    };
    let a = comparable(run(ScenarioKind::Churn, &churn));
    let b = comparable(run(ScenarioKind::Churn, &churn));
    assert!(a.churn.as_ref().unwrap().lookups > 0);
    assert_eq!(a, b);
    let eclipse = ScenarioParams {
        attackers: 60,
        lookups: 50,
        ..params(60, 32)
    };
    let a = comparable(run(ScenarioKind::Eclipse, &eclipse));
    let b = comparable(run(ScenarioKind::Eclipse, &eclipse));
    assert!(a.attack.is_some());
    assert_eq!(a, b);
    let other = comparable(run(
        ScenarioKind::Eclipse,
        &ScenarioParams {
            seed: 33,
            ..eclipse
        },
    ));
    assert_ne!(a, other);
}

#[test]
fn bad_parameters_are_typed_errors_naming_the_flag() {
    let check =
        |kind: ScenarioKind, p: ScenarioParams| scenario::validate(kind, &p).unwrap_err().name;
    let base = params(100, 1);
    assert_eq!(
        check(
            ScenarioKind::Churn,
            ScenarioParams {
                churn_percent: 101.0,
                ..base.clone()
            }
        ),
        "--churn"
    );
    assert_eq!(
        check(
            ScenarioKind::Churn,
            ScenarioParams {
                duration: std::time::Duration::from_secs(90),
                ..base.clone()
            }
        ),
        "--duration"
    );
    assert_eq!(
        check(
            ScenarioKind::Churn,
            ScenarioParams {
                nodes: 10_000,
                churn_percent: 100.0,
                ..base.clone()
            }
        ),
        "--duration"
    );
    assert_eq!(
        check(
            ScenarioKind::Eclipse,
            ScenarioParams {
                attackers: 0,
                ..base.clone()
            }
        ),
        "--attackers"
    );
    assert_eq!(
        check(
            ScenarioKind::Poison,
            ScenarioParams {
                faulty_percent: 0.0,
                ..base.clone()
            }
        ),
        "--faulty"
    );
    assert_eq!(
        check(
            ScenarioKind::Poison,
            ScenarioParams {
                transport: kadmesh::scenario::params::TransportKind::Tcp,
                faulty_percent: 20.0,
                ..base.clone()
            }
        ),
        "--transport"
    );
    assert_eq!(
        check(
            ScenarioKind::Churn,
            ScenarioParams {
                fault: kadmesh::scenario::params::FaultKind::Drop,
                faulty_percent: 10.0,
                ..base
            }
        ),
        "--fault"
    );
}
