//! Bytes from a WebSocket client through Ferry's sans-IO frame reader and assembler
//! (`ferry_transport::ws`), the first code a hostile peer reaches, with and without
//! permessage-deflate.
//!
//! The first byte picks the setting: bit 0 permessage-deflate, bit 1 a small message
//! limit (64 bytes, else 64 KiB), bits 2-4 the size of the chunks the rest arrives in
//! (1, 2, 4, … 128 bytes), bit 5 the mode. In the first mode the rest is the byte stream
//! itself: read whole and read in chunks, it must give the same events and the same
//! violation; a reader that waits for more bytes leaves the buffer as it was; a text
//! message is UTF-8, no message passes the limit, a ping carries at most 125 bytes. In
//! the second the rest is one message that a client sends: compressed (when deflate is
//! on and that makes it smaller), masked, cut into fragments of the chunk size; it must
//! come out whole and unchanged.
#![no_main]

use bytes::{Bytes, BytesMut};
use ferry_core::MessageKind;
use ferry_transport::ws::assembler::{Assembler, Event, Violation};
use ferry_transport::ws::deflate::{MessageDeflater, MessageInflater};
use ferry_transport::ws::frame_reader::FrameReader;
use libfuzzer_sys::fuzz_target;

const SMALL: usize = 64;
const LARGE: usize = 64 * 1024;
/// The inflated-size cap of the first message (`websocket.compression.max_first_message`
/// plays this part before authentication).
const FIRST_LIMIT: usize = 4096;

#[derive(Clone, Copy)]
struct Setting {
    deflate: bool,
    limit: usize,
    chunk: usize,
}

fn parts(setting: Setting) -> (FrameReader, Assembler) {
    let reader = FrameReader::new(setting.limit);
    let assembler = Assembler::new(setting.limit);
    if setting.deflate {
        (
            reader.with_deflate(),
            assembler.with_inflater(MessageInflater::shared(), FIRST_LIMIT),
        )
    } else {
        (reader, assembler)
    }
}

/// Every event of `stream` read in chunks of `chunk` bytes, up to the first violation.
fn events(setting: Setting, stream: &[u8], chunk: usize) -> (Vec<Event>, Option<Violation>) {
    let (reader, mut assembler) = parts(setting);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in stream.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.clone();
            match reader.next_frame(&mut buf) {
                Ok(None) => {
                    assert_eq!(buf, before, "a reader waiting for more consumed bytes");
                    break;
                }
                Ok(Some(frame)) => {
                    assert!(frame.payload.len() <= setting.limit, "a frame over the limit was read");
                    match assembler.push(frame) {
                        Ok(event) => {
                            check(setting, &event);
                            out.push(event);
                        }
                        Err(v) => return (out, Some(v)),
                    }
                }
                Err(v) => return (out, Some(v)),
            }
        }
    }
    (out, None)
}

fn check(setting: Setting, event: &Event) {
    match event {
        Event::Message(kind, data) => {
            assert!(data.len() <= setting.limit, "a message of {} bytes over the limit", data.len());
            if *kind == MessageKind::Text {
                assert!(std::str::from_utf8(data).is_ok(), "a text message that is not UTF-8");
            }
        }
        Event::Ping(payload) => assert!(payload.len() <= 125, "a ping of {} bytes", payload.len()),
        Event::Pong | Event::Close(_) | Event::Partial => {}
    }
}

/// One client frame: FIN, RSV1 when `compressed`, the opcode, masked with `key`.
fn client_frame(out: &mut Vec<u8>, fin: bool, compressed: bool, opcode: u8, payload: &[u8], key: [u8; 4]) {
    out.push(u8::from(fin) << 7 | u8::from(compressed) << 6 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
}

fn round_trip(setting: Setting, message: &[u8]) {
    let setting = Setting { limit: LARGE, ..setting };
    // Inflated, the first message may not pass FIRST_LIMIT.
    let original = Bytes::copy_from_slice(&message[..message.len().min(FIRST_LIMIT)]);
    let compressed = if setting.deflate {
        MessageDeflater::shared(6, 0, 15)
            .compress(&original)
            .expect("a shared deflater does not fail")
    } else {
        None
    };
    let wire = compressed.as_ref().unwrap_or(&original);
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut stream = Vec::new();
    let pieces: Vec<&[u8]> = if wire.is_empty() {
        vec![&[][..]]
    } else {
        wire.chunks(setting.chunk).collect()
    };
    for (i, piece) in pieces.iter().enumerate() {
        let opcode = if i == 0 { 0x2 } else { 0x0 };
        client_frame(
            &mut stream,
            i + 1 == pieces.len(),
            i == 0 && compressed.is_some(),
            opcode,
            piece,
            key,
        );
    }
    let (events, violation) = events(setting, &stream, stream.len());
    assert_eq!(violation, None, "a well-formed message refused");
    let whole: Vec<&Event> = events.iter().filter(|e| **e != Event::Partial).collect();
    assert_eq!(
        whole,
        [&Event::Message(MessageKind::Binary, original)],
        "the message changed on its way"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let setting = Setting {
        deflate: mode & 1 != 0,
        limit: if mode & 2 != 0 { SMALL } else { LARGE },
        chunk: 1 << ((mode >> 2) & 7),
    };
    if mode & 0x20 != 0 {
        round_trip(setting, rest);
        return;
    }
    let whole = events(setting, rest, rest.len());
    let chunked = events(setting, rest, setting.chunk);
    assert_eq!(whole, chunked, "the chunking changed what was read");
});
