//! Inbound validation and backpressure over real TCP: responses are matched by (peer, request id), bad
//! versions and timestamps are dropped and counted, and a slow consumer only slows the peer feeding it.

mod common;

use std::time::Duration;

use common::{RawPeer, WAIT, local_config, node, now_ms, wait_event};
use kadmesh::swarm::DropReason;
use kadmesh::{Swarm, SwarmEvent};
use tokio::time::timeout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_peer_cannot_answer_someone_elses_request() {
    let a = node().await;
    let b = node().await;
    let mut b_inbox = b.register_protocol("q").unwrap();
    let mut a_events = a.events();

    let (a2, b_node) = (a.clone(), b.local_node());
    let asking =
        tokio::spawn(async move { a2.request_to(&b_node, "q", &b"question"[..], WAIT).await });
    let req = timeout(WAIT, b_inbox.recv()).await.unwrap().unwrap();
    let req_id = req.req_id().expect("a request carries its id");

    // A third party forges B's answer with the right request id.
    let mut mallory = RawPeer::connect(&a).await;
    let mut forged = RawPeer::envelope(&a, "q", b"forged answer");
    if let Some(m) = forged.metadata.as_mut() {
        m.req_id = req_id.as_bytes().to_vec();
        m.response = true;
    }
    mallory.send(&forged).await;
    let (from, reason) = wait_event(&mut a_events, |ev| match ev {
        SwarmEvent::MessageDropped { from, reason, .. } => Some((*from, *reason)),
        _ => None,
    })
    .await;
    assert_eq!(from, mallory.keypair.node_id());
    assert_eq!(reason, DropReason::UnmatchedResponse);

    // The real answer still completes the request.
    req.respond(&b"real answer"[..]).await.unwrap();
    let answer = timeout(WAIT, asking).await.unwrap().unwrap().unwrap();
    assert_eq!(answer.data(), b"real answer");
    assert_eq!(answer.sender().id, b.local_node().id);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_version_and_stale_timestamp_are_dropped_and_the_connection_survives() {
    let node = node().await;
    let mut inbox = node.register_protocol("chat").unwrap();
    let mut events = node.events();
    let mut peer = RawPeer::connect(&node).await;

    let mut other_major = RawPeer::envelope(&node, "chat", b"from the future");
    other_major.metadata.as_mut().unwrap().client_version = "99.0.0".into();
    peer.send(&other_major).await;
    let reason = wait_event(&mut events, |ev| match ev {
        SwarmEvent::MessageDropped { reason, .. } => Some(*reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, DropReason::IncompatibleVersion);

    let mut stale = RawPeer::envelope(&node, "chat", b"from the past");
    stale.metadata.as_mut().unwrap().timestamp = now_ms() - 3_600_000;
    peer.send(&stale).await;
    let reason = wait_event(&mut events, |ev| match ev {
        SwarmEvent::MessageDropped { reason, .. } => Some(*reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, DropReason::ClockSkew);

    peer.send(&RawPeer::envelope(&node, "chat", b"just right"))
        .await;
    let got = timeout(WAIT, inbox.recv()).await.unwrap().unwrap();
    assert_eq!(got.data(), b"just right");
    assert_eq!(got.sender().id, peer.keypair.node_id());
    assert_eq!(
        node.stats()
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_pushes_back_on_its_feeder_only_and_loses_nothing() {
    let mut config = local_config();
    config.swarm.protocol_queue = 2;
    let node = Swarm::start(config).await.unwrap();
    let mut slow = node.register_protocol("slow").unwrap();
    let mut fast = node.register_protocol("fast").unwrap();
    tokio::spawn(async move {
        while let Some(m) = fast.recv().await {
            let _ = m.respond(m.payload().clone()).await;
        }
    });

    // The flooder fills the slow protocol's queue; its connection's reader then waits.
    const FLOOD: usize = 50;
    let flooder = Swarm::start(local_config()).await.unwrap();
    for i in 0..FLOOD {
        flooder
            .send_message_to(&node.local_node(), "slow", format!("{i}"))
            .await
            .unwrap();
    }
    // Another peer is not held up.
    let other = Swarm::start(local_config()).await.unwrap();
    for _ in 0..10 {
        let r = other
            .request_to(
                &node.local_node(),
                "fast",
                &b"still quick"[..],
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(r.data(), b"still quick");
    }
    // Nothing of the flood was dropped: every message arrives, in order.
    for i in 0..FLOOD {
        let m = timeout(WAIT, slow.recv()).await.unwrap().unwrap();
        assert_eq!(m.data(), format!("{i}").as_bytes());
    }
    assert_eq!(
        node.stats()
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    flooder.shutdown().await;
    other.shutdown().await;
    node.shutdown().await;
}
