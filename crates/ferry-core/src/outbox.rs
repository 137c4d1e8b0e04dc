//! A session's bounded queue of deliveries: the router pushes, the session's connection
//! drains. Slow consumers only fill their own queue: QoS 0 beyond its limit is dropped
//! and counted; QoS ≥ 1 is kept up to its own limit (also while the client is away, for
//! persistent sessions), and what does not fit is dropped and counted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::adapter::Wakeup;
use crate::message::{Message, QoS};
use crate::retained::Weighed;

/// How much one session's queue may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    /// QoS 0 deliveries waiting; more are dropped.
    pub max_qos0: usize,
    /// QoS 1 and 2 deliveries waiting (not yet sent or in flight); more are dropped.
    pub max_qos12: usize,
    /// Topic and payload bytes of all deliveries waiting; a delivery that would go over
    /// is dropped (one always fits into an empty queue). 0: no byte limit.
    pub max_bytes: usize,
}

/// The default byte limit of one session's queue: 64 MiB, above what the default counts
/// hold for typical payloads (10,000 QoS 1/2 messages of a few KiB), so it only bites when
/// payloads are large.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;

impl Default for OutboxLimits {
    fn default() -> Self {
        Self {
            max_qos0: 1000,
            max_qos12: 10_000,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// One message on its way to one subscriber.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message, shared with every other subscriber.
    pub message: Arc<Message>,
    /// The QoS to deliver at: the lower of the published and the granted QoS.
    pub qos: QoS,
    /// The retain flag to set on the forwarded copy.
    pub retain: bool,
    /// Identifiers of the matching subscriptions (MQTT 5), if any.
    pub subscription_ids: Vec<u32>,
}

/// What became of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued for delivery.
    Queued,
    /// Dropped: the queue holds its limit of deliveries of that QoS.
    Dropped,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Delivery>,
    qos0: usize,
    /// The weight of `items`.
    bytes: usize,
}

impl Queue {
    fn counted_in(&mut self, d: &Delivery) {
        if d.qos == QoS::AtMostOnce {
            self.qos0 += 1;
        }
        self.bytes += d.message.weight();
    }

    fn counted_out(&mut self, d: &Delivery) {
        if d.qos == QoS::AtMostOnce {
            self.qos0 -= 1;
        }
        self.bytes -= d.message.weight();
    }
}

/// Counters of one outbox.
#[derive(Debug, Default)]
pub struct OutboxStats {
    /// QoS 0 deliveries dropped because the queue was full.
    pub dropped_qos0: AtomicU64,
    /// QoS 1/2 deliveries dropped because the queue was full.
    pub dropped_qos12: AtomicU64,
}

/// A session's queue of deliveries and the doorbell of the connection serving it.
#[derive(Debug)]
pub struct Outbox {
    limits: OutboxLimits,
    queue: Mutex<Queue>,
    wakeup: Mutex<Option<Wakeup>>,
    /// Drop counters.
    pub stats: OutboxStats,
}

impl Outbox {
    /// An empty outbox with no connection attached.
    pub fn new(limits: OutboxLimits) -> Self {
        Self {
            limits,
            queue: Mutex::new(Queue::default()),
            wakeup: Mutex::new(None),
            stats: OutboxStats::default(),
        }
    }

    /// Queue a delivery, or drop it when its QoS's limit is reached. Rings the attached
    /// connection when the queue was empty (a non-empty queue is being drained already).
    pub fn push(&self, delivery: Delivery) -> Pushed {
        let was_empty;
        {
            let mut q = self.queue.lock();
            let qos12 = q.items.len() - q.qos0;
            let over_bytes =
                self.limits.max_bytes > 0 && !q.items.is_empty() && q.bytes + delivery.message.weight() > self.limits.max_bytes;
            let full = over_bytes
                || if delivery.qos == QoS::AtMostOnce {
                    q.qos0 >= self.limits.max_qos0
                } else {
                    qos12 >= self.limits.max_qos12
                };
            if full {
                let counter = if delivery.qos == QoS::AtMostOnce {
                    &self.stats.dropped_qos0
                } else {
                    &self.stats.dropped_qos12
                };
                counter.fetch_add(1, Ordering::Relaxed);
                return Pushed::Dropped;
            }
            was_empty = q.items.is_empty();
            q.counted_in(&delivery);
            q.items.push_back(delivery);
        }
        if was_empty {
            self.ring();
        }
        Pushed::Queued
    }

    /// Put deliveries back at the front, in their order (a connection that ended before
    /// sending them). Never dropped: they were counted in once already.
    pub fn requeue_front(&self, deliveries: impl DoubleEndedIterator<Item = Delivery>) {
        let mut q = self.queue.lock();
        for d in deliveries.rev() {
            q.counted_in(&d);
            q.items.push_front(d);
        }
    }

    /// Move up to `max` deliveries, oldest first, into `into`; returns how many.
    pub fn pop_into(&self, max: usize, into: &mut Vec<Delivery>) -> usize {
        let mut q = self.queue.lock();
        let n = max.min(q.items.len());
        for _ in 0..n {
            if let Some(d) = q.items.pop_front() {
                q.counted_out(&d);
                into.push(d);
            }
        }
        n
    }

    /// Deliveries waiting.
    pub fn len(&self) -> usize {
        self.queue.lock().items.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop every waiting QoS 0 delivery (a persistent session whose client went away
    /// keeps only QoS 1 and 2, as MQTT says it may).
    pub fn discard_qos0(&self) {
        let mut q = self.queue.lock();
        q.items.retain(|d| d.qos != QoS::AtMostOnce);
        q.qos0 = 0;
        q.bytes = q.items.iter().map(|d| d.message.weight()).sum();
    }

    /// Attach the doorbell of the connection that now serves this session; rings it at
    /// once if deliveries are waiting.
    pub fn attach(&self, wakeup: Wakeup) {
        *self.wakeup.lock() = Some(wakeup);
        if !self.is_empty() {
            self.ring();
        }
    }

    /// Detach the connection (the session stays, offline).
    pub fn detach(&self) {
        *self.wakeup.lock() = None;
    }

    fn ring(&self) {
        if let Some(w) = self.wakeup.lock().as_ref() {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::TopicName;
    use bytes::Bytes;

    fn delivery(qos: QoS, n: u8) -> Delivery {
        let m = Message::new(TopicName::new("t").unwrap(), Bytes::from(vec![n]), qos, false);
        Delivery {
            message: Arc::new(m),
            qos,
            retain: false,
            subscription_ids: Vec::new(),
        }
    }

    #[test]
    fn each_qos_has_its_own_limit_and_drops_are_counted() {
        let o = Outbox::new(OutboxLimits {
            max_qos0: 2,
            max_qos12: 1,
            max_bytes: 0,
        });
        assert_eq!(o.push(delivery(QoS::AtMostOnce, 1)), Pushed::Queued);
        assert_eq!(o.push(delivery(QoS::AtMostOnce, 2)), Pushed::Queued);
        assert_eq!(o.push(delivery(QoS::AtMostOnce, 3)), Pushed::Dropped);
        assert_eq!(o.push(delivery(QoS::AtLeastOnce, 4)), Pushed::Queued);
        assert_eq!(o.push(delivery(QoS::ExactlyOnce, 5)), Pushed::Dropped);
        assert_eq!(o.stats.dropped_qos0.load(Ordering::Relaxed), 1);
        assert_eq!(o.stats.dropped_qos12.load(Ordering::Relaxed), 1);
        let mut got = Vec::new();
        assert_eq!(o.pop_into(10, &mut got), 3);
        let order: Vec<u8> = got.iter().map(|d| d.message.payload[0]).collect();
        assert_eq!(order, [1, 2, 4], "oldest first");
        assert_eq!(o.push(delivery(QoS::AtMostOnce, 6)), Pushed::Queued, "room again once drained");
    }

    #[test]
    fn requeued_deliveries_come_first_in_order() {
        let o = Outbox::new(OutboxLimits::default());
        o.push(delivery(QoS::AtLeastOnce, 3));
        o.requeue_front(vec![delivery(QoS::AtLeastOnce, 1), delivery(QoS::AtMostOnce, 2)].into_iter());
        let mut got = Vec::new();
        o.pop_into(10, &mut got);
        assert_eq!(got.iter().map(|d| d.message.payload[0]).collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn offline_sessions_keep_only_qos12() {
        let o = Outbox::new(OutboxLimits::default());
        o.push(delivery(QoS::AtMostOnce, 1));
        o.push(delivery(QoS::AtLeastOnce, 2));
        o.discard_qos0();
        assert_eq!(o.len(), 1);
        o.push(delivery(QoS::AtMostOnce, 3));
        assert_eq!(o.len(), 2);
    }

    #[tokio::test]
    async fn attached_connection_is_rung_when_work_arrives() {
        let o = Outbox::new(OutboxLimits::default());
        o.push(delivery(QoS::AtLeastOnce, 1));
        let w = Wakeup::new();
        o.attach(w.clone());
        tokio::time::timeout(std::time::Duration::from_secs(1), w.woken())
            .await
            .expect("rung on attach");
        let mut got = Vec::new();
        o.pop_into(10, &mut got);
        o.push(delivery(QoS::AtMostOnce, 2));
        tokio::time::timeout(std::time::Duration::from_secs(1), w.woken())
            .await
            .expect("rung on push");
        o.detach();
        o.pop_into(10, &mut got);
        o.push(delivery(QoS::AtMostOnce, 3));
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), w.woken()).await.is_err(),
            "detached: no ring"
        );
    }

    #[test]
    fn the_byte_limit_drops_what_would_go_over_but_one_always_fits() {
        let o = Outbox::new(OutboxLimits {
            max_qos0: 100,
            max_qos12: 100,
            max_bytes: 4,
        });
        // Each delivery weighs 2: topic "t" and one payload byte.
        assert_eq!(o.push(delivery(QoS::AtMostOnce, 1)), Pushed::Queued);
        assert_eq!(o.push(delivery(QoS::AtLeastOnce, 2)), Pushed::Queued);
        assert_eq!(o.push(delivery(QoS::AtMostOnce, 3)), Pushed::Dropped);
        assert_eq!(o.push(delivery(QoS::AtLeastOnce, 4)), Pushed::Dropped);
        let mut got = Vec::new();
        assert_eq!(o.pop_into(1, &mut got), 1);
        assert_eq!(o.push(delivery(QoS::AtMostOnce, 5)), Pushed::Queued, "room again");
        o.discard_qos0();
        assert_eq!(o.push(delivery(QoS::AtMostOnce, 6)), Pushed::Queued);
        assert_eq!(o.push(delivery(QoS::AtMostOnce, 7)), Pushed::Dropped);
        let big = Outbox::new(OutboxLimits {
            max_bytes: 1,
            ..OutboxLimits::default()
        });
        assert_eq!(big.push(delivery(QoS::AtMostOnce, 8)), Pushed::Queued, "alone it fits");
    }
}
