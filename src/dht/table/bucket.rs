//! One k-bucket: its entries ordered by last seen (most recent first), its pending candidate and the time
//! it was last touched.

use tokio::time::Instant;

use crate::identity::DhtId;
use crate::peer::NodeInfo;

/// A node held by the table (or waiting as a bucket's pending candidate), with its precomputed
/// [`DhtId`] and the time it was last seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    /// The node.
    pub(super) node: NodeInfo,
    /// `node.dht_id()`, computed once.
    pub(super) dht_id: DhtId,
    /// When the node was last seen; for a pending candidate, when it became the candidate.
    pub(super) last_seen: Instant,
}

impl NodeRecord {
    /// Builds a record; `dht_id` must be `node.dht_id()`.
    pub(super) fn new(node: NodeInfo, dht_id: DhtId, last_seen: Instant) -> Self {
        Self {
            node,
            dht_id,
            last_seen,
        }
    }

    /// The node.
    pub fn node(&self) -> &NodeInfo {
        &self.node
    }

    /// The node's DHT id.
    pub fn dht_id(&self) -> &DhtId {
        &self.dht_id
    }

    /// When the node was last seen; for a pending candidate, when it became the candidate.
    pub fn last_seen(&self) -> Instant {
        self.last_seen
    }
}

/// A k-bucket. Invariants kept by every method: `entries` is sorted by `last_seen`, most recent first;
/// a pending candidate exists only while `entries` is full (the table never leaves a full bucket's
/// freed slot empty while a candidate waits).
#[derive(Clone, Debug, Default)]
pub(super) struct Bucket {
    /// The entries, most recently seen first (index 0), least recently seen last.
    pub(super) entries: Vec<NodeRecord>,
    /// The newcomer waiting for the least-recently-seen entry's ping result.
    pub(super) pending: Option<NodeRecord>,
    /// When an entry was last refreshed or inserted, or a lookup into the bucket ran.
    pub(super) last_touched: Option<Instant>,
}

impl Bucket {
    /// An empty bucket with room for `k` entries.
    pub(super) fn with_capacity(k: usize) -> Self {
        Self {
            entries: Vec::with_capacity(k),
            ..Self::default()
        }
    }

    /// The entry with `id` and its position, if present.
    pub(super) fn find(&self, id: &DhtId) -> Option<(usize, &NodeRecord)> {
        self.entries
            .iter()
            .enumerate()
            .find(|(_, r)| r.dht_id == *id)
    }

    /// The pending candidate, if it has `id`.
    pub(super) fn pending_with(&self, id: &DhtId) -> Option<&NodeRecord> {
        self.pending.as_ref().filter(|p| p.dht_id == *id)
    }

    /// The least-recently-seen entry.
    pub(super) fn lru(&self) -> Option<&NodeRecord> {
        self.entries.last()
    }

    /// Records that the bucket was used at `now` (never moves the time backwards).
    pub(super) fn touch(&mut self, now: Instant) {
        self.last_touched = Some(self.last_touched.map_or(now, |t| t.max(now)));
    }

    /// Inserts `record` at the place its `last_seen` gives it (the front when it is the most recent).
    /// The caller checks that there is room.
    pub(super) fn insert(&mut self, record: NodeRecord) {
        let at = self
            .entries
            .partition_point(|r| r.last_seen > record.last_seen);
        self.entries.insert(at, record);
    }

    /// Marks the entry at `pos` as seen at `now`, moves it to its new place and touches the bucket.
    pub(super) fn refresh(&mut self, pos: usize, now: Instant) {
        if pos < self.entries.len() {
            let mut record = self.entries.remove(pos);
            record.last_seen = record.last_seen.max(now);
            self.insert(record);
            self.touch(now);
        }
    }

    /// Removes the entry at `pos`. A waiting candidate takes the freed slot, placed by the time it was
    /// last seen (when it became the candidate).
    pub(super) fn remove_at(&mut self, pos: usize) -> Option<NodeRecord> {
        if pos >= self.entries.len() {
            return None;
        }
        let removed = self.entries.remove(pos);
        if let Some(candidate) = self.pending.take() {
            self.insert(candidate);
        }
        Some(removed)
    }
}

/// A read-only view of one bucket, from [`RoutingTable::buckets`](super::RoutingTable::buckets).
#[derive(Clone, Copy, Debug)]
pub struct BucketRef<'a> {
    /// The bucket's index (the common-prefix length of its nodes with our id; the last bucket: at least).
    pub(super) index: usize,
    /// The bucket.
    pub(super) bucket: &'a Bucket,
}

impl<'a> BucketRef<'a> {
    /// The bucket's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The entries, most recently seen first.
    pub fn entries(&self) -> &'a [NodeRecord] {
        &self.bucket.entries
    }

    /// The pending candidate, if any; its `last_seen` is when it became the candidate.
    pub fn pending(&self) -> Option<&'a NodeRecord> {
        self.bucket.pending.as_ref()
    }

    /// When an entry was last refreshed or inserted, or the bucket was touched; `None` if never.
    pub fn last_touched(&self) -> Option<Instant> {
        self.bucket.last_touched
    }
}
