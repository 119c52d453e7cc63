//! The initiator's handshake state machine fed arbitrary bytes as the responder's reply.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kadmesh::fuzzing::handshake_initiator(data));
