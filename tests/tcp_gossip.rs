//! Gossip broadcast over real TCP on 127.0.0.1: the seed's 2018 integration test (30 nodes, 3 boot nodes,
//! a broadcast reaches all 29 others), and misbehaving relays through the real receive path: altered
//! payload, protocol or timestamp, a forged author, a replay older than the TTL, and a rejecting
//! validator. None of those is delivered anywhere or relayed, and the relaying peer is penalised.

mod common;

use bytes::Bytes;
use common::{
    WAIT, init_tracing, local_config, network, network_with, now_ms, shutdown_all, wait_event,
};
use kadmesh::gossip::{GossipError, NONCE_LEN, SignedGossip, signing_digest};
use kadmesh::swarm::DropReason;
use kadmesh::wire::pb;
use kadmesh::{Error, Keypair, Message, NodeId, Swarm, SwarmEvent};
use rand::Rng;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::time::timeout;

fn total(nodes: &[Swarm], f: impl Fn(&kadmesh::swarm::GossipStats) -> u64) -> u64 {
    nodes.iter().map(|n| f(&n.stats().gossip)).sum()
}

fn load(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(std::sync::atomic::Ordering::SeqCst)
}

/// Waits until no gossip is in flight: no relay running anywhere, and every gossip envelope sent (by
/// the swarms, plus `raw` sent with `send_raw_envelope`) has been handled by its receiver (TCP loses
/// nothing between live nodes).
async fn quiescent(nodes: &[Swarm], raw: u64) {
    let idle = || {
        nodes.iter().all(|n| n.gossip_relays_in_flight() == 0)
            && total(nodes, |s| load(&s.sent)) + raw == total(nodes, |s| load(&s.handled))
    };
    timeout(WAIT, async {
        loop {
            if idle() {
                tokio::task::yield_now().await;
                if idle() {
                    return;
                }
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("gossip did not settle");
}

async fn next_message(inbox: &mut mpsc::Receiver<Message>) -> Message {
    timeout(WAIT, inbox.recv())
        .await
        .expect("timed out waiting for a message")
        .expect("channel open")
}

fn nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut n);
    n
}

/// `relay` hands `body` to `to` and waits for `to` to drop it; returns the reason.
async fn relay_and_wait_drop(relay: &Swarm, to: &Swarm, body: &pb::GossipMessage) -> DropReason {
    let mut events = to.events();
    let env = common::gossip_envelope(&relay.config().client_version, body);
    relay
        .send_raw_envelope(&to.local_node(), env)
        .await
        .unwrap();
    let relay_id = relay.local_node().id;
    wait_event(&mut events, |ev| match ev {
        SwarmEvent::MessageDropped { from, reason, .. } if *from == relay_id => Some(*reason),
        _ => None,
    })
    .await
}

/// Every inbox's first message is `payload` by `author`, by gossip, and nothing else arrives.
async fn all_receive_once(
    nodes: &[Swarm],
    inboxes: &mut [mpsc::Receiver<Message>],
    skip: Option<usize>,
    author: &NodeId,
    payload: &[u8],
    raw: u64,
) {
    for (i, inbox) in inboxes.iter_mut().enumerate() {
        if Some(i) == skip {
            continue;
        }
        let m = next_message(inbox).await;
        assert_eq!(m.data(), payload, "node {i}");
        assert_eq!(m.author(), author, "node {i}");
        assert!(m.is_gossip(), "node {i}");
        assert!(m.gossip_id().is_some());
        assert_ne!(m.sender().id, nodes[i].local_node().id);
    }
    quiescent(nodes, raw).await;
    for (i, inbox) in inboxes.iter_mut().enumerate() {
        assert!(
            matches!(inbox.try_recv(), Err(TryRecvError::Empty)),
            "node {i} received more"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_nodes_a_broadcast_reaches_all_29_others_exactly_once() {
    let (boots, others) = network(3, 27).await;
    let nodes: Vec<Swarm> = boots.into_iter().chain(others).collect();
    assert_eq!(nodes.len(), 30);
    let mut inboxes: Vec<_> = nodes
        .iter()
        .map(|n| n.register_protocol("news").unwrap())
        .collect();
    // From a boot node, a joined node and another joined node.
    for (round, author) in [0usize, 17, 29].into_iter().enumerate() {
        let body = format!("broadcast {round}");
        let report = nodes[author].broadcast("news", body.clone()).await.unwrap();
        assert!(!report.sent_to.is_empty());
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        let author_id = nodes[author].local_node().id;
        all_receive_once(
            &nodes,
            &mut inboxes,
            Some(author),
            &author_id,
            body.as_bytes(),
            0,
        )
        .await;
        // The author does not receive its own broadcast.
        assert!(matches!(
            inboxes[author].try_recv(),
            Err(TryRecvError::Empty)
        ));
    }
    assert_eq!(total(&nodes, |s| load(&s.delivered)), 3 * 29);
    assert_eq!(total(&nodes, |s| load(&s.broadcasts)), 3);
    assert_eq!(total(&nodes, |s| load(&s.penalties)), 0);
    let sent = total(&nodes, |s| load(&s.sent));
    let duplicates = total(&nodes, |s| load(&s.duplicates));
    eprintln!("3 broadcasts on 30 nodes: {sent} gossip envelopes, {duplicates} duplicates");
    assert!(sent <= 3 * 30 * nodes[0].config().gossip.fanout as u64);
    shutdown_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_forged_and_stale_messages_are_rejected_at_the_next_hop() {
    // One relay hands the target many invalid messages; with bans on, the first forged signature would
    // ban it (that is tests/bans.rs's subject), so this test counts rejections without bans.
    let mut config = local_config();
    config.bans.enabled = false;
    let (boots, others) = network_with(2, 6, config).await;
    let nodes: Vec<Swarm> = boots.into_iter().chain(others).collect();
    let mut inboxes: Vec<_> = nodes
        .iter()
        .map(|n| n.register_protocol("news").unwrap())
        .collect();
    let mut sports: Vec<_> = nodes
        .iter()
        .map(|n| n.register_protocol("sports").unwrap())
        .collect();
    let (relay, target) = (&nodes[1], &nodes[5]);
    let relay_id = relay.local_node().id;
    // The author is not a node: every copy comes from a relay.
    let author = Keypair::random();
    let genuine = SignedGossip::sign(
        &author,
        "news",
        Bytes::from_static(b"genuine"),
        now_ms(),
        nonce(),
    )
    .unwrap();
    let base = genuine.to_proto(false);

    let mut payload = base.clone();
    payload.payload = b"forged".to_vec();
    let mut protocol = base.clone();
    protocol.protocol = "sports".into();
    let mut timestamp = base.clone();
    timestamp.timestamp += 1;
    // Claims another author than the key that signed it.
    let mut author_swapped = base.clone();
    author_swapped.author = Keypair::random().node_id().as_bytes().to_vec();
    // A forger signs the digest naming `author` with its own key.
    let forger = Keypair::random();
    let forged_digest = signing_digest(
        "news",
        b"forged",
        &author.node_id(),
        genuine.timestamp_ms(),
        &[1; NONCE_LEN],
    );
    let forged = pb::GossipMessage {
        payload: b"forged".to_vec(),
        nonce: vec![1; NONCE_LEN],
        signature: forger.sign_digest(&forged_digest).to_vec(),
        ..base.clone()
    };
    for (what, body) in [
        ("payload", &payload),
        ("protocol", &protocol),
        ("timestamp", &timestamp),
        ("author", &author_swapped),
        ("signer", &forged),
    ] {
        let reason = relay_and_wait_drop(relay, target, body).await;
        assert_eq!(
            reason,
            DropReason::InvalidGossip(GossipError::BadSignature),
            "{what}"
        );
    }
    assert_eq!(target.penalties(&relay_id), 5);
    assert_eq!(load(&target.stats().gossip.rejected_signature), 5);

    // Correctly signed, but older than the TTL (2 min), or from too far in the future.
    let ttl = target.config().gossip.seen_ttl.as_millis() as i64;
    let stale = SignedGossip::sign(
        &author,
        "news",
        Bytes::from_static(b"stale"),
        now_ms() - ttl - 1_000,
        nonce(),
    )
    .unwrap();
    let reason = relay_and_wait_drop(relay, target, &stale.to_proto(false)).await;
    assert_eq!(reason, DropReason::InvalidGossip(GossipError::Expired));
    let future = SignedGossip::sign(
        &author,
        "news",
        Bytes::from_static(b"future"),
        now_ms() + 3_600_000,
        nonce(),
    )
    .unwrap();
    let reason = relay_and_wait_drop(relay, target, &future.to_proto(true)).await;
    assert_eq!(reason, DropReason::InvalidGossip(GossipError::FromFuture));
    assert_eq!(target.penalties(&relay_id), 7);
    // Nothing was relayed: the target has sent no gossip at all.
    assert_eq!(load(&target.stats().gossip.sent), 0);

    // The genuine message through the same relay and target reaches every node, first and once: the
    // rejected ones were delivered nowhere.
    relay
        .send_raw_envelope(
            &target.local_node(),
            common::gossip_envelope(&relay.config().client_version, &genuine.to_proto(true)),
        )
        .await
        .unwrap();
    all_receive_once(&nodes, &mut inboxes, None, &author.node_id(), b"genuine", 8).await;
    for (i, inbox) in sports.iter_mut().enumerate() {
        assert!(
            matches!(inbox.try_recv(), Err(TryRecvError::Empty)),
            "node {i}"
        );
    }
    assert_eq!(target.penalties(&relay_id), 7);
    // The same message again is a duplicate: not delivered, not penalised.
    let duplicates = load(&target.stats().gossip.duplicates);
    relay
        .send_raw_envelope(
            &target.local_node(),
            common::gossip_envelope(&relay.config().client_version, &genuine.to_proto(false)),
        )
        .await
        .unwrap();
    timeout(WAIT, async {
        while load(&target.stats().gossip.duplicates) == duplicates {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    quiescent(&nodes, 9).await;
    assert!(matches!(inboxes[5].try_recv(), Err(TryRecvError::Empty)));
    assert_eq!(target.penalties(&relay_id), 7);
    shutdown_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejecting_validator_stops_delivery_and_relay() {
    let (boots, others) = network(2, 6).await;
    let nodes: Vec<Swarm> = boots.into_iter().chain(others).collect();
    let (relay, target) = (&nodes[2], &nodes[4]);
    let relay_id = relay.local_node().id;
    let mut inboxes: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            if i == 4 {
                n.register_protocol_with_validator("news", |m: &Message| {
                    !m.data().starts_with(b"bad")
                })
                .unwrap()
            } else {
                n.register_protocol("news").unwrap()
            }
        })
        .collect();
    let author = Keypair::random();
    let bad = SignedGossip::sign(
        &author,
        "news",
        Bytes::from_static(b"bad news"),
        now_ms(),
        nonce(),
    )
    .unwrap();
    let reason = relay_and_wait_drop(relay, target, &bad.to_proto(true)).await;
    assert_eq!(reason, DropReason::Rejected);
    assert_eq!(target.penalties(&relay_id), 1);
    assert_eq!(load(&target.stats().gossip.rejected_validator), 1);
    assert_eq!(load(&target.stats().gossip.sent), 0, "not relayed");

    // The validator also guards direct messages.
    let mut events = target.events();
    relay
        .send_message_to(&target.local_node(), "news", &b"bad direct"[..])
        .await
        .unwrap();
    let reason = wait_event(&mut events, |ev| match ev {
        SwarmEvent::MessageDropped { from, reason, .. } if *from == relay_id => Some(*reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, DropReason::Rejected);
    assert_eq!(target.penalties(&relay_id), 2);

    // An accepted message through the same path reaches everyone, first: the bad one reached no one.
    let good = SignedGossip::sign(
        &author,
        "news",
        Bytes::from_static(b"good news"),
        now_ms(),
        nonce(),
    )
    .unwrap();
    relay
        .send_raw_envelope(
            &target.local_node(),
            common::gossip_envelope(&relay.config().client_version, &good.to_proto(true)),
        )
        .await
        .unwrap();
    all_receive_once(
        &nodes,
        &mut inboxes,
        None,
        &author.node_id(),
        b"good news",
        2,
    )
    .await;

    // A node whose validator rejects a broadcast neither delivers nor relays it; the others still get
    // it from the rest of the network.
    let report = nodes[0]
        .broadcast("news", "bad but broadcast")
        .await
        .unwrap();
    assert!(!report.sent_to.is_empty());
    for (i, inbox) in inboxes.iter_mut().enumerate() {
        if i == 0 || i == 4 {
            continue;
        }
        assert_eq!(
            next_message(inbox).await.data(),
            b"bad but broadcast",
            "node {i}"
        );
    }
    quiescent(&nodes, 2).await;
    assert!(matches!(inboxes[4].try_recv(), Err(TryRecvError::Empty)));
    assert!(matches!(inboxes[0].try_recv(), Err(TryRecvError::Empty)));
    shutdown_all(nodes).await;
}

#[tokio::test]
async fn broadcast_errors_and_a_lone_node() {
    init_tracing();
    let node = Swarm::start(local_config()).await.unwrap();
    assert!(matches!(
        node.broadcast("/kadmesh/findnode/1", "x").await,
        Err(Error::ReservedProtocol(_))
    ));
    assert!(matches!(
        node.broadcast("", "x").await,
        Err(Error::InvalidProtocolName(_))
    ));
    let too_big = vec![0u8; node.config().net.max_frame_len];
    assert!(matches!(
        node.broadcast("news", too_big).await,
        Err(Error::Transport(
            kadmesh::transport::TransportError::TooLarge { .. }
        ))
    ));
    // No peer yet: nothing sent, not an error.
    let report = node.broadcast("news", "anyone?").await.unwrap();
    assert!(report.sent_to.is_empty() && report.failed.is_empty());
    node.shutdown().await;
    assert!(matches!(
        node.broadcast("news", "late").await,
        Err(Error::Shutdown)
    ));
}
