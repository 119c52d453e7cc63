//! The DHT over real TCP on 127.0.0.1: the seed rows "Send message to unknown node (Simple FindNode)",
//! "Bootstrap" and "Send message to node we don't know after Bootstrap", plus lookup correctness.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{WAIT, local_config, network, node, shutdown_all};
use kadmesh::{DhtId, Error, NodeInfo, Swarm};
use rand::{RngExt, SeedableRng};
use tokio::time::timeout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_to_unknown_node_through_find_node() {
    let n1 = node().await;
    let n2 = node().await;
    let n3 = node().await;
    let mut inbox = n3.register_protocol("chat").unwrap();
    // 2 and 3 know only node 1.
    n2.add_node(&n1.local_node()).await.unwrap();
    n3.add_node(&n1.local_node()).await.unwrap();
    // 1 serves only nodes that answered it.
    n1.add_node(&n3.local_node()).await.unwrap();
    assert!(n2.table_contains(&n1.local_node().id));
    assert!(!n2.table_contains(&n3.local_node().id));
    assert!(
        n2.connected_peers()
            .iter()
            .all(|p| p.id != n3.local_node().id)
    );

    let delivery = n2
        .send_message(&n3.local_node().id, "chat", &b"found you"[..])
        .await
        .unwrap();
    assert!(delivery.lookup.expect("found by a lookup").rpcs >= 1);
    let got = timeout(WAIT, inbox.recv()).await.unwrap().unwrap();
    assert_eq!(got.data(), b"found you");
    assert_eq!(got.sender().id, n2.local_node().id);

    // (By now 3 may have verified 2 with a ping, so 2 may know 3 first-hand.)
    let (found, _) = n2.lookup(&n3.local_node().id).await.unwrap();
    assert_eq!(found, n3.local_node());
    shutdown_all([n1, n2, n3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_nodes_bootstrap_from_three_boot_nodes() {
    let (boots, nodes) = network(3, 10).await;
    for n in &nodes {
        assert!(n.table_len() >= 3, "table of {} nodes", n.table_len());
    }
    shutdown_all(boots.into_iter().chain(nodes)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_bootstrap_messages_to_unknown_nodes_arrive() {
    let (boots, nodes) = network(5, 60).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut inboxes: Vec<_> = nodes
        .iter()
        .map(|n| n.register_protocol("chat").unwrap())
        .collect();
    let mut sent = 0;
    while sent < 20 {
        let from = rng.random_range(0..nodes.len());
        let to = rng.random_range(0..nodes.len());
        let target = nodes[to].local_node().id;
        if from == to || nodes[from].table_contains(&target) {
            continue;
        }
        let body = format!("message {sent}");
        nodes[from]
            .send_message(&target, "chat", body.clone())
            .await
            .unwrap();
        let got = timeout(WAIT, inboxes[to].recv()).await.unwrap().unwrap();
        assert_eq!(got.data(), body.as_bytes());
        assert_eq!(got.sender().id, nodes[from].local_node().id);
        sent += 1;
    }
    shutdown_all(boots.into_iter().chain(nodes)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closest_lookups_return_the_true_k_closest() {
    const K: usize = 20;
    let (boots, nodes) = network(5, 100).await;
    let all: Vec<NodeInfo> = boots.iter().chain(&nodes).map(|n| n.local_node()).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut exact = 0;
    const LOOKUPS: usize = 100;
    for _ in 0..LOOKUPS {
        let from = &nodes[rng.random_range(0..nodes.len())];
        let target = DhtId::random(&mut rng);
        let (found, _) = from.closest_nodes(&target).await.unwrap();
        let mut truth: Vec<NodeInfo> = all
            .iter()
            .filter(|n| n.id != from.local_node().id)
            .copied()
            .collect();
        truth.sort_by_key(|n| n.dht_id().distance(&target));
        truth.truncate(K);
        let found: HashSet<_> = found.iter().map(|n| n.id).collect();
        let truth: HashSet<_> = truth.iter().map(|n| n.id).collect();
        if found == truth {
            exact += 1;
        }
    }
    assert!(exact * 100 >= LOOKUPS * 99, "exact in {exact} of {LOOKUPS}");
    shutdown_all(boots.into_iter().chain(nodes)).await;
}

#[tokio::test]
async fn unreachable_boot_nodes_fail_fast_with_a_typed_error() {
    let mut config = local_config();
    config.net.dial_timeout = Duration::from_secs(60);
    let n = Swarm::start(config).await.unwrap();
    // Ports that were just free: connections are refused at once.
    let mut boot = Vec::new();
    for _ in 0..3 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        boot.push(NodeInfo::new(
            kadmesh::Keypair::random().node_id(),
            l.local_addr().unwrap(),
        ));
    }
    let r = timeout(WAIT, n.bootstrap_from(boot))
        .await
        .expect("did not wait for dial timeouts");
    assert!(
        matches!(r, Err(Error::BootstrapFailed { tried: 3 })),
        "{r:?}"
    );
    assert!(matches!(n.bootstrap().await, Err(Error::NoBootNodes)));
    n.shutdown().await;
}

#[tokio::test]
async fn seed_list_file_errors_name_the_line() {
    let dir = std::env::temp_dir().join(format!("kadmesh-seeds-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("seeds.txt");
    std::fs::write(&file, "# comment\n\n127.0.0.1:1/nonsense\n").unwrap();
    let mut config = local_config();
    config.bootstrap.files = vec![file];
    let n = Swarm::start(config).await.unwrap();
    match n.bootstrap().await {
        Err(Error::SeedList(kadmesh::dht::seeds::SeedListError::BadLine { line, .. })) => {
            assert_eq!(line, 3)
        }
        other => panic!("{other:?}"),
    }
    n.shutdown().await;
    std::fs::remove_dir_all(dir).unwrap();
}

/// A peer that makes `node` meet it, then answers every FindNode request with `answer`.
async fn lying_peer(node: &Swarm, answer: Vec<NodeInfo>) -> tokio::task::JoinHandle<()> {
    use kadmesh::swarm::{FINDNODE_PROTOCOL, PING_PROTOCOL};
    use kadmesh::wire::{self, pb};
    let mut liar = common::RawPeer::connect(node).await;
    // A ping request makes the node meet the liar (every authenticated message refreshes its sender).
    let mut hello = common::RawPeer::envelope(node, PING_PROTOCOL, b"");
    hello.metadata.as_mut().unwrap().req_id = uuid::Uuid::new_v4().as_bytes().to_vec();
    liar.send(&hello).await;
    assert!(liar.recv().await.metadata.unwrap().response);
    let answer = wire::encode(&pb::FindNodeResponse {
        nodes: answer.iter().map(pb::NodeInfo::from).collect(),
    });
    let node = node.clone();
    tokio::spawn(async move {
        loop {
            let meta = liar.recv().await.metadata.unwrap_or_default();
            if meta.protocol != FINDNODE_PROTOCOL {
                continue;
            }
            let mut reply = common::RawPeer::envelope(&node, FINDNODE_PROTOCOL, &answer);
            let m = reply.metadata.as_mut().unwrap();
            m.req_id = meta.req_id;
            m.response = true;
            liar.send(&reply).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_find_node_answers_are_rejected_and_counted() {
    let a = node().await;
    let fake = |port| {
        NodeInfo::new(
            kadmesh::Keypair::random().node_id(),
            format!("127.0.0.1:{port}").parse().unwrap(),
        )
    };
    let too_many: Vec<NodeInfo> = (0..a.config().dht.bucket_size + 1)
        .map(|i| fake(1000 + i as u16))
        .collect();
    let liar = lying_peer(&a, too_many).await;
    let target = kadmesh::Keypair::random().node_id();
    let r = timeout(WAIT, a.lookup(&target)).await.unwrap();
    assert!(
        matches!(r, Err(Error::NodeNotFound(id)) if id == target),
        "{r:?}"
    );
    assert!(
        a.stats()
            .findnode_bad
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    liar.abort();
    a.shutdown().await;
}

/// Asks `node` over `raw`'s connection for the nodes it serves closest to `target` (a FindNode request as
/// any peer would send it), skipping the node's own requests to `raw`.
async fn raw_find_node(raw: &mut common::RawPeer, node: &Swarm, target: &DhtId) -> Vec<NodeInfo> {
    use kadmesh::swarm::FINDNODE_PROTOCOL;
    use kadmesh::wire::{self, pb};
    let k = node.config().dht.bucket_size;
    let request = wire::encode(&pb::FindNodeRequest {
        target: target.0.to_vec(),
        max_results: k as u32,
    });
    let mut ask = common::RawPeer::envelope(node, FINDNODE_PROTOCOL, &request);
    let req_id = uuid::Uuid::new_v4().as_bytes().to_vec();
    ask.metadata.as_mut().unwrap().req_id = req_id.clone();
    raw.send(&ask).await;
    loop {
        let env = raw.recv().await;
        let meta = env.metadata.unwrap_or_default();
        if meta.response && meta.req_id == req_id {
            return kadmesh::swarm::parse_find_node_response(&env.payload, k).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_heard_of_only_in_answers_stay_out_of_the_table() {
    let a = node().await;
    // A node that does not exist: nothing listens at its address.
    let ghost_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let ghost = NodeInfo::new(kadmesh::Keypair::random().node_id(), ghost_addr);
    let liar = lying_peer(&a, vec![ghost]).await;
    let before = a.table_len();
    // The lookup learns the ghost's address from the liar...
    let (found, _) = timeout(WAIT, a.lookup(&ghost.id)).await.unwrap().unwrap();
    assert_eq!(found, ghost);
    // ...but the ghost never answered, so it is neither in the table nor served to others.
    let (closest, _) = timeout(WAIT, a.closest_nodes(&ghost.dht_id()))
        .await
        .unwrap()
        .unwrap();
    assert!(!a.table_contains(&ghost.id));
    assert!(closest.iter().all(|n| n.id != ghost.id));
    assert_eq!(a.table_len(), before);
    // Another peer asking A for the ghost's neighbourhood gets the liar (it answered A), never the ghost.
    let mut asker = common::RawPeer::connect(&a).await;
    let served = raw_find_node(&mut asker, &a, &ghost.dht_id()).await;
    assert!(!served.is_empty());
    assert!(served.iter().all(|n| n.id != ghost.id), "{served:?}");
    liar.abort();
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_only_node_is_not_served_until_it_answered() {
    use kadmesh::swarm::PING_PROTOCOL;
    let a = node().await;
    let mut newcomer = common::RawPeer::connect(&a).await;
    let id = newcomer.keypair.node_id();
    // The newcomer asks A for nodes, as a joining node does. A answers, keeps it as an inbound-only entry
    // and pings it to verify it; the newcomer holds that ping unanswered for now.
    let (mut answered, mut verify) = (false, None);
    let request = kadmesh::wire::encode(&kadmesh::wire::pb::FindNodeRequest {
        target: id.dht_id().0.to_vec(),
        max_results: 20,
    });
    let mut hello = common::RawPeer::envelope(&a, kadmesh::swarm::FINDNODE_PROTOCOL, &request);
    hello.metadata.as_mut().unwrap().req_id = uuid::Uuid::new_v4().as_bytes().to_vec();
    newcomer.send(&hello).await;
    while !answered || verify.is_none() {
        let meta = newcomer.recv().await.metadata.unwrap_or_default();
        if meta.response {
            answered = true;
        } else if meta.protocol == PING_PROTOCOL {
            verify = Some(meta.req_id);
        }
    }
    assert!(a.table_contains(&id));
    assert!(!a.table_serves(&id));
    let mut asker = common::RawPeer::connect(&a).await;
    let served = raw_find_node(&mut asker, &a, &id.dht_id()).await;
    assert!(served.iter().all(|n| n.id != id), "{served:?}");

    // The newcomer answers the verification ping: from then on A serves it.
    let mut answer = common::RawPeer::envelope(&a, PING_PROTOCOL, b"");
    let m = answer.metadata.as_mut().unwrap();
    m.req_id = verify.unwrap();
    m.response = true;
    newcomer.send(&answer).await;
    timeout(WAIT, async {
        while !a.table_serves(&id) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the answer verifies the node");
    let served = raw_find_node(&mut asker, &a, &id.dht_id()).await;
    assert_eq!(served.first().map(|n| n.id), Some(id));
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_moved_is_reached_at_its_new_address() {
    let a = node().await;
    let key = kadmesh::Keypair::random();
    let b = Swarm::start_with_key(local_config(), key.clone())
        .await
        .unwrap();
    b.add_node(&a.local_node()).await.unwrap();
    let old = b.local_node();
    assert!(a.table_contains(&old.id));
    b.shutdown().await;

    // Same identity, another port: once it has spoken to A, A sends to the new address.
    let moved = Swarm::start_with_key(local_config(), key).await.unwrap();
    assert_ne!(moved.local_node().addr, old.addr);
    let mut inbox = moved.register_protocol("chat").unwrap();
    moved.add_node(&a.local_node()).await.unwrap();
    let delivery = a
        .send_message(&old.id, "chat", &b"found you again"[..])
        .await
        .unwrap();
    assert_eq!(delivery.to.addr, moved.local_node().addr);
    let got = timeout(WAIT, inbox.recv()).await.unwrap().unwrap();
    assert_eq!(got.data(), b"found you again");
    a.shutdown().await;
    moved.shutdown().await;
}
