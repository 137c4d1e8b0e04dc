//! permessage-deflate at the frame level (RFC 7692 §6): RSV1 marks the first frame of
//! a compressed message and nothing else; a compressed message is inflated once whole.
//! These are the pieces [`crate::ws::frame_reader`], [`crate::ws::assembler`] and
//! [`crate::outbuf`] call once the extension is wired in (see this module's README).

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload};
use ferry_core::{CloseCode, MessageKind};

use super::codec::MessageInflater;
use crate::ws::assembler::Violation;

/// The "Per-Message Compressed" bit, RSV1, in a frame's first byte.
pub const RSV1: u8 = 0x40;
/// RSV2 and RSV3: no extension Ferry speaks uses them.
const RSV2_RSV3: u8 = 0x30;

/// Check the reserved bits of a frame's first byte `b0`, with `deflate` saying whether
/// permessage-deflate was negotiated. `Ok(true)`: the frame starts a compressed
/// message. RSV1 is allowed on the first frame of a data message only (a text or binary
/// opcode); on a continuation or control frame, or without the extension, it is a
/// protocol error (1002), as RSV2 and RSV3 always are.
pub fn check_reserved_bits(b0: u8, deflate: bool) -> Result<bool, Violation> {
    if b0 & RSV2_RSV3 != 0 {
        return Err(Violation::protocol("reserved bits set without a negotiated extension"));
    }
    if b0 & RSV1 == 0 {
        return Ok(false);
    }
    if !deflate {
        return Err(Violation::protocol("reserved bits set without a negotiated extension"));
    }
    match b0 & 0x0f {
        0x1 | 0x2 => Ok(true),
        0x0 => Err(Violation::protocol("RSV1 set on a continuation frame")),
        _ => Err(Violation::protocol("RSV1 set on a control frame")),
    }
}

/// Write the header of one unmasked, unfragmented server frame carrying `payload` into
/// `head` (fastwebsockets' `fmt_head`), with RSV1 set when `compressed`; returns its
/// length. Never set `compressed` on a control frame.
pub fn frame_head(opcode: OpCode, compressed: bool, payload: &[u8], head: &mut [u8; 16]) -> usize {
    let n = Frame::new(true, opcode, None, Payload::Borrowed(payload)).fmt_head(head);
    if compressed {
        head[0] |= RSV1;
    }
    n
}

/// Finish a compressed message: inflate the joined payloads of its frames, refusing it
/// past `limit` bytes (1009) or when the data is not deflate (1007), and check that a
/// text message is UTF-8 (1007), which can only be done once inflated.
pub fn inflate_message(inflater: &mut MessageInflater, kind: MessageKind, compressed: &[u8], limit: usize) -> Result<Bytes, Violation> {
    let message = inflater.inflate(compressed, limit)?;
    if kind == MessageKind::Text && simdutf8::basic::from_utf8(&message).is_err() {
        return Err(Violation {
            code: CloseCode::INVALID_PAYLOAD,
            reason: "invalid UTF-8 in a text message",
        });
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::deflate::codec::{deflate_shared, MessageDeflater};

    #[test]
    fn rsv1_only_on_the_first_frame_of_a_data_message() {
        let table: &[(u8, bool, Result<bool, u16>)] = &[
            (0x81, false, Ok(false)),
            (0x81, true, Ok(false)),
            (0xc1, true, Ok(true)),
            (0x42, true, Ok(true)), // first of several frames, binary
            (0xc1, false, Err(1002)),
            (0xc0, true, Err(1002)), // continuation
            (0x40, true, Err(1002)),
            (0xc9, true, Err(1002)), // ping
            (0xca, true, Err(1002)), // pong
            (0xc8, true, Err(1002)), // close
            (0xa1, true, Err(1002)), // RSV2
            (0x91, true, Err(1002)), // RSV3
            (0xf1, true, Err(1002)),
        ];
        for &(b0, deflate, expected) in table {
            assert_eq!(
                check_reserved_bits(b0, deflate).map_err(|v| v.code.as_u16()),
                expected,
                "{b0:#04x}, negotiated {deflate}"
            );
        }
    }

    #[test]
    fn rfc7692_compressed_hello_frames() {
        // §7.2.3.1: a frame `c1 07 f2 48 cd c9 c9 07 00` is a compressed text "Hello".
        let frame = [0xc1u8, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(check_reserved_bits(frame[0], true), Ok(true));
        let mut inflater = MessageInflater::shared();
        let hello = inflate_message(&mut inflater, MessageKind::Text, &frame[2..], 1024).unwrap();
        assert_eq!(&hello[..], b"Hello");
        // The same message in two frames (`41 03 f2 48 cd`, `80 04 c9 c9 07 00`): the
        // continuation carries no RSV1, and the payloads are inflated joined.
        assert_eq!(check_reserved_bits(0x41, true), Ok(true));
        assert_eq!(check_reserved_bits(0x80, true), Ok(false));
        let joined = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(
            &inflate_message(&mut inflater, MessageKind::Text, &joined, 1024).unwrap()[..],
            b"Hello"
        );
        // And the way out: Ferry's header for it is `c1 07`.
        let payload = deflate_shared(&Bytes::from_static(b"Hello"), 1, 15);
        let mut head = [0u8; 16];
        let n = frame_head(OpCode::Text, true, &payload, &mut head);
        let mut wire = head[..n].to_vec();
        wire.extend_from_slice(&payload);
        assert_eq!(wire, frame);
        let n = frame_head(OpCode::Text, false, b"Hello", &mut head);
        assert_eq!(head[..n], [0x81, 0x05]);
    }

    #[test]
    fn inflated_text_must_be_utf8_and_fit() {
        let bad = MessageDeflater::shared(1, 0, 15)
            .compress(&Bytes::from_static(&[0xff, 0xfe, 0xfd]))
            .unwrap();
        // Too short to shrink: compress a longer invalid text instead.
        assert!(bad.is_none());
        let invalid = Bytes::from(vec![0xffu8; 300]);
        let compressed = MessageDeflater::shared(1, 0, 15).compress(&invalid).unwrap().unwrap();
        let mut inflater = MessageInflater::shared();
        assert_eq!(
            inflate_message(&mut inflater, MessageKind::Text, &compressed, 1024)
                .unwrap_err()
                .code,
            1007
        );
        assert_eq!(
            inflate_message(&mut inflater, MessageKind::Binary, &compressed, 1024)
                .unwrap()
                .len(),
            300
        );
        assert_eq!(
            inflate_message(&mut inflater, MessageKind::Binary, &compressed, 299)
                .unwrap_err()
                .code,
            1009
        );
        assert_eq!(
            inflate_message(&mut inflater, MessageKind::Binary, &[0x06], 1024).unwrap_err().code,
            1007
        );
    }
}
