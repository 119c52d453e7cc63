//! The Swarm's DHT side: serving FindNode, sending FindNode requests, driving [`Lookup`]s, the
//! liveness ping that decides full-bucket evictions, bootstrap and the periodic bucket refresh.

use std::sync::Weak;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;

use super::{Message, SwarmInner};
use crate::dht::lookup::{
    Lookup, LookupAction, LookupConfig, LookupOutcome, LookupReport, LookupResult, LookupTarget,
};
use crate::dht::seeds;
use crate::dht::table::{Entry, UpdateOutcome};
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

    /// Records that `node` proved itself alive; pings a full bucket's oldest entry when needed.
    ///
    /// The address comes from an authenticated connection, so a known node that moved (restarted on
    /// another port) is reachable again at once.
    pub(super) fn saw_node(&self, node: &NodeInfo) {
        let now = Instant::now();
        let outcome = {
            let mut table = self.table();
            match table.entry(node) {
                Entry::Present(mut present) => {
                    if present.node().addr != node.addr {
                        present.update_address(node.addr);
                    }
                    present.refresh(now);
                    return;
                }
                _ => table.update(node, now),
            }
        };
        if let UpdateOutcome::PingNeeded { lru } = outcome {
            self.spawn_liveness_ping(lru);
        }
    }

    /// Pings `lru` in the background; the table keeps it if it answers, else takes the candidate.
    fn spawn_liveness_ping(&self, lru: NodeInfo) {
        let weak = self.weak_self();
        let timeout = self.config.dht.ping_timeout;
        self.tasks.spawn(async move {
            let Some(inner) = weak.upgrade() else { return };
            let alive = inner
                .request_raw(&lru, PING_PROTOCOL, Bytes::new(), timeout)
                .await
                .is_ok();
            inner.table().on_ping_result(&lru.id, alive, Instant::now());
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
                let nodes = self.table().nearest(&target, max);
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

    /// Asks `node` for the nodes it knows closest to `target`.
    async fn find_node(&self, node: &NodeInfo, target: &DhtId) -> Result<Vec<NodeInfo>, Error> {
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
            .map_err(Error::from)
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
                    tokio::select! {
                        Some((node, result)) = in_flight.next() => match result {
                            Ok(nodes) => lookup.on_response(&node.id, nodes, Instant::now()),
                            Err(_) => lookup.on_failure(&node.id, Instant::now()),
                        },
                        _ = sleep => {}
                        _ = self.cancel.cancelled() => return Err(Error::Shutdown),
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
