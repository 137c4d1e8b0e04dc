//! Collects one call's outgoing packets: small ones are encoded back to back into one
//! buffer (one WebSocket message, one write), large shared frames are passed by
//! reference so their payload is never copied.

use bytes::{Bytes, BytesMut};
use ferry_core::{MessageKind, Output};

use crate::codec::{self, Packet, Version};

/// Frames above this size are handed over as they are instead of being copied.
const COPY_LIMIT: usize = 1024;

/// The packets one call of the session produces.
#[derive(Default)]
pub struct Writer {
    pending: BytesMut,
}

impl Writer {
    /// Encode `packet` for `version` at the end of the batch.
    pub fn packet(&mut self, packet: &Packet, version: Version) {
        // Encoding only fails for packets the broker must never build (e.g. a
        // property not allowed on the packet); dropping such a packet is the only
        // safe answer and is a bug to fix, not a peer's doing.
        if let Err(e) = codec::encode(packet, version, &mut self.pending) {
            tracing::error!(error = %e, "internal error: cannot encode an outgoing MQTT packet");
        }
    }

    /// Append an already encoded frame, shared with other subscribers.
    pub fn frame(&mut self, frame: Bytes, out: &mut Output) {
        if frame.len() <= COPY_LIMIT {
            self.pending.extend_from_slice(&frame);
        } else {
            self.flush(out);
            out.send(MessageKind::Binary, frame);
        }
    }

    /// Hand what is pending to the transport.
    pub fn flush(&mut self, out: &mut Output) {
        if !self.pending.is_empty() {
            out.send(MessageKind::Binary, self.pending.split().freeze());
        }
    }
}
