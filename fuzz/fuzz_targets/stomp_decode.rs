//! Arbitrary bytes through Ferry's STOMP decoder: every version mode, several
//! chunkings (which must agree), and encode → decode round trips of what decodes.
//! `ferry_stomp::codec::fuzz_decode` holds the checks so unit tests share them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferry_stomp::codec::fuzz_decode(data);
});
