//! The iterative Kademlia lookup (`FindNode`) as a pure state machine.
//!
//! A [`Lookup`] never touches the network, the clock or an RNG: the driver asks [`Lookup::next`] what to do,
//! sends the `FindNode` requests it is told to send, and feeds answers back with [`Lookup::on_response`] and
//! [`Lookup::on_failure`], passing the current time to every call.
//!
//! # Semantics
//!
//! - **Candidates.** Every node learned from the seeds or from a response is merged into one list sorted by
//!   XOR distance to the target (ties, which need a SHA-256 collision, by [`NodeId`]), deduplicated by id,
//!   never containing our own id. Nodes already queried stay in the list; not-yet-queried nodes beyond the
//!   `3 * k` closest non-failed ones are dropped, so the list stays bounded.
//! - **Window and queries.** The *window* is the `k` closest candidates that have not failed. The next node
//!   to query is the closest not-yet-queried node of the window, sent only while fewer than `alpha` requests
//!   are in flight. Nodes are never queried twice.
//! - **Termination.** The lookup finishes when every node of the window has responded, i.e. the `k` closest
//!   known nodes have each responded or failed, and failed nodes are replaced by the next closest ones.
//!   Requests still in flight outside the window are then abandoned; the driver may drop them. In
//!   [`LookupTarget::Node`] mode it also finishes as soon as a response contains the target's [`NodeInfo`].
//! - **Timeouts.** Every entry point first applies the deadlines for `now`: a request outstanding for
//!   `request_timeout` counts as a failure and frees its slot; once `overall_timeout` has passed the lookup
//!   finishes with what it has (`timed_out = true`; `NotFound` in `Node` mode).
//! - **Our own id** is never a candidate, so `Node(own id)` ends `NotFound`; bootstrap looks up
//!   `Closest(own DhtId)`.
//! - **Ignored input.** A response or failure is ignored when it comes from a node that has no request in
//!   flight: a node never queried, a node that already answered or failed, a node whose request timed out
//!   (a *late* response, at or after its deadline, is ignored even if `next` was not called in between), or
//!   any input once the lookup has finished.
//! - **Rounds.** Seeds have depth 0; nodes first learned from the response of a depth-`d` node have depth
//!   `d + 1`, and querying a depth-`d` node is hop `d + 1`. `rounds` is the hop that revealed the result:
//!   in `Node` mode the hop of the response that contained the target (0 for a seed); otherwise the largest
//!   depth among the (up to `k`) closest nodes that responded, i.e. the latest hop that contributed a node
//!   to the final closest set.

use std::time::Duration;

use tokio::time::Instant;

use crate::identity::{DhtId, Distance, NodeId};
use crate::peer::NodeInfo;

/// How many non-failed candidates are kept, as a multiple of `k`.
const CANDIDATE_FACTOR: usize = 3;

/// Parameters of a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LookupConfig {
    /// Maximum number of requests in flight (0 is treated as 1).
    pub alpha: usize,
    /// Number of closest nodes sought (0 is treated as 1).
    pub k: usize,
    /// How long a single `FindNode` request may take before it counts as failed.
    pub request_timeout: Duration,
    /// How long the whole lookup may take.
    pub overall_timeout: Duration,
}

impl Default for LookupConfig {
    fn default() -> Self {
        Self {
            alpha: 3,
            k: 20,
            request_timeout: Duration::from_secs(5),
            overall_timeout: Duration::from_secs(30),
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

/// The end of a lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupOutcome {
    /// What was found.
    pub result: LookupResult,
    /// Statistics.
    pub report: LookupReport,
    /// Every node that answered us, closest to the target first (the caller may add them to its table).
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
    /// Requests that failed or timed out.
    pub failures: u32,
    /// Time from the start to the finish.
    pub elapsed: Duration,
    /// Whether the overall timeout ended the lookup.
    pub timed_out: bool,
    /// Requests that got an answer in time.
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

/// A node the lookup knows about.
#[derive(Clone, Debug)]
struct Candidate {
    /// The node.
    info: NodeInfo,
    /// Its distance to the target.
    distance: Distance,
    /// Seeds have depth 0; nodes first learned from a depth-d node's response have depth d + 1.
    depth: u32,
    /// Where it stands.
    state: State,
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
    /// Parameters, with `alpha` and `k` at least 1.
    cfg: LookupConfig,
    /// When the lookup started.
    start: Instant,
    /// When the overall timeout fires (`None`: never, the deadline overflowed).
    deadline: Option<Instant>,
    /// Known nodes sorted by (distance, id).
    candidates: Vec<Candidate>,
    /// Requests sent.
    rpcs: u32,
    /// Requests failed or timed out.
    failures: u32,
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
            ..cfg
        };
        let mut lookup = Lookup {
            target,
            key: target.dht_id(),
            local,
            cfg,
            start: now,
            deadline: now.checked_add(cfg.overall_timeout),
            candidates: Vec::new(),
            rpcs: 0,
            answered: 0,
            answer_time: Duration::ZERO,
            failures: 0,
            outcome: None,
        };
        if let Some(found) = lookup.find_target(&seeds) {
            lookup.finish(LookupResult::Found(found), 0, false, now);
        } else {
            lookup.merge(seeds, 0);
            lookup.check_done(now);
        }
        lookup
    }

    /// What to do now. Applies the deadlines first; may be called repeatedly.
    pub fn next(&mut self, now: Instant) -> LookupAction {
        self.settle(now);
        if let Some(outcome) = &self.outcome {
            return LookupAction::Finished(outcome.clone());
        }
        let idle = self
            .window()
            .find(|(_, c)| c.state == State::NotContacted)
            .map(|(i, _)| i);
        if self.in_flight() < self.cfg.alpha
            && let Some(candidate) = idle.and_then(|i| self.candidates.get_mut(i))
        {
            candidate.state = State::Waiting(now.checked_add(self.cfg.request_timeout));
            self.rpcs = self.rpcs.saturating_add(1);
            return LookupAction::Query(candidate.info);
        }
        LookupAction::Wait(self.next_deadline())
    }

    /// `from` answered our request with `nodes`.
    pub fn on_response(&mut self, from: &NodeId, nodes: Vec<NodeInfo>, now: Instant) {
        self.settle(now);
        let timeout = self.cfg.request_timeout;
        let Some(candidate) = self.waiting_mut(from) else {
            return;
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
            self.finish(LookupResult::Found(found), hop, false, now);
        } else {
            self.merge(nodes, hop);
            self.check_done(now);
        }
    }

    /// Our request to `from` failed (connection error, bad answer, ...).
    pub fn on_failure(&mut self, from: &NodeId, now: Instant) {
        self.settle(now);
        if let Some(candidate) = self.waiting_mut(from) {
            candidate.state = State::Failed;
            self.failures = self.failures.saturating_add(1);
            self.check_done(now);
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

    /// In `Node` mode, the target if it is among `nodes`.
    fn find_target(&self, nodes: &[NodeInfo]) -> Option<NodeInfo> {
        match self.target {
            LookupTarget::Node(id) if id != self.local => {
                nodes.iter().find(|n| n.id == id).copied()
            }
            _ => None,
        }
    }

    /// Maximum number of non-failed candidates kept.
    fn capacity(&self) -> usize {
        self.cfg.k.saturating_mul(CANDIDATE_FACTOR)
    }

    /// Where the candidate `(distance, id)` is, or would be inserted, in the sorted list.
    fn search(&self, distance: &Distance, id: &NodeId) -> Result<usize, usize> {
        self.candidates
            .binary_search_by(|c| (&c.distance, &c.info.id).cmp(&(distance, id)))
    }

    /// The candidate `id` if a request to it is in flight.
    fn waiting_mut(&mut self, id: &NodeId) -> Option<&mut Candidate> {
        if self.outcome.is_some() {
            return None;
        }
        let i = self.search(&id.dht_id().distance(&self.key), id).ok()?;
        self.candidates
            .get_mut(i)
            .filter(|c| matches!(c.state, State::Waiting(_)))
    }

    /// Adds the nodes of `nodes` not known yet, with the given depth, then trims the list.
    fn merge(&mut self, nodes: Vec<NodeInfo>, depth: u32) {
        let mut fresh: Vec<Candidate> = nodes
            .into_iter()
            .filter(|n| n.id != self.local)
            .map(|info| Candidate {
                distance: info.dht_id().distance(&self.key),
                info,
                depth,
                state: State::NotContacted,
            })
            .filter(|c| self.search(&c.distance, &c.info.id).is_err())
            .collect();
        // Only the closest `capacity` new nodes can survive the trim: bound the work on huge answers.
        fresh.sort_unstable_by(|a, b| (&a.distance, &a.info.id).cmp(&(&b.distance, &b.info.id)));
        fresh.dedup_by(|a, b| a.info.id == b.info.id);
        fresh.truncate(self.capacity());
        for candidate in fresh {
            if let Err(i) = self.search(&candidate.distance, &candidate.info.id) {
                self.candidates.insert(i, candidate);
            }
        }
        let capacity = self.capacity();
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

    /// The window, with list indices: the `k` closest candidates that have not failed.
    fn window(&self) -> impl Iterator<Item = (usize, &Candidate)> {
        self.candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.state != State::Failed)
            .take(self.cfg.k)
    }

    /// Requests in flight.
    fn in_flight(&self) -> usize {
        self.candidates
            .iter()
            .filter(|c| matches!(c.state, State::Waiting(_)))
            .count()
    }

    /// The earliest request or overall deadline.
    fn next_deadline(&self) -> Option<Instant> {
        self.candidates
            .iter()
            .filter_map(|c| match c.state {
                State::Waiting(deadline) => deadline,
                _ => None,
            })
            .chain(self.deadline)
            .min()
    }

    /// Applies the deadlines for `now`, then finishes if the window is done.
    fn settle(&mut self, now: Instant) {
        if self.outcome.is_some() {
            return;
        }
        for candidate in &mut self.candidates {
            if let State::Waiting(Some(deadline)) = candidate.state
                && now >= deadline
            {
                candidate.state = State::Failed;
                self.failures = self.failures.saturating_add(1);
            }
        }
        if self.deadline.is_some_and(|deadline| now >= deadline) {
            self.finish_with_closest(now, true);
        } else {
            self.check_done(now);
        }
    }

    /// Finishes if every node of the window has responded.
    fn check_done(&mut self, now: Instant) {
        let done = self.window().all(|(_, c)| c.state == State::Responded);
        if done && self.outcome.is_none() {
            self.finish_with_closest(now, false);
        }
    }

    /// Finishes with the closest nodes that responded (`NotFound` in `Node` mode).
    fn finish_with_closest(&mut self, now: Instant, timed_out: bool) {
        let closest: Vec<&Candidate> = self
            .candidates
            .iter()
            .filter(|c| c.state == State::Responded)
            .take(self.cfg.k)
            .collect();
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
        let responded = self
            .candidates
            .iter()
            .filter(|c| c.state == State::Responded)
            .map(|c| c.info)
            .collect();
        let report = LookupReport {
            rounds,
            rpcs: self.rpcs,
            failures: self.failures,
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
