//! Session security: the sans-IO [`handshake`] (authenticated ephemeral ECDH) and the sealed-frame
//! [`session`] (AES-256-CBC + HMAC-SHA256 with implicit sequence numbers). See DESIGN.md §4.

pub mod handshake;
pub mod session;
mod transcript;

pub use handshake::{Established, HandshakeConfig, HandshakeError, Initiator, Responder};
pub use session::{DirectionKeys, Opener, Sealer, SessionError, SessionKeys, sealed_len};

use hmac::{KeyInit, digest::Key};

/// HMAC-SHA256, the MAC of both the handshake key confirmation and the session frames.
pub(crate) type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// A pre-keyed HMAC-SHA256 instance for a 32-byte key.
///
/// HMAC zero-pads keys shorter than the hash block (RFC 2104 §2), so keying with the 32-byte key placed
/// in a zeroed 64-byte block is exactly HMAC under the 32-byte key. Going through the fixed-size `new`
/// rather than `new_from_slice` keeps this infallible without an `unwrap`.
pub(crate) fn hmac_sha256(key: &[u8; 32]) -> HmacSha256 {
    let mut block = Key::<HmacSha256>::default();
    for (dst, src) in block.iter_mut().zip(key.iter()) {
        *dst = *src;
    }
    let mac = <HmacSha256 as KeyInit>::new(&block);
    zeroize_bytes(&mut block);
    mac
}

/// Overwrites secret bytes with zeros (not optimised away).
pub(crate) fn zeroize_bytes(bytes: &mut [u8]) {
    use k256::elliptic_curve::zeroize::Zeroize;
    bytes.zeroize();
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::Mac;

    #[test]
    fn padded_key_hmac_equals_slice_keyed_hmac() {
        let key = [0x5au8; 32];
        let mut a = hmac_sha256(&key);
        let mut b = <HmacSha256 as KeyInit>::new_from_slice(&key).unwrap();
        a.update(b"kadmesh");
        b.update(b"kadmesh");
        assert_eq!(a.finalize().into_bytes(), b.finalize().into_bytes());
        // RFC 4231 test case 2 shape check with a short key would differ from a 32-byte one.
        let mut c = hmac_sha256(&[0x5bu8; 32]);
        c.update(b"kadmesh");
        let mut d = hmac_sha256(&key);
        d.update(b"kadmesh");
        assert_ne!(c.finalize().into_bytes(), d.finalize().into_bytes());
    }
}
