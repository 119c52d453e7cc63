//! One authenticated TCP connection: the handshake under a deadline, then a reader task and a flush task.
//!
//! The reader opens sealed frames under the per-frame read deadline, answers keepalive pings, enforces the
//! inbound frame and byte rate limits and hands each envelope to the
//! [`InboundHandler`](crate::transport::InboundHandler), awaiting it (backpressure on this peer only).
//! Senders seal and write through the connection's frame writer from their own task; the flush task
//! writes what the socket did not take at once, under the write deadline. A connection holds its slot (a
//! permit from the transport's limits) until both tasks stop. Every close has a typed [`CloseReason`].

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::SinkExt;
use rand::SeedableRng;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::time::Instant;
use tokio_util::codec::{Framed, FramedParts};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::TcpContext;
use super::bucket::TokenBucket;
use super::deadline::{ReadDeadline, TrackedCodec};
use super::limits::ConnPermit;
use super::writer::FrameWriter;
use crate::crypto::handshake::{Established, HandshakeError, Initiator, Responder};
use crate::crypto::session::Opener;
use crate::identity::NodeId;
use crate::peer::NodeInfo;
use crate::transport::{CloseReason, Direction, Limit, PeerEvent};
use crate::wire::{self, pb};

/// Reserved protocol name of connection keepalive pings (answered by the connection itself).
pub const PING_PROTOCOL: &str = "/kadmesh/keepalive/ping";
/// Reserved protocol name of connection keepalive pongs.
pub const PONG_PROTOCOL: &str = "/kadmesh/keepalive/pong";
/// How long a retired duplicate connection may take to drain before it is cut.
const RETIRE_GRACE: Duration = Duration::from_secs(5);

/// A TCP stream framed for the handshake.
pub(crate) type FramedStream = Framed<TcpStream, TrackedCodec>;

/// A stream whose handshake succeeded, with the connection slot it holds.
pub(crate) struct Authenticated {
    /// The framed stream (bytes after the last handshake frame stay in its read buffer).
    pub(crate) framed: FramedStream,
    /// The handshake's outcome: the peer's identity and the session keys.
    pub(crate) established: Established,
    /// The connection slot, held until the connection's tasks stop.
    pub(crate) permit: ConnPermit,
}

/// A handle on a live connection; cheap to clone.
#[derive(Clone, Debug)]
pub struct ConnectionHandle {
    /// Unique id of this connection.
    pub id: Uuid,
    /// The authenticated peer.
    pub peer: NodeInfo,
    /// Who dialled.
    pub direction: Direction,
    /// The node that dialled this connection (for the simultaneous-dial tie-break).
    pub initiator: NodeId,
    /// Our end of the TCP connection.
    pub local_socket: SocketAddr,
    /// The peer's end of the TCP connection.
    pub remote_socket: SocketAddr,
    /// Seals and writes frames.
    writer: Arc<FrameWriter>,
    /// Cancelled when the connection is closed.
    closed: CancellationToken,
    /// Cancelled to retire the connection gracefully (drain, then close).
    retire: CancellationToken,
    /// The first close reason recorded.
    reason: Arc<OnceLock<CloseReason>>,
}

impl ConnectionHandle {
    /// True until the connection starts closing.
    pub fn is_open(&self) -> bool {
        !self.closed.is_cancelled() && !self.retire.is_cancelled()
    }

    /// Seals and sends an encoded envelope; waits while the connection's send buffer is full.
    pub async fn send(&self, envelope: Bytes) -> Result<(), CloseReason> {
        if !self.is_open() {
            return Err(self.close_reason());
        }
        match self.writer.send(&envelope).await {
            Ok(()) => Ok(()),
            // The writer stopped taking frames: the connection is closing for its own reason.
            Err(CloseReason::Shutdown) => Err(self.close_reason()),
            Err(reason) => {
                self.close(reason.clone());
                Err(reason)
            }
        }
    }

    /// Why the connection closed (`Shutdown` if it has not recorded a reason).
    pub fn close_reason(&self) -> CloseReason {
        self.reason.get().cloned().unwrap_or(CloseReason::Shutdown)
    }

    /// Closes the connection now with `reason`.
    pub fn close(&self, reason: CloseReason) {
        let _ = self.reason.set(reason);
        self.writer.close();
        self.closed.cancel();
    }

    /// Stops accepting new frames, flushes what is queued, and closes once the peer closes its side too.
    pub fn retire(&self) {
        let _ = self.reason.set(CloseReason::Duplicate);
        self.writer.close();
        self.retire.cancel();
    }

    /// Resolves when the connection has closed.
    pub async fn closed(&self) {
        self.closed.cancelled().await
    }
}

/// Unix time in milliseconds (0 if the clock is before 1970).
pub(crate) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn handshake_frame(msg: &pb::HandshakeData) -> Bytes {
    wire::encode(msg)
}

async fn read_handshake(
    framed: &mut FramedStream,
    deadline: &mut ReadDeadline,
) -> Result<pb::HandshakeData, CloseReason> {
    match deadline.next(framed).await {
        Some(Ok(frame)) => wire::decode("HandshakeData", &frame)
            .map_err(|e| CloseReason::Handshake(HandshakeError::Malformed(e.to_string()))),
        Some(Err(reason)) => Err(reason),
        None => Err(CloseReason::RemoteClosed),
    }
}

/// Runs a CPU-heavy handshake step: on the blocking pool when `net.offload_handshake` is set, so the
/// runtime's workers stay responsive, else inline.
async fn crypto<T: Send + 'static>(
    ctx: &TcpContext,
    step: impl FnOnce() -> T + Send + 'static,
) -> Result<T, CloseReason> {
    if ctx.config.offload_handshake {
        tokio::task::spawn_blocking(step)
            .await
            .map_err(|_| CloseReason::Shutdown)
    } else {
        Ok(step())
    }
}

/// Reports a connection attempt that failed before authentication (counting the limit it hit, if any).
pub(crate) fn handshake_failed(ctx: &TcpContext, addr: SocketAddr, reason: CloseReason) {
    if let Some(limit) = Limit::of(&reason) {
        ctx.limits.hit(limit);
    }
    if let Some(handler) = ctx.handler.upgrade() {
        handler.peer_event(PeerEvent::HandshakeFailed { addr, reason });
    }
}

/// Dials `remote` and runs the initiator side of the handshake under `handshake_timeout`, holding the
/// outbound slot `permit`.
pub(crate) async fn dial(
    ctx: &TcpContext,
    remote: &NodeInfo,
    permit: ConnPermit,
) -> Result<Authenticated, CloseReason> {
    let stream = TcpStream::connect(remote.addr)
        .await
        .map_err(|e| CloseReason::Frame(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let mut framed = Framed::new(stream, TrackedCodec::new(ctx.config.max_frame_len));
    let mut deadline = ReadDeadline::new(ctx.config.read_timeout);
    let run = async {
        let (cfg, keypair, remote_id) = (ctx.handshake.clone(), ctx.keypair.clone(), remote.id);
        let (initiator, hello) = crypto(ctx, move || {
            Initiator::start(&cfg, &keypair, &remote_id, unix_ms(), &mut rand::rng())
        })
        .await??;
        framed.send(handshake_frame(&hello)).await?;
        let reply = read_handshake(&mut framed, &mut deadline).await?;
        let (established, fin) =
            crypto(ctx, move || initiator.on_response(&reply, unix_ms())).await??;
        framed.send(handshake_frame(&fin)).await?;
        Ok::<_, CloseReason>(established)
    };
    let established = tokio::time::timeout(ctx.config.handshake_timeout, run)
        .await
        .map_err(|_| CloseReason::HandshakeTimeout)??;
    Ok(Authenticated {
        framed,
        established,
        permit,
    })
}

/// Runs the responder side of the handshake on an accepted stream under `handshake_timeout`, holding
/// the inbound slot `permit`.
pub(crate) async fn accept(
    ctx: &TcpContext,
    stream: TcpStream,
    permit: ConnPermit,
) -> Result<Authenticated, CloseReason> {
    let _ = stream.set_nodelay(true);
    let mut framed = Framed::new(stream, TrackedCodec::new(ctx.config.max_frame_len));
    let mut deadline = ReadDeadline::new(ctx.config.read_timeout);
    let run = async {
        let hello = read_handshake(&mut framed, &mut deadline).await?;
        let (cfg, keypair) = (ctx.handshake.clone(), ctx.keypair.clone());
        let (responder, reply) = crypto(ctx, move || {
            Responder::on_hello(&cfg, &keypair, &hello, unix_ms(), &mut rand::rng())
        })
        .await??;
        framed.send(handshake_frame(&reply)).await?;
        let fin = read_handshake(&mut framed, &mut deadline).await?;
        Ok::<_, CloseReason>(responder.on_finish(&fin)?)
    };
    let established = tokio::time::timeout(ctx.config.handshake_timeout, run)
        .await
        .map_err(|_| CloseReason::HandshakeTimeout)??;
    Ok(Authenticated {
        framed,
        established,
        permit,
    })
}

/// Where an authenticated peer can be reached: the dialled address, or its IP with its announced port.
pub(crate) fn peer_info(
    established: &Established,
    direction: Direction,
    dialled: Option<SocketAddr>,
    socket_peer: SocketAddr,
) -> NodeInfo {
    let addr = match (direction, dialled) {
        (Direction::Outbound, Some(addr)) => addr,
        _ if established.remote_listen_port != 0 => {
            SocketAddr::new(socket_peer.ip(), established.remote_listen_port)
        }
        _ => socket_peer,
    };
    NodeInfo::new(established.remote, addr)
}

/// Starts the reader and writer tasks of an authenticated connection and returns its handle.
///
/// The reader waits for `ready` (the pool registers the connection first, so anything the peer sends
/// can be answered on this same connection). `on_close` runs once, after both tasks have stopped; then
/// the connection's slot is given back.
pub(crate) fn spawn(
    ctx: &Arc<TcpContext>,
    authenticated: Authenticated,
    peer: NodeInfo,
    direction: Direction,
    ready: tokio::sync::oneshot::Receiver<()>,
    on_close: impl FnOnce(&ConnectionHandle) + Send + 'static,
) -> ConnectionHandle {
    let Authenticated {
        framed,
        established,
        permit,
    } = authenticated;
    let parts = framed.into_parts();
    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    let local_socket = parts.io.local_addr().unwrap_or(unspecified);
    let remote_socket = parts.io.peer_addr().unwrap_or(unspecified);
    let (read_half, write_half) = parts.io.into_split();
    // Bytes the peer sent right after its last handshake frame may already be buffered: keep them.
    let mut reader_parts =
        FramedParts::new::<Bytes>(read_half, TrackedCodec::new(ctx.config.max_frame_len));
    reader_parts.read_buf = parts.read_buf;
    let reader = Framed::from_parts(reader_parts);
    let (sealer, opener) = established
        .keys
        .split(rand::rngs::StdRng::from_rng(&mut rand::rng()));
    let writer = Arc::new(FrameWriter::new(
        write_half,
        sealer,
        ctx.config.send_buffer,
        ctx.config.max_frame_len,
        ctx.config.write_timeout,
    ));
    let closed = ctx.cancel.child_token();
    let initiator = match direction {
        Direction::Outbound => ctx.keypair.node_id(),
        Direction::Inbound => peer.id,
    };
    let handle = ConnectionHandle {
        id: Uuid::new_v4(),
        peer,
        direction,
        initiator,
        local_socket,
        remote_socket,
        writer,
        closed: closed.clone(),
        retire: CancellationToken::new(),
        reason: Arc::new(OnceLock::new()),
    };
    ctx.live.send_modify(|n| *n += 1);
    let writer_task = ctx.tasks.spawn(flush_loop(handle.clone()));
    let reader_ctx = Arc::clone(ctx);
    let reader_handle = handle.clone();
    ctx.tasks.spawn(async move {
        let reason = match ready.await {
            Ok(()) => read_loop(&reader_ctx, &reader_handle, reader, opener).await,
            Err(_) => CloseReason::Shutdown,
        };
        reader_handle.close(reason);
        let _ = writer_task.await;
        let reason = reader_handle.close_reason();
        tracing::debug!(peer = %reader_handle.peer.id.short(), conn = %reader_handle.id, %reason, "connection closed");
        if let Some(limit) = Limit::of(&reason) {
            reader_ctx.limits.hit(limit);
        }
        on_close(&reader_handle);
        reader_ctx.live.send_modify(|n| *n = n.saturating_sub(1));
        drop(permit);
        if let Some(handler) = reader_ctx.handler.upgrade() {
            handler.peer_event(PeerEvent::Disconnected {
                peer: reader_handle.peer.id,
                reason,
            });
        }
    });
    handle
}

/// Writes what senders left buffered; on retirement flushes everything and half-closes the socket.
async fn flush_loop(handle: ConnectionHandle) {
    let result = tokio::select! {
        biased;
        _ = handle.closed.cancelled() => Ok(()),
        _ = handle.retire.cancelled() => {
            let flushed = handle.writer.flush_pending().await;
            handle.writer.shutdown_write();
            flushed
        }
        r = handle.writer.run() => r,
    };
    if let Err(reason) = result {
        handle.close(reason);
    }
}

fn control(protocol: &str, payload: Bytes) -> Bytes {
    wire::encode(&pb::Envelope {
        metadata: Some(pb::Metadata {
            protocol: protocol.to_owned(),
            timestamp: unix_ms(),
            ..Default::default()
        }),
        payload: payload.to_vec(),
    })
}

/// Sends a keepalive control frame if the send buffer has room now, else drops it (a full buffer means
/// traffic is flowing anyway; counted).
fn send_control(ctx: &TcpContext, handle: &ConnectionHandle, protocol: &str, payload: Bytes) {
    if let Ok(false) = handle.writer.send_now(&control(protocol, payload)) {
        ctx.limits.keepalive_dropped();
    }
}

async fn read_loop(
    ctx: &TcpContext,
    handle: &ConnectionHandle,
    mut reader: Framed<OwnedReadHalf, TrackedCodec>,
    mut opener: Opener,
) -> CloseReason {
    let cfg = &ctx.config;
    let now = Instant::now();
    let mut frames = TokenBucket::new(
        f64::from(cfg.rate_limit_per_sec),
        f64::from(cfg.rate_limit_burst),
        now,
    );
    // u64 to f64 rounds above 2^53 bytes: far beyond any sensible setting.
    let mut bytes = TokenBucket::new(
        cfg.rate_limit_bytes_per_sec as f64,
        cfg.rate_limit_bytes_burst as f64,
        now,
    );
    let mut deadline = ReadDeadline::new(cfg.read_timeout);
    let mut last_rx = Instant::now();
    let mut ping_sent: Option<Instant> = None;
    let mut ping_nonce: u64 = 0;
    let retire_deadline = async {
        handle.retire.cancelled().await;
        tokio::time::sleep(RETIRE_GRACE).await;
    };
    tokio::pin!(retire_deadline);
    // Futures made once per connection, not per frame: timer and waiter registrations cost locks.
    let closed = handle.closed.cancelled();
    tokio::pin!(closed);
    // The keepalive timer is re-armed only when it fires (from the last frame's time), never per frame.
    let keepalive = tokio::time::sleep(cfg.ping_interval);
    tokio::pin!(keepalive);
    loop {
        let frame = tokio::select! {
            biased;
            _ = &mut closed => return handle.close_reason(),
            _ = &mut retire_deadline => return CloseReason::Duplicate,
            _ = &mut keepalive => {
                let now = Instant::now();
                if let Some(at) = ping_sent {
                    if last_rx <= at {
                        return CloseReason::KeepaliveTimeout;
                    }
                    ping_sent = None;
                }
                let quiet_until = last_rx + cfg.ping_interval;
                if now >= quiet_until {
                    ping_nonce = ping_nonce.wrapping_add(1);
                    let ping = wire::encode(&pb::Ping { nonce: ping_nonce });
                    // The pong deadline applies even if the ping could not be queued.
                    send_control(ctx, handle, PING_PROTOCOL, ping);
                    ping_sent = Some(now);
                    keepalive.as_mut().reset(now + cfg.ping_timeout);
                } else {
                    keepalive.as_mut().reset(quiet_until);
                }
                continue;
            }
            frame = deadline.next(&mut reader) => frame,
        };
        let frame = match frame {
            None if handle.retire.is_cancelled() => return CloseReason::Duplicate,
            None => return CloseReason::RemoteClosed,
            Some(Err(reason)) => return reason,
            Some(Ok(frame)) => frame,
        };
        let now = Instant::now();
        last_rx = now;
        if !frames.try_take(1.0, now) {
            ctx.limits.hit(Limit::FrameRate);
            return CloseReason::RateLimited;
        }
        if !bytes.try_take(frame.len() as f64, now) {
            ctx.limits.hit(Limit::ByteRate);
            return CloseReason::RateLimited;
        }
        let plaintext = match opener.open(&frame) {
            Ok(p) => p,
            Err(e) => return e.into(),
        };
        let envelope: pb::Envelope = match wire::decode("Envelope", &plaintext) {
            Ok(env) => env,
            Err(e) => return CloseReason::Malformed(e.to_string()),
        };
        let Some(meta) = envelope.metadata.as_ref() else {
            return CloseReason::Malformed("envelope without metadata".into());
        };
        match meta.protocol.as_str() {
            PING_PROTOCOL => {
                let nonce = wire::decode::<pb::Ping>("Ping", &envelope.payload)
                    .map(|p| p.nonce)
                    .unwrap_or(0);
                let pong = wire::encode(&pb::Pong { nonce });
                send_control(ctx, handle, PONG_PROTOCOL, pong);
            }
            PONG_PROTOCOL => {}
            _ => {
                let Some(handler) = ctx.handler.upgrade() else {
                    return CloseReason::Shutdown;
                };
                tokio::select! {
                    biased;
                    _ = &mut closed => return handle.close_reason(),
                    _ = handler.handle_envelope(handle.peer, envelope) => {}
                }
            }
        }
    }
}
