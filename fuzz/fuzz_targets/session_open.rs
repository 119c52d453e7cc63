//! Session open with fixed keys: arbitrary frames, and genuine frames changed by the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kadmesh::fuzzing::session_open(data));
