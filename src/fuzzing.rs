//! Fuzzing harnesses: each public function feeds arbitrary bytes through the real library code and
//! checks invariants with `assert!`, so a fuzzer (the cargo-fuzz targets in `fuzz/`) or the corpus replay
//! test (`tests/fuzz_corpus.rs`) fails on a wrong answer, not only on a crash.
//!
//! Keys, nonces and clocks come from fixed seeds, so a run is reproducible from its input alone. The
//! harnesses never panic except through their invariant checks.

use std::fmt::Debug;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio_util::codec::{Decoder, Encoder};
use uuid::Uuid;

use crate::config::Config;
use crate::crypto::session::MIN_SEALED_LEN;
use crate::crypto::{
    DirectionKeys, HandshakeConfig, HandshakeError, Initiator, Opener, Responder, Sealer,
    SessionError, SessionKeys, sealed_len,
};
use crate::dht::seeds;
use crate::gossip::{GOSSIP_PROTOCOL, GossipError, SignedGossip, check_timestamp};
use crate::identity::{DhtId, Keypair};
use crate::peer::NodeInfo;
use crate::swarm::{FINDNODE_PROTOCOL, FindNodeError, parse_find_node_response};
use crate::transport::tcp::connection::PING_PROTOCOL as KEEPALIVE_PING;
use crate::wire::{self, FrameCodec, WireError, pb};

/// A harness: the bytes of one fuzzer input in, an invariant `assert!` out when something is wrong.
pub type Harness = fn(&[u8]);

/// Every harness by its cargo-fuzz target name (`fuzz/fuzz_targets/<name>.rs`, `fuzz/corpus/<name>/`).
pub const HARNESSES: [(&str, Harness); 5] = [
    ("frame_decoder", frame_decoder),
    ("handshake_initiator", handshake_initiator),
    ("handshake_responder", handshake_responder),
    ("session_open", session_open),
    ("proto_decode", proto_decode),
];

/// A cursor over fuzzer input that yields zeros once the bytes run out.
struct Input<'a> {
    /// The bytes not read yet.
    rest: &'a [u8],
}

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { rest: data }
    }

    fn byte(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((&b, rest)) => {
                self.rest = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// Everything not read yet.
    fn rest(self) -> &'a [u8] {
        self.rest
    }
}

/// How a stream of frames ends, by the reference reading of [`reference_frames`].
#[derive(Debug, PartialEq, Eq)]
enum StreamEnd {
    /// Right after a whole frame (or at the start).
    Clean,
    /// In the middle of a length prefix or a body.
    Truncated,
    /// At a length prefix announcing this many bytes, over the limit.
    TooLarge(usize),
}

/// The frames of `stream` read the obvious way, and how the stream ends.
fn reference_frames(mut stream: &[u8], max: usize) -> (Vec<&[u8]>, StreamEnd) {
    let mut frames = Vec::new();
    loop {
        let Some((head, rest)) = stream.split_first_chunk::<4>() else {
            let end = if stream.is_empty() {
                StreamEnd::Clean
            } else {
                StreamEnd::Truncated
            };
            return (frames, end);
        };
        let len = u32::from_be_bytes(*head) as usize;
        if len > max {
            return (frames, StreamEnd::TooLarge(len));
        }
        if rest.len() < len {
            return (frames, StreamEnd::Truncated);
        }
        let (body, rest) = rest.split_at(len);
        frames.push(body);
        stream = rest;
    }
}

/// The frame decoder ([`FrameCodec`]) fed a byte stream in chunks whose split points come from the input.
///
/// Input: a 2-byte `max_frame_len`, a split count (mod 8), that many 2-byte split points, then the stream.
/// Checks: no frame over `max_frame_len`; the frames, the error and the end-of-stream verdict are the
/// same for every split and match a reference reading of the stream; an oversized length prefix is
/// [`WireError::FrameTooLarge`] naming the announced length; re-encoding the frames gives back the bytes.
pub fn frame_decoder(data: &[u8]) {
    let mut input = Input::new(data);
    let max = usize::from(input.u16());
    let splits = input.byte() % 8;
    let points: Vec<u16> = (0..splits).map(|_| input.u16()).collect();
    let stream = input.rest();
    let mut cuts: Vec<usize> = points
        .iter()
        .map(|&p| usize::from(p) % (stream.len() + 1))
        .collect();
    cuts.push(stream.len());
    cuts.sort_unstable();

    let (expected, end) = reference_frames(stream, max);
    let mut codec = FrameCodec::new(max);
    let mut buf = BytesMut::new();
    let mut frames: Vec<BytesMut> = Vec::new();
    let mut error = None;
    let mut fed = 0;
    'feed: for cut in cuts {
        buf.extend_from_slice(&stream[fed..cut]);
        fed = cut;
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= max, "frame over max_frame_len");
                    frames.push(frame);
                }
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break 'feed;
                }
            }
        }
    }
    assert!(
        frames.iter().map(|f| &f[..]).eq(expected.iter().copied()),
        "decoded frames differ from the reference reading"
    );
    match (end, error) {
        (StreamEnd::TooLarge(announced), Some(WireError::FrameTooLarge { len, max: limit })) => {
            assert_eq!((len, limit), (announced, max), "FrameTooLarge fields");
        }
        (StreamEnd::TooLarge(_), other) => panic!("oversized prefix not rejected: {other:?}"),
        (_, Some(e)) => panic!("error on a well-formed stream: {e:?}"),
        (StreamEnd::Clean, None) => {
            assert!(matches!(codec.decode_eof(&mut buf), Ok(None)), "clean end");
        }
        (StreamEnd::Truncated, None) => {
            let verdict = codec.decode_eof(&mut buf);
            assert!(
                matches!(verdict, Err(WireError::Truncated)),
                "a stream cut inside a frame must end in Truncated, got {verdict:?}"
            );
        }
    }

    let mut encoder = FrameCodec::new(max);
    let mut wire = BytesMut::new();
    for frame in frames {
        let encoded = encoder.encode(Bytes::from(frame), &mut wire);
        assert!(encoded.is_ok(), "re-encoding a decoded frame");
    }
    assert_eq!(&wire[..], &stream[..wire.len()], "re-encoded frames");
}

/// The clock of every harness, unix ms.
const NOW_MS: i64 = 1_700_000_000_000;
/// Seed of the two static identities of the handshake script.
const KEY_SEED: u64 = 0x6b61_646d_6b65_7973;
/// Seed of the initiator's nonce and ephemeral key.
const INITIATOR_SEED: u64 = 0x6b61_646d_0001;
/// Seed of the responder's nonce and ephemeral key.
const RESPONDER_SEED: u64 = 0x6b61_646d_0002;
/// Seed of the session sealer's IVs.
const IV_SEED: u64 = 0x6b61_646d_0003;
/// Most nodes a FindNode response may carry: the default k.
const FIND_NODE_MAX: usize = 20;
/// Gossip seen-cache TTL of the timestamp check, ms.
const GOSSIP_TTL_MS: i64 = 120_000;
/// Gossip clock skew of the timestamp check, ms.
const GOSSIP_SKEW_MS: i64 = 30_000;

/// The value of a result that cannot fail for the fixed keys and messages of the harnesses; a failure
/// is reported as a broken invariant.
fn invariant_ok<T, E: Debug>(result: Result<T, E>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("invariant broken: {what}: {e:?}"),
    }
}

/// One genuine handshake between two fixed identities, with every message exchanged, and one gossip
/// message signed by the initiator's identity.
struct Script {
    /// The configuration of both sides.
    cfg: HandshakeConfig,
    /// The dialling identity.
    initiator: Keypair,
    /// The dialled identity.
    responder: Keypair,
    /// The initiator's hello.
    hello: pb::HandshakeData,
    /// The responder's reply to `hello`.
    reply: pb::HandshakeData,
    /// The initiator's confirmation after `reply`.
    fin: pb::HandshakeData,
    /// A gossip message signed by `initiator`.
    gossip: SignedGossip,
}

impl Script {
    /// The script, built once per process.
    fn get() -> &'static Script {
        static SCRIPT: OnceLock<Script> = OnceLock::new();
        SCRIPT.get_or_init(Script::build)
    }

    fn build() -> Script {
        let defaults = Config::default();
        let mut keys = StdRng::seed_from_u64(KEY_SEED);
        let mut script = Script {
            cfg: HandshakeConfig {
                network_id: defaults.network_id,
                client_version: "1.4.2".to_owned(),
                max_clock_skew: defaults.net.max_clock_skew,
                listen_port: 4001,
            },
            initiator: Keypair::generate(&mut keys),
            responder: Keypair::generate(&mut keys),
            hello: pb::HandshakeData::default(),
            reply: pb::HandshakeData::default(),
            fin: pb::HandshakeData::default(),
            gossip: invariant_ok(
                SignedGossip::sign(
                    &Keypair::generate(&mut keys),
                    "chat",
                    Bytes::from_static(b"hello, mesh"),
                    NOW_MS,
                    [7; crate::gossip::NONCE_LEN],
                ),
                "signing the script's gossip message",
            ),
        };
        let (initiator, hello) = script.start();
        let (_, reply) = invariant_ok(script.answer(&hello), "the responder accepts the hello");
        let (_, fin) = invariant_ok(
            initiator.on_response(&reply, NOW_MS + 10),
            "the initiator accepts the reply",
        );
        script.hello = hello;
        script.reply = reply;
        script.fin = fin;
        script
    }

    /// The initiator's first step, the same on every call.
    fn start(&self) -> (Initiator, pb::HandshakeData) {
        let mut rng = StdRng::seed_from_u64(INITIATOR_SEED);
        let started = Initiator::start(
            &self.cfg,
            &self.initiator,
            &self.responder.node_id(),
            NOW_MS,
            &mut rng,
        );
        invariant_ok(started, "the initiator starts")
    }

    /// The responder's answer to `hello`, with the same randomness on every call.
    fn answer(
        &self,
        hello: &pb::HandshakeData,
    ) -> Result<(Responder, pb::HandshakeData), HandshakeError> {
        let mut rng = StdRng::seed_from_u64(RESPONDER_SEED);
        Responder::on_hello(&self.cfg, &self.responder, hello, NOW_MS + 5, &mut rng)
    }
}

/// Decodes a handshake message as the connection does; a decode failure must be a typed error.
fn decode_handshake(bytes: &[u8]) -> Option<pb::HandshakeData> {
    match wire::decode::<pb::HandshakeData>("HandshakeData", bytes) {
        Ok(msg) => Some(msg),
        Err(WireError::Malformed { what, .. }) => {
            assert_eq!(what, "HandshakeData");
            None
        }
        Err(e) => panic!("untyped HandshakeData decode error: {e:?}"),
    }
}

/// The initiator's state machine, after its hello, fed the input as the responder's reply.
///
/// Checks: the reply is accepted if and only if it is the genuine reply of the script (every field is
/// signed or key-confirmed, so nothing else may pass); then the confirmation is the genuine one and the
/// peer is the dialled key. Any other input yields a typed [`HandshakeError`].
pub fn handshake_initiator(data: &[u8]) {
    let script = Script::get();
    let (initiator, hello) = script.start();
    assert_eq!(hello, script.hello, "the initiator is deterministic");
    let Some(reply) = decode_handshake(data) else {
        return;
    };
    let genuine = reply == script.reply;
    match initiator.on_response(&reply, NOW_MS + 10) {
        Ok((established, fin)) => {
            assert!(genuine, "a reply that is not the genuine one was accepted");
            assert_eq!(fin, script.fin, "confirmation");
            assert_eq!(established.remote, script.responder.node_id());
            assert_eq!(established.remote_listen_port, script.cfg.listen_port);
        }
        Err(e) => assert!(!genuine, "the genuine reply was refused: {e}"),
    }
}

/// The responder's state machine in both steps. The first input byte picks the step:
///
/// - even: the rest is the initiator's hello. Accepted if and only if it is the script's genuine hello,
///   and then the reply is the genuine reply.
/// - odd: the genuine hello first (accepted), then the rest as the confirmation. Accepted if and only
///   if it carries the genuine `protocol`, `session_id` and `hmac` (the only fields a confirmation
///   has), and then the peer is the initiator.
pub fn handshake_responder(data: &[u8]) {
    let script = Script::get();
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let Some(msg) = decode_handshake(rest) else {
        return;
    };
    if step % 2 == 0 {
        let genuine = msg == script.hello;
        match script.answer(&msg) {
            Ok((_, reply)) => {
                assert!(genuine, "a hello that is not the genuine one was accepted");
                assert_eq!(reply, script.reply, "reply");
            }
            Err(e) => assert!(!genuine, "the genuine hello was refused: {e}"),
        }
        return;
    }
    let (responder, reply) = invariant_ok(script.answer(&script.hello), "the genuine hello");
    assert_eq!(reply, script.reply, "the responder is deterministic");
    let genuine = msg.protocol == script.fin.protocol
        && msg.session_id == script.fin.session_id
        && msg.hmac == script.fin.hmac;
    match responder.on_finish(&msg) {
        Ok(established) => {
            assert!(
                genuine,
                "a confirmation without the genuine tag was accepted"
            );
            assert_eq!(established.remote, script.initiator.node_id());
        }
        Err(e) => assert!(!genuine, "the genuine confirmation was refused: {e}"),
    }
}

/// Both ends of a session with fixed keys: the sender's sealer and opener, and the receiver's opener.
fn session_ends() -> (Sealer, Opener, Opener) {
    let a_to_b = || DirectionKeys {
        enc: [0xa1; 32],
        mac: [0xa2; 32],
    };
    let b_to_a = || DirectionKeys {
        enc: [0xb1; 32],
        mac: [0xb2; 32],
    };
    let a = SessionKeys {
        send: a_to_b(),
        recv: b_to_a(),
    };
    let b = SessionKeys {
        send: b_to_a(),
        recv: a_to_b(),
    };
    let (sealer, reflected) = a.split(StdRng::seed_from_u64(IV_SEED));
    let (_, opener) = b.split(StdRng::seed_from_u64(IV_SEED + 1));
    (sealer, opener, reflected)
}

/// The error a frame of `len` bytes that is not genuine must get: the length checks, then the MAC.
fn rejection(len: usize) -> SessionError {
    if len < MIN_SEALED_LEN {
        SessionError::TooShort { len }
    } else if !(len - MIN_SEALED_LEN).is_multiple_of(16) {
        SessionError::NotBlockAligned { len }
    } else {
        SessionError::BadMac
    }
}

/// Session open with fixed keys, two ways.
///
/// 1. The input as a frame: it opens only if it is exactly the frame the matching sealer writes for
///    that plaintext; otherwise the error is the length check's or `BadMac`, and the sequence number
///    stays put.
/// 2. The input as `op, offset (2 bytes), mask, plaintext`: the plaintext is sealed, then the frame is
///    changed by `op` (flip bits at the offset, truncate, insert a byte, or swap in the next frame).
///    The result opens if and only if it is unchanged, and then yields the plaintext; a rejected frame
///    does not advance the sequence number, so the genuine frame still opens after it. Then a replay,
///    a reflection to the sender's own opener, and the next frame in order are checked.
pub fn session_open(data: &[u8]) {
    let (mut sealer, mut opener, _) = session_ends();
    match opener.open(data) {
        Ok(plain) => {
            let genuine = invariant_ok(sealer.seal(&plain), "sealing");
            assert_eq!(&genuine[..], data, "only the sealer's own frame opens");
        }
        Err(e) => {
            assert_eq!(e, rejection(data.len()), "error for a forged frame");
            assert_eq!(
                opener.seq(),
                0,
                "a rejected frame moved the sequence number"
            );
        }
    }

    let mut input = Input::new(data);
    let op = input.byte();
    let offset = usize::from(input.u16());
    let mask = input.byte();
    let plaintext = input.rest();
    let (mut sealer, mut opener, mut reflected) = session_ends();
    let frame = invariant_ok(sealer.seal(plaintext), "sealing");
    assert_eq!(frame.len(), sealed_len(plaintext.len()), "sealed_len");
    let next = invariant_ok(sealer.seal(b"next"), "sealing");
    let mut changed = frame.to_vec();
    match op % 4 {
        0 => changed[offset % frame.len()] ^= mask,
        1 => changed.truncate(offset % (frame.len() + 1)),
        2 => changed.insert(offset % (frame.len() + 1), mask),
        _ => changed = next.to_vec(),
    }
    let mutated = changed[..] != frame[..];
    match opener.open(&changed) {
        Ok(plain) => {
            assert!(!mutated, "a changed frame opened");
            assert_eq!(plain, plaintext, "plaintext");
        }
        Err(e) => {
            assert!(mutated, "the genuine frame failed: {e}");
            assert_eq!(e, rejection(changed.len()), "error for a changed frame");
            assert_eq!(
                opener.seq(),
                0,
                "a rejected frame moved the sequence number"
            );
            let plain = invariant_ok(
                opener.open(&frame),
                "the genuine frame after a rejected one",
            );
            assert_eq!(plain, plaintext, "plaintext");
        }
    }
    assert_eq!(opener.open(&frame), Err(SessionError::BadMac), "replay");
    assert_eq!(
        reflected.open(&frame),
        Err(SessionError::BadMac),
        "reflection"
    );
    let plain = invariant_ok(opener.open(&next), "the next frame in order");
    assert_eq!(plain, b"next", "plaintext");
}

/// Message kinds [`proto_decode`] picks from.
const PROTO_KINDS: u8 = 9;

/// Every protobuf decode into domain types. The first input byte picks the message (mod 9), the rest
/// is its encoding: 0 `HandshakeData`, 1 `Envelope` (and its payload as the dispatcher reads it),
/// 2 `NodeInfo`, 3 `FindNodeRequest`, 4 `FindNodeResponse`, 5 `GossipMessage`, 6 `Ping`, 7 `Pong`,
/// 8 a seed list (descriptor text).
///
/// Checks: a decode failure is a typed error; every decoded message re-encodes to the same message;
/// where a domain type exists, converting it back and forth gives the same value (a `NodeInfo`, a
/// FindNode answer, a gossip message, a seed list); a FindNode answer never has more than k nodes; a
/// gossip signature verifies only for the script's genuine message.
pub fn proto_decode(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    match kind % PROTO_KINDS {
        0 => {
            round_trip::<pb::HandshakeData>("HandshakeData", body);
        }
        1 => envelope(body),
        2 => node_info(body),
        3 => find_node_request(body),
        4 => find_node_response(body),
        5 => gossip_message(body),
        6 => {
            round_trip::<pb::Ping>("Ping", body);
        }
        7 => {
            round_trip::<pb::Pong>("Pong", body);
        }
        _ => seed_list(body),
    }
}

/// Decodes `bytes` as `M`; a failure must be [`WireError::Malformed`] naming `what`, a success must
/// survive encode + decode unchanged.
fn round_trip<M>(what: &'static str, bytes: &[u8]) -> Option<M>
where
    M: prost::Message + Default + PartialEq + Debug,
{
    match wire::decode::<M>(what, bytes) {
        Ok(msg) => {
            let again = wire::decode::<M>(what, &wire::encode(&msg));
            assert!(
                again.as_ref().is_ok_and(|m| *m == msg),
                "{what} does not round-trip: {msg:?} -> {again:?}"
            );
            Some(msg)
        }
        Err(WireError::Malformed { what: named, .. }) => {
            assert_eq!(named, what);
            None
        }
        Err(e) => panic!("{what}: untyped decode error {e:?}"),
    }
}

/// An envelope, then its payload as the dispatcher reads it for the node's own protocols.
fn envelope(bytes: &[u8]) {
    let Some(envelope) = round_trip::<pb::Envelope>("Envelope", bytes) else {
        return;
    };
    let Some(meta) = envelope.metadata else {
        return;
    };
    assert_eq!(
        Uuid::from_slice(&meta.req_id).is_ok(),
        meta.req_id.len() == 16,
        "request id"
    );
    match meta.protocol.as_str() {
        GOSSIP_PROTOCOL => gossip_message(&envelope.payload),
        FINDNODE_PROTOCOL if meta.response => find_node_response(&envelope.payload),
        FINDNODE_PROTOCOL => find_node_request(&envelope.payload),
        KEEPALIVE_PING => {
            round_trip::<pb::Ping>("Ping", &envelope.payload);
        }
        _ => {}
    }
}

/// A `NodeInfo` into the domain type and back; a valid key also survives its descriptor text form.
fn node_info(bytes: &[u8]) {
    let Some(proto) = round_trip::<pb::NodeInfo>("NodeInfo", bytes) else {
        return;
    };
    match NodeInfo::try_from(&proto) {
        Ok(node) => {
            let back = NodeInfo::try_from(&pb::NodeInfo::from(&node));
            assert!(back.is_ok_and(|n| n == node), "NodeInfo round trip");
            if node.id.public_key().is_ok() {
                let text = node.to_string();
                assert_eq!(text.parse::<NodeInfo>(), Ok(node), "descriptor {text:?}");
            }
        }
        Err(WireError::Malformed { what, .. }) => assert_eq!(what, "NodeInfo"),
        Err(e) => panic!("untyped NodeInfo error: {e:?}"),
    }
}

/// A FindNode request as the node serves it: the target must be a 32-byte DHT id.
fn find_node_request(bytes: &[u8]) {
    if let Some(req) = round_trip::<pb::FindNodeRequest>("FindNodeRequest", bytes) {
        assert_eq!(
            DhtId::from_slice(&req.target).is_ok(),
            req.target.len() == 32,
            "target id"
        );
    }
}

/// A FindNode response as a lookup reads it: at most k valid nodes, which re-encode to the same list.
fn find_node_response(bytes: &[u8]) {
    match parse_find_node_response(bytes, FIND_NODE_MAX) {
        Ok(nodes) => {
            assert!(nodes.len() <= FIND_NODE_MAX, "more than k nodes");
            let again = wire::encode(&pb::FindNodeResponse {
                nodes: nodes.iter().map(pb::NodeInfo::from).collect(),
            });
            assert_eq!(
                parse_find_node_response(&again, FIND_NODE_MAX),
                Ok(nodes),
                "FindNode response round trip"
            );
        }
        Err(FindNodeError::Oversized { got, max }) => {
            assert!(got > max && max == FIND_NODE_MAX, "Oversized {got} > {max}");
        }
        Err(FindNodeError::Malformed(_)) => {}
    }
}

/// A gossip message into the signed type and back; its signature and timestamp checks.
fn gossip_message(bytes: &[u8]) {
    let Some(proto) = round_trip::<pb::GossipMessage>("GossipMessage", bytes) else {
        return;
    };
    let (message, cover) = match SignedGossip::from_proto(proto.clone()) {
        Ok(decoded) => decoded,
        Err(e) => {
            assert!(
                matches!(
                    e,
                    GossipError::Malformed
                        | GossipError::InvalidProtocol
                        | GossipError::InvalidAuthor
                ),
                "from_proto error {e:?}"
            );
            return;
        }
    };
    assert_eq!(message.to_proto(cover), proto, "gossip round trip");
    match message.verify() {
        Ok(id) => {
            assert_eq!(id, message.id(), "id");
            assert_eq!(
                message,
                Script::get().gossip,
                "only the genuine message verifies"
            );
        }
        Err(e) => assert!(
            matches!(e, GossipError::BadSignature | GossipError::InvalidAuthor),
            "verify error {e:?}"
        ),
    }
    let ttl = Duration::from_millis(GOSSIP_TTL_MS.unsigned_abs());
    let skew = Duration::from_millis(GOSSIP_SKEW_MS.unsigned_abs());
    let at = message.timestamp_ms();
    match check_timestamp(at, NOW_MS, ttl, skew) {
        Ok(expires) => {
            assert_eq!(expires, at.saturating_add(GOSSIP_TTL_MS), "expiry");
            assert!(expires > NOW_MS && at <= NOW_MS + GOSSIP_SKEW_MS, "window");
        }
        Err(GossipError::Expired) => assert!(at.saturating_add(GOSSIP_TTL_MS) <= NOW_MS),
        Err(GossipError::FromFuture) => assert!(at > NOW_MS + GOSSIP_SKEW_MS),
        Err(e) => panic!("check_timestamp error {e:?}"),
    }
}

/// A seed list (descriptor text): parsed nodes render and parse back to the same list.
fn seed_list(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(nodes) = seeds::parse(text, "fuzz") {
        let rendered = seeds::render(&nodes, "fuzz");
        let again = seeds::parse(&rendered, "rendered");
        assert!(
            again.as_ref().is_ok_and(|n| *n == nodes),
            "seed list round trip: {rendered:?} -> {again:?}"
        );
    }
}

/// A few valid inputs per harness, by target name, so a fuzzer starts from real structure: frames,
/// the script's genuine handshake messages, sealed frames and one message of every protobuf kind.
/// The ignored test `write_seed_corpus` in `tests/fuzz_corpus.rs` writes them into `fuzz/corpus/<target>/`.
pub fn seed_corpus() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let script = Script::get();
    let with = |first: u8, body: &[u8]| [&[first][..], body].concat();
    let frame = |body: &[u8]| [&(body.len() as u32).to_be_bytes()[..], body].concat();

    let stream = [frame(b"hello"), frame(b""), frame(&[0xab; 300])].concat();
    let frames = vec![
        [&[0x04, 0x00, 2, 0, 3, 0, 10][..], &stream].concat(),
        [&[0x00, 0x10, 0][..], &frame(&[1; 32])].concat(),
        [&[0x04, 0x00, 1, 0, 2][..], &stream[..stream.len() - 7]].concat(),
    ];

    let initiator = vec![
        wire::encode(&script.reply).to_vec(),
        wire::encode(&script.hello).to_vec(),
    ];
    let responder = vec![
        with(0, &wire::encode(&script.hello)),
        with(1, &wire::encode(&script.fin)),
    ];

    let (mut sealer, _, _) = session_ends();
    let sealed = invariant_ok(sealer.seal(b"hello"), "sealing").to_vec();
    let session = vec![
        sealed,
        [&[0, 0, 20, 0x01][..], b"flip one bit of this"].concat(),
        [&[1, 0, 40, 0][..], b"truncated"].concat(),
        [&[3, 0, 0, 0][..], b"reordered"].concat(),
    ];

    let node = |port: u16, seed: u64| {
        let id = Keypair::generate(&mut StdRng::seed_from_u64(seed)).node_id();
        NodeInfo::new(id, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
    };
    let nodes: Vec<NodeInfo> = (0..3).map(|i| node(7513 + i, u64::from(i))).collect();
    let find_request = wire::encode(&pb::FindNodeRequest {
        target: nodes[0].dht_id().0.to_vec(),
        max_results: 20,
    });
    let find_response = wire::encode(&pb::FindNodeResponse {
        nodes: nodes.iter().map(pb::NodeInfo::from).collect(),
    });
    let gossip = wire::encode(&script.gossip.to_proto(true));
    let envelope = |protocol: &str, response: bool, payload: &[u8]| {
        wire::encode(&pb::Envelope {
            metadata: Some(pb::Metadata {
                protocol: protocol.to_owned(),
                req_id: vec![9; 16],
                client_version: "1.4.2".to_owned(),
                timestamp: NOW_MS,
                gossip: protocol == GOSSIP_PROTOCOL,
                response,
                ..Default::default()
            }),
            payload: payload.to_vec(),
        })
    };
    let seed_text = seeds::render(&nodes, "seed list");
    let proto = vec![
        with(0, &wire::encode(&script.hello)),
        with(1, &envelope(GOSSIP_PROTOCOL, false, &gossip)),
        with(1, &envelope(FINDNODE_PROTOCOL, false, &find_request)),
        with(1, &envelope(FINDNODE_PROTOCOL, true, &find_response)),
        with(
            1,
            &envelope(
                KEEPALIVE_PING,
                false,
                &wire::encode(&pb::Ping { nonce: 42 }),
            ),
        ),
        with(2, &wire::encode(&pb::NodeInfo::from(&nodes[0]))),
        with(3, &find_request),
        with(4, &find_response),
        with(5, &gossip),
        with(6, &wire::encode(&pb::Ping { nonce: 7 })),
        with(7, &wire::encode(&pb::Pong { nonce: 7 })),
        with(8, seed_text.as_bytes()),
    ];

    vec![
        ("frame_decoder", frames),
        ("handshake_initiator", initiator),
        ("handshake_responder", responder),
        ("session_open", session),
        ("proto_decode", proto),
    ]
}
