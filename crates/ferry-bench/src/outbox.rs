//! What a connection has to send besides its publications: acknowledgements, PUBRELs,
//! WebSocket pongs, DISCONNECT. Any task appends framed bytes; the connection's writer
//! takes everything at once and sends it in one write, so a subscriber that reads a
//! hundred QoS 1 messages in one go answers with one write of a hundred PUBACKs.

use bytes::BytesMut;
use fastwebsockets::{Frame, OpCode, Payload};
use parking_lot::Mutex;
use tokio::sync::Notify;

/// How one protocol packet is put on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// TCP or TLS: the bytes as they are.
    Stream,
    /// One masked binary WebSocket message per packet (MQTT).
    WsBinary,
    /// One masked text WebSocket message per frame (STOMP, as stompjs sends).
    WsText,
}

impl Framing {
    /// Appends `packet` to `out`, framed. `packet` is masked in place for WebSocket (the
    /// mask and header come from fastwebsockets).
    pub(crate) fn push(self, out: &mut BytesMut, packet: &mut [u8]) {
        match self {
            Framing::Stream => out.extend_from_slice(packet),
            Framing::WsBinary => push_ws(out, Frame::new(true, OpCode::Binary, None, Payload::BorrowedMut(packet))),
            Framing::WsText => push_ws(out, Frame::new(true, OpCode::Text, None, Payload::BorrowedMut(packet))),
        }
    }
}

/// Appends a client WebSocket frame: masked with a fresh key, header, payload.
pub(crate) fn push_ws(out: &mut BytesMut, mut frame: Frame<'_>) {
    frame.mask();
    let mut head = [0u8; 16];
    let n = frame.fmt_head(&mut head);
    out.reserve(n + frame.payload.len());
    out.extend_from_slice(&head[..n]);
    out.extend_from_slice(&frame.payload);
}

/// A connection's shared outgoing buffer.
#[derive(Debug)]
pub(crate) struct Outbox {
    buf: Mutex<BytesMut>,
    wake: Notify,
    framing: Framing,
}

impl Outbox {
    /// An empty outbox for a connection framed with `framing`.
    pub(crate) fn new(framing: Framing) -> Outbox {
        Outbox {
            buf: Mutex::new(BytesMut::new()),
            wake: Notify::new(),
            framing,
        }
    }

    /// How packets are framed on this connection.
    pub(crate) fn framing(&self) -> Framing {
        self.framing
    }

    /// Appends bytes already framed and wakes the writer.
    pub(crate) fn push_framed(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.buf.lock().extend_from_slice(bytes);
        self.wake.notify_one();
    }

    /// Appends a WebSocket control frame (pong, close reply) and wakes the writer.
    pub(crate) fn push_control(&self, frame: Frame<'_>) {
        let mut framed = BytesMut::new();
        push_ws(&mut framed, frame);
        self.push_framed(&framed);
    }

    /// Moves everything queued to the end of `out`; false when there was nothing.
    pub(crate) fn take_into(&self, out: &mut BytesMut) -> bool {
        let mut buf = self.buf.lock();
        if buf.is_empty() {
            return false;
        }
        if out.is_empty() {
            std::mem::swap(out, &mut *buf);
        } else {
            out.extend_from_slice(&buf);
            buf.clear();
        }
        true
    }

    /// Waits until something is pushed (returns at once if something was pushed since
    /// the last wait).
    pub(crate) async fn notified(&self) {
        self.wake.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_framing_is_transparent() {
        let mut out = BytesMut::new();
        Framing::Stream.push(&mut out, &mut b"abc".to_vec());
        assert_eq!(&out[..], b"abc");
    }

    #[test]
    fn websocket_frames_are_masked_and_unmask_back() {
        let mut out = BytesMut::new();
        let mut packet = b"\xc0\x00".to_vec();
        Framing::WsBinary.push(&mut out, &mut packet);
        assert_eq!(out.len(), 2 + 4 + 2);
        assert_eq!(out[0], 0x82, "FIN + binary");
        assert_eq!(out[1], 0x80 | 2, "masked, 2 bytes");
        let key = [out[2], out[3], out[4], out[5]];
        let unmasked: Vec<u8> = out[6..].iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
        assert_eq!(unmasked, b"\xc0\x00");

        let mut out = BytesMut::new();
        Framing::WsText.push(&mut out, &mut [b'x'; 200]);
        assert_eq!(out[0], 0x81, "FIN + text");
        assert_eq!(out[1], 0x80 | 126, "16-bit length follows");
        assert_eq!(u16::from_be_bytes([out[2], out[3]]), 200);
        assert_eq!(out.len(), 4 + 4 + 200);
    }

    #[test]
    fn take_moves_everything() {
        let outbox = Outbox::new(Framing::Stream);
        let mut out = BytesMut::new();
        assert!(!outbox.take_into(&mut out));
        outbox.push_framed(b"ab");
        outbox.push_framed(b"cd");
        assert!(outbox.take_into(&mut out));
        assert_eq!(&out[..], b"abcd");
        outbox.push_framed(b"ef");
        assert!(outbox.take_into(&mut out));
        assert_eq!(&out[..], b"abcdef");
        assert!(!outbox.take_into(&mut out));
    }
}
