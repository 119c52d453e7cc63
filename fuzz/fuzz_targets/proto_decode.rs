//! Every protobuf decode into domain types (the first byte picks the message).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kadmesh::fuzzing::proto_decode(data));
