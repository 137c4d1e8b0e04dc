//! Turns the WebSocket frames a client sends into messages and control events,
//! enforcing what fastwebsockets 0.10 leaves to us: client frames must be masked,
//! the *total* size of a fragmented message is capped, fragmented text is valid UTF-8
//! (checked as it arrives, so a bad sequence fails fast), control frames carry at most
//! 125 bytes and close frames carry a valid code and a UTF-8 reason (RFC 6455 §5, §7.4).
//! Sans-IO: frames in, events out.

use bytes::{Bytes, BytesMut};
use fastwebsockets::OpCode;
use ferry_core::{CloseCode, MessageKind};

use crate::ws::deflate::frame::inflate_message;
use crate::ws::deflate::MessageInflater;

/// One frame as read off the wire, payload already unmasked.
#[derive(Debug)]
pub struct RawFrame {
    /// FIN bit.
    pub fin: bool,
    /// Opcode.
    pub opcode: OpCode,
    /// Whether the client masked it (RFC 6455 §5.1: it must).
    pub masked: bool,
    /// Whether RSV1 marks it as the first frame of a compressed message
    /// (permessage-deflate).
    pub compressed: bool,
    /// The unmasked payload.
    pub payload: Bytes,
}

/// What a frame amounts to, once checked.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete data message.
    Message(MessageKind, Bytes),
    /// A ping to answer with a pong carrying the same payload.
    Ping(Bytes),
    /// A pong (an answer to our ping, or unsolicited): proof of life only.
    Pong,
    /// The peer's close frame: its code, if it gave one.
    Close(Option<u16>),
    /// A fragment that does not finish its message yet.
    Partial,
}

/// A breach of the protocol: close the connection with this code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The close code to send (1002, 1007 or 1009).
    pub code: CloseCode,
    /// Why, for the close frame and the log.
    pub reason: &'static str,
}

impl Violation {
    /// A protocol error (1002) for `reason`.
    pub(crate) const fn protocol(reason: &'static str) -> Self {
        Self {
            code: CloseCode::PROTOCOL_ERROR,
            reason,
        }
    }
}

/// Reassembles one connection's fragmented messages.
#[derive(Debug)]
pub struct Assembler {
    max_message_size: usize,
    partial: Option<Partial>,
    /// With permessage-deflate: the connection's inflater, and the inflated-size cap of
    /// the next message (smaller for the first, which comes before authentication).
    inflate: Option<Box<Inflating>>,
}

/// An assembler's permessage-deflate state.
#[derive(Debug)]
struct Inflating {
    inflater: MessageInflater,
    /// The cap of the next message's inflated size.
    limit: usize,
}

#[derive(Debug)]
struct Partial {
    kind: MessageKind,
    /// Whether the message is compressed (inflated once whole).
    compressed: bool,
    data: BytesMut,
    /// Bytes of `data` already known to be valid UTF-8 (text only).
    utf8_checked: usize,
}

impl Assembler {
    /// An assembler refusing messages over `max_message_size` bytes.
    pub fn new(max_message_size: usize) -> Self {
        Self {
            max_message_size,
            partial: None,
            inflate: None,
        }
    }

    /// The same, inflating compressed messages (permessage-deflate) with `inflater`: the
    /// first to at most `first_limit` bytes, later ones to `max_message_size`.
    pub fn with_inflater(mut self, inflater: MessageInflater, first_limit: usize) -> Self {
        self.inflate = Some(Box::new(Inflating {
            inflater,
            limit: first_limit.min(self.max_message_size),
        }));
        self
    }

    /// A whole compressed message: inflated, under the current cap.
    fn inflated(&mut self, kind: MessageKind, compressed: &[u8]) -> Result<Event, Violation> {
        let Some(inflate) = self.inflate.as_mut() else {
            return Err(Violation::protocol("compressed message without a negotiated extension"));
        };
        let message = inflate_message(&mut inflate.inflater, kind, compressed, inflate.limit)?;
        inflate.limit = self.max_message_size;
        Ok(Event::Message(kind, message))
    }

    /// Check one frame and say what it amounts to.
    pub fn push(&mut self, frame: RawFrame) -> Result<Event, Violation> {
        if !frame.masked {
            return Err(Violation::protocol("client frames must be masked"));
        }
        match frame.opcode {
            OpCode::Close | OpCode::Ping | OpCode::Pong => self.control(frame),
            OpCode::Text | OpCode::Binary => self.start(frame),
            OpCode::Continuation => self.continuation(frame),
        }
    }

    fn control(&mut self, frame: RawFrame) -> Result<Event, Violation> {
        if !frame.fin {
            return Err(Violation::protocol("control frames must not be fragmented"));
        }
        if frame.payload.len() > 125 {
            return Err(Violation::protocol("control frame payload over 125 bytes"));
        }
        match frame.opcode {
            OpCode::Ping => Ok(Event::Ping(frame.payload)),
            OpCode::Pong => Ok(Event::Pong),
            _ => close_frame(&frame.payload),
        }
    }

    fn start(&mut self, frame: RawFrame) -> Result<Event, Violation> {
        if self.partial.is_some() {
            return Err(Violation::protocol("new data frame before the fragmented message ended"));
        }
        let kind = if frame.opcode == OpCode::Text {
            MessageKind::Text
        } else {
            MessageKind::Binary
        };
        self.check_size(frame.payload.len())?;
        if frame.compressed && frame.fin {
            return self.inflated(kind, &frame.payload);
        }
        if frame.fin {
            if kind == MessageKind::Text && simdutf8::basic::from_utf8(&frame.payload).is_err() {
                return Err(invalid_utf8());
            }
            return Ok(Event::Message(kind, frame.payload));
        }
        let mut partial = Partial {
            kind,
            compressed: frame.compressed,
            data: BytesMut::from(&frame.payload[..]),
            utf8_checked: 0,
        };
        partial.check_utf8(false)?;
        self.partial = Some(partial);
        Ok(Event::Partial)
    }

    fn continuation(&mut self, frame: RawFrame) -> Result<Event, Violation> {
        let Some(partial) = self.partial.as_mut() else {
            return Err(Violation::protocol("continuation frame without a message to continue"));
        };
        let total = partial.data.len() + frame.payload.len();
        if total > self.max_message_size {
            return Err(too_big());
        }
        partial.data.extend_from_slice(&frame.payload);
        partial.check_utf8(frame.fin)?;
        if !frame.fin {
            return Ok(Event::Partial);
        }
        let Some(done) = self.partial.take() else {
            return Ok(Event::Partial);
        };
        if done.compressed {
            return self.inflated(done.kind, &done.data);
        }
        Ok(Event::Message(done.kind, done.data.freeze()))
    }

    fn check_size(&self, len: usize) -> Result<(), Violation> {
        if len > self.max_message_size {
            Err(too_big())
        } else {
            Ok(())
        }
    }
}

impl Partial {
    /// Validate the text received so far; an incomplete sequence at the end is fine
    /// unless this is the final fragment.
    fn check_utf8(&mut self, fin: bool) -> Result<(), Violation> {
        // Compressed text is checked once inflated.
        if self.kind != MessageKind::Text || self.compressed {
            return Ok(());
        }
        match std::str::from_utf8(&self.data[self.utf8_checked..]) {
            Ok(_) => {
                self.utf8_checked = self.data.len();
                Ok(())
            }
            Err(e) if e.error_len().is_none() && !fin => {
                self.utf8_checked += e.valid_up_to();
                Ok(())
            }
            Err(_) => Err(invalid_utf8()),
        }
    }
}

fn too_big() -> Violation {
    Violation {
        code: CloseCode::MESSAGE_TOO_BIG,
        reason: "message too big",
    }
}

fn invalid_utf8() -> Violation {
    Violation {
        code: CloseCode::INVALID_PAYLOAD,
        reason: "invalid UTF-8 in a text message",
    }
}

/// Validate a close frame's payload (RFC 6455 §5.5.1, §7.4).
fn close_frame(payload: &[u8]) -> Result<Event, Violation> {
    match payload {
        [] => Ok(Event::Close(None)),
        [_] => Err(Violation::protocol("close frame with a one-byte payload")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(Violation::protocol("invalid close code"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(invalid_utf8());
            }
            Ok(Event::Close(Some(code)))
        }
    }
}

/// Close codes a peer may send (RFC 6455 §7.4.1 and the IANA registry).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(fin: bool, opcode: OpCode, payload: &[u8]) -> RawFrame {
        RawFrame {
            fin,
            opcode,
            masked: true,
            compressed: false,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn single_frame_messages_pass_through() {
        let mut a = Assembler::new(16);
        // RFC 6455 §5.7: a single-frame masked text message "Hello".
        assert_eq!(
            a.push(frame(true, OpCode::Text, b"Hello")),
            Ok(Event::Message(MessageKind::Text, Bytes::from_static(b"Hello")))
        );
        assert_eq!(
            a.push(frame(true, OpCode::Binary, &[0, 255])),
            Ok(Event::Message(MessageKind::Binary, Bytes::from_static(&[0, 255])))
        );
    }

    #[test]
    fn fragments_are_joined_around_control_frames() {
        // RFC 6455 §5.7: "Hel" + "lo" with a ping between them.
        let mut a = Assembler::new(16);
        assert_eq!(a.push(frame(false, OpCode::Text, b"Hel")), Ok(Event::Partial));
        assert_eq!(a.push(frame(true, OpCode::Ping, b"p")), Ok(Event::Ping(Bytes::from_static(b"p"))));
        assert_eq!(
            a.push(frame(true, OpCode::Continuation, b"lo")),
            Ok(Event::Message(MessageKind::Text, Bytes::from_static(b"Hello")))
        );
    }

    #[test]
    fn total_size_is_capped_across_fragments() {
        let mut a = Assembler::new(4);
        assert_eq!(a.push(frame(false, OpCode::Binary, b"abc")), Ok(Event::Partial));
        assert_eq!(a.push(frame(false, OpCode::Continuation, b"de")).unwrap_err().code, 1009);
        let mut a = Assembler::new(4);
        assert_eq!(a.push(frame(true, OpCode::Binary, b"abcde")).unwrap_err().code, 1009);
        assert!(a.push(frame(true, OpCode::Binary, b"abcd")).is_ok());
    }

    #[test]
    fn unmasked_frames_are_a_protocol_error() {
        let mut a = Assembler::new(16);
        let f = RawFrame {
            fin: true,
            opcode: OpCode::Text,
            masked: false,
            compressed: false,
            payload: Bytes::new(),
        };
        assert_eq!(a.push(f).unwrap_err().code, 1002);
    }

    #[test]
    fn fragmentation_order_is_enforced() {
        let mut a = Assembler::new(16);
        assert_eq!(a.push(frame(true, OpCode::Continuation, b"x")).unwrap_err().code, 1002);
        let mut a = Assembler::new(16);
        a.push(frame(false, OpCode::Text, b"x")).unwrap();
        assert_eq!(a.push(frame(true, OpCode::Text, b"y")).unwrap_err().code, 1002);
    }

    #[test]
    fn utf8_split_across_fragments_is_fine_and_bad_utf8_fails_fast() {
        let euro = "€".as_bytes(); // e2 82 ac
        let mut a = Assembler::new(16);
        a.push(frame(false, OpCode::Text, &euro[..1])).unwrap();
        a.push(frame(false, OpCode::Continuation, &euro[1..2])).unwrap();
        assert_eq!(
            a.push(frame(true, OpCode::Continuation, &euro[2..])),
            Ok(Event::Message(MessageKind::Text, Bytes::from_static(euro)))
        );
        let mut a = Assembler::new(16);
        assert_eq!(a.push(frame(false, OpCode::Text, &[0xce, 0xba, 0xff])).unwrap_err().code, 1007);
        let mut a = Assembler::new(16);
        a.push(frame(false, OpCode::Text, &euro[..2])).unwrap();
        assert_eq!(a.push(frame(true, OpCode::Continuation, b"")).unwrap_err().code, 1007);
        assert_eq!(Assembler::new(16).push(frame(true, OpCode::Text, &[0xff])).unwrap_err().code, 1007);
    }

    #[test]
    fn close_frames_are_validated() {
        let mut a = Assembler::new(16);
        assert_eq!(a.push(frame(true, OpCode::Close, b"")), Ok(Event::Close(None)));
        assert_eq!(
            a.push(frame(true, OpCode::Close, &[0x03, 0xe8, b'o', b'k'])),
            Ok(Event::Close(Some(1000)))
        );
        assert_eq!(a.push(frame(true, OpCode::Close, &[0x03])).unwrap_err().code, 1002);
        for bad in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            assert_eq!(
                a.push(frame(true, OpCode::Close, &bad.to_be_bytes())).unwrap_err().code,
                1002,
                "{bad}"
            );
        }
        assert_eq!(a.push(frame(true, OpCode::Close, &[0x03, 0xe8, 0xff])).unwrap_err().code, 1007);
        assert_eq!(a.push(frame(true, OpCode::Close, &[b'x'; 126])).unwrap_err().code, 1002);
        assert_eq!(a.push(frame(true, OpCode::Pong, &[b'x'; 126])).unwrap_err().code, 1002);
    }

    // --- permessage-deflate (RFC 7692) ---

    /// A client frame as the frame reader hands it over: masked, with RSV1 as given.
    fn compressed(fin: bool, opcode: OpCode, payload: &[u8], rsv1: bool) -> RawFrame {
        RawFrame {
            compressed: rsv1,
            ..frame(fin, opcode, payload)
        }
    }

    fn inflating(max: usize, first: usize) -> Assembler {
        Assembler::new(max).with_inflater(MessageInflater::shared(), first)
    }

    #[test]
    fn a_compressed_message_is_inflated_whole_in_one_frame_or_several() {
        // RFC 7692 §7.2.3.1: "Hello" compressed without context takeover.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let mut a = inflating(1024, 1024);
        assert_eq!(
            a.push(compressed(true, OpCode::Text, &hello, true)).unwrap(),
            Event::Message(MessageKind::Text, Bytes::from_static(b"Hello"))
        );
        // §7.2.3.2: the same split over two frames, RSV1 on the first only.
        assert_eq!(a.push(compressed(false, OpCode::Text, &hello[..3], true)).unwrap(), Event::Partial);
        assert_eq!(
            a.push(compressed(true, OpCode::Continuation, &hello[3..], false)).unwrap(),
            Event::Message(MessageKind::Text, Bytes::from_static(b"Hello"))
        );
        // An uncompressed message between compressed ones passes as it is.
        assert_eq!(
            a.push(frame(true, OpCode::Binary, b"raw")).unwrap(),
            Event::Message(MessageKind::Binary, Bytes::from_static(b"raw"))
        );
    }

    #[test]
    fn a_small_frame_that_inflates_past_the_limit_is_refused_with_1009() {
        // 1 MiB of zeros deflates to about 10 KiB at level 1; the first message may inflate to
        // 64 KiB, later ones to the message limit (16 MiB here).
        let bomb = crate::ws::deflate::codec::deflate_shared(&Bytes::from(vec![0u8; 1 << 20]), 1, 15);
        assert!(bomb.len() < 16 * 1024, "{}", bomb.len());
        let mut a = inflating(16 << 20, 64 << 10);
        let refused = a.push(compressed(true, OpCode::Binary, &bomb, true)).unwrap_err();
        assert_eq!(refused.code, 1009);
        // Past the first message the cap is the message limit: the same message fits.
        let mut a = inflating(16 << 20, 64 << 10);
        let small = crate::ws::deflate::codec::deflate_shared(&Bytes::from_static(b"CONNECT"), 1, 15);
        assert!(a.push(compressed(true, OpCode::Binary, &small, true)).is_ok());
        assert!(matches!(
            a.push(compressed(true, OpCode::Binary, &bomb, true)).unwrap(),
            Event::Message(MessageKind::Binary, m) if m.len() == 1 << 20
        ));
    }

    #[test]
    fn bad_deflate_data_and_bad_inflated_text_are_1007() {
        let mut a = inflating(1024, 1024);
        assert_eq!(
            a.push(compressed(true, OpCode::Binary, &[0xff, 0xff, 0xff], true))
                .unwrap_err()
                .code,
            1007
        );
        let not_utf8 = crate::ws::deflate::codec::deflate_shared(&Bytes::from_static(&[0xce, 0xba, 0xff]), 1, 15);
        let mut a = inflating(1024, 1024);
        assert_eq!(a.push(compressed(true, OpCode::Text, &not_utf8, true)).unwrap_err().code, 1007);
    }
}
