//! The WebSocket half of a connection's output buffer: unmasked, unfragmented server
//! frames (RFC 6455 §5.2) and close frames, written into the [`OutBuf`] that holds the
//! connection's pending bytes.

use bytes::{BufMut, Bytes, BytesMut};
use fastwebsockets::{Frame, OpCode, Payload};
use ferry_core::CloseCode;

use crate::outbuf::OutBuf;
use crate::ws::deflate::frame::frame_head;
use crate::ws::deflate::{DeflateError, MessageDeflater};

impl OutBuf {
    /// Queue one unmasked, unfragmented server frame (RFC 6455 §5.2).
    pub(crate) fn push_frame(&mut self, opcode: OpCode, payload: &Bytes) {
        let mut head = [0u8; 16];
        let n = Frame::new(true, opcode, None, Payload::Borrowed(payload)).fmt_head(&mut head);
        self.push_head(&head[..n]);
        self.push_bytes(payload);
    }

    /// Queue one data message: compressed (RSV1, RFC 7692 §6) when the connection
    /// negotiated permessage-deflate and the message gains from it, else as it is. An
    /// error comes only from a connection's own compressor (close it with 1011).
    pub(crate) fn push_message(
        &mut self,
        opcode: OpCode,
        payload: &Bytes,
        deflater: Option<&mut MessageDeflater>,
    ) -> Result<(), DeflateError> {
        if let Some(compressed) = deflater.map(|d| d.compress(payload)).transpose()?.flatten() {
            let mut head = [0u8; 16];
            let n = frame_head(opcode, true, &compressed, &mut head);
            self.push_head(&head[..n]);
            self.push_bytes(&compressed);
        } else {
            self.push_frame(opcode, payload);
        }
        Ok(())
    }

    /// Queue a close frame with `code` and `reason` (cut to fit the 125-byte limit on a
    /// character boundary).
    pub(crate) fn push_close(&mut self, code: CloseCode, reason: &str) {
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut payload = BytesMut::with_capacity(2 + end);
        payload.put_u16(code.as_u16());
        payload.put_slice(&reason.as_bytes()[..end]);
        self.push_frame(OpCode::Close, &payload.freeze());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_encoded_as_rfc6455_shows() {
        // RFC 6455 §5.7: a single-frame unmasked text message "Hello".
        let mut b = OutBuf::new();
        b.push_frame(OpCode::Text, &Bytes::from_static(b"Hello"));
        assert_eq!(b.drained(), [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        // §5.7: 256 bytes binary in one unmasked frame uses the 16-bit length.
        let mut b = OutBuf::new();
        b.push_frame(OpCode::Binary, &Bytes::from(vec![7u8; 256]));
        let out = b.drained();
        assert_eq!(&out[..4], &[0x82, 0x7e, 0x01, 0x00]);
        assert_eq!(out.len(), 4 + 256);
        // §5.7: 64 KiB binary uses the 64-bit length.
        let mut b = OutBuf::new();
        b.push_frame(OpCode::Binary, &Bytes::from(vec![7u8; 65536]));
        assert_eq!(&b.drained()[..10], &[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn close_reason_is_cut_to_fit_on_a_char_boundary() {
        let mut b = OutBuf::new();
        b.push_close(CloseCode::GOING_AWAY, &"é".repeat(100));
        let out = b.drained();
        assert_eq!(&out[..4], &[0x88, 124, 0x03, 0xe9]);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }
}
