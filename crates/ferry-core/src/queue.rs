//! Point-to-point queues: STOMP's `/queue/NAME` and the connections' temporary queues.
//!
//! They live in the core, on [`Message`], beside the router: no protocol is in them (the
//! STOMP adapter maps its frames onto them; another adapter, or the cluster, could use
//! them as they are). The router cannot express a queue: it delivers a message to the subscribers
//! that exist when it is published (a `$share` group picks one member round-robin, but
//! keeps nothing when the group is empty and ignores each member's unacknowledged
//! window). A [`Queue`] therefore lives here:
//!
//! * messages wait in the queue, in order, until a consumer takes them; at most
//!   `max_queue_length` wait, and a message sent to a full queue is refused (the
//!   sender gets an ERROR; [`QueueStats::refused_full`] counts it);
//! * each message goes to one consumer, round-robin among those whose window has room:
//!   a consumer holds at most `prefetch` messages that are assigned to it and not yet
//!   acknowledged (0: no limit);
//! * a consumer that acknowledges (`client`, `client-individual`) keeps its messages
//!   in the queue until ACK; a NACK, an UNSUBSCRIBE or a closed connection puts them
//!   back at the front, marked redelivered, for the next consumer in turn.
//!
//! A named queue exists while it holds messages or consumers ([`Queues`] removes it
//! when it is neither); at most `max_queues` exist at once. Temporary queues belong to
//! one connection, are reached by others only through their reply token, and go away
//! with the connection.
//!
//! Durability: with a [`Journal`] ([`Queues::with_journal`]), the named queues write
//! what must survive a restart, under the queue's lock so that the log's order is the
//! queue's: a message put ([`Journal::queue_put`]; [`Queue::push`] returns the position
//! the sender's RECEIPT waits for, and refuses the message when the journal is
//! poisoned), sent to a consumer that acknowledges ([`Journal::queue_delivered`]: after
//! a restart it comes back `redelivered:true`) and gone ([`Journal::queue_removed`]:
//! acknowledged, or taken by an `ack:auto` consumer). The last two are lazy: losing one
//! in a crash costs a redelivery. At start [`Queues::restore`] puts back what the
//! journal holds. Temporary queues are never written.
//!
//! Lock order: the registry's map → a queue's state (LOCKS.md). A queue's state is
//! released before its consumers' [`Wakeup`]s are rung; the registry's map may still be
//! held then (`Queues::send`, `subscribe`, `reply`), which is harmless: ringing takes no
//! lock.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::{Journal, Lsn, Message, RestoredQueue, StorageUnavailable, Wakeup};
use parking_lot::{Mutex, RwLock};
use thiserror::Error;

/// Identifies one consumer of a queue (unique per queue).
pub type ConsumerId = u64;

/// One message in a queue.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Unique within its queue; what ACK and NACK name.
    pub id: u64,
    /// The message: the body as its payload, `content-type` as its content type, the
    /// application's headers (custom ones and `reply-to`) as its user properties, in
    /// order (the STOMP adapter's `convert::queue_message` builds it).
    pub message: Arc<Message>,
    /// Whether it was sent to a consumer before and came back (NACK, closed
    /// connection): the MESSAGE then carries `redelivered:true`.
    pub redelivered: bool,
}

/// Whether a consumer acknowledges what it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acking {
    /// `ack:auto`: a message is done once taken.
    Auto,
    /// `ack:client` / `client-individual`: a message stays in the queue until ACK.
    Client,
}

/// Why a queue operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QueueError {
    /// The queue holds its limit of waiting messages.
    #[error("queue {name:?} is full ({limit} messages wait for a consumer)")]
    Full {
        /// The queue's name.
        name: String,
        /// The limit in force.
        limit: usize,
    },
    /// Creating one more queue would pass the limit.
    #[error("too many queues (limit {limit})")]
    TooMany {
        /// The limit in force.
        limit: usize,
    },
    /// The queue is durable and the journal cannot take the message.
    #[error(transparent)]
    Storage(#[from] StorageUnavailable),
}

crate::counters! {
    /// Counters of the queues (named `stomp_…`: STOMP is the protocol that reaches them).
    pub struct QueueStats {
        enqueued: Counter("stomp_queue_enqueued", "Messages put into STOMP queues"),
        redelivered: Counter("stomp_queue_redelivered", "STOMP queue messages redelivered"),
        refused_full: Counter("stomp_queue_refused_full", "SENDs refused because the queue was full"),
        refused_too_many: Counter("stomp_queue_refused_too_many", "SENDs refused because no more queues may be created"),
        refused_storage: Counter("stomp_queue_refused_storage", "SENDs to a durable queue refused because storage was unavailable"),
        replies_dropped: Counter("stomp_replies_dropped", "Replies to a temporary queue whose owner had gone"),
    }
}

#[derive(Debug)]
struct Consumer {
    id: ConsumerId,
    prefetch: usize,
    acking: Acking,
    /// Given to this consumer, not yet taken by its connection.
    assigned: VecDeque<Entry>,
    /// Taken and awaiting ACK (`Acking::Client` only), oldest first.
    unacked: VecDeque<Entry>,
    wakeup: Wakeup,
}

impl Consumer {
    fn has_room(&self) -> bool {
        self.prefetch == 0 || self.assigned.len() + self.unacked.len() < self.prefetch
    }
}

#[derive(Debug, Default)]
struct State {
    ready: VecDeque<Entry>,
    consumers: Vec<Consumer>,
    /// Round-robin cursor into `consumers`.
    next: usize,
    next_entry: u64,
    next_consumer: ConsumerId,
}

impl State {
    /// Hand waiting messages to consumers with room, round-robin; returns the
    /// doorbells to ring once the lock is released.
    fn dispatch(&mut self) -> Vec<Wakeup> {
        let mut ring: Vec<Wakeup> = Vec::new();
        let mut rung = vec![false; self.consumers.len()];
        let n = self.consumers.len();
        while !self.ready.is_empty() && n > 0 {
            let Some(i) = (0..n).map(|k| (self.next + k) % n).find(|&i| self.consumers[i].has_room()) else {
                break;
            };
            let Some(entry) = self.ready.pop_front() else { break };
            self.consumers[i].assigned.push_back(entry);
            self.next = (i + 1) % n;
            if !rung[i] {
                rung[i] = true;
                ring.push(self.consumers[i].wakeup.clone());
            }
        }
        ring
    }

    fn consumer(&mut self, id: ConsumerId) -> Option<&mut Consumer> {
        self.consumers.iter_mut().find(|c| c.id == id)
    }
}

fn ring(wakeups: Vec<Wakeup>) {
    for w in wakeups {
        w.wake();
    }
}

/// One queue: waiting messages and the consumers they are dispatched to.
pub struct Queue {
    name: String,
    max_length: usize,
    state: Mutex<State>,
    stats: Arc<QueueStats>,
    /// Where a durable queue writes its changes (`None`: a temporary queue, or no
    /// storage).
    journal: Option<Arc<dyn Journal>>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.name)
            .field("durable", &self.journal.is_some())
            .finish_non_exhaustive()
    }
}

impl Queue {
    fn new(name: String, max_length: usize, stats: Arc<QueueStats>, journal: Option<Arc<dyn Journal>>) -> Self {
        Self {
            name,
            max_length,
            state: Mutex::new(State::default()),
            stats,
            journal,
        }
    }

    /// Whether the queue's messages survive a restart.
    pub fn is_durable(&self) -> bool {
        self.journal.is_some()
    }

    /// The queue's name (without prefix).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Add a message at the back, or refuse it when the queue is full or, for a durable
    /// queue, when the journal cannot take it. Returns the journal position the
    /// sender's acknowledgement waits for (`None`: not durable).
    pub fn push(&self, message: Arc<Message>) -> Result<Option<Lsn>, QueueError> {
        let (lsn, wake) = {
            let mut s = self.state.lock();
            if s.ready.len() >= self.max_length {
                self.stats.refused_full.fetch_add(1, Ordering::Relaxed);
                return Err(QueueError::Full {
                    name: self.name.clone(),
                    limit: self.max_length,
                });
            }
            let id = s.next_entry;
            // Under the queue's lock: the log has the queue's order.
            let lsn = match &self.journal {
                Some(journal) => Some(journal.queue_put(&self.name, id, &message).inspect_err(|_| {
                    self.stats.refused_storage.fetch_add(1, Ordering::Relaxed);
                })?),
                None => None,
            };
            s.next_entry += 1;
            s.ready.push_back(Entry {
                id,
                message,
                redelivered: false,
            });
            (lsn, s.dispatch())
        };
        self.stats.enqueued.fetch_add(1, Ordering::Relaxed);
        ring(wake);
        Ok(lsn)
    }

    /// A new consumer holding at most `prefetch` unacknowledged messages (0: no
    /// limit), rung through `wakeup` when messages are assigned to it.
    pub fn add_consumer(&self, prefetch: usize, acking: Acking, wakeup: Wakeup) -> ConsumerId {
        let (id, wake) = {
            let mut s = self.state.lock();
            let id = s.next_consumer;
            s.next_consumer += 1;
            s.consumers.push(Consumer {
                id,
                prefetch,
                acking,
                assigned: VecDeque::new(),
                unacked: VecDeque::new(),
                wakeup,
            });
            (id, s.dispatch())
        };
        ring(wake);
        id
    }

    /// Remove a consumer: what it was assigned and what it had not acknowledged go back
    /// to the front of the queue, in order (the unacknowledged ones marked
    /// redelivered), for the other consumers.
    pub fn remove_consumer(&self, id: ConsumerId) {
        let wake = {
            let mut s = self.state.lock();
            let Some(i) = s.consumers.iter().position(|c| c.id == id) else {
                return;
            };
            let c = s.consumers.remove(i);
            if s.next > i {
                s.next -= 1;
            }
            if s.next >= s.consumers.len() {
                s.next = 0;
            }
            let back: Vec<Entry> = c
                .unacked
                .into_iter()
                .map(|mut e| {
                    e.redelivered = true;
                    e
                })
                .chain(c.assigned)
                .collect();
            self.stats.redelivered.fetch_add(back.len() as u64, Ordering::Relaxed);
            for e in back.into_iter().rev() {
                s.ready.push_front(e);
            }
            s.dispatch()
        };
        ring(wake);
    }

    /// Move what is assigned to consumer `id` into `into` (oldest first); a consumer
    /// that acknowledges keeps them as unacknowledged until [`Queue::ack`] or
    /// [`Queue::nack`]. Returns how many were taken.
    pub fn take(&self, id: ConsumerId, into: &mut Vec<Entry>) -> usize {
        let (n, wake) = {
            let mut s = self.state.lock();
            let Some(c) = s.consumer(id) else { return 0 };
            let n = c.assigned.len();
            let auto = c.acking == Acking::Auto;
            if let Some(journal) = &self.journal {
                for e in &c.assigned {
                    if auto {
                        journal.queue_removed(&self.name, e.id);
                    } else {
                        journal.queue_delivered(&self.name, e.id);
                    }
                }
            }
            if auto {
                into.extend(c.assigned.drain(..));
            } else {
                into.extend(c.assigned.iter().cloned());
                let taken = std::mem::take(&mut c.assigned);
                c.unacked.extend(taken);
            }
            // An auto consumer's window opened: more may be assigned to it.
            let wake = if auto && n > 0 { s.dispatch() } else { Vec::new() };
            (n, wake)
        };
        ring(wake);
        n
    }

    /// Consumer `id` acknowledged the entries `ids`: they leave the queue.
    pub fn ack(&self, id: ConsumerId, ids: &[u64]) {
        let wake = {
            let mut s = self.state.lock();
            let Some(c) = s.consumer(id) else { return };
            let journal = self.journal.as_deref();
            let name = self.name.as_str();
            c.unacked.retain(|e| {
                let acked = ids.contains(&e.id);
                if let (true, Some(journal)) = (acked, journal) {
                    journal.queue_removed(name, e.id);
                }
                !acked
            });
            s.dispatch()
        };
        ring(wake);
    }

    /// Consumer `id` refused the entries `ids`: they go back to the front of the
    /// queue, in order, marked redelivered.
    pub fn nack(&self, id: ConsumerId, ids: &[u64]) {
        let wake = {
            let mut s = self.state.lock();
            let Some(c) = s.consumer(id) else { return };
            let mut back = Vec::new();
            c.unacked.retain(|e| {
                if ids.contains(&e.id) {
                    let mut e = e.clone();
                    e.redelivered = true;
                    back.push(e);
                    false
                } else {
                    true
                }
            });
            self.stats.redelivered.fetch_add(back.len() as u64, Ordering::Relaxed);
            for e in back.into_iter().rev() {
                s.ready.push_front(e);
            }
            s.dispatch()
        };
        ring(wake);
    }

    /// Messages waiting for a consumer (not assigned to one).
    pub fn len(&self) -> usize {
        self.state.lock().ready.len()
    }

    /// Whether no message waits for a consumer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue holds nothing at all and nobody consumes it.
    fn is_idle(&self) -> bool {
        let s = self.state.lock();
        s.ready.is_empty() && s.consumers.is_empty()
    }
}

/// Every queue of the broker: named queues by name, temporary queues by reply token.
#[derive(Debug)]
pub struct Queues {
    named: RwLock<HashMap<String, Arc<Queue>>>,
    temp: RwLock<HashMap<String, Arc<Queue>>>,
    max_queues: usize,
    max_length: usize,
    /// Counters of every queue.
    pub stats: Arc<QueueStats>,
    journal: Option<JournalHandle>,
}

/// The journal the named queues write to.
#[derive(Clone)]
struct JournalHandle(Arc<dyn Journal>);

impl std::fmt::Debug for JournalHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Journal")
    }
}

impl Queues {
    /// No queues yet; at most `max_queues` named ones, each holding at most
    /// `max_length` waiting messages.
    pub fn new(max_queues: usize, max_length: usize) -> Self {
        Self {
            named: RwLock::new(HashMap::new()),
            temp: RwLock::new(HashMap::new()),
            max_queues,
            max_length,
            stats: Arc::new(QueueStats::default()),
            journal: None,
        }
    }

    /// Named queues made from now on write to `journal` (`None`: memory only); see
    /// the module's documentation.
    pub fn with_journal(mut self, journal: Option<Arc<dyn Journal>>) -> Self {
        self.journal = journal.map(JournalHandle);
        self
    }

    fn durable(&self) -> Option<Arc<dyn Journal>> {
        self.journal.as_ref().map(|j| j.0.clone())
    }

    /// Puts back the queues the journal restored at start, before anyone connects:
    /// each queue's entries in order, those delivered before marked redelivered, and
    /// the next entry id past the restored ones. Neither `max_queues` nor
    /// `max_queue_length` refuses what was acknowledged before. Returns the messages
    /// restored.
    pub fn restore(&self, queues: Vec<RestoredQueue>) -> usize {
        let mut map = self.named.write();
        let mut messages = 0;
        for restored in queues {
            let queue = map
                .entry(restored.name.clone())
                .or_insert_with(|| Arc::new(Queue::new(restored.name, self.max_length, self.stats.clone(), self.durable())));
            let mut s = queue.state.lock();
            for e in restored.entries {
                s.next_entry = s.next_entry.max(e.id.saturating_add(1));
                s.ready.push_back(Entry {
                    id: e.id,
                    message: e.message,
                    redelivered: e.redelivered,
                });
                messages += 1;
            }
        }
        messages
    }

    /// Run `f` on the named queue `name`, created if needed, with the registry locked
    /// so that the queue cannot be removed meanwhile.
    fn with_queue<T>(&self, name: &str, f: impl FnOnce(&Arc<Queue>) -> T) -> Result<T, QueueError> {
        {
            let map = self.named.read();
            if let Some(q) = map.get(name) {
                return Ok(f(q));
            }
        }
        let mut map = self.named.write();
        if let Some(q) = map.get(name) {
            return Ok(f(q));
        }
        if map.len() >= self.max_queues {
            self.stats.refused_too_many.fetch_add(1, Ordering::Relaxed);
            return Err(QueueError::TooMany { limit: self.max_queues });
        }
        let q = Arc::new(Queue::new(name.to_owned(), self.max_length, self.stats.clone(), self.durable()));
        map.insert(name.to_owned(), q.clone());
        Ok(f(&q))
    }

    /// Put `message` into the named queue `name`; the journal position the sender's
    /// acknowledgement waits for when the queue is durable.
    pub fn send(&self, name: &str, message: Arc<Message>) -> Result<Option<Lsn>, QueueError> {
        self.with_queue(name, |q| q.push(message))?
    }

    /// Add a consumer to the named queue `name`; returns the queue and the consumer.
    pub fn subscribe(&self, name: &str, prefetch: usize, acking: Acking, wakeup: Wakeup) -> Result<(Arc<Queue>, ConsumerId), QueueError> {
        self.with_queue(name, |q| (q.clone(), q.add_consumer(prefetch, acking, wakeup)))
    }

    /// Remove a consumer of a named queue, and the queue itself if it is left idle.
    pub fn unsubscribe(&self, queue: &Arc<Queue>, consumer: ConsumerId) {
        queue.remove_consumer(consumer);
        let mut map = self.named.write();
        if map.get(queue.name()).is_some_and(|q| Arc::ptr_eq(q, queue)) && queue.is_idle() {
            map.remove(queue.name());
        }
    }

    /// The temporary queue reached through `token`, created if needed.
    pub fn temp_queue(&self, token: &str) -> Arc<Queue> {
        if let Some(q) = self.temp.read().get(token) {
            return q.clone();
        }
        self.temp
            .write()
            .entry(token.to_owned())
            .or_insert_with(|| Arc::new(Queue::new(token.to_owned(), self.max_length, self.stats.clone(), None)))
            .clone()
    }

    /// Send a reply to the temporary queue of `token`; dropped (and counted) when its
    /// connection is gone, since nobody could ever receive it.
    pub fn reply(&self, token: &str, message: Arc<Message>) -> Result<bool, QueueError> {
        let map = self.temp.read();
        match map.get(token) {
            Some(q) => q.push(message).map(|_| true),
            None => {
                self.stats.replies_dropped.fetch_add(1, Ordering::Relaxed);
                Ok(false)
            }
        }
    }

    /// Forget the temporary queue of `token` (its connection closed); what it held is
    /// dropped.
    pub fn remove_temp(&self, token: &str) {
        self.temp.write().remove(token);
    }

    /// Named queues that exist now.
    pub fn len(&self) -> usize {
        self.named.read().len()
    }

    /// Whether no named queue exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: u8) -> Arc<Message> {
        Arc::new(Message::new(
            crate::TopicName::new("/queue/test").unwrap(),
            vec![n].into(),
            crate::QoS::AtLeastOnce,
            false,
        ))
    }

    fn take(q: &Queue, c: ConsumerId) -> Vec<(u8, bool)> {
        let mut v = Vec::new();
        q.take(c, &mut v);
        v.iter().map(|e| (e.message.payload[0], e.redelivered)).collect()
    }

    fn ids(q: &Queue, c: ConsumerId) -> Vec<u64> {
        let mut v = Vec::new();
        q.take(c, &mut v);
        v.iter().map(|e| e.id).collect()
    }

    #[test]
    fn messages_wait_for_a_consumer_and_are_kept_in_order() {
        let qs = Queues::new(10, 100);
        for n in 1..=3 {
            qs.send("jobs", msg(n)).unwrap();
        }
        let (q, c) = qs.subscribe("jobs", 0, Acking::Auto, Wakeup::new()).unwrap();
        assert_eq!(take(&q, c), [(1, false), (2, false), (3, false)]);
        assert!(q.is_empty());
    }

    #[test]
    fn round_robin_honours_each_consumers_window() {
        let qs = Queues::new(10, 100);
        let (q, a) = qs.subscribe("w", 1, Acking::Client, Wakeup::new()).unwrap();
        let (_, b) = qs.subscribe("w", 2, Acking::Client, Wakeup::new()).unwrap();
        for n in 1..=5 {
            qs.send("w", msg(n)).unwrap();
        }
        // a: 1 (window 1); b: 2, 3 (window 2); 4 and 5 wait.
        let got_a = ids(&q, a);
        let got_b = ids(&q, b);
        assert_eq!((got_a.len(), got_b.len(), q.len()), (1, 2, 2));
        q.ack(a, &got_a);
        assert_eq!(take(&q, a), [(4, false)], "room again after ACK");
        q.ack(b, &got_b[..1]);
        assert_eq!(take(&q, b), [(5, false)]);
    }

    #[test]
    fn nack_and_a_closed_consumer_put_messages_back_marked_redelivered() {
        let qs = Queues::new(10, 100);
        let (q, a) = qs.subscribe("r", 0, Acking::Client, Wakeup::new()).unwrap();
        for n in 1..=3 {
            qs.send("r", msg(n)).unwrap();
        }
        let got = ids(&q, a);
        q.nack(a, &got[1..2]);
        assert_eq!(take(&q, a), [(2, true)], "the NACKed message comes again, redelivered");
        qs.unsubscribe(&q, a);
        assert_eq!(q.len(), 3, "all unacked messages are back");
        let (_, b) = qs.subscribe("r", 0, Acking::Auto, Wakeup::new()).unwrap();
        assert_eq!(take(&q, b), [(1, true), (3, true), (2, true)]);
    }

    #[test]
    fn a_full_queue_refuses_and_counts() {
        let qs = Queues::new(10, 2);
        qs.send("f", msg(1)).unwrap();
        qs.send("f", msg(2)).unwrap();
        assert!(matches!(qs.send("f", msg(3)), Err(QueueError::Full { limit: 2, .. })));
        assert_eq!(qs.stats.refused_full.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn idle_queues_go_away_and_their_number_is_bounded() {
        let qs = Queues::new(1, 10);
        let (q, c) = qs.subscribe("a", 0, Acking::Auto, Wakeup::new()).unwrap();
        assert!(matches!(qs.send("b", msg(1)), Err(QueueError::TooMany { limit: 1 })));
        qs.unsubscribe(&q, c);
        assert!(qs.is_empty());
        qs.send("b", msg(1)).unwrap();
        assert_eq!(qs.len(), 1, "a queue holding messages stays");
    }

    #[test]
    fn replies_reach_a_live_temporary_queue_and_are_dropped_after_it() {
        let qs = Queues::new(10, 10);
        let q = qs.temp_queue("t1");
        assert_eq!(qs.reply("t1", msg(1)), Ok(true));
        assert_eq!(q.len(), 1);
        qs.remove_temp("t1");
        assert_eq!(qs.reply("t1", msg(2)), Ok(false));
        assert_eq!(qs.stats.replies_dropped.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_consumer_is_rung_when_messages_are_assigned() {
        let qs = Queues::new(10, 10);
        let w = Wakeup::new();
        qs.subscribe("ring", 0, Acking::Auto, w.clone()).unwrap();
        qs.send("ring", msg(1)).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(1), w.woken())
            .await
            .expect("rung");
    }
}
