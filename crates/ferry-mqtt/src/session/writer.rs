//! Collects one call's outgoing packets, coalesced by the core's rule
//! ([`ferry_core::coalesce`]): small ones are encoded back to back into one buffer (one
//! WebSocket message, one write), large shared frames are passed by reference so their
//! payload is never copied.

use bytes::Bytes;
use ferry_core::{Coalescer, MessageKind, Output};

use crate::codec::{self, Packet, Version};

/// The packets one call of the session produces.
#[derive(Default)]
pub(super) struct Writer {
    pending: Coalescer,
}

impl Writer {
    /// Encode `packet` for `version` at the end of the batch.
    pub(super) fn packet(&mut self, packet: &Packet, version: Version) {
        // Encoding only fails for packets the broker must never build (e.g. a
        // property not allowed on the packet); dropping such a packet is the only
        // safe answer and is a bug to fix, not a peer's doing.
        if let Err(e) = codec::encode(packet, version, self.pending.pending_mut()) {
            tracing::error!(error = %e, "internal error: cannot encode an outgoing MQTT packet");
        }
    }

    /// Append an already encoded frame, shared with other subscribers.
    pub(super) fn frame(&mut self, frame: Bytes, out: &mut Output) {
        self.pending.push(frame, |b| out.send(MessageKind::Binary, b));
    }

    /// Hand what is pending to the transport.
    pub(super) fn flush(&mut self, out: &mut Output) {
        if let Some(b) = self.pending.take() {
            out.send(MessageKind::Binary, b);
        }
    }
}
