//! Node identity: secp256k1 keys, the base58 [`NodeId`], the Kademlia [`DhtId`] and key files.
//!
//! A node is identified by its static secp256k1 public key, carried as 33-byte compressed SEC1 and shown
//! in base58. Its position in the DHT key space is `DhtId = SHA-256(compressed key)`.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use k256::ecdsa::{Signature, SigningKey, VerifyingKey, signature::hazmat::PrehashVerifier};
use k256::elliptic_curve::Generate;
use rand::CryptoRng;
use sha2::{Digest, Sha256};

/// Length of a compressed SEC1 public key.
pub const PUBLIC_KEY_LEN: usize = 33;
/// Length of a secret key.
pub const SECRET_KEY_LEN: usize = 32;
/// Length of a [`DhtId`] in bytes.
pub const DHT_ID_LEN: usize = 32;
/// Length of a compact ECDSA signature (r || s).
pub const SIGNATURE_LEN: usize = 64;

/// Why a key, id or key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The bytes are not a valid secp256k1 point (or have the wrong length).
    #[error("invalid secp256k1 public key ({len} bytes)")]
    InvalidPublicKey {
        /// Length of the rejected input.
        len: usize,
    },
    /// The bytes are not a valid secp256k1 secret scalar.
    #[error("invalid secp256k1 secret key")]
    InvalidSecretKey,
    /// The text is not valid base58.
    #[error("invalid base58 node id: {0}")]
    Base58(String),
    /// The text is not valid hex.
    #[error("invalid hex: {0}")]
    Hex(#[from] hex::FromHexError),
    /// A DHT id did not have 32 bytes.
    #[error("DHT id must be {DHT_ID_LEN} bytes, got {0}")]
    DhtIdLength(usize),
    /// A key file exists but does not hold a valid key; it is never replaced silently.
    #[error("malformed key file {path}: {reason}")]
    MalformedKeyFile {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Reading or writing a key file failed.
    #[error("key file {path}: {source}")]
    KeyFileIo {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A static secp256k1 key pair: the node's identity.
#[derive(Clone)]
pub struct Keypair {
    /// The signing (secret) key.
    secret: SigningKey,
    /// The public key, cached.
    public: PublicKey,
}

impl Keypair {
    /// Generates a new key pair from `rng`.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::from_signing_key(SigningKey::generate_from_rng(rng))
    }

    /// Generates a new key pair from the thread-local CSPRNG.
    pub fn random() -> Self {
        Self::generate(&mut rand::rng())
    }

    /// Builds a key pair from a 32-byte secret key.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        SigningKey::from_slice(bytes)
            .map(Self::from_signing_key)
            .map_err(|_| IdentityError::InvalidSecretKey)
    }

    fn from_signing_key(secret: SigningKey) -> Self {
        let public = PublicKey(*secret.verifying_key());
        Self { secret, public }
    }

    /// The 32-byte secret key.
    pub fn secret_bytes(&self) -> [u8; SECRET_KEY_LEN] {
        self.secret.to_bytes().into()
    }

    /// The public key.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The node id (the public key).
    pub fn node_id(&self) -> NodeId {
        self.public.node_id()
    }

    /// Signs a 32-byte SHA-256 digest; returns the 64-byte compact signature.
    pub fn sign_digest(&self, digest: &[u8; 32]) -> [u8; SIGNATURE_LEN] {
        use k256::ecdsa::signature::hazmat::PrehashSigner;
        // A 32-byte prehash is always accepted for secp256k1; fall back to signing its hash otherwise.
        let sig: Signature = match self.secret.sign_prehash(digest) {
            Ok(sig) => sig,
            Err(_) => {
                use k256::ecdsa::signature::Signer;
                self.secret.sign(digest)
            }
        };
        sig.to_bytes().into()
    }

    /// Loads the key pair from `path`, or creates it there (mode 0600) when the file does not exist.
    ///
    /// A file that exists but does not hold a valid key is an error: it is never replaced.
    pub fn load_or_create(path: &Path) -> Result<Self, IdentityError> {
        match fs::read_to_string(path) {
            Ok(text) => Self::parse_key_file(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let keypair = Self::random();
                keypair.write_key_file(path)?;
                Ok(keypair)
            }
            Err(source) => Err(IdentityError::KeyFileIo {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Loads the key pair from an existing key file.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let text = fs::read_to_string(path).map_err(|source| IdentityError::KeyFileIo {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_key_file(path, &text)
    }

    fn parse_key_file(path: &Path, text: &str) -> Result<Self, IdentityError> {
        let malformed = |reason: String| IdentityError::MalformedKeyFile {
            path: path.to_owned(),
            reason,
        };
        let bytes = hex::decode(text.trim()).map_err(|e| malformed(format!("not hex: {e}")))?;
        if bytes.len() != SECRET_KEY_LEN {
            return Err(malformed(format!(
                "expected {SECRET_KEY_LEN} bytes of hex, got {}",
                bytes.len()
            )));
        }
        Self::from_secret_bytes(&bytes).map_err(|e| malformed(e.to_string()))
    }

    /// Writes the secret key as hex to a new file at `path` with permissions 0600.
    ///
    /// Fails if the file already exists, so an existing identity is never overwritten.
    pub fn write_key_file(&self, path: &Path) -> Result<(), IdentityError> {
        let io_err = |source| IdentityError::KeyFileIo {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io_err)?;
        }
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io_err)?;
        let mut text = hex::encode(self.secret_bytes());
        text.push('\n');
        file.write_all(text.as_bytes()).map_err(io_err)?;
        file.sync_all().map_err(io_err)
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// A secp256k1 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses a SEC1 key: 33 bytes compressed or 65 bytes uncompressed. Rejects points not on the curve.
    ///
    /// Only the tags of those two forms are accepted (0x02/0x03, 0x04): the SEC1 parser underneath also
    /// takes the 33-byte "compact" form (tag 0x05), another wire form of the same key.
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, IdentityError> {
        if !matches!(
            (bytes.len(), bytes.first()),
            (33, Some(2 | 3)) | (65, Some(4))
        ) {
            return Err(IdentityError::InvalidPublicKey { len: bytes.len() });
        }
        VerifyingKey::from_sec1_bytes(bytes)
            .map(PublicKey)
            .map_err(|_| IdentityError::InvalidPublicKey { len: bytes.len() })
    }

    /// The 33-byte compressed SEC1 encoding.
    pub fn to_compressed(&self) -> [u8; PUBLIC_KEY_LEN] {
        let point = self.0.to_sec1_point(true);
        let mut out = [0u8; PUBLIC_KEY_LEN];
        out.copy_from_slice(point.as_bytes());
        out
    }

    /// The node id of this key.
    pub fn node_id(&self) -> NodeId {
        NodeId(self.to_compressed())
    }

    /// Verifies a 64-byte compact signature over a 32-byte digest.
    pub fn verify_digest(&self, digest: &[u8; 32], signature: &[u8]) -> bool {
        let Ok(sig) = Signature::from_slice(signature) else {
            return false;
        };
        self.0.verify_prehash(digest, &sig).is_ok()
    }

    /// The underlying verifying key (tests use it to build uncompressed encodings).
    #[cfg(test)]
    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.node_id())
    }
}

/// A node's identifier: its compressed public key, shown in base58.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId([u8; PUBLIC_KEY_LEN]);

impl NodeId {
    /// Builds a node id from SEC1 bytes (33 compressed or 65 uncompressed), validating the point.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        PublicKey::from_sec1(bytes).map(|k| k.node_id())
    }

    /// Builds a node id from 33 bytes of compressed SEC1 after a format check only (length and the
    /// 0x02/0x03 prefix), without the curve arithmetic that proves the point valid.
    ///
    /// For ids heard of in FindNode answers: such a node is only ever reached through a handshake, which
    /// proves its key, and it enters the routing table only after that. Decompressing every id of every
    /// answer cost most of a large simulation's CPU time.
    pub fn from_compressed_unverified(bytes: &[u8]) -> Result<Self, IdentityError> {
        match <[u8; PUBLIC_KEY_LEN]>::try_from(bytes) {
            Ok(raw) if raw[0] == 0x02 || raw[0] == 0x03 => Ok(NodeId(raw)),
            _ => Err(IdentityError::InvalidPublicKey { len: bytes.len() }),
        }
    }

    /// The 33 compressed key bytes.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    /// The public key this id stands for. Fails for ids built without curve validation
    /// ([`NodeId::from_raw_unchecked`], [`NodeId::from_compressed_unverified`]) that are not valid points.
    pub fn public_key(&self) -> Result<PublicKey, IdentityError> {
        PublicKey::from_sec1(&self.0)
    }

    /// The DHT position of this node: SHA-256 of the compressed key.
    pub fn dht_id(&self) -> DhtId {
        DhtId(Sha256::digest(self.0).into())
    }

    /// Builds an id from raw bytes without checking that they are a curve point (tests and simulators
    /// that never verify signatures use it for speed).
    pub fn from_raw_unchecked(bytes: [u8; PUBLIC_KEY_LEN]) -> Self {
        NodeId(bytes)
    }

    /// A short prefix of the base58 form, for logs.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(10);
        s
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0).into_string())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

impl FromStr for NodeId {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = bs58::decode(s)
            .into_vec()
            .map_err(|e| IdentityError::Base58(e.to_string()))?;
        NodeId::from_bytes(&bytes)
    }
}

/// A position in the 256-bit Kademlia key space.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DhtId(pub [u8; DHT_ID_LEN]);

impl DhtId {
    /// Builds an id from 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, IdentityError> {
        <[u8; DHT_ID_LEN]>::try_from(bytes)
            .map(DhtId)
            .map_err(|_| IdentityError::DhtIdLength(bytes.len()))
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, IdentityError> {
        Self::from_slice(&hex::decode(s)?)
    }

    /// A uniformly random id.
    pub fn random<R: rand::Rng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; DHT_ID_LEN];
        rng.fill_bytes(&mut bytes);
        DhtId(bytes)
    }

    /// The XOR distance to `other`.
    pub fn distance(&self, other: &DhtId) -> Distance {
        let mut out = [0u8; DHT_ID_LEN];
        for (o, (a, b)) in out.iter_mut().zip(self.0.iter().zip(other.0.iter())) {
            *o = a ^ b;
        }
        Distance(out)
    }

    /// Number of leading bits shared with `other` (256 when equal).
    pub fn common_prefix_len(&self, other: &DhtId) -> u32 {
        self.distance(other).leading_zeros()
    }

    /// A random id that shares exactly `cpl` leading bits with `self` (`cpl` < 256).
    pub fn random_with_cpl<R: rand::Rng + ?Sized>(&self, cpl: u32, rng: &mut R) -> Self {
        let cpl = cpl.min(255) as usize;
        let mut out = DhtId::random(rng).0;
        for bit in 0..=cpl {
            let byte = bit / 8;
            let mask = 0x80u8 >> (bit % 8);
            let ours = self.0[byte] & mask;
            // Copy the first `cpl` bits, flip bit `cpl`.
            let want = if bit < cpl { ours } else { ours ^ mask };
            out[byte] = (out[byte] & !mask) | want;
        }
        DhtId(out)
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for DhtId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for DhtId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DhtId({}..)", &self.to_hex()[..12])
    }
}

/// An XOR distance between two [`DhtId`]s; compares as a 256-bit big-endian integer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Distance(pub [u8; DHT_ID_LEN]);

impl Distance {
    /// Number of leading zero bits: the common-prefix length of the two ids.
    pub fn leading_zeros(&self) -> u32 {
        let mut n = 0;
        for b in self.0 {
            if b == 0 {
                n += 8;
            } else {
                return n + b.leading_zeros();
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_base58_round_trip() {
        let kp = Keypair::random();
        let id = kp.node_id();
        let text = id.to_string();
        assert_eq!(text.parse::<NodeId>().unwrap(), id);
        assert!("0OIl".parse::<NodeId>().is_err(), "invalid base58 chars");
        // Valid base58 that is not a curve point.
        let bogus = bs58::encode([7u8; 33]).into_string();
        assert!(matches!(
            bogus.parse::<NodeId>(),
            Err(IdentityError::InvalidPublicKey { len: 33 })
        ));
    }

    #[test]
    fn unverified_ids_check_the_format_only() {
        let id = Keypair::random().node_id();
        assert_eq!(
            NodeId::from_compressed_unverified(id.as_bytes()).unwrap(),
            id
        );
        // Right format, not a point (about half of all x are not): accepted here, refused where a key is
        // needed.
        let bogus = (0u8..=255)
            .map(|b| {
                let mut k = [b; 33];
                k[0] = 0x02;
                k
            })
            .find(|k| PublicKey::from_sec1(k).is_err())
            .unwrap();
        let unverified = NodeId::from_compressed_unverified(&bogus).unwrap();
        assert!(unverified.public_key().is_err());
        assert!(
            NodeId::from_compressed_unverified(&[7u8; 33]).is_err(),
            "bad prefix"
        );
        assert!(
            NodeId::from_compressed_unverified(&id.as_bytes()[..32]).is_err(),
            "short"
        );
    }

    /// Found by the `proto_decode` fuzz target: a gossip author key re-tagged 0x05 (SEC1 "compact")
    /// was accepted and re-encoded as 0x02/0x03, so one message had two wire forms.
    #[test]
    fn only_compressed_and_uncompressed_tags_are_accepted() {
        let key = Keypair::random().public().to_compressed();
        assert!(PublicKey::from_sec1(&key).is_ok());
        let mut compact = key;
        compact[0] = 0x05;
        assert!(matches!(
            PublicKey::from_sec1(&compact),
            Err(IdentityError::InvalidPublicKey { len: 33 })
        ));
        assert!(NodeId::from_bytes(&compact).is_err());
    }

    #[test]
    fn uncompressed_key_is_accepted_and_normalised() {
        let kp = Keypair::random();
        let uncompressed = kp.public().verifying_key().to_sec1_point(false);
        let id = NodeId::from_bytes(uncompressed.as_bytes()).unwrap();
        assert_eq!(id, kp.node_id());
    }

    #[test]
    fn dht_id_is_sha256_of_compressed_key() {
        let kp = Keypair::random();
        let expect: [u8; 32] = Sha256::digest(kp.public().to_compressed()).into();
        assert_eq!(kp.node_id().dht_id().0, expect);
    }

    #[test]
    fn distance_and_cpl_match_the_seed_example() {
        // Seed example on 24 bits: a665a4 ^ 97a6d2 has 2 leading zeros; a665a4 ^ 35a9e3 has 0.
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        let mut c = [0u8; 32];
        a[..3].copy_from_slice(&[0xa6, 0x65, 0xa4]);
        b[..3].copy_from_slice(&[0x97, 0xa6, 0xd2]);
        c[..3].copy_from_slice(&[0x35, 0xa9, 0xe3]);
        let (a, b, c) = (DhtId(a), DhtId(b), DhtId(c));
        assert_eq!(a.common_prefix_len(&b), 2);
        assert_eq!(a.common_prefix_len(&c), 0);
        assert!(a.distance(&b) < a.distance(&c));
        assert_eq!(a.common_prefix_len(&a), 256);
    }

    #[test]
    fn random_with_cpl_has_that_cpl() {
        let mut rng = rand::rng();
        let me = DhtId::random(&mut rng);
        for cpl in [0, 1, 7, 8, 9, 19, 100, 255] {
            let id = me.random_with_cpl(cpl, &mut rng);
            assert_eq!(me.common_prefix_len(&id), cpl);
        }
    }

    #[test]
    fn signatures_verify_and_reject_tampering() {
        let kp = Keypair::random();
        let digest: [u8; 32] = Sha256::digest(b"hello").into();
        let sig = kp.sign_digest(&digest);
        assert!(kp.public().verify_digest(&digest, &sig));
        let mut other = digest;
        other[0] ^= 1;
        assert!(!kp.public().verify_digest(&other, &sig));
        assert!(!Keypair::random().public().verify_digest(&digest, &sig));
        assert!(!kp.public().verify_digest(&digest, &sig[..63]));
    }

    #[test]
    fn key_file_create_load_and_refuse_malformed() {
        let dir = std::env::temp_dir().join(format!("kadmesh-id-{}", uuid::Uuid::new_v4()));
        let path = dir.join("node.key");
        let created = Keypair::load_or_create(&path).unwrap();
        let loaded = Keypair::load_or_create(&path).unwrap();
        assert_eq!(created.node_id(), loaded.node_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // An existing file is never overwritten.
        assert!(matches!(
            created.write_key_file(&path),
            Err(IdentityError::KeyFileIo { .. })
        ));
        fs::write(&path, "not a key").unwrap();
        assert!(matches!(
            Keypair::load_or_create(&path),
            Err(IdentityError::MalformedKeyFile { .. })
        ));
        assert_eq!(fs::read_to_string(&path).unwrap(), "not a key");
        fs::write(&path, hex::encode([0u8; 32])).unwrap();
        assert!(matches!(
            Keypair::load(&path),
            Err(IdentityError::MalformedKeyFile { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
