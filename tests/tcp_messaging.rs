//! Real TCP on 127.0.0.1: message exchange, request/response, 500 senders to one target, and
//! unregistered protocols (seed rows "Simple message exchange" and "Multiple messages with one target").

mod common;

use std::time::Duration;

use common::{WAIT, node, wait_event};
use kadmesh::swarm::DropReason;
use kadmesh::{Error, SwarmEvent};
use tokio::time::timeout;

#[tokio::test]
async fn two_nodes_exchange_messages_both_ways_and_a_response_comes_back() {
    let a = node().await;
    let b = node().await;
    let mut a_chat = a.register_protocol("chat").unwrap();
    let mut b_chat = b.register_protocol("chat").unwrap();

    let b_node = a.connect(&b.local_node().to_string()).await.unwrap();
    assert_eq!(b_node.id, b.local_node().id);

    a.send_message_to(&b.local_node(), "chat", &b"ping"[..])
        .await
        .unwrap();
    let got = timeout(WAIT, b_chat.recv()).await.unwrap().unwrap();
    assert_eq!(got.data(), b"ping");
    assert_eq!(got.sender().id, a.local_node().id);
    assert_eq!(
        got.sender().addr,
        a.local_node().addr,
        "listen port learned from the handshake"
    );
    assert!(!got.is_request());

    // The other way, over the same connection, addressed by id only.
    b.send_message(&a.local_node().id, "chat", &b"pong"[..])
        .await
        .unwrap();
    let got = timeout(WAIT, a_chat.recv()).await.unwrap().unwrap();
    assert_eq!(got.data(), b"pong");

    // Request / response.
    let responder = tokio::spawn(async move {
        let req = b_chat.recv().await.unwrap();
        assert!(req.is_request());
        req.respond(format!("re: {}", String::from_utf8_lossy(req.data())))
            .await
            .unwrap();
        b_chat
    });
    let resp = a
        .request(&b.local_node().id, "chat", &b"hello"[..], WAIT)
        .await
        .unwrap();
    assert_eq!(resp.data(), b"re: hello");
    assert_eq!(resp.sender().id, b.local_node().id);
    responder.await.unwrap();

    assert_eq!(a.connected_peers().len(), 1);
    assert_eq!(b.connected_peers().len(), 1);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn unregistered_protocol_is_dropped_and_the_connection_keeps_working() {
    let a = node().await;
    let b = node().await;
    let mut b_chat = b.register_protocol("chat").unwrap();
    let mut b_events = b.events();

    a.send_message_to(&b.local_node(), "nobody-listens", &b"x"[..])
        .await
        .unwrap();
    let (from, reason) = wait_event(&mut b_events, |ev| match ev {
        SwarmEvent::MessageDropped { from, reason, .. } => Some((*from, *reason)),
        _ => None,
    })
    .await;
    assert_eq!(from, a.local_node().id);
    assert_eq!(reason, DropReason::UnknownProtocol);

    a.send_message_to(&b.local_node(), "chat", &b"still here"[..])
        .await
        .unwrap();
    let got = timeout(WAIT, b_chat.recv()).await.unwrap().unwrap();
    assert_eq!(got.data(), b"still here");
    assert_eq!(b.connected_peers().len(), 1);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn request_times_out_and_unknown_node_is_an_error() {
    let a = node().await;
    let b = node().await;
    let _b_chat = b.register_protocol("chat").unwrap(); // never answers
    let err = a
        .request_to(
            &b.local_node(),
            "chat",
            &b"?"[..],
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err:?}");
    let c = kadmesh::Keypair::random().node_id();
    assert!(matches!(
        a.send_message(&c, "chat", &b"?"[..]).await,
        Err(Error::NodeNotFound(id)) if id == c
    ));
    assert!(matches!(
        a.send_message_to(&b.local_node(), "/kadmesh/findnode/1", &b"?"[..])
            .await,
        Err(Error::ReservedProtocol(_))
    ));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn shutdown_releases_pending_requests() {
    let a = node().await;
    let b = node().await;
    let _b_chat = b.register_protocol("chat").unwrap();
    a.connect_node(&b.local_node()).await.unwrap();
    let a2 = a.clone();
    let target = b.local_node();
    let pending =
        tokio::spawn(async move { a2.request_to(&target, "chat", &b"?"[..], WAIT).await });
    // Wait until the request is on the wire: b has received one message.
    while b
        .stats()
        .messages_in
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        tokio::task::yield_now().await;
    }
    a.shutdown().await;
    let r = timeout(WAIT, pending).await.unwrap().unwrap();
    assert!(matches!(r, Err(Error::Shutdown)), "{r:?}");
    assert!(matches!(
        a.send_message_to(&b.local_node(), "chat", &b"?"[..]).await,
        Err(Error::Shutdown)
    ));
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_nodes_send_to_one_target_and_all_get_a_response() {
    const SENDERS: usize = 500;
    let mut config = common::local_config();
    config.net.max_inbound = SENDERS + 10;
    let target = kadmesh::Swarm::start(config).await.unwrap();
    let mut inbox = target.register_protocol("echo").unwrap();
    let server = tokio::spawn(async move {
        let mut served = 0;
        while let Some(msg) = inbox.recv().await {
            msg.respond(msg.payload().clone()).await.unwrap();
            served += 1;
            if served == SENDERS {
                break;
            }
        }
        served
    });
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        senders.push(node().await);
    }
    let target_node = target.local_node();
    let mut calls = tokio::task::JoinSet::new();
    for (i, s) in senders.iter().enumerate() {
        let s = s.clone();
        calls.spawn(async move {
            let body = format!("hello {i}");
            let resp = s
                .request_to(&target_node, "echo", body.clone(), WAIT)
                .await
                .unwrap();
            assert_eq!(resp.data(), body.as_bytes());
        });
    }
    while let Some(r) = calls.join_next().await {
        r.unwrap();
    }
    assert_eq!(timeout(WAIT, server).await.unwrap().unwrap(), SENDERS);
    assert_eq!(target.connected_peers().len(), SENDERS);
    for s in senders {
        s.shutdown().await;
    }
    target.shutdown().await;
}
