//! The Kademlia routing table.
//!
//! `bucket_count` k-buckets indexed by the common-prefix length (CPL) of a node's [`DhtId`] with ours; the
//! last bucket takes every CPL `>= bucket_count - 1`. Each entry stores its `DhtId` and subnet next to its
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
//!   table, as an entry or as a replacement candidate (a node can only belong to one bucket).
//! - **Answered or inbound-only:** [`RoutingTable::update`] says how the node was seen. [`Seen::Answered`]
//!   (it answered a request of ours) makes a *verified* entry; [`Seen::Inbound`] (it only contacted us)
//!   makes an *inbound-only* entry, at most [`TableConfig::max_inbound_per_bucket`] per bucket, which
//!   becomes verified when it answers us. Only verified entries are served to others
//!   ([`RoutingTable::nearest_verified`]); all entries may be used by us ([`RoutingTable::nearest`]).
//! - **Subnet limits:** at most [`TableConfig::max_per_subnet_bucket`] entries of one subnet (IPv4 /24,
//!   IPv6 /48, see [`crate::dht::subnet`]) per bucket and [`TableConfig::max_per_subnet_table`] in the
//!   table, checked on insert, on an address change and for candidates (on entering the cache and on
//!   promotion). A per-subnet counter keeps the table-wide check O(1). Exempt addresses
//!   ([`SubnetPolicy::exempt_local`]) are not limited.
//! - **Full bucket:** a verified newcomer to a full bucket goes to the front of the bucket's replacement
//!   cache (at most [`TableConfig::replacement_cache`] candidates, most recently seen first, deduplicated,
//!   at most `max_per_subnet_bucket` of one subnet) and the caller is asked to ping the LRU entry
//!   ([`UpdateOutcome::PingNeeded`]) unless such a ping was asked for within
//!   [`TableConfig::pending_timeout`]; the table never waits. The caller reports with
//!   [`RoutingTable::on_ping_result`]: alive keeps the LRU (refreshed), dead removes it. An inbound-only
//!   newcomer to a full bucket is refused.
//! - **Promotion:** whenever an entry is removed (dead ping, repeated failures, [`RoutingTable::remove`]),
//!   the most recent candidate that fits the subnet limits takes the slot; candidates that do not fit are
//!   dropped, so the cache is empty unless its bucket is full.
//! - **Failures:** [`RoutingTable::on_request_failed`] counts an entry's consecutive failed requests; at
//!   [`TableConfig::max_failures`] it is removed (and replaced from the cache). A failed candidate is
//!   dropped. Seeing the node as [`Seen::Answered`] (or a live ping) resets the count.
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
pub use entry::{AbsentEntry, CandidateEntry, Entry, PresentEntry};

use crate::dht::subnet::{SubnetCounts, SubnetPolicy};
use crate::identity::{DhtId, Distance, NodeId};
use crate::peer::NodeInfo;
use bucket::Bucket;
use entry::Slot;

/// Most buckets that can ever hold a node: one per possible CPL of two distinct 256-bit ids.
const MAX_BUCKETS: usize = 256;

/// Routing table sizes, limits and timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableConfig {
    /// Number of buckets (default 20); the last takes every longer prefix. Kept within `1..=256`.
    pub bucket_count: usize,
    /// k: entries per bucket (default 20). At least 1.
    pub bucket_size: usize,
    /// How long an asked-for LRU ping blocks asking for another in its bucket (default 10 s).
    pub pending_timeout: Duration,
    /// Replacement candidates per bucket (default 5; 0: none, a full bucket refuses newcomers).
    pub replacement_cache: usize,
    /// Inbound-only entries per bucket (default 10, half of k).
    pub max_inbound_per_bucket: usize,
    /// Entries of one subnet per bucket (default 2). At least 1.
    pub max_per_subnet_bucket: usize,
    /// Entries of one subnet in the table (default 10). At least 1.
    pub max_per_subnet_table: usize,
    /// Which addresses the subnet limits apply to.
    pub subnets: SubnetPolicy,
    /// Consecutive failed requests that remove an entry (default 2). At least 1.
    pub max_failures: u32,
}

impl Default for TableConfig {
    fn default() -> Self {
        Self {
            bucket_count: 20,
            bucket_size: 20,
            pending_timeout: Duration::from_secs(10),
            replacement_cache: 5,
            max_inbound_per_bucket: 10,
            max_per_subnet_bucket: 2,
            max_per_subnet_table: 10,
            subnets: SubnetPolicy::default(),
            max_failures: 2,
        }
    }
}

/// How a node was just seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// It answered a request of ours: it becomes (or stays) verified and is served to others, and its
    /// failure count is reset.
    Answered,
    /// It contacted us (a request, a one-way or gossip message): an inbound-only entry if new.
    Inbound,
}

/// The result of [`RoutingTable::update`] and [`AbsentEntry::insert`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// The node was an entry: it is now its bucket's most recently seen entry.
    Refreshed,
    /// The node was new and its bucket had room.
    Inserted,
    /// The bucket is full: the node is (now) the most recent replacement candidate, and a ping of the
    /// least-recently-seen entry is already in progress.
    Cached,
    /// The bucket is full: the node is the most recent replacement candidate; ping `lru` and report with
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

/// Why the table did not add a node (or change its address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The node is us.
    SelfId,
    /// The bucket already holds `max_per_subnet_bucket` entries of the node's subnet.
    SubnetBucket,
    /// The table already holds `max_per_subnet_table` entries of the node's subnet.
    SubnetTable,
    /// The bucket already holds `max_inbound_per_bucket` inbound-only entries.
    InboundLimit,
    /// The bucket is full and the node has not answered us (or there is no replacement cache).
    BucketFull,
}

impl RejectReason {
    /// A short snake_case name (for metric labels).
    pub fn label(&self) -> &'static str {
        match self {
            RejectReason::SelfId => "self",
            RejectReason::SubnetBucket => "subnet_bucket",
            RejectReason::SubnetTable => "subnet_table",
            RejectReason::InboundLimit => "inbound_limit",
            RejectReason::BucketFull => "bucket_full",
        }
    }
}

/// What [`RoutingTable::on_ping_result`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PingOutcome {
    /// The node answered: it was refreshed (and its failure count reset).
    Kept,
    /// The node did not answer: it was removed, and a candidate (if any fitted) took its slot.
    Evicted {
        /// The removed node.
        removed: NodeInfo,
        /// The candidate that took its slot.
        promoted: Option<NodeInfo>,
    },
    /// The node is not an entry of the table (removed meanwhile, a candidate, unknown or us): nothing
    /// changed.
    Unknown,
}

/// What [`RoutingTable::on_request_failed`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureOutcome {
    /// The entry's consecutive failures, now this many (below `max_failures`).
    Counted(u32),
    /// The entry reached `max_failures`: it was removed, and a candidate (if any fitted) took its slot.
    Evicted {
        /// The removed node.
        removed: NodeInfo,
        /// The candidate that took its slot.
        promoted: Option<NodeInfo>,
    },
    /// The node was a replacement candidate: it was dropped.
    CandidateDropped,
    /// The node is neither an entry nor a candidate.
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
    /// Entries per subnet, over all buckets (candidates not counted).
    subnets: SubnetCounts,
}

impl RoutingTable {
    /// An empty table around `local`. `bucket_count` is brought into `1..=256`; `bucket_size`, the subnet
    /// limits and `max_failures` to at least 1.
    pub fn new(local: DhtId, cfg: TableConfig) -> Self {
        let cfg = TableConfig {
            bucket_count: cfg.bucket_count.clamp(1, MAX_BUCKETS),
            bucket_size: cfg.bucket_size.max(1),
            max_per_subnet_bucket: cfg.max_per_subnet_bucket.max(1),
            max_per_subnet_table: cfg.max_per_subnet_table.max(1),
            max_failures: cfg.max_failures.max(1),
            ..cfg
        };
        let buckets = (0..cfg.bucket_count)
            .map(|_| Bucket::with_capacity(cfg.bucket_size))
            .collect();
        Self {
            local,
            cfg,
            buckets,
            subnets: SubnetCounts::default(),
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
        let Some(slot) = self.slot(&dht_id) else {
            return Entry::SelfEntry;
        };
        if let Some((pos, record)) = slot
            .bucket
            .find(&dht_id)
            .and_then(|pos| Some((pos, *slot.bucket.entries.get(pos)?)))
        {
            return Entry::Present(PresentEntry::new(slot, pos, record));
        }
        if let Some((pos, record)) = slot
            .bucket
            .find_candidate(&dht_id)
            .and_then(|pos| Some((pos, *slot.bucket.cache.get(pos)?)))
        {
            return Entry::Candidate(CandidateEntry::new(slot, pos, record));
        }
        Entry::Absent(AbsentEntry::new(slot, *node, dht_id))
    }

    /// "We just saw `node`" as `seen` says: refreshes it if it is an entry (verifying it if it answered),
    /// moves it to the front of the cache if it is a candidate, otherwise tries to insert it. Addresses of
    /// known nodes are kept; use [`entry`](Self::entry) to change one.
    pub fn update(&mut self, node: &NodeInfo, seen: Seen, now: Instant) -> UpdateOutcome {
        match self.entry(node) {
            Entry::Present(entry) => {
                entry.refresh(seen, now);
                UpdateOutcome::Refreshed
            }
            Entry::Candidate(entry) => entry.refresh(now),
            Entry::Absent(entry) => entry.insert(seen, now),
            Entry::SelfEntry => UpdateOutcome::Rejected {
                reason: RejectReason::SelfId,
            },
        }
    }

    /// Reports the ping of entry `id` (normally the LRU named by [`UpdateOutcome::PingNeeded`]).
    ///
    /// `alive`: the entry is refreshed (moved to most recent, verified, failures reset). Dead: the entry is
    /// removed and the most recent fitting candidate takes its slot. This holds even if `id` is no longer
    /// the LRU; if `id` is no entry, nothing changes. Either way the bucket may ask for a new ping.
    pub fn on_ping_result(&mut self, id: &NodeId, alive: bool, now: Instant) -> PingOutcome {
        let dht_id = id.dht_id();
        let Some(mut slot) = self.slot(&dht_id) else {
            return PingOutcome::Unknown;
        };
        slot.bucket.ping_since = None;
        let Some(pos) = slot.bucket.find(&dht_id) else {
            return PingOutcome::Unknown;
        };
        if alive {
            slot.bucket.refresh(pos, true, now);
            return PingOutcome::Kept;
        }
        match slot.remove(pos) {
            Some((removed, promoted)) => PingOutcome::Evicted {
                removed: removed.node,
                promoted,
            },
            None => PingOutcome::Unknown,
        }
    }

    /// A request of ours to `id` failed (error, timeout or an invalid answer): counts it for an entry and
    /// removes the entry at `max_failures` in a row; drops a candidate.
    pub fn on_request_failed(&mut self, id: &NodeId) -> FailureOutcome {
        let dht_id = id.dht_id();
        let max = self.cfg.max_failures;
        let Some(mut slot) = self.slot(&dht_id) else {
            return FailureOutcome::Unknown;
        };
        if let Some(pos) = slot.bucket.find(&dht_id) {
            let Some(record) = slot.bucket.entries.get_mut(pos) else {
                return FailureOutcome::Unknown;
            };
            record.failures = record.failures.saturating_add(1);
            if record.failures < max {
                return FailureOutcome::Counted(record.failures);
            }
            return match slot.remove(pos) {
                Some((removed, promoted)) => FailureOutcome::Evicted {
                    removed: removed.node,
                    promoted,
                },
                None => FailureOutcome::Unknown,
            };
        }
        match slot.bucket.find_candidate(&dht_id) {
            Some(pos) => {
                slot.bucket.cache.remove(pos);
                FailureOutcome::CandidateDropped
            }
            None => FailureOutcome::Unknown,
        }
    }

    /// Up to `n` entries sorted by XOR distance to `target`, closest first (`target` itself first if
    /// present), inbound-only entries included: for our own lookups. Candidates are not included.
    pub fn nearest(&self, target: &DhtId, n: usize) -> Vec<NodeInfo> {
        self.nearest_where(target, n, |_| true)
    }

    /// Like [`nearest`](Self::nearest), verified entries only: what we serve to others.
    pub fn nearest_verified(&self, target: &DhtId, n: usize) -> Vec<NodeInfo> {
        self.nearest_where(target, n, NodeRecord::is_verified)
    }

    /// Up to `n` entries matching `keep`, closest to `target` first.
    fn nearest_where(
        &self,
        target: &DhtId,
        n: usize,
        keep: impl Fn(&NodeRecord) -> bool,
    ) -> Vec<NodeInfo> {
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
                    .filter(|r| keep(r))
                    .map(|r| (r.dht_id.distance(target), r)),
            );
            if let Some(added) = found.get_mut(start..) {
                added.sort_unstable_by_key(|a| a.0);
            }
        }
        found.into_iter().take(n).map(|(_, r)| r.node).collect()
    }

    /// Removes `id`, whether an entry or a candidate. When an entry is removed, the most recent candidate
    /// that fits the subnet limits takes the slot.
    pub fn remove(&mut self, id: &NodeId) -> Option<NodeInfo> {
        let dht_id = id.dht_id();
        let mut slot = self.slot(&dht_id)?;
        if let Some(pos) = slot.bucket.find(&dht_id) {
            return slot.remove(pos).map(|(removed, _)| removed.node);
        }
        let pos = slot.bucket.find_candidate(&dht_id)?;
        Some(slot.bucket.cache.remove(pos).node)
    }

    /// The entry `id` (candidates are not entries).
    pub fn get(&self, id: &NodeId) -> Option<NodeInfo> {
        self.record(id).map(|r| r.node)
    }

    /// Whether `id` is an entry (candidates are not entries).
    pub fn contains(&self, id: &NodeId) -> bool {
        self.record(id).is_some()
    }

    /// Whether `id` is a verified entry: one we serve to others.
    pub fn is_verified(&self, id: &NodeId) -> bool {
        self.record(id).is_some_and(NodeRecord::is_verified)
    }

    /// Number of entries (candidates not counted).
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

    /// The bucket `id` belongs to, with the table-wide state its changes update; `None` for our own id.
    fn slot(&mut self, id: &DhtId) -> Option<Slot<'_>> {
        let idx = self.bucket_index(id)?;
        Some(Slot {
            bucket: self.buckets.get_mut(idx)?,
            subnets: &mut self.subnets,
            cfg: self.cfg,
        })
    }

    /// The entry record of `id`.
    fn record(&self, id: &NodeId) -> Option<&NodeRecord> {
        let dht_id = id.dht_id();
        let bucket = self.buckets.get(self.bucket_index(&dht_id)?)?;
        bucket.find(&dht_id).and_then(|pos| bucket.entries.get(pos))
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
