//! The sans-IO session handshake: three messages, mutual authentication by the static keys, forward
//! secrecy by ephemeral ECDH, keys bound to the transcript.
//!
//! No sockets, clocks or OS randomness in here: the caller passes the time and an RNG in, and moves the
//! [`pb::HandshakeData`] messages over the wire (in clear frames).
//!
//! ```text
//! initiator                                                responder
//! hello  "handshake/req":  nonce_i, eph_i, static_i, ..., sig_i = Sign(static_i, H_i)  ->
//!                                   <-  "handshake/resp": nonce_r, eph_r, static_r, ..., sig_r = Sign(static_r, H_r), hmac_r
//! fin    "handshake/fin":  session_id = nonce_i, hmac_i                               ->
//! ```
//!
//! # Transcript
//!
//! Every item goes into SHA-256 as `tag (1) || len (u64 BE) || bytes` (see `transcript.rs`), integers
//! as fixed-width big-endian bytes:
//!
//! ```text
//! H_i = SHA-256( 0x00 "kadmesh/handshake/v1", 0x80 "initiator",
//!                6 protocol, 1 session_id, 2 payload, 3 timestamp (i64), 4 client_version,
//!                5 network_id (i32), 7 node_pub_key (as sent), 8 iv, 9 pub_key (as sent), 12 listen_port (u32),
//!                0x83 initiator static key (33 bytes), 0x84 responder static key (the dialled one) )
//! H_r = SHA-256( 0x00 "kadmesh/handshake/v1", 0x80 "responder", 0x81 H_i, 0x82 sig_i,
//!                <the same fields of the reply>,
//!                0x83 responder static key, 0x84 initiator static key )
//! transcript hash TH = H_r
//! ```
//!
//! Each signature covers every field of its message except `sign` itself and `hmac` (which is a MAC over
//! the signed transcript and is checked on its own). `H_r` chains the whole hello, so the reply is bound
//! to it.
//!
//! # Keys
//!
//! `PRK = HKDF-Extract(salt = nonce_i || nonce_r, ikm = x-coordinate of ECDH(eph_i, eph_r))` with
//! SHA-256, then six 32-byte keys `HKDF-Expand(PRK, info = "kadmesh/handshake/v1/keys" || TH || label)`
//! with labels `/enc/i2r`, `/mac/i2r`, `/enc/r2i`, `/mac/r2i`, `/confirm/i`, `/confirm/r`.
//! The reply carries `hmac_r = HMAC-SHA256(confirm_r, TH)`, the confirmation `hmac_i = HMAC-SHA256(confirm_i, TH)`,
//! both verified in constant time.

use std::fmt;
use std::time::Duration;

use hkdf::Hkdf;
use hmac::Mac;
use k256::ecdh::EphemeralSecret;
use k256::elliptic_curve::Generate;
use rand::CryptoRng;
use sha2::Sha256;

use super::session::{DirectionKeys, SessionKeys};
use super::transcript::{Transcript, tag};
use super::{hmac_sha256, zeroize_bytes};
use crate::identity::{Keypair, NodeId, PublicKey, SIGNATURE_LEN};
use crate::wire::pb;

/// `protocol` of the initiator's hello.
pub const PROTOCOL_REQ: &str = "handshake/req";
/// `protocol` of the responder's reply.
pub const PROTOCOL_RESP: &str = "handshake/resp";
/// `protocol` of the initiator's confirmation.
pub const PROTOCOL_FIN: &str = "handshake/fin";
/// Length of the random nonce carried in `session_id`.
pub const NONCE_LEN: usize = 32;
/// Longest `client_version` accepted.
pub const MAX_VERSION_LEN: usize = 64;
/// Length of the key-confirmation tag.
pub const CONFIRM_TAG_LEN: usize = 32;

/// Domain-separation label of the transcript.
const LABEL: &[u8] = b"kadmesh/handshake/v1";
/// HKDF info prefix (followed by the transcript hash).
const KDF_INFO: &[u8] = b"kadmesh/handshake/v1/keys";
/// Role label of the initiator.
const ROLE_INITIATOR: &[u8] = b"initiator";
/// Role label of the responder.
const ROLE_RESPONDER: &[u8] = b"responder";

/// What both sides of a handshake agree on, and what this node tells its peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeConfig {
    /// Network id; peers with another id are refused.
    pub network_id: i32,
    /// This node's client version, semver `major.minor.patch`; peers are compatible iff same major.
    pub client_version: String,
    /// Largest accepted difference between the peer's timestamp and our clock, either way.
    pub max_clock_skew: Duration,
    /// TCP port on which this node accepts connections (0 when it does not listen).
    pub listen_port: u16,
}

/// Why a handshake failed. Each failed check has its own variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The peer belongs to another network.
    #[error("network id mismatch: ours {ours}, theirs {theirs}")]
    NetworkMismatch {
        /// Our network id.
        ours: i32,
        /// The peer's network id.
        theirs: i32,
    },
    /// The peer's client version has another semver major than ours.
    #[error("incompatible client version: ours {ours}, theirs {theirs}")]
    IncompatibleVersion {
        /// Our client version.
        ours: String,
        /// The peer's client version.
        theirs: String,
    },
    /// The peer's timestamp differs from our clock by more than `max_clock_skew`.
    #[error("clock skew of {skew_ms} ms exceeds the limit")]
    ClockSkew {
        /// Their timestamp minus our clock, in milliseconds (positive: theirs is ahead).
        skew_ms: i64,
    },
    /// The signature does not verify under the sender's static key over the transcript hash (a field
    /// was changed, the hello was meant for another responder, or another key signed).
    #[error("bad handshake signature")]
    BadSignature,
    /// The responder's static key is not the one we dialled.
    #[error("unexpected responder key: dialled {expected}, got {got}")]
    UnexpectedResponderKey {
        /// The key we dialled.
        expected: NodeId,
        /// The key that answered.
        got: NodeId,
    },
    /// The peer is this node itself.
    #[error("connection to ourselves")]
    SelfConnection,
    /// The static or ephemeral key is not a valid secp256k1 point.
    #[error("invalid curve point")]
    InvalidPoint,
    /// The key-confirmation HMAC does not match: the peer did not derive the same keys.
    #[error("key confirmation failed")]
    KeyConfirmation,
    /// The message is malformed: wrong protocol string, wrong field length, missing field, unparsable
    /// version, out-of-range port.
    #[error("malformed handshake message: {0}")]
    Malformed(String),
}

/// A finished handshake: who the peer is and the session keys.
pub struct Established {
    /// The peer's static key (authenticated).
    pub remote: NodeId,
    /// The port on which the peer accepts connections (0: it does not listen).
    pub remote_listen_port: u16,
    /// The peer's client version (same semver major as ours).
    pub remote_client_version: String,
    /// This side's session keys (send/recv already oriented).
    pub keys: SessionKeys,
    /// The transcript hash both sides agreed on.
    pub transcript_hash: [u8; 32],
}

impl fmt::Debug for Established {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Established")
            .field("remote", &self.remote)
            .field("remote_listen_port", &self.remote_listen_port)
            .field("remote_client_version", &self.remote_client_version)
            .field("transcript_hash", &hex::encode(self.transcript_hash))
            .finish_non_exhaustive()
    }
}

/// The initiator between its hello and the responder's reply.
pub struct Initiator {
    /// Our configuration (for checking the reply).
    cfg: HandshakeConfig,
    /// Our static key.
    local: NodeId,
    /// The static key we dialled.
    remote: NodeId,
    /// Our ephemeral ECDH secret.
    eph: EphemeralSecret,
    /// Our nonce.
    nonce: [u8; NONCE_LEN],
    /// `H_i`, the digest of our hello.
    hello_hash: [u8; 32],
    /// Our signature of `H_i`.
    hello_sign: [u8; SIGNATURE_LEN],
}

impl fmt::Debug for Initiator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Initiator")
            .field("local", &self.local)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl Initiator {
    /// Builds the initiator's hello ("handshake/req"). Err(SelfConnection) if remote == local.
    pub fn start<R: CryptoRng + ?Sized>(
        cfg: &HandshakeConfig,
        local: &Keypair,
        remote: &NodeId,
        now_unix_ms: i64,
        rng: &mut R,
    ) -> Result<(Initiator, pb::HandshakeData), HandshakeError> {
        let local_id = local.node_id();
        if *remote == local_id {
            return Err(HandshakeError::SelfConnection);
        }
        local_major(cfg)?;
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let eph = EphemeralSecret::generate_from_rng(rng);

        let mut hello = own_message(cfg, PROTOCOL_REQ, local, &nonce, &eph, now_unix_ms);
        let hello_hash = message_digest(ROLE_INITIATOR, None, &hello, &local_id, remote);
        let hello_sign = local.sign_digest(&hello_hash);
        hello.sign = hello_sign.to_vec();

        let initiator = Initiator {
            cfg: cfg.clone(),
            local: local_id,
            remote: *remote,
            eph,
            nonce,
            hello_hash,
            hello_sign,
        };
        Ok((initiator, hello))
    }

    /// Checks the responder's reply ("handshake/resp"), derives keys, returns the confirmation ("handshake/fin").
    pub fn on_response(
        self,
        resp: &pb::HandshakeData,
        now_unix_ms: i64,
    ) -> Result<(Established, pb::HandshakeData), HandshakeError> {
        let peer = check_message(&self.cfg, resp, PROTOCOL_RESP, &self.local, now_unix_ms)?;
        if peer.id != self.remote {
            return Err(HandshakeError::UnexpectedResponderKey {
                expected: self.remote,
                got: peer.id,
            });
        }
        let chain = (&self.hello_hash, &self.hello_sign[..]);
        let th = message_digest(ROLE_RESPONDER, Some(chain), resp, &peer.id, &self.local);
        if !peer.static_key.verify_digest(&th, &peer.sign) {
            return Err(HandshakeError::BadSignature);
        }
        let keys = derive(&self.eph, &peer.eph, &self.nonce, &peer.nonce, &th)?;
        verify_confirm(&keys.confirm_r, &th, &resp.hmac)?;

        let fin = pb::HandshakeData {
            protocol: PROTOCOL_FIN.to_owned(),
            session_id: self.nonce.to_vec(),
            hmac: confirm_tag(&keys.confirm_i, &th).to_vec(),
            ..Default::default()
        };
        let established = Established {
            remote: peer.id,
            remote_listen_port: peer.listen_port,
            remote_client_version: resp.client_version.clone(),
            keys: SessionKeys {
                send: keys.i2r,
                recv: keys.r2i,
            },
            transcript_hash: th,
        };
        Ok((established, fin))
    }
}

/// The responder between its reply and the initiator's confirmation.
pub struct Responder {
    /// The initiator's static key (authenticated by its signature).
    remote: NodeId,
    /// The initiator's listen port.
    remote_listen_port: u16,
    /// The initiator's client version.
    remote_client_version: String,
    /// Our session keys, usable once the initiator confirms.
    keys: SessionKeys,
    /// The key the initiator's confirmation must be made with.
    confirm_i: ConfirmKey,
    /// The transcript hash.
    transcript_hash: [u8; 32],
    /// The initiator's nonce, echoed in its confirmation.
    initiator_nonce: [u8; NONCE_LEN],
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl Responder {
    /// Checks the initiator's hello, returns the reply.
    pub fn on_hello<R: CryptoRng + ?Sized>(
        cfg: &HandshakeConfig,
        local: &Keypair,
        hello: &pb::HandshakeData,
        now_unix_ms: i64,
        rng: &mut R,
    ) -> Result<(Responder, pb::HandshakeData), HandshakeError> {
        let local_id = local.node_id();
        local_major(cfg)?;
        let peer = check_message(cfg, hello, PROTOCOL_REQ, &local_id, now_unix_ms)?;
        // The initiator signed with our key as the peer: a hello meant for another node fails here.
        let hello_hash = message_digest(ROLE_INITIATOR, None, hello, &peer.id, &local_id);
        if !peer.static_key.verify_digest(&hello_hash, &peer.sign) {
            return Err(HandshakeError::BadSignature);
        }

        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let eph = EphemeralSecret::generate_from_rng(rng);
        let mut resp = own_message(cfg, PROTOCOL_RESP, local, &nonce, &eph, now_unix_ms);
        let chain = (&hello_hash, &peer.sign[..]);
        let th = message_digest(ROLE_RESPONDER, Some(chain), &resp, &local_id, &peer.id);
        resp.sign = local.sign_digest(&th).to_vec();
        let keys = derive(&eph, &peer.eph, &peer.nonce, &nonce, &th)?;
        resp.hmac = confirm_tag(&keys.confirm_r, &th).to_vec();

        let responder = Responder {
            remote: peer.id,
            remote_listen_port: peer.listen_port,
            remote_client_version: hello.client_version.clone(),
            keys: SessionKeys {
                send: keys.r2i,
                recv: keys.i2r,
            },
            confirm_i: keys.confirm_i,
            transcript_hash: th,
            initiator_nonce: peer.nonce,
        };
        Ok((responder, resp))
    }

    /// Checks the initiator's confirmation.
    pub fn on_finish(self, fin: &pb::HandshakeData) -> Result<Established, HandshakeError> {
        if fin.protocol != PROTOCOL_FIN {
            return Err(wrong_protocol(PROTOCOL_FIN, &fin.protocol));
        }
        if fin.session_id != self.initiator_nonce {
            return Err(HandshakeError::Malformed(
                "confirmation session_id is not the initiator's nonce".to_owned(),
            ));
        }
        verify_confirm(&self.confirm_i, &self.transcript_hash, &fin.hmac)?;
        Ok(Established {
            remote: self.remote,
            remote_listen_port: self.remote_listen_port,
            remote_client_version: self.remote_client_version,
            keys: self.keys,
            transcript_hash: self.transcript_hash,
        })
    }
}

/// A peer's hello or reply after the checks that need no signature.
struct CheckedPeer {
    /// Its static key.
    static_key: PublicKey,
    /// Its node id (the static key, compressed).
    id: NodeId,
    /// Its ephemeral key.
    eph: k256::PublicKey,
    /// Its nonce.
    nonce: [u8; NONCE_LEN],
    /// Its signature (not yet verified).
    sign: [u8; SIGNATURE_LEN],
    /// Its listen port.
    listen_port: u16,
}

/// Runs the checks common to hello and reply, cheapest first; the signature is left to the caller.
fn check_message(
    cfg: &HandshakeConfig,
    msg: &pb::HandshakeData,
    protocol: &str,
    local: &NodeId,
    now_unix_ms: i64,
) -> Result<CheckedPeer, HandshakeError> {
    if msg.protocol != protocol {
        return Err(wrong_protocol(protocol, &msg.protocol));
    }
    let nonce: [u8; NONCE_LEN] = fixed(&msg.session_id, "session_id")?;
    let sign: [u8; SIGNATURE_LEN] = fixed(&msg.sign, "sign")?;
    sec1_len(&msg.node_pub_key, "node_pub_key")?;
    sec1_len(&msg.pub_key, "pub_key")?;
    let listen_port = u16::try_from(msg.listen_port).map_err(|_| {
        HandshakeError::Malformed(format!("listen_port {} out of range", msg.listen_port))
    })?;
    if msg.network_id != cfg.network_id {
        return Err(HandshakeError::NetworkMismatch {
            ours: cfg.network_id,
            theirs: msg.network_id,
        });
    }
    check_version(cfg, &msg.client_version)?;
    check_clock(msg.timestamp, now_unix_ms, cfg.max_clock_skew)?;

    let static_key =
        PublicKey::from_sec1(&msg.node_pub_key).map_err(|_| HandshakeError::InvalidPoint)?;
    let id = static_key.node_id();
    if id == *local {
        return Err(HandshakeError::SelfConnection);
    }
    let eph =
        k256::PublicKey::from_sec1_bytes(&msg.pub_key).map_err(|_| HandshakeError::InvalidPoint)?;
    Ok(CheckedPeer {
        static_key,
        id,
        eph,
        nonce,
        sign,
        listen_port,
    })
}

/// This side's hello or reply, without `sign` and `hmac`.
fn own_message(
    cfg: &HandshakeConfig,
    protocol: &str,
    local: &Keypair,
    nonce: &[u8; NONCE_LEN],
    eph: &EphemeralSecret,
    now_unix_ms: i64,
) -> pb::HandshakeData {
    pb::HandshakeData {
        session_id: nonce.to_vec(),
        payload: Vec::new(),
        timestamp: now_unix_ms,
        client_version: cfg.client_version.clone(),
        network_id: cfg.network_id,
        protocol: protocol.to_owned(),
        node_pub_key: local.public().to_compressed().to_vec(),
        iv: Vec::new(),
        pub_key: k256::CompressedPoint::from(eph.public_key()).to_vec(),
        hmac: Vec::new(),
        sign: Vec::new(),
        listen_port: u32::from(cfg.listen_port),
    }
}

/// The digest a message's signature covers: every field except `sign` and `hmac`, the role, the
/// previous message (reply only) and both static keys.
fn message_digest(
    role: &[u8],
    chain: Option<(&[u8; 32], &[u8])>,
    msg: &pb::HandshakeData,
    sender: &NodeId,
    peer: &NodeId,
) -> [u8; 32] {
    let mut t = Transcript::new(LABEL);
    t.bytes(tag::ROLE, role);
    if let Some((prev_hash, prev_sign)) = chain {
        t.bytes(tag::PREV_HASH, prev_hash);
        t.bytes(tag::PREV_SIGN, prev_sign);
    }
    t.bytes(tag::PROTOCOL, msg.protocol.as_bytes());
    t.bytes(tag::SESSION_ID, &msg.session_id);
    t.bytes(tag::PAYLOAD, &msg.payload);
    t.i64(tag::TIMESTAMP, msg.timestamp);
    t.bytes(tag::CLIENT_VERSION, msg.client_version.as_bytes());
    t.i32(tag::NETWORK_ID, msg.network_id);
    t.bytes(tag::NODE_PUB_KEY, &msg.node_pub_key);
    t.bytes(tag::IV, &msg.iv);
    t.bytes(tag::PUB_KEY, &msg.pub_key);
    t.u32(tag::LISTEN_PORT, msg.listen_port);
    t.bytes(tag::SENDER_STATIC, sender.as_bytes());
    t.bytes(tag::PEER_STATIC, peer.as_bytes());
    t.finish()
}

/// A key-confirmation key. Zeroed on drop.
struct ConfirmKey([u8; 32]);

impl Drop for ConfirmKey {
    fn drop(&mut self) {
        zeroize_bytes(&mut self.0);
    }
}

/// Everything the key schedule yields.
struct DerivedKeys {
    /// Initiator -> responder frame keys.
    i2r: DirectionKeys,
    /// Responder -> initiator frame keys.
    r2i: DirectionKeys,
    /// Key of the initiator's confirmation tag.
    confirm_i: ConfirmKey,
    /// Key of the responder's confirmation tag.
    confirm_r: ConfirmKey,
}

/// ECDH of the ephemeral keys, then HKDF-SHA256 salted with both nonces and bound to the transcript.
fn derive(
    eph: &EphemeralSecret,
    peer_eph: &k256::PublicKey,
    nonce_i: &[u8; NONCE_LEN],
    nonce_r: &[u8; NONCE_LEN],
    transcript_hash: &[u8; 32],
) -> Result<DerivedKeys, HandshakeError> {
    let shared = eph.diffie_hellman(peer_eph);
    let mut salt = [0u8; 2 * NONCE_LEN];
    let (salt_i, salt_r) = salt.split_at_mut(NONCE_LEN);
    salt_i.copy_from_slice(nonce_i);
    salt_r.copy_from_slice(nonce_r);
    let hkdf = Hkdf::<Sha256>::new(Some(&salt), shared.raw_secret_bytes());
    let mut okm = [[0u8; 32]; 6];
    for (chunk, info) in okm.iter_mut().zip(OKM_LABELS) {
        // 32 bytes are far below HKDF's 255 * 32 limit, so this never fails.
        hkdf.expand_multi_info(&[KDF_INFO, transcript_hash, info], chunk)
            .map_err(|_| HandshakeError::Malformed("key derivation failed".to_owned()))?;
    }
    let [enc_i2r, mac_i2r, enc_r2i, mac_r2i, confirm_i, confirm_r] = okm;
    zeroize_bytes(okm.as_flattened_mut());
    Ok(DerivedKeys {
        i2r: DirectionKeys {
            enc: enc_i2r,
            mac: mac_i2r,
        },
        r2i: DirectionKeys {
            enc: enc_r2i,
            mac: mac_r2i,
        },
        confirm_i: ConfirmKey(confirm_i),
        confirm_r: ConfirmKey(confirm_r),
    })
}

/// Per-key HKDF info suffixes, in the order of [`DerivedKeys`].
const OKM_LABELS: [&[u8]; 6] = [
    b"/enc/i2r",
    b"/mac/i2r",
    b"/enc/r2i",
    b"/mac/r2i",
    b"/confirm/i",
    b"/confirm/r",
];

/// HMAC-SHA256(key, transcript hash).
fn confirm_tag(key: &ConfirmKey, transcript_hash: &[u8; 32]) -> [u8; CONFIRM_TAG_LEN] {
    let mut mac = hmac_sha256(&key.0);
    mac.update(transcript_hash);
    mac.finalize().into_bytes().into()
}

/// Verifies a confirmation tag in constant time.
fn verify_confirm(
    key: &ConfirmKey,
    transcript_hash: &[u8; 32],
    received: &[u8],
) -> Result<(), HandshakeError> {
    let mut mac = hmac_sha256(&key.0);
    mac.update(transcript_hash);
    mac.verify_slice(received)
        .map_err(|_| HandshakeError::KeyConfirmation)
}

/// The error for a wrong `protocol` string (the peer's text shortened).
fn wrong_protocol(expected: &str, got: &str) -> HandshakeError {
    HandshakeError::Malformed(format!(
        "expected protocol {expected:?}, got {:?}",
        shorten(got)
    ))
}

/// At most 64 characters of peer-supplied text, for error messages.
fn shorten(s: &str) -> String {
    s.chars().take(64).collect()
}

/// A field that must have exactly `N` bytes.
fn fixed<const N: usize>(bytes: &[u8], field: &str) -> Result<[u8; N], HandshakeError> {
    bytes.try_into().map_err(|_| {
        HandshakeError::Malformed(format!("{field} must be {N} bytes, got {}", bytes.len()))
    })
}

/// A SEC1 key field must be 33 (compressed) or 65 (uncompressed) bytes.
fn sec1_len(bytes: &[u8], field: &str) -> Result<(), HandshakeError> {
    match bytes.len() {
        33 | 65 => Ok(()),
        len => Err(HandshakeError::Malformed(format!(
            "{field} must be 33 or 65 bytes, got {len}"
        ))),
    }
}

/// The semver major of `major.minor.patch[-pre][+build]`, or `None` if it is not that.
fn semver_major(version: &str) -> Option<u64> {
    if version.is_empty()
        || version.len() > MAX_VERSION_LEN
        || !version.bytes().all(|b| b.is_ascii_graphic())
    {
        return None;
    }
    let core = version.split(['-', '+']).next()?;
    let mut parts = core.split('.');
    let number = |part: Option<&str>| -> Option<u64> {
        let part = part?;
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let major = number(parts.next())?;
    number(parts.next())?;
    number(parts.next())?;
    match parts.next() {
        None => Some(major),
        Some(_) => None,
    }
}

/// Our own major version; a bad configured version is reported as malformed.
fn local_major(cfg: &HandshakeConfig) -> Result<u64, HandshakeError> {
    semver_major(&cfg.client_version).ok_or_else(|| {
        HandshakeError::Malformed(format!(
            "local client_version {:?} is not semver",
            shorten(&cfg.client_version)
        ))
    })
}

/// The peer's version must parse and have our major.
fn check_version(cfg: &HandshakeConfig, theirs: &str) -> Result<(), HandshakeError> {
    let ours = local_major(cfg)?;
    let their_major = semver_major(theirs).ok_or_else(|| {
        HandshakeError::Malformed(format!(
            "client_version {:?} is not semver",
            shorten(theirs)
        ))
    })?;
    if their_major != ours {
        return Err(HandshakeError::IncompatibleVersion {
            ours: cfg.client_version.clone(),
            theirs: theirs.to_owned(),
        });
    }
    Ok(())
}

/// `|theirs - now|` must not exceed `max_skew` (overflow-safe for any timestamp).
fn check_clock(theirs: i64, now: i64, max_skew: Duration) -> Result<(), HandshakeError> {
    let skew_ms = theirs.saturating_sub(now);
    let max_ms = u64::try_from(max_skew.as_millis()).unwrap_or(u64::MAX);
    if skew_ms.unsigned_abs() > max_ms {
        return Err(HandshakeError::ClockSkew { skew_ms });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::session::SessionError;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const NOW: i64 = 1_700_000_000_000;

    fn cfg() -> HandshakeConfig {
        HandshakeConfig {
            network_id: 7,
            client_version: "1.4.2".to_owned(),
            max_clock_skew: Duration::from_secs(30),
            listen_port: 4001,
        }
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(0x6b61_646d)
    }

    struct Nodes {
        a: Keypair,
        b: Keypair,
    }

    fn nodes() -> Nodes {
        let mut r = rng();
        Nodes {
            a: Keypair::generate(&mut r),
            b: Keypair::generate(&mut r),
        }
    }

    fn hello(n: &Nodes) -> (Initiator, pb::HandshakeData) {
        Initiator::start(&cfg(), &n.a, &n.b.node_id(), NOW, &mut rng()).unwrap()
    }

    /// Re-signs a hello after editing it, as a sender holding `key` would.
    fn resign_hello(msg: &mut pb::HandshakeData, key: &Keypair, peer: &NodeId) {
        let sender = PublicKey::from_sec1(&msg.node_pub_key).unwrap().node_id();
        let h = message_digest(ROLE_INITIATOR, None, msg, &sender, peer);
        msg.sign = key.sign_digest(&h).to_vec();
    }

    fn full(
        cfg_a: &HandshakeConfig,
        cfg_b: &HandshakeConfig,
        n: &Nodes,
    ) -> Result<(Established, Established), HandshakeError> {
        let mut r = rng();
        let (init, hello) = Initiator::start(cfg_a, &n.a, &n.b.node_id(), NOW, &mut r)?;
        let (resp, reply) = Responder::on_hello(cfg_b, &n.b, &hello, NOW + 5, &mut r)?;
        let (ea, fin) = init.on_response(&reply, NOW + 10)?;
        let eb = resp.on_finish(&fin)?;
        Ok((ea, eb))
    }

    #[test]
    fn handshake_succeeds_and_keys_match_both_ways() {
        let n = nodes();
        let (ea, eb) = full(&cfg(), &cfg(), &n).unwrap();
        assert_eq!(ea.remote, n.b.node_id());
        assert_eq!(eb.remote, n.a.node_id());
        assert_eq!(ea.remote_listen_port, 4001);
        assert_eq!(eb.remote_client_version, "1.4.2");
        assert_eq!(ea.transcript_hash, eb.transcript_hash);
        assert_eq!(ea.keys.send.enc, eb.keys.recv.enc);
        assert_eq!(ea.keys.send.mac, eb.keys.recv.mac);
        assert_ne!(
            ea.keys.send.enc, ea.keys.recv.enc,
            "directions use distinct keys"
        );
        assert_ne!(ea.keys.send.mac, ea.keys.send.enc);

        let (mut sa, mut oa) = ea.keys.split(StdRng::seed_from_u64(1));
        let (mut sb, mut ob) = eb.keys.split(StdRng::seed_from_u64(2));
        let f = sa.seal(b"a to b").unwrap();
        assert_eq!(ob.open(&f).unwrap(), b"a to b");
        let g = sb.seal(b"b to a").unwrap();
        assert_eq!(oa.open(&g).unwrap(), b"b to a");
        // Reflection: a's frame back to a.
        let h = sa.seal(b"reflect").unwrap();
        assert_eq!(oa.open(&h), Err(SessionError::BadMac));
    }

    #[test]
    fn two_handshakes_give_different_keys() {
        let n = nodes();
        let mut r = rand::rng();
        let (i1, h1) = Initiator::start(&cfg(), &n.a, &n.b.node_id(), NOW, &mut r).unwrap();
        let (_, rep1) = Responder::on_hello(&cfg(), &n.b, &h1, NOW, &mut r).unwrap();
        let (e1, _) = i1.on_response(&rep1, NOW).unwrap();
        let (i2, h2) = Initiator::start(&cfg(), &n.a, &n.b.node_id(), NOW, &mut r).unwrap();
        let (_, rep2) = Responder::on_hello(&cfg(), &n.b, &h2, NOW, &mut r).unwrap();
        let (e2, _) = i2.on_response(&rep2, NOW).unwrap();
        assert_ne!(e1.keys.send.enc, e2.keys.send.enc);
        assert_ne!(e1.transcript_hash, e2.transcript_hash);
    }

    #[test]
    fn hello_has_the_documented_shape() {
        let n = nodes();
        let (_, h) = hello(&n);
        assert_eq!(h.protocol, PROTOCOL_REQ);
        assert_eq!(h.session_id.len(), NONCE_LEN);
        assert_eq!(h.node_pub_key, n.a.public().to_compressed().to_vec());
        assert_eq!(h.pub_key.len(), 33);
        assert_ne!(h.pub_key, h.node_pub_key);
        assert_eq!(h.sign.len(), SIGNATURE_LEN);
        assert_eq!(h.listen_port, 4001);
        assert!(h.hmac.is_empty());
    }

    #[test]
    fn uncompressed_static_key_is_accepted() {
        let n = nodes();
        let (_, mut h) = hello(&n);
        h.node_pub_key =
            n.a.public()
                .verifying_key()
                .to_sec1_point(false)
                .as_bytes()
                .to_vec();
        assert_eq!(h.node_pub_key.len(), 65);
        resign_hello(&mut h, &n.a, &n.b.node_id());
        let (r, _) = Responder::on_hello(&cfg(), &n.b, &h, NOW, &mut rng()).unwrap();
        assert_eq!(r.remote, n.a.node_id());
    }

    #[test]
    fn network_mismatch() {
        let n = nodes();
        let other = HandshakeConfig {
            network_id: 8,
            ..cfg()
        };
        assert_eq!(
            full(&cfg(), &other, &n).err(),
            Some(HandshakeError::NetworkMismatch { ours: 8, theirs: 7 })
        );
        // And on the initiator's side, for the reply.
        let (init, h) = hello(&n);
        let (_, mut reply) = Responder::on_hello(&cfg(), &n.b, &h, NOW, &mut rng()).unwrap();
        reply.network_id = 9;
        assert_eq!(
            init.on_response(&reply, NOW).err(),
            Some(HandshakeError::NetworkMismatch { ours: 7, theirs: 9 })
        );
    }

    #[test]
    fn incompatible_version_major() {
        let n = nodes();
        let v2 = HandshakeConfig {
            client_version: "2.0.0".to_owned(),
            ..cfg()
        };
        assert_eq!(
            full(&cfg(), &v2, &n).err(),
            Some(HandshakeError::IncompatibleVersion {
                ours: "2.0.0".to_owned(),
                theirs: "1.4.2".to_owned()
            })
        );
        // Same major, other minor/patch/pre-release: compatible.
        let v1 = HandshakeConfig {
            client_version: "1.0.9-rc.1+build.5".to_owned(),
            ..cfg()
        };
        assert!(full(&cfg(), &v1, &n).is_ok());
    }

    #[test]
    fn unparsable_version_is_malformed() {
        for bad in [
            "", "1", "1.2", "1.2.3.4", "x.2.3", "1..3", "1.2.3 ", "01.2.x",
        ] {
            assert_eq!(semver_major(bad), None, "{bad:?}");
        }
        assert_eq!(semver_major("1.2.3"), Some(1));
        assert_eq!(semver_major("10.0.0-alpha"), Some(10));
        let n = nodes();
        let (_, mut h) = hello(&n);
        h.client_version = "one.two".to_owned();
        resign_hello(&mut h, &n.a, &n.b.node_id());
        assert!(matches!(
            Responder::on_hello(&cfg(), &n.b, &h, NOW, &mut rng()),
            Err(HandshakeError::Malformed(_))
        ));
        let bad_local = HandshakeConfig {
            client_version: "v1".to_owned(),
            ..cfg()
        };
        assert!(matches!(
            Initiator::start(&bad_local, &n.a, &n.b.node_id(), NOW, &mut rng()),
            Err(HandshakeError::Malformed(_))
        ));
    }

    #[test]
    fn clock_skew_too_old_and_too_new() {
        let n = nodes();
        let (_, h) = hello(&n);
        let limit = 30_000;
        // Exactly at the limit is fine, both ways.
        assert!(Responder::on_hello(&cfg(), &n.b, &h, NOW + limit, &mut rng()).is_ok());
        assert!(Responder::on_hello(&cfg(), &n.b, &h, NOW - limit, &mut rng()).is_ok());
        // Their timestamp too old.
        assert_eq!(
            Responder::on_hello(&cfg(), &n.b, &h, NOW + limit + 1, &mut rng()).err(),
            Some(HandshakeError::ClockSkew {
                skew_ms: -(limit + 1)
            })
        );
        // Their timestamp too far in the future.
        assert_eq!(
            Responder::on_hello(&cfg(), &n.b, &h, NOW - limit - 1, &mut rng()).err(),
            Some(HandshakeError::ClockSkew { skew_ms: limit + 1 })
        );
        // On the initiator's side too.
        let (init, h) = hello(&n);
        let (_, reply) = Responder::on_hello(&cfg(), &n.b, &h, NOW, &mut rng()).unwrap();
        assert!(matches!(
            init.on_response(&reply, NOW + 31_000),
            Err(HandshakeError::ClockSkew { skew_ms: -31_000 })
        ));
        // Extreme values do not overflow.
        assert!(check_clock(i64::MIN, i64::MAX, Duration::MAX).is_ok());
        assert_eq!(
            check_clock(i64::MIN, i64::MAX, Duration::from_secs(1)),
            Err(HandshakeError::ClockSkew { skew_ms: i64::MIN })
        );
    }

    #[test]
    fn tampered_hello_fields_are_bad_signature() {
        let n = nodes();
        let (_, h) = hello(&n);
        type Edit = Box<dyn Fn(&mut pb::HandshakeData)>;
        let edits: Vec<(&str, Edit)> = vec![
            ("listen_port", Box::new(|m| m.listen_port = 4002)),
            ("timestamp", Box::new(|m| m.timestamp += 1)),
            ("session_id", Box::new(|m| m.session_id[0] ^= 1)),
            ("payload", Box::new(|m| m.payload = b"x".to_vec())),
            ("iv", Box::new(|m| m.iv = vec![0; 16])),
            (
                "client_version",
                Box::new(|m| m.client_version = "1.4.3".into()),
            ),
            ("sign", Box::new(|m| m.sign[10] ^= 1)),
        ];
        for (name, edit) in edits {
            let mut m = h.clone();
            edit(&mut m);
            assert_eq!(
                Responder::on_hello(&cfg(), &n.b, &m, NOW, &mut rng()).err(),
                Some(HandshakeError::BadSignature),
                "{name}"
            );
        }
        // Swapping in another valid ephemeral key (a MITM's).
        let mut m = h.clone();
        let mitm = EphemeralSecret::generate_from_rng(&mut rand::rng());
        m.pub_key = k256::CompressedPoint::from(mitm.public_key()).to_vec();
        assert_ne!(m.pub_key, h.pub_key);
        assert_eq!(
            Responder::on_hello(&cfg(), &n.b, &m, NOW, &mut rng()).err(),
            Some(HandshakeError::BadSignature)
        );
    }

    #[test]
    fn tampered_reply_is_bad_signature() {
        let n = nodes();
        let (init, h) = hello(&n);
        let (_, mut reply) = Responder::on_hello(&cfg(), &n.b, &h, NOW, &mut rng()).unwrap();
        reply.listen_port += 1;
        assert_eq!(
            init.on_response(&reply, NOW).err(),
            Some(HandshakeError::BadSignature)
        );
    }

    #[test]
    fn reply_to_another_hello_is_bad_signature() {
        // The reply is bound to the hello: a reply made for one hello does not finish another.
        let n = nodes();
        let mut r = rand::rng();
        let (init1, _h1) = Initiator::start(&cfg(), &n.a, &n.b.node_id(), NOW, &mut r).unwrap();
        let (_, h2) = Initiator::start(&cfg(), &n.a, &n.b.node_id(), NOW, &mut r).unwrap();
        let (_, reply2) = Responder::on_hello(&cfg(), &n.b, &h2, NOW, &mut r).unwrap();
        assert_eq!(
            init1.on_response(&reply2, NOW).err(),
            Some(HandshakeError::BadSignature)
        );
    }

    #[test]
    fn signature_by_another_key_is_bad_signature() {
        let n = nodes();
        let mallory = Keypair::random();
        let (_, mut h) = hello(&n);
        // Claims to be a, signed by mallory.
        let h_digest = message_digest(ROLE_INITIATOR, None, &h, &n.a.node_id(), &n.b.node_id());
        h.sign = mallory.sign_digest(&h_digest).to_vec();
        assert_eq!(
            Responder::on_hello(&cfg(), &n.b, &h, NOW, &mut rng()).err(),
            Some(HandshakeError::BadSignature)
        );
    }

    #[test]
    fn hello_meant_for_another_responder_is_bad_signature() {
        // a dialled c; b receives the hello (e.g. relayed by a MITM): the signature covers c's key.
        let n = nodes();
        let c = Keypair::random();
        let (_, h) = Initiator::start(&cfg(), &n.a, &c.node_id(), NOW, &mut rng()).unwrap();
        assert_eq!(
            Responder::on_hello(&cfg(), &n.b, &h, NOW, &mut rng()).err(),
            Some(HandshakeError::BadSignature)
        );
    }

    #[test]
    fn unexpected_responder_key() {
        // a dials c's key, b answers (b signs honestly for the hello it got, but it is not c).
        let n = nodes();
        let c = Keypair::random();
        let (init, mut h) = Initiator::start(&cfg(), &n.a, &c.node_id(), NOW, &mut rng()).unwrap();
        // Make b accept the hello (as if a had meant b) so b produces a well-formed reply.
        resign_hello(&mut h, &n.a, &n.b.node_id());
        let (_, reply) = Responder::on_hello(&cfg(), &n.b, &h, NOW, &mut rng()).unwrap();
        assert_eq!(
            init.on_response(&reply, NOW).err(),
            Some(HandshakeError::UnexpectedResponderKey {
                expected: c.node_id(),
                got: n.b.node_id()
            })
        );
    }

    #[test]
    fn self_connection_on_start_and_on_hello() {
        let n = nodes();
        assert_eq!(
            Initiator::start(&cfg(), &n.a, &n.a.node_id(), NOW, &mut rng()).err(),
            Some(HandshakeError::SelfConnection)
        );
        // a dialled an address that turned out to be a itself (under another expected key).
        let (_, h) = hello(&n);
        assert_eq!(
            Responder::on_hello(&cfg(), &n.a, &h, NOW, &mut rng()).err(),
            Some(HandshakeError::SelfConnection)
        );
        // The initiator's side: a reply signed by our own key.
        let (init, h) = hello(&n);
        let (_, mut reply) = Responder::on_hello(&cfg(), &n.b, &h, NOW, &mut rng()).unwrap();
        reply.node_pub_key = n.a.public().to_compressed().to_vec();
        assert_eq!(
            init.on_response(&reply, NOW).err(),
            Some(HandshakeError::SelfConnection)
        );
    }

    /// 33 bytes with a valid prefix whose x has no point on the curve (x = 5: 5^3 + 7 = 132 is not a
    /// square mod p).
    fn off_curve_point() -> Vec<u8> {
        let mut p = vec![0u8; 33];
        p[0] = 0x02;
        p[32] = 5;
        assert!(k256::PublicKey::from_sec1_bytes(&p).is_err());
        p
    }

    #[test]
    fn invalid_static_and_ephemeral_points() {
        let n = nodes();
        let (_, h) = hello(&n);
        for bad in [off_curve_point(), {
            let mut p = vec![0xFFu8; 33];
            p[0] = 0x03;
            p
        }] {
            let mut m = h.clone();
            m.node_pub_key = bad.clone();
            assert_eq!(
                Responder::on_hello(&cfg(), &n.b, &m, NOW, &mut rng()).err(),
                Some(HandshakeError::InvalidPoint),
                "static"
            );
            let mut m = h.clone();
            m.pub_key = bad;
            assert_eq!(
                Responder::on_hello(&cfg(), &n.b, &m, NOW, &mut rng()).err(),
                Some(HandshakeError::InvalidPoint),
                "ephemeral"
            );
        }
        // 65 bytes with an off-curve y.
        let mut m = h.clone();
        let mut unc =
            n.a.public()
                .verifying_key()
                .to_sec1_point(false)
                .as_bytes()
                .to_vec();
        unc[64] ^= 1;
        m.pub_key = unc;
        assert_eq!(
            Responder::on_hello(&cfg(), &n.b, &m, NOW, &mut rng()).err(),
            Some(HandshakeError::InvalidPoint)
        );
        // In the reply, on the initiator's side.
        let (init, h) = hello(&n);
        let (_, mut reply) = Responder::on_hello(&cfg(), &n.b, &h, NOW, &mut rng()).unwrap();
        reply.pub_key = off_curve_point();
        assert_eq!(
            init.on_response(&reply, NOW).err(),
            Some(HandshakeError::InvalidPoint)
        );
    }

    #[test]
    fn wrong_hmac_is_key_confirmation_on_both_sides() {
        let n = nodes();
        // Initiator checks the responder's hmac.
        for garble in [
            (|m: &mut Vec<u8>| m[0] ^= 1) as fn(&mut Vec<u8>),
            |m| m.truncate(31),
            |m| m.clear(),
            |m| m.push(0),
        ] {
            let (init, h) = hello(&n);
            let (_, mut reply) = Responder::on_hello(&cfg(), &n.b, &h, NOW, &mut rng()).unwrap();
            garble(&mut reply.hmac);
            assert_eq!(
                init.on_response(&reply, NOW).err(),
                Some(HandshakeError::KeyConfirmation)
            );

            // Responder checks the initiator's hmac.
            let (init, h) = hello(&n);
            let (resp, reply) = Responder::on_hello(&cfg(), &n.b, &h, NOW, &mut rng()).unwrap();
            let (_, mut fin) = init.on_response(&reply, NOW).unwrap();
            garble(&mut fin.hmac);
            assert_eq!(
                resp.on_finish(&fin).err(),
                Some(HandshakeError::KeyConfirmation)
            );
        }
        // The responder's own tag reflected as the confirmation fails too (different key per role).
        let (init, h) = hello(&n);
        let (resp, reply) = Responder::on_hello(&cfg(), &n.b, &h, NOW, &mut rng()).unwrap();
        let (_, mut fin) = init.on_response(&reply, NOW).unwrap();
        fin.hmac = reply.hmac.clone();
        assert_eq!(
            resp.on_finish(&fin).err(),
            Some(HandshakeError::KeyConfirmation)
        );
    }

    #[test]
    fn malformed_messages() {
        let n = nodes();
        let (_, h) = hello(&n);
        let is_malformed = |m: &pb::HandshakeData| {
            matches!(
                Responder::on_hello(&cfg(), &n.b, m, NOW, &mut rng()),
                Err(HandshakeError::Malformed(_))
            )
        };
        assert!(is_malformed(&pb::HandshakeData::default()), "empty");
        let mut m = h.clone();
        m.protocol = "handshake/resp".into();
        assert!(is_malformed(&m), "wrong protocol");
        let mut m = h.clone();
        m.session_id.truncate(31);
        assert!(is_malformed(&m), "short nonce");
        let mut m = h.clone();
        m.session_id.clear();
        assert!(is_malformed(&m), "missing nonce");
        let mut m = h.clone();
        m.sign.truncate(63);
        assert!(is_malformed(&m), "short signature");
        let mut m = h.clone();
        m.node_pub_key.truncate(32);
        assert!(is_malformed(&m), "short static key");
        let mut m = h.clone();
        m.pub_key.clear();
        assert!(is_malformed(&m), "missing ephemeral key");
        let mut m = h.clone();
        m.listen_port = 70_000;
        assert!(is_malformed(&m), "port out of range");

        // The initiator's side and the confirmation.
        let (init, h) = hello(&n);
        assert!(matches!(
            init.on_response(&pb::HandshakeData::default(), NOW),
            Err(HandshakeError::Malformed(_))
        ));
        let (init, _) = hello(&n);
        assert!(matches!(
            init.on_response(&h, NOW), // a hello is not a reply
            Err(HandshakeError::Malformed(_))
        ));
        let (init, h) = hello(&n);
        let (resp, reply) = Responder::on_hello(&cfg(), &n.b, &h, NOW, &mut rng()).unwrap();
        let (_, fin) = init.on_response(&reply, NOW).unwrap();
        let mut wrong = fin.clone();
        wrong.protocol = PROTOCOL_REQ.into();
        let (resp2, _) = Responder::on_hello(&cfg(), &n.b, &h, NOW, &mut rng()).unwrap();
        assert!(matches!(
            resp2.on_finish(&wrong),
            Err(HandshakeError::Malformed(_))
        ));
        let mut wrong = fin.clone();
        wrong.session_id[0] ^= 1;
        assert!(matches!(
            resp.on_finish(&wrong),
            Err(HandshakeError::Malformed(_))
        ));
        let (resp3, _) = Responder::on_hello(&cfg(), &n.b, &h, NOW, &mut rng()).unwrap();
        assert!(matches!(
            resp3.on_finish(&pb::HandshakeData::default()),
            Err(HandshakeError::Malformed(_))
        ));
    }
}
