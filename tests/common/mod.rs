//! Helpers shared by the integration tests: nodes on 127.0.0.1 port 0 and event waits.
#![allow(dead_code)]

use std::time::Duration;

use kadmesh::{Config, Swarm, SwarmEvent};
use tokio::sync::broadcast;

/// A config listening on 127.0.0.1 with an OS-chosen port.
pub fn local_config() -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    // Every test node shares 127.0.0.1: per-IP and per-subnet limits would see one big host.
    config.net.exempt_local = true;
    config
}

/// Routes `RUST_LOG`-filtered logs to the test output (once per process).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Starts a node with `config` that answers every request on "echo" with its payload.
pub async fn echo_node(config: Config) -> Swarm {
    init_tracing();
    let node = Swarm::start(config).await.unwrap();
    let mut inbox = node.register_protocol("echo").unwrap();
    tokio::spawn(async move {
        while let Some(m) = inbox.recv().await {
            let _ = m.respond(m.payload().clone()).await;
        }
    });
    node
}

/// Starts a node with [`local_config`].
pub async fn node() -> Swarm {
    init_tracing();
    Swarm::start(local_config()).await.unwrap()
}

/// Upper bound on any wait in the tests, so a broken build fails instead of hanging.
pub const WAIT: Duration = Duration::from_secs(20);

/// Starts `n` nodes with `config`.
pub async fn start_many(n: usize, config: &Config) -> Vec<Swarm> {
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        nodes.push(Swarm::start(config.clone()).await.unwrap());
    }
    nodes
}

/// `boot` boot nodes that know each other, then `n` nodes bootstrapped from them (concurrently), all on
/// loopback TCP in this process. Returns (boot nodes, other nodes).
pub async fn network(boot: usize, n: usize) -> (Vec<Swarm>, Vec<Swarm>) {
    network_with(boot, n, local_config()).await
}

/// Like [`network`], every node with `config`.
pub async fn network_with(boot: usize, n: usize, config: Config) -> (Vec<Swarm>, Vec<Swarm>) {
    init_tracing();
    let boots = start_many(boot, &config).await;
    let boot_infos: Vec<kadmesh::NodeInfo> = boots.iter().map(|b| b.local_node()).collect();
    kadmesh::scenario::network::introduce(&boots).await.unwrap();
    let nodes = start_many(n, &config).await;
    let mut joins = tokio::task::JoinSet::new();
    for node in &nodes {
        let (node, boot) = (node.clone(), boot_infos.clone());
        joins.spawn(async move { node.bootstrap_from(boot).await });
    }
    for r in joins.join_all().await {
        let report = r.expect("every node bootstraps");
        assert!(report.boot_nodes_answered >= 1);
    }
    (boots, nodes)
}

/// Shuts every node down.
pub async fn shutdown_all(nodes: impl IntoIterator<Item = Swarm>) {
    for n in nodes {
        n.shutdown().await;
    }
}

/// Waits for the first event that `pick` accepts.
pub async fn wait_event<T>(
    events: &mut broadcast::Receiver<SwarmEvent>,
    mut pick: impl FnMut(&SwarmEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(ev) => {
                    if let Some(t) = pick(&ev) {
                        return t;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => panic!("event channel closed: {e}"),
            }
        }
    })
    .await
    .expect("timed out waiting for an event")
}

/// A hand-driven authenticated peer: does the real handshake with a node, then sends whatever envelopes
/// a test crafts (including ones a well-behaved node never would).
pub struct RawPeer {
    /// Its identity.
    pub keypair: kadmesh::Keypair,
    /// The framed socket.
    pub framed: tokio_util::codec::Framed<tokio::net::TcpStream, kadmesh::wire::FrameCodec>,
    /// Seals outgoing frames.
    pub sealer: kadmesh::crypto::session::Sealer,
    /// Opens incoming frames.
    pub opener: kadmesh::crypto::session::Opener,
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A gossip envelope around `body`, as a relay sends it.
pub fn gossip_envelope(
    client_version: &str,
    body: &kadmesh::wire::pb::GossipMessage,
) -> kadmesh::wire::pb::Envelope {
    kadmesh::wire::pb::Envelope {
        metadata: Some(kadmesh::wire::pb::Metadata {
            protocol: kadmesh::gossip::GOSSIP_PROTOCOL.into(),
            client_version: client_version.into(),
            timestamp: now_ms(),
            gossip: true,
            ..Default::default()
        }),
        payload: kadmesh::wire::encode(body).to_vec(),
    }
}

/// The handshake settings that match `node`.
pub fn handshake_config(node: &Swarm) -> kadmesh::crypto::handshake::HandshakeConfig {
    kadmesh::crypto::handshake::HandshakeConfig {
        network_id: node.config().network_id,
        client_version: node.config().client_version.clone(),
        max_clock_skew: node.config().net.max_clock_skew,
        listen_port: 0,
    }
}

impl RawPeer {
    /// Connects to `node` with a fresh identity and completes the handshake.
    pub async fn connect(node: &Swarm) -> RawPeer {
        Self::connect_as(node, kadmesh::Keypair::random()).await
    }

    /// Connects to `node` as `keypair` and completes the handshake (on our side: a node that refuses
    /// the id closes the connection right after).
    pub async fn connect_as(node: &Swarm, keypair: kadmesh::Keypair) -> RawPeer {
        use futures::{SinkExt, StreamExt};
        use kadmesh::crypto::handshake::Initiator;
        use kadmesh::wire;
        let stream = tokio::net::TcpStream::connect(node.local_node().addr)
            .await
            .unwrap();
        let mut framed = tokio_util::codec::Framed::new(stream, wire::FrameCodec::new(1 << 20));
        let cfg = handshake_config(node);
        let (initiator, hello) = Initiator::start(
            &cfg,
            &keypair,
            &node.local_node().id,
            now_ms(),
            &mut rand::rng(),
        )
        .unwrap();
        framed.send(wire::encode(&hello)).await.unwrap();
        let reply = framed.next().await.unwrap().unwrap();
        let reply = wire::decode("HandshakeData", &reply).unwrap();
        let (established, fin) = initiator.on_response(&reply, now_ms()).unwrap();
        framed.send(wire::encode(&fin)).await.unwrap();
        let (sealer, opener) = established
            .keys
            .split(<rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1));
        RawPeer {
            keypair,
            framed,
            sealer,
            opener,
        }
    }

    /// Seals and sends an envelope.
    pub async fn send(&mut self, envelope: &kadmesh::wire::pb::Envelope) {
        use futures::SinkExt;
        let sealed = self.sealer.seal(&kadmesh::wire::encode(envelope)).unwrap();
        self.framed.send(sealed).await.unwrap();
    }

    /// Waits for the next envelope from the node that is not a connection keepalive.
    pub async fn recv(&mut self) -> kadmesh::wire::pb::Envelope {
        use futures::StreamExt;
        loop {
            let frame = tokio::time::timeout(WAIT, self.framed.next())
                .await
                .expect("no frame from the node")
                .expect("connection closed")
                .expect("bad frame");
            let plain = self.opener.open(&frame).expect("frame does not open");
            let env: kadmesh::wire::pb::Envelope =
                kadmesh::wire::decode("Envelope", &plain).unwrap();
            let protocol = env
                .metadata
                .as_ref()
                .map(|m| m.protocol.as_str())
                .unwrap_or("");
            if !protocol.starts_with("/kadmesh/keepalive/") {
                return env;
            }
        }
    }

    /// An envelope as a current node would write it.
    pub fn envelope(node: &Swarm, protocol: &str, payload: &[u8]) -> kadmesh::wire::pb::Envelope {
        kadmesh::wire::pb::Envelope {
            metadata: Some(kadmesh::wire::pb::Metadata {
                protocol: protocol.to_owned(),
                client_version: node.config().client_version.clone(),
                timestamp: now_ms(),
                ..Default::default()
            }),
            payload: payload.to_vec(),
        }
    }
}
