//! Gossip broadcast, the pure core: author-signed messages ([`SignedGossip`]) and their ids
//! ([`MessageId`]), the time- and capacity-bounded [`SeenCache`] that makes every node deliver a message
//! once, and the relay choice ([`plan_relay`]).
//!
//! Nothing here reads a clock or the OS random number generator: times (unix milliseconds) and a seeded
//! RNG are passed in. The Swarm's receive path and `broadcast` live in `src/swarm/gossip.rs`.
//!
//! # Wire format
//!
//! A gossip message travels as the payload of an ordinary session [`Envelope`](crate::wire::pb::Envelope)
//! whose `Metadata` has protocol [`GOSSIP_PROTOCOL`], `gossip = true`, the relaying peer's client version
//! and a hop timestamp (checked against `net.max_clock_skew` like any envelope); its `auth_pub_key` and
//! `author_sign` stay empty because the author and the signature are inside. The payload is a
//! [`pb::GossipMessage`](crate::wire::pb::GossipMessage): application protocol, application payload,
//! author key (33 bytes), author timestamp (unix ms), a 16-byte random nonce, the author's 64-byte ECDSA
//! signature, and the per-hop `cover` relay hint (not signed; see [`relay`]).
//!
//! The author signs [`signing_digest`]: SHA-256 over a domain label and the five fields, each written as
//! an 8-byte big-endian length and its bytes, so no two distinct messages share an encoding. That digest
//! is also the [`MessageId`]: a relay that changes any signed byte changes the id and breaks the
//! signature; a relay that re-encodes the signature (ECDSA malleability) cannot make a new id.
//!
//! # Acceptance at each hop
//!
//! Decode and check field sizes ([`GossipError::Malformed`], [`GossipError::InvalidProtocol`],
//! [`GossipError::InvalidAuthor`]), check the author timestamp window ([`check_timestamp`]: older than
//! the seen-cache TTL is [`GossipError::Expired`], further ahead than the clock skew is
//! [`GossipError::FromFuture`]), look the id up in the [`SeenCache`] (a duplicate stops here), verify the
//! signature ([`GossipError::BadSignature`]), then the Swarm runs the protocol's validator, delivers and
//! relays. Because a message older than the TTL is rejected by its timestamp, the cache only needs to
//! remember an id until `timestamp + ttl`.

mod message;
pub mod relay;
mod seen;

pub use message::{
    GOSSIP_PROTOCOL, GossipError, MessageId, NONCE_LEN, SIGNING_DOMAIN, SignedGossip,
    check_timestamp, signing_digest,
};
pub use relay::{COVER_ALL, Candidate, RelayPlan, plan_relay};
pub use seen::SeenCache;
