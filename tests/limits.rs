//! Connection and message limits against hostile raw TCP clients and peers: the pending-handshake limit
//! under a flood of half-open connections, read and write deadlines, per-IP limits and the accept
//! throttle, the byte rate limit, per-protocol payload limits and the outbound connection limit.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{RawPeer, WAIT, echo_node, handshake_config, local_config, now_ms, wait_event};
use kadmesh::crypto::handshake::Initiator;
use kadmesh::metrics::NodeMetrics;
use kadmesh::swarm::{DropReason, ProtocolOptions};
use kadmesh::transport::{CloseReason, Limit, TransportError};
use kadmesh::{Config, Error, Keypair, NodeId, Swarm, SwarmEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::broadcast;

type Events = broadcast::Receiver<SwarmEvent>;

/// A config that limits loopback like any other address.
fn public_config() -> Config {
    let mut config = local_config();
    config.net.exempt_local = false;
    config
}

/// The reason the node gives for the failed connection attempt from `addr`.
async fn handshake_failure(events: &mut Events, addr: SocketAddr) -> CloseReason {
    wait_event(events, |ev| match ev {
        SwarmEvent::HandshakeFailed { addr: a, reason } if *a == addr => Some(reason.clone()),
        _ => None,
    })
    .await
}

/// The reason the node gives for closing its connection to `peer`.
async fn disconnect(events: &mut Events, peer: NodeId) -> CloseReason {
    wait_event(events, |ev| match ev {
        SwarmEvent::PeerDisconnected { peer: p, reason } if *p == peer => Some(reason.clone()),
        _ => None,
    })
    .await
}

/// Waits until the node reports an authenticated connection from `peer`; returns the peer's info.
async fn connected(events: &mut Events, peer: NodeId) -> kadmesh::NodeInfo {
    wait_event(events, |ev| match ev {
        SwarmEvent::PeerConnected(p) if p.id == peer => Some(*p),
        _ => None,
    })
    .await
}

/// The attacker's behaviour: writes `bytes` one a second (a tokio interval), until the socket fails.
async fn drip(stream: &mut TcpStream, bytes: &[u8]) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    for b in bytes {
        tick.tick().await;
        if stream.write_all(&[*b]).await.is_err() {
            return;
        }
    }
}

/// A raw TCP connection to `node` from the loopback address `from`.
async fn connect_from(from: [u8; 4], node: &Swarm) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(node.local_node().addr).await.unwrap()
}

/// The first frame of a handshake with `node`, length prefix included.
fn hello_frame(node: &Swarm) -> Vec<u8> {
    let (_, hello) = Initiator::start(
        &handshake_config(node),
        &Keypair::random(),
        &node.local_node().id,
        now_ms(),
        &mut rand::rng(),
    )
    .unwrap();
    let body = kadmesh::wire::encode(&hello);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// Peers that keep exchanging request/responses with a node until stopped; every exchange must succeed.
struct Friends {
    nodes: Vec<Swarm>,
    stop: Arc<AtomicBool>,
    round_trips: Arc<AtomicU64>,
    talkers: Vec<tokio::task::JoinHandle<()>>,
}

impl Friends {
    async fn start(n: usize, target: &Swarm) -> Friends {
        let stop = Arc::new(AtomicBool::new(false));
        let round_trips = Arc::new(AtomicU64::new(0));
        let mut nodes = Vec::new();
        let mut talkers = Vec::new();
        for i in 0..n {
            let friend = Swarm::start(local_config()).await.unwrap();
            let target = target.local_node();
            // Connected before the attack starts.
            friend.connect_node(&target).await.unwrap();
            let (f, stop, count) = (friend.clone(), stop.clone(), round_trips.clone());
            talkers.push(tokio::spawn(async move {
                let payload = format!("friend {i}");
                while !stop.load(Ordering::Relaxed) {
                    let reply = f
                        .request_to(&target, "echo", payload.clone(), WAIT)
                        .await
                        .expect("a friend's request failed during the attack");
                    assert_eq!(reply.data(), payload.as_bytes());
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }));
            nodes.push(friend);
        }
        Friends {
            nodes,
            stop,
            round_trips,
            talkers,
        }
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.talkers {
            t.await.expect("a friend's exchange failed");
        }
        for f in self.nodes {
            assert_eq!(f.connected_peers().len(), 1, "friend kept its connection");
            f.shutdown().await;
        }
        self.round_trips.load(Ordering::Relaxed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_flood_never_exceeds_the_pending_limit() {
    const CONNECTIONS: usize = 10_000;
    const CONCURRENCY: usize = 256;
    const PENDING: usize = 32;
    let mut config = local_config();
    config.net.max_pending_handshakes = PENDING;
    config.net.handshake_timeout = Duration::from_millis(300);
    let node = echo_node(config).await;
    let friends = Friends::start(3, &node).await;
    let addr = node.local_node().addr;
    let hello = hello_frame(&node);
    let half = Arc::new(hello[..hello.len() / 2].to_vec());
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let connected = Arc::new(AtomicU64::new(0));
    let mut attackers = tokio::task::JoinSet::new();
    for i in 0..CONNECTIONS {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            unreachable!("the semaphore is never closed")
        };
        let (half, connected) = (Arc::clone(&half), Arc::clone(&connected));
        attackers.spawn(async move {
            let _slot = slot;
            let connect = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr));
            let Ok(Ok(mut stream)) = connect.await else {
                return;
            };
            connected.fetch_add(1, Ordering::Relaxed);
            if i % 2 == 1 {
                // Half a hello; the rest never comes.
                let _ = stream.write_all(&half).await;
            }
            // Most give up soon; every tenth holds on past the handshake timeout.
            let hold = if i % 10 == 0 { 1000 } else { 50 };
            let mut buf = [0u8; 64];
            let _ = tokio::time::timeout(Duration::from_millis(hold), stream.read(&mut buf)).await;
        });
        // Reap finished attackers as we go, so the set stays small.
        while attackers.try_join_next().is_some() {}
    }
    while attackers.join_next().await.is_some() {}
    let round_trips = friends.stop().await;
    let stats = node.transport_stats();
    eprintln!(
        "{CONNECTIONS} half-open connections ({} connected), peak pending {}, pending-limit hits {}, \
         friends' round trips {round_trips}",
        connected.load(Ordering::Relaxed),
        stats.peak_pending_handshakes,
        stats.hits(Limit::MaxPendingHandshakes),
    );
    assert!(
        stats.peak_pending_handshakes <= PENDING,
        "peak {} over the limit {PENDING}",
        stats.peak_pending_handshakes
    );
    assert_eq!(
        stats.peak_pending_handshakes, PENDING,
        "the flood never reached the limit"
    );
    assert!(stats.hits(Limit::MaxPendingHandshakes) > 0);
    assert!(
        connected.load(Ordering::Relaxed) > (CONNECTIONS / 4) as u64,
        "the flood mostly failed to connect"
    );
    assert!(
        stats.hits(Limit::HandshakeTimeout) > 0,
        "some were timed out"
    );
    assert!(round_trips > 0, "the friends exchanged messages throughout");
    node.shutdown().await;
}

/// An echo node with a 2 s read deadline, and its events.
async fn read_deadline_node() -> (Swarm, Events) {
    let mut config = local_config();
    config.net.read_timeout = Duration::from_secs(2);
    let node = echo_node(config).await;
    let events = node.events();
    (node, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dripping_during_the_handshake_is_dropped_at_the_read_deadline() {
    let (node, mut events) = read_deadline_node().await;
    let mut client = TcpStream::connect(node.local_node().addr).await.unwrap();
    let addr = client.local_addr().unwrap();
    // One byte of a valid hello a second.
    let hello = hello_frame(&node);
    let reason = tokio::select! {
        r = handshake_failure(&mut events, addr) => r,
        _ = drip(&mut client, &hello) => panic!("the whole hello was dripped without a close"),
    };
    assert_eq!(reason, CloseReason::ReadTimeout);
    assert_eq!(node.transport_stats().hits(Limit::ReadTimeout), 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dripping_after_the_handshake_is_dropped_at_the_read_deadline() {
    let (node, mut events) = read_deadline_node().await;
    let mut raw = RawPeer::connect(&node).await;
    let me = raw.keypair.node_id();
    connected(&mut events, me).await;
    // A real request, sealed, dripped one byte a second.
    let envelope = RawPeer::envelope(&node, "echo", b"slowly");
    let sealed = raw.sealer.seal(&kadmesh::wire::encode(&envelope)).unwrap();
    let mut frame = (sealed.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&sealed);
    let reason = tokio::select! {
        r = disconnect(&mut events, me) => r,
        _ = drip(raw.framed.get_mut(), &frame) => panic!("the whole frame was dripped without a close"),
    };
    assert_eq!(reason, CloseReason::ReadTimeout);
    assert_eq!(node.transport_stats().hits(Limit::ReadTimeout), 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_limit_refuses_extra_connections_at_accept() {
    let mut config = public_config();
    config.net.max_inbound_per_ip = 3;
    let node = echo_node(config).await;
    let metrics = NodeMetrics::start(node.clone()).unwrap();
    let mut events = node.events();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from([127, 0, 0, 1], &node).await);
    }
    for _ in 0..2 {
        let mut extra = connect_from([127, 0, 0, 1], &node).await;
        let addr = extra.local_addr().unwrap();
        assert_eq!(
            handshake_failure(&mut events, addr).await,
            CloseReason::Refused(Limit::MaxInboundPerIp)
        );
        // Refused before any handshake work: the node just closes the socket.
        let mut buf = [0u8; 8];
        let n = tokio::time::timeout(WAIT, extra.read(&mut buf))
            .await
            .unwrap();
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }
    // Another address has slots of its own.
    let other = connect_from([127, 0, 0, 2], &node).await;
    // A closed connection gives its slot back: then a real peer gets in from the limited address.
    let first = held.remove(0);
    let first_addr = first.local_addr().unwrap();
    drop(first);
    let reason = handshake_failure(&mut events, first_addr).await;
    assert!(!matches!(reason, CloseReason::Refused(_)), "{reason:?}");
    let peer = RawPeer::connect(&node).await;
    connected(&mut events, peer.keypair.node_id()).await;
    let stats = node.transport_stats();
    assert_eq!(stats.hits(Limit::MaxInboundPerIp), 2);
    assert_eq!(stats.hits(Limit::IpAcceptThrottle), 0);
    let text = metrics.render().unwrap();
    assert!(
        text.contains("kadmesh_limit_hits_total{limit=\"max_inbound_per_ip\"} 2"),
        "{text}"
    );
    drop((held, other, peer));
    metrics.shutdown().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_throttle_refuses_a_reconnect_storm() {
    let mut config = public_config();
    config.net.ip_accept_burst = 3;
    // No refill during the test.
    config.net.ip_accept_interval = Duration::from_secs(3600);
    let node = echo_node(config).await;
    let mut events = node.events();
    let mut reasons = Vec::new();
    for _ in 0..6 {
        // Connect and hang up at once, again and again.
        let stream = connect_from([127, 0, 0, 1], &node).await;
        let addr = stream.local_addr().unwrap();
        drop(stream);
        reasons.push(handshake_failure(&mut events, addr).await);
    }
    let refused = |r: &CloseReason| *r == CloseReason::Refused(Limit::IpAcceptThrottle);
    assert!(!reasons[..3].iter().any(refused), "{reasons:?}");
    assert!(reasons[3..].iter().all(refused), "{reasons:?}");
    // Another address is not throttled.
    let stream = connect_from([127, 0, 0, 3], &node).await;
    let addr = stream.local_addr().unwrap();
    drop(stream);
    let reason = handshake_failure(&mut events, addr).await;
    assert!(!refused(&reason), "{reason:?}");
    assert_eq!(node.transport_stats().hits(Limit::IpAcceptThrottle), 3);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_addresses_are_exempt_when_configured() {
    let mut config = local_config();
    config.net.max_inbound_per_ip = 1;
    config.net.ip_accept_burst = 1;
    let node = echo_node(config).await;
    let friends = Friends::start(3, &node).await;
    assert!(friends.stop().await > 0);
    let stats = node.transport_stats();
    assert_eq!(stats.hits(Limit::MaxInboundPerIp), 0);
    assert_eq!(stats.hits(Limit::IpAcceptThrottle), 0);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_rate_limit_closes_with_rate_limited() {
    let mut config = local_config();
    config.net.max_frame_len = 64 * 1024;
    config.net.rate_limit_bytes_burst = 64 * 1024;
    config.net.rate_limit_bytes_per_sec = 1024;
    let node = Swarm::start(config).await.unwrap();
    let _inbox = node.register_protocol("chat").unwrap();
    let mut events = node.events();
    let flooder = Swarm::start(local_config()).await.unwrap();
    let chunk = Bytes::from(vec![7u8; 16 * 1024]);
    for _ in 0..50 {
        // Sends fail once the node has closed the connection; that is the point.
        if flooder
            .send_message_to(&node.local_node(), "chat", chunk.clone())
            .await
            .is_err()
        {
            break;
        }
    }
    let reason = disconnect(&mut events, flooder.local_node().id).await;
    assert_eq!(reason, CloseReason::RateLimited);
    let stats = node.transport_stats();
    // The flooder redials after each close (bans stop that); every connection hits the limit.
    assert!(stats.hits(Limit::ByteRate) >= 1);
    assert_eq!(stats.hits(Limit::FrameRate), 0, "far below the frame rate");
    flooder.shutdown().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_payloads_are_dropped_inbound_and_refused_outbound() {
    common::init_tracing();
    let mut config = local_config();
    config.swarm.max_payload = 1000;
    let node = Swarm::start(config).await.unwrap();
    let small = ProtocolOptions {
        max_payload: Some(100),
        ..ProtocolOptions::default()
    };
    let mut small_inbox = node.register_protocol_with("small", small).unwrap();
    let mut chat_inbox = node.register_protocol("chat").unwrap();
    assert!(matches!(
        node.register_protocol_with(
            "zero",
            ProtocolOptions {
                queue: Some(0),
                ..ProtocolOptions::default()
            }
        ),
        Err(Error::Config(e)) if e.key == "protocol.queue"
    ));
    let mut events = node.events();
    let friend = Swarm::start(local_config()).await.unwrap();
    let to = node.local_node();
    let dropped = |events: &mut Events| {
        let from = friend.local_node().id;
        let mut events = events.resubscribe();
        async move {
            wait_event(&mut events, |ev| match ev {
                SwarmEvent::MessageDropped {
                    from: f,
                    protocol,
                    reason,
                } if *f == from => Some((protocol.clone(), *reason)),
                _ => None,
            })
            .await
        }
    };
    // Inbound: at the limit delivered, one byte over dropped (the sender's own limit is the default).
    for (protocol, limit, inbox) in [
        ("small", 100, &mut small_inbox),
        ("chat", 1000, &mut chat_inbox),
    ] {
        let over = dropped(&mut events);
        friend
            .send_message_to(&to, protocol, vec![1u8; limit + 1])
            .await
            .unwrap();
        assert_eq!(
            over.await,
            (protocol.to_owned(), DropReason::PayloadTooLarge)
        );
        friend
            .send_message_to(&to, protocol, vec![2u8; limit])
            .await
            .unwrap();
        let got = tokio::time::timeout(WAIT, inbox.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.data().len(), limit);
    }
    // Gossip is held to the protocol's limit too.
    friend.add_node(&to).await.unwrap();
    let over = dropped(&mut events);
    let report = friend.broadcast("small", vec![3u8; 101]).await.unwrap();
    assert_eq!(report.sent_to, vec![to]);
    assert_eq!(over.await, ("small".into(), DropReason::PayloadTooLarge));
    // Outbound: refused with a typed error before anything is sent.
    let err = node
        .send_message_to(&friend.local_node(), "small", vec![0u8; 101])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::PayloadTooLarge {
                len: 101,
                max: 100,
                ..
            }
        ),
        "{err}"
    );
    let err = node.broadcast("chat", vec![0u8; 1001]).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::PayloadTooLarge {
                len: 1001,
                max: 1000,
                ..
            }
        ),
        "{err}"
    );
    let stats = node.stats();
    assert_eq!(stats.drops.get(DropReason::PayloadTooLarge), 3);
    assert_eq!(stats.payload_refused.load(Ordering::Relaxed), 2);
    friend.shutdown().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_closed_by_the_write_timeout() {
    let mut config = local_config();
    config.net.write_timeout = Duration::from_millis(500);
    let node = Swarm::start(config).await.unwrap();
    let mut events = node.events();
    // Completes the handshake, then never reads again.
    let raw = RawPeer::connect(&node).await;
    let me = raw.keypair.node_id();
    let raw_info = connected(&mut events, me).await;
    let chunk = Bytes::from(vec![9u8; 64 * 1024]);
    let mut sent = 0usize;
    // Far more than the socket buffers hold: senders wait, then the stalled write closes the connection.
    for _ in 0..100_000 {
        if node
            .send_message_to(&raw_info, "sink", chunk.clone())
            .await
            .is_err()
        {
            break;
        }
        sent += 1;
    }
    let reason = disconnect(&mut events, me).await;
    assert_eq!(reason, CloseReason::WriteTimeout, "after {sent} sends");
    assert_eq!(node.transport_stats().hits(Limit::WriteTimeout), 1);
    drop(raw);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_beyond_max_outbound_fails_with_a_typed_error() {
    common::init_tracing();
    let mut config = local_config();
    config.net.max_outbound = 1;
    let node = Swarm::start(config).await.unwrap();
    let b = Swarm::start(local_config()).await.unwrap();
    let c = Swarm::start(local_config()).await.unwrap();
    node.connect_node(&b.local_node()).await.unwrap();
    let err = node.connect_node(&c.local_node()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport(TransportError::LimitReached(Limit::MaxOutbound))
        ),
        "{err}"
    );
    // Inbound connections do not take outbound slots.
    c.connect_node(&node.local_node()).await.unwrap();
    let stats = node.transport_stats();
    assert_eq!((stats.inbound, stats.outbound), (1, 1));
    assert_eq!(stats.hits(Limit::MaxOutbound), 1);
    // Once the outbound connection closes, its slot is free again.
    let mut events = node.events();
    b.shutdown().await;
    disconnect(&mut events, b.local_node().id).await;
    let d = Swarm::start(local_config()).await.unwrap();
    node.connect_node(&d.local_node()).await.unwrap();
    d.shutdown().await;
    c.shutdown().await;
    node.shutdown().await;
}
