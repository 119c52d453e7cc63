//! Hostile raw TCP clients against a node: each is disconnected with the right typed reason while a
//! well-behaved peer keeps exchanging messages with the node.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{RawPeer, WAIT, handshake_config, local_config, now_ms, wait_event};
use futures::{SinkExt, StreamExt};
use kadmesh::crypto::handshake::{HandshakeError, Initiator};
use kadmesh::crypto::session::SessionError;
use kadmesh::transport::CloseReason;
use kadmesh::wire;
use kadmesh::{Keypair, Swarm, SwarmEvent};
use rand::{Rng, SeedableRng};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The node under attack, a well-behaved peer that keeps talking to it, and a stop switch.
struct Arena {
    node: Swarm,
    friend: Swarm,
    stop: Arc<AtomicBool>,
    round_trips: Arc<AtomicU64>,
    talker: tokio::task::JoinHandle<()>,
}

impl Arena {
    async fn new() -> Self {
        let mut config = local_config();
        config.net.handshake_timeout = Duration::from_millis(500);
        let node = Swarm::start(config).await.unwrap();
        let mut inbox = node.register_protocol("echo").unwrap();
        tokio::spawn(async move {
            while let Some(m) = inbox.recv().await {
                let _ = m.respond(m.payload().clone()).await;
            }
        });
        let friend = Swarm::start(local_config()).await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let round_trips = Arc::new(AtomicU64::new(0));
        let talker = {
            let (friend, stop, n) = (friend.clone(), stop.clone(), round_trips.clone());
            let target = node.local_node();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = friend
                        .request_to(&target, "echo", &b"still friends"[..], WAIT)
                        .await;
                    assert_eq!(
                        r.expect("the well-behaved peer was disturbed").data(),
                        b"still friends"
                    );
                    n.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        Self {
            node,
            friend,
            stop,
            round_trips,
            talker,
        }
    }

    /// Waits for the node to report a failed handshake from `addr`.
    async fn handshake_failure(
        &self,
        events: &mut tokio::sync::broadcast::Receiver<SwarmEvent>,
        addr: SocketAddr,
    ) -> CloseReason {
        wait_event(events, |ev| match ev {
            SwarmEvent::HandshakeFailed { addr: a, reason } if *a == addr => Some(reason.clone()),
            _ => None,
        })
        .await
    }

    /// Checks that the friend made progress since `before`, then stops everything.
    async fn finish(self, before: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.round_trips.load(Ordering::Relaxed) <= before + 10 {
            assert!(tokio::time::Instant::now() < deadline, "friend stalled");
            tokio::task::yield_now().await;
        }
        self.stop.store(true, Ordering::Relaxed);
        self.talker.await.unwrap();
        assert_eq!(
            self.friend.connected_peers().len(),
            1,
            "friend kept one connection"
        );
        self.friend.shutdown().await;
        self.node.shutdown().await;
    }
}

async fn raw_client(node: &Swarm) -> TcpStream {
    TcpStream::connect(node.local_node().addr).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_are_a_malformed_handshake() {
    let arena = Arena::new().await;
    let mut events = arena.node.events();
    let before = arena.round_trips.load(Ordering::Relaxed);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut junk = vec![0u8; 200];
    rng.fill_bytes(&mut junk);
    // A plausible length, then noise where a HandshakeData should be.
    junk[..4].copy_from_slice(&196u32.to_be_bytes());
    let mut client = raw_client(&arena.node).await;
    let addr = client.local_addr().unwrap();
    client.write_all(&junk).await.unwrap();
    let reason = arena.handshake_failure(&mut events, addr).await;
    assert!(
        matches!(reason, CloseReason::Handshake(HandshakeError::Malformed(_))),
        "{reason:?}"
    );
    arena.finish(before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_length_prefix_is_refused_before_allocating() {
    let arena = Arena::new().await;
    let mut events = arena.node.events();
    let before = arena.round_trips.load(Ordering::Relaxed);
    let mut client = raw_client(&arena.node).await;
    let addr = client.local_addr().unwrap();
    client.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let reason = arena.handshake_failure(&mut events, addr).await;
    assert_eq!(
        reason,
        CloseReason::FrameTooLarge {
            len: u32::MAX as usize,
            max: arena.node.config().net.max_frame_len
        }
    );
    arena.finish(before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_handshake_then_silence_times_out() {
    let arena = Arena::new().await;
    let mut events = arena.node.events();
    let before = arena.round_trips.load(Ordering::Relaxed);
    let cfg = handshake_config(&arena.node);
    let me = Keypair::random();
    let (_, hello) = Initiator::start(
        &cfg,
        &me,
        &arena.node.local_node().id,
        now_ms(),
        &mut rand::rng(),
    )
    .unwrap();
    let hello = wire::encode(&hello);
    let mut client = raw_client(&arena.node).await;
    let addr = client.local_addr().unwrap();
    client
        .write_all(&(hello.len() as u32).to_be_bytes())
        .await
        .unwrap();
    client.write_all(&hello[..hello.len() / 2]).await.unwrap();
    let reason = arena.handshake_failure(&mut events, addr).await;
    assert_eq!(reason, CloseReason::HandshakeTimeout);
    drop(client);
    arena.finish(before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_a_valid_handshake_fails_the_mac() {
    let arena = Arena::new().await;
    let mut events = arena.node.events();
    let before = arena.round_trips.load(Ordering::Relaxed);
    let RawPeer {
        keypair: me,
        mut framed,
        ..
    } = RawPeer::connect(&arena.node).await;
    let connected = wait_event(&mut events, |ev| match ev {
        SwarmEvent::PeerConnected(p) if p.id == me.node_id() => Some(()),
        _ => None,
    });
    connected.await;
    let mut junk = vec![0u8; 16 + 32 + 32];
    rand::rng().fill_bytes(&mut junk);
    framed.send(Bytes::from(junk)).await.unwrap();
    let reason = wait_event(&mut events, |ev| match ev {
        SwarmEvent::PeerDisconnected { peer, reason } if *peer == me.node_id() => {
            Some(reason.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(reason, CloseReason::Session(SessionError::BadMac));
    // The node closed the socket: the attacker reads the end of the stream.
    let end = tokio::time::timeout(WAIT, framed.next()).await.unwrap();
    assert!(!matches!(end, Some(Ok(_))), "{end:?}");
    arena.finish(before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peer_is_pinged_then_closed_by_keepalive() {
    let mut config = local_config();
    config.net.ping_interval = Duration::from_millis(150);
    config.net.ping_timeout = Duration::from_millis(150);
    let node = Swarm::start(config).await.unwrap();
    let mut events = node.events();
    let RawPeer {
        keypair: me,
        mut framed,
        ..
    } = RawPeer::connect(&node).await;
    // Never answer: the node's ping arrives (a sealed frame), then the connection is closed.
    let ping = tokio::time::timeout(WAIT, framed.next()).await.unwrap();
    assert!(
        matches!(ping, Some(Ok(_))),
        "expected the keepalive ping, got {ping:?}"
    );
    let reason = wait_event(&mut events, |ev| match ev {
        SwarmEvent::PeerDisconnected { peer, reason } if *peer == me.node_id() => {
            Some(reason.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(reason, CloseReason::KeepaliveTimeout);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_peer_is_closed_by_the_rate_limit() {
    let mut config = local_config();
    config.net.rate_limit_per_sec = 20;
    config.net.rate_limit_burst = 10;
    let node = Swarm::start(config).await.unwrap();
    let _inbox = node.register_protocol("chat").unwrap();
    let mut events = node.events();
    let flooder = Swarm::start(local_config()).await.unwrap();
    for _ in 0..50 {
        // Sends fail once the node has closed the connection; that is the point.
        if flooder
            .send_message_to(&node.local_node(), "chat", &b"flood"[..])
            .await
            .is_err()
        {
            break;
        }
    }
    let reason = wait_event(&mut events, |ev| match ev {
        SwarmEvent::PeerDisconnected { peer, reason } if *peer == flooder.local_node().id => {
            Some(reason.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(reason, CloseReason::RateLimited);
    flooder.shutdown().await;
    node.shutdown().await;
}
