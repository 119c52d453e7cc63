//! Sealed session frames: pure, no IO.
//!
//! After the handshake every frame body is
//!
//! ```text
//! IV (16) || AES-256-CBC-PKCS#7(enc_key, IV, plaintext) || HMAC-SHA256(mac_key, seq_be_u64 || IV || ciphertext) (32)
//! ```
//!
//! `seq` is an implicit per-direction 64-bit counter starting at 0 and never sent: the [`Sealer`] counts
//! the frames it wrote, the [`Opener`] the frames it accepted. A replayed, reordered, dropped or reflected
//! frame (the directions use different keys) therefore fails with [`SessionError::BadMac`]. The tag is
//! verified in constant time before anything is decrypted, and a failed frame yields no plaintext and
//! leaves the sequence number unchanged; the caller must close the connection on any error.

use std::fmt;

use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, InnerIvInit, KeyInit, block_padding::Pkcs7};
use aes::{Aes256Dec, Aes256Enc};
use bytes::Bytes;
use hmac::Mac;
use rand::Rng;
use rand::rngs::StdRng;

use super::{HmacSha256, hmac_sha256, zeroize_bytes};

/// Length of the random IV that starts every frame.
pub const IV_LEN: usize = 16;
/// AES block length; the ciphertext is a positive multiple of it.
pub const BLOCK_LEN: usize = 16;
/// Length of the HMAC-SHA256 tag that ends every frame.
pub const TAG_LEN: usize = 32;
/// Length of the shortest valid frame: IV, one ciphertext block (an empty plaintext pads to one), tag.
pub const MIN_SEALED_LEN: usize = IV_LEN + BLOCK_LEN + TAG_LEN;

/// Length of the sealed frame for a plaintext of `len` bytes: IV + PKCS#7-padded ciphertext + tag,
/// i.e. `len` plus an overhead of 49 to 64 bytes. Use it to check size limits before sealing.
/// Saturates at `usize::MAX` instead of overflowing.
pub fn sealed_len(len: usize) -> usize {
    (len / BLOCK_LEN)
        .saturating_add(1)
        .saturating_mul(BLOCK_LEN)
        .saturating_add(IV_LEN + TAG_LEN)
}

/// Why a frame could not be sealed or opened. Any error is fatal for the connection.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// The frame is shorter than IV + one block + tag.
    #[error("sealed frame of {len} bytes is too short")]
    TooShort {
        /// Length of the rejected frame.
        len: usize,
    },
    /// The ciphertext between IV and tag is not a multiple of the AES block length.
    #[error("sealed frame of {len} bytes: ciphertext is not a multiple of {BLOCK_LEN} bytes")]
    NotBlockAligned {
        /// Length of the rejected frame.
        len: usize,
    },
    /// The tag does not authenticate the frame under this direction's key and sequence number (tampered,
    /// replayed, reordered, reflected or sealed with other keys).
    #[error("frame authentication failed")]
    BadMac,
    /// The authenticated plaintext has invalid PKCS#7 padding (only a buggy peer holding the keys can
    /// cause this).
    #[error("invalid padding in an authenticated frame")]
    BadPadding,
    /// The 64-bit sequence number is used up; the connection must be closed (and re-handshaken).
    #[error("sequence number exhausted")]
    SequenceExhausted,
}

/// The two 32-byte keys of one direction. Zeroed on drop.
pub struct DirectionKeys {
    /// AES-256-CBC key.
    pub enc: [u8; 32],
    /// HMAC-SHA256 key.
    pub mac: [u8; 32],
}

impl Drop for DirectionKeys {
    fn drop(&mut self) {
        zeroize_bytes(&mut self.enc);
        zeroize_bytes(&mut self.mac);
    }
}

impl fmt::Debug for DirectionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DirectionKeys { .. }")
    }
}

/// The keys of one side of a session, as derived by the handshake.
#[derive(Debug)]
pub struct SessionKeys {
    /// Keys for the frames this side sends.
    pub send: DirectionKeys,
    /// Keys for the frames this side receives.
    pub recv: DirectionKeys,
}

impl SessionKeys {
    /// Splits the keys into the writer half ([`Sealer`], which draws frame IVs from `iv_rng`) and the
    /// reader half ([`Opener`]). Both start at sequence number 0.
    pub fn split(self, iv_rng: StdRng) -> (Sealer, Opener) {
        let sealer = Sealer {
            cipher: Aes256Enc::new(&self.send.enc.into()),
            mac: hmac_sha256(&self.send.mac),
            seq: 0,
            rng: iv_rng,
        };
        let opener = Opener {
            cipher: Aes256Dec::new(&self.recv.enc.into()),
            mac: hmac_sha256(&self.recv.mac),
            seq: 0,
        };
        (sealer, opener)
    }
}

/// The writer side of a session: seals frames with the send keys, a fresh IV each, and the send
/// sequence number.
pub struct Sealer {
    /// AES-256 encryption key schedule (cloned into a CBC encryptor per frame).
    cipher: Aes256Enc,
    /// HMAC-SHA256 pre-keyed with the send MAC key (cloned per frame).
    mac: HmacSha256,
    /// Sequence number of the next frame.
    seq: u64,
    /// Source of the per-frame IVs.
    rng: StdRng,
}

impl Sealer {
    /// Seals `plaintext` into one frame body: `IV || ciphertext || tag`.
    ///
    /// Fails with [`SessionError::SequenceExhausted`] once the sequence number would wrap.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Bytes, SessionError> {
        let next = self
            .seq
            .checked_add(1)
            .ok_or(SessionError::SequenceExhausted)?;
        let total = sealed_len(plaintext.len());
        let body_len = total - TAG_LEN;
        let mut iv = [0u8; IV_LEN];
        self.rng.fill_bytes(&mut iv);

        let mut buf = Vec::with_capacity(total);
        buf.extend_from_slice(&iv);
        buf.extend_from_slice(plaintext);
        buf.resize(body_len, 0);
        // In bounds: `buf` holds IV_LEN + padded-length bytes, and the padded length fits the plaintext
        // plus its PKCS#7 padding, so encryption cannot fail.
        let encryptor = cbc::Encryptor::<Aes256Enc>::inner_iv_init(self.cipher.clone(), &iv.into());
        encryptor
            .encrypt_padded::<Pkcs7>(&mut buf[IV_LEN..], plaintext.len())
            .map_err(|_| SessionError::BadPadding)?;

        let mut mac = self.mac.clone();
        mac.update(&self.seq.to_be_bytes());
        mac.update(&buf);
        buf.extend_from_slice(&mac.finalize().into_bytes());
        self.seq = next;
        Ok(Bytes::from(buf))
    }

    /// Sequence number the next sealed frame will use.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Test helper: the same sealer continuing at sequence number `seq`.
    #[cfg(test)]
    pub(crate) fn with_seq(mut self, seq: u64) -> Self {
        self.seq = seq;
        self
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// The reader side of a session: authenticates and decrypts frames with the receive keys and the
/// receive sequence number.
pub struct Opener {
    /// AES-256 decryption key schedule (cloned into a CBC decryptor per frame).
    cipher: Aes256Dec,
    /// HMAC-SHA256 pre-keyed with the receive MAC key (cloned per frame).
    mac: HmacSha256,
    /// Sequence number the next frame must carry.
    seq: u64,
}

impl Opener {
    /// Checks the frame's length, verifies its tag in constant time, then decrypts it.
    ///
    /// On any error no plaintext is returned and the sequence number does not advance.
    pub fn open(&mut self, frame: &[u8]) -> Result<Vec<u8>, SessionError> {
        let len = frame.len();
        if len < MIN_SEALED_LEN {
            return Err(SessionError::TooShort { len });
        }
        if !(len - IV_LEN - TAG_LEN).is_multiple_of(BLOCK_LEN) {
            return Err(SessionError::NotBlockAligned { len });
        }
        let next = self
            .seq
            .checked_add(1)
            .ok_or(SessionError::SequenceExhausted)?;
        let (body, tag) = frame
            .split_last_chunk::<TAG_LEN>()
            .ok_or(SessionError::TooShort { len })?;

        let mut mac = self.mac.clone();
        mac.update(&self.seq.to_be_bytes());
        mac.update(body);
        mac.verify_slice(tag).map_err(|_| SessionError::BadMac)?;

        let (iv, ciphertext) = body
            .split_first_chunk::<IV_LEN>()
            .ok_or(SessionError::TooShort { len })?;
        let mut out = ciphertext.to_vec();
        let decryptor = cbc::Decryptor::<Aes256Dec>::inner_iv_init(self.cipher.clone(), iv.into());
        let plain_len = decryptor
            .decrypt_padded::<Pkcs7>(&mut out)
            .map_err(|_| SessionError::BadPadding)?
            .len();
        out.truncate(plain_len);
        self.seq = next;
        Ok(out)
    }

    /// Sequence number the next frame must carry.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Test helper: the same opener continuing at sequence number `seq`.
    #[cfg(test)]
    pub(crate) fn with_seq(mut self, seq: u64) -> Self {
        self.seq = seq;
        self
    }
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::{FrameCodec, WireError};
    use bytes::BytesMut;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use tokio_util::codec::{Decoder, Encoder};

    fn keys(seed: u8) -> (DirectionKeys, DirectionKeys) {
        let a = DirectionKeys {
            enc: [seed; 32],
            mac: [seed.wrapping_add(1); 32],
        };
        let b = DirectionKeys {
            enc: [seed.wrapping_add(2); 32],
            mac: [seed.wrapping_add(3); 32],
        };
        (a, b)
    }

    /// Two connected session ends: (a_sealer, a_opener, b_sealer, b_opener), a's send = b's recv.
    pub(crate) fn pair(seed: u8) -> (Sealer, Opener, Sealer, Opener) {
        let (a2b, b2a) = keys(seed);
        let (a2b_copy, b2a_copy) = keys(seed);
        let a = SessionKeys {
            send: a2b,
            recv: b2a,
        };
        let b = SessionKeys {
            send: b2a_copy,
            recv: a2b_copy,
        };
        let (sa, oa) = a.split(StdRng::seed_from_u64(seed as u64));
        let (sb, ob) = b.split(StdRng::seed_from_u64(seed as u64 + 1000));
        (sa, oa, sb, ob)
    }

    #[test]
    fn round_trip_both_directions_and_lengths() {
        let (mut sa, mut oa, mut sb, mut ob) = pair(1);
        for len in [0usize, 1, 15, 16, 17, 31, 32, 1024, 65536] {
            let msg: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let frame = sa.seal(&msg).unwrap();
            assert_eq!(frame.len(), sealed_len(len));
            assert!((frame.len() - IV_LEN - TAG_LEN).is_multiple_of(BLOCK_LEN));
            assert_eq!(ob.open(&frame).unwrap(), msg);
            let back = sb.seal(&msg).unwrap();
            assert_eq!(oa.open(&back).unwrap(), msg);
        }
        assert_eq!(sa.seq(), 9);
        assert_eq!(ob.seq(), 9);
    }

    #[test]
    fn frame_layout_is_iv_ciphertext_then_tag_over_seq_iv_ciphertext() {
        use aes::cipher::KeyIvInit;
        let (a2b, _) = keys(30);
        let (mut sa, _, _, _) = pair(30);
        sa.seal(b"frame 0").unwrap();
        let msg = b"frame 1, checked with independent primitives";
        let frame = sa.seal(msg).unwrap();
        let (iv, rest) = frame.split_at(IV_LEN);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        // Tag: HMAC-SHA256(mac key, seq_be_u64 || IV || ciphertext) with seq = 1.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&a2b.mac).unwrap();
        mac.update(&1u64.to_be_bytes());
        mac.update(iv);
        mac.update(ct);
        assert_eq!(mac.finalize().into_bytes().as_slice(), tag);
        // Ciphertext: AES-256-CBC-PKCS#7 under the enc key and the frame's IV.
        let iv: [u8; IV_LEN] = iv.try_into().unwrap();
        let plain = cbc::Decryptor::<aes::Aes256>::new(&a2b.enc.into(), &iv.into())
            .decrypt_padded_vec::<Pkcs7>(ct)
            .unwrap();
        assert_eq!(plain, msg);
    }

    #[test]
    fn empty_plaintext_round_trips() {
        let (mut sa, _, _, mut ob) = pair(2);
        let frame = sa.seal(b"").unwrap();
        assert_eq!(frame.len(), MIN_SEALED_LEN);
        assert_eq!(ob.open(&frame).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn same_plaintext_gets_fresh_iv_and_ciphertext() {
        let (mut sa, _, _, _) = pair(3);
        let f1 = sa.seal(b"same").unwrap();
        let f2 = sa.seal(b"same").unwrap();
        assert_ne!(f1[..IV_LEN], f2[..IV_LEN]);
        assert_ne!(f1[IV_LEN..], f2[IV_LEN..]);
    }

    #[test]
    fn bit_flip_in_iv_ciphertext_or_tag_is_bad_mac() {
        let msg = b"the quick brown fox jumps over the lazy dog";
        let (mut sa, _, _, _) = pair(4);
        let frame = sa.seal(msg).unwrap();
        let ct_end = frame.len() - TAG_LEN;
        for (name, idx) in [
            ("iv first", 0),
            ("iv last", IV_LEN - 1),
            ("ciphertext first", IV_LEN),
            ("ciphertext last", ct_end - 1),
            ("tag first", ct_end),
            ("tag last", frame.len() - 1),
        ] {
            for bit in [0u8, 7] {
                let (_, _, _, mut ob) = pair(4);
                let mut bad = frame.to_vec();
                bad[idx] ^= 1 << bit;
                assert_eq!(ob.open(&bad), Err(SessionError::BadMac), "{name} bit {bit}");
                // The failure does not advance the sequence: the genuine frame still opens.
                assert_eq!(ob.open(&frame).unwrap(), msg);
            }
        }
    }

    #[test]
    fn replay_is_bad_mac() {
        let (mut sa, _, _, mut ob) = pair(5);
        let frame = sa.seal(b"once").unwrap();
        assert_eq!(ob.open(&frame).unwrap(), b"once");
        assert_eq!(ob.open(&frame), Err(SessionError::BadMac));
    }

    #[test]
    fn reorder_is_bad_mac() {
        let (mut sa, _, _, mut ob) = pair(6);
        let first = sa.seal(b"first").unwrap();
        let second = sa.seal(b"second").unwrap();
        assert_eq!(ob.open(&second), Err(SessionError::BadMac));
        // A dropped frame also desynchronises: in order it works.
        assert_eq!(ob.open(&first).unwrap(), b"first");
        assert_eq!(ob.open(&second).unwrap(), b"second");
    }

    #[test]
    fn reflected_frame_is_bad_mac() {
        let (mut sa, mut oa, _, _) = pair(7);
        let frame = sa.seal(b"to b").unwrap();
        // Sent back to a, whose receive keys are b->a keys.
        assert_eq!(oa.open(&frame), Err(SessionError::BadMac));
    }

    #[test]
    fn wrong_keys_are_bad_mac() {
        let (mut sa, _, _, _) = pair(8);
        let (_, _, _, mut other) = pair(9);
        let frame = sa.seal(b"secret").unwrap();
        assert_eq!(other.open(&frame), Err(SessionError::BadMac));
    }

    #[test]
    fn truncated_frames_fail_without_panic() {
        let (mut sa, _, _, _) = pair(10);
        let frame = sa.seal(&[0xAB; 40]).unwrap(); // 16 + 48 + 32 = 96 bytes
        assert_eq!(frame.len(), 96);
        for cut in 0..frame.len() {
            let (_, _, _, mut ob) = pair(10);
            let res = ob.open(&frame[..cut]);
            match cut {
                0..MIN_SEALED_LEN => assert_eq!(res, Err(SessionError::TooShort { len: cut })),
                _ if !(cut - IV_LEN - TAG_LEN).is_multiple_of(BLOCK_LEN) => {
                    assert_eq!(res, Err(SessionError::NotBlockAligned { len: cut }))
                }
                _ => assert_eq!(res, Err(SessionError::BadMac), "cut {cut}"),
            }
        }
        // Dropping the last block (still aligned, still long enough) is BadMac.
        let (_, _, _, mut ob) = pair(10);
        assert_eq!(
            ob.open(&frame[..frame.len() - BLOCK_LEN]),
            Err(SessionError::BadMac)
        );
    }

    #[test]
    fn unaligned_ciphertext_is_not_block_aligned() {
        let (_, _, _, mut ob) = pair(11);
        for len in [MIN_SEALED_LEN + 1, MIN_SEALED_LEN + 15, 1000] {
            assert_eq!(
                ob.open(&vec![0u8; len]),
                Err(SessionError::NotBlockAligned { len })
            );
        }
        assert_eq!(ob.open(&[]), Err(SessionError::TooShort { len: 0 }));
    }

    #[test]
    fn sequence_exhaustion_refuses_to_seal_and_open() {
        let (sa, _, _, ob) = pair(12);
        let mut sa = sa.with_seq(u64::MAX - 1);
        let mut ob = ob.with_seq(u64::MAX - 1);
        let last = sa.seal(b"last").unwrap();
        assert_eq!(ob.open(&last).unwrap(), b"last");
        assert_eq!(sa.seal(b"wrap"), Err(SessionError::SequenceExhausted));
        assert_eq!(ob.open(&last), Err(SessionError::SequenceExhausted));
        assert_eq!(sa.seq(), u64::MAX);
        // The sequence number is bound into the tag: a frame sealed at another seq does not open.
        let (sa2, _, _, ob2) = pair(12);
        let mut sa2 = sa2.with_seq(41);
        let mut ob2 = ob2.with_seq(42);
        let f = sa2.seal(b"x").unwrap();
        assert_eq!(ob2.open(&f), Err(SessionError::BadMac));
    }

    #[test]
    fn sealed_len_matches_and_saturates() {
        assert_eq!(sealed_len(0), 64);
        assert_eq!(sealed_len(15), 64);
        assert_eq!(sealed_len(16), 80);
        assert_eq!(sealed_len(1024), 16 + 1040 + 32);
        assert_eq!(sealed_len(usize::MAX), usize::MAX);
    }

    #[test]
    fn length_prefix_bit_flips_never_yield_plaintext() {
        let max = crate::wire::DEFAULT_MAX_FRAME_LEN;
        let msg = vec![0x42u8; 300];
        let (mut sa, _, _, _) = pair(13);
        let frame = sa.seal(&msg).unwrap();
        let mut wire = BytesMut::new();
        FrameCodec::new(max)
            .encode(frame.clone(), &mut wire)
            .unwrap();
        // Sanity: the untouched encoding decodes and opens.
        {
            let (_, _, _, mut ob) = pair(13);
            let mut buf = wire.clone();
            let body = FrameCodec::new(max).decode(&mut buf).unwrap().unwrap();
            assert_eq!(ob.open(&body).unwrap(), msg);
        }
        for byte in 0..4 {
            for bit in 0..8 {
                let mut buf = wire.clone();
                buf[byte] ^= 1 << bit;
                let mut codec = FrameCodec::new(max);
                match codec.decode(&mut buf) {
                    Err(WireError::FrameTooLarge { .. }) => {}
                    Err(e) => panic!("byte {byte} bit {bit}: unexpected error {e:?}"),
                    // A longer announced length: the body never completes.
                    Ok(None) => assert!(
                        matches!(codec.decode_eof(&mut buf), Err(WireError::Truncated)),
                        "byte {byte} bit {bit}"
                    ),
                    // A shorter announced length: a cut frame that must not open.
                    Ok(Some(body)) => {
                        let (_, _, _, mut ob) = pair(13);
                        let res = ob.open(&body);
                        assert!(res.is_err(), "byte {byte} bit {bit} yielded plaintext");
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn prop_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let (mut sa, _, _, mut ob) = pair(20);
            let frame = sa.seal(&payload).unwrap();
            prop_assert_eq!(frame.len(), sealed_len(payload.len()));
            prop_assert_eq!(ob.open(&frame).unwrap(), payload);
        }

        #[test]
        fn prop_any_single_bit_flip_fails(
            payload in proptest::collection::vec(any::<u8>(), 0..512),
            pos in any::<proptest::sample::Index>(),
            bit in 0u8..8,
        ) {
            let (mut sa, _, _, mut ob) = pair(21);
            let mut frame = sa.seal(&payload).unwrap().to_vec();
            let idx = pos.index(frame.len());
            frame[idx] ^= 1 << bit;
            prop_assert_eq!(ob.open(&frame), Err(SessionError::BadMac));
        }
    }
}
