//! The responder's handshake state machine fed an arbitrary hello, or the genuine hello then an arbitrary confirmation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kadmesh::fuzzing::handshake_responder(data));
