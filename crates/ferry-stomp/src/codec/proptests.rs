//! Property tests: random frames survive encode → decode in every version and at any
//! chunking; random and mutated byte streams never break the decoder's properties.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::escape::Escaping;
use super::fuzz::expected_after_round_trip;
use super::*;

fn version() -> impl Strategy<Value = Version> {
    prop::sample::select(Version::ALL.to_vec())
}

fn command() -> impl Strategy<Value = Command> {
    prop::sample::select(Command::ALL.to_vec())
}

/// Text rich in the octets that need escaping.
fn text(min: usize) -> impl Strategy<Value = String> {
    let chars = vec!['a', 'z', ':', '\\', '\n', '\r', ' ', 'é', '€', '\0', 'c', 'n', 'r'];
    prop::collection::vec(prop::sample::select(chars), min..8).prop_map(String::from_iter)
}

fn frame() -> impl Strategy<Value = Frame> {
    let body = prop::collection::vec(prop::sample::select(vec![0u8, b'a', b'\n', 0xff]), 0..64);
    (command(), prop::collection::vec((text(1), text(0)), 0..6), body).prop_map(|(command, headers, body)| Frame {
        command,
        headers: headers.into_iter().collect(),
        body: Bytes::from(body),
    })
}

/// Drop from `frame` what its escaping cannot carry (the encoder would refuse it).
fn writable(mut frame: Frame, version: Version) -> Frame {
    let escaping = Escaping::for_frame(Some(version), frame.command);
    let fix = |mut s: String, is_name: bool| {
        if escaping == Escaping::Off {
            s.retain(|c| c != '\n' && !(is_name && c == ':'));
        }
        if escaping != Escaping::V1_2 && !is_name {
            while s.ends_with('\r') {
                s.pop();
            }
        }
        s
    };
    frame.headers = frame
        .headers
        .into_iter()
        .map(|(n, v)| (fix(n, true), fix(v, false)))
        .filter(|(n, _)| !n.is_empty())
        .collect();
    frame
}

proptest! {
    #[test]
    fn frames_round_trip_at_any_chunking(
        version in version(),
        frames in prop::collection::vec(frame(), 1..5),
        heartbeats in prop::collection::vec(0usize..3, 5),
        cuts in prop::collection::vec(1usize..40, 1..20),
    ) {
        let frames: Vec<Frame> = frames.into_iter().map(|f| writable(f, version)).collect();
        let mut wire = BytesMut::new();
        let mut expected = Vec::new();
        for (frame, beats) in frames.iter().zip(heartbeats.iter().cycle()) {
            prop_assert_eq!(encode(frame, version, &mut wire), Ok(()));
            expected.push(Decoded::Frame(expected_after_round_trip(frame)));
            for i in 0..*beats {
                wire.extend_from_slice(if i % 2 == 0 { b"\n" } else { b"\r\n" });
                expected.push(Decoded::HeartBeat);
            }
        }
        let mut decoder = Decoder::with_version(Limits::default(), version);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut rest = &wire[..];
        for cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at((*cut).min(rest.len()));
            rest = tail;
            buf.extend_from_slice(chunk);
            while let Some(item) = decoder.decode(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))? {
                got.push(item);
            }
        }
        prop_assert_eq!(got, expected);
        prop_assert!(buf.is_empty() && !decoder.in_frame());
    }

    #[test]
    fn arbitrary_bytes_keep_the_fuzz_properties(data in prop::collection::vec(any::<u8>(), 0..256)) {
        fuzz_decode(&data);
    }

    #[test]
    fn mutated_frames_keep_the_fuzz_properties(
        version in version(),
        frames in prop::collection::vec(frame(), 1..4),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let mut wire = Vec::new();
        for frame in frames {
            let mut dst = BytesMut::new();
            if encode(&writable(frame, version), version, &mut dst).is_ok() {
                wire.extend_from_slice(&dst);
            }
        }
        if !wire.is_empty() {
            for (at, byte) in flips {
                let i = at.index(wire.len());
                wire[i] = byte;
            }
        }
        fuzz_decode(&wire);
    }
}

/// Streams built from STOMP's own tokens, so random inputs get deep into frames.
fn token_soup() -> impl Strategy<Value = Vec<u8>> {
    let tokens: Vec<&'static [u8]> = vec![
        b"CONNECT",
        b"STOMP",
        b"CONNECTED",
        b"SEND",
        b"MESSAGE",
        b"ERROR",
        b"ACK",
        b"accept-version:",
        b"1.0",
        b"1.1,1.2",
        b"version:1.1",
        b"content-length:",
        b"0",
        b"3",
        b"17",
        b"k",
        b"v",
        b":",
        b"\\",
        b"\\c",
        b"\\n",
        b"\\r",
        b"\\t",
        b"\n",
        b"\r\n",
        b"\r",
        b"\0",
        b"\xc3\xa9",
        b"\xff",
    ];
    prop::collection::vec(prop::sample::select(tokens), 0..48).prop_map(|t| t.concat())
}

proptest! {
    #[test]
    fn token_soup_keeps_the_fuzz_properties(data in token_soup()) {
        fuzz_decode(&data);
    }
}
