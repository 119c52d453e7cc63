//! Wire format: the generated protobuf types ([`pb`]), the length-prefixed [`FrameCodec`], and conversions
//! between protobuf and domain types.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use crate::identity::NodeId;
use crate::peer::NodeInfo;

/// Protobuf types generated from `proto/kadmesh.proto`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/kadmesh.rs"));
}

/// Default largest frame body accepted: 4 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 4 * 1024 * 1024;

/// Why bytes from the wire could not be used.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// A length prefix announced a frame larger than allowed; rejected before any allocation.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The announced length (when known).
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A frame body is not the expected protobuf message.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which message was expected.
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
}

impl WireError {
    /// A malformed-message error.
    pub fn malformed(what: &'static str, reason: impl ToString) -> Self {
        WireError::Malformed {
            what,
            reason: reason.to_string(),
        }
    }
}

/// 4-byte big-endian length prefix + body, with a maximum body length checked before allocating.
///
/// Built on tokio-util's [`LengthDelimitedCodec`]; errors are mapped to typed [`WireError`]s.
#[derive(Debug)]
pub struct FrameCodec {
    /// The underlying tokio-util codec.
    inner: LengthDelimitedCodec,
    /// Largest body accepted or sent.
    max_frame_len: usize,
    /// True once a length prefix was consumed and its body is not complete yet.
    mid_frame: bool,
}

impl FrameCodec {
    /// A codec accepting bodies up to `max_frame_len` bytes.
    pub fn new(max_frame_len: usize) -> Self {
        let inner = LengthDelimitedCodec::builder()
            .big_endian()
            .length_field_length(4)
            .max_frame_length(max_frame_len)
            .new_codec();
        Self {
            inner,
            max_frame_len,
            mid_frame: false,
        }
    }

    fn map_err(&self, src_len: Option<usize>, e: std::io::Error) -> WireError {
        if e.get_ref()
            .is_some_and(|inner| inner.is::<tokio_util::codec::LengthDelimitedCodecError>())
        {
            WireError::FrameTooLarge {
                len: src_len.unwrap_or(0),
                max: self.max_frame_len,
            }
        } else {
            WireError::Io(e)
        }
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, WireError> {
        let announced = (src.len() >= 4).then(|| {
            let mut head = [0u8; 4];
            head.copy_from_slice(&src[..4]);
            u32::from_be_bytes(head) as usize
        });
        let before = src.len();
        let frame = self
            .inner
            .decode(src)
            .map_err(|e| self.map_err(announced, e))?;
        // The inner codec consumes a length prefix as soon as it has one, before the body arrives.
        self.mid_frame = frame.is_none() && (self.mid_frame || src.len() < before);
        Ok(frame)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, WireError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && !self.mid_frame => Ok(None),
            None => Err(WireError::Truncated),
        }
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = WireError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), WireError> {
        let len = item.len();
        self.inner
            .encode(item, dst)
            .map_err(|e| self.map_err(Some(len), e))
    }
}

/// Decodes a protobuf message, mapping failures to [`WireError::Malformed`].
pub fn decode<M: prost::Message + Default>(
    what: &'static str,
    bytes: &[u8],
) -> Result<M, WireError> {
    M::decode(bytes).map_err(|e| WireError::malformed(what, e))
}

/// Encodes a protobuf message into fresh bytes.
pub fn encode<M: prost::Message>(msg: &M) -> Bytes {
    Bytes::from(msg.encode_to_vec())
}

impl From<&NodeInfo> for pb::NodeInfo {
    fn from(n: &NodeInfo) -> Self {
        pb::NodeInfo {
            node_id: n.id.as_bytes().to_vec(),
            address: n.addr.to_string(),
        }
    }
}

impl TryFrom<&pb::NodeInfo> for NodeInfo {
    type Error = WireError;

    /// Checks the id's format (33 bytes, compressed SEC1 prefix) and the address; the key itself is
    /// proven by the handshake whenever the node is contacted (see [`NodeId::from_compressed_unverified`]).
    fn try_from(n: &pb::NodeInfo) -> Result<Self, WireError> {
        let id = NodeId::from_compressed_unverified(&n.node_id)
            .map_err(|e| WireError::malformed("NodeInfo", e))?;
        let addr = n.address.parse().map_err(|_| {
            WireError::malformed("NodeInfo", format!("bad address {:?}", n.address))
        })?;
        Ok(NodeInfo { id, addr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    #[test]
    fn oversize_length_prefix_is_rejected_before_allocating() {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        let cap_before = buf.capacity();
        match codec.decode(&mut buf) {
            Err(WireError::FrameTooLarge { len, max }) => {
                assert_eq!(len, u32::MAX as usize);
                assert_eq!(max, 1024);
            }
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
        assert!(
            buf.capacity() <= cap_before.max(64),
            "no allocation for the body"
        );
    }

    #[test]
    fn frame_split_at_every_offset_decodes() {
        let bodies: Vec<Vec<u8>> = vec![b"hello".to_vec(), vec![], vec![0xAB; 300]];
        let mut wire = BytesMut::new();
        let mut enc = FrameCodec::new(1024);
        for b in &bodies {
            enc.encode(Bytes::from(b.clone()), &mut wire).unwrap();
        }
        let wire = wire.freeze();
        for split in 0..=wire.len() {
            let mut codec = FrameCodec::new(1024);
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for chunk in [&wire[..split], &wire[split..]] {
                buf.extend_from_slice(chunk);
                while let Some(frame) = codec.decode(&mut buf).unwrap() {
                    out.push(frame.to_vec());
                }
            }
            assert_eq!(out, bodies, "split at {split}");
            assert!(codec.decode_eof(&mut buf).unwrap().is_none());
        }
    }

    #[test]
    fn truncated_frame_at_eof_is_an_error() {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::from(&[0, 0, 0, 10, 1, 2][..]);
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Err(WireError::Truncated)
        ));
    }

    /// Found by the `frame_decoder` fuzz target: a stream ending right after a length prefix was a
    /// clean end, because the inner codec had already consumed the prefix.
    #[test]
    fn length_prefix_without_body_at_eof_is_truncated() {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::from(&[0, 0, 0, 6][..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Err(WireError::Truncated)
        ));
        // A complete frame, then nothing: a clean end.
        let mut buf = BytesMut::from(&[0, 0, 0, 1, 7][..]);
        assert_eq!(
            codec_frames(&mut FrameCodec::new(1024), &mut buf),
            vec![vec![7]]
        );
    }

    fn codec_frames(codec: &mut FrameCodec, buf: &mut BytesMut) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(frame) = codec.decode_eof(buf).unwrap() {
            out.push(frame.to_vec());
        }
        out
    }

    #[test]
    fn encoding_an_oversize_frame_fails() {
        let mut codec = FrameCodec::new(8);
        let mut buf = BytesMut::new();
        assert!(matches!(
            codec.encode(Bytes::from(vec![0u8; 9]), &mut buf),
            Err(WireError::FrameTooLarge { len: 9, max: 8 })
        ));
    }

    #[test]
    fn node_info_proto_round_trip_and_rejects_garbage() {
        let n = NodeInfo::new(Keypair::random().node_id(), "[::1]:9".parse().unwrap());
        let p = pb::NodeInfo::from(&n);
        assert_eq!(NodeInfo::try_from(&p).unwrap(), n);
        let bad_addr = pb::NodeInfo {
            address: "nowhere".into(),
            ..p.clone()
        };
        assert!(NodeInfo::try_from(&bad_addr).is_err());
        let bad_key = pb::NodeInfo {
            node_id: vec![1, 2, 3],
            ..p
        };
        assert!(NodeInfo::try_from(&bad_key).is_err());
        assert!(decode::<pb::FindNodeResponse>("FindNodeResponse", &[0xff, 0xff]).is_err());
    }
}
