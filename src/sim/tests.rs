//! The simulated transport on its own, with recording handlers instead of Swarms: link order, back
//! pressure, refusals, connection events, shutdown accounting, idleness.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use super::*;
use crate::identity::Keypair;
use crate::peer::NodeInfo;
use crate::transport::sim::SimTransport;
use crate::transport::{Direction, InboundHandler, PeerEvent, Transport, TransportError};
use crate::wire::pb;

/// Records what it receives; envelopes whose payload is `b"block"` wait for a permit of `gate` first.
struct Recorder {
    received: mpsc::Sender<(NodeInfo, Vec<u8>, Instant)>,
    events: Mutex<Vec<PeerEvent>>,
    gate: Semaphore,
}

impl InboundHandler for Recorder {
    fn handle_envelope(&self, from: NodeInfo, envelope: pb::Envelope) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if envelope.payload == b"block" {
                let _ = self.gate.acquire().await.map(|p| p.forget());
            }
            let _ = self
                .received
                .send((from, envelope.payload, Instant::now()))
                .await;
        })
    }

    fn peer_event(&self, event: PeerEvent) {
        self.events.lock().unwrap().push(event);
    }
}

/// A node without a Swarm: its transport, its recorder and what the recorder received.
struct Raw {
    transport: SimTransport,
    recorder: Arc<Recorder>,
    inbox: mpsc::Receiver<(NodeInfo, Vec<u8>, Instant)>,
    info: NodeInfo,
}

fn raw(net: &Arc<router::NetInner>) -> Raw {
    let (tx, inbox) = mpsc::channel(1024);
    let recorder = Arc::new(Recorder {
        received: tx,
        events: Mutex::new(Vec::new()),
        gate: Semaphore::new(0),
    });
    let handler: Weak<dyn InboundHandler> = Arc::downgrade(&recorder) as Weak<dyn InboundHandler>;
    let node = net
        .register(
            &Keypair::random(),
            handler,
            None,
            node::NodeSettings::of(&crate::Config::default()),
        )
        .unwrap();
    let info = node.info;
    Raw {
        transport: SimTransport::new(Arc::clone(net), node),
        recorder,
        inbox,
        info,
    }
}

fn net(cfg: SimConfig) -> Arc<router::NetInner> {
    Arc::new(router::NetInner::new(cfg, 1, StdRng::seed_from_u64(1)))
}

fn envelope(payload: &[u8]) -> pb::Envelope {
    pb::Envelope {
        metadata: None,
        payload: payload.to_vec(),
    }
}

#[tokio::test(start_paused = true)]
async fn links_are_fifo_even_with_per_message_latency() {
    let span = Span::new(Duration::from_millis(1), Duration::from_millis(80));
    let net = net(SimConfig {
        latency: Latency::UniformPerMessage(span),
        link_queue: 1000,
        ..SimConfig::default()
    });
    let a = raw(&net);
    let mut b = raw(&net);
    let start = Instant::now();
    for i in 0u32..200 {
        a.transport
            .send(&b.info, envelope(&i.to_be_bytes()))
            .await
            .unwrap();
    }
    let mut last = start;
    for i in 0u32..200 {
        let (from, payload, at) = b.inbox.recv().await.unwrap();
        assert_eq!(from, a.info);
        assert_eq!(payload, i.to_be_bytes());
        assert!(at >= last);
        assert!(at >= start + span.min);
        last = at;
    }
    assert_eq!(net.counters.snapshot().delivered, 200);
}

#[tokio::test(start_paused = true)]
async fn a_slow_consumer_holds_up_its_link_only() {
    let net = net(SimConfig {
        link_queue: 4,
        ..SimConfig::default()
    });
    let a = raw(&net);
    let mut b = raw(&net);
    let c = raw(&net);
    a.transport.send(&b.info, envelope(b"block")).await.unwrap();
    // Let the blocking envelope reach b's handler (it keeps its slot until handled); three more fill the
    // link's four slots.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0u8..3 {
        a.transport.send(&b.info, envelope(&[i])).await.unwrap();
    }
    let fifth = tokio::time::timeout(
        Duration::from_secs(10),
        a.transport.send(&b.info, envelope(b"5")),
    )
    .await;
    assert!(fifth.is_err(), "the sender waits while the link is full");
    // Another link into the same node still delivers.
    c.transport.send(&b.info, envelope(b"other")).await.unwrap();
    let (from, payload, _) = b.inbox.recv().await.unwrap();
    assert_eq!((from, payload.as_slice()), (c.info, &b"other"[..]));
    // Unblock: everything from a arrives, in order.
    b.recorder.gate.add_permits(1);
    let (_, payload, _) = b.inbox.recv().await.unwrap();
    assert_eq!(payload, b"block");
    for i in 0u8..3 {
        assert_eq!(b.inbox.recv().await.unwrap().1, [i]);
    }
    let stats = net.counters.snapshot();
    assert_eq!(stats.sent, 5);
    assert_eq!(stats.delivered, 5);
}

#[tokio::test(start_paused = true)]
async fn refusals_take_a_round_trip_and_count_as_busy() {
    let fixed = Span::new(Duration::from_millis(30), Duration::from_millis(30));
    let net = net(SimConfig {
        latency: Latency::UniformPerLink(fixed),
        ..SimConfig::default()
    });
    let a = raw(&net);
    let b = raw(&net);
    net.node_by_id(&b.info.id).unwrap().set_online(false);
    let start = Instant::now();
    let r = a.transport.send(&b.info, envelope(b"x")).await;
    assert_eq!(r, Err(TransportError::Unreachable(b.info.id)));
    assert_eq!(start.elapsed(), Duration::from_millis(60));
    let r = a.transport.connect(&b.info).await;
    assert_eq!(r, Err(TransportError::Unreachable(b.info.id)));
    let stats = net.counters.snapshot();
    assert_eq!((stats.refused, stats.sent), (2, 0));
    // A caller that gives up early leaves nothing pending.
    let r = tokio::time::timeout(
        Duration::from_millis(10),
        a.transport.send(&b.info, envelope(b"x")),
    )
    .await;
    assert!(r.is_err());
    assert!(net.counters.is_idle());
    // Sending to ourselves is refused at once.
    let r = a.transport.send(&a.info, envelope(b"x")).await;
    assert!(matches!(r, Err(TransportError::Handshake { .. })), "{r:?}");
    // Oversized envelopes are refused like on TCP.
    let r = a
        .transport
        .send(&b.info, envelope(&vec![0; 5 * 1024 * 1024]))
        .await;
    assert!(matches!(r, Err(TransportError::TooLarge { .. })), "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn connections_are_announced_once_on_both_sides() {
    let net = net(SimConfig::default());
    let a = raw(&net);
    let b = raw(&net);
    a.transport.connect(&b.info).await.unwrap();
    a.transport.connect(&b.info).await.unwrap();
    a.transport.send(&b.info, envelope(b"x")).await.unwrap();
    b.transport.send(&a.info, envelope(b"y")).await.unwrap();
    assert_eq!(a.transport.connected_peers(), vec![b.info]);
    assert_eq!(b.transport.connected_peers(), vec![a.info]);
    let connected = |r: &Recorder| {
        r.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                PeerEvent::Connected { peer, direction } => Some((peer.id, *direction)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        connected(&a.recorder),
        vec![(b.info.id, Direction::Outbound)]
    );
    assert_eq!(
        connected(&b.recorder),
        vec![(a.info.id, Direction::Inbound)]
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_drops_what_is_queued_and_accounts_for_it() {
    let net = net(SimConfig::default());
    let a = raw(&net);
    let b = raw(&net);
    for _ in 0..5 {
        a.transport.send(&b.info, envelope(b"x")).await.unwrap();
    }
    assert_eq!(net.counters.snapshot().in_flight, 5);
    a.transport.shutdown().await;
    let stats = net.counters.snapshot();
    assert_eq!(stats.dropped.shutdown, 5);
    assert_eq!(stats.in_flight, 0);
    assert!(b.transport.connected_peers().is_empty());
    assert!(b.recorder.events.lock().unwrap().iter().any(|e| matches!(
        e,
        PeerEvent::Disconnected { peer, reason: crate::transport::CloseReason::RemoteClosed }
            if *peer == a.info.id
    )));
    assert_eq!(
        a.transport.send(&b.info, envelope(b"x")).await,
        Err(TransportError::Shutdown)
    );
}

#[tokio::test(start_paused = true)]
async fn run_until_idle_waits_for_every_message_and_no_longer() {
    let sim = SimNetwork::new(SimConfig::default(), 5);
    let a = sim.add_node(node_config()).await.unwrap();
    let b = sim.add_node(node_config()).await.unwrap();
    let mut inbox = b.register_protocol("chat").unwrap();
    for _ in 0..3 {
        a.send_message_to(&b.local_node(), "chat", &b"x"[..])
            .await
            .unwrap();
    }
    let start = Instant::now();
    sim.run_until_idle().await;
    let took = start.elapsed();
    assert_eq!(sim.stats().delivered, 3);
    assert!(
        took <= Duration::from_millis(50) + IDLE_GRACE * 2,
        "{took:?}"
    );
    for _ in 0..3 {
        inbox.try_recv().unwrap();
    }
    // Idle already: returns after the grace period.
    let start = Instant::now();
    sim.run_until_idle().await;
    assert_eq!(start.elapsed(), IDLE_GRACE);
    sim.shutdown().await;
    assert!(sim.nodes().is_empty());
}
