//! Collects one call's outgoing frames.
//!
//! Over WebSocket each frame is one message: text when it is UTF-8 (headers always are;
//! the body may not be), binary otherwise, since a text message must be valid UTF-8
//! and stompjs reads both kinds byte for byte. Heart-beats are a text message holding
//! one LF. Over a stream, frames are coalesced by the core's rule
//! ([`ferry_core::coalesce`]): small ones are encoded back to back into one buffer (one
//! write) and a large body is handed over by reference, never copied.

use bytes::{Bytes, BytesMut};
use ferry_core::{Carrier, Coalescer, MessageKind, Output};
use tracing::error;

use crate::codec::{self, Encodable, Version, FRAME_END, HEARTBEAT};

/// The frames one call of the session produces.
pub(super) struct Writer {
    carrier: Carrier,
    pending: Coalescer,
    wrote: bool,
}

impl Writer {
    /// A writer for a connection over `carrier`.
    pub(super) fn new(carrier: Carrier) -> Self {
        Self {
            carrier,
            pending: Coalescer::new(),
            wrote: false,
        }
    }

    /// Encode `frame` for `version`. Returns false when the encoder refused it (a
    /// header this version cannot carry; the broker filters peer-supplied ones first,
    /// so this is a bug to fix, and the frame is dropped).
    pub(super) fn frame(&mut self, frame: &impl Encodable, version: Version, out: &mut Output) -> bool {
        self.wrote = true;
        match self.carrier {
            Carrier::WebSocket => {
                let mut buf = BytesMut::new();
                if let Err(e) = codec::encode(frame, version, &mut buf) {
                    error!(error = %e, command = %frame.command(), "internal error: cannot encode an outgoing STOMP frame");
                    return false;
                }
                let kind = if std::str::from_utf8(frame.body()).is_ok() {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                };
                out.send(kind, buf.freeze());
            }
            Carrier::Stream => {
                if Coalescer::copies(frame.body().len()) {
                    if let Err(e) = codec::encode(frame, version, self.pending.pending_mut()) {
                        error!(error = %e, command = %frame.command(), "internal error: cannot encode an outgoing STOMP frame");
                        return false;
                    }
                } else {
                    // Straight into the pending bytes: on error nothing is appended.
                    if let Err(e) = codec::encode_head(frame, version, self.pending.pending_mut()) {
                        error!(error = %e, command = %frame.command(), "internal error: cannot encode an outgoing STOMP frame");
                        return false;
                    }
                    self.flush(out);
                    out.send(MessageKind::Text, frame.body().clone());
                    out.send(MessageKind::Text, Bytes::from_static(FRAME_END));
                }
            }
        }
        true
    }

    /// One heart-beat.
    pub(super) fn heartbeat(&mut self, out: &mut Output) {
        self.wrote = true;
        match self.carrier {
            Carrier::WebSocket => out.send(MessageKind::Text, Bytes::from_static(HEARTBEAT)),
            Carrier::Stream => self.pending.pending_mut().extend_from_slice(HEARTBEAT),
        }
    }

    /// Hand what is pending to the transport.
    pub(super) fn flush(&mut self, out: &mut Output) {
        if let Some(b) = self.pending.take() {
            out.send(MessageKind::Text, b);
        }
    }

    /// Whether anything was written through this writer.
    pub(super) fn wrote(&self) -> bool {
        self.wrote
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Command, Frame};

    fn message(body: &'static [u8]) -> Frame {
        Frame::new(Command::Message)
            .with_header("destination", "/topic/a")
            .with_body(Bytes::from_static(body))
    }

    #[test]
    fn websocket_frames_are_text_unless_the_body_is_not_utf8() {
        let mut w = Writer::new(Carrier::WebSocket);
        let mut out = Output::default();
        w.frame(&message("héllo".as_bytes()), Version::V1_2, &mut out);
        w.frame(&message(b"\xff\x00\xfe"), Version::V1_2, &mut out);
        w.heartbeat(&mut out);
        let kinds: Vec<MessageKind> = out.writes.iter().map(|o| o.kind).collect();
        assert_eq!(kinds, [MessageKind::Text, MessageKind::Binary, MessageKind::Text]);
        assert!(out.writes[1].data.ends_with(b"\n\n\xff\x00\xfe\0"));
        assert_eq!(&out.writes[2].data[..], b"\n");
        assert!(w.wrote());
    }

    #[test]
    fn streams_coalesce_small_frames_and_share_large_bodies() {
        let mut w = Writer::new(Carrier::Stream);
        let mut out = Output::default();
        w.frame(
            &Frame::new(Command::Receipt).with_header("receipt-id", "1"),
            Version::V1_2,
            &mut out,
        );
        w.heartbeat(&mut out);
        let big = Bytes::from(vec![b'x'; 4096]);
        let f = Frame::new(Command::Message).with_body(big.clone());
        w.frame(&f, Version::V1_2, &mut out);
        w.flush(&mut out);
        assert_eq!(out.writes.len(), 3, "receipt + heart-beat + head in one write, then body, then NUL");
        assert!(out.writes[0].data.starts_with(b"RECEIPT\nreceipt-id:1\n\n\0\nMESSAGE\n"));
        assert_eq!(out.writes[1].data.as_ptr(), big.as_ptr(), "the body is not copied");
        assert_eq!(&out.writes[2].data[..], b"\0");
    }
}
