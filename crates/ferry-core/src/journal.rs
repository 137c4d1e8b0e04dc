//! The persistence seam: what the core writes down so that it survives a restart, and
//! how an adapter learns that it is on disk before it acknowledges.
//!
//! The core calls a [`Journal`] synchronously, inside `Router::publish`: an append only
//! queues a record and returns its log position ([`Lsn`]) at once; a writer elsewhere
//! (ferry-store's writer thread) makes it durable. An adapter that owes its peer an
//! acknowledgement for a publish that changed durable state holds the acknowledgement's
//! bytes until [`Journal::durable_lsn`] reaches that position, asking the journal to
//! ring its [`Wakeup`] then ([`Journal::when_durable`]). Nothing blocks: other
//! connections, and deliveries to online subscribers, go on meanwhile.
//!
//! What is journaled today: retained messages set and cleared by clients (not the
//! broker's own `$SYS` messages, which it publishes again). Sessions and queues follow
//! (ARCHITECTURE.md, "Storage").

use std::sync::Arc;

use crate::adapter::Wakeup;
use crate::message::Message;
use crate::topic::TopicName;

/// A position in the journal: every record gets the next one, starting at 1. 0 is
/// "nothing" (always durable).
pub type Lsn = u64;

/// Why the journal cannot take a record: it is poisoned (a write or sync failed, or the
/// disk or `storage.max_disk_bytes` is full) and never will again until the broker is
/// restarted. A publish that needs the disk is refused instead of acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage unavailable: {reason}")]
pub struct StorageUnavailable {
    /// What went wrong, for logs and `/healthz`.
    pub reason: Arc<str>,
    /// True when the cause is a full disk or the configured size limit: MQTT 5 answers
    /// 0x97 (quota exceeded) rather than 0x80.
    pub full: bool,
}

/// Where the core writes what must survive a restart. Implemented by ferry-store;
/// without one (`storage.enabled = false`) the broker keeps everything in memory.
pub trait Journal: Send + Sync {
    /// Records that `message` (with a non-empty payload) is now the retained message of
    /// its topic. Returns the record's position.
    fn retained_set(&self, message: &Message) -> Result<Lsn, StorageUnavailable>;

    /// Records that `topic` has no retained message any more.
    fn retained_clear(&self, topic: &TopicName) -> Result<Lsn, StorageUnavailable>;

    /// Every record at or before this position is durable.
    fn durable_lsn(&self) -> Lsn;

    /// Rings `wakeup` once `lsn` is durable, or once the journal is poisoned (check
    /// [`Journal::health`] then). Rings at once if it already is.
    fn when_durable(&self, lsn: Lsn, wakeup: Wakeup);

    /// Whether the journal still takes records.
    fn health(&self) -> Result<(), StorageUnavailable>;
}

/// What happened to one published message in the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Published {
    /// Deliveries queued to subscribers.
    pub deliveries: usize,
    /// The journal position the publisher's acknowledgement must wait for, when the
    /// message changed durable state (a retained message set or cleared).
    pub durable_at: Option<Lsn>,
}

/// Acknowledgements held until the journal says the records they depend on are durable,
/// in the order they were made (MQTT sends PUBACKs and PUBRECs in the order of the
/// PUBLISHes, §4.6): once one is held, every later one waits behind it, even one that
/// depends on nothing.
#[derive(Debug)]
pub struct HeldAcks<A> {
    queue: std::collections::VecDeque<(Lsn, A)>,
}

impl<A> Default for HeldAcks<A> {
    fn default() -> Self {
        Self {
            queue: std::collections::VecDeque::new(),
        }
    }
}

impl<A> HeldAcks<A> {
    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// How many acknowledgements are held.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Holds `ack` until `lsn` (0: nothing of its own) is durable and every ack before
    /// it has gone.
    pub fn hold(&mut self, lsn: Lsn, ack: A) {
        self.queue.push_back((lsn, ack));
    }

    /// Takes the acks that may go now that `durable` is durable, oldest first.
    pub fn release(&mut self, durable: Lsn, mut f: impl FnMut(A)) {
        while self.queue.front().is_some_and(|(lsn, _)| *lsn <= durable) {
            if let Some((_, ack)) = self.queue.pop_front() {
                f(ack);
            }
        }
    }

    /// Takes every held ack with the position it waited for, for a journal that
    /// failed: those still waiting for a position past `durable` are answered with a
    /// refusal.
    pub fn drain(&mut self) -> impl Iterator<Item = (Lsn, A)> + '_ {
        self.queue.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_acks_leave_in_order_once_durable() {
        let mut held = HeldAcks::default();
        held.hold(5, "a");
        held.hold(0, "b");
        held.hold(7, "c");
        let mut out = Vec::new();
        held.release(4, |a| out.push(a));
        assert!(out.is_empty(), "nothing before 5 is durable");
        held.release(5, |a| out.push(a));
        assert_eq!(out, ["a", "b"], "b depends on nothing but waits behind a");
        held.release(8, |a| out.push(a));
        assert_eq!(out, ["a", "b", "c"]);
        assert!(held.is_empty());
    }

    #[test]
    fn a_failed_journal_drains_everything() {
        let mut held = HeldAcks::default();
        held.hold(1, 1);
        held.hold(2, 2);
        assert_eq!(held.drain().collect::<Vec<_>>(), [(1, 1), (2, 2)]);
        assert_eq!(held.len(), 0);
    }
}
