//! The [`Swarm`]: the public handle that ties a transport, the protocol registry and the request table
//! together (the seed's `Service`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::config::{Config, semver_major};
use crate::crypto::handshake::HandshakeConfig;
use crate::dht::lookup::{LookupReport, LookupResult, LookupTarget};
use crate::dht::table::{RoutingTable, Seen};
use crate::error::Error;
use crate::identity::{DhtId, Keypair, NodeId};
use crate::peer::NodeInfo;
use crate::transport::tcp::TcpTransport;
use crate::transport::tcp::connection::unix_ms;
use crate::transport::{CloseReason, InboundHandler, PeerEvent, Transport, TransportStats};
use crate::wire::pb;

mod bans;
pub mod counters;
mod dht;
mod dispatch;
mod gossip;
pub mod message;
pub mod protocols;
pub mod requests;

pub use dht::{
    BootstrapReport, DhtStats, FINDNODE_PROTOCOL, FindNodeError, LabelCounts, MAX_VERIFYING,
    PING_PROTOCOL, parse_find_node_response,
};
pub use gossip::{BroadcastReport, GossipStats};
pub use message::Message;
use protocols::ProtocolRegistry;
pub use protocols::{ProtocolOptions, Validator};
use requests::RequestTable;

/// Why an inbound message was dropped without delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// No protocol of that name is registered here.
    UnknownProtocol,
    /// The author's client version has another major.
    IncompatibleVersion,
    /// The authoring timestamp is outside `max_clock_skew`.
    ClockSkew,
    /// A response nobody waits for (late, or for a request we never sent to that peer).
    UnmatchedResponse,
    /// The protocol's receiver was dropped.
    ProtocolClosed,
    /// The protocol's validator rejected the message.
    Rejected,
    /// A gossip message failed a check (decoding, timestamp window, signature).
    InvalidGossip(crate::gossip::GossipError),
    /// The payload exceeds the protocol's maximum (`swarm.max_payload` or its [`ProtocolOptions`]).
    PayloadTooLarge,
}

impl DropReason {
    /// Number of distinct labels.
    pub const COUNT: usize = 8;

    /// One reason per label, in index order.
    pub const EACH: [DropReason; Self::COUNT] = [
        DropReason::UnknownProtocol,
        DropReason::IncompatibleVersion,
        DropReason::ClockSkew,
        DropReason::UnmatchedResponse,
        DropReason::ProtocolClosed,
        DropReason::Rejected,
        DropReason::InvalidGossip(crate::gossip::GossipError::Malformed),
        DropReason::PayloadTooLarge,
    ];

    /// The metric label (the variant name in snake case; every gossip failure is `invalid_gossip`).
    pub fn label(self) -> &'static str {
        match self {
            DropReason::UnknownProtocol => "unknown_protocol",
            DropReason::IncompatibleVersion => "incompatible_version",
            DropReason::ClockSkew => "clock_skew",
            DropReason::UnmatchedResponse => "unmatched_response",
            DropReason::ProtocolClosed => "protocol_closed",
            DropReason::Rejected => "rejected",
            DropReason::InvalidGossip(_) => "invalid_gossip",
            DropReason::PayloadTooLarge => "payload_too_large",
        }
    }

    /// A distinct index below [`DropReason::COUNT`] per label.
    fn index(self) -> usize {
        match self {
            DropReason::UnknownProtocol => 0,
            DropReason::IncompatibleVersion => 1,
            DropReason::ClockSkew => 2,
            DropReason::UnmatchedResponse => 3,
            DropReason::ProtocolClosed => 4,
            DropReason::Rejected => 5,
            DropReason::InvalidGossip(_) => 6,
            DropReason::PayloadTooLarge => 7,
        }
    }
}

/// Something that happened in the swarm; read with [`Swarm::events`].
#[derive(Clone, Debug)]
pub enum SwarmEvent {
    /// An authenticated connection to a peer is up.
    PeerConnected(NodeInfo),
    /// A peer connection closed.
    PeerDisconnected {
        /// The peer.
        peer: NodeId,
        /// Why.
        reason: CloseReason,
    },
    /// A connection attempt failed before authentication (dial or inbound).
    HandshakeFailed {
        /// Remote socket address.
        addr: SocketAddr,
        /// Why.
        reason: CloseReason,
    },
    /// An inbound message was dropped.
    MessageDropped {
        /// The sending peer.
        from: NodeId,
        /// Its protocol.
        protocol: String,
        /// Why.
        reason: DropReason,
    },
    /// A node id or an IP was banned (for an offence, or through [`Swarm::ban`]).
    Banned(crate::ban::Ban),
}

/// Running counters of one swarm.
#[derive(Default, Debug)]
pub struct SwarmStats {
    /// Envelopes received from the transport.
    pub messages_in: AtomicU64,
    /// Envelopes handed to the transport.
    pub messages_out: AtomicU64,
    /// Messages delivered to protocol channels.
    pub delivered: AtomicU64,
    /// Responses matched to requests.
    pub responses_matched: AtomicU64,
    /// Messages dropped, for any [`DropReason`].
    pub dropped: AtomicU64,
    /// Messages dropped, by [`DropReason`] (counted where they are dropped, never lost to event lag).
    pub drops: counters::DropCounters,
    /// Outbound messages refused because their payload exceeded the protocol's maximum.
    pub payload_refused: AtomicU64,
    /// FindNode requests or responses rejected as malformed or oversized.
    pub findnode_bad: AtomicU64,
    /// Lookups completed.
    pub lookups: AtomicU64,
    /// Gossip counters.
    pub gossip: GossipStats,
    /// Messages and payload bytes per protocol.
    pub traffic: counters::TrafficStats,
    /// Hops and time of completed lookups.
    pub lookup_histograms: counters::LookupHistograms,
    /// Routing-table and lookup defences.
    pub dht: DhtStats,
}

impl SwarmStats {
    /// Counts one dropped inbound message.
    pub(crate) fn record_drop(&self, reason: DropReason) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.drops.record(reason);
    }
}

/// Where [`Swarm::send_message`] delivered a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The node and the address the message went to.
    pub to: NodeInfo,
    /// The lookup that found the address, if the routing table did not know it.
    pub lookup: Option<LookupReport>,
}

/// A running node: the handle protocols use to talk to peers. Cheap to clone.
#[derive(Clone)]
pub struct Swarm {
    /// Shared state.
    inner: Arc<SwarmInner>,
}

/// State shared by the handle, the transport's inbound path and delivered messages.
pub(crate) struct SwarmInner {
    /// Our identity.
    keypair: Keypair,
    /// Our id and reachable address.
    local: OnceLock<NodeInfo>,
    /// Settings.
    config: Config,
    /// The network, set once at start.
    transport: OnceLock<Arc<dyn Transport>>,
    /// Registered protocols.
    protocols: ProtocolRegistry,
    /// Outstanding requests.
    requests: RequestTable,
    /// Kademlia routing table; the lock is never held across an await.
    table: std::sync::Mutex<RoutingTable>,
    /// DHT state beside the table (inbound-only nodes being verified).
    dht: dht::DhtState,
    /// The node's random choices; seeded for reproducible simulations. Never held across an await.
    rng: std::sync::Mutex<StdRng>,
    /// Event fan-out (bounded; slow readers lag).
    events: broadcast::Sender<SwarmEvent>,
    /// Counters.
    stats: SwarmStats,
    /// Cancelled by shutdown.
    cancel: CancellationToken,
    /// Background tasks of the swarm, joined on shutdown.
    tasks: TaskTracker,
    /// Gossip: the seen cache, the relay queue and peer penalties.
    gossip: gossip::GossipState,
    /// Bans, and the IPs of connected peers that offences are counted against.
    bans: bans::BanState,
    /// A weak pointer to ourselves, handed to delivered messages for `respond`.
    this: OnceLock<Weak<SwarmInner>>,
}

impl Swarm {
    /// Starts a node on real TCP with a fresh random identity.
    pub async fn start(config: Config) -> Result<Swarm, Error> {
        Self::start_with_key(config, Keypair::random()).await
    }

    /// Starts a node on real TCP with the given identity.
    pub async fn start_with_key(config: Config, keypair: Keypair) -> Result<Swarm, Error> {
        let listen = config.listen;
        let net = config.net.clone();
        let handshake = HandshakeConfig {
            network_id: config.network_id,
            client_version: config.client_version.clone(),
            max_clock_skew: config.net.max_clock_skew,
            listen_port: listen.port(),
        };
        Self::start_with_transport(config, keypair, None, move |keypair, handler| {
            Box::pin(async move {
                let t = TcpTransport::bind(listen, keypair, net, handshake, handler)
                    .await
                    .map_err(|e| Error::Bind {
                        addr: listen,
                        reason: e.to_string(),
                    })?;
                Ok(Arc::new(t) as Arc<dyn Transport>)
            })
        })
        .await
    }

    /// Starts a node on a transport built by `make_transport` (the simulator uses this).
    ///
    /// `rng_seed` seeds the node's own random choices (random lookup targets; later gossip peers), so a
    /// simulated run is reproducible; `None` seeds from the OS.
    pub async fn start_with_transport<F>(
        config: Config,
        keypair: Keypair,
        rng_seed: Option<u64>,
        make_transport: F,
    ) -> Result<Swarm, Error>
    where
        F: FnOnce(
            Keypair,
            Weak<dyn InboundHandler>,
        ) -> BoxFuture<'static, Result<Arc<dyn Transport>, Error>>,
    {
        config.validate()?;
        let (events, _) = broadcast::channel(config.swarm.event_queue);
        let table_config = dht::table_config(&config);
        let gossip = gossip::GossipState::new(&config.gossip);
        let bans = bans::BanState::new(&config);
        let inner = Arc::new(SwarmInner {
            keypair: keypair.clone(),
            local: OnceLock::new(),
            config,
            transport: OnceLock::new(),
            protocols: ProtocolRegistry::default(),
            requests: RequestTable::default(),
            table: std::sync::Mutex::new(RoutingTable::new(
                keypair.node_id().dht_id(),
                table_config,
            )),
            dht: dht::DhtState::default(),
            rng: std::sync::Mutex::new(match rng_seed {
                Some(seed) => StdRng::seed_from_u64(seed),
                None => StdRng::from_rng(&mut rand::rng()),
            }),
            events,
            stats: SwarmStats::default(),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            gossip,
            bans,
            this: OnceLock::new(),
        });
        let _ = inner.this.set(Arc::downgrade(&inner));
        let handler: Weak<dyn InboundHandler> = Arc::downgrade(&inner) as Weak<dyn InboundHandler>;
        let transport = make_transport(keypair.clone(), handler).await?;
        let local = NodeInfo::new(keypair.node_id(), transport.local_addr());
        let _ = inner.local.set(local);
        let _ = inner.transport.set(transport);
        inner.tasks.spawn(SwarmInner::refresh_loop(
            Arc::downgrade(&inner),
            inner.cancel.clone(),
        ));
        tracing::info!(node = %local, "swarm started");
        Ok(Swarm { inner })
    }

    /// Our id and the address peers reach us at.
    pub fn local_node(&self) -> NodeInfo {
        self.inner.local()
    }

    /// The settings this node runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Counters of this node.
    pub fn stats(&self) -> &SwarmStats {
        &self.inner.stats
    }

    /// Subscribes to swarm events from now on.
    pub fn events(&self) -> broadcast::Receiver<SwarmEvent> {
        self.inner.events.subscribe()
    }

    /// Connection counts and limit counters of the transport (pending handshakes and their peak, slots
    /// taken, how often each limit bit); zeros on the simulator.
    pub fn transport_stats(&self) -> TransportStats {
        self.inner
            .transport()
            .map(|t| t.stats())
            .unwrap_or_default()
    }

    /// Peers with an open connection.
    pub fn connected_peers(&self) -> Vec<NodeInfo> {
        self.inner
            .transport()
            .map(|t| t.connected_peers())
            .unwrap_or_default()
    }

    /// Opens an authenticated connection to the node a descriptor (`ip:port/base58`) names.
    pub async fn connect(&self, descriptor: &str) -> Result<NodeInfo, Error> {
        let node: NodeInfo = descriptor.parse()?;
        self.connect_node(&node).await?;
        Ok(node)
    }

    /// Opens an authenticated connection to `node`.
    pub async fn connect_node(&self, node: &NodeInfo) -> Result<(), Error> {
        let transport = self.inner.transport()?;
        self.inner.guard(transport.connect(node)).await??;
        Ok(())
    }

    /// Registers an application protocol; its validated messages arrive on the returned bounded channel.
    ///
    /// Names are 1 to 128 bytes; names starting with `/kadmesh/` are reserved; a name can be registered
    /// again only after the previous receiver was dropped.
    pub fn register_protocol(&self, name: &str) -> Result<mpsc::Receiver<Message>, Error> {
        self.register_protocol_with(name, ProtocolOptions::default())
    }

    /// Registers an application protocol like [`Swarm::register_protocol`], with its own maximum payload
    /// and channel capacity (each `None` takes `swarm.max_payload` / `swarm.protocol_queue`). A zero
    /// value is an [`Error::Config`] naming `protocol.max_payload` or `protocol.queue`.
    pub fn register_protocol_with(
        &self,
        name: &str,
        options: ProtocolOptions,
    ) -> Result<mpsc::Receiver<Message>, Error> {
        let swarm = &self.inner.config.swarm;
        let queue = options.queue.unwrap_or(swarm.protocol_queue);
        if queue == 0 || options.max_payload == Some(0) {
            return Err(crate::config::ConfigError {
                key: if queue == 0 {
                    "protocol.queue"
                } else {
                    "protocol.max_payload"
                },
                reason: "must be greater than 0".into(),
            }
            .into());
        }
        let rx = self
            .inner
            .protocols
            .register_full(name, queue, None, options.max_payload)?;
        self.inner.stats.traffic.track(name);
        Ok(rx)
    }

    /// Sends a one-way message to the node `to`: its address comes from the routing table, else a
    /// DHT lookup ([`Error::NodeNotFound`] if that fails). Returns where it went and the lookup's report.
    pub async fn send_message(
        &self,
        to: &NodeId,
        protocol: &str,
        payload: impl Into<Bytes>,
    ) -> Result<Delivery, Error> {
        protocols::check_name(protocol)?;
        let (node, lookup) = self.inner.guard(self.inner.find_address(to)).await??;
        self.send_message_to(&node, protocol, payload).await?;
        Ok(Delivery { to: node, lookup })
    }

    /// Sends a one-way message to `node` at its given address.
    pub async fn send_message_to(
        &self,
        node: &NodeInfo,
        protocol: &str,
        payload: impl Into<Bytes>,
    ) -> Result<(), Error> {
        protocols::check_name(protocol)?;
        self.inner
            .send_envelope(node, protocol, payload.into(), None, false)
            .await
    }

    /// Sends a request to the node `to` (found like [`Swarm::send_message`] does) and waits up to
    /// `timeout` for its response; the lookup, if any, is not counted in `timeout`.
    pub async fn request(
        &self,
        to: &NodeId,
        protocol: &str,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Message, Error> {
        protocols::check_name(protocol)?;
        let (node, _) = self.inner.guard(self.inner.find_address(to)).await??;
        self.request_to(&node, protocol, payload, timeout).await
    }

    /// Finds the address of `id` with an iterative FindNode lookup (even if the table knows it),
    /// returning the node and the lookup's report (rounds, FindNode RPCs, failures, time).
    pub async fn lookup(&self, id: &NodeId) -> Result<(NodeInfo, LookupReport), Error> {
        let outcome = self.inner.run_lookup(LookupTarget::Node(*id), None).await?;
        match outcome.result {
            LookupResult::Found(node) => Ok((node, outcome.report)),
            _ => Err(Error::NodeNotFound(*id)),
        }
    }

    /// The `k` live nodes closest to `target` found by an iterative lookup, closest first.
    pub async fn closest_nodes(
        &self,
        target: &DhtId,
    ) -> Result<(Vec<NodeInfo>, LookupReport), Error> {
        let outcome = self
            .inner
            .run_lookup(LookupTarget::Closest(*target), None)
            .await?;
        match outcome.result {
            LookupResult::Closest(nodes) => Ok((nodes, outcome.report)),
            _ => Ok((Vec::new(), outcome.report)),
        }
    }

    /// Joins the network from the configured boot nodes (`bootstrap.nodes` and `bootstrap.files`): looks
    /// up our own id, then random ids in still-empty buckets, until no new nodes appear or the table holds
    /// `dht.min_routing_table` nodes.
    pub async fn bootstrap(&self) -> Result<BootstrapReport, Error> {
        self.inner.guard(self.inner.bootstrap(None)).await?
    }

    /// Runs one round of the periodic table refresh now: looks up our own id, then random ids in
    /// empty or stale buckets (bootstraps again if the table is empty). Returns the lookups run.
    pub async fn refresh(&self) -> Result<u32, Error> {
        let stale_after = self.inner.config.dht.refresh_interval;
        self.inner
            .guard(self.inner.refresh_once(stale_after))
            .await?
    }

    /// Like [`Swarm::bootstrap`], from the given boot nodes.
    pub async fn bootstrap_from(&self, boot: Vec<NodeInfo>) -> Result<BootstrapReport, Error> {
        self.inner.guard(self.inner.bootstrap(Some(boot))).await?
    }

    /// Pings `node`; when it answers it enters the routing table (the seed's "update with node").
    pub async fn add_node(&self, node: &NodeInfo) -> Result<(), Error> {
        let timeout = self.inner.config.dht.ping_timeout;
        self.inner
            .request_raw(node, PING_PROTOCOL, Bytes::new(), timeout)
            .await
            .map(|_| ())
    }

    /// Nodes in the routing table.
    pub fn table_len(&self) -> usize {
        self.inner.table().len()
    }

    /// True if the routing table holds `id`.
    pub fn table_contains(&self, id: &NodeId) -> bool {
        self.inner.table().contains(id)
    }

    /// A copy of the routing table's nodes, bucket by bucket (index, nodes most recently seen first).
    pub fn table_snapshot(&self) -> Vec<(usize, Vec<NodeInfo>)> {
        self.inner
            .table()
            .buckets()
            .filter(|b| !b.entries().is_empty())
            .map(|b| (b.index(), b.entries().iter().map(|r| *r.node()).collect()))
            .collect()
    }

    /// Like [`Swarm::table_snapshot`], with how long ago each node was last seen.
    pub fn table_ages(&self) -> Vec<(usize, Vec<(NodeInfo, Duration)>)> {
        let now = tokio::time::Instant::now();
        self.inner
            .table()
            .buckets()
            .filter(|b| !b.entries().is_empty())
            .map(|b| {
                let entries = b.entries().iter();
                let aged =
                    entries.map(|r| (*r.node(), now.saturating_duration_since(r.last_seen())));
                (b.index(), aged.collect())
            })
            .collect()
    }

    /// Sends a request to `node` at its given address and waits up to `timeout` for the response, which
    /// only that node can give (responses are matched by peer and request id).
    pub async fn request_to(
        &self,
        node: &NodeInfo,
        protocol: &str,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Message, Error> {
        protocols::check_name(protocol)?;
        self.inner
            .request_raw(node, protocol, payload.into(), timeout)
            .await
    }

    /// Stops the node: closes every connection, releases every pending call with [`Error::Shutdown`],
    /// ends every protocol channel, and joins every task.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.requests.clear();
        self.inner.protocols.clear();
        if let Some(t) = self.inner.transport.get() {
            t.shutdown().await;
        }
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

impl SwarmInner {
    fn local(&self) -> NodeInfo {
        // Set before the handle is returned; the fallback is only for the transport's early callbacks.
        self.local
            .get()
            .copied()
            .unwrap_or_else(|| NodeInfo::new(self.keypair.node_id(), self.config.listen))
    }

    pub(crate) fn transport(&self) -> Result<&Arc<dyn Transport>, Error> {
        if self.cancel.is_cancelled() {
            return Err(Error::Shutdown);
        }
        self.transport.get().ok_or(Error::Shutdown)
    }

    /// Runs `fut` unless shutdown comes first.
    async fn guard<T>(&self, fut: impl Future<Output = T>) -> Result<T, Error> {
        tokio::select! {
            r = fut => Ok(r),
            _ = self.cancel.cancelled() => Err(Error::Shutdown),
        }
    }

    fn emit(&self, event: SwarmEvent) {
        // No subscriber is fine.
        let _ = self.events.send(event);
    }

    /// Wraps `payload` in an envelope with our metadata and hands it to the transport.
    pub(crate) async fn send_envelope(
        &self,
        to: &NodeInfo,
        protocol: &str,
        payload: Bytes,
        req_id: Option<Uuid>,
        response: bool,
    ) -> Result<(), Error> {
        let envelope = pb::Envelope {
            metadata: Some(pb::Metadata {
                protocol: protocol.to_owned(),
                req_id: req_id.map(|id| id.as_bytes().to_vec()).unwrap_or_default(),
                client_version: self.config.client_version.clone(),
                timestamp: unix_ms(),
                response,
                ..Default::default()
            }),
            payload: payload.to_vec(),
        };
        let payload_len = payload.len();
        self.check_payload(protocol, payload_len)?;
        let transport = self.transport()?;
        self.guard(transport.send(to, envelope)).await??;
        self.stats.messages_out.fetch_add(1, Ordering::Relaxed);
        self.stats.traffic.record_out(protocol, payload_len);
        Ok(())
    }

    /// Sends a request and awaits the matching response from that peer.
    pub(crate) async fn request_raw(
        &self,
        node: &NodeInfo,
        protocol: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Message, Error> {
        let (req_id, mut pending) = self.requests.insert(node.id);
        let exchange = async {
            self.send_envelope(node, protocol, payload, Some(req_id), false)
                .await?;
            (&mut pending.rx).await.map_err(|_| Error::Shutdown)
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(response)) => {
                // It answered us: verified in the table. FindNode answers are recorded by the lookup
                // once their content passed its checks.
                if protocol != FINDNODE_PROTOCOL {
                    self.saw_node(response.sender(), Seen::Answered);
                }
                Ok(response)
            }
            Ok(result) => result,
            Err(_) if self.cancel.is_cancelled() => Err(Error::Shutdown),
            Err(_) => Err(Error::Timeout),
        }
    }

    /// The largest payload `protocol` accepts and sends.
    pub(crate) fn payload_limit(&self, protocol: &str) -> usize {
        self.protocols
            .max_payload(protocol)
            .unwrap_or(self.config.swarm.max_payload)
    }

    /// Refuses (and counts) an outbound payload over `protocol`'s maximum.
    pub(crate) fn check_payload(&self, protocol: &str, len: usize) -> Result<(), Error> {
        let max = self.payload_limit(protocol);
        if len > max {
            self.stats.payload_refused.fetch_add(1, Ordering::Relaxed);
            return Err(Error::PayloadTooLarge {
                protocol: protocol.to_owned(),
                len,
                max,
            });
        }
        Ok(())
    }

    fn is_compatible(&self, client_version: &str) -> bool {
        // Peers almost always run our exact version: skip parsing then.
        client_version == self.config.client_version
            || semver_major(client_version)
                .is_some_and(|m| Some(m) == semver_major(&self.config.client_version))
    }

    fn within_skew(&self, timestamp_ms: i64) -> bool {
        let skew = i64::try_from(self.config.net.max_clock_skew.as_millis()).unwrap_or(i64::MAX);
        unix_ms().abs_diff(timestamp_ms) <= skew.unsigned_abs()
    }
}

impl InboundHandler for SwarmInner {
    fn handle_envelope(&self, from: NodeInfo, envelope: pb::Envelope) -> BoxFuture<'_, ()> {
        Box::pin(self.dispatch(from, envelope))
    }

    fn peer_event(&self, event: PeerEvent) {
        let swarm_event = match event.clone() {
            PeerEvent::Connected { peer, .. } => SwarmEvent::PeerConnected(peer),
            PeerEvent::Disconnected { peer, reason } => {
                SwarmEvent::PeerDisconnected { peer, reason }
            }
            PeerEvent::HandshakeFailed { addr, reason } => {
                SwarmEvent::HandshakeFailed { addr, reason }
            }
        };
        self.emit(swarm_event);
        self.bans_on_peer_event(&event);
    }

    fn banned(&self, id: Option<&NodeId>, ip: std::net::IpAddr) -> Option<crate::ban::BanTarget> {
        self.bans.registry.check(id, ip)
    }
}
