//! The crate's top-level [`Error`], returned by the [`Swarm`](crate::Swarm) API.

use crate::config::ConfigError;
use crate::identity::{IdentityError, NodeId};
use crate::peer::DescriptorError;
use crate::transport::TransportError;

/// Everything a [`Swarm`](crate::Swarm) call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A key or key file could not be used.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A node descriptor could not be parsed.
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        reason: String,
    },
    /// A protocol with this name is already registered.
    #[error("protocol {0:?} is already registered")]
    ProtocolAlreadyRegistered(String),
    /// Names starting with `/kadmesh/` belong to the node itself.
    #[error("protocol name {0:?} is reserved")]
    ReservedProtocol(String),
    /// Protocol names must be 1 to 128 bytes.
    #[error("invalid protocol name {0:?}: must be 1 to 128 bytes")]
    InvalidProtocolName(String),
    /// No address is known for this node and no lookup found it.
    #[error("node {0} not found")]
    NodeNotFound(NodeId),
    /// The transport failed to deliver.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The payload exceeds the protocol's maximum (`swarm.max_payload` or its own).
    #[error("payload of {len} bytes exceeds the maximum of {max} bytes for protocol {protocol:?}")]
    PayloadTooLarge {
        /// The protocol.
        protocol: String,
        /// The payload's size.
        len: usize,
        /// The protocol's maximum.
        max: usize,
    },
    /// No response arrived in time.
    #[error("request timed out")]
    Timeout,
    /// `respond` was called on a message that is not a request.
    #[error("message is not a request")]
    NotARequest,
    /// Bootstrap was asked for but no boot node is configured.
    #[error("no boot nodes configured")]
    NoBootNodes,
    /// No boot node answered.
    #[error("bootstrap failed: none of {tried} boot nodes answered")]
    BootstrapFailed {
        /// Boot nodes tried.
        tried: usize,
    },
    /// A peer sent an unusable FindNode response.
    #[error(transparent)]
    FindNode(#[from] crate::swarm::FindNodeError),
    /// A seed-list file could not be used.
    #[error(transparent)]
    SeedList(#[from] crate::dht::seeds::SeedListError),
    /// A ban could not be made.
    #[error(transparent)]
    Ban(#[from] crate::ban::BanError),
    /// The build does not support this yet.
    #[error("{0} is not available")]
    Unsupported(&'static str),
    /// The swarm is shutting down or has shut down.
    #[error("swarm is shut down")]
    Shutdown,
}
