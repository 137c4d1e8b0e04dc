//! The durable state of STOMP's queues as the log holds it (the queues' "shadow"):
//! every queue record is applied here in log order, on replay and as the broker writes
//! it, so that a snapshot can be written from it at an exact log position and the
//! queues restored from it at start. The live queues (ferry-stomp's `Queues`) hold the
//! same messages (the same `Arc`s); this holds only what survives a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ferry_core::{Message, RestoredQueue, RestoredQueueEntry};
use tracing::debug;

use crate::queue_records::{self, QueueRecord, QUEUE_PUT};

/// One entry of a stored queue.
#[derive(Debug, Clone)]
struct StoredEntry {
    message: Arc<Message>,
    delivered: bool,
}

/// Every durable queue's entries, by queue name and entry id.
#[derive(Debug, Default)]
pub(crate) struct StoredQueues {
    queues: HashMap<String, BTreeMap<u64, StoredEntry>>,
    messages: usize,
}

/// A copy of the stored queues, taken at a log position, to write into a snapshot
/// without holding the lock.
pub(crate) struct QueuesCopy(Vec<(String, u64, StoredEntry)>);

impl StoredQueues {
    /// Queues holding at least one message.
    pub(crate) fn queues(&self) -> usize {
        self.queues.len()
    }

    /// Messages in all queues.
    pub(crate) fn messages(&self) -> usize {
        self.messages
    }

    /// `message` was put into `queue` as `entry`.
    pub(crate) fn put(&mut self, queue: &str, entry: u64, message: Arc<Message>, delivered: bool) {
        let entries = match self.queues.get_mut(queue) {
            Some(e) => e,
            None => self.queues.entry(queue.to_owned()).or_default(),
        };
        if entries.insert(entry, StoredEntry { message, delivered }).is_none() {
            self.messages += 1;
        }
    }

    /// `queue`'s `entry` was sent to a consumer that acknowledges.
    pub(crate) fn delivered(&mut self, queue: &str, entry: u64) {
        match self.queues.get_mut(queue).and_then(|q| q.get_mut(&entry)) {
            Some(e) => e.delivered = true,
            None => debug!(queue, entry, "storage: delivery of a queue entry not stored (ignored)"),
        }
    }

    /// `queue`'s `entry` is gone.
    pub(crate) fn removed(&mut self, queue: &str, entry: u64) {
        let Some(entries) = self.queues.get_mut(queue) else {
            debug!(queue, entry, "storage: removal from a queue not stored (ignored)");
            return;
        };
        if entries.remove(&entry).is_some() {
            self.messages -= 1;
        }
        if entries.is_empty() {
            self.queues.remove(queue);
        }
    }

    /// Applies a record read back from the snapshot or the log. Returns whether it was
    /// a message that expired while the broker was down (and is left out).
    pub(crate) fn apply(&mut self, record: QueueRecord) -> bool {
        match record {
            QueueRecord::Put {
                queue,
                entry,
                delivered,
                message: Some(message),
            } => self.put(&queue, entry, message, delivered),
            QueueRecord::Put { message: None, .. } => return true,
            QueueRecord::Delivered { queue, entry } => self.delivered(&queue, entry),
            QueueRecord::Removed { queue, entry } => self.removed(&queue, entry),
        }
        false
    }

    /// A copy of every entry (the messages shared, not copied), for a snapshot.
    pub(crate) fn copy(&self) -> QueuesCopy {
        let mut all = Vec::with_capacity(self.messages);
        for (name, entries) in &self.queues {
            all.extend(entries.iter().map(|(id, e)| (name.clone(), *id, e.clone())));
        }
        QueuesCopy(all)
    }

    /// The queues as the core restores them: each queue's entries in id order (the
    /// order they were put in), those delivered before marked redelivered.
    pub(crate) fn restored(&self) -> Vec<RestoredQueue> {
        let mut out: Vec<RestoredQueue> = self
            .queues
            .iter()
            .map(|(name, entries)| RestoredQueue {
                name: name.clone(),
                entries: entries
                    .iter()
                    .map(|(id, e)| RestoredQueueEntry {
                        id: *id,
                        message: e.message.clone(),
                        redelivered: e.delivered,
                    })
                    .collect(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

impl QueuesCopy {
    /// Messages in the copy.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Hands each entry to `push` as a [`QUEUE_PUT`] record body.
    pub(crate) fn write(&self, mut push: impl FnMut(u8, &[u8]) -> crate::Result<()>) -> crate::Result<()> {
        let mut body = Vec::new();
        for (queue, entry, e) in &self.0 {
            body.clear();
            queue_records::encode_put(queue, *entry, e.delivered, &e.message, &mut body);
            push(QUEUE_PUT, &body)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ferry_core::{QoS, TopicName};

    fn m(body: &'static str) -> Arc<Message> {
        Arc::new(Message::new(
            TopicName::new("/queue/q").unwrap(),
            Bytes::from_static(body.as_bytes()),
            QoS::AtLeastOnce,
            false,
        ))
    }

    fn bodies(q: &RestoredQueue) -> Vec<(u64, &[u8], bool)> {
        q.entries.iter().map(|e| (e.id, &e.message.payload[..], e.redelivered)).collect()
    }

    #[test]
    fn puts_deliveries_and_removals_leave_what_is_unacknowledged() {
        let mut s = StoredQueues::default();
        s.put("a", 0, m("0"), false);
        s.put("a", 1, m("1"), false);
        s.put("a", 2, m("2"), false);
        s.put("b", 0, m("b0"), false);
        s.delivered("a", 0);
        s.delivered("a", 1);
        s.removed("a", 1);
        s.removed("b", 0);
        s.removed("b", 0);
        s.delivered("nope", 3);
        s.removed("nope", 3);
        assert_eq!((s.queues(), s.messages()), (1, 2));
        let r = s.restored();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].name, "a");
        assert_eq!(bodies(&r[0]), [(0, &b"0"[..], true), (2, &b"2"[..], false)]);
    }

    #[test]
    fn a_copy_written_as_records_and_applied_again_is_the_same_state() {
        let mut s = StoredQueues::default();
        for i in 0..5 {
            s.put("x", i, m("x"), i % 2 == 0);
        }
        s.put("y", 10, m("y"), false);
        let copy = s.copy();
        assert_eq!(copy.len(), 6);
        let mut again = StoredQueues::default();
        copy.write(|kind, body| {
            assert!(!again.apply(queue_records::decode(kind, body).unwrap()));
            Ok(())
        })
        .unwrap();
        let (a, b) = (s.restored(), again.restored());
        assert_eq!(a.len(), b.len());
        for (qa, qb) in a.iter().zip(&b) {
            assert_eq!(qa.name, qb.name);
            assert_eq!(bodies(qa), bodies(qb));
        }
    }

    fn open(dir: &std::path::Path) -> (Arc<crate::BrokerJournal>, ferry_core::Router, crate::Restored) {
        let memory = Arc::new(ferry_core::MemoryRetained::new());
        let (journal, restored) = crate::BrokerJournal::open(crate::StoreConfig::new(dir), &memory).unwrap();
        let journal = Arc::new(journal);
        let router = ferry_core::Router::new(memory).with_journal(journal.clone());
        (journal, router, restored)
    }

    fn close(journal: Arc<crate::BrokerJournal>, router: ferry_core::Router) {
        use ferry_core::Journal as _;
        journal.store().wait_durable(journal.store().last_lsn()).unwrap();
        assert!(journal.health().is_ok());
        drop(router);
        Arc::try_unwrap(journal).unwrap().close().unwrap();
    }

    #[test]
    fn queues_survive_a_reopen_through_the_log_and_through_a_snapshot() {
        use ferry_core::Journal as _;
        let dir = tempfile::tempdir().unwrap();
        let (journal, router, restored) = open(dir.path());
        assert!(restored.queues.is_empty());
        for i in 0..4 {
            journal.queue_put("jobs", i, &m("j")).unwrap();
        }
        journal.queue_put("other", 0, &m("o")).unwrap();
        journal.queue_delivered("jobs", 1);
        journal.queue_removed("jobs", 0);
        journal.queue_removed("other", 0);
        assert_eq!(journal.queue_counts(), (1, 3));
        close(journal, router);

        let (journal, router, restored) = open(dir.path());
        assert_eq!(restored.queue_messages, 3);
        assert_eq!(restored.queues.len(), 1);
        let ids: Vec<(u64, bool)> = restored.queues[0].entries.iter().map(|e| (e.id, e.redelivered)).collect();
        assert_eq!(ids, [(1, true), (2, false), (3, false)]);
        // A snapshot holds the queues; what follows it replays on top.
        let info = journal.snapshot(&router).unwrap();
        assert_eq!(info.records, 3);
        journal.queue_removed("jobs", 2);
        journal.queue_put("jobs", 4, &m("late")).unwrap();
        close(journal, router);

        let (journal, router, restored) = open(dir.path());
        assert_eq!(restored.recovery.snapshot_records, 3);
        assert_eq!(restored.recovery.log_records, 2);
        let q = &restored.queues[0];
        let got: Vec<(u64, &[u8], bool)> = q.entries.iter().map(|e| (e.id, &e.message.payload[..], e.redelivered)).collect();
        assert_eq!(got, [(1, &b"j"[..], true), (3, &b"j"[..], false), (4, &b"late"[..], false)]);
        close(journal, router);
    }
}
