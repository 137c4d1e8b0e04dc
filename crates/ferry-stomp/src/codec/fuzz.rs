//! A fuzzing entry point: arbitrary bytes through the decoder, and every frame it
//! accepts back through the encoder.
//!
//! [`fuzz_decode`] checks three things, for every version mode (no version yet, 1.0,
//! 1.1, 1.2, and "negotiate on the handshake frame" as a broker does):
//!
//! 1. nothing panics, whatever the bytes;
//! 2. the chunking does not matter: the input fed whole, one octet at a time, and in
//!    uneven chunks gives the same frames, heart-beats and error;
//! 3. every decoded frame encodes (unless it holds a value the version cannot write,
//!    see [`EncodeError`]) and decodes back to itself, `content-length` aside (the
//!    encoder writes the true one, last); [`encode_parts`] agrees with [`encode`].
//!
//! The limits are small so that fuzzers reach every limit quickly.

use bytes::BytesMut;

use super::decode::{Decoded, Decoder, CONTENT_LENGTH};
use super::encode::{encode, encode_parts, writes_content_length};
use super::error::{EncodeError, StompError};
use super::escape::Escaping;
use super::frame::{Command, Frame};
use super::limits::Limits;
use super::version::Version;

/// The limits the fuzzed decoders run with.
const FUZZ_LIMITS: Limits = Limits {
    max_command_line: 16,
    max_headers: 8,
    max_header_line: 64,
    max_body: 1024,
};

/// Limits that never bite, for decoding what the encoder wrote.
const NO_LIMITS: Limits = Limits {
    max_command_line: usize::MAX,
    max_headers: usize::MAX,
    max_header_line: usize::MAX,
    max_body: usize::MAX,
};

/// Which version the decoder applies.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// This version (or none) throughout.
    Fixed(Option<Version>),
    /// None until a handshake frame, then the one it names, as a broker or client does.
    Negotiate,
}

/// How the input is cut into chunks.
#[derive(Debug, Clone, Copy)]
enum Chunking {
    Whole,
    OneOctet,
    Uneven,
}

/// What one run of the decoder produced.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    /// Each item with the version in force when it was decoded.
    items: Vec<(Decoded, Option<Version>)>,
    error: Option<StompError>,
    in_frame: bool,
}

/// Feed `data` to the decoder in several chunkings and version modes and check that
/// every accepted frame survives an encode/decode round trip. Panics only when one of
/// those properties fails (a bug), never because of what `data` holds.
pub fn fuzz_decode(data: &[u8]) {
    let modes = [
        Mode::Fixed(None),
        Mode::Fixed(Some(Version::V1_0)),
        Mode::Fixed(Some(Version::V1_1)),
        Mode::Fixed(Some(Version::V1_2)),
        Mode::Negotiate,
    ];
    for mode in modes {
        let whole = run(data, mode, Chunking::Whole);
        for chunking in [Chunking::OneOctet, Chunking::Uneven] {
            let other = run(data, mode, chunking);
            assert_eq!(whole, other, "{mode:?}: chunking {chunking:?} changed the result");
        }
        for (item, version) in &whole.items {
            if let Decoded::Frame(frame) = item {
                round_trip(frame, *version);
            }
        }
    }
}

fn run(data: &[u8], mode: Mode, chunking: Chunking) -> Outcome {
    let mut decoder = Decoder::new(FUZZ_LIMITS);
    if let Mode::Fixed(Some(version)) = mode {
        decoder.set_version(version);
    }
    let mut outcome = Outcome {
        items: Vec::new(),
        error: None,
        in_frame: false,
    };
    let mut buf = BytesMut::new();
    let mut rest = data;
    let mut round = 0usize;
    while !rest.is_empty() {
        let size = match chunking {
            Chunking::Whole => rest.len(),
            Chunking::OneOctet => 1,
            Chunking::Uneven => 1 + (round * 7 + data.len()) % 13,
        }
        .min(rest.len());
        round += 1;
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(item)) => {
                    let version = decoder.version();
                    if let (Mode::Negotiate, Decoded::Frame(frame)) = (mode, &item) {
                        if let Some(negotiated) = negotiated(frame) {
                            decoder.set_version(negotiated);
                        }
                    }
                    outcome.items.push((item, version));
                }
                Ok(None) => break,
                Err(error) => {
                    outcome.error = Some(error);
                    return outcome;
                }
            }
        }
    }
    outcome.in_frame = decoder.in_frame();
    outcome
}

/// The version a handshake frame settles, as a broker (CONNECT, STOMP) or a client
/// (CONNECTED) would take it.
fn negotiated(frame: &Frame) -> Option<Version> {
    match frame.command {
        Command::Connect | Command::Stomp => Version::negotiate(frame.header("accept-version")),
        Command::Connected => frame.header("version").and_then(Version::from_token).or(Some(Version::V1_0)),
        _ => None,
    }
}

/// `frame` as the decoder reads it back after the encoder wrote it: its own
/// `content-length` headers gone, the true one last when the encoder writes one.
pub(crate) fn expected_after_round_trip(frame: &Frame) -> Frame {
    let mut expected = frame.clone();
    expected.headers.remove(CONTENT_LENGTH);
    if writes_content_length(frame) {
        expected.headers.push(CONTENT_LENGTH, frame.body.len().to_string());
    }
    expected
}

fn round_trip(frame: &Frame, decoded_with: Option<Version>) {
    // Decoding without a version is decoding without escapes, as 1.0 does.
    let version = decoded_with.unwrap_or(Version::V1_0);
    let mut wire = BytesMut::new();
    match encode(frame, version, &mut wire) {
        Ok(()) => {}
        Err(EncodeError::Unrepresentable { .. })
            if Escaping::for_frame(decoded_with, frame.command) != Escaping::V1_2
                && frame.headers.iter().any(|(_, value)| value.ends_with('\r')) =>
        {
            // A literal CR ending a value (sent as CR CR LF) has no encoding without `\r`.
            return;
        }
        Err(error) => panic!("a decoded frame does not encode: {error}: {frame:?}"),
    }
    let Ok(parts) = encode_parts(frame, version) else {
        panic!("encode_parts refused what encode accepted: {frame:?}");
    };
    assert_eq!(parts.concat(), wire.to_vec(), "encode_parts and encode disagree");

    let mut decoder = Decoder::new(NO_LIMITS);
    if let Some(v) = decoded_with {
        decoder.set_version(v);
    }
    let again = decoder.decode(&mut wire);
    assert_eq!(
        again,
        Ok(Some(Decoded::Frame(expected_after_round_trip(frame)))),
        "round trip changed the frame"
    );
    assert!(wire.is_empty() && !decoder.in_frame(), "the encoder wrote more than one frame");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_the_spec_examples_and_garbage() {
        fuzz_decode(b"CONNECT\naccept-version:1.2\nhost:stomp.github.org\n\n\0\nSEND\ndestination:/queue/a\r\nk:a\\cb\n\nhi\0");
        fuzz_decode(b"CONNECTED\nversion:1.1\n\n\0MESSAGE\nk:a\\nb\ncontent-length:3\n\n\0\0\0\0\r\n");
        fuzz_decode(b"SEND\nk:v\r\r\n\n\0");
        fuzz_decode(b"SEND\nk:\\t\n\n\0");
        fuzz_decode(b"");
        fuzz_decode(b"\r");
        fuzz_decode(&[0xff; 300]);
        fuzz_decode(b"SEND\ncontent-length:99999999999999999999\n\n");
    }

    #[test]
    fn negotiation_follows_the_handshake() {
        let o = run(
            b"CONNECT\naccept-version:1.1\n\n\0SEND\nk:\\c\n\n\0",
            Mode::Negotiate,
            Chunking::Whole,
        );
        assert_eq!(o.error, None);
        assert_eq!(o.items[1].1, Some(Version::V1_1));
        let Decoded::Frame(send) = &o.items[1].0 else { panic!() };
        assert_eq!(send.header("k"), Some(":"));
    }
}
