//! One k-bucket: its entries ordered by last seen (most recent first), its replacement cache, the LRU ping
//! in progress and the time it was last touched.

use tokio::time::Instant;

use crate::dht::subnet::Subnet;
use crate::identity::DhtId;
use crate::peer::NodeInfo;

/// A node held by the table (as an entry or a replacement candidate), with its precomputed [`DhtId`] and
/// subnet, the time it was last seen, whether it answered us and its consecutive request failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    /// The node.
    pub(super) node: NodeInfo,
    /// `node.dht_id()`, computed once.
    pub(super) dht_id: DhtId,
    /// The subnet of `node.addr` under the table's policy (`None`: exempt).
    pub(super) subnet: Option<Subnet>,
    /// When the node was last seen.
    pub(super) last_seen: Instant,
    /// Whether it answered a request of ours (only such nodes are served to others).
    pub(super) verified: bool,
    /// Our requests it failed in a row.
    pub(super) failures: u32,
}

impl NodeRecord {
    /// The node.
    pub fn node(&self) -> &NodeInfo {
        &self.node
    }

    /// The node's DHT id.
    pub fn dht_id(&self) -> &DhtId {
        &self.dht_id
    }

    /// When the node was last seen.
    pub fn last_seen(&self) -> Instant {
        self.last_seen
    }

    /// Whether it answered a request of ours; if not it is *inbound-only* and never served to others.
    pub fn is_verified(&self) -> bool {
        self.verified
    }

    /// Our requests it failed in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// A k-bucket. Invariants kept by the table: `entries` is sorted by `last_seen`, most recent first;
/// `inbound` counts the entries that are not verified; the cache holds verified nodes only, most recently
/// seen first, and is empty unless `entries` is full.
#[derive(Clone, Debug, Default)]
pub(super) struct Bucket {
    /// The entries, most recently seen first (index 0), least recently seen last.
    pub(super) entries: Vec<NodeRecord>,
    /// Replacement candidates, most recently seen first.
    pub(super) cache: Vec<NodeRecord>,
    /// Entries that have not answered us yet.
    pub(super) inbound: usize,
    /// When the ping of the least-recently-seen entry was asked for, while its result is awaited.
    pub(super) ping_since: Option<Instant>,
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

    /// The position of the entry with `id`.
    pub(super) fn find(&self, id: &DhtId) -> Option<usize> {
        self.entries.iter().position(|r| r.dht_id == *id)
    }

    /// The position of the replacement candidate with `id`.
    pub(super) fn find_candidate(&self, id: &DhtId) -> Option<usize> {
        self.cache.iter().position(|r| r.dht_id == *id)
    }

    /// Entries of `subnet` in this bucket (0 for an exempt node).
    pub(super) fn subnet_entries(&self, subnet: Option<Subnet>) -> usize {
        subnet.map_or(0, |s| {
            self.entries.iter().filter(|r| r.subnet == Some(s)).count()
        })
    }

    /// Records that the bucket was used at `now` (never moves the time backwards).
    pub(super) fn touch(&mut self, now: Instant) {
        self.last_touched = Some(self.last_touched.map_or(now, |t| t.max(now)));
    }

    /// Inserts `record` as an entry at the place its `last_seen` gives it. The caller checks room and limits
    /// and counts the subnet.
    pub(super) fn insert(&mut self, record: NodeRecord) {
        if !record.verified {
            self.inbound += 1;
        }
        let at = self
            .entries
            .partition_point(|r| r.last_seen > record.last_seen);
        self.entries.insert(at, record);
    }

    /// Removes the entry at `pos` (the caller uncounts its subnet).
    pub(super) fn take(&mut self, pos: usize) -> Option<NodeRecord> {
        if pos >= self.entries.len() {
            return None;
        }
        let removed = self.entries.remove(pos);
        if !removed.verified {
            self.inbound = self.inbound.saturating_sub(1);
        }
        Some(removed)
    }

    /// Marks the entry at `pos` as seen at `now` (if `answered`: verified, failures reset), moves it to its
    /// new place and touches the bucket.
    pub(super) fn refresh(&mut self, pos: usize, answered: bool, now: Instant) {
        if let Some(mut record) = self.take(pos) {
            record.last_seen = record.last_seen.max(now);
            if answered {
                record.verified = true;
                record.failures = 0;
            }
            self.insert(record);
            self.touch(now);
        }
    }

    /// Puts `record` at the front of the cache (replacing an older copy of it), keeping at most
    /// `per_subnet` candidates of its subnet (the oldest goes) and at most `capacity` in all.
    pub(super) fn cache_front(&mut self, record: NodeRecord, capacity: usize, per_subnet: usize) {
        self.cache.retain(|r| r.dht_id != record.dht_id);
        if let Some(subnet) = record.subnet {
            let same: Vec<usize> = (0..self.cache.len())
                .filter(|&i| self.cache.get(i).is_some_and(|r| r.subnet == Some(subnet)))
                .collect();
            if same.len() >= per_subnet
                && let Some(&oldest) = same.last()
            {
                self.cache.remove(oldest);
            }
        }
        self.cache.insert(0, record);
        self.cache.truncate(capacity);
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

    /// The replacement candidates, most recently seen first.
    pub fn candidates(&self) -> &'a [NodeRecord] {
        &self.bucket.cache
    }

    /// Entries that have not answered us yet (inbound-only).
    pub fn inbound_only(&self) -> usize {
        self.bucket.inbound
    }

    /// When an entry was last refreshed or inserted, or the bucket was touched; `None` if never.
    pub fn last_touched(&self) -> Option<Instant> {
        self.bucket.last_touched
    }
}
