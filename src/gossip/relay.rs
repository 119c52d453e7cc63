//! Whom a node sends a gossip message to: the relay choice, a pure function of the routing table, the
//! connected peers and a seeded RNG.
//!
//! # Two layers
//!
//! A node that relays a message (or authors it) sends it to
//!
//! 1. **random peers**: `fanout - 1` peers chosen at random from its routing table, connected peers
//!    first, never the peer it came from nor the author; and
//! 2. **cover peers**: one peer, chosen the same way, in each Kademlia subtree it is responsible for.
//!
//! Random push alone misses each node with probability about `e^-fanout` per broadcast (≈ 3·10⁻⁴ for a
//! fanout of 8: a third of a node per broadcast in a 1,000-node network), because a node is reached only
//! if one of the peers that got the message happens to pick it. The cover layer removes that miss: it is
//! the Kademlia broadcast (as in Kadcast) built into the same messages.
//!
//! Let `CPL(a, b)` be the number of leading bits the DHT ids of `a` and `b` share. The author is
//! responsible for the whole id space: for each distinct `CPL(author, p)` among its table's peers `p`, it
//! sends the message with `cover = true` to one of them. A node `y` that receives a message with
//! `cover = true` from `x` becomes responsible for its subtree at height `h = CPL(x, y) + 1` (the nodes
//! sharing at least `h` leading bits with `y`, which `x` cannot reach any better) and sends it with
//! `cover = true` to one peer of each distinct `CPL(y, p) >= h`. The height is computed by the receiver
//! from the two authenticated ids, so a relay cannot lie about it; the `cover` bit itself is not signed,
//! and a relay that clears it is no worse than one that does not relay. A node honours each message's
//! cover duties once per height (the [`SeenCache`](super::SeenCache) remembers the lowest height
//! covered), also when the cover copy arrives after a random copy.
//!
//! With routing tables that hold at least one node of every non-empty subtree (the Kademlia invariant),
//! every subtree not containing the author is entered by a cover copy whose height is at most its depth,
//! so every node receives the message, with or without the random layer. The cover layer costs one
//! message per node on average (`nodes - 1` per broadcast), so a broadcast costs at most
//! `fanout × nodes` messages, as random push with `fanout` peers would. The random layer makes
//! delivery fast (a logarithmic number of hops) and carries it around nodes that fail or drop.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use rand::Rng;
use rand::seq::SliceRandom;

use crate::identity::{DhtId, NodeId};
use crate::peer::NodeInfo;

/// Cover range end meaning "every subtree from the height up" (greater than any CPL).
pub const COVER_ALL: u32 = u32::MAX;
/// Peers tried per covered subtree before giving up on it (the first plus alternates).
pub const COVER_TRIES: usize = 3;

/// A peer the relay may choose: a routing-table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The peer.
    pub node: NodeInfo,
    /// Its DHT id (cached by the routing table).
    pub dht_id: DhtId,
    /// True if a connection to it is open now.
    pub connected: bool,
}

/// Whom to send one message to, each list in order of preference.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelayPlan {
    /// One list per covered subtree: send with `cover = true` to the first peer that accepts.
    pub cover: Vec<Vec<NodeInfo>>,
    /// Random peers: send with `cover = false` to the first `random_count` that accept.
    pub random: Vec<NodeInfo>,
    /// How many of `random` should get the message.
    pub random_count: usize,
}

impl RelayPlan {
    /// True if the plan sends nothing.
    pub fn is_empty(&self) -> bool {
        self.cover.is_empty() && (self.random.is_empty() || self.random_count == 0)
    }
}

/// Chooses the peers for one message (see the [module documentation](self)).
///
/// `cover` is the range of CPLs (with `local`) to cover, empty for none; `random_count` the number of
/// random peers; peers in `exclude` (the sender, the author) are never chosen. Within each choice,
/// connected peers come first, each group shuffled with `rng`. Every cover subtree gets up to
/// [`COVER_TRIES`] peers to try; the random list holds twice `random_count` peers (alternates for sends
/// that fail). A random peer is never one of the subtrees' first choices.
pub fn plan_relay<R: Rng + ?Sized>(
    local: &DhtId,
    candidates: &[Candidate],
    cover: Range<u32>,
    random_count: usize,
    exclude: &[NodeId],
    rng: &mut R,
) -> RelayPlan {
    let eligible: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| !exclude.contains(&c.node.id) && c.dht_id != *local)
        .collect();
    let mut groups: BTreeMap<u32, Vec<&Candidate>> = BTreeMap::new();
    if !cover.is_empty() {
        for c in &eligible {
            let cpl = local.common_prefix_len(&c.dht_id);
            if cover.contains(&cpl) {
                groups.entry(cpl).or_default().push(c);
            }
        }
    }
    let mut firsts = HashSet::new();
    let mut plan = RelayPlan {
        random_count,
        ..RelayPlan::default()
    };
    for members in groups.into_values() {
        let mut order = connected_first(members, rng);
        order.truncate(COVER_TRIES);
        if let Some(first) = order.first() {
            firsts.insert(first.id);
            plan.cover.push(order);
        }
    }
    if random_count > 0 {
        let rest: Vec<&Candidate> = eligible
            .into_iter()
            .filter(|c| !firsts.contains(&c.node.id))
            .collect();
        plan.random = connected_first(rest, rng);
        plan.random.truncate(random_count.saturating_mul(2));
    }
    plan
}

/// The connected candidates shuffled, then the others shuffled.
fn connected_first<R: Rng + ?Sized>(members: Vec<&Candidate>, rng: &mut R) -> Vec<NodeInfo> {
    let (mut connected, mut others): (Vec<NodeInfo>, Vec<NodeInfo>) = (Vec::new(), Vec::new());
    for c in members {
        if c.connected {
            connected.push(c.node);
        } else {
            others.push(c.node);
        }
    }
    connected.shuffle(rng);
    others.shuffle(rng);
    connected.extend(others);
    connected
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, VecDeque};

    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    use super::*;
    use crate::identity::Keypair;

    fn candidate(rng: &mut StdRng, connected: bool) -> Candidate {
        let node = NodeInfo::new(
            Keypair::generate(rng).node_id(),
            "127.0.0.1:1".parse().unwrap(),
        );
        Candidate {
            node,
            dht_id: node.dht_id(),
            connected,
        }
    }

    #[test]
    fn excludes_prefers_connected_and_covers_each_subtree_once() {
        let mut rng = StdRng::seed_from_u64(1);
        let local = DhtId::random(&mut rng);
        let cands: Vec<Candidate> = (0..60).map(|i| candidate(&mut rng, i % 3 == 0)).collect();
        let exclude = [cands[0].node.id, cands[1].node.id];
        let plan = plan_relay(&local, &cands, 0..COVER_ALL, 7, &exclude, &mut rng);
        let cpls: Vec<u32> = plan
            .cover
            .iter()
            .map(|l| local.common_prefix_len(&l[0].dht_id()))
            .collect();
        let mut expect: Vec<u32> = cands[2..]
            .iter()
            .map(|c| local.common_prefix_len(&c.dht_id))
            .collect();
        expect.sort();
        expect.dedup();
        assert_eq!(cpls, expect, "one list per distinct CPL, in CPL order");
        for list in &plan.cover {
            assert!(list.len() <= COVER_TRIES);
            let cpl = local.common_prefix_len(&list[0].dht_id());
            assert!(
                list.iter()
                    .all(|n| local.common_prefix_len(&n.dht_id()) == cpl)
            );
        }
        assert_eq!(plan.random.len(), 14);
        let connected: HashSet<NodeId> = cands
            .iter()
            .filter(|c| c.connected)
            .map(|c| c.node.id)
            .collect();
        // 20 connected, minus the excluded one and the subtrees' first choices: still over 14.
        assert!(plan.random.iter().all(|n| connected.contains(&n.id)));
        let all: Vec<NodeId> = plan
            .cover
            .iter()
            .flatten()
            .chain(&plan.random)
            .map(|n| n.id)
            .collect();
        assert!(all.iter().all(|id| !exclude.contains(id)));
        let firsts: HashSet<NodeId> = plan.cover.iter().map(|l| l[0].id).collect();
        assert!(plan.random.iter().all(|n| !firsts.contains(&n.id)));

        // Only the subtrees in range; no random peers asked for.
        let plan = plan_relay(&local, &cands, 2..COVER_ALL, 0, &[], &mut rng);
        assert!(plan.random.is_empty());
        assert!(
            plan.cover
                .iter()
                .flatten()
                .all(|n| local.common_prefix_len(&n.dht_id()) >= 2)
        );
        assert!(plan_relay(&local, &cands, 0..0, 0, &[], &mut rng).is_empty());
        assert!(plan_relay(&local, &[], 0..COVER_ALL, 8, &[], &mut rng).is_empty());
    }

    #[test]
    fn same_seed_same_choice() {
        let mut rng = StdRng::seed_from_u64(2);
        let local = DhtId::random(&mut rng);
        let cands: Vec<Candidate> = (0..40).map(|_| candidate(&mut rng, false)).collect();
        let a = plan_relay(
            &local,
            &cands,
            0..COVER_ALL,
            7,
            &[],
            &mut StdRng::seed_from_u64(9),
        );
        let b = plan_relay(
            &local,
            &cands,
            0..COVER_ALL,
            7,
            &[],
            &mut StdRng::seed_from_u64(9),
        );
        assert_eq!(a, b);
    }

    /// A model network with complete Kademlia tables (up to `k` random nodes per bucket), no losses:
    /// returns how many nodes missed each of `broadcasts` broadcasts and the messages sent per broadcast.
    fn model(
        n: usize,
        fanout: usize,
        broadcasts: usize,
        with_cover: bool,
        seed: u64,
    ) -> (Vec<usize>, usize) {
        const K: usize = 20;
        let mut rng = StdRng::seed_from_u64(seed);
        let nodes: Vec<Candidate> = (0..n).map(|_| candidate(&mut rng, false)).collect();
        let index: HashMap<NodeId, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.node.id, i))
            .collect();
        let tables: Vec<Vec<Candidate>> = nodes
            .iter()
            .map(|me| {
                let mut buckets: BTreeMap<u32, Vec<Candidate>> = BTreeMap::new();
                for other in &nodes {
                    if other.node.id != me.node.id {
                        let cpl = me.dht_id.common_prefix_len(&other.dht_id).min(19);
                        buckets.entry(cpl).or_default().push(*other);
                    }
                }
                buckets
                    .into_values()
                    .flat_map(|mut b| {
                        b.shuffle(&mut rng);
                        b.truncate(K);
                        b
                    })
                    .collect()
            })
            .collect();
        let random_count = if with_cover { fanout - 1 } else { fanout };
        let mut misses = Vec::new();
        let mut messages = 0;
        for _ in 0..broadcasts {
            let author = rng.random_range(0..n);
            let mut got = vec![false; n];
            let mut covered = vec![COVER_ALL; n];
            got[author] = true;
            covered[author] = 0;
            // (to, from, cover); FIFO order stands in for latency.
            let mut queue = VecDeque::new();
            let cover = if with_cover { 0..COVER_ALL } else { 0..0 };
            let plan = plan_relay(
                &nodes[author].dht_id,
                &tables[author],
                cover,
                random_count,
                &[],
                &mut rng,
            );
            let send =
                |queue: &mut VecDeque<(usize, usize, bool)>, from: usize, plan: RelayPlan| {
                    for l in plan.cover {
                        queue.push_back((index[&l[0].id], from, true));
                    }
                    for r in plan.random.iter().take(plan.random_count) {
                        queue.push_back((index[&r.id], from, false));
                    }
                };
            send(&mut queue, author, plan);
            while let Some((to, from, cover)) = queue.pop_front() {
                messages += 1;
                let first = !got[to];
                got[to] = true;
                let me = &nodes[to];
                let mut range = 0..0;
                if cover {
                    let h = me.dht_id.common_prefix_len(&nodes[from].dht_id) + 1;
                    if h < covered[to] {
                        range = h..covered[to];
                        covered[to] = h;
                    }
                }
                let random = if first { random_count } else { 0 };
                let exclude = [nodes[from].node.id, nodes[author].node.id];
                let plan = plan_relay(&me.dht_id, &tables[to], range, random, &exclude, &mut rng);
                send(&mut queue, to, plan);
            }
            misses.push(got.iter().filter(|g| !**g).count());
        }
        (misses, messages / broadcasts)
    }

    #[test]
    fn cover_layer_reaches_every_node_within_fanout_times_nodes_messages() {
        let (n, fanout) = (300, 8);
        let (misses, messages) = model(n, fanout, 30, true, 5);
        assert!(misses.iter().all(|m| *m == 0), "{misses:?}");
        assert!(messages <= fanout * n, "{messages} messages");
        // The cover layer alone (fanout 1) is a tree: every node exactly once.
        let (misses, messages) = model(n, 1, 10, true, 6);
        assert!(misses.iter().all(|m| *m == 0), "{misses:?}");
        assert_eq!(messages, n - 1);
    }
}
