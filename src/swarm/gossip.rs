//! The Swarm's gossip side: [`Swarm::broadcast`], the receive path (decode, timestamp window, dedupe,
//! signature, validator, delivery, relay) and relay sending. The pure parts (signing, the seen cache,
//! the relay choice) are in [`crate::gossip`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures::future::join_all;
use prost::Message as _;
use tokio::sync::{Semaphore, mpsc};

use super::protocols::{self, Validator};
use super::{DropReason, Message, Swarm, SwarmEvent, SwarmInner};
use crate::config::GossipConfig;
use crate::crypto::session::sealed_len;
use crate::error::Error;
use crate::gossip::{
    COVER_ALL, Candidate, GOSSIP_PROTOCOL, GossipError, MessageId, NONCE_LEN, RelayPlan, SeenCache,
    SignedGossip, check_timestamp, plan_relay,
};
use crate::identity::NodeId;
use crate::peer::NodeInfo;
use crate::transport::TransportError;
use crate::transport::tcp::connection::unix_ms;
use crate::wire::{self, pb};

/// Most peers whose penalties are tracked one by one; beyond that they are only counted in total.
const MAX_PENALISED_PEERS: usize = 4096;

/// Yields the next peer to try for one send.
type NextPeer<'a> = Box<dyn FnMut() -> Option<NodeInfo> + Send + 'a>;

/// Peers a plan's sends reached and failed.
#[derive(Default)]
struct Outcome {
    /// Accepted the message.
    sent: Vec<NodeInfo>,
    /// Failed (each replaced by an alternate where one was left).
    failed: Vec<NodeInfo>,
}

/// What [`Swarm::broadcast`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BroadcastReport {
    /// The message id.
    pub id: MessageId,
    /// Peers the message was handed to (cover peers first, then random peers).
    pub sent_to: Vec<NodeInfo>,
    /// Peers a send to failed (each replaced by an alternate where one was left).
    pub failed: Vec<NodeInfo>,
}

/// Gossip counters of one swarm (a part of [`SwarmStats`](super::SwarmStats)).
#[derive(Default, Debug)]
pub struct GossipStats {
    /// Messages this node authored.
    pub broadcasts: AtomicU64,
    /// Gossip envelopes received.
    pub received: AtomicU64,
    /// Gossip envelopes fully handled (delivered or dropped, relay queued or not needed).
    pub handled: AtomicU64,
    /// Messages delivered to a protocol channel (each at most once).
    pub delivered: AtomicU64,
    /// Copies of messages already seen (not delivered again).
    pub duplicates: AtomicU64,
    /// Gossip envelopes sent (authored and relayed).
    pub sent: AtomicU64,
    /// Gossip envelopes relayed (sent for a message authored elsewhere).
    pub relayed: AtomicU64,
    /// Messages not relayed because the relay queue was full.
    pub relay_dropped: AtomicU64,
    /// Rejected: does not decode or has a malformed field, protocol or author.
    pub rejected_malformed: AtomicU64,
    /// Rejected: the signature is not the author's.
    pub rejected_signature: AtomicU64,
    /// Rejected: older than the seen-cache TTL.
    pub rejected_expired: AtomicU64,
    /// Rejected: timestamp too far in the future.
    pub rejected_future: AtomicU64,
    /// Rejected by the protocol's validator.
    pub rejected_validator: AtomicU64,
    /// Valid messages for a protocol not registered here (neither delivered nor relayed).
    pub unknown_protocol: AtomicU64,
    /// Penalties given to sending peers: one per invalid gossip message, and one per direct message a
    /// validator rejected (see [`Swarm::penalties`]).
    pub penalties: AtomicU64,
}

/// Gossip state of one swarm.
pub(crate) struct GossipState {
    /// Ids already seen; the lock is never held across an await.
    seen: Mutex<SeenCache>,
    /// One permit per message being relayed.
    relay_permits: Arc<Semaphore>,
    /// Penalties per sending peer (bounded by [`MAX_PENALISED_PEERS`]).
    penalties: Mutex<HashMap<NodeId, u64>>,
}

impl GossipState {
    pub(crate) fn new(config: &GossipConfig) -> Self {
        Self {
            seen: Mutex::new(SeenCache::new(config.seen_capacity)),
            relay_permits: Arc::new(Semaphore::new(config.relay_queue)),
            penalties: Mutex::new(HashMap::new()),
        }
    }

    fn seen(&self) -> MutexGuard<'_, SeenCache> {
        // The cache's invariants hold between calls; a panic elsewhere does not corrupt it.
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn penalties(&self) -> MutexGuard<'_, HashMap<NodeId, u64>> {
        self.penalties.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Swarm {
    /// Registers an application protocol like [`Swarm::register_protocol`], with a `validator` run on
    /// every inbound message for it (gossip or direct, not responses) before delivery.
    ///
    /// A message the validator rejects is neither delivered nor, for gossip, relayed, and the peer that
    /// sent it is penalised ([`Swarm::penalties`]). The validator runs synchronously on the receive path.
    pub fn register_protocol_with_validator<F>(
        &self,
        name: &str,
        validator: F,
    ) -> Result<mpsc::Receiver<Message>, Error>
    where
        F: Fn(&Message) -> bool + Send + Sync + 'static,
    {
        let validator: Validator = Arc::new(validator);
        self.inner.protocols.register_with(
            name,
            self.inner.config.swarm.protocol_queue,
            Some(validator),
        )
    }

    /// Broadcasts `payload` to every node of the network on `protocol`, by gossip.
    ///
    /// The message is signed with this node's key; each node that registered `protocol` receives it
    /// once on its channel, with [`Message::author`] = this node and [`Message::is_gossip`] true. The
    /// author does **not** receive its own broadcast on its own channel (copies relayed back to it are
    /// counted as duplicates). Returns the peers this node handed the message to; an empty
    /// [`BroadcastReport::sent_to`] means no peer was reachable (e.g. before bootstrap).
    ///
    /// Fails if `protocol` is not a valid application protocol name, if the message does not fit in a
    /// frame ([`TransportError::TooLarge`]), or on shutdown.
    pub async fn broadcast(
        &self,
        protocol: &str,
        payload: impl Into<Bytes>,
    ) -> Result<BroadcastReport, Error> {
        protocols::check_name(protocol)?;
        let inner = &self.inner;
        inner.transport()?;
        let now = unix_ms();
        let nonce: [u8; NONCE_LEN] = {
            let mut nonce = [0u8; NONCE_LEN];
            rand::Rng::fill_bytes(&mut *inner.rng(), &mut nonce);
            nonce
        };
        let message = SignedGossip::sign(&inner.keypair, protocol, payload.into(), now, nonce)
            .map_err(|_| Error::InvalidProtocolName(protocol.to_owned()))?;
        inner.check_fits(&message)?;
        inner.check_payload(protocol, message.payload().len())?;
        let id = message.id();
        let cover = {
            let mut seen = inner.gossip.seen();
            let expires_at = now.saturating_add(ttl_ms(&inner.config.gossip));
            seen.insert(id, expires_at, now);
            seen.claim_cover(&id, 0);
            seen.open(&id)
        };
        inner
            .stats
            .gossip
            .broadcasts
            .fetch_add(1, Ordering::Relaxed);
        let random = inner.config.gossip.fanout.saturating_sub(1);
        let plan = inner.relay_plan(cover, random, &[]);
        let (sent_to, failed) = inner.guard(inner.send_plan(plan, &message)).await?;
        tracing::debug!(id = %id.short(), protocol, peers = sent_to.len(), "broadcast");
        Ok(BroadcastReport {
            id,
            sent_to,
            failed,
        })
    }

    /// Penalties given to `peer` for invalid messages it sent (bad or forged signatures, tampered or
    /// expired messages, messages a validator rejected). Counted for up to 4,096 peers.
    pub fn penalties(&self, peer: &NodeId) -> u64 {
        self.inner
            .gossip
            .penalties()
            .get(peer)
            .copied()
            .unwrap_or(0)
    }

    /// Messages being relayed now (each holds a place in the `gossip.relay_queue`).
    pub fn gossip_relays_in_flight(&self) -> usize {
        self.inner
            .config
            .gossip
            .relay_queue
            .saturating_sub(self.inner.gossip.relay_permits.available_permits())
    }

    /// Sends `envelope` to `node` as it is, without filling in any metadata. For tests that play a
    /// misbehaving peer (e.g. a relay that alters a gossip message); not part of the stable API.
    #[doc(hidden)]
    pub async fn send_raw_envelope(
        &self,
        node: &NodeInfo,
        envelope: pb::Envelope,
    ) -> Result<(), Error> {
        let transport = self.inner.transport()?;
        self.inner.guard(transport.send(node, envelope)).await??;
        self.inner
            .stats
            .messages_out
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The gossip envelope around `message` as this node would send it (hop timestamp now).
pub(crate) fn gossip_envelope(client_version: &str, body: Vec<u8>) -> pb::Envelope {
    pb::Envelope {
        metadata: Some(pb::Metadata {
            protocol: GOSSIP_PROTOCOL.to_owned(),
            client_version: client_version.to_owned(),
            timestamp: unix_ms(),
            gossip: true,
            ..Default::default()
        }),
        payload: body,
    }
}

fn ttl_ms(config: &GossipConfig) -> i64 {
    i64::try_from(config.seen_ttl.as_millis()).unwrap_or(i64::MAX)
}

impl SwarmInner {
    /// Handles one gossip envelope from `from` (already checked for version and hop clock skew).
    pub(super) async fn on_gossip(&self, from: NodeInfo, meta: pb::Metadata, body: Vec<u8>) {
        self.stats.gossip.received.fetch_add(1, Ordering::Relaxed);
        self.handle_gossip(from, meta, body).await;
        self.stats.gossip.handled.fetch_add(1, Ordering::Relaxed);
    }

    async fn handle_gossip(&self, from: NodeInfo, meta: pb::Metadata, body: Vec<u8>) {
        let stats = &self.stats.gossip;
        if meta.protocol != GOSSIP_PROTOCOL
            || !meta.gossip
            || meta.response
            || !meta.req_id.is_empty()
        {
            return self.reject_gossip(&from, GOSSIP_PROTOCOL, GossipError::Malformed);
        }
        let Ok(wire_message) = wire::decode::<pb::GossipMessage>("GossipMessage", &body) else {
            return self.reject_gossip(&from, GOSSIP_PROTOCOL, GossipError::Malformed);
        };
        let (message, cover) = match SignedGossip::from_proto(wire_message) {
            Ok(decoded) => decoded,
            Err(e) => return self.reject_gossip(&from, GOSSIP_PROTOCOL, e),
        };
        let now = unix_ms();
        let config = &self.config;
        let expires_at = match check_timestamp(
            message.timestamp_ms(),
            now,
            config.gossip.seen_ttl,
            config.net.max_clock_skew,
        ) {
            Ok(at) => at,
            Err(e) => return self.reject_gossip(&from, message.protocol(), e),
        };
        let id = message.id();
        // The cover duty this copy hands us (see crate::gossip::relay), from the authenticated ids.
        let height = cover.then(|| {
            self.keypair
                .node_id()
                .dht_id()
                .common_prefix_len(&from.dht_id())
                .saturating_add(1)
        });
        // Dedupe before the signature check: a copy that adds no duty costs one hash.
        {
            let seen = self.gossip.seen();
            if seen.contains(&id) && !height.is_some_and(|h| seen.needs_cover(&id, h)) {
                stats.duplicates.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        if let Err(e) = message.verify() {
            return self.reject_gossip(&from, message.protocol(), e);
        }
        let exclude = [from.id, *message.author()];
        let (first, late_cover) = {
            let mut seen = self.gossip.seen();
            let first = seen.insert(id, expires_at, now);
            (first, height.and_then(|h| seen.claim_cover(&id, h)))
        };
        if !first {
            stats.duplicates.fetch_add(1, Ordering::Relaxed);
            if let Some(range) = late_cover {
                self.spawn_relay(message, Some(range), 0, exclude);
            }
            return;
        }
        let Some((channel, validator)) = self.protocols.route(message.protocol()) else {
            self.gossip.seen().close(&id);
            stats.unknown_protocol.fetch_add(1, Ordering::Relaxed);
            return self.drop_gossip(&from, message.protocol(), DropReason::UnknownProtocol);
        };
        if message.payload().len() > self.payload_limit(message.protocol()) {
            self.gossip.seen().close(&id);
            return self.drop_gossip(&from, message.protocol(), DropReason::PayloadTooLarge);
        }
        let delivered = Message {
            sender: from,
            protocol: message.protocol().to_owned(),
            payload: message.payload().clone(),
            req_id: None,
            timestamp_ms: message.timestamp_ms(),
            client_version: meta.client_version,
            author: *message.author(),
            gossip: true,
            gossip_id: Some(id),
            swarm: self.weak_self(),
        };
        if let Some(validator) = validator
            && !validator(&delivered)
        {
            self.gossip.seen().close(&id);
            stats.rejected_validator.fetch_add(1, Ordering::Relaxed);
            self.penalise(&from.id);
            return self.drop_gossip(&from, message.protocol(), DropReason::Rejected);
        }
        if channel.send(delivered).await.is_err() {
            self.gossip.seen().close(&id);
            return self.drop_gossip(&from, message.protocol(), DropReason::ProtocolClosed);
        }
        stats.delivered.fetch_add(1, Ordering::Relaxed);
        self.stats.delivered.fetch_add(1, Ordering::Relaxed);
        let cover = self.gossip.seen().open(&id);
        let random = self.config.gossip.fanout.saturating_sub(1);
        self.spawn_relay(message, cover, random, exclude);
    }

    /// Counts an invalid gossip message from `from`, penalises `from` and reports the drop.
    fn reject_gossip(&self, from: &NodeInfo, protocol: &str, error: GossipError) {
        let stats = &self.stats.gossip;
        let counter = match error {
            GossipError::Malformed | GossipError::InvalidProtocol | GossipError::InvalidAuthor => {
                &stats.rejected_malformed
            }
            GossipError::BadSignature => &stats.rejected_signature,
            GossipError::Expired => &stats.rejected_expired,
            GossipError::FromFuture => &stats.rejected_future,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.penalise(&from.id);
        self.invalid_gossip_offence(from, &error);
        self.drop_gossip(from, protocol, DropReason::InvalidGossip(error));
    }

    fn drop_gossip(&self, from: &NodeInfo, protocol: &str, reason: DropReason) {
        self.stats.record_drop(reason);
        tracing::debug!(peer = %from.id.short(), protocol, ?reason, "gossip dropped");
        self.emit(SwarmEvent::MessageDropped {
            from: from.id,
            protocol: protocol.to_owned(),
            reason,
        });
    }

    /// Records one penalty against `peer` (invalid gossip is also an offence: see `swarm::bans`).
    pub(super) fn penalise(&self, peer: &NodeId) {
        self.stats.gossip.penalties.fetch_add(1, Ordering::Relaxed);
        let mut penalties = self.gossip.penalties();
        if let Some(n) = penalties.get_mut(peer) {
            *n += 1;
        } else if penalties.len() < MAX_PENALISED_PEERS {
            penalties.insert(*peer, 1);
        }
    }

    /// Fails with [`TransportError::TooLarge`] if `message` cannot fit in one sealed frame.
    fn check_fits(&self, message: &SignedGossip) -> Result<(), Error> {
        let body = message.to_proto(true).encoded_len();
        let header = gossip_envelope(&self.config.client_version, Vec::new()).encoded_len();
        // The payload field: one tag byte, the length as a varint, the bytes.
        let envelope = header + 1 + prost::encoding::encoded_len_varint(body as u64) + body;
        let len = sealed_len(envelope);
        let max = self.config.net.max_frame_len;
        if len > max {
            return Err(TransportError::TooLarge { len, max }.into());
        }
        Ok(())
    }

    /// Chooses the peers for one message from the routing table (see [`plan_relay`]).
    fn relay_plan(
        &self,
        cover: Option<Range<u32>>,
        random: usize,
        exclude: &[NodeId],
    ) -> RelayPlan {
        let connected: HashSet<NodeId> = self
            .transport()
            .map(|t| t.connected_peers().into_iter().map(|n| n.id).collect())
            .unwrap_or_default();
        let (local, candidates) = {
            let table = self.table();
            let candidates: Vec<Candidate> = table
                .buckets()
                .flat_map(|b| b.entries().iter())
                .map(|r| Candidate {
                    node: *r.node(),
                    dht_id: *r.dht_id(),
                    connected: connected.contains(&r.node().id),
                })
                .collect();
            (*table.local(), candidates)
        };
        let cover = cover.unwrap_or(COVER_ALL..COVER_ALL);
        plan_relay(
            &local,
            &candidates,
            cover,
            random,
            exclude,
            &mut *self.rng(),
        )
    }

    /// Relays `message` in the background, if the relay queue has room (else counts the drop).
    fn spawn_relay(
        &self,
        message: SignedGossip,
        cover: Option<Range<u32>>,
        random: usize,
        exclude: [NodeId; 2],
    ) {
        let plan = self.relay_plan(cover, random, &exclude);
        if plan.is_empty() {
            return;
        }
        let Ok(permit) = Arc::clone(&self.gossip.relay_permits).try_acquire_owned() else {
            self.stats
                .gossip
                .relay_dropped
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(id = %message.id().short(), "gossip relay queue full");
            return;
        };
        let weak = self.weak_self();
        self.tasks.spawn(async move {
            let _permit = permit;
            let Some(inner) = weak.upgrade() else { return };
            let (sent, _) = inner.send_plan(plan, &message).await;
            let sent = u64::try_from(sent.len()).unwrap_or(u64::MAX);
            inner
                .stats
                .gossip
                .relayed
                .fetch_add(sent, Ordering::Relaxed);
        });
    }

    /// Sends `message` as `plan` says: each cover subtree to its first peer that accepts, and the first
    /// `random_count` random peers that accept. Returns the peers sent to and those that failed.
    async fn send_plan(
        &self,
        plan: RelayPlan,
        message: &SignedGossip,
    ) -> (Vec<NodeInfo>, Vec<NodeInfo>) {
        let with_cover = wire::encode(&message.to_proto(true));
        let without_cover = wire::encode(&message.to_proto(false));
        let outcome = Mutex::new(Outcome::default());
        let random = Mutex::new(VecDeque::from(plan.random));
        let mut sends = Vec::with_capacity(plan.cover.len() + plan.random_count);
        for alternatives in plan.cover {
            let mut alternatives = alternatives.into_iter();
            let next: NextPeer<'_> = Box::new(move || alternatives.next());
            sends.push(self.send_to_first(next, &with_cover, &outcome));
        }
        for _ in 0..plan.random_count {
            let random = &random;
            let next: NextPeer<'_> =
                Box::new(move || random.lock().unwrap_or_else(|e| e.into_inner()).pop_front());
            sends.push(self.send_to_first(next, &without_cover, &outcome));
        }
        join_all(sends).await;
        let outcome = outcome.into_inner().unwrap_or_else(|e| e.into_inner());
        (outcome.sent, outcome.failed)
    }

    /// Sends `body` to the first peer `next` yields that accepts it, recording each attempt.
    async fn send_to_first(&self, mut next: NextPeer<'_>, body: &Bytes, outcome: &Mutex<Outcome>) {
        while let Some(node) = next() {
            let result = self.send_gossip(&node, body).await;
            let mut o = outcome.lock().unwrap_or_else(|e| e.into_inner());
            match result {
                Ok(()) => return o.sent.push(node),
                Err(Error::Shutdown) => return,
                Err(e) => {
                    tracing::debug!(peer = %node.id.short(), error = %e, "gossip send failed");
                    o.failed.push(node);
                }
            }
        }
    }

    /// Sends one gossip envelope carrying `body` (an encoded `GossipMessage`) to `to`.
    async fn send_gossip(&self, to: &NodeInfo, body: &Bytes) -> Result<(), Error> {
        let envelope = gossip_envelope(&self.config.client_version, body.to_vec());
        let transport = self.transport()?;
        self.guard(transport.send(to, envelope)).await??;
        self.stats.messages_out.fetch_add(1, Ordering::Relaxed);
        self.stats.gossip.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
