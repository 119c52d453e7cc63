//! Counters the swarm keeps for operators: messages and payload bytes per protocol, and histograms of
//! lookup hops and lookup time. Plain atomics; the metrics exporter reads them at scrape time.
//!
//! Outbound counts cover envelopes sent through the swarm's direct path (messages, requests, responses,
//! FindNode, pings); gossip sends are counted in [`GossipStats`](super::GossipStats).

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

use super::dht::{FINDNODE_PROTOCOL, PING_PROTOCOL};
use crate::dht::lookup::LookupReport;

/// Most distinct protocol names counted separately; any further name is counted under [`OTHER_PROTOCOL`].
pub const MAX_TRAFFIC_LABELS: usize = 256;
/// The name that counts traffic of protocols beyond the label limit and of inbound protocols we neither
/// registered nor used (so a peer cannot create labels).
pub const OTHER_PROTOCOL: &str = "_other";

/// Messages and payload bytes of one protocol.
#[derive(Default, Debug)]
pub struct ProtocolTraffic {
    /// Messages received.
    pub messages_in: AtomicU64,
    /// Payload bytes received.
    pub bytes_in: AtomicU64,
    /// Messages sent.
    pub messages_out: AtomicU64,
    /// Payload bytes sent.
    pub bytes_out: AtomicU64,
}

/// A copy of one protocol's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrafficSnapshot {
    /// The protocol ([`OTHER_PROTOCOL`] for the rest).
    pub protocol: String,
    /// Messages received.
    pub messages_in: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Messages sent.
    pub messages_out: u64,
    /// Payload bytes sent.
    pub bytes_out: u64,
}

/// Traffic per protocol. Inbound messages are counted under their protocol only if this node registered
/// or used it, so a peer cannot create labels.
#[derive(Debug)]
pub struct TrafficStats {
    /// Protocol name to its counters (at most [`MAX_TRAFFIC_LABELS`] entries).
    by_protocol: DashMap<String, ProtocolTraffic>,
    /// Everything else.
    other: ProtocolTraffic,
}

impl Default for TrafficStats {
    fn default() -> Self {
        let stats = Self {
            by_protocol: DashMap::new(),
            other: ProtocolTraffic::default(),
        };
        stats.track(FINDNODE_PROTOCOL);
        stats.track(PING_PROTOCOL);
        stats.track(crate::gossip::GOSSIP_PROTOCOL);
        stats
    }
}

fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
}

impl TrafficStats {
    /// Counts `protocol` separately from now on (while under the label limit).
    pub fn track(&self, protocol: &str) {
        if !self.by_protocol.contains_key(protocol) && self.by_protocol.len() < MAX_TRAFFIC_LABELS {
            self.by_protocol.entry(protocol.to_owned()).or_default();
        }
    }

    /// Counts one message of `bytes` payload bytes sent on `protocol`.
    pub fn record_out(&self, protocol: &str, bytes: usize) {
        self.track(protocol);
        match self.by_protocol.get(protocol) {
            Some(c) => {
                add(&c.messages_out, 1);
                add(&c.bytes_out, bytes);
            }
            None => {
                add(&self.other.messages_out, 1);
                add(&self.other.bytes_out, bytes);
            }
        }
    }

    /// Counts one message of `bytes` payload bytes received on `protocol`.
    pub fn record_in(&self, protocol: &str, bytes: usize) {
        match self.by_protocol.get(protocol) {
            Some(c) => {
                add(&c.messages_in, 1);
                add(&c.bytes_in, bytes);
            }
            None => {
                add(&self.other.messages_in, 1);
                add(&self.other.bytes_in, bytes);
            }
        }
    }

    /// Every protocol's counters, sorted by name, then [`OTHER_PROTOCOL`].
    pub fn snapshot(&self) -> Vec<TrafficSnapshot> {
        let read = |protocol: &str, c: &ProtocolTraffic| TrafficSnapshot {
            protocol: protocol.to_owned(),
            messages_in: c.messages_in.load(Ordering::Relaxed),
            bytes_in: c.bytes_in.load(Ordering::Relaxed),
            messages_out: c.messages_out.load(Ordering::Relaxed),
            bytes_out: c.bytes_out.load(Ordering::Relaxed),
        };
        let mut out: Vec<TrafficSnapshot> = self
            .by_protocol
            .iter()
            .map(|e| read(e.key(), e.value()))
            .collect();
        out.sort_by(|a, b| a.protocol.cmp(&b.protocol));
        out.push(read(OTHER_PROTOCOL, &self.other));
        out
    }
}

/// Dropped messages per [`DropReason`](super::DropReason).
#[derive(Default, Debug)]
pub struct DropCounters([AtomicU64; super::DropReason::COUNT]);

impl DropCounters {
    /// Counts one drop.
    pub fn record(&self, reason: super::DropReason) {
        if let Some(c) = self.0.get(reason.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops counted for `reason`'s label.
    pub fn get(&self, reason: super::DropReason) -> u64 {
        self.0
            .get(reason.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// `(label, drops)` for every label.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        super::DropReason::EACH
            .iter()
            .map(|r| (r.label(), self.get(*r)))
            .collect()
    }
}

/// A histogram with fixed upper bounds; the last bucket is `+Inf`.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds, ascending.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative), one more than `bounds` for `+Inf`.
    counts: Vec<AtomicU64>,
    /// Sum of the observations, as `f64` bits.
    sum_bits: AtomicU64,
}

/// A copy of a [`Histogram`] in Prometheus form.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, cumulative count)` for each finite bound.
    pub buckets: Vec<(f64, u64)>,
    /// Number of observations.
    pub count: u64,
    /// Sum of the observations.
    pub sum: f64,
}

impl Histogram {
    /// An empty histogram with these ascending upper bounds.
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        let idx = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get(idx) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    /// The current counts, cumulative per bound.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.bounds.len());
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            buckets.push((*bound, cumulative));
        }
        let inf = self
            .counts
            .last()
            .map(|c| c.load(Ordering::Relaxed))
            .unwrap_or(0);
        HistogramSnapshot {
            buckets,
            count: cumulative + inf,
            sum: f64::from_bits(self.sum_bits.load(Ordering::Relaxed)),
        }
    }
}

/// Upper bounds of the lookup hop histogram.
pub const HOP_BOUNDS: &[f64] = &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0];
/// Upper bounds of the lookup time histogram, seconds.
pub const LATENCY_BOUNDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Histograms of every lookup this node ran (including those of bootstrap, refresh and sends).
#[derive(Debug)]
pub struct LookupHistograms {
    /// Rounds (hops) per lookup.
    pub hops: Histogram,
    /// Seconds per lookup.
    pub seconds: Histogram,
}

impl Default for LookupHistograms {
    fn default() -> Self {
        Self {
            hops: Histogram::new(HOP_BOUNDS),
            seconds: Histogram::new(LATENCY_BOUNDS),
        }
    }
}

impl LookupHistograms {
    /// Records a finished lookup.
    pub fn observe(&self, report: &LookupReport) {
        self.hops.observe(f64::from(report.rounds));
        self.seconds.observe(report.elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_labels_only_for_known_protocols() {
        let t = TrafficStats::default();
        t.record_in("chat", 10);
        t.track("chat");
        t.record_in("chat", 5);
        t.record_out("news", 3);
        t.record_in(FINDNODE_PROTOCOL, 7);
        let snap = t.snapshot();
        let get = |p: &str| snap.iter().find(|s| s.protocol == p).cloned().unwrap();
        assert_eq!((get("chat").messages_in, get("chat").bytes_in), (1, 5));
        assert_eq!((get("news").messages_out, get("news").bytes_out), (1, 3));
        assert_eq!(get(FINDNODE_PROTOCOL).bytes_in, 7);
        assert_eq!(
            (
                get(OTHER_PROTOCOL).messages_in,
                get(OTHER_PROTOCOL).bytes_in
            ),
            (1, 10)
        );
        assert_eq!(snap.last().unwrap().protocol, OTHER_PROTOCOL);
    }

    #[test]
    fn labels_are_capped() {
        let t = TrafficStats::default();
        let preset = t.snapshot().len() - 1;
        for i in 0..MAX_TRAFFIC_LABELS + 10 {
            t.record_out(&format!("p{i}"), 1);
        }
        let snap = t.snapshot();
        assert_eq!(snap.len(), MAX_TRAFFIC_LABELS + 1);
        assert_eq!(snap.last().unwrap().messages_out, 10 + preset as u64);
    }

    #[test]
    fn histogram_is_cumulative() {
        let h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 7.0] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(1.0, 2), (2.0, 3)]);
        assert_eq!(s.count, 4);
        assert!((s.sum - 10.0).abs() < 1e-9);
    }
}
