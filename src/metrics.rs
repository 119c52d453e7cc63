//! Prometheus metrics of one node, in the text exposition format (`GET /metrics`).
//!
//! Each [`NodeMetrics`] has its own registry (never the process-global one), so many nodes in one process
//! do not collide. Gauges (connections, routing table per bucket) and the swarm's own counters (messages
//! and bytes per protocol, lookup histograms) are read from the [`Swarm`] at scrape time; connection,
//! handshake and drop counters are counted from [`SwarmEvent`]s by a task this type owns.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `kadmesh_info` | gauge (1) | `id`, `network_id`, `client_version` |
//! | `kadmesh_uptime_seconds` | gauge | |
//! | `kadmesh_connections` | gauge | |
//! | `kadmesh_routing_table_size` | gauge | |
//! | `kadmesh_routing_table_bucket_nodes` | gauge | `bucket` |
//! | `kadmesh_messages_total` | counter | `direction` (`in`/`out`), `protocol` (out: direct sends only; gossip sends are `kadmesh_gossip_sent_total`) |
//! | `kadmesh_message_bytes_total` | counter (payload bytes) | `direction`, `protocol` |
//! | `kadmesh_envelopes_received_total`, `kadmesh_envelopes_sent_total` | counter | |
//! | `kadmesh_messages_delivered_total`, `kadmesh_responses_matched_total` | counter | |
//! | `kadmesh_findnode_rejected_total`, `kadmesh_lookups_total` | counter | |
//! | `kadmesh_lookup_hops`, `kadmesh_lookup_duration_seconds` | histogram | |
//! | `kadmesh_handshakes_ok_total` | counter | |
//! | `kadmesh_handshakes_failed_total` | counter | `reason` |
//! | `kadmesh_disconnects_total` | counter | `reason` |
//! | `kadmesh_messages_dropped_total` | counter | `reason` |
//! | `kadmesh_api_messages_dropped_total` | counter | `reason` (`no_subscriber`, `subscriber_lagged`) |
//! | `kadmesh_metrics_events_lagged_total` | counter | |
//! | `kadmesh_gossip_{broadcasts,received,delivered,duplicates,sent,relayed}_total` | counter | |
//! | `kadmesh_gossip_{unknown_protocol,penalties}_total` | counter | |
//! | `kadmesh_gossip_dropped_total` | counter | `reason` (`relay_queue_full`, `malformed`, `signature`, `expired`, `future`, `validator`) |
//! | `kadmesh_limit_hits_total` | counter | `limit` (each [`Limit::label`], and `max_payload` in and out) |
//! | `kadmesh_dropped_total` | counter | `reason` (each [`DropReason::label`], `keepalive_unsent`, `gossip_relay_queue_full`); counted where dropped, exact |
//! | `kadmesh_pending_handshakes`, `kadmesh_pending_handshakes_peak` | gauge | |
//! | `kadmesh_connection_slots` | gauge | `direction` (slots taken: dialling, handshaking, open, draining) |
//! | `kadmesh_bans_active` | gauge | `kind` (`id`, `ip`) |
//! | `kadmesh_bans_total` | counter | `reason` (`mac_failure`, `protocol_violation`, `rate_limit`, `invalid_signature`, `ip_threshold`, `manual`) |
//! | `kadmesh_ban_offences_total` | counter | `offence` (the four above and `bad_handshake`) |
//! | `kadmesh_banned_refusals_total` | counter | `by` (`id`, `ip`) |
//! | `kadmesh_ban_evictions_total` | counter | `what` (`ban`, `offence_record`) |
//! | `kadmesh_routing_table_rejected_total` | counter | `reason` (`subnet_bucket`, `subnet_table`, `inbound_limit`, `bucket_full`, `self`) |
//! | `kadmesh_routing_table_evicted_total` | counter | `reason` (`ping`, `failures`, `address_change`) |
//! | `kadmesh_routing_table_{promoted,verify_pings,verify_skipped}_total` | counter | |
//! | `kadmesh_routing_table_inbound_only`, `kadmesh_routing_table_candidates` | gauge | |
//! | `kadmesh_lookup_responses_rejected_total` | counter | `reason` (`oversized`, `duplicate`, `lists_responder`, `unroutable`, `unsorted`) |

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{Encoder, IntCounter, IntCounterVec, Opts, Registry, TextEncoder};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::swarm::counters::HistogramSnapshot;
use crate::swarm::{DropReason, Swarm, SwarmEvent};
use crate::transport::{CloseReason, Limit};

/// The `Content-Type` of [`NodeMetrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Why metrics could not be set up or rendered.
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// Counters fed from swarm events.
#[derive(Clone)]
struct EventCounters {
    /// Authenticated connections established.
    handshakes_ok: IntCounter,
    /// Failed connection attempts, by reason.
    handshakes_failed: IntCounterVec,
    /// Closed connections, by reason.
    disconnects: IntCounterVec,
    /// Inbound messages dropped, by reason.
    dropped: IntCounterVec,
    /// Events the counting task missed because it fell behind.
    lagged: IntCounter,
}

impl EventCounters {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::with_opts(Opts::new(name, help))?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let vec = |name: &str, help: &str| -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), &["reason"])?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        Ok(Self {
            handshakes_ok: counter(
                "kadmesh_handshakes_ok_total",
                "Authenticated connections established (handshakes that succeeded).",
            )?,
            handshakes_failed: vec(
                "kadmesh_handshakes_failed_total",
                "Connection attempts that failed before authentication, by reason.",
            )?,
            disconnects: vec(
                "kadmesh_disconnects_total",
                "Peer connections closed, by reason.",
            )?,
            dropped: vec(
                "kadmesh_messages_dropped_total",
                "Inbound messages dropped without delivery, by reason.",
            )?,
            lagged: counter(
                "kadmesh_metrics_events_lagged_total",
                "Swarm events the metrics task missed because it fell behind.",
            )?,
        })
    }

    fn count(&self, event: &SwarmEvent) {
        match event {
            SwarmEvent::PeerConnected(_) => self.handshakes_ok.inc(),
            SwarmEvent::HandshakeFailed { reason, .. } => self
                .handshakes_failed
                .with_label_values(&[close_reason_label(reason).as_str()])
                .inc(),
            SwarmEvent::PeerDisconnected { reason, .. } => self
                .disconnects
                .with_label_values(&[close_reason_label(reason).as_str()])
                .inc(),
            SwarmEvent::MessageDropped { reason, .. } => self
                .dropped
                .with_label_values(&[variant_label(&format!("{reason:?}")).as_str()])
                .inc(),
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }
}

/// The metrics of one node. Create with [`NodeMetrics::start`]; stop with [`NodeMetrics::shutdown`].
pub struct NodeMetrics {
    /// The node.
    swarm: Swarm,
    /// When the node started (roughly: when its metrics started).
    started: Instant,
    /// This node's registry.
    registry: Registry,
    /// Messages the API could not hand to a subscriber, by reason.
    api_dropped: IntCounterVec,
    /// Stops the event task.
    cancel: CancellationToken,
    /// The event task.
    tasks: TaskTracker,
}

impl NodeMetrics {
    /// Sets up the registry and starts counting `swarm`'s events.
    pub fn start(swarm: Swarm) -> Result<Arc<NodeMetrics>, MetricsError> {
        let registry = Registry::new();
        let counters = EventCounters::new(&registry)?;
        let api_dropped = IntCounterVec::new(
            Opts::new(
                "kadmesh_api_messages_dropped_total",
                "Inbound messages of API protocols that no SSE subscriber received, by reason.",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(api_dropped.clone()))?;
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let mut events = swarm.events();
        let stop = cancel.clone();
        tasks.spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = stop.cancelled() => return,
                    e = events.recv() => e,
                };
                match event {
                    Ok(event) => counters.count(&event),
                    Err(RecvError::Lagged(n)) => counters.lagged.inc_by(n),
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Ok(Arc::new(NodeMetrics {
            swarm,
            started: Instant::now(),
            registry,
            api_dropped,
            cancel,
            tasks,
        }))
    }

    /// Time since [`NodeMetrics::start`].
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Counts an API message no subscriber received (`reason`: `no_subscriber`, `subscriber_lagged`).
    pub fn api_dropped(&self, reason: &str, n: u64) {
        self.api_dropped.with_label_values(&[reason]).inc_by(n);
    }

    /// Every metric in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> Result<String, MetricsError> {
        let mut families = self.registry.gather();
        families.extend(self.scrape());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::new();
        TextEncoder::new().encode(&families, &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Stops the event task and waits for it.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// The families read from the swarm now.
    fn scrape(&self) -> Vec<MetricFamily> {
        let swarm = &self.swarm;
        let config = swarm.config();
        let local = swarm.local_node();
        let stats = swarm.stats();
        let table = swarm.table_snapshot();
        let table_size: usize = table.iter().map(|(_, nodes)| nodes.len()).sum();
        let mut per_bucket = vec![0usize; config.dht.bucket_count];
        for (index, nodes) in &table {
            if let Some(slot) = per_bucket.get_mut(*index) {
                *slot = nodes.len();
            }
        }
        let network_id = config.network_id.to_string();
        let mut out = vec![
            family(
                "kadmesh_info",
                "Node identity and version (always 1).",
                MetricType::GAUGE,
                vec![gauge(
                    &[
                        ("id", &local.id.to_string()),
                        ("network_id", &network_id),
                        ("client_version", &config.client_version),
                    ],
                    1.0,
                )],
            ),
            single(
                "kadmesh_uptime_seconds",
                "Seconds since the node started.",
                MetricType::GAUGE,
                self.uptime().as_secs_f64(),
            ),
            single(
                "kadmesh_connections",
                "Open authenticated peer connections.",
                MetricType::GAUGE,
                swarm.connected_peers().len() as f64,
            ),
            single(
                "kadmesh_routing_table_size",
                "Nodes in the routing table.",
                MetricType::GAUGE,
                table_size as f64,
            ),
            family(
                "kadmesh_routing_table_bucket_nodes",
                "Nodes in each k-bucket of the routing table.",
                MetricType::GAUGE,
                per_bucket
                    .iter()
                    .enumerate()
                    .map(|(i, n)| gauge(&[("bucket", &i.to_string())], *n as f64))
                    .collect(),
            ),
        ];
        let counters = [
            (
                "kadmesh_envelopes_received_total",
                "Envelopes received from peers (all protocols, including the node's own).",
                &stats.messages_in,
            ),
            (
                "kadmesh_envelopes_sent_total",
                "Envelopes handed to the transport.",
                &stats.messages_out,
            ),
            (
                "kadmesh_messages_delivered_total",
                "Messages delivered to registered protocols.",
                &stats.delivered,
            ),
            (
                "kadmesh_responses_matched_total",
                "Responses matched to pending requests.",
                &stats.responses_matched,
            ),
            (
                "kadmesh_findnode_rejected_total",
                "FindNode requests or responses rejected as malformed or oversized.",
                &stats.findnode_bad,
            ),
            (
                "kadmesh_lookups_total",
                "Iterative lookups completed.",
                &stats.lookups,
            ),
        ];
        out.extend(plain_counters(&counters));
        let g = &stats.gossip;
        let gossip = [
            (
                "kadmesh_gossip_broadcasts_total",
                "Gossip messages this node authored.",
                &g.broadcasts,
            ),
            (
                "kadmesh_gossip_received_total",
                "Gossip envelopes received.",
                &g.received,
            ),
            (
                "kadmesh_gossip_delivered_total",
                "Gossip messages delivered to a protocol (each at most once).",
                &g.delivered,
            ),
            (
                "kadmesh_gossip_duplicates_total",
                "Gossip copies of messages already seen.",
                &g.duplicates,
            ),
            (
                "kadmesh_gossip_sent_total",
                "Gossip envelopes sent (authored and relayed).",
                &g.sent,
            ),
            (
                "kadmesh_gossip_relayed_total",
                "Gossip envelopes relayed for other authors.",
                &g.relayed,
            ),
            (
                "kadmesh_gossip_unknown_protocol_total",
                "Valid gossip messages of protocols not registered here.",
                &g.unknown_protocol,
            ),
            (
                "kadmesh_gossip_penalties_total",
                "Penalties given to peers for invalid messages.",
                &g.penalties,
            ),
        ];
        out.extend(plain_counters(&gossip));
        let rejected = [
            ("relay_queue_full", &g.relay_dropped),
            ("malformed", &g.rejected_malformed),
            ("signature", &g.rejected_signature),
            ("expired", &g.rejected_expired),
            ("future", &g.rejected_future),
            ("validator", &g.rejected_validator),
        ];
        out.push(family(
            "kadmesh_gossip_dropped_total",
            "Gossip messages rejected or not relayed, by reason.",
            MetricType::COUNTER,
            rejected
                .iter()
                .map(|(reason, v)| counter(&[("reason", reason)], v.load(Ordering::Relaxed)))
                .collect(),
        ));
        let traffic = stats.traffic.snapshot();
        let mut messages = Vec::new();
        let mut bytes = Vec::new();
        for t in &traffic {
            let p = t.protocol.as_str();
            messages.push(counter(
                &[("direction", "in"), ("protocol", p)],
                t.messages_in,
            ));
            messages.push(counter(
                &[("direction", "out"), ("protocol", p)],
                t.messages_out,
            ));
            bytes.push(counter(&[("direction", "in"), ("protocol", p)], t.bytes_in));
            bytes.push(counter(
                &[("direction", "out"), ("protocol", p)],
                t.bytes_out,
            ));
        }
        out.push(family(
            "kadmesh_messages_total",
            "Messages sent and received, by protocol (\"_other\": unregistered or beyond the label limit).",
            MetricType::COUNTER,
            messages,
        ));
        out.push(family(
            "kadmesh_message_bytes_total",
            "Payload bytes sent and received, by protocol.",
            MetricType::COUNTER,
            bytes,
        ));
        out.extend(ban_families(&swarm.ban_stats()));
        out.push(histogram(
            "kadmesh_lookup_hops",
            "Rounds (hops) of completed lookups.",
            &stats.lookup_histograms.hops.snapshot(),
        ));
        out.push(histogram(
            "kadmesh_lookup_duration_seconds",
            "Time of completed lookups, seconds.",
            &stats.lookup_histograms.seconds.snapshot(),
        ));
        out.extend(limit_families(swarm));
        out.extend(dht_defences(swarm));
        out
    }
}

/// The limit and drop families: how often each limit bit, everything dropped on purpose, the pending
/// handshakes and the connection slots taken.
fn limit_families(swarm: &Swarm) -> Vec<MetricFamily> {
    let transport = swarm.transport_stats();
    let stats = swarm.stats();
    let mut hits: Vec<proto::Metric> = transport
        .limit_hits
        .iter()
        .map(|(limit, n)| counter(&[("limit", Limit::label(*limit))], *n))
        .collect();
    let payload = stats.drops.get(DropReason::PayloadTooLarge)
        + stats.payload_refused.load(Ordering::Relaxed);
    hits.push(counter(&[("limit", "max_payload")], payload));
    let mut dropped: Vec<proto::Metric> = stats
        .drops
        .snapshot()
        .iter()
        .map(|(reason, n)| counter(&[("reason", reason)], *n))
        .collect();
    dropped.push(counter(
        &[("reason", "keepalive_unsent")],
        transport.keepalive_dropped,
    ));
    dropped.push(counter(
        &[("reason", "gossip_relay_queue_full")],
        stats.gossip.relay_dropped.load(Ordering::Relaxed),
    ));
    vec![
        family(
            "kadmesh_limit_hits_total",
            "Times a configured limit refused or closed something, by limit.",
            MetricType::COUNTER,
            hits,
        ),
        family(
            "kadmesh_dropped_total",
            "Messages and frames dropped on purpose, by reason (counted where dropped).",
            MetricType::COUNTER,
            dropped,
        ),
        single(
            "kadmesh_pending_handshakes",
            "Inbound handshakes in progress.",
            MetricType::GAUGE,
            transport.pending_handshakes as f64,
        ),
        single(
            "kadmesh_pending_handshakes_peak",
            "The most inbound handshakes ever in progress at once.",
            MetricType::GAUGE,
            transport.peak_pending_handshakes as f64,
        ),
        family(
            "kadmesh_connection_slots",
            "Connection slots taken (dialling, handshaking, open or draining), by direction.",
            MetricType::GAUGE,
            vec![
                gauge(&[("direction", "inbound")], transport.inbound as f64),
                gauge(&[("direction", "outbound")], transport.outbound as f64),
            ],
        ),
    ]
}

/// The ban metrics ([`crate::ban`]).
fn ban_families(b: &crate::ban::BanStats) -> Vec<MetricFamily> {
    use crate::ban::{BanReason, Offence};
    let pairs = |label: &str, values: &[(&str, u64)]| -> Vec<proto::Metric> {
        values
            .iter()
            .map(|(v, n)| counter(&[(label, v)], *n))
            .collect()
    };
    let reasons: Vec<(&str, u64)> = BanReason::ALL
        .iter()
        .map(BanReason::label)
        .zip(b.bans)
        .collect();
    let offences: Vec<(&str, u64)> = Offence::ALL
        .iter()
        .map(Offence::label)
        .zip(b.offences)
        .collect();
    vec![
        family(
            "kadmesh_bans_active",
            "Bans in force, by kind (node id or IP).",
            MetricType::GAUGE,
            vec![
                gauge(&[("kind", "id")], b.active_ids as f64),
                gauge(&[("kind", "ip")], b.active_ips as f64),
            ],
        ),
        family(
            "kadmesh_bans_total",
            "Bans made, by reason.",
            MetricType::COUNTER,
            pairs("reason", &reasons),
        ),
        family(
            "kadmesh_ban_offences_total",
            "Offences recorded against peers, by offence.",
            MetricType::COUNTER,
            pairs("offence", &offences),
        ),
        family(
            "kadmesh_banned_refusals_total",
            "Connections and dials refused because the node id or the IP is banned.",
            MetricType::COUNTER,
            pairs("by", &[("id", b.refused_by_id), ("ip", b.refused_by_ip)]),
        ),
        family(
            "kadmesh_ban_evictions_total",
            "Bans and per-IP offence records evicted to stay within their caps.",
            MetricType::COUNTER,
            pairs(
                "what",
                &[
                    ("ban", b.evicted_bans),
                    ("offence_record", b.evicted_records),
                ],
            ),
        ),
    ]
}

/// The routing-table and lookup defence families (see the module table).
fn dht_defences(swarm: &Swarm) -> Vec<MetricFamily> {
    let d = &swarm.stats().dht;
    let by_reason = |counts: &crate::swarm::LabelCounts| -> Vec<proto::Metric> {
        counts
            .snapshot()
            .into_iter()
            .map(|(reason, n)| counter(&[("reason", reason)], n))
            .collect()
    };
    let (inbound_only, candidates) = swarm.table_unverified_and_candidates();
    // The text encoder refuses a family without samples: a reason appears once it was counted.
    let labelled = [
        (
            "kadmesh_routing_table_rejected_total",
            "Nodes the routing table refused, by reason (subnet_bucket, subnet_table, inbound_limit, bucket_full, self).",
            &d.table_rejected,
        ),
        (
            "kadmesh_routing_table_evicted_total",
            "Routing-table entries removed, by reason (ping, failures, address_change).",
            &d.table_evicted,
        ),
        (
            "kadmesh_lookup_responses_rejected_total",
            "FindNode answers a lookup rejected as impossible, by reason.",
            &d.lookup_rejected,
        ),
    ];
    let mut out: Vec<MetricFamily> = labelled
        .iter()
        .map(|(name, help, counts)| (name, help, by_reason(counts)))
        .filter(|(_, _, samples)| !samples.is_empty())
        .map(|(name, help, samples)| family(name, help, MetricType::COUNTER, samples))
        .collect();
    out.extend([
        single(
            "kadmesh_routing_table_inbound_only",
            "Routing-table entries that contacted us but have not answered us (never served to others).",
            MetricType::GAUGE,
            inbound_only as f64,
        ),
        single(
            "kadmesh_routing_table_candidates",
            "Replacement candidates waiting in full buckets.",
            MetricType::GAUGE,
            candidates as f64,
        ),
    ]);
    let counters = [
        (
            "kadmesh_routing_table_promoted_total",
            "Replacement candidates promoted into a freed routing-table slot.",
            &d.table_promoted,
        ),
        (
            "kadmesh_routing_table_verify_pings_total",
            "Pings sent to verify inbound-only nodes.",
            &d.verify_pings,
        ),
        (
            "kadmesh_routing_table_verify_skipped_total",
            "Verification pings not sent because the in-flight limit was reached.",
            &d.verify_skipped,
        ),
    ];
    out.extend(plain_counters(&counters));
    out
}

fn labels(pairs: &[(&str, &str)]) -> Vec<proto::LabelPair> {
    pairs
        .iter()
        .map(|(name, value)| {
            let mut l = proto::LabelPair::default();
            l.set_name((*name).to_owned());
            l.set_value((*value).to_owned());
            l
        })
        .collect()
}

fn gauge(pairs: &[(&str, &str)], value: f64) -> proto::Metric {
    let mut g = proto::Gauge::default();
    g.set_value(value);
    let mut m = proto::Metric::from_gauge(g);
    m.set_label(labels(pairs));
    m
}

fn counter(pairs: &[(&str, &str)], value: u64) -> proto::Metric {
    let mut c = proto::Counter::default();
    c.set_value(value as f64);
    let mut m = proto::Metric::default();
    m.set_counter(c);
    m.set_label(labels(pairs));
    m
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<proto::Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_owned());
    f.set_help(help.to_owned());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

/// One unlabelled counter family per `(name, help, value)`.
fn plain_counters(counters: &[(&str, &str, &AtomicU64)]) -> impl Iterator<Item = MetricFamily> {
    counters.iter().map(|(name, help, value)| {
        single(
            name,
            help,
            MetricType::COUNTER,
            value.load(Ordering::Relaxed) as f64,
        )
    })
}

fn single(name: &str, help: &str, kind: MetricType, value: f64) -> MetricFamily {
    let metric = match kind {
        MetricType::COUNTER => counter(&[], value as u64),
        _ => gauge(&[], value),
    };
    family(name, help, kind, vec![metric])
}

fn histogram(name: &str, help: &str, snap: &HistogramSnapshot) -> MetricFamily {
    let mut h = proto::Histogram::default();
    h.set_sample_count(snap.count);
    h.set_sample_sum(snap.sum);
    h.set_bucket(
        snap.buckets
            .iter()
            .map(|(bound, cumulative)| {
                let mut b = proto::Bucket::default();
                b.set_upper_bound(*bound);
                b.set_cumulative_count(*cumulative);
                b
            })
            .collect(),
    );
    let mut m = proto::Metric::default();
    m.set_histogram(h);
    family(name, help, MetricType::HISTOGRAM, vec![m])
}

/// A stable label for why a connection closed: the variant name in snake case (`handshake_<variant>` for
/// handshake failures), so the label set stays small.
pub fn close_reason_label(reason: &CloseReason) -> String {
    match reason {
        CloseReason::Handshake(e) => format!("handshake_{}", variant_label(&format!("{e:?}"))),
        other => variant_label(&format!("{other:?}")),
    }
}

/// The snake-case name of the enum variant a `Debug` rendering starts with (`FrameTooLarge { .. }` gives
/// `frame_too_large`).
pub fn variant_label(debug: &str) -> String {
    let mut out = String::new();
    for c in debug.chars().take_while(|c| c.is_ascii_alphanumeric()) {
        if c.is_ascii_uppercase() {
            if !out.is_empty() {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    if out.is_empty() {
        out.push_str("unknown");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::handshake::HandshakeError;

    #[test]
    fn reason_labels_are_variant_names() {
        assert_eq!(
            close_reason_label(&CloseReason::RemoteClosed),
            "remote_closed"
        );
        assert_eq!(
            close_reason_label(&CloseReason::FrameTooLarge { len: 1, max: 2 }),
            "frame_too_large"
        );
        assert_eq!(
            close_reason_label(&CloseReason::Handshake(HandshakeError::BadSignature)),
            "handshake_bad_signature"
        );
        assert_eq!(variant_label("UnknownProtocol"), "unknown_protocol");
        assert_eq!(variant_label(""), "unknown");
    }
}
