//! The entry API: [`RoutingTable::entry`](super::RoutingTable::entry) tells what the table knows about a
//! node and offers only the operations that make sense for that state. Every change goes through a
//! [`Slot`], which keeps the subnet counters, the inbound-only count and the replacement cache in step.

use std::net::SocketAddr;

use tokio::time::Instant;

use super::bucket::{Bucket, NodeRecord};
use super::{RejectReason, Seen, TableConfig, UpdateOutcome};
use crate::dht::subnet::{Subnet, SubnetCounts};
use crate::identity::DhtId;
use crate::peer::NodeInfo;

/// What the table knows about a node.
#[derive(Debug)]
pub enum Entry<'a> {
    /// The node is an entry of its bucket.
    Present(PresentEntry<'a>),
    /// The node waits in its bucket's replacement cache.
    Candidate(CandidateEntry<'a>),
    /// The node is not in the table.
    Absent(AbsentEntry<'a>),
    /// The node is us: it is never inserted.
    SelfEntry,
}

/// One bucket with the table-wide state its changes must update.
#[derive(Debug)]
pub(super) struct Slot<'a> {
    /// The bucket.
    pub(super) bucket: &'a mut Bucket,
    /// Entries per subnet in the whole table.
    pub(super) subnets: &'a mut SubnetCounts,
    /// The table's configuration.
    pub(super) cfg: TableConfig,
}

impl Slot<'_> {
    /// Whether one more entry of `subnet` fits the per-bucket and per-table limits.
    pub(super) fn admits(&self, subnet: Option<Subnet>) -> Result<(), RejectReason> {
        if self.bucket.subnet_entries(subnet) >= self.cfg.max_per_subnet_bucket {
            return Err(RejectReason::SubnetBucket);
        }
        if self.subnets.get(subnet) >= self.cfg.max_per_subnet_table {
            return Err(RejectReason::SubnetTable);
        }
        Ok(())
    }

    /// Adds an entry (the caller checked room and limits).
    fn add(&mut self, record: NodeRecord, now: Instant) {
        self.subnets.add(record.subnet);
        self.bucket.insert(record);
        self.bucket.touch(now);
    }

    /// Removes the entry at `pos` and promotes a candidate into the freed slot.
    pub(super) fn remove(&mut self, pos: usize) -> Option<(NodeRecord, Option<NodeInfo>)> {
        let removed = self.bucket.take(pos)?;
        self.subnets.remove(removed.subnet);
        if pos == self.bucket.entries.len() {
            // The least recently seen entry went: a ping of it is moot.
            self.bucket.ping_since = None;
        }
        Some((removed, self.promote()))
    }

    /// Moves the most recent candidate that fits the subnet limits into the bucket; candidates that do
    /// not fit are dropped, so a bucket with room never keeps a cache.
    fn promote(&mut self) -> Option<NodeInfo> {
        while self.bucket.entries.len() < self.cfg.bucket_size && !self.bucket.cache.is_empty() {
            let candidate = self.bucket.cache.remove(0);
            if self.admits(candidate.subnet).is_ok() {
                let node = candidate.node;
                self.subnets.add(candidate.subnet);
                self.bucket.insert(candidate);
                return Some(node);
            }
        }
        if self.bucket.entries.len() < self.cfg.bucket_size {
            self.bucket.cache.clear();
        }
        None
    }

    /// Asks for a ping of the least-recently-seen entry unless one was asked for within the pending
    /// timeout; the outcome for a node just cached.
    fn cached(&mut self, now: Instant) -> UpdateOutcome {
        let waiting = self
            .bucket
            .ping_since
            .is_some_and(|t| now.saturating_duration_since(t) <= self.cfg.pending_timeout);
        match self.bucket.entries.last() {
            Some(lru) if !waiting => {
                self.bucket.ping_since = Some(now);
                UpdateOutcome::PingNeeded { lru: lru.node }
            }
            _ => UpdateOutcome::Cached,
        }
    }
}

/// A node held in its bucket.
#[derive(Debug)]
pub struct PresentEntry<'a> {
    /// The node's bucket.
    slot: Slot<'a>,
    /// Its position in the bucket.
    pos: usize,
    /// A copy of its record, kept in step with the bucket.
    record: NodeRecord,
}

impl<'a> PresentEntry<'a> {
    /// `record`, found at `pos` of the slot's bucket.
    pub(super) fn new(slot: Slot<'a>, pos: usize, record: NodeRecord) -> Self {
        Self { slot, pos, record }
    }

    /// The node as stored (its address may differ from the one the caller looked up with).
    pub fn node(&self) -> &NodeInfo {
        &self.record.node
    }

    /// When the node was last seen.
    pub fn last_seen(&self) -> Instant {
        self.record.last_seen
    }

    /// Whether the node answered a request of ours (only then is it served to others).
    pub fn is_verified(&self) -> bool {
        self.record.verified
    }

    /// Marks the node as seen at `now`: it becomes the bucket's most recently seen entry, and verified if
    /// `seen` is [`Seen::Answered`].
    pub fn refresh(self, seen: Seen, now: Instant) {
        self.slot
            .bucket
            .refresh(self.pos, seen == Seen::Answered, now);
    }

    /// Replaces the stored address (last-seen time and order unchanged). A move to another subnet must
    /// fit the subnet limits; if it does not, the address is kept and the reason returned.
    pub fn update_address(&mut self, addr: SocketAddr) -> Result<(), RejectReason> {
        let old = self.record.subnet;
        let subnet = self.slot.cfg.subnets.subnet(&addr);
        if subnet != old {
            self.slot.admits(subnet)?;
            self.slot.subnets.remove(old);
            self.slot.subnets.add(subnet);
        }
        if let Some(record) = self.slot.bucket.entries.get_mut(self.pos) {
            record.node.addr = addr;
            record.subnet = subnet;
            self.record = *record;
        }
        Ok(())
    }

    /// Removes the node; the most recent candidate that fits the limits takes the freed slot.
    pub fn remove(mut self) -> NodeInfo {
        self.slot.remove(self.pos);
        self.record.node
    }
}

/// A node waiting in its bucket's replacement cache.
#[derive(Debug)]
pub struct CandidateEntry<'a> {
    /// The node's bucket.
    slot: Slot<'a>,
    /// Its position in the cache.
    pos: usize,
    /// A copy of its record.
    record: NodeRecord,
}

impl<'a> CandidateEntry<'a> {
    /// `record`, found at `pos` of the slot's cache.
    pub(super) fn new(slot: Slot<'a>, pos: usize, record: NodeRecord) -> Self {
        Self { slot, pos, record }
    }

    /// The candidate.
    pub fn node(&self) -> &NodeInfo {
        &self.record.node
    }

    /// When the candidate was last seen.
    pub fn last_seen(&self) -> Instant {
        self.record.last_seen
    }

    /// Marks the candidate as seen at `now`: it moves to the front of the cache, and the least recently
    /// seen entry is to be pinged if no ping is in progress.
    pub fn refresh(mut self, now: Instant) -> UpdateOutcome {
        if self.pos < self.slot.bucket.cache.len() {
            let mut record = self.slot.bucket.cache.remove(self.pos);
            record.last_seen = record.last_seen.max(now);
            self.slot.bucket.cache.insert(0, record);
        }
        self.slot.cached(now)
    }

    /// Drops the candidate.
    pub fn remove(self) -> NodeInfo {
        if self.pos < self.slot.bucket.cache.len() {
            self.slot.bucket.cache.remove(self.pos);
        }
        self.record.node
    }
}

/// A node the table does not hold, with the bucket it would go to.
#[derive(Debug)]
pub struct AbsentEntry<'a> {
    /// The node's bucket.
    slot: Slot<'a>,
    /// The node.
    node: NodeInfo,
    /// `node.dht_id()`.
    dht_id: DhtId,
}

impl<'a> AbsentEntry<'a> {
    /// An absent node and the bucket it belongs to.
    pub(super) fn new(slot: Slot<'a>, node: NodeInfo, dht_id: DhtId) -> Self {
        Self { slot, node, dht_id }
    }

    /// The node.
    pub fn node(&self) -> &NodeInfo {
        &self.node
    }

    /// Inserts the node, seen at `now` as `seen` says (see the [table rules](super)).
    ///
    /// The subnet limits apply first. A bucket with room takes the node as an entry (an inbound-only one
    /// only under the inbound-only cap). A full bucket refuses inbound-only nodes and caches the others as
    /// replacement candidates, asking for a ping of the least-recently-seen entry.
    pub fn insert(mut self, seen: Seen, now: Instant) -> UpdateOutcome {
        let subnet = self.slot.cfg.subnets.subnet(&self.node.addr);
        if let Err(reason) = self.slot.admits(subnet) {
            return UpdateOutcome::Rejected { reason };
        }
        let verified = seen == Seen::Answered;
        let record = NodeRecord {
            node: self.node,
            dht_id: self.dht_id,
            subnet,
            last_seen: now,
            verified,
            failures: 0,
        };
        let cfg = self.slot.cfg;
        let bucket = &mut *self.slot.bucket;
        if bucket.entries.len() < cfg.bucket_size {
            if !verified && bucket.inbound >= cfg.max_inbound_per_bucket {
                return UpdateOutcome::Rejected {
                    reason: RejectReason::InboundLimit,
                };
            }
            self.slot.add(record, now);
            return UpdateOutcome::Inserted;
        }
        if !verified || cfg.replacement_cache == 0 {
            return UpdateOutcome::Rejected {
                reason: RejectReason::BucketFull,
            };
        }
        bucket.cache_front(record, cfg.replacement_cache, cfg.max_per_subnet_bucket);
        self.slot.cached(now)
    }
}
