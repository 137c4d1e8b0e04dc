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
//! What is journaled: retained messages set and cleared by clients (not the broker's
//! own `$SYS` messages, which it publishes again), and persistent sessions (MQTT clean
//! session 0 or session expiry > 0): their life, subscriptions, the QoS 1/2 messages
//! queued for them and how far each got, and the QoS 2 packet ids they received. A
//! message body is written once ([`Message::stored_id_or`]) however many sessions hold
//! it. The calls that return an [`Lsn`] are the ones an acknowledgement waits for
//! (PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK, CONNACK); the others record what a
//! subscriber acknowledged or was sent, lazily: losing one costs a redelivery, which
//! at-least-once allows. STOMP's `/queue/` messages are journaled too (`queue_put`,
//! `queue_delivered`, `queue_removed`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::adapter::Wakeup;
use crate::message::Message;
use crate::outbox::Delivery;
use crate::router::SubscribeOptions;
use crate::topic::{Subscription, TopicName};

/// A persistent session's id in the journal, stable across restarts (the router's
/// [`crate::SubscriberId`] is process-local).
pub type SessionKey = u64;

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

    /// Records a persistent session for `client_id`, online now, that outlives its
    /// connection by `expiry` (`None`: until it is discarded). `key` is the session's
    /// key when it already has one (a resumed session: its expiry is recorded again);
    /// `None` makes a new one. Returns the key and the record's position (CONNACK waits
    /// for it).
    fn session_open(
        &self,
        key: Option<SessionKey>,
        client_id: &str,
        expiry: Option<Duration>,
    ) -> Result<(SessionKey, Lsn), StorageUnavailable>;

    /// The session's connection ended; it is forgotten `expiry` from now (`None`: never)
    /// unless its client comes back. The journal turns that into a wall-clock deadline.
    /// Lazy.
    fn session_detached(&self, key: SessionKey, expiry: Option<Duration>);

    /// The session is gone (clean start, expiry, zero expiry at the end of its
    /// connection) with everything it held. Lazy.
    fn session_end(&self, key: SessionKey);

    /// The session subscribed to `subscription` with `options`; `filter` is the filter
    /// as the client sent it (what UNSUBSCRIBE names). SUBACK waits for the position.
    fn subscribed(
        &self,
        key: SessionKey,
        filter: &str,
        subscription: &Subscription,
        options: &SubscribeOptions,
    ) -> Result<Lsn, StorageUnavailable>;

    /// The session unsubscribed from `filter`. UNSUBACK waits for the position.
    fn unsubscribed(&self, key: SessionKey, filter: &str) -> Result<Lsn, StorageUnavailable>;

    /// `delivery` (QoS 1 or 2) was queued for the session; the message's body is
    /// written first if no record holds it yet. The publisher's ack waits for it.
    fn enqueued(&self, key: SessionKey, delivery: &Delivery) -> Result<Lsn, StorageUnavailable>;

    /// The session's oldest unsent copy of `message` was sent with packet id `pkid`.
    /// Lazy.
    fn sent(&self, key: SessionKey, message: &Message, pkid: u16);

    /// The QoS 2 message sent with `pkid` was received (PUBREC; PUBREL sent). Lazy.
    fn released(&self, key: SessionKey, pkid: u16);

    /// The session is done with its oldest copy of `message` (acknowledged, expired,
    /// refused by the ACL, dropped from a full queue). Lazy.
    fn acked(&self, key: SessionKey, message: &Message);

    /// The session received a QoS 2 PUBLISH with `pkid` (PUBREC waits for the position).
    fn qos2_received(&self, key: SessionKey, pkid: u16) -> Result<Lsn, StorageUnavailable>;

    /// The session's client released `pkid` (PUBREL; PUBCOMP waits for the position).
    fn qos2_released(&self, key: SessionKey, pkid: u16) -> Result<Lsn, StorageUnavailable>;

    /// `client_id`'s will, `message`, is to be published `delay` from now unless its
    /// client comes back first (MQTT 5 will delay). The journal turns the delay into a
    /// wall-clock time. Lazy.
    fn will_delayed(&self, client_id: &str, message: &Arc<Message>, delay: Duration);

    /// `client_id`'s delayed will was published or cancelled. Lazy.
    fn will_done(&self, client_id: &str);

    /// Every record at or before this position is durable.
    fn durable_lsn(&self) -> Lsn;

    /// Rings `wakeup` once `lsn` is durable, or once the journal is poisoned (check
    /// [`Journal::health`] then). Rings at once if it already is.
    fn when_durable(&self, lsn: Lsn, wakeup: Wakeup);

    /// Whether the journal still takes records.
    fn health(&self) -> Result<(), StorageUnavailable>;

    // STOMP's durable queues (`/queue/NAME`; temporary queues are never journaled).
    // An entry is named by its queue and an id unique within the queue.

    /// `message` was put into `queue` as `entry`. The sender's RECEIPT waits for the
    /// position.
    fn queue_put(&self, queue: &str, entry: u64, message: &Arc<Message>) -> Result<Lsn, StorageUnavailable>;

    /// `queue`'s `entry` was sent to a consumer that acknowledges: after a restart it
    /// comes back `redelivered:true`. Lazy.
    fn queue_delivered(&self, queue: &str, entry: u64);

    /// `queue`'s `entry` is gone (acknowledged, or taken by an `ack:auto` consumer).
    /// Lazy.
    fn queue_removed(&self, queue: &str, entry: u64);
}

/// A STOMP queue as the journal restored it at start, for the STOMP adapter to put
/// back before it serves anyone.
#[derive(Debug, Clone)]
pub struct RestoredQueue {
    /// The queue's name (without `/queue/`).
    pub name: String,
    /// Its messages, in the order they were put.
    pub entries: Vec<RestoredQueueEntry>,
}

/// One message of a restored queue.
#[derive(Debug, Clone)]
pub struct RestoredQueueEntry {
    /// Its id in the queue.
    pub id: u64,
    /// The message.
    pub message: Arc<Message>,
    /// Whether it was sent before and not acknowledged: it goes out
    /// `redelivered:true`.
    pub redelivered: bool,
}

/// A persistent session as the journal restored it at start, for its adapter to take
/// back into its live registry.
#[derive(Debug, Clone)]
pub struct RestoredSession {
    /// Its key in the journal.
    pub key: SessionKey,
    /// The client identifier it belongs to.
    pub client_id: Arc<str>,
    /// How long it outlives a connection (`None`: until discarded).
    pub expiry: Option<Duration>,
    /// When it is forgotten unless its client comes back (wall clock): the deadline
    /// recorded when its connection ended, or, for a session that was online when the
    /// broker stopped, the broker's start plus `expiry`. `None`: never.
    pub expires_at: Option<SystemTime>,
    /// Its subscriptions: the filter as the client sent it, parsed, and the options.
    pub subscriptions: Vec<(String, Subscription, SubscribeOptions)>,
    /// Its QoS 1/2 messages, oldest first.
    pub messages: Vec<RestoredDelivery>,
    /// QoS 2 packet ids received and not yet released.
    pub incoming_qos2: Vec<u16>,
}

/// A delayed will as the journal restored it at start.
#[derive(Debug, Clone)]
pub struct RestoredWill {
    /// The client whose will it is.
    pub client_id: Arc<str>,
    /// The will.
    pub message: Arc<Message>,
    /// When it is due (wall clock); in the past if it fell due while the broker was down
    /// (then it is published at once).
    pub at: SystemTime,
}

/// One message a restored session holds.
#[derive(Debug, Clone)]
pub struct RestoredDelivery {
    /// The delivery (the message's expiry made an `Instant` again).
    pub delivery: Delivery,
    /// The packet id it was sent with, if it was sent.
    pub pkid: Option<u16>,
    /// QoS 2: PUBREC received, PUBREL sent.
    pub released: bool,
}

/// What happened to one published message in the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Published {
    /// Deliveries queued to subscribers.
    pub deliveries: usize,
    /// The journal position the publisher's acknowledgement must wait for, when the
    /// message changed durable state (a retained message set or cleared, a QoS 1/2
    /// delivery queued for a persistent session).
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

    /// The position the oldest held ack waits for (what to be woken for next).
    pub fn front_lsn(&self) -> Option<Lsn> {
        self.queue.front().map(|(lsn, _)| *lsn)
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
