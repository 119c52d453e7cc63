//! Adversary roles played by the router, so the Swarm stays free of attack code: the FindNode requests
//! addressed to an adversarial node never reach its Swarm; the router answers them with a forged
//! response instead (see [`Forgery`]). Everything else, pings included, reaches the Swarm as usual, so
//! adversaries look alive.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rand::RngExt;
use rand::rngs::StdRng;

use super::node::{SimNode, lock};
use super::router::NetInner;
use crate::identity::DhtId;
use crate::peer::NodeInfo;
use crate::swarm::FINDNODE_PROTOCOL;
use crate::transport::tcp::connection::unix_ms;
use crate::wire::{self, pb};

/// Most nodes a forged [`Forgery::OnlyColluders`] answer lists, whatever the request asks for.
pub const MAX_FORGED_NODES: usize = 256;

/// What an adversarial node answers to a FindNode request (see
/// [`SimNetwork::set_adversary`](super::SimNetwork::set_adversary)).
///
/// The answer is a correctly formed response envelope from the adversary to the requester (the
/// request's `req_id`, the FindNode protocol, the response flag, the adversary's client version) that
/// travels back like any message, with the link's latency and faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Forgery {
    /// A payload of random bytes that never decodes as a `FindNodeResponse`: a length-delimited field
    /// that claims more bytes than follow.
    Garbage,
    /// The colluders (every node marked adversarial, the answering one excepted) closest to the
    /// requested target, as many as asked for (at most [`MAX_FORGED_NODES`]): real, reachable nodes.
    OnlyColluders,
    /// A well-formed response with no node in it.
    Empty,
}

impl Forgery {
    /// The code stored in a node (0 stands for "honest").
    pub(crate) fn code(self) -> u8 {
        match self {
            Forgery::Garbage => 1,
            Forgery::OnlyColluders => 2,
            Forgery::Empty => 3,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Forgery> {
        match code {
            1 => Some(Forgery::Garbage),
            2 => Some(Forgery::OnlyColluders),
            3 => Some(Forgery::Empty),
            _ => None,
        }
    }
}

/// The nodes marked adversarial, by node index (a `BTreeMap`, so ties and order are deterministic).
#[derive(Default)]
pub(crate) struct Colluders {
    /// Index to (DHT position, node).
    nodes: Mutex<BTreeMap<u32, (DhtId, NodeInfo)>>,
}

impl Colluders {
    /// Adds or removes `node` according to its role.
    pub(crate) fn set(&self, node: &SimNode, role: Option<Forgery>) {
        let mut nodes = lock(&self.nodes);
        match role {
            Some(_) => {
                nodes.insert(node.index, (node.info.dht_id(), node.info));
            }
            None => {
                nodes.remove(&node.index);
            }
        }
    }

    /// Forgets the node with `index` (it left the network).
    pub(crate) fn remove(&self, index: u32) {
        lock(&self.nodes).remove(&index);
    }

    /// Up to `max` colluders other than `except`, closest to `target` first.
    pub(crate) fn closest(&self, target: &DhtId, max: usize, except: u32) -> Vec<NodeInfo> {
        let mut found: Vec<(crate::identity::Distance, NodeInfo)> = lock(&self.nodes)
            .iter()
            .filter(|(index, _)| **index != except)
            .map(|(_, (dht, info))| (dht.distance(target), *info))
            .collect();
        let max = max.min(found.len());
        if max == 0 {
            return Vec::new();
        }
        if max < found.len() {
            found.select_nth_unstable_by_key(max - 1, |a| a.0);
            found.truncate(max);
        }
        found.sort_by_key(|a| a.0);
        found.into_iter().map(|(_, info)| info).collect()
    }
}

/// The router's answer for `responder` to `request`, if `responder` is adversarial and `request` is a
/// FindNode request that decodes (anything else is delivered to the responder's Swarm as usual). Draws
/// from the network RNG only for [`Forgery::Garbage`].
pub(crate) fn forge(
    net: &NetInner,
    responder: &SimNode,
    request: &pb::Envelope,
) -> Option<pb::Envelope> {
    let role = responder.adversary()?;
    let meta = request.metadata.as_ref()?;
    if meta.protocol != FINDNODE_PROTOCOL || meta.response {
        return None;
    }
    let req: pb::FindNodeRequest = wire::decode("FindNodeRequest", &request.payload).ok()?;
    let target = DhtId::from_slice(&req.target).ok()?;
    let payload = match role {
        Forgery::Garbage => garbage(&mut net.rng()),
        Forgery::Empty => wire::encode(&pb::FindNodeResponse { nodes: Vec::new() }).to_vec(),
        Forgery::OnlyColluders => {
            let max = usize::try_from(req.max_results)
                .unwrap_or(usize::MAX)
                .min(MAX_FORGED_NODES);
            let nodes = net.colluders.closest(&target, max, responder.index);
            wire::encode(&pb::FindNodeResponse {
                nodes: nodes.iter().map(pb::NodeInfo::from).collect(),
            })
            .to_vec()
        }
    };
    Some(pb::Envelope {
        metadata: Some(pb::Metadata {
            protocol: FINDNODE_PROTOCOL.to_owned(),
            req_id: meta.req_id.clone(),
            client_version: responder.settings.client_version.clone(),
            timestamp: unix_ms(),
            response: true,
            ..Default::default()
        }),
        payload,
    })
}

/// 8 to 64 random bytes after a header that makes them undecodable as a `FindNodeResponse`: field 1
/// (the node list), length-delimited, claiming 127 bytes where fewer follow.
pub(crate) fn garbage(rng: &mut StdRng) -> Vec<u8> {
    let len = rng.random_range(8..=64usize);
    let mut bytes = Vec::with_capacity(len + 2);
    bytes.extend_from_slice(&[0x0a, 0x7f]);
    bytes.extend((0..len).map(|_| rng.random::<u8>()));
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;
    use crate::swarm::{FindNodeError, parse_find_node_response};
    use crate::transport::{InboundHandler, PeerEvent};
    use futures::future::BoxFuture;
    use rand::SeedableRng;

    /// A handler for nodes that never receive anything.
    struct Nothing;

    impl InboundHandler for Nothing {
        fn handle_envelope(&self, _: NodeInfo, _: pb::Envelope) -> BoxFuture<'_, ()> {
            Box::pin(async {})
        }

        fn peer_event(&self, _: PeerEvent) {}
    }

    #[test]
    fn garbage_never_decodes() {
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..2000 {
            let bytes = garbage(&mut rng);
            assert!((10..=66).contains(&bytes.len()));
            assert!(matches!(
                parse_find_node_response(&bytes, 20),
                Err(FindNodeError::Malformed(_))
            ));
        }
    }

    #[test]
    fn codes_round_trip() {
        for f in [Forgery::Garbage, Forgery::OnlyColluders, Forgery::Empty] {
            assert_eq!(Forgery::from_code(f.code()), Some(f));
        }
        assert_eq!(Forgery::from_code(0), None);
    }

    #[test]
    fn colluders_closest_to_the_target_come_first_without_the_responder() {
        let colluders = Colluders::default();
        let nodes: Vec<SimNode> = (0..30u16)
            .map(|i| {
                let info = NodeInfo::new(
                    Keypair::random().node_id(),
                    ([10, 66, 0, 1], 7513 + i).into(),
                );
                let node = SimNode::new(
                    u32::from(i),
                    info,
                    std::sync::Weak::<Nothing>::new(),
                    crate::sim::node::NodeSettings::of(&crate::Config::default()),
                );
                colluders.set(&node, Some(Forgery::OnlyColluders));
                node
            })
            .collect();
        let target = DhtId::random(&mut rand::rng());
        let mut expected: Vec<&SimNode> = nodes.iter().filter(|n| n.index != 4).collect();
        expected.sort_by_key(|n| n.info.dht_id().distance(&target));
        let got = colluders.closest(&target, 20, 4);
        let want: Vec<NodeInfo> = expected.iter().take(20).map(|n| n.info).collect();
        assert_eq!(got, want);
        assert_eq!(colluders.closest(&target, 100, 4).len(), 29);
        colluders.set(&nodes[0], None);
        colluders.remove(1);
        assert_eq!(colluders.closest(&target, 100, 4).len(), 27);
        assert!(colluders.closest(&target, 0, 4).is_empty());
    }
}
