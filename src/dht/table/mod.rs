//! The Kademlia routing table.
//!
//! `bucket_count` k-buckets indexed by the common-prefix length (CPL) of a node's [`DhtId`] with ours; the
//! last bucket takes every CPL `>= bucket_count - 1`. Each entry stores its `DhtId` next to its
//! [`NodeInfo`], so the hash is computed once per node, not per comparison.
//!
//! A pure data structure: no I/O, no runtime, no clock reads. Every operation that needs the time takes
//! `now` (a [`tokio::time::Instant`], so it follows tokio's paused test clock).
//!
//! # Rules
//!
//! - **Order:** a bucket's entries are ordered by last seen, **most recent first**; the last one is the
//!   least recently seen (LRU). Refreshing a node moves it to the front.
//! - **Never ourselves, never twice:** our own id gets [`Entry::SelfEntry`]; a node is at most once in the
//!   table, as an entry or as a pending candidate (a node can only belong to one bucket).
//! - **Full bucket:** inserting into a full bucket makes the newcomer the bucket's *pending candidate* and
//!   asks the caller to ping the LRU entry ([`InsertResult::Pending`]); the table never waits. The caller
//!   reports with [`RoutingTable::on_ping_result`]: alive keeps the LRU (refreshed) and drops the
//!   candidate; dead removes it and inserts the candidate as most recent.
//! - **One candidate per bucket:** while a candidate waits, further newcomers are refused
//!   ([`InsertResult::Full`]) unless the candidate has waited longer than
//!   [`TableConfig::pending_timeout`]; then the newcomer replaces it and the LRU is to be pinged again.
//!   A candidate exists only while its bucket is full: when an entry is removed, the candidate takes
//!   the freed slot.
//! - **Refresh:** a bucket is *touched* when an entry is inserted or refreshed, or through
//!   [`RoutingTable::touch_bucket`] after a lookup into it; [`RoutingTable::stale_buckets`] lists those
//!   not touched recently.

mod bucket;
mod entry;
#[cfg(test)]
mod tests;

use std::time::Duration;

use tokio::time::Instant;

pub use bucket::{BucketRef, NodeRecord};
pub use entry::{AbsentEntry, Entry, InsertResult, PendingEntry, PresentEntry};

use crate::identity::{DhtId, Distance, NodeId};
use crate::peer::NodeInfo;
use bucket::Bucket;

/// Most buckets that can ever hold a node: one per possible CPL of two distinct 256-bit ids.
const MAX_BUCKETS: usize = 256;

/// Routing table sizes and timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableConfig {
    /// Number of buckets (default 20); the last takes every longer prefix. Kept within `1..=256`.
    pub bucket_count: usize,
    /// k: entries per bucket (default 20). At least 1.
    pub bucket_size: usize,
    /// How long a pending candidate blocks other newcomers to its bucket (default 10 s).
    pub pending_timeout: Duration,
}

impl Default for TableConfig {
    fn default() -> Self {
        Self {
            bucket_count: 20,
            bucket_size: 20,
            pending_timeout: Duration::from_secs(10),
        }
    }
}

/// The result of [`RoutingTable::update`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// The node was known: it is now its bucket's most recently seen entry.
    Refreshed,
    /// The node was new and its bucket had room.
    Inserted,
    /// The bucket is full: the node is the pending candidate; ping `lru` and report with
    /// [`RoutingTable::on_ping_result`].
    PingNeeded {
        /// The least-recently-seen entry to ping.
        lru: NodeInfo,
    },
    /// The node was not added.
    Rejected {
        /// Why.
        reason: RejectReason,
    },
}

/// Why [`RoutingTable::update`] did not add a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// The node is us.
    SelfId,
    /// The node is already its bucket's pending candidate, waiting for a ping result.
    AlreadyPending,
    /// The bucket is full and another candidate is waiting.
    BucketFull,
}

/// What [`RoutingTable::on_ping_result`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PingOutcome {
    /// The node answered: it was refreshed, and its bucket's candidate (if any) dropped.
    Kept {
        /// The dropped candidate.
        dropped: Option<NodeInfo>,
    },
    /// The node did not answer: it was removed, and its bucket's candidate (if any) inserted.
    Evicted {
        /// The removed node.
        removed: NodeInfo,
        /// The candidate that took its slot.
        promoted: Option<NodeInfo>,
    },
    /// The node is not an entry of the table (removed meanwhile, pending, unknown or us): nothing changed.
    Unknown,
}

/// The Kademlia routing table. See the [module docs](self) for the rules.
#[derive(Clone, Debug)]
pub struct RoutingTable {
    /// Our own DHT id.
    local: DhtId,
    /// The configuration, with sizes brought into range.
    cfg: TableConfig,
    /// `cfg.bucket_count` buckets; bucket `i` holds the nodes whose CPL with `local` is `i` (the last: `>= i`).
    buckets: Vec<Bucket>,
}

impl RoutingTable {
    /// An empty table around `local`. `bucket_count` is brought into `1..=256` and `bucket_size` to at
    /// least 1.
    pub fn new(local: DhtId, cfg: TableConfig) -> Self {
        let cfg = TableConfig {
            bucket_count: cfg.bucket_count.clamp(1, MAX_BUCKETS),
            bucket_size: cfg.bucket_size.max(1),
            ..cfg
        };
        let buckets = (0..cfg.bucket_count)
            .map(|_| Bucket::with_capacity(cfg.bucket_size))
            .collect();
        Self {
            local,
            cfg,
            buckets,
        }
    }

    /// Our own DHT id.
    pub fn local(&self) -> &DhtId {
        &self.local
    }

    /// The configuration in use (sizes brought into range).
    pub fn config(&self) -> &TableConfig {
        &self.cfg
    }

    /// The bucket `id` belongs to: its CPL with our id, capped at the last bucket; `None` for our own id.
    pub fn bucket_index(&self, id: &DhtId) -> Option<usize> {
        if *id == self.local {
            return None;
        }
        let cpl = usize::try_from(self.local.common_prefix_len(id)).unwrap_or(usize::MAX);
        Some(cpl.min(self.last_index()))
    }

    /// What the table knows about `node`, with the operations allowed in that state.
    pub fn entry(&mut self, node: &NodeInfo) -> Entry<'_> {
        let dht_id = node.dht_id();
        let TableConfig {
            bucket_size,
            pending_timeout,
            ..
        } = self.cfg;
        let Some(bucket) = self.bucket_mut(&dht_id) else {
            return Entry::SelfEntry;
        };
        if let Some((pos, record)) = bucket.find(&dht_id).map(|(pos, r)| (pos, *r)) {
            return Entry::Present(PresentEntry::new(bucket, pos, record));
        }
        if let Some(record) = bucket.pending_with(&dht_id).copied() {
            return Entry::Pending(PendingEntry::new(bucket, record));
        }
        Entry::Absent(AbsentEntry::new(
            bucket,
            *node,
            dht_id,
            bucket_size,
            pending_timeout,
        ))
    }

    /// "We just saw `node`": refreshes it if known, otherwise tries to insert it. Addresses of known
    /// nodes are kept; use [`entry`](Self::entry) to change one.
    pub fn update(&mut self, node: &NodeInfo, now: Instant) -> UpdateOutcome {
        let rejected = |reason| UpdateOutcome::Rejected { reason };
        match self.entry(node) {
            Entry::Present(entry) => {
                entry.refresh(now);
                UpdateOutcome::Refreshed
            }
            Entry::Absent(entry) => match entry.insert(now) {
                InsertResult::Inserted => UpdateOutcome::Inserted,
                InsertResult::Pending { disconnected_lru } => UpdateOutcome::PingNeeded {
                    lru: disconnected_lru,
                },
                InsertResult::Full => rejected(RejectReason::BucketFull),
            },
            Entry::Pending(_) => rejected(RejectReason::AlreadyPending),
            Entry::SelfEntry => rejected(RejectReason::SelfId),
        }
    }

    /// Reports the ping of entry `id` (normally the LRU named by [`InsertResult::Pending`]).
    ///
    /// `alive`: the entry is refreshed (moved to most recent) and the bucket's candidate dropped.
    /// Dead: the entry is removed and the candidate, if any, inserted as most recently seen at `now`.
    /// This holds even if `id` is no longer the LRU; if `id` is no entry, nothing changes.
    pub fn on_ping_result(&mut self, id: &NodeId, alive: bool, now: Instant) -> PingOutcome {
        let dht_id = id.dht_id();
        let Some(bucket) = self.bucket_mut(&dht_id) else {
            return PingOutcome::Unknown;
        };
        let Some((pos, _)) = bucket.find(&dht_id) else {
            return PingOutcome::Unknown;
        };
        let candidate = bucket.pending.take();
        if alive {
            bucket.refresh(pos, now);
            return PingOutcome::Kept {
                dropped: candidate.map(|c| c.node),
            };
        }
        let Some(removed) = bucket.remove_at(pos) else {
            return PingOutcome::Unknown;
        };
        let promoted = candidate.map(|mut c| {
            c.last_seen = now;
            bucket.insert(c);
            bucket.touch(now);
            c.node
        });
        PingOutcome::Evicted {
            removed: removed.node,
            promoted,
        }
    }

    /// Up to `n` entries sorted by XOR distance to `target`, closest first (`target` itself first if
    /// present). Pending candidates are not included.
    pub fn nearest(&self, target: &DhtId, n: usize) -> Vec<NodeInfo> {
        // Buckets grouped into tiers of strictly decreasing closeness to `target`: with c = the target's
        // bucket, entries of bucket c share more than c bits with it, those of buckets above c exactly c,
        // and those of a bucket i below c exactly i. Sorting tier by tier until n are found is enough.
        let count = self.buckets.len();
        let c = self.bucket_index(target).unwrap_or(self.last_index());
        let tiers = std::iter::once(c..c + 1)
            .chain(std::iter::once(c + 1..count))
            .chain((0..c).rev().map(|i| i..i + 1));
        let mut found: Vec<(Distance, &NodeRecord)> =
            Vec::with_capacity(n.min(count * self.cfg.bucket_size));
        for tier in tiers {
            if found.len() >= n {
                break;
            }
            let start = found.len();
            let buckets = self.buckets.get(tier).unwrap_or_default();
            found.extend(
                buckets
                    .iter()
                    .flat_map(|b| &b.entries)
                    .map(|r| (r.dht_id.distance(target), r)),
            );
            if let Some(added) = found.get_mut(start..) {
                added.sort_unstable_by_key(|a| a.0);
            }
        }
        found.into_iter().take(n).map(|(_, r)| r.node).collect()
    }

    /// Removes `id`, whether an entry or a pending candidate. When an entry is removed, its bucket's
    /// candidate (if any) takes the slot, placed by the time it became the candidate.
    pub fn remove(&mut self, id: &NodeId) -> Option<NodeInfo> {
        let dht_id = id.dht_id();
        let bucket = self.bucket_mut(&dht_id)?;
        if let Some((pos, _)) = bucket.find(&dht_id) {
            return bucket.remove_at(pos).map(|r| r.node);
        }
        bucket.pending_with(&dht_id)?;
        bucket.pending.take().map(|r| r.node)
    }

    /// The entry `id` (pending candidates are not entries).
    pub fn get(&self, id: &NodeId) -> Option<NodeInfo> {
        let dht_id = id.dht_id();
        let bucket = self.buckets.get(self.bucket_index(&dht_id)?)?;
        bucket.find(&dht_id).map(|(_, r)| r.node)
    }

    /// Whether `id` is an entry (pending candidates are not entries).
    pub fn contains(&self, id: &NodeId) -> bool {
        self.get(id).is_some()
    }

    /// Number of entries (pending candidates not counted).
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.entries.len()).sum()
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.buckets.iter().all(|b| b.entries.is_empty())
    }

    /// Read-only views of the buckets, by increasing index.
    pub fn buckets(&self) -> impl ExactSizeIterator<Item = BucketRef<'_>> {
        self.buckets
            .iter()
            .enumerate()
            .map(|(index, bucket)| BucketRef { index, bucket })
    }

    /// Marks bucket `idx` as used at `now` (e.g. a lookup into it ran). Out of range: no effect.
    pub fn touch_bucket(&mut self, idx: usize, now: Instant) {
        if let Some(bucket) = self.buckets.get_mut(idx) {
            bucket.touch(now);
        }
    }

    /// The buckets not touched within `older_than` before `now` (never touched counts as stale).
    pub fn stale_buckets(&self, now: Instant, older_than: Duration) -> Vec<usize> {
        self.indices_where(|b| {
            b.last_touched
                .is_none_or(|t| now.saturating_duration_since(t) >= older_than)
        })
    }

    /// The buckets without entries.
    pub fn empty_buckets(&self) -> Vec<usize> {
        self.indices_where(|b| b.entries.is_empty())
    }

    /// A random id that falls in bucket `idx` (an index past the last bucket means the last bucket):
    /// for refreshing a bucket by looking it up.
    pub fn random_id_in_bucket<R: rand::Rng + ?Sized>(&self, idx: usize, rng: &mut R) -> DhtId {
        let cpl = u32::try_from(idx.min(self.last_index())).unwrap_or(u32::MAX);
        self.local.random_with_cpl(cpl, rng)
    }

    /// Index of the last bucket.
    fn last_index(&self) -> usize {
        self.buckets.len().saturating_sub(1)
    }

    /// The bucket `id` belongs to; `None` for our own id.
    fn bucket_mut(&mut self, id: &DhtId) -> Option<&mut Bucket> {
        self.bucket_index(id)
            .and_then(|idx| self.buckets.get_mut(idx))
    }

    /// Indices of the buckets matching `pred`.
    fn indices_where(&self, pred: impl Fn(&Bucket) -> bool) -> Vec<usize> {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, b)| pred(b))
            .map(|(i, _)| i)
            .collect()
    }
}
