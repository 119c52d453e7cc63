//! The boundary between the [`Swarm`](crate::swarm::Swarm) and the networks it runs on.
//!
//! A transport delivers [`pb::Envelope`]s between authenticated nodes. The Swarm owns an
//! `Arc<dyn Transport>` and hands the transport an [`InboundHandler`] for what arrives; the TCP transport
//! (sockets, handshake, session crypto) and the in-memory simulator both implement it, so everything above
//! this line is the same code on both.

use std::net::{IpAddr, SocketAddr};

use futures::future::BoxFuture;

use crate::ban::BanTarget;
use crate::identity::NodeId;
use crate::peer::NodeInfo;
use crate::wire::pb;

pub mod sim;
pub mod tcp;

/// Why a transport could not deliver or connect.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TransportError {
    /// The TCP connect failed or timed out.
    #[error("dial {addr} failed: {reason}")]
    Dial {
        /// The address dialled.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// The connection handshake failed.
    #[error("handshake with {addr} failed: {reason}")]
    Handshake {
        /// The peer's address.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// The connection closed before the envelope could be queued.
    #[error("connection to {peer:?} closed: {reason}")]
    Closed {
        /// The peer.
        peer: NodeId,
        /// Why it closed.
        reason: String,
    },
    /// The envelope does not fit in one frame.
    #[error("message of {len} bytes exceeds the frame limit of {max} bytes")]
    TooLarge {
        /// Encoded size.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The peer is unreachable (simulator: offline or partitioned).
    #[error("peer {0:?} unreachable")]
    Unreachable(NodeId),
    /// A connection limit refused the dial (`net.max_outbound` or `net.max_connections`).
    #[error("dial refused: {0} reached")]
    LimitReached(Limit),
    /// The node, or the IP it is at, is banned here ([`crate::ban`]); no connection was made.
    #[error("{0} is banned")]
    Banned(BanTarget),
    /// The transport is shutting down.
    #[error("transport is shut down")]
    Shutdown,
}

/// Why a connection (or connection attempt) ended.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CloseReason {
    /// The local node shut down.
    #[error("local shutdown")]
    Shutdown,
    /// Another connection to the same peer won the tie-break; this one drained and closed.
    #[error("duplicate connection retired")]
    Duplicate,
    /// The peer closed the connection.
    #[error("closed by peer")]
    RemoteClosed,
    /// The handshake did not finish within `handshake_timeout`.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// The handshake failed a check.
    #[error("handshake failed: {0}")]
    Handshake(#[from] crate::crypto::handshake::HandshakeError),
    /// A length prefix announced a frame over `max_frame_len`.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The framing layer failed otherwise (truncated frame, socket error).
    #[error("framing: {0}")]
    Frame(String),
    /// A sealed frame failed to open (MAC, padding, length, sequence).
    #[error("session: {0}")]
    Session(#[from] crate::crypto::session::SessionError),
    /// A frame opened but did not hold a valid envelope.
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// No pong within `ping_timeout` after a keepalive ping.
    #[error("keepalive timeout")]
    KeepaliveTimeout,
    /// The peer exceeded the inbound frame or byte rate limit.
    #[error("inbound rate limit exceeded")]
    RateLimited,
    /// A frame started arriving but was not complete within `net.read_timeout`.
    #[error("frame not received within the read timeout")]
    ReadTimeout,
    /// A socket write made no progress for `net.write_timeout` (the peer stopped reading).
    #[error("socket write stalled beyond the write timeout")]
    WriteTimeout,
    /// Writing to the socket failed.
    #[error("write failed: {0}")]
    Write(String),
    /// The listener refused the connection at accept, before any handshake work: a limit was reached.
    #[error("refused: {0} reached")]
    Refused(Limit),
    /// The peer became unreachable (simulator: one side went offline, or a partition separates them).
    #[error("peer unreachable")]
    Unreachable,
    /// The peer's id or IP is banned ([`crate::ban`]): refused at accept, right after the handshake, or
    /// disconnected when the ban was made.
    #[error("banned: {0}")]
    Banned(BanTarget),
}

impl From<crate::wire::WireError> for CloseReason {
    fn from(e: crate::wire::WireError) -> Self {
        match e {
            crate::wire::WireError::FrameTooLarge { len, max } => {
                CloseReason::FrameTooLarge { len, max }
            }
            other => CloseReason::Frame(other.to_string()),
        }
    }
}

/// A limit the transport enforces; [`Limit::label`] names it in metrics (`kadmesh_limit_hits_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    /// `net.max_connections`: inbound and outbound connections together.
    MaxConnections,
    /// `net.max_inbound`.
    MaxInbound,
    /// `net.max_outbound`.
    MaxOutbound,
    /// `net.max_pending_handshakes`: the listener stopped accepting for a while.
    MaxPendingHandshakes,
    /// `net.max_inbound_per_ip`.
    MaxInboundPerIp,
    /// `net.ip_accept_burst` / `net.ip_accept_interval`: one address connected too often.
    IpAcceptThrottle,
    /// `net.handshake_timeout`.
    HandshakeTimeout,
    /// `net.read_timeout`.
    ReadTimeout,
    /// `net.write_timeout`.
    WriteTimeout,
    /// `net.rate_limit_per_sec` / `net.rate_limit_burst`: inbound frames per connection.
    FrameRate,
    /// `net.rate_limit_bytes_per_sec` / `net.rate_limit_bytes_burst`: inbound bytes per connection.
    ByteRate,
    /// `net.max_frame_len`.
    MaxFrameLen,
}

impl Limit {
    /// Every limit, in a fixed order.
    pub const ALL: [Limit; 12] = [
        Limit::MaxConnections,
        Limit::MaxInbound,
        Limit::MaxOutbound,
        Limit::MaxPendingHandshakes,
        Limit::MaxInboundPerIp,
        Limit::IpAcceptThrottle,
        Limit::HandshakeTimeout,
        Limit::ReadTimeout,
        Limit::WriteTimeout,
        Limit::FrameRate,
        Limit::ByteRate,
        Limit::MaxFrameLen,
    ];

    /// The metric label (the config key without `net.`; the two rate limits as `frame_rate`/`byte_rate`,
    /// the throttle as `ip_accept_throttle`).
    pub fn label(self) -> &'static str {
        match self {
            Limit::MaxConnections => "max_connections",
            Limit::MaxInbound => "max_inbound",
            Limit::MaxOutbound => "max_outbound",
            Limit::MaxPendingHandshakes => "max_pending_handshakes",
            Limit::MaxInboundPerIp => "max_inbound_per_ip",
            Limit::IpAcceptThrottle => "ip_accept_throttle",
            Limit::HandshakeTimeout => "handshake_timeout",
            Limit::ReadTimeout => "read_timeout",
            Limit::WriteTimeout => "write_timeout",
            Limit::FrameRate => "frame_rate",
            Limit::ByteRate => "byte_rate",
            Limit::MaxFrameLen => "max_frame_len",
        }
    }

    /// The limit a close reason says was exceeded, if any (the two rate limits share
    /// [`CloseReason::RateLimited`] and are counted where they bite).
    pub fn of(reason: &CloseReason) -> Option<Limit> {
        match reason {
            CloseReason::HandshakeTimeout => Some(Limit::HandshakeTimeout),
            CloseReason::ReadTimeout => Some(Limit::ReadTimeout),
            CloseReason::WriteTimeout => Some(Limit::WriteTimeout),
            CloseReason::FrameTooLarge { .. } => Some(Limit::MaxFrameLen),
            _ => None,
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// A snapshot of a transport's connection counts and limit counters ([`Transport::stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Inbound handshakes in progress now.
    pub pending_handshakes: usize,
    /// The most inbound handshakes that were ever in progress at once.
    pub peak_pending_handshakes: usize,
    /// Inbound connection slots taken (handshaking, open or draining).
    pub inbound: usize,
    /// Outbound connection slots taken (dialling, open or draining).
    pub outbound: usize,
    /// How often each limit bit, in [`Limit::ALL`] order (empty for a transport without limits).
    pub limit_hits: Vec<(Limit, u64)>,
    /// Keepalive pings and pongs not sent because the connection's send buffer was full.
    pub keepalive_dropped: u64,
}

impl TransportStats {
    /// How often `limit` bit.
    pub fn hits(&self, limit: Limit) -> u64 {
        self.limit_hits
            .iter()
            .find(|(l, _)| *l == limit)
            .map_or(0, |(_, n)| *n)
    }
}

/// Whether we dialled a connection or accepted it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// We dialled.
    Outbound,
    /// They dialled.
    Inbound,
}

/// Something that happened to a peer connection, reported to the [`InboundHandler`].
#[derive(Clone, Debug)]
pub enum PeerEvent {
    /// An authenticated connection is up.
    Connected {
        /// The peer.
        peer: NodeInfo,
        /// Who dialled.
        direction: Direction,
    },
    /// A connection closed.
    Disconnected {
        /// The peer.
        peer: NodeId,
        /// Why it closed.
        reason: CloseReason,
    },
    /// An inbound or outbound connection attempt failed before authentication.
    HandshakeFailed {
        /// The remote socket address.
        addr: SocketAddr,
        /// Why it failed.
        reason: CloseReason,
    },
}

/// Receives what a transport delivers. Implemented by the Swarm.
pub trait InboundHandler: Send + Sync + 'static {
    /// Handles one authenticated envelope from `from`. The transport awaits it before it reads the next
    /// envelope from the same peer, so a slow consumer pushes back on that peer only.
    fn handle_envelope(&self, from: NodeInfo, envelope: pb::Envelope) -> BoxFuture<'_, ()>;

    /// Reports a connection event. Must not block.
    fn peer_event(&self, event: PeerEvent);

    /// The ban that refuses a connection with this peer, if any. Asked with `id` None when a connection
    /// is accepted (before any handshake work), and with the authenticated id after every handshake and
    /// before every dial. Must not block.
    fn banned(&self, _id: Option<&NodeId>, _ip: IpAddr) -> Option<BanTarget> {
        None
    }
}

/// A network the Swarm can send envelopes over.
pub trait Transport: Send + Sync + 'static {
    /// Sends `envelope` to `to`, connecting first if needed. Returns once the envelope is queued on an
    /// authenticated connection (or lost, in the simulator's fault model).
    fn send<'a>(
        &'a self,
        to: &'a NodeInfo,
        envelope: pb::Envelope,
    ) -> BoxFuture<'a, Result<(), TransportError>>;

    /// Makes sure an authenticated connection to `to` exists.
    fn connect<'a>(&'a self, to: &'a NodeInfo) -> BoxFuture<'a, Result<(), TransportError>>;

    /// The address peers reach us at.
    fn local_addr(&self) -> SocketAddr;

    /// Peers with an open connection now.
    fn connected_peers(&self) -> Vec<NodeInfo>;

    /// Closes every connection and stops accepting; releases every waiting caller with an error.
    fn shutdown(&self) -> BoxFuture<'_, ()>;

    /// Connection counts and limit counters (a transport without limits reports zeros).
    fn stats(&self) -> TransportStats {
        TransportStats::default()
    }

    /// Closes the open connection to `peer`, if any, with `reason`; returns whether there was one. (The
    /// simulator has none to close.)
    fn disconnect(&self, _peer: &NodeId, _reason: CloseReason) -> bool {
        false
    }
}
