//! Connection admission and limit counters: total, inbound, outbound and per-IP connection counts, the
//! per-IP accept throttle, the pending-handshake gauge, and how often each [`Limit`] bit.
//!
//! A connection holds a [`ConnPermit`] from admission (accept or dial start) until its tasks stop; the
//! permit gives its slots back when dropped. Per-IP state is keyed by [`ip_key`] (an IPv6 address by its
//! /64) and bounded: at most [`MAX_TRACKED_IPS`] throttle buckets are kept, buckets that refilled are
//! forgotten first, then the least recently used.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::bucket::TokenBucket;
use crate::config::NetConfig;
use crate::peer::is_local_ip;
use crate::transport::{Direction, Limit, TransportStats};

/// Most addresses whose accept-throttle state is remembered.
pub(crate) const MAX_TRACKED_IPS: usize = 4096;

/// The key per-IP limits count under: the IPv4 address (an IPv4-mapped IPv6 address as IPv4), or the
/// /64 prefix of an IPv6 address (one host usually holds a whole /64).
pub(crate) fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(s.into())
            }
        },
    }
}

/// Connection counts under the lock.
#[derive(Default)]
struct Counts {
    /// Inbound slots taken.
    inbound: usize,
    /// Outbound slots taken.
    outbound: usize,
    /// Inbound slots per [`ip_key`] (only non-zero counts; at most `max_inbound` entries).
    per_ip: HashMap<IpAddr, usize>,
    /// Accept-throttle bucket per [`ip_key`] (at most [`MAX_TRACKED_IPS`] entries).
    throttle: HashMap<IpAddr, TokenBucket>,
}

/// The limits of one transport and their counters.
pub(crate) struct Limits {
    /// The settings (limits, throttle, `exempt_local`).
    config: NetConfig,
    /// Connection counts; never held across an await.
    counts: Mutex<Counts>,
    /// Hits per limit, indexed like [`Limit::ALL`].
    hits: [AtomicU64; Limit::ALL.len()],
    /// Inbound handshakes in progress.
    pending: AtomicUsize,
    /// The most handshakes ever in progress at once.
    peak_pending: AtomicUsize,
    /// Keepalive frames not sent because the send buffer was full.
    keepalive_dropped: AtomicU64,
}

/// A connection slot; given back when dropped.
pub(crate) struct ConnPermit {
    /// Where the slot is counted.
    limits: Arc<Limits>,
    /// Which count it takes.
    direction: Direction,
    /// The per-IP slot it takes (inbound from a limited address only).
    ip: Option<IpAddr>,
}

/// An inbound handshake in progress: holds a `max_pending_handshakes` permit and the pending gauge.
pub(crate) struct PendingHandshake {
    /// The gauge.
    limits: Arc<Limits>,
    /// The listener's permit.
    _permit: OwnedSemaphorePermit,
}

impl Limits {
    /// Limits with the given settings and nothing counted.
    pub(crate) fn new(config: NetConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            counts: Mutex::new(Counts::default()),
            hits: std::array::from_fn(|_| AtomicU64::new(0)),
            pending: AtomicUsize::new(0),
            peak_pending: AtomicUsize::new(0),
            keepalive_dropped: AtomicU64::new(0),
        })
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        // Every update leaves the counts consistent; a panic elsewhere does not corrupt them.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one hit of `limit`.
    pub(crate) fn hit(&self, limit: Limit) {
        if let Some(i) = Limit::ALL.iter().position(|l| *l == limit)
            && let Some(counter) = self.hits.get(i)
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a keepalive frame dropped on a full send buffer.
    pub(crate) fn keepalive_dropped(&self) {
        self.keepalive_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Admits an inbound connection from `ip`, or names the limit that refuses it (counted). Checked in
    /// order: the per-IP accept throttle, `max_inbound_per_ip`, `max_inbound`, `max_connections`; the
    /// per-IP checks skip local addresses when `exempt_local` is set.
    pub(crate) fn admit_inbound(
        self: &Arc<Self>,
        ip: IpAddr,
        now: Instant,
    ) -> Result<ConnPermit, Limit> {
        let c = &self.config;
        let key = (!(c.exempt_local && is_local_ip(ip))).then(|| ip_key(ip));
        let mut counts = self.counts();
        let refused = if key.is_some_and(|k| !counts.throttle_take(k, c, now)) {
            Some(Limit::IpAcceptThrottle)
        } else if key
            .is_some_and(|k| counts.per_ip.get(&k).copied().unwrap_or(0) >= c.max_inbound_per_ip)
        {
            Some(Limit::MaxInboundPerIp)
        } else if counts.inbound >= c.max_inbound {
            Some(Limit::MaxInbound)
        } else if counts.inbound + counts.outbound >= c.max_connections {
            Some(Limit::MaxConnections)
        } else {
            None
        };
        self.grant(counts, refused, Direction::Inbound, key)
    }

    /// Admits an outbound connection (a dial), or names the limit that refuses it (counted).
    pub(crate) fn admit_outbound(self: &Arc<Self>) -> Result<ConnPermit, Limit> {
        let c = &self.config;
        let counts = self.counts();
        let refused = if counts.outbound >= c.max_outbound {
            Some(Limit::MaxOutbound)
        } else if counts.inbound + counts.outbound >= c.max_connections {
            Some(Limit::MaxConnections)
        } else {
            None
        };
        self.grant(counts, refused, Direction::Outbound, None)
    }

    /// Counts the hit if a limit `refused`, else takes the slots and returns their permit.
    fn grant(
        self: &Arc<Self>,
        mut counts: MutexGuard<'_, Counts>,
        refused: Option<Limit>,
        direction: Direction,
        ip: Option<IpAddr>,
    ) -> Result<ConnPermit, Limit> {
        if let Some(limit) = refused {
            drop(counts);
            self.hit(limit);
            return Err(limit);
        }
        match direction {
            Direction::Inbound => counts.inbound += 1,
            Direction::Outbound => counts.outbound += 1,
        }
        if let Some(ip) = ip {
            *counts.per_ip.entry(ip).or_default() += 1;
        }
        Ok(ConnPermit {
            limits: Arc::clone(self),
            direction,
            ip,
        })
    }

    /// Starts counting an inbound handshake that holds `permit` of the pending-handshake semaphore.
    pub(crate) fn pending(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> PendingHandshake {
        let now = self.pending.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_pending.fetch_max(now, Ordering::Relaxed);
        PendingHandshake {
            limits: Arc::clone(self),
            _permit: permit,
        }
    }

    /// A snapshot of the counts and counters.
    pub(crate) fn stats(&self) -> TransportStats {
        let (inbound, outbound) = {
            let counts = self.counts();
            (counts.inbound, counts.outbound)
        };
        TransportStats {
            pending_handshakes: self.pending.load(Ordering::Relaxed),
            peak_pending_handshakes: self.peak_pending.load(Ordering::Relaxed),
            inbound,
            outbound,
            limit_hits: Limit::ALL
                .iter()
                .zip(&self.hits)
                .map(|(l, n)| (*l, n.load(Ordering::Relaxed)))
                .collect(),
            keepalive_dropped: self.keepalive_dropped.load(Ordering::Relaxed),
        }
    }
}

impl Counts {
    /// Takes one accept token of `key`'s bucket; false if it has none left.
    fn throttle_take(&mut self, key: IpAddr, c: &NetConfig, now: Instant) -> bool {
        if !self.throttle.contains_key(&key) && self.throttle.len() >= MAX_TRACKED_IPS {
            // A bucket that refilled says no more than a new one: forget those first, then the stalest.
            self.throttle.retain(|_, b| !b.is_full(now));
            if self.throttle.len() >= MAX_TRACKED_IPS
                && let Some(stalest) = self
                    .throttle
                    .iter()
                    .min_by_key(|(_, b)| b.last_used())
                    .map(|(k, _)| *k)
            {
                self.throttle.remove(&stalest);
            }
        }
        let rate = 1.0 / c.ip_accept_interval.as_secs_f64();
        let burst = f64::from(c.ip_accept_burst);
        self.throttle
            .entry(key)
            .or_insert_with(|| TokenBucket::new(rate, burst, now))
            .try_take(1.0, now)
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut counts = self.limits.counts();
        match self.direction {
            Direction::Inbound => counts.inbound = counts.inbound.saturating_sub(1),
            Direction::Outbound => counts.outbound = counts.outbound.saturating_sub(1),
        }
        if let Some(ip) = self.ip
            && let Some(n) = counts.per_ip.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.per_ip.remove(&ip);
            }
        }
    }
}

impl Drop for PendingHandshake {
    fn drop(&mut self) {
        self.limits.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits(tweak: impl FnOnce(&mut NetConfig)) -> Arc<Limits> {
        let mut config = NetConfig::default();
        tweak(&mut config);
        Limits::new(config)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn per_ip_limit_counts_open_connections() {
        let l = limits(|c| {
            c.max_inbound_per_ip = 2;
            c.ip_accept_burst = 100;
        });
        let now = Instant::now();
        let a = l.admit_inbound(ip("203.0.113.1"), now).unwrap();
        let _b = l.admit_inbound(ip("203.0.113.1"), now).unwrap();
        assert_eq!(
            l.admit_inbound(ip("203.0.113.1"), now).err(),
            Some(Limit::MaxInboundPerIp)
        );
        // Another address is not affected; a closed connection frees its slot.
        let _c = l.admit_inbound(ip("203.0.113.2"), now).unwrap();
        drop(a);
        let _d = l.admit_inbound(ip("203.0.113.1"), now).unwrap();
        assert_eq!(l.stats().hits(Limit::MaxInboundPerIp), 1);
        assert_eq!(l.stats().inbound, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn accept_throttle_refills_per_interval() {
        let l = limits(|c| {
            c.ip_accept_burst = 2;
            c.ip_accept_interval = Duration::from_secs(10);
        });
        let start = Instant::now();
        let peer = ip("198.51.100.7");
        assert!(l.admit_inbound(peer, start).is_ok());
        assert!(l.admit_inbound(peer, start).is_ok());
        assert_eq!(
            l.admit_inbound(peer, start).err(),
            Some(Limit::IpAcceptThrottle)
        );
        let later = start + Duration::from_secs(10);
        assert!(l.admit_inbound(peer, later).is_ok());
        assert!(l.admit_inbound(peer, later).is_err());
        assert_eq!(l.stats().hits(Limit::IpAcceptThrottle), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn local_addresses_are_exempt_only_when_configured() {
        for exempt in [false, true] {
            let l = limits(|c| {
                c.exempt_local = exempt;
                c.max_inbound_per_ip = 1;
                c.ip_accept_burst = 1;
            });
            let now = Instant::now();
            let held: Vec<_> = (0..3)
                .filter_map(|_| l.admit_inbound(ip("127.0.0.1"), now).ok())
                .collect();
            assert_eq!(held.len(), if exempt { 3 } else { 1 }, "exempt {exempt}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn inbound_outbound_and_total_limits() {
        let l = limits(|c| {
            c.max_inbound = 2;
            c.max_outbound = 2;
            c.max_connections = 3;
            c.exempt_local = true;
        });
        let now = Instant::now();
        let local = ip("127.0.0.1");
        let i1 = l.admit_inbound(local, now).unwrap();
        let _i2 = l.admit_inbound(local, now).unwrap();
        assert_eq!(l.admit_inbound(local, now).err(), Some(Limit::MaxInbound));
        let _o1 = l.admit_outbound().unwrap();
        assert_eq!(l.admit_outbound().err(), Some(Limit::MaxConnections));
        drop(i1);
        let _o2 = l.admit_outbound().unwrap();
        assert_eq!(l.admit_outbound().err(), Some(Limit::MaxOutbound));
        let s = l.stats();
        assert_eq!((s.inbound, s.outbound), (1, 2));
        assert_eq!(s.hits(Limit::MaxInbound), 1);
        assert_eq!(s.hits(Limit::MaxConnections), 1);
        assert_eq!(s.hits(Limit::MaxOutbound), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn throttle_memory_is_bounded() {
        let l = limits(|c| c.ip_accept_burst = 1);
        let now = Instant::now();
        for i in 0..(MAX_TRACKED_IPS as u32 + 100) {
            let addr = IpAddr::V4((0x0a00_0000 + i).into());
            drop(l.admit_inbound(addr, now));
        }
        assert_eq!(l.counts().throttle.len(), MAX_TRACKED_IPS);
        assert!(
            l.counts().per_ip.is_empty(),
            "closed connections leave no per-IP entry"
        );
    }

    #[test]
    fn ipv6_hosts_count_by_their_64() {
        assert_eq!(
            ip_key(ip("2001:db8:1:2:aaaa::1")),
            ip_key(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(ip_key(ip("2001:db8:1:2::1")), ip_key(ip("2001:db8:1:3::1")));
        assert_eq!(ip_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    }

    #[tokio::test(start_paused = true)]
    async fn pending_gauge_keeps_its_peak() {
        let l = limits(|_| {});
        let sem = Arc::new(tokio::sync::Semaphore::new(3));
        let held: Vec<_> = (0..3)
            .map(|_| l.pending(Arc::clone(&sem).try_acquire_owned().unwrap()))
            .collect();
        assert_eq!(l.stats().pending_handshakes, 3);
        drop(held);
        let s = l.stats();
        assert_eq!((s.pending_handshakes, s.peak_pending_handshakes), (0, 3));
        assert_eq!(sem.available_permits(), 3);
    }
}
