//! Unambiguous transcript hashing for the handshake.
//!
//! Every item is absorbed into SHA-256 as `tag (1 byte) || length (u64 big-endian) || bytes`, integers as
//! their fixed-width big-endian bytes. Each field has its own tag and a length, so no two different
//! sequences of items hash the same input (unlike protobuf bytes, whose encoding is not canonical).

use sha2::{Digest, Sha256};

/// Tags of the items absorbed into a transcript. Message fields use their protobuf field numbers.
pub(crate) mod tag {
    /// The domain-separation label (always first).
    pub(crate) const DOMAIN: u8 = 0x00;
    /// `HandshakeData.session_id`.
    pub(crate) const SESSION_ID: u8 = 1;
    /// `HandshakeData.payload`.
    pub(crate) const PAYLOAD: u8 = 2;
    /// `HandshakeData.timestamp`.
    pub(crate) const TIMESTAMP: u8 = 3;
    /// `HandshakeData.client_version`.
    pub(crate) const CLIENT_VERSION: u8 = 4;
    /// `HandshakeData.network_id`.
    pub(crate) const NETWORK_ID: u8 = 5;
    /// `HandshakeData.protocol`.
    pub(crate) const PROTOCOL: u8 = 6;
    /// `HandshakeData.node_pub_key` (as sent).
    pub(crate) const NODE_PUB_KEY: u8 = 7;
    /// `HandshakeData.iv`.
    pub(crate) const IV: u8 = 8;
    /// `HandshakeData.pub_key` (as sent).
    pub(crate) const PUB_KEY: u8 = 9;
    /// `HandshakeData.listen_port`.
    pub(crate) const LISTEN_PORT: u8 = 12;
    /// The sender's role ("initiator" / "responder").
    pub(crate) const ROLE: u8 = 0x80;
    /// The digest of the previous message (hash chaining).
    pub(crate) const PREV_HASH: u8 = 0x81;
    /// The signature of the previous message.
    pub(crate) const PREV_SIGN: u8 = 0x82;
    /// The sender's static key, compressed.
    pub(crate) const SENDER_STATIC: u8 = 0x83;
    /// The receiver's static key, compressed.
    pub(crate) const PEER_STATIC: u8 = 0x84;
}

/// A SHA-256 transcript of tagged, length-prefixed items.
pub(crate) struct Transcript(Sha256);

impl Transcript {
    /// A transcript starting with the domain-separation `label`.
    pub(crate) fn new(label: &[u8]) -> Self {
        let mut t = Transcript(Sha256::new());
        t.bytes(tag::DOMAIN, label);
        t
    }

    /// Absorbs `tag || len(value) as u64 BE || value`.
    pub(crate) fn bytes(&mut self, tag: u8, value: &[u8]) {
        self.0.update([tag]);
        self.0.update((value.len() as u64).to_be_bytes());
        self.0.update(value);
    }

    /// Absorbs a signed 64-bit integer as 8 big-endian bytes.
    pub(crate) fn i64(&mut self, tag: u8, value: i64) {
        self.bytes(tag, &value.to_be_bytes());
    }

    /// Absorbs a signed 32-bit integer as 4 big-endian bytes.
    pub(crate) fn i32(&mut self, tag: u8, value: i32) {
        self.bytes(tag, &value.to_be_bytes());
    }

    /// Absorbs an unsigned 32-bit integer as 4 big-endian bytes.
    pub(crate) fn u32(&mut self, tag: u8, value: u32) {
        self.bytes(tag, &value.to_be_bytes());
    }

    /// The SHA-256 digest.
    pub(crate) fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_unambiguous_and_tagged() {
        let digest = |items: &[(u8, &[u8])]| {
            let mut t = Transcript::new(b"label");
            for (tag, v) in items {
                t.bytes(*tag, v);
            }
            t.finish()
        };
        // Moving a byte across a field boundary changes the digest.
        assert_ne!(
            digest(&[(1, b"ab"), (2, b"c")]),
            digest(&[(1, b"a"), (2, b"bc")])
        );
        // Same bytes under another tag change the digest.
        assert_ne!(digest(&[(1, b"ab")]), digest(&[(2, b"ab")]));
        // The label matters.
        let mut other = Transcript::new(b"other");
        other.bytes(1, b"ab");
        assert_ne!(other.finish(), digest(&[(1, b"ab")]));
        assert_eq!(digest(&[(1, b"ab")]), digest(&[(1, b"ab")]));
    }
}
