//! The seed's "Measure message latency" row: request/response ping-pong between two nodes over real
//! loopback TCP, against a raw length-prefixed tokio TCP ping-pong of the same size in the same run.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::codec::Framed;

use super::stats::Summary;
use crate::config::Config;
use crate::error::Error;
use crate::swarm::Swarm;
use crate::wire::FrameCodec;

/// Protocol the latency bench registers.
const PROTOCOL: &str = "bench/latency";
/// Round trips per block; kadmesh and raw TCP blocks alternate so drift hits both alike.
const BLOCK: usize = 100;
/// Round trips of each kind before measuring.
const WARMUP: usize = 200;

/// Parameters of the latency bench.
#[derive(Clone, Debug)]
pub struct LatencyParams {
    /// Round trips to measure (each kind).
    pub messages: usize,
    /// Payload size in bytes.
    pub size: usize,
}

impl Default for LatencyParams {
    fn default() -> Self {
        Self {
            messages: 2000,
            size: 64,
        }
    }
}

/// Latency summary in microseconds.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct LatencyUs {
    /// Median round trip.
    pub median: f64,
    /// 99th percentile round trip.
    pub p99: f64,
    /// Fastest round trip.
    pub min: f64,
    /// Slowest round trip.
    pub max: f64,
}

/// Raw TCP baseline summary in microseconds.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct BaselineUs {
    /// Median round trip.
    pub median: f64,
    /// 99th percentile round trip.
    pub p99: f64,
}

/// The JSON report of `kadmesh bench latency`.
#[derive(Clone, Debug, Serialize)]
pub struct LatencyReport {
    /// Always "latency".
    pub scenario: &'static str,
    /// Always "tcp".
    pub transport: &'static str,
    /// Round trips measured of each kind.
    pub messages: usize,
    /// Payload size in bytes.
    pub size: usize,
    /// kadmesh request/response round trips.
    pub latency_us: LatencyUs,
    /// Raw tokio TCP ping-pong round trips.
    pub baseline_tcp_rtt_us: BaselineUs,
    /// kadmesh median over raw TCP median.
    pub ratio_median: f64,
}

/// Runs the bench on the current tokio runtime.
pub async fn run(params: &LatencyParams) -> Result<LatencyReport, Error> {
    let config = Config {
        listen: "127.0.0.1:0".parse().map_err(|_| Error::Shutdown)?,
        ..Config::default()
    };
    let a = Swarm::start(config.clone()).await?;
    let b = Swarm::start(config).await?;
    let mut inbox = b.register_protocol(PROTOCOL)?;
    let echo = tokio::spawn(async move {
        while let Some(msg) = inbox.recv().await {
            if msg.respond(msg.payload().clone()).await.is_err() {
                break;
            }
        }
    });
    let raw = RawPingPong::start(params.size)
        .await
        .map_err(|e| Error::Bind {
            addr: "127.0.0.1:0"
                .parse()
                .unwrap_or(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
            reason: e.to_string(),
        })?;
    let mut raw = raw;

    let payload = Bytes::from(vec![0x5a; params.size]);
    let target = b.local_node();
    let timeout = Duration::from_secs(10);
    let mut kad = Vec::with_capacity(params.messages);
    let mut base = Vec::with_capacity(params.messages);
    for _ in 0..WARMUP {
        a.request_to(&target, PROTOCOL, payload.clone(), timeout)
            .await?;
        raw.round_trip().await.map_err(|_| Error::Timeout)?;
    }
    while kad.len() < params.messages {
        let n = BLOCK.min(params.messages - kad.len());
        for _ in 0..n {
            let start = Instant::now();
            a.request_to(&target, PROTOCOL, payload.clone(), timeout)
                .await?;
            kad.push(start.elapsed().as_secs_f64() * 1e6);
        }
        for _ in 0..n {
            let start = Instant::now();
            raw.round_trip().await.map_err(|_| Error::Timeout)?;
            base.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    a.shutdown().await;
    b.shutdown().await;
    let _ = echo.await;
    raw.stop().await;

    let k = Summary::of(&mut kad);
    let r = Summary::of(&mut base);
    Ok(LatencyReport {
        scenario: "latency",
        transport: "tcp",
        messages: params.messages,
        size: params.size,
        latency_us: LatencyUs {
            median: k.median,
            p99: k.p99,
            min: k.min,
            max: k.max,
        },
        baseline_tcp_rtt_us: BaselineUs {
            median: r.median,
            p99: r.p99,
        },
        ratio_median: if r.median > 0.0 {
            k.median / r.median
        } else {
            0.0
        },
    })
}

/// A raw tokio TCP echo over the same length-prefixed framing, without crypto or protobuf.
struct RawPingPong {
    /// Client side.
    client: Framed<TcpStream, FrameCodec>,
    /// The echo server task.
    server: tokio::task::JoinHandle<()>,
    /// The payload sent each round trip.
    payload: Bytes,
}

impl RawPingPong {
    async fn start(size: usize) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            let mut framed = Framed::new(stream, FrameCodec::new(usize::MAX >> 1));
            while let Some(Ok(frame)) = framed.next().await {
                if framed.send(frame.freeze()).await.is_err() {
                    break;
                }
            }
        });
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            client: Framed::new(stream, FrameCodec::new(usize::MAX >> 1)),
            server,
            payload: Bytes::from(vec![0x5a; size]),
        })
    }

    async fn round_trip(&mut self) -> Result<(), crate::wire::WireError> {
        self.client.send(self.payload.clone()).await?;
        match self.client.next().await {
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(e),
            None => Err(crate::wire::WireError::Truncated),
        }
    }

    async fn stop(self) {
        drop(self.client);
        let _ = self.server.await;
    }
}
