//! [`SignedGossip`]: what the author signs, how every hop verifies it, its [`MessageId`] and wire form.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::identity::{Keypair, NodeId, PUBLIC_KEY_LEN, SIGNATURE_LEN};
use crate::wire::pb;

/// Reserved protocol of gossip envelopes.
pub const GOSSIP_PROTOCOL: &str = "/kadmesh/gossip/1";
/// Domain label hashed first into every signed digest, so a gossip signature means nothing elsewhere.
pub const SIGNING_DOMAIN: &[u8] = b"kadmesh/gossip/v1";
/// Length of the author's random nonce.
pub const NONCE_LEN: usize = 16;

/// Why a gossip message was refused before delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum GossipError {
    /// The envelope or the `GossipMessage` does not decode, or a field has the wrong length.
    #[error("malformed gossip message")]
    Malformed,
    /// The application protocol name is empty, too long or reserved.
    #[error("invalid protocol name in gossip message")]
    InvalidProtocol,
    /// The author key is not a 33-byte compressed secp256k1 point.
    #[error("invalid author key in gossip message")]
    InvalidAuthor,
    /// The signature is not the claimed author's over these contents.
    #[error("bad author signature")]
    BadSignature,
    /// The author timestamp is older than the seen-cache TTL (a replay, or a very late relay).
    #[error("gossip message older than the seen-cache TTL")]
    Expired,
    /// The author timestamp is further in the future than the allowed clock skew.
    #[error("gossip message timestamp too far in the future")]
    FromFuture,
}

/// The id of a gossip message: the SHA-256 digest its author signed ([`signing_digest`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; 32]);

impl MessageId {
    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 8 hex digits, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", self.short())
    }
}

/// The digest an author signs, which is also the [`MessageId`].
///
/// SHA-256 over [`SIGNING_DOMAIN`], `protocol`, `payload`, the author's 33-byte compressed key, the
/// timestamp (8 bytes big-endian) and the nonce, each preceded by its length as 8 bytes big-endian.
pub fn signing_digest(
    protocol: &str,
    payload: &[u8],
    author: &NodeId,
    timestamp_ms: i64,
    nonce: &[u8],
) -> [u8; 32] {
    let timestamp = timestamp_ms.to_be_bytes();
    let mut hash = Sha256::new();
    for field in [
        SIGNING_DOMAIN,
        protocol.as_bytes(),
        payload,
        author.as_bytes().as_slice(),
        timestamp.as_slice(),
        nonce,
    ] {
        hash.update((field.len() as u64).to_be_bytes());
        hash.update(field);
    }
    hash.finalize().into()
}

/// Checks an author timestamp against `now_ms`: not older than `ttl`, not ahead by more than `max_skew`.
///
/// Returns when the message expires (unix ms): the seen cache must remember its id until then, and not
/// after, since from then on the timestamp check rejects it.
pub fn check_timestamp(
    timestamp_ms: i64,
    now_ms: i64,
    ttl: Duration,
    max_skew: Duration,
) -> Result<i64, GossipError> {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let skew_ms = i64::try_from(max_skew.as_millis()).unwrap_or(i64::MAX);
    let expires_at = timestamp_ms.saturating_add(ttl_ms);
    if expires_at <= now_ms {
        return Err(GossipError::Expired);
    }
    if timestamp_ms > now_ms.saturating_add(skew_ms) {
        return Err(GossipError::FromFuture);
    }
    Ok(expires_at)
}

/// An author-signed gossip message. Built by [`SignedGossip::sign`] or decoded (and size-checked) by
/// [`SignedGossip::from_proto`]; the signature is checked by [`SignedGossip::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedGossip {
    /// Application protocol.
    protocol: String,
    /// Application bytes.
    payload: Bytes,
    /// The author.
    author: NodeId,
    /// Authoring time, unix ms.
    timestamp_ms: i64,
    /// Random nonce, so equal payloads get different ids.
    nonce: [u8; NONCE_LEN],
    /// Compact ECDSA signature (r || s) over [`signing_digest`].
    signature: [u8; SIGNATURE_LEN],
}

impl SignedGossip {
    /// Signs a new message as `author`. Fails if `protocol` is not a valid application protocol name.
    pub fn sign(
        author: &Keypair,
        protocol: &str,
        payload: Bytes,
        timestamp_ms: i64,
        nonce: [u8; NONCE_LEN],
    ) -> Result<Self, GossipError> {
        check_protocol(protocol)?;
        let author_id = author.node_id();
        let digest = signing_digest(protocol, &payload, &author_id, timestamp_ms, &nonce);
        Ok(Self {
            protocol: protocol.to_owned(),
            payload,
            author: author_id,
            timestamp_ms,
            nonce,
            signature: author.sign_digest(&digest),
        })
    }

    /// The id: the digest the author signed. Cheap (one SHA-256); does not check the signature.
    pub fn id(&self) -> MessageId {
        MessageId(signing_digest(
            &self.protocol,
            &self.payload,
            &self.author,
            self.timestamp_ms,
            &self.nonce,
        ))
    }

    /// Checks the author's signature; returns the id.
    pub fn verify(&self) -> Result<MessageId, GossipError> {
        let id = self.id();
        let key = self
            .author
            .public_key()
            .map_err(|_| GossipError::InvalidAuthor)?;
        if key.verify_digest(&id.0, &self.signature) {
            Ok(id)
        } else {
            Err(GossipError::BadSignature)
        }
    }

    /// Application protocol.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    /// Application bytes.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The author.
    pub fn author(&self) -> &NodeId {
        &self.author
    }

    /// Authoring time, unix ms.
    pub fn timestamp_ms(&self) -> i64 {
        self.timestamp_ms
    }

    /// The author's nonce.
    pub fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }

    /// The author's signature.
    pub fn signature(&self) -> &[u8; SIGNATURE_LEN] {
        &self.signature
    }

    /// The wire form, with the per-hop `cover` hint.
    pub fn to_proto(&self, cover: bool) -> pb::GossipMessage {
        pb::GossipMessage {
            protocol: self.protocol.clone(),
            payload: self.payload.to_vec(),
            author: self.author.as_bytes().to_vec(),
            timestamp: self.timestamp_ms,
            nonce: self.nonce.to_vec(),
            signature: self.signature.to_vec(),
            cover,
        }
    }

    /// Reads the wire form, checking every field's size and the author key (not the signature: see
    /// [`SignedGossip::verify`]). Returns the message and its `cover` hint.
    pub fn from_proto(msg: pb::GossipMessage) -> Result<(Self, bool), GossipError> {
        check_protocol(&msg.protocol)?;
        if msg.author.len() != PUBLIC_KEY_LEN {
            return Err(GossipError::InvalidAuthor);
        }
        let author = NodeId::from_bytes(&msg.author).map_err(|_| GossipError::InvalidAuthor)?;
        let nonce = <[u8; NONCE_LEN]>::try_from(msg.nonce.as_slice())
            .map_err(|_| GossipError::Malformed)?;
        let signature = <[u8; SIGNATURE_LEN]>::try_from(msg.signature.as_slice())
            .map_err(|_| GossipError::Malformed)?;
        Ok((
            Self {
                protocol: msg.protocol,
                payload: Bytes::from(msg.payload),
                author,
                timestamp_ms: msg.timestamp,
                nonce,
                signature,
            },
            msg.cover,
        ))
    }
}

fn check_protocol(name: &str) -> Result<(), GossipError> {
    crate::swarm::protocols::check_name(name).map_err(|_| GossipError::InvalidProtocol)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change a misbehaving relay makes to a message.
    type Tamper = Box<dyn Fn(&mut pb::GossipMessage)>;

    fn signed(kp: &Keypair) -> SignedGossip {
        SignedGossip::sign(
            kp,
            "chat",
            Bytes::from_static(b"hello"),
            1_000,
            [7; NONCE_LEN],
        )
        .unwrap()
    }

    /// Decodes `p` as a relay's version would arrive, then verifies it.
    fn verify_proto(p: pb::GossipMessage) -> Result<MessageId, GossipError> {
        SignedGossip::from_proto(p)?.0.verify()
    }

    #[test]
    fn signed_message_verifies_and_round_trips() {
        let kp = Keypair::random();
        let m = signed(&kp);
        assert_eq!(m.verify().unwrap(), m.id());
        assert_eq!(m.author(), &kp.node_id());
        let (back, cover) = SignedGossip::from_proto(m.to_proto(true)).unwrap();
        assert!(cover);
        assert_eq!(back, m);
        assert_eq!(back.verify().unwrap(), m.id());
        // The cover hint is not signed: flipping it keeps the message valid and its id.
        let (plain, cover) = SignedGossip::from_proto(m.to_proto(false)).unwrap();
        assert!(!cover);
        assert_eq!(plain.verify().unwrap(), m.id());
    }

    #[test]
    fn every_signed_field_is_covered() {
        let kp = Keypair::random();
        let m = signed(&kp);
        let base = m.to_proto(false);
        let tamper: [(&str, Tamper); 5] = [
            ("payload", Box::new(|p| p.payload = b"hellO".to_vec())),
            ("protocol", Box::new(|p| p.protocol = "chaT".into())),
            ("timestamp", Box::new(|p| p.timestamp += 1)),
            ("nonce", Box::new(|p| p.nonce[0] ^= 1)),
            (
                "author",
                Box::new(|p| p.author = Keypair::random().node_id().as_bytes().to_vec()),
            ),
        ];
        for (field, change) in tamper {
            let mut p = base.clone();
            change(&mut p);
            let (t, _) = SignedGossip::from_proto(p).unwrap();
            assert_ne!(t.id(), m.id(), "{field} changes the id");
            assert_eq!(t.verify(), Err(GossipError::BadSignature), "{field}");
        }
        let mut p = base.clone();
        p.signature[10] ^= 1;
        assert_eq!(verify_proto(p), Err(GossipError::BadSignature));
    }

    #[test]
    fn a_signature_by_another_key_than_the_claimed_author_is_rejected() {
        let author = Keypair::random();
        let forger = Keypair::random();
        let mut p = signed(&forger).to_proto(false);
        p.author = author.node_id().as_bytes().to_vec();
        assert_eq!(verify_proto(p), Err(GossipError::BadSignature));
        // The forger signing the exact digest with the author's key claimed.
        let digest = signing_digest("chat", b"x", &author.node_id(), 5, &[1; NONCE_LEN]);
        let p = pb::GossipMessage {
            protocol: "chat".into(),
            payload: b"x".to_vec(),
            author: author.node_id().as_bytes().to_vec(),
            timestamp: 5,
            nonce: vec![1; NONCE_LEN],
            signature: forger.sign_digest(&digest).to_vec(),
            cover: false,
        };
        assert_eq!(verify_proto(p), Err(GossipError::BadSignature));
    }

    #[test]
    fn malformed_fields_are_typed_errors() {
        let m = signed(&Keypair::random()).to_proto(false);
        let cases: [(Tamper, GossipError); 7] = [
            (
                Box::new(|p| p.protocol.clear()),
                GossipError::InvalidProtocol,
            ),
            (
                Box::new(|p| p.protocol = "/kadmesh/findnode/1".into()),
                GossipError::InvalidProtocol,
            ),
            (
                Box::new(|p| p.author.truncate(32)),
                GossipError::InvalidAuthor,
            ),
            (
                Box::new(|p| p.author = vec![9; 33]),
                GossipError::InvalidAuthor,
            ),
            (Box::new(|p| p.nonce.push(0)), GossipError::Malformed),
            (
                Box::new(|p| p.signature.pop().map(drop).unwrap_or(())),
                GossipError::Malformed,
            ),
            (Box::new(|p| p.signature.clear()), GossipError::Malformed),
        ];
        for (i, (change, want)) in cases.into_iter().enumerate() {
            let mut p = m.clone();
            change(&mut p);
            assert_eq!(SignedGossip::from_proto(p).err(), Some(want), "case {i}");
        }
        assert_eq!(
            SignedGossip::sign(&Keypair::random(), "", Bytes::new(), 0, [0; NONCE_LEN]).err(),
            Some(GossipError::InvalidProtocol)
        );
    }

    #[test]
    fn the_encoding_is_unambiguous() {
        let a = NodeId::from_bytes(Keypair::random().node_id().as_bytes()).unwrap();
        // Moving bytes between the protocol and the payload changes the digest.
        assert_ne!(
            signing_digest("ab", b"c", &a, 1, &[0; NONCE_LEN]),
            signing_digest("a", b"bc", &a, 1, &[0; NONCE_LEN])
        );
        assert_ne!(
            signing_digest("a", b"", &a, 1, &[0; NONCE_LEN]),
            signing_digest("a", b"\0", &a, 1, &[0; NONCE_LEN])
        );
    }

    #[test]
    fn timestamp_window() {
        let ttl = Duration::from_secs(120);
        let skew = Duration::from_secs(30);
        let now = 1_000_000_000;
        assert_eq!(check_timestamp(now, now, ttl, skew), Ok(now + 120_000));
        assert!(check_timestamp(now - 119_999, now, ttl, skew).is_ok());
        assert_eq!(
            check_timestamp(now - 120_000, now, ttl, skew),
            Err(GossipError::Expired)
        );
        assert!(check_timestamp(now + 30_000, now, ttl, skew).is_ok());
        assert_eq!(
            check_timestamp(now + 30_001, now, ttl, skew),
            Err(GossipError::FromFuture)
        );
        assert_eq!(
            check_timestamp(i64::MIN, now, ttl, skew),
            Err(GossipError::Expired)
        );
        assert_eq!(
            check_timestamp(i64::MAX, now, ttl, skew),
            Err(GossipError::FromFuture)
        );
    }
}
