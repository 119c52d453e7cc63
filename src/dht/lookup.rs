//! The iterative Kademlia lookup (`FindNode`) as a pure state machine, with optional S/Kademlia disjoint
//! paths.
//!
//! A [`Lookup`] never touches the network, the clock or an RNG: the driver asks [`Lookup::next`] what to do,
//! sends the `FindNode` requests it is told to send, and feeds answers back with [`Lookup::on_response`] and
//! [`Lookup::on_failure`], passing the current time to every call.
//!
//! # Semantics
//!
//! - **Paths.** A lookup runs `d` = [`LookupConfig::disjoint_paths`] paths (1: a plain Kademlia lookup).
//!   The seeds, sorted by distance to the target, are dealt round-robin over the paths (the closest to
//!   path 0, the next to path 1, ...). Each path has its own candidate list, window and `alpha` budget.
//!   **Disjointness:** a node is queried by at most one path; when a path queries a node, the node leaves
//!   every other path's list, and a path never adds a node another path has queried.
//! - **Candidates.** Every node learned from the path's seeds or from a response to the path is merged into
//!   the path's list sorted by XOR distance to the target (ties, which need a SHA-256 collision, by
//!   [`NodeId`]), deduplicated by id, never containing our own id. Nodes already queried stay in the list;
//!   not-yet-queried nodes beyond the `3 * k` closest non-failed ones are dropped, so the list stays
//!   bounded. Unless exempt ([`SubnetPolicy`]), a path keeps at most [`LookupConfig::max_per_subnet`]
//!   non-failed candidates of one subnet (IPv4 /24, IPv6 /48): further ones are not added.
//! - **Window and queries.** A path's *window* is its `k` closest candidates that have not failed. Its next
//!   node to query is the closest not-yet-queried node of its window, sent only while fewer than `alpha` of
//!   its requests are in flight. Nodes are never queried twice.
//! - **Termination.** A path finishes when every node of its window has responded, i.e. its `k` closest
//!   known nodes have each responded or failed, and failed nodes are replaced by the next closest ones
//!   (a path without candidates is finished at once); in [`LookupTarget::Node`] mode also as soon as a
//!   response to it contains the target's [`NodeInfo`]. The lookup finishes when every path has finished.
//!   Requests still in flight are then abandoned; the driver may drop them.
//! - **Result.** `Closest` mode: the `k` closest nodes that responded, over all paths. `Node` mode: found if
//!   any path found the target; if paths report different addresses, the one most paths reported wins
//!   (ties: the lowest path).
//! - **Timeouts.** Every entry point first applies the deadlines for `now`: a request outstanding for
//!   `request_timeout` counts as a failure and frees its slot; once `overall_timeout` has passed the lookup
//!   finishes with what it has (`timed_out = true`).
//! - **Our own id** is never a candidate, so `Node(own id)` ends `NotFound`; bootstrap looks up
//!   `Closest(own DhtId)`.
//! - **Ignored input.** A response or failure is ignored ([`Verdict::Ignored`]) when it comes from a node
//!   that has no request in flight: a node never queried, a node that already answered or failed, a node
//!   whose request timed out (a *late* response, at or after its deadline, is ignored even if `next` was not
//!   called in between), or any input once the lookup has finished.
//! - **Rejected responses.** A response is *impossible* from an honest node, which answers with the nodes
//!   of its table closest to the target, sorted by distance, when it ([`InvalidResponse`]):
//!   lists more than `k` nodes; lists a node twice; lists the responder itself (a node never holds itself
//!   in its table); lists an unroutable address (port 0, unspecified, multicast or broadcast IP,
//!   [`is_routable`]); or is not sorted by non-decreasing XOR distance to the target (a node listed after a
//!   farther one could not have been closer). Such a response counts as a failure of that node and
//!   contributes nothing ([`Verdict::Rejected`]); the driver also counts it against the node. A response
//!   that cannot be decoded or is oversized on the wire never reaches the lookup: the driver reports it
//!   with [`Lookup::on_failure`]. Our own id in a response is legitimate (the responder knows us) and is
//!   skipped. What a single response cannot reveal (well-formed lies: far or colluding nodes) is what
//!   disjoint paths are for.
//! - **Rounds.** Seeds have depth 0; nodes first learned from the response of a depth-`d` node have depth
//!   `d + 1`, and querying a depth-`d` node is hop `d + 1`. `rounds` is the hop that revealed the result:
//!   in `Node` mode the hop of the response that contained the target (0 for a seed); otherwise the largest
//!   depth among the (up to `k`) closest nodes that responded, i.e. the latest hop that contributed a node
//!   to the final closest set.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::dht::subnet::{Subnet, SubnetCounts, SubnetPolicy, is_routable};
use crate::identity::{DhtId, Distance, NodeId};
use crate::peer::NodeInfo;

/// How many non-failed candidates a path keeps, as a multiple of `k`.
const CANDIDATE_FACTOR: usize = 3;

/// Parameters of a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LookupConfig {
    /// Maximum number of requests in flight per path (0 is treated as 1).
    pub alpha: usize,
    /// Number of closest nodes sought (0 is treated as 1).
    pub k: usize,
    /// How long a single `FindNode` request may take before it counts as failed.
    pub request_timeout: Duration,
    /// How long the whole lookup may take.
    pub overall_timeout: Duration,
    /// Disjoint paths (S/Kademlia); 1 is a plain lookup (0 is treated as 1).
    pub disjoint_paths: usize,
    /// Non-failed candidates of one subnet a path keeps (0 is treated as 1).
    pub max_per_subnet: usize,
    /// Which addresses `max_per_subnet` applies to.
    pub subnets: SubnetPolicy,
}

impl Default for LookupConfig {
    fn default() -> Self {
        Self {
            alpha: 3,
            k: 20,
            request_timeout: Duration::from_secs(5),
            overall_timeout: Duration::from_secs(30),
            disjoint_paths: 1,
            max_per_subnet: 5,
            subnets: SubnetPolicy::default(),
        }
    }
}

/// What a lookup searches for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupTarget {
    /// A specific node's address: finishes as soon as a response names this node.
    Node(NodeId),
    /// The `k` nodes closest to this key.
    Closest(DhtId),
}

impl LookupTarget {
    /// The key-space position the lookup converges on.
    pub fn dht_id(&self) -> DhtId {
        match self {
            LookupTarget::Node(id) => id.dht_id(),
            LookupTarget::Closest(key) => *key,
        }
    }
}

/// What the driver should do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LookupAction {
    /// Send a `FindNode` for the target to this node now; it counts as in flight from now.
    Query(NodeInfo),
    /// Nothing to send: call `next` again at this deadline (if any) or after the next response or failure.
    Wait(Option<Instant>),
    /// The lookup is over; every later call to `next` returns the same outcome again.
    Finished(LookupOutcome),
}

/// What [`Lookup::on_response`] made of a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Taken into account: the node answered properly.
    Accepted,
    /// Impossible content: counted as a failure of the node, nothing of it used.
    Rejected(InvalidResponse),
    /// No request to that node was in flight (or the lookup is over): nothing changed.
    Ignored,
}

/// Why a response was rejected (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InvalidResponse {
    /// More than `k` nodes.
    Oversized,
    /// A node listed twice.
    Duplicate,
    /// The responder listed itself.
    ListsResponder,
    /// A node with an address nobody can listen at.
    Unroutable,
    /// Not sorted by distance to the target.
    Unsorted,
}

impl InvalidResponse {
    /// A short snake_case name (for metric labels).
    pub fn label(&self) -> &'static str {
        match self {
            InvalidResponse::Oversized => "oversized",
            InvalidResponse::Duplicate => "duplicate",
            InvalidResponse::ListsResponder => "lists_responder",
            InvalidResponse::Unroutable => "unroutable",
            InvalidResponse::Unsorted => "unsorted",
        }
    }
}

/// The end of a lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupOutcome {
    /// What was found.
    pub result: LookupResult,
    /// Statistics.
    pub report: LookupReport,
    /// Every node that answered us, closest to the target first.
    pub responded: Vec<NodeInfo>,
}

/// What a lookup found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LookupResult {
    /// The target node, as reported by a responder (or given as a seed).
    Found(NodeInfo),
    /// The target node was not seen.
    NotFound,
    /// Up to `k` nodes that answered, closest to the target first.
    Closest(Vec<NodeInfo>),
}

/// Statistics of a finished lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LookupReport {
    /// Path length in hops (see the module documentation).
    pub rounds: u32,
    /// `FindNode` requests sent.
    pub rpcs: u32,
    /// Requests that failed, timed out or were answered with a rejected response.
    pub failures: u32,
    /// Responses rejected as impossible (counted in `failures` too).
    pub rejected: u32,
    /// Time from the start to the finish.
    pub elapsed: Duration,
    /// Whether the overall timeout ended the lookup.
    pub timed_out: bool,
    /// Requests that got an accepted answer in time.
    pub answered: u32,
    /// Sum of the round-trip times of the answered requests (mean FindNode time = this / `answered`).
    pub answer_time: Duration,
}

/// Where a candidate stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Known but not queried yet.
    NotContacted,
    /// Queried; the request times out at this deadline (`None`: never, the deadline overflowed).
    Waiting(Option<Instant>),
    /// Answered.
    Responded,
    /// Failed or timed out.
    Failed,
}

/// A node a path knows about.
#[derive(Clone, Debug)]
struct Candidate {
    /// The node.
    info: NodeInfo,
    /// Its distance to the target.
    distance: Distance,
    /// Its subnet under the lookup's policy (`None`: exempt).
    subnet: Option<Subnet>,
    /// Seeds have depth 0; nodes first learned from a depth-d node's response have depth d + 1.
    depth: u32,
    /// Where it stands.
    state: State,
}

/// One disjoint path: its candidates sorted by (distance, id), and what it found.
#[derive(Clone, Debug, Default)]
struct Path {
    /// Known nodes sorted by (distance, id).
    candidates: Vec<Candidate>,
    /// `Node` mode: the target as a response to this path reported it, and the hop of that response.
    found: Option<(NodeInfo, u32)>,
    /// Whether the path has finished.
    finished: bool,
}

impl Path {
    /// Where the candidate `(distance, id)` is, or would be inserted.
    fn search(&self, distance: &Distance, id: &NodeId) -> Result<usize, usize> {
        self.candidates
            .binary_search_by(|c| (&c.distance, &c.info.id).cmp(&(distance, id)))
    }

    /// The window, with list indices: the `k` closest candidates that have not failed.
    fn window(&self, k: usize) -> impl Iterator<Item = (usize, &Candidate)> {
        self.candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.state != State::Failed)
            .take(k)
    }

    /// Requests in flight.
    fn in_flight(&self) -> usize {
        self.candidates
            .iter()
            .filter(|c| matches!(c.state, State::Waiting(_)))
            .count()
    }

    /// Whether every node of the window has responded.
    fn window_done(&self, k: usize) -> bool {
        self.window(k).all(|(_, c)| c.state == State::Responded)
    }

    /// Adds `fresh` (sorted, deduplicated, none known to this path), keeping at most `per_subnet`
    /// non-failed candidates of one subnet, then trims not-yet-queried nodes beyond `capacity`.
    fn merge(&mut self, fresh: Vec<Candidate>, per_subnet: usize, capacity: usize) {
        let mut subnets = SubnetCounts::default();
        for c in self.candidates.iter().filter(|c| c.state != State::Failed) {
            subnets.add(c.subnet);
        }
        for candidate in fresh {
            if subnets.get(candidate.subnet) >= per_subnet {
                continue;
            }
            if let Err(i) = self.search(&candidate.distance, &candidate.info.id) {
                subnets.add(candidate.subnet);
                self.candidates.insert(i, candidate);
            }
        }
        let mut kept = 0;
        self.candidates.retain(|c| match c.state {
            State::Failed => true,
            State::NotContacted if kept >= capacity => false,
            _ => {
                kept += 1;
                true
            }
        });
    }
}

/// One iterative lookup (see the module documentation).
#[derive(Clone, Debug)]
pub struct Lookup {
    /// What we look for.
    target: LookupTarget,
    /// The target's key-space position.
    key: DhtId,
    /// Our own id, never a candidate.
    local: NodeId,
    /// Parameters, with `alpha`, `k`, `disjoint_paths` and `max_per_subnet` at least 1.
    cfg: LookupConfig,
    /// When the lookup started.
    start: Instant,
    /// When the overall timeout fires (`None`: never, the deadline overflowed).
    deadline: Option<Instant>,
    /// The disjoint paths (at least one).
    paths: Vec<Path>,
    /// Every node queried, and the path that queried it.
    owner: HashMap<NodeId, usize>,
    /// Requests sent.
    rpcs: u32,
    /// Requests failed, timed out or rejected.
    failures: u32,
    /// Responses rejected.
    rejected: u32,
    /// Requests answered in time.
    answered: u32,
    /// Sum of the answered requests' round-trip times.
    answer_time: Duration,
    /// Set once the lookup has finished.
    outcome: Option<LookupOutcome>,
}

impl Lookup {
    /// Starts a lookup for `target` from `seeds` (normally the closest nodes of our routing table).
    ///
    /// It is finished at once when no usable seed is given, or in `Node` mode when a seed is the target.
    pub fn new(
        target: LookupTarget,
        local: NodeId,
        seeds: Vec<NodeInfo>,
        cfg: LookupConfig,
        now: Instant,
    ) -> Lookup {
        let cfg = LookupConfig {
            alpha: cfg.alpha.max(1),
            k: cfg.k.max(1),
            disjoint_paths: cfg.disjoint_paths.max(1),
            max_per_subnet: cfg.max_per_subnet.max(1),
            ..cfg
        };
        let mut lookup = Lookup {
            target,
            key: target.dht_id(),
            local,
            cfg,
            start: now,
            deadline: now.checked_add(cfg.overall_timeout),
            paths: vec![Path::default(); cfg.disjoint_paths],
            owner: HashMap::new(),
            rpcs: 0,
            failures: 0,
            rejected: 0,
            answered: 0,
            answer_time: Duration::ZERO,
            outcome: None,
        };
        if let Some(found) = lookup.find_target(&seeds) {
            lookup.finish(LookupResult::Found(found), 0, false, now);
            return lookup;
        }
        let seeds = lookup.fresh(seeds, 0);
        let mut dealt = vec![Vec::new(); cfg.disjoint_paths];
        for (i, seed) in seeds.into_iter().enumerate() {
            if let Some(share) = dealt.get_mut(i % cfg.disjoint_paths) {
                share.push(seed);
            }
        }
        let capacity = lookup.capacity();
        for (path, share) in lookup.paths.iter_mut().zip(dealt) {
            path.merge(share, cfg.max_per_subnet, capacity);
        }
        lookup.check_done(now);
        lookup
    }

    /// What to do now. Applies the deadlines first; may be called repeatedly.
    pub fn next(&mut self, now: Instant) -> LookupAction {
        self.settle(now);
        if let Some(outcome) = &self.outcome {
            return LookupAction::Finished(outcome.clone());
        }
        let (alpha, k) = (self.cfg.alpha, self.cfg.k);
        let pick = self.paths.iter().enumerate().find_map(|(p, path)| {
            if path.finished || path.in_flight() >= alpha {
                return None;
            }
            path.window(k)
                .find(|(_, c)| c.state == State::NotContacted)
                .map(|(i, _)| (p, i))
        });
        let Some((p, i)) = pick else {
            return LookupAction::Wait(self.next_deadline());
        };
        let Some(candidate) = self
            .paths
            .get_mut(p)
            .and_then(|path| path.candidates.get_mut(i))
        else {
            return LookupAction::Wait(self.next_deadline());
        };
        candidate.state = State::Waiting(now.checked_add(self.cfg.request_timeout));
        let info = candidate.info;
        self.rpcs = self.rpcs.saturating_add(1);
        self.owner.insert(info.id, p);
        // Disjointness: the node leaves every other path.
        for (q, other) in self.paths.iter_mut().enumerate() {
            if q != p {
                other.candidates.retain(|c| c.info.id != info.id);
            }
        }
        LookupAction::Query(info)
    }

    /// `from` answered our request with `nodes`; says what was made of it.
    pub fn on_response(&mut self, from: &NodeId, nodes: Vec<NodeInfo>, now: Instant) -> Verdict {
        self.settle(now);
        let timeout = self.cfg.request_timeout;
        let Some((p, i)) = self.waiting(from) else {
            return Verdict::Ignored;
        };
        if let Err(reason) = self.check(from, &nodes) {
            self.rejected = self.rejected.saturating_add(1);
            self.fail(p, i, now);
            return Verdict::Rejected(reason);
        }
        let Some(candidate) = self
            .paths
            .get_mut(p)
            .and_then(|path| path.candidates.get_mut(i))
        else {
            return Verdict::Ignored;
        };
        let sent = match candidate.state {
            State::Waiting(Some(deadline)) => deadline.checked_sub(timeout),
            _ => None,
        };
        candidate.state = State::Responded;
        let hop = candidate.depth.saturating_add(1);
        if let Some(sent) = sent {
            self.answered = self.answered.saturating_add(1);
            self.answer_time += now.saturating_duration_since(sent);
        }
        if let Some(found) = self.find_target(&nodes) {
            if let Some(path) = self.paths.get_mut(p) {
                path.found = Some((found, hop));
            }
        } else {
            let fresh = self.fresh(nodes, hop);
            let capacity = self.capacity();
            if let Some(path) = self.paths.get_mut(p) {
                path.merge(fresh, self.cfg.max_per_subnet, capacity);
            }
        }
        self.check_done(now);
        Verdict::Accepted
    }

    /// Our request to `from` failed (connection error, undecodable answer, ...).
    pub fn on_failure(&mut self, from: &NodeId, now: Instant) {
        self.settle(now);
        if let Some((p, i)) = self.waiting(from) {
            self.fail(p, i, now);
        }
    }

    /// Whether the lookup has finished.
    pub fn is_finished(&self) -> bool {
        self.outcome.is_some()
    }

    /// What the lookup searches for.
    pub fn target(&self) -> &LookupTarget {
        &self.target
    }

    /// Why `nodes`, an answer of `from`, is impossible from an honest node, if it is.
    fn check(&self, from: &NodeId, nodes: &[NodeInfo]) -> Result<(), InvalidResponse> {
        if nodes.len() > self.cfg.k {
            return Err(InvalidResponse::Oversized);
        }
        let mut seen = HashSet::with_capacity(nodes.len());
        let mut last: Option<Distance> = None;
        for node in nodes {
            if node.id == *from {
                return Err(InvalidResponse::ListsResponder);
            }
            if !seen.insert(node.id) {
                return Err(InvalidResponse::Duplicate);
            }
            if !is_routable(&node.addr) {
                return Err(InvalidResponse::Unroutable);
            }
            let distance = node.dht_id().distance(&self.key);
            if last.is_some_and(|l| distance < l) {
                return Err(InvalidResponse::Unsorted);
            }
            last = Some(distance);
        }
        Ok(())
    }

    /// Marks candidate `i` of path `p` as failed.
    fn fail(&mut self, p: usize, i: usize, now: Instant) {
        if let Some(candidate) = self
            .paths
            .get_mut(p)
            .and_then(|path| path.candidates.get_mut(i))
        {
            candidate.state = State::Failed;
            self.failures = self.failures.saturating_add(1);
        }
        self.check_done(now);
    }

    /// In `Node` mode, the target if it is among `nodes`.
    fn find_target(&self, nodes: &[NodeInfo]) -> Option<NodeInfo> {
        match self.target {
            LookupTarget::Node(id) if id != self.local => {
                nodes.iter().find(|n| n.id == id).copied()
            }
            _ => None,
        }
    }

    /// Maximum number of non-failed candidates a path keeps.
    fn capacity(&self) -> usize {
        self.cfg.k.saturating_mul(CANDIDATE_FACTOR)
    }

    /// `nodes` as new candidates of the given depth: without us and nodes some path has queried, sorted,
    /// deduplicated, at most `capacity` of them (only those can survive a trim: bounds the work on huge
    /// answers).
    fn fresh(&self, nodes: Vec<NodeInfo>, depth: u32) -> Vec<Candidate> {
        let mut fresh: Vec<Candidate> = nodes
            .into_iter()
            .filter(|n| n.id != self.local && !self.owner.contains_key(&n.id))
            .map(|info| Candidate {
                distance: info.dht_id().distance(&self.key),
                subnet: self.cfg.subnets.subnet(&info.addr),
                info,
                depth,
                state: State::NotContacted,
            })
            .collect();
        fresh.sort_unstable_by(|a, b| (&a.distance, &a.info.id).cmp(&(&b.distance, &b.info.id)));
        fresh.dedup_by(|a, b| a.info.id == b.info.id);
        fresh.truncate(self.capacity());
        fresh
    }

    /// The path and list index of `id` if a request to it is in flight.
    fn waiting(&self, id: &NodeId) -> Option<(usize, usize)> {
        if self.outcome.is_some() {
            return None;
        }
        let p = *self.owner.get(id)?;
        let path = self.paths.get(p)?;
        let i = path.search(&id.dht_id().distance(&self.key), id).ok()?;
        path.candidates
            .get(i)
            .filter(|c| matches!(c.state, State::Waiting(_)))
            .map(|_| (p, i))
    }

    /// Requests in flight, over all paths.
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.paths.iter().map(Path::in_flight).sum()
    }

    /// Every candidate of every path.
    #[cfg(test)]
    fn all_candidates(&self) -> Vec<&Candidate> {
        self.paths.iter().flat_map(|p| &p.candidates).collect()
    }

    /// The earliest request or overall deadline.
    fn next_deadline(&self) -> Option<Instant> {
        self.paths
            .iter()
            .flat_map(|p| &p.candidates)
            .filter_map(|c| match c.state {
                State::Waiting(deadline) => deadline,
                _ => None,
            })
            .chain(self.deadline)
            .min()
    }

    /// Applies the deadlines for `now`, then finishes if every path is done.
    fn settle(&mut self, now: Instant) {
        if self.outcome.is_some() {
            return;
        }
        for candidate in self.paths.iter_mut().flat_map(|p| &mut p.candidates) {
            if let State::Waiting(Some(deadline)) = candidate.state
                && now >= deadline
            {
                candidate.state = State::Failed;
                self.failures = self.failures.saturating_add(1);
            }
        }
        if self.deadline.is_some_and(|deadline| now >= deadline) {
            self.finish_with_results(now, true);
        } else {
            self.check_done(now);
        }
    }

    /// Marks the paths that are done; finishes once all are.
    fn check_done(&mut self, now: Instant) {
        let k = self.cfg.k;
        for path in &mut self.paths {
            path.finished = path.finished || path.found.is_some() || path.window_done(k);
        }
        if self.outcome.is_none() && self.paths.iter().all(|p| p.finished) {
            self.finish_with_results(now, false);
        }
    }

    /// Every responded candidate of every path, closest first.
    fn responded(&self) -> Vec<&Candidate> {
        let mut all: Vec<&Candidate> = self
            .paths
            .iter()
            .flat_map(|p| &p.candidates)
            .filter(|c| c.state == State::Responded)
            .collect();
        all.sort_unstable_by(|a, b| (&a.distance, &a.info.id).cmp(&(&b.distance, &b.info.id)));
        all
    }

    /// Finishes with what the paths found: the target (`Node` mode), else the closest nodes that
    /// responded (`NotFound` in `Node` mode).
    fn finish_with_results(&mut self, now: Instant, timed_out: bool) {
        let reports: Vec<(NodeInfo, u32)> = self.paths.iter().filter_map(|p| p.found).collect();
        let best = reports
            .iter()
            .max_by_key(|(info, _)| {
                let votes = reports.iter().filter(|(other, _)| other == info).count();
                // Among equal votes, max_by_key keeps the last: rank earlier paths higher.
                let first = reports.iter().position(|(other, _)| other == info);
                (votes, std::cmp::Reverse(first))
            })
            .copied();
        if let Some((found, hop)) = best {
            return self.finish(LookupResult::Found(found), hop, timed_out, now);
        }
        let closest: Vec<&Candidate> = self.responded().into_iter().take(self.cfg.k).collect();
        let rounds = closest.iter().map(|c| c.depth).max().unwrap_or(0);
        let result = match self.target {
            LookupTarget::Node(_) => LookupResult::NotFound,
            LookupTarget::Closest(_) => {
                LookupResult::Closest(closest.iter().map(|c| c.info).collect())
            }
        };
        self.finish(result, rounds, timed_out, now);
    }

    /// Records the outcome.
    fn finish(&mut self, result: LookupResult, rounds: u32, timed_out: bool, now: Instant) {
        let responded = self.responded().into_iter().map(|c| c.info).collect();
        let report = LookupReport {
            rounds,
            rpcs: self.rpcs,
            failures: self.failures,
            rejected: self.rejected,
            elapsed: now.saturating_duration_since(self.start),
            timed_out,
            answered: self.answered,
            answer_time: self.answer_time,
        };
        self.outcome = Some(LookupOutcome {
            result,
            report,
            responded,
        });
    }
}

#[cfg(test)]
mod tests;
