//! [`SeenCache`]: the ids of gossip messages already handled, bounded in entries and in time.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

use super::MessageId;
use super::relay::COVER_ALL;

/// What a node still owes the network for one seen message (see [`super::relay`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Relay {
    /// The first copy is being validated and delivered; cover duties asked for meanwhile are collected
    /// (the lowest height wins) and handed out by [`SeenCache::open`].
    Pending {
        /// Lowest cover height asked for so far ([`COVER_ALL`] for none).
        wanted: u32,
    },
    /// The message was delivered: it was relayed with cover from `covered_from` up (none when
    /// [`COVER_ALL`]); a later cover request with a lower height covers the difference.
    Open {
        /// Lowest cover height already relayed.
        covered_from: u32,
    },
    /// The message was not delivered (rejected, or no such protocol here): it is never relayed.
    Closed,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Unix ms after which the id can be forgotten (author timestamp + TTL).
    expires_at_ms: i64,
    /// Relay duties.
    relay: Relay,
}

/// Ids of gossip messages already seen, each kept until its author timestamp plus the TTL.
///
/// Bounded in entries: when full, inserting evicts the entry that expires first. Memory is
/// `O(capacity)`. Time is passed in as unix milliseconds; nothing here reads a clock.
#[derive(Debug)]
pub struct SeenCache {
    /// Most entries kept.
    capacity: usize,
    /// Id to its entry.
    entries: HashMap<MessageId, Entry>,
    /// The same ids ordered by expiry, for purging and eviction.
    by_expiry: BTreeSet<(i64, MessageId)>,
}

impl SeenCache {
    /// An empty cache holding at most `capacity` ids (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            by_expiry: BTreeSet::new(),
        }
    }

    /// Most ids kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Ids held now (some may have expired since the last insert).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no id is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True if `id` is held.
    pub fn contains(&self, id: &MessageId) -> bool {
        self.entries.contains_key(id)
    }

    /// Forgets every id that expired at or before `now_ms`.
    pub fn purge(&mut self, now_ms: i64) {
        while let Some(&(expires_at, id)) = self.by_expiry.first() {
            if expires_at > now_ms {
                break;
            }
            self.by_expiry.pop_first();
            self.entries.remove(&id);
        }
    }

    /// Records `id` as seen until `expires_at_ms`. Returns false if it was already held (a duplicate).
    ///
    /// Purges expired ids first; if the cache is still full, evicts the ids that expire soonest.
    pub fn insert(&mut self, id: MessageId, expires_at_ms: i64, now_ms: i64) -> bool {
        self.purge(now_ms);
        if self.entries.contains_key(&id) {
            return false;
        }
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.by_expiry.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        self.entries.insert(
            id,
            Entry {
                expires_at_ms,
                relay: Relay::Pending { wanted: COVER_ALL },
            },
        );
        self.by_expiry.insert((expires_at_ms, id));
        true
    }

    /// True if a cover request with `height` for `id` would add relays (see [`SeenCache::claim_cover`]).
    pub fn needs_cover(&self, id: &MessageId, height: u32) -> bool {
        match self.entries.get(id).map(|e| e.relay) {
            Some(Relay::Pending { wanted }) => height < wanted,
            Some(Relay::Open { covered_from }) => height < covered_from,
            Some(Relay::Closed) | None => false,
        }
    }

    /// Asks for the cover duty from `height` up for `id`. Returns the CPL range still to cover now, if
    /// any: `height` up to the lowest height already covered. While the first copy is still pending,
    /// the request is remembered for [`SeenCache::open`] and `None` is returned.
    pub fn claim_cover(&mut self, id: &MessageId, height: u32) -> Option<Range<u32>> {
        let entry = self.entries.get_mut(id)?;
        match &mut entry.relay {
            Relay::Pending { wanted } => {
                *wanted = (*wanted).min(height);
                None
            }
            Relay::Open { covered_from } if height < *covered_from => {
                let range = height..*covered_from;
                *covered_from = height;
                Some(range)
            }
            Relay::Open { .. } | Relay::Closed => None,
        }
    }

    /// Marks the first copy of `id` delivered; returns the cover range collected while it was pending.
    pub fn open(&mut self, id: &MessageId) -> Option<Range<u32>> {
        let entry = self.entries.get_mut(id)?;
        let Relay::Pending { wanted } = entry.relay else {
            return None;
        };
        entry.relay = Relay::Open {
            covered_from: wanted,
        };
        (wanted < COVER_ALL).then_some(wanted..COVER_ALL)
    }

    /// Marks `id` as never to be relayed (rejected, or not deliverable here).
    pub fn close(&mut self, id: &MessageId) {
        if let Some(entry) = self.entries.get_mut(id) {
            entry.relay = Relay::Closed;
        }
    }

    /// When `id` expires, if held.
    pub fn expires_at(&self, id: &MessageId) -> Option<i64> {
        self.entries.get(id).map(|e| e.expires_at_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> MessageId {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&n.to_be_bytes());
        MessageId(b)
    }

    #[test]
    fn duplicates_are_detected_until_expiry() {
        let mut c = SeenCache::new(10);
        assert!(c.insert(id(1), 1_000, 0));
        assert!(!c.insert(id(1), 1_000, 500));
        assert!(c.contains(&id(1)));
        c.purge(999);
        assert!(c.contains(&id(1)));
        c.purge(1_000);
        assert!(!c.contains(&id(1)));
        assert!(c.is_empty());
    }

    #[test]
    fn stays_within_capacity_under_a_million_distinct_ids() {
        const CAP: usize = 10_000;
        let mut c = SeenCache::new(CAP);
        let ttl = 120_000;
        let mut max_len = 0;
        for n in 0..1_000_000u64 {
            // One id per 0.1 ms: many more than CAP fit within one TTL.
            let now = (n / 10) as i64;
            assert!(c.insert(id(n), now + ttl, now));
            max_len = max_len.max(c.len());
            assert!(c.by_expiry.len() == c.entries.len());
        }
        assert_eq!(max_len, CAP);
        assert_eq!(c.len(), CAP);
        // What is kept is the most recent: the entries that expire last.
        assert!(c.contains(&id(999_999)));
        assert!(!c.contains(&id(0)));
        // Time alone empties it.
        c.purge(1_000_000 + ttl);
        assert!(c.is_empty());
    }

    #[test]
    fn when_full_the_soonest_to_expire_goes_first() {
        let mut c = SeenCache::new(2);
        c.insert(id(1), 5_000, 0);
        c.insert(id(2), 1_000, 0);
        c.insert(id(3), 3_000, 0);
        assert!(c.contains(&id(1)) && c.contains(&id(3)) && !c.contains(&id(2)));
        assert_eq!(c.expires_at(&id(3)), Some(3_000));
    }

    #[test]
    fn cover_duties_are_collected_while_pending_then_handed_out_once() {
        let mut c = SeenCache::new(4);
        c.insert(id(1), 1_000, 0);
        assert!(c.needs_cover(&id(1), 5));
        assert_eq!(c.claim_cover(&id(1), 5), None);
        assert_eq!(c.claim_cover(&id(1), 3), None);
        assert_eq!(c.claim_cover(&id(1), 4), None);
        assert_eq!(c.open(&id(1)), Some(3..COVER_ALL));
        assert!(!c.needs_cover(&id(1), 3));
        assert_eq!(c.claim_cover(&id(1), 3), None);
        assert!(c.needs_cover(&id(1), 1));
        assert_eq!(c.claim_cover(&id(1), 1), Some(1..3));
        assert_eq!(c.claim_cover(&id(1), 0), Some(0..1));
        assert_eq!(c.claim_cover(&id(1), 0), None);
        assert_eq!(c.open(&id(1)), None, "opens once");

        // Random relay only: no cover asked for.
        c.insert(id(2), 1_000, 0);
        assert_eq!(c.open(&id(2)), None);
        assert_eq!(c.claim_cover(&id(2), 7), Some(7..COVER_ALL));

        // Closed: never relayed, whatever arrives later.
        c.insert(id(3), 1_000, 0);
        c.claim_cover(&id(3), 2);
        c.close(&id(3));
        assert_eq!(c.open(&id(3)), None);
        assert!(!c.needs_cover(&id(3), 0));
        assert_eq!(c.claim_cover(&id(3), 0), None);
        assert_eq!(c.claim_cover(&id(9), 0), None, "unknown id");
    }
}
