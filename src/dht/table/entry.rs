//! The entry API: [`RoutingTable::entry`](super::RoutingTable::entry) tells what the table knows about a
//! node and offers only the operations that make sense for that state.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::bucket::{Bucket, NodeRecord};
use crate::identity::DhtId;
use crate::peer::NodeInfo;

/// What the table knows about a node.
#[derive(Debug)]
pub enum Entry<'a> {
    /// The node is in its bucket.
    Present(PresentEntry<'a>),
    /// The node is its bucket's pending candidate, waiting for the least-recently-seen entry's ping result.
    Pending(PendingEntry<'a>),
    /// The node is not in the table.
    Absent(AbsentEntry<'a>),
    /// The node is us: it is never inserted.
    SelfEntry,
}

/// A node held in its bucket.
#[derive(Debug)]
pub struct PresentEntry<'a> {
    /// The node's bucket.
    bucket: &'a mut Bucket,
    /// Its position in the bucket.
    pos: usize,
    /// A copy of its record, kept in step with the bucket.
    record: NodeRecord,
}

impl<'a> PresentEntry<'a> {
    /// Wraps `record`, found at `pos` in `bucket`.
    pub(super) fn new(bucket: &'a mut Bucket, pos: usize, record: NodeRecord) -> Self {
        Self {
            bucket,
            pos,
            record,
        }
    }

    /// The node as stored (its address may differ from the one the caller looked up with).
    pub fn node(&self) -> &NodeInfo {
        &self.record.node
    }

    /// When the node was last seen.
    pub fn last_seen(&self) -> Instant {
        self.record.last_seen
    }

    /// Marks the node as seen at `now`: it becomes the bucket's most recently seen entry.
    pub fn refresh(self, now: Instant) {
        self.bucket.refresh(self.pos, now);
    }

    /// Replaces the stored address (last-seen time and order unchanged).
    pub fn update_address(&mut self, addr: SocketAddr) {
        if let Some(record) = self.bucket.entries.get_mut(self.pos) {
            record.node.addr = addr;
            self.record.node.addr = addr;
        }
    }

    /// Removes the node. If the bucket had a pending candidate, it takes the freed slot.
    pub fn remove(self) -> NodeInfo {
        self.bucket.remove_at(self.pos);
        self.record.node
    }
}

/// A node waiting as its bucket's pending candidate.
#[derive(Debug)]
pub struct PendingEntry<'a> {
    /// The node's bucket.
    bucket: &'a mut Bucket,
    /// A copy of the candidate's record.
    record: NodeRecord,
}

impl<'a> PendingEntry<'a> {
    /// Wraps `record`, the candidate of `bucket`.
    pub(super) fn new(bucket: &'a mut Bucket, record: NodeRecord) -> Self {
        Self { bucket, record }
    }

    /// The candidate.
    pub fn node(&self) -> &NodeInfo {
        &self.record.node
    }

    /// When it became the candidate.
    pub fn since(&self) -> Instant {
        self.record.last_seen
    }

    /// Drops the candidate.
    pub fn remove(self) -> NodeInfo {
        self.bucket.pending = None;
        self.record.node
    }
}

/// A node the table does not hold, with the bucket it would go to.
#[derive(Debug)]
pub struct AbsentEntry<'a> {
    /// The node's bucket.
    bucket: &'a mut Bucket,
    /// The node.
    node: NodeInfo,
    /// `node.dht_id()`.
    dht_id: DhtId,
    /// k: the bucket's capacity.
    bucket_size: usize,
    /// How long a pending candidate blocks newcomers.
    pending_timeout: Duration,
}

/// The result of [`AbsentEntry::insert`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertResult {
    /// The node was inserted as its bucket's most recently seen entry.
    Inserted,
    /// The bucket is full: the node is now its pending candidate. Ping `disconnected_lru`, the
    /// least-recently-seen entry, and report with
    /// [`RoutingTable::on_ping_result`](super::RoutingTable::on_ping_result).
    Pending {
        /// The entry to ping.
        disconnected_lru: NodeInfo,
    },
    /// The bucket is full and already has a candidate that has not waited longer than the pending
    /// timeout: the node was not added.
    Full,
}

impl<'a> AbsentEntry<'a> {
    /// An absent node and the bucket it belongs to.
    pub(super) fn new(
        bucket: &'a mut Bucket,
        node: NodeInfo,
        dht_id: DhtId,
        bucket_size: usize,
        pending_timeout: Duration,
    ) -> Self {
        Self {
            bucket,
            node,
            dht_id,
            bucket_size,
            pending_timeout,
        }
    }

    /// The node.
    pub fn node(&self) -> &NodeInfo {
        &self.node
    }

    /// Inserts the node, seen at `now`.
    ///
    /// A bucket with room takes it at once. In a full bucket it becomes the pending candidate (replacing
    /// a candidate that has waited longer than the pending timeout) and the least-recently-seen entry must
    /// be pinged; if a fresh candidate is already waiting, the node is refused.
    pub fn insert(self, now: Instant) -> InsertResult {
        let record = NodeRecord::new(self.node, self.dht_id, now);
        let bucket = self.bucket;
        let Some(lru) = bucket
            .lru()
            .filter(|_| bucket.entries.len() >= self.bucket_size)
        else {
            bucket.insert(record);
            bucket.touch(now);
            return InsertResult::Inserted;
        };
        let disconnected_lru = lru.node;
        match bucket.pending {
            Some(p) if now.saturating_duration_since(p.last_seen) <= self.pending_timeout => {
                InsertResult::Full
            }
            _ => {
                bucket.pending = Some(record);
                InsertResult::Pending { disconnected_lru }
            }
        }
    }
}
