//! The Swarm's DHT side: serving FindNode, sending FindNode requests, driving [`Lookup`]s, the
//! liveness ping that decides full-bucket evictions, the ping that verifies inbound-only nodes, failure
//! reports, bootstrap and the periodic bucket refresh.
//!
//! How nodes enter the routing table ([`Seen`]): a node that answers a request of ours is *answered*
//! (recorded by the requester: [`SwarmInner::request_raw`] for pings and application requests, the lookup
//! driver for FindNode once the answer passed the lookup's checks); a node that only contacts us (requests,
//! one-way and gossip messages, see `dispatch`) is *inbound-only* and gets one verification ping (at most
//! [`MAX_VERIFYING`] in flight), so honest peers become servable. Failed requests of ours (errors,
//! timeouts, undecodable or rejected FindNode answers, failed pings) are reported to the table, which
//! removes a node after `dht.max_failures` in a row.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Weak};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;

use super::{Message, SwarmInner};
use crate::config::Config;
use crate::dht::lookup::{
    Lookup, LookupAction, LookupConfig, LookupOutcome, LookupReport, LookupResult, LookupTarget,
    Verdict,
};
use crate::dht::seeds;
use crate::dht::subnet::SubnetPolicy;
use crate::dht::table::{Entry, FailureOutcome, PingOutcome, Seen, TableConfig, UpdateOutcome};
use crate::error::Error;
use crate::identity::{DhtId, NodeId};
use crate::peer::NodeInfo;
use crate::wire::{self, pb};

/// Reserved protocol of FindNode requests and responses.
pub const FINDNODE_PROTOCOL: &str = "/kadmesh/findnode/1";
/// Reserved protocol of DHT liveness pings.
pub const PING_PROTOCOL: &str = "/kadmesh/ping/1";

/// Why a FindNode response was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FindNodeError {
    /// The response did not decode, or a node in it was invalid.
    #[error("malformed FindNode response: {0}")]
    Malformed(String),
    /// More nodes than asked for.
    #[error("FindNode response with {got} nodes, at most {max} allowed")]
    Oversized {
        /// Nodes received.
        got: usize,
        /// Nodes asked for.
        max: usize,
    },
}

/// Most verification pings of inbound-only nodes in flight at once; further inbound-only nodes wait until
/// they contact us again.
pub const MAX_VERIFYING: usize = 32;

/// Counters keyed by a static label (a reason), for metrics. The lock is held only to add or copy.
#[derive(Debug, Default)]
pub struct LabelCounts(Mutex<BTreeMap<&'static str, u64>>);

impl LabelCounts {
    /// Adds one to `label`.
    pub fn inc(&self, label: &'static str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(label).or_insert(0) += 1;
    }

    /// Every label counted so far, with its count.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// The count of `label`.
    pub fn get(&self, label: &str) -> u64 {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(label).copied().unwrap_or(0)
    }
}

/// Counters of the routing-table and lookup defences (a part of [`SwarmStats`](super::SwarmStats)).
#[derive(Debug, Default)]
pub struct DhtStats {
    /// Nodes the table refused, by [`RejectReason::label`](crate::dht::table::RejectReason::label).
    pub table_rejected: LabelCounts,
    /// Entries removed: `ping` (an LRU ping failed), `failures` (`dht.max_failures` failed requests in a
    /// row), `address_change`.
    pub table_evicted: LabelCounts,
    /// Replacement candidates promoted into a freed slot.
    pub table_promoted: AtomicU64,
    /// FindNode answers the lookup rejected as impossible, by
    /// [`InvalidResponse::label`](crate::dht::lookup::InvalidResponse::label).
    pub lookup_rejected: LabelCounts,
    /// Verification pings sent to inbound-only nodes.
    pub verify_pings: AtomicU64,
    /// Verification pings not sent because [`MAX_VERIFYING`] were in flight.
    pub verify_skipped: AtomicU64,
}

/// The DHT's own state in the swarm: the inbound-only nodes being verified.
#[derive(Debug, Default)]
pub(crate) struct DhtState {
    /// Nodes with a verification ping in flight (at most [`MAX_VERIFYING`]).
    verifying: Mutex<HashSet<NodeId>>,
}

/// Removes a node from the verifying set when its ping task ends, however it ends.
struct Verifying<'a> {
    /// The set.
    state: &'a DhtState,
    /// The node.
    id: NodeId,
}

impl Drop for Verifying<'_> {
    fn drop(&mut self) {
        let mut set = self
            .state
            .verifying
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        set.remove(&self.id);
    }
}

/// The routing table's settings from the node's configuration.
pub(super) fn table_config(config: &Config) -> TableConfig {
    let d = &config.dht;
    TableConfig {
        bucket_count: d.bucket_count,
        bucket_size: d.bucket_size,
        replacement_cache: d.replacement_cache,
        max_inbound_per_bucket: d.max_inbound_per_bucket,
        max_per_subnet_bucket: d.max_per_subnet_bucket,
        max_per_subnet_table: d.max_per_subnet_table,
        subnets: SubnetPolicy {
            exempt_local: config.net.exempt_local,
        },
        max_failures: d.max_failures,
        ..TableConfig::default()
    }
}

impl super::Swarm {
    /// Whether `id` is a verified entry of the routing table: one this node serves to others.
    pub fn table_serves(&self, id: &NodeId) -> bool {
        self.inner.table().is_verified(id)
    }

    /// Inbound-only entries and replacement candidates of the routing table.
    pub fn table_unverified_and_candidates(&self) -> (usize, usize) {
        let table = self.inner.table();
        table.buckets().fold((0, 0), |(inbound, cached), b| {
            (inbound + b.inbound_only(), cached + b.candidates().len())
        })
    }
}

/// What [`Swarm::bootstrap`](super::Swarm::bootstrap) did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapReport {
    /// Boot nodes tried.
    pub boot_nodes: usize,
    /// Boot nodes that answered.
    pub boot_nodes_answered: usize,
    /// Lookups run (own id, then random ids in empty buckets).
    pub lookups: u32,
    /// FindNode requests sent in all.
    pub rpcs: u32,
    /// Routing table size at the end.
    pub table_size: usize,
    /// Time taken.
    pub elapsed: std::time::Duration,
}

impl SwarmInner {
    fn lookup_config(&self) -> LookupConfig {
        let d = &self.config.dht;
        LookupConfig {
            alpha: d.alpha,
            k: d.bucket_size,
            request_timeout: d.request_timeout,
            overall_timeout: d.lookup_timeout,
            disjoint_paths: self.config.lookup.disjoint_paths,
            max_per_subnet: self.config.lookup.max_per_subnet,
            subnets: SubnetPolicy {
                exempt_local: self.config.net.exempt_local,
            },
        }
    }

    pub(super) fn table(&self) -> std::sync::MutexGuard<'_, crate::dht::table::RoutingTable> {
        // The table's invariants hold between calls; a panic elsewhere does not corrupt it.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The node's seeded random number generator.
    pub(super) fn rng(&self) -> std::sync::MutexGuard<'_, rand::rngs::StdRng> {
        self.rng.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that we saw `node` as `seen` says; pings a full bucket's oldest entry when needed.
    ///
    /// The address comes from an authenticated connection, so a known node that moved (restarted on
    /// another port) is reachable again at once, unless the move breaks the subnet limits: then it is
    /// removed.
    pub(super) fn saw_node(&self, node: &NodeInfo, seen: Seen) {
        let now = Instant::now();
        let stats = &self.stats.dht;
        let outcome = {
            let mut table = self.table();
            if let Entry::Present(mut present) = table.entry(node)
                && present.node().addr != node.addr
                && present.update_address(node.addr).is_err()
            {
                present.remove();
                stats.table_evicted.inc("address_change");
                return;
            }
            table.update(node, seen, now)
        };
        match outcome {
            UpdateOutcome::PingNeeded { lru } => self.spawn_liveness_ping(lru),
            UpdateOutcome::Rejected { reason } => stats.table_rejected.inc(reason.label()),
            _ => {}
        }
    }

    /// A request of ours to `node` failed: tells the table, which removes it after repeated failures.
    fn request_failed(&self, node: &NodeInfo) {
        let outcome = self.table().on_request_failed(&node.id);
        if let FailureOutcome::Evicted { promoted, .. } = outcome {
            self.stats.dht.table_evicted.inc("failures");
            if promoted.is_some() {
                self.stats
                    .dht
                    .table_promoted
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Pings `lru` in the background; the table keeps it if it answers, else promotes a candidate.
    fn spawn_liveness_ping(&self, lru: NodeInfo) {
        let weak = self.weak_self();
        let timeout = self.config.dht.ping_timeout;
        self.tasks.spawn(async move {
            let Some(inner) = weak.upgrade() else { return };
            let alive = inner
                .request_raw(&lru, PING_PROTOCOL, Bytes::new(), timeout)
                .await
                .is_ok();
            let outcome = inner.table().on_ping_result(&lru.id, alive, Instant::now());
            if let PingOutcome::Evicted { promoted, .. } = outcome {
                inner.stats.dht.table_evicted.inc("ping");
                if promoted.is_some() {
                    inner
                        .stats
                        .dht
                        .table_promoted
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }

    /// Pings an unverified `node` in the background (once at a time per node, at most [`MAX_VERIFYING`]
    /// at once): its answer makes it verified (`request_raw` records it), a failure counts against it.
    fn spawn_verify(&self, node: NodeInfo) {
        {
            let mut set = self.dht.verifying.lock().unwrap_or_else(|e| e.into_inner());
            if set.contains(&node.id) {
                return;
            }
            if set.len() >= MAX_VERIFYING {
                self.stats
                    .dht
                    .verify_skipped
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            set.insert(node.id);
        }
        self.stats.dht.verify_pings.fetch_add(1, Ordering::Relaxed);
        let weak = self.weak_self();
        let timeout = self.config.dht.ping_timeout;
        self.tasks.spawn(async move {
            let Some(inner) = weak.upgrade() else { return };
            let _verifying = Verifying {
                state: &inner.dht,
                id: node.id,
            };
            match inner
                .request_raw(&node, PING_PROTOCOL, Bytes::new(), timeout)
                .await
            {
                Ok(_) | Err(Error::Shutdown) => {}
                Err(_) => inner.request_failed(&node),
            }
        });
    }

    /// Answers a node-internal request (FindNode or ping). Returns false if `protocol` is not internal.
    pub(super) async fn serve_internal(&self, message: &Message) -> bool {
        let reply = match message.protocol.as_str() {
            FINDNODE_PROTOCOL => {
                let Ok(req) =
                    wire::decode::<pb::FindNodeRequest>("FindNodeRequest", message.data())
                else {
                    self.stats.findnode_bad.fetch_add(1, Ordering::Relaxed);
                    return true;
                };
                let Ok(target) = DhtId::from_slice(&req.target) else {
                    self.stats.findnode_bad.fetch_add(1, Ordering::Relaxed);
                    return true;
                };
                let max = (req.max_results as usize).min(self.config.dht.bucket_size);
                // A node doing lookups takes part in the DHT: verify it, so that we can serve it.
                if !self.table().is_verified(&message.sender.id) {
                    self.spawn_verify(message.sender);
                }
                // Only nodes that answered us are served: an inbound-only node may not even listen.
                let nodes = self.table().nearest_verified(&target, max);
                wire::encode(&pb::FindNodeResponse {
                    nodes: nodes.iter().map(pb::NodeInfo::from).collect(),
                })
            }
            PING_PROTOCOL => Bytes::new(),
            _ => return false,
        };
        if message.is_request()
            && let Err(e) = message.respond(reply).await
        {
            tracing::debug!(peer = %message.sender.id.short(), error = %e, "could not answer");
        }
        true
    }

    /// Asks `node` for the nodes it knows closest to `target`. Returns the responder as the connection
    /// authenticated it, and the decoded nodes.
    async fn find_node(
        &self,
        node: &NodeInfo,
        target: &DhtId,
    ) -> Result<(NodeInfo, Vec<NodeInfo>), Error> {
        let k = self.config.dht.bucket_size;
        let request = wire::encode(&pb::FindNodeRequest {
            target: target.0.to_vec(),
            max_results: u32::try_from(k).unwrap_or(u32::MAX),
        });
        let timeout = self.config.dht.request_timeout;
        let response = self
            .request_raw(node, FINDNODE_PROTOCOL, request, timeout)
            .await?;
        parse_find_node_response(response.data(), k)
            .inspect_err(|e| {
                self.stats.findnode_bad.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %node.id.short(), error = %e, "bad FindNode response");
            })
            .map(|nodes| (*response.sender(), nodes))
            .map_err(Error::from)
    }

    /// Feeds the result of a FindNode to `node` to `lookup`, and what it says about `node` to the table.
    fn on_find_node_result(
        &self,
        lookup: &mut Lookup,
        node: &NodeInfo,
        result: Result<(NodeInfo, Vec<NodeInfo>), Error>,
    ) {
        let now = Instant::now();
        match result {
            Ok((sender, nodes)) => match lookup.on_response(&node.id, nodes, now) {
                Verdict::Accepted => self.saw_node(&sender, Seen::Answered),
                Verdict::Rejected(reason) => {
                    self.stats.findnode_bad.fetch_add(1, Ordering::Relaxed);
                    self.stats.dht.lookup_rejected.inc(reason.label());
                    tracing::debug!(peer = %node.id.short(), ?reason, "impossible FindNode response");
                    self.request_failed(node);
                }
                Verdict::Ignored => {}
            },
            Err(Error::Shutdown) => lookup.on_failure(&node.id, now),
            Err(_) => {
                lookup.on_failure(&node.id, now);
                self.request_failed(node);
            }
        }
    }

    /// Runs one iterative lookup from `seeds` (the table's closest when `None`).
    pub(super) async fn run_lookup(
        &self,
        target: LookupTarget,
        seeds: Option<Vec<NodeInfo>>,
    ) -> Result<LookupOutcome, Error> {
        let target_id = target.dht_id();
        let cfg = self.lookup_config();
        let seeds = seeds.unwrap_or_else(|| self.table().nearest(&target_id, cfg.k));
        let local = self.keypair.node_id();
        let mut lookup = Lookup::new(target, local, seeds, cfg, Instant::now());
        let mut in_flight = FuturesUnordered::new();
        let outcome = loop {
            match lookup.next(Instant::now()) {
                LookupAction::Query(node) => {
                    in_flight.push(async move { (node, self.find_node(&node, &target_id).await) });
                }
                LookupAction::Finished(outcome) => break outcome,
                LookupAction::Wait(deadline) => {
                    let sleep = async {
                        match deadline {
                            Some(at) => tokio::time::sleep_until(at).await,
                            None => std::future::pending().await,
                        }
                    };
                    // Biased: a result due at the same instant as a deadline is always taken first
                    // (its failure report to the table must not depend on a coin toss: simulations
                    // are reproducible from their seed).
                    tokio::select! {
                        biased;
                        _ = self.cancel.cancelled() => return Err(Error::Shutdown),
                        Some((node, result)) = in_flight.next() => {
                            self.on_find_node_result(&mut lookup, &node, result);
                        }
                        _ = sleep => {}
                    }
                }
            }
        };
        self.stats.lookups.fetch_add(1, Ordering::Relaxed);
        self.stats.lookup_histograms.observe(&outcome.report);
        {
            let mut table = self.table();
            if let Some(idx) = table.bucket_index(&target_id) {
                table.touch_bucket(idx, Instant::now());
            }
        }
        Ok(outcome)
    }

    /// Finds the address of `id`: the routing table, connected peers, else a lookup.
    pub(super) async fn find_address(
        &self,
        id: &NodeId,
    ) -> Result<(NodeInfo, Option<LookupReport>), Error> {
        let known = self.table().get(id);
        if let Some(node) = known {
            return Ok((node, None));
        }
        if let Some(node) = self
            .transport()?
            .connected_peers()
            .into_iter()
            .find(|n| n.id == *id)
        {
            return Ok((node, None));
        }
        let outcome = self.run_lookup(LookupTarget::Node(*id), None).await?;
        match outcome.result {
            LookupResult::Found(node) => Ok((node, Some(outcome.report))),
            _ => Err(Error::NodeNotFound(*id)),
        }
    }

    /// The configured boot nodes: descriptors from the config, then every seed-list file.
    fn boot_nodes(&self) -> Result<Vec<NodeInfo>, Error> {
        let mut nodes: Vec<NodeInfo> = Vec::new();
        for text in &self.config.bootstrap.nodes {
            nodes.push(text.parse()?);
        }
        for file in &self.config.bootstrap.files {
            nodes.extend(seeds::load(file)?);
        }
        let local = self.keypair.node_id();
        nodes.retain(|n| n.id != local);
        Ok(crate::peer::union(&nodes, &[]))
    }

    /// Joins the network through `boot` (the configured boot nodes when `None`).
    pub(super) async fn bootstrap(
        &self,
        boot: Option<Vec<NodeInfo>>,
    ) -> Result<BootstrapReport, Error> {
        let started = Instant::now();
        let boot = match boot {
            Some(b) => b,
            None => self.boot_nodes()?,
        };
        if boot.is_empty() {
            return Err(Error::NoBootNodes);
        }
        let local = self.keypair.node_id();
        let own = self
            .run_lookup(LookupTarget::Closest(local.dht_id()), Some(boot.clone()))
            .await?;
        let answered = boot
            .iter()
            .filter(|b| own.responded.iter().any(|r| r.id == b.id))
            .count();
        if answered == 0 {
            return Err(Error::BootstrapFailed { tried: boot.len() });
        }
        let mut lookups = 1;
        let mut rpcs = own.report.rpcs;
        let min_table = self.config.dht.min_routing_table;
        // Then random ids in buckets still empty, until a round finds nothing new or the table is full enough.
        loop {
            let size = self.table().len();
            if size >= min_table {
                break;
            }
            let targets = self.probe_targets(None);
            if targets.is_empty() {
                break;
            }
            let mut round = FuturesUnordered::new();
            for target in targets {
                round.push(self.run_lookup(LookupTarget::Closest(target), None));
            }
            while let Some(outcome) = round.next().await {
                let outcome = outcome?;
                lookups += 1;
                rpcs += outcome.report.rpcs;
            }
            if self.table().len() <= size {
                break;
            }
        }
        let report = BootstrapReport {
            boot_nodes: boot.len(),
            boot_nodes_answered: answered,
            lookups,
            rpcs,
            table_size: self.table().len(),
            elapsed: started.elapsed(),
        };
        tracing::info!(table = report.table_size, lookups, rpcs, "bootstrapped");
        Ok(report)
    }

    /// Every `refresh_interval`: looks up a random id in each bucket untouched since, and bootstraps
    /// again if the table emptied.
    pub(super) async fn refresh_loop(
        weak: Weak<SwarmInner>,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        let interval = match weak.upgrade() {
            Some(inner) => inner.config.dht.refresh_interval,
            None => return,
        };
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let Some(inner) = weak.upgrade() else { return };
            if let Err(e) = inner.refresh_once(interval).await {
                tracing::debug!(error = %e, "refresh failed");
            }
        }
    }

    /// One refresh round: bootstraps again if the table is empty; else looks up our own id (so nodes
    /// that joined near us since learn of us, and we of them), then a random id in every bucket that is
    /// empty, or untouched for `stale_after`, above the deepest occupied one. Returns the lookups run.
    pub(super) async fn refresh_once(
        &self,
        stale_after: std::time::Duration,
    ) -> Result<u32, Error> {
        if self.table().is_empty() {
            let boot = self.boot_nodes()?;
            if boot.is_empty() {
                return Ok(0);
            }
            return Ok(self.bootstrap(Some(boot)).await?.lookups);
        }
        let own = LookupTarget::Closest(self.keypair.node_id().dht_id());
        let mut lookups = FuturesUnordered::new();
        lookups.push(self.run_lookup(own, None));
        for target in self.probe_targets(Some(stale_after)) {
            lookups.push(self.run_lookup(LookupTarget::Closest(target), None));
        }
        let mut ran = 0;
        while let Some(outcome) = lookups.next().await {
            outcome?;
            ran += 1;
        }
        Ok(ran)
    }

    /// Random ids to look up: one in each empty bucket (and, with `stale_after`, each bucket untouched
    /// that long) above the deepest occupied bucket. Buckets deeper than that are empty network-wide: the
    /// own-id lookup would have found their nodes, as they would be the closest to us.
    fn probe_targets(&self, stale_after: Option<std::time::Duration>) -> Vec<DhtId> {
        let t = self.table();
        let deepest = t
            .buckets()
            .filter(|b| !b.entries().is_empty())
            .map(|b| b.index())
            .max()
            .unwrap_or(0);
        let mut wanted = t.empty_buckets();
        if let Some(age) = stale_after {
            wanted.extend(t.stale_buckets(Instant::now(), age));
            wanted.sort_unstable();
            wanted.dedup();
        }
        wanted.retain(|&i| i < deepest);
        let mut rng = self.rng();
        wanted
            .into_iter()
            .map(|i| t.random_id_in_bucket(i, &mut *rng))
            .collect()
    }
}

/// Decodes and checks a FindNode response: at most `max` nodes, each valid.
pub fn parse_find_node_response(bytes: &[u8], max: usize) -> Result<Vec<NodeInfo>, FindNodeError> {
    let response: pb::FindNodeResponse = wire::decode("FindNodeResponse", bytes)
        .map_err(|e| FindNodeError::Malformed(e.to_string()))?;
    if response.nodes.len() > max {
        return Err(FindNodeError::Oversized {
            got: response.nodes.len(),
            max,
        });
    }
    response
        .nodes
        .iter()
        .map(|n| NodeInfo::try_from(n).map_err(|e| FindNodeError::Malformed(e.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    #[test]
    fn find_node_responses_are_checked() {
        let nodes: Vec<NodeInfo> = (0..3)
            .map(|i| {
                NodeInfo::new(
                    Keypair::random().node_id(),
                    format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
                )
            })
            .collect();
        let ok = wire::encode(&pb::FindNodeResponse {
            nodes: nodes.iter().map(pb::NodeInfo::from).collect(),
        });
        assert_eq!(parse_find_node_response(&ok, 3).unwrap(), nodes);
        assert_eq!(
            parse_find_node_response(&ok, 2),
            Err(FindNodeError::Oversized { got: 3, max: 2 })
        );
        assert!(matches!(
            parse_find_node_response(&[0xff, 0x01], 3),
            Err(FindNodeError::Malformed(_))
        ));
        let bad = wire::encode(&pb::FindNodeResponse {
            nodes: vec![pb::NodeInfo {
                node_id: vec![9; 33],
                address: "127.0.0.1:1".into(),
            }],
        });
        assert!(matches!(
            parse_find_node_response(&bad, 3),
            Err(FindNodeError::Malformed(_))
        ));
    }
}
