//! Cuts WebSocket frames (RFC 6455 §5.2) out of a connection's read buffer. Sans-IO
//! and cancel-safe by construction: the connection loop reads bytes into a buffer
//! (a plain `read_buf`, safe inside `select!`) and this takes whole frames out of it,
//! leaving a partial frame where it is. It replaces fastwebsockets' reader, which is not
//! cancel-safe (so it needed a task and a channel per connection) and keeps a fixed
//! 8 KiB buffer per connection; fastwebsockets still does the handshake, the opcode
//! table, the SIMD unmasking and the frame headers we write.
//!
//! Checks made here, before a payload is buffered: reserved bits (RSV1 only on the first
//! frame of a data message, and only with permessage-deflate negotiated), reserved opcodes, control frames fragmented or over 125 bytes, a 64-bit
//! length with its top bit set, and a payload over the message size limit.
//! [`crate::ws::assembler`] checks the rest (masking, fragmentation order, UTF-8, close
//! frames).

use bytes::{Buf, BytesMut};
use fastwebsockets::OpCode;
use ferry_core::CloseCode;

use crate::ws::assembler::{RawFrame, Violation};
use crate::ws::deflate::frame::check_reserved_bits;

/// Takes frames out of a read buffer.
#[derive(Debug, Clone)]
pub struct FrameReader {
    max_payload: usize,
    /// Whether permessage-deflate was negotiated (RSV1 allowed on a message's first frame).
    deflate: bool,
}

impl FrameReader {
    /// A reader refusing frames whose payload exceeds `max_payload` bytes (close 1009).
    pub fn new(max_payload: usize) -> Self {
        Self {
            max_payload,
            deflate: false,
        }
    }

    /// The same, on a connection that negotiated permessage-deflate.
    pub fn with_deflate(self) -> Self {
        Self { deflate: true, ..self }
    }

    /// The next whole frame at the start of `buf`, unmasked, or `None` when more bytes
    /// are needed (then `buf` is untouched, with room reserved for the frame announced).
    pub fn next_frame(&self, buf: &mut BytesMut) -> Result<Option<RawFrame>, Violation> {
        let [b0, b1, ..] = buf[..] else { return Ok(None) };
        let fin = b0 & 0x80 != 0;
        let compressed = check_reserved_bits(b0, self.deflate)?;
        let opcode = OpCode::try_from(b0 & 0x0f).map_err(|_| Violation::protocol("reserved opcode"))?;
        let control = matches!(opcode, OpCode::Close | OpCode::Ping | OpCode::Pong);
        let masked = b1 & 0x80 != 0;
        let (head, len) = match b1 & 0x7f {
            126 => match buf.get(2..4) {
                Some(n) => (4, u64::from(u16::from_be_bytes([n[0], n[1]]))),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(n) => (10, u64::from_be_bytes([n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7]])),
                None => return Ok(None),
            },
            n => (2, u64::from(n)),
        };
        if len >> 63 != 0 {
            return Err(Violation::protocol("frame length with the most significant bit set"));
        }
        if control && (!fin || len > 125) {
            return Err(Violation::protocol(if fin {
                "control frame payload over 125 bytes"
            } else {
                "control frames must not be fragmented"
            }));
        }
        let len = match usize::try_from(len) {
            Ok(len) if len <= self.max_payload => len,
            _ => {
                return Err(Violation {
                    code: CloseCode::MESSAGE_TOO_BIG,
                    reason: "message too big",
                })
            }
        };
        let mask_len = if masked { 4 } else { 0 };
        let total = head + mask_len + len;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        buf.advance(head);
        let mask = if masked {
            let key = [buf[0], buf[1], buf[2], buf[3]];
            buf.advance(4);
            Some(key)
        } else {
            None
        };
        let mut payload = buf.split_to(len);
        if let Some(key) = mask {
            fastwebsockets::unmask(&mut payload, key);
        }
        Ok(Some(RawFrame {
            fin,
            opcode,
            masked,
            compressed,
            payload: payload.freeze(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Option<RawFrame>, Violation> {
        FrameReader::new(1 << 20).next_frame(&mut BytesMut::from(bytes))
    }

    #[test]
    fn rfc6455_masked_hello() {
        // RFC 6455 §5.7: a single-frame masked text message containing "Hello".
        let f = read(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58])
            .unwrap()
            .unwrap();
        assert!(f.fin && f.masked);
        assert_eq!(f.opcode, OpCode::Text);
        assert_eq!(&f.payload[..], b"Hello");
    }

    #[test]
    fn rfc6455_fragments_and_unmasked_ping() {
        // §5.7: "Hel" then "lo" unmasked, and an unmasked ping "Hello".
        let mut buf = BytesMut::from(
            &[
                0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f, 0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f,
            ][..],
        );
        let r = FrameReader::new(100);
        let a = r.next_frame(&mut buf).unwrap().unwrap();
        assert_eq!(
            (a.fin, a.opcode, &a.payload[..], a.masked),
            (false, OpCode::Text, &b"Hel"[..], false)
        );
        let b = r.next_frame(&mut buf).unwrap().unwrap();
        assert_eq!((b.fin, b.opcode, &b.payload[..]), (true, OpCode::Continuation, &b"lo"[..]));
        let c = r.next_frame(&mut buf).unwrap().unwrap();
        assert_eq!((c.opcode, &c.payload[..]), (OpCode::Ping, &b"Hello"[..]));
        assert!(buf.is_empty());
    }

    #[test]
    fn extended_lengths_wait_for_the_whole_frame() {
        // §5.7: 256 bytes binary in a single unmasked frame (16-bit length).
        let mut frame = vec![0x82, 0x7e, 0x01, 0x00];
        frame.extend(std::iter::repeat_n(7u8, 256));
        let r = FrameReader::new(1 << 20);
        for cut in [1, 3, 4, 100, 259] {
            let mut partial = BytesMut::from(&frame[..cut]);
            assert!(r.next_frame(&mut partial).unwrap().is_none(), "cut at {cut}");
            assert_eq!(partial.len(), cut, "nothing consumed");
        }
        let f = r.next_frame(&mut BytesMut::from(&frame[..])).unwrap().unwrap();
        assert_eq!(f.payload.len(), 256);
        // §5.7: 64 KiB in a single unmasked frame (64-bit length).
        let mut big = vec![0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0];
        big.extend(std::iter::repeat_n(1u8, 65536));
        assert_eq!(read(&big).unwrap().unwrap().payload.len(), 65536);
    }

    #[test]
    fn breaches_are_refused_before_the_payload_arrives() {
        assert_eq!(read(&[0xc1, 0x80]).unwrap_err().code, 1002, "RSV1");
        assert_eq!(read(&[0x83, 0x80]).unwrap_err().code, 1002, "reserved data opcode");
        assert_eq!(read(&[0x8b, 0x80]).unwrap_err().code, 1002, "reserved control opcode");
        assert_eq!(read(&[0x09, 0x80]).unwrap_err().code, 1002, "fragmented ping");
        assert_eq!(read(&[0x89, 0xfe, 0x00, 0x7e]).unwrap_err().code, 1002, "ping of 126 bytes");
        assert_eq!(
            read(&[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0]).unwrap_err().code,
            1002,
            "64-bit length, top bit set"
        );
        let r = FrameReader::new(10);
        assert_eq!(
            r.next_frame(&mut BytesMut::from(&[0x82, 0x8b][..])).unwrap_err().code,
            1009,
            "11 bytes over a limit of 10"
        );
        assert!(
            r.next_frame(&mut BytesMut::from(&[0x82, 0x8a][..])).unwrap().is_none(),
            "10 bytes is fine"
        );
    }

    #[test]
    fn rsv1_is_allowed_only_on_a_first_frame_once_deflate_is_negotiated() {
        let reader = FrameReader::new(1024).with_deflate();
        let read = |bytes: &[u8]| reader.next_frame(&mut BytesMut::from(bytes));
        // A compressed text frame (RSV1, opcode 1, masked, empty payload).
        assert!(read(&[0xc1, 0x80, 0, 0, 0, 0]).unwrap().is_some_and(|f| f.compressed));
        assert_eq!(read(&[0xc0, 0x80]).unwrap_err().code, 1002, "RSV1 on a continuation frame");
        assert_eq!(read(&[0xc9, 0x80]).unwrap_err().code, 1002, "RSV1 on a ping");
        assert_eq!(read(&[0xa1, 0x80]).unwrap_err().code, 1002, "RSV2");
    }
}
