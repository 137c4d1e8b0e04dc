//! ACK and NACK. The message is named by `id` in STOMP 1.2 (the MESSAGE's `ack`
//! header) and by `message-id` (with `subscription`, required in 1.1) before. On a
//! `client` subscription an ACK or NACK covers the message and every earlier
//! unacknowledged one of that subscription; on `client-individual` only the message.
//!
//! The message id settles the message, whatever the `subscription` header says (message
//! ids are unique per connection): RabbitMQ and ActiveMQ do the same, and a 1.1 client
//! that names another subscription (stomp.py's `ack(id, subscription)` makes that easy)
//! still gets its message settled. An ACK for a message that is no longer pending
//! (acknowledged already, or sent on an `auto` subscription) changes nothing; one for an
//! id this connection never sent is a protocol error. A NACKed topic message is sent
//! again (`redelivered:true`) unless it was published at QoS 0; a NACKed queue message
//! goes back to the front of its queue for the next consumer in turn.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use ferry_core::QoS;
use tracing::debug;

use super::subscribe::{AckMode, PendingMessage, Source};
use super::transaction::TxOp;
use super::{Connected, Ctx};
use crate::codec::{Command, Frame, Version};
use crate::error::ProtocolError;

impl Connected {
    /// The sequence number inside a message id this connection sent (`NAME-SEQ`).
    fn parse_message_id(&self, id: &str) -> Result<u64, ProtocolError> {
        id.strip_prefix(self.name.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|seq| seq.parse::<u64>().ok())
            .filter(|&seq| seq > 0 && seq < self.next_seq)
            .ok_or_else(|| ProtocolError::UnknownMessage { id: id.to_owned() })
    }

    /// The pending messages an ACK or NACK of `seq` covers.
    fn covered(&self, seq: u64) -> Vec<u64> {
        let Some(pending) = self.unacked.get(&seq) else {
            return Vec::new();
        };
        match self.subs.get(&pending.sub).map(|s| s.ack) {
            Some(AckMode::Client) => self
                .unacked
                .range(..=seq)
                .filter(|(_, p)| p.sub == pending.sub)
                .map(|(&s, _)| s)
                .collect(),
            _ => vec![seq],
        }
    }

    pub(super) fn on_ack(&mut self, ctx: &Ctx<'_>, frame: &Frame) -> Result<(), ProtocolError> {
        let nack = frame.command == Command::Nack;
        let id = if self.version >= Version::V1_2 {
            frame.header("id").or_else(|| frame.header("message-id"))
        } else {
            frame.header("message-id")
        };
        let id = id.ok_or(ProtocolError::MissingHeader {
            command: frame.command,
            header: if self.version >= Version::V1_2 { "id" } else { "message-id" },
        })?;
        let subscription = frame.header("subscription");
        if self.version == Version::V1_1 && subscription.is_none() {
            return Err(ProtocolError::MissingHeader {
                command: frame.command,
                header: "subscription",
            });
        }
        let seq = self.parse_message_id(id)?;
        if let Some(sub) = subscription.filter(|sub| self.unacked.get(&seq).is_some_and(|p| p.sub != *sub)) {
            debug!(conn = ctx.info.id, session = %self.name, id, subscription = sub, "ACK/NACK names another subscription: settled by its message id");
        }
        let seqs = self.covered(seq);
        if seqs.is_empty() {
            debug!(conn = ctx.info.id, session = %self.name, id, "ACK/NACK of a message not pending: nothing to do");
        }
        match frame.header("transaction") {
            Some(tx) => self
                .transactions
                .add(tx, TxOp::Ack { seqs, nack }, ctx.broker.config.max_transaction_bytes),
            None => {
                self.apply_ack(ctx, &seqs, nack);
                Ok(())
            }
        }
    }

    /// Acknowledge (or refuse, with `nack`) the pending messages `seqs`; those no
    /// longer pending are skipped.
    pub(super) fn apply_ack(&mut self, ctx: &Ctx<'_>, seqs: &[u64], nack: bool) {
        let mut queue_entries: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for seq in seqs {
            let Some(pending) = self.unacked.remove(seq) else { continue };
            let Some(sub) = self.subs.get_mut(&pending.sub) else { continue };
            sub.unacked = sub.unacked.saturating_sub(1);
            match (&mut sub.source, pending.what) {
                // A NACKed topic message comes again, unless it was published at QoS 0.
                (Source::Topic { redeliver, .. }, PendingMessage::Topic(d)) if nack && d.qos != QoS::AtMostOnce => {
                    ctx.broker.stats.redelivered.fetch_add(1, Ordering::Relaxed);
                    redeliver.push_back(d);
                }
                (Source::Queue { .. }, PendingMessage::Queue(entry)) => {
                    queue_entries.entry(pending.sub).or_default().push(entry);
                }
                _ => {}
            }
        }
        for (sub, entries) in queue_entries {
            if let Some(Source::Queue { queue, consumer, .. }) = self.subs.get(&sub).map(|s| &s.source) {
                if nack {
                    queue.nack(*consumer, &entries);
                } else {
                    queue.ack(*consumer, &entries);
                }
            }
        }
    }
}
