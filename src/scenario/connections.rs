//! Connection-rate bench: how many new authenticated connections per second one process sustains,
//! dialer and listener side by side, and how late a 1 ms ticker task runs meanwhile (starvation).
//!
//! The listener is a real [`TcpTransport`]; each dial uses a fresh identity and runs the initiator
//! side of the handshake with the public crypto API, then keeps its socket open until the end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::report::LatencySection;
use crate::config::{Config, NetConfig};
use crate::crypto::handshake::{HandshakeConfig, Initiator};
use crate::error::Error;
use crate::identity::Keypair;
use crate::peer::NodeInfo;
use crate::transport::tcp::TcpTransport;
use crate::transport::{InboundHandler, PeerEvent, Transport};
use crate::wire::{self, FrameCodec, pb};

/// Parameters of the connection-rate bench.
#[derive(Clone, Debug)]
pub struct ConnectionsParams {
    /// Connections to open.
    pub connections: usize,
    /// Dials in flight at once.
    pub concurrency: usize,
    /// Run handshake crypto on the blocking pool (`net.offload_handshake`).
    pub offload: bool,
}

impl Default for ConnectionsParams {
    fn default() -> Self {
        Self {
            connections: 5000,
            concurrency: 64,
            offload: false,
        }
    }
}

/// The JSON report of `kadmesh bench connections`.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectionsReport {
    /// Always "connections".
    pub scenario: &'static str,
    /// Always "tcp".
    pub transport: &'static str,
    /// Connections opened.
    pub connections: usize,
    /// Dials in flight at once.
    pub concurrency: usize,
    /// Whether handshake crypto ran on the blocking pool.
    pub offload_handshake: bool,
    /// Time from the first dial to the last connection registered by the listener.
    pub elapsed_ms: f64,
    /// `connections / elapsed`.
    pub connections_per_sec: f64,
    /// Lateness of a 1 ms ticker task during the storm, microseconds.
    pub ticker_lateness_us: LatencySection,
    /// The same ticker on the idle runtime just before, microseconds.
    pub idle_ticker_lateness_us: LatencySection,
}

/// Counts authenticated inbound connections.
struct Counter {
    /// Connections registered so far.
    connected: AtomicUsize,
    /// Woken on every registration.
    changed: Notify,
}

impl InboundHandler for Counter {
    fn handle_envelope(&self, _: NodeInfo, _: pb::Envelope) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    fn peer_event(&self, event: PeerEvent) {
        if let PeerEvent::Connected { .. } = event {
            self.connected.fetch_add(1, Ordering::Relaxed);
            self.changed.notify_waiters();
        }
    }
}

/// Runs the bench on the current (multi-threaded) runtime.
pub async fn run(params: &ConnectionsParams) -> Result<ConnectionsReport, Error> {
    let defaults = Config::default();
    let handshake = HandshakeConfig {
        network_id: defaults.network_id,
        client_version: defaults.client_version.clone(),
        max_clock_skew: defaults.net.max_clock_skew,
        listen_port: 0,
    };
    let net = NetConfig {
        max_inbound: params.connections + 16,
        max_pending_handshakes: params.concurrency.max(1),
        offload_handshake: params.offload,
        ..defaults.net
    };
    let counter = Arc::new(Counter {
        connected: AtomicUsize::new(0),
        changed: Notify::new(),
    });
    let listener_key = Keypair::random();
    let listener_id = listener_key.node_id();
    let handler: Weak<dyn InboundHandler> = Arc::downgrade(&counter) as Weak<dyn InboundHandler>;
    let bind = "127.0.0.1:0"
        .parse()
        .map_err(|_| Error::Unsupported("loopback"))?;
    let listener = TcpTransport::bind(bind, listener_key, net, handshake.clone(), handler)
        .await
        .map_err(|e| Error::Bind {
            addr: bind,
            reason: e.to_string(),
        })?;
    let target = listener.local_addr();
    // Identities are made before the clock starts: key generation is not a connection cost.
    let keys: Vec<Keypair> = (0..params.connections).map(|_| Keypair::random()).collect();

    let idle = ticker_for(Duration::from_millis(300)).await;

    let stop = CancellationToken::new();
    let ticker = tokio::spawn(ticker(stop.clone()));
    let started = Instant::now();
    let offload = params.offload;
    let dials = futures::stream::iter(keys)
        .map(|key| {
            let handshake = handshake.clone();
            async move { dial(target, listener_id, key, handshake, offload).await }
        })
        .buffer_unordered(params.concurrency.max(1))
        .collect::<Vec<_>>();
    let streams = dials.await;
    let failed = streams.iter().filter(|s| s.is_err()).count();
    // Wait until the listener has registered every successful dial.
    let want = params.connections - failed;
    loop {
        let changed = counter.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if counter.connected.load(Ordering::Relaxed) >= want {
            break;
        }
        if tokio::time::timeout(Duration::from_secs(30), changed)
            .await
            .is_err()
        {
            break;
        }
    }
    let elapsed = started.elapsed();
    stop.cancel();
    let mut lateness = ticker.await.unwrap_or_default();
    let connected = counter.connected.load(Ordering::Relaxed);
    drop(streams);
    listener.shutdown().await;
    if failed > 0 || connected < params.connections {
        tracing::warn!(failed, connected, "not every connection succeeded");
    }
    let mut idle = idle;
    Ok(ConnectionsReport {
        scenario: "connections",
        transport: "tcp",
        connections: connected,
        concurrency: params.concurrency,
        offload_handshake: params.offload,
        elapsed_ms: elapsed.as_secs_f64() * 1e3,
        connections_per_sec: connected as f64 / elapsed.as_secs_f64().max(1e-9),
        ticker_lateness_us: LatencySection::of(&mut lateness),
        idle_ticker_lateness_us: LatencySection::of(&mut idle),
    })
}

/// Dials, runs the initiator handshake, and returns the open stream.
async fn dial(
    target: std::net::SocketAddr,
    listener: crate::identity::NodeId,
    key: Keypair,
    cfg: HandshakeConfig,
    offload: bool,
) -> Result<Framed<TcpStream, FrameCodec>, Error> {
    let closed = |e: &dyn std::fmt::Display| crate::transport::TransportError::Dial {
        addr: target,
        reason: e.to_string(),
    };
    let stream = TcpStream::connect(target).await.map_err(|e| closed(&e))?;
    let _ = stream.set_nodelay(true);
    let mut framed = Framed::new(stream, FrameCodec::new(1 << 20));
    let now = crate::transport::tcp::connection::unix_ms();
    let (initiator, hello) = run_crypto(offload, move || {
        Initiator::start(&cfg, &key, &listener, now, &mut rand::rng())
    })
    .await
    .map_err(|e| closed(&e))?;
    framed
        .send(wire::encode(&hello))
        .await
        .map_err(|e| closed(&e))?;
    let reply = match framed.next().await {
        Some(Ok(frame)) => {
            wire::decode::<pb::HandshakeData>("HandshakeData", &frame).map_err(|e| closed(&e))?
        }
        _ => return Err(closed(&"closed during handshake").into()),
    };
    let now = crate::transport::tcp::connection::unix_ms();
    let (_, fin) = run_crypto(offload, move || initiator.on_response(&reply, now))
        .await
        .map_err(|e| closed(&e))?;
    framed
        .send(wire::encode(&fin))
        .await
        .map_err(|e| closed(&e))?;
    Ok(framed)
}

async fn run_crypto<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    offload: bool,
    step: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, String> {
    let r = if offload {
        tokio::task::spawn_blocking(step)
            .await
            .map_err(|e| e.to_string())?
    } else {
        step()
    };
    r.map_err(|e| e.to_string())
}

/// Runs the ticker for `d` and returns its lateness samples.
async fn ticker_for(d: Duration) -> Vec<f64> {
    let stop = CancellationToken::new();
    let task = tokio::spawn(ticker(stop.clone()));
    tokio::time::sleep(d).await;
    stop.cancel();
    task.await.unwrap_or_default()
}

/// Wakes every millisecond until stopped; returns how late each wake-up was, in microseconds.
async fn ticker(stop: CancellationToken) -> Vec<f64> {
    let period = Duration::from_millis(1);
    let mut samples = Vec::new();
    let mut next = Instant::now() + period;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return samples,
            _ = tokio::time::sleep_until(next) => {}
        }
        let now = Instant::now();
        samples.push(now.saturating_duration_since(next).as_secs_f64() * 1e6);
        next = now + period;
    }
}
