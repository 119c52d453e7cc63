//! The length-prefixed frame decoder fed arbitrary bytes in input-chosen chunks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kadmesh::fuzzing::frame_decoder(data));
