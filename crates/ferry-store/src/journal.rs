//! [`BrokerJournal`]: the core's [`Journal`] seam over the log. It encodes the core's
//! changes as records ([`crate::records`]), rebuilds the core's in-memory state from
//! the snapshot and the log when the broker starts, and writes snapshots of that state.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ferry_core::{
    Delivery, Journal, Lsn, MemoryRetained, Message, RestoredQueue, RestoredSession, RestoredWill, RetainedStore, Router, SessionKey,
    StorageUnavailable, SubscribeOptions, Subscription, TopicName, Wakeup,
};
use parking_lot::Mutex;
use tracing::info;

use crate::queue_records::{self, QUEUE_DELIVERED, QUEUE_PUT, QUEUE_REMOVED};
use crate::queues::StoredQueues;
use crate::records::{self, Decoded, RETAINED_CLEAR, RETAINED_SET};
use crate::session_records::{self, Outgoing, SessionRecord};
use crate::sessions::{Dropped, SessionCounts, StoredSessions};
use crate::{Recovery, SnapshotInfo, Store, StoreConfig, StoreError};

/// What [`BrokerJournal::open`] restored.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    /// What the log's recovery found and did.
    pub recovery: Recovery,
    /// Retained messages now in the store.
    pub retained: usize,
    /// Retained messages left out because they expired while the broker was down.
    pub expired: u64,
    /// Persistent sessions, for the MQTT adapter to take back.
    pub sessions: Vec<RestoredSession>,
    /// Delayed wills, for the MQTT adapter to schedule again.
    pub wills: Vec<RestoredWill>,
    /// What the sessions hold.
    pub session_counts: SessionCounts,
    /// Sessions and queued messages left out because they expired while the broker was
    /// down.
    pub sessions_dropped: Dropped,
    /// STOMP's durable queues, for the STOMP adapter to put back
    /// (`Queues::restore`).
    pub queues: Vec<RestoredQueue>,
    /// The messages those queues hold.
    pub queue_messages: usize,
    /// Queue messages left out because they expired while the broker was down.
    pub queue_messages_expired: u64,
    /// How long opening and replaying took.
    pub took: Duration,
}

/// The broker's journal: a [`Store`] written to through the core's [`Journal`] calls.
pub struct BrokerJournal {
    store: Store,
    /// The sessions' durable state. Every session record is appended to the store and
    /// applied here under this lock, so this is the log's state at its last position.
    sessions: Mutex<StoredSessions>,
    /// STOMP's durable queues, kept as the sessions are: every queue record is
    /// appended and applied here under this lock. Lock order: retained order →
    /// sessions → queues (only [`BrokerJournal::snapshot`] takes more than one).
    queues: Mutex<StoredQueues>,
}

impl std::fmt::Debug for BrokerJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerJournal").field("dir", &self.store.dir()).finish()
    }
}

/// Whether a poisoning reason is a full disk or the size limit.
fn is_full(reason: &str) -> bool {
    reason.contains("max_disk_bytes") || reason.contains("No space left") || reason.contains("disk full")
}

fn unavailable(e: StoreError) -> StorageUnavailable {
    match e {
        StoreError::Poisoned(p) => StorageUnavailable {
            full: is_full(&p.reason),
            reason: p.reason,
        },
        other => StorageUnavailable {
            full: false,
            reason: Arc::from(other.to_string()),
        },
    }
}

impl BrokerJournal {
    /// Opens the store in `config.dir` (see [`Store::open`]) and replays it into
    /// `retained`: the snapshot first, then the log after it.
    pub fn open(config: StoreConfig, retained: &MemoryRetained<Arc<Message>>) -> crate::Result<(Self, Restored)> {
        Self::open_with(config, Arc::new(crate::io::StdIo), retained)
    }

    /// [`BrokerJournal::open`] over the file-system layer `io` (tests inject faults).
    pub fn open_with(
        config: StoreConfig,
        io: Arc<dyn crate::io::StorageIo>,
        retained: &MemoryRetained<Arc<Message>>,
    ) -> crate::Result<(Self, Restored)> {
        let started = Instant::now();
        let mut expired = 0;
        let mut sessions = StoredSessions::default();
        // One reading of the clocks for the whole replay (expiry is converted against it).
        let (now, wall_now) = (Instant::now(), SystemTime::now());
        let mut queues = StoredQueues::default();
        let mut queue_messages_expired = 0;
        let (store, recovery) = Store::open_with(config, io, |record| {
            if queue_records::is_queue_kind(record.kind) {
                queue_messages_expired += u64::from(queues.apply(queue_records::decode_at(record.kind, record.body, now, wall_now)?));
                return Ok(());
            }
            if session_records::is_session_kind(record.kind) {
                sessions.apply(&SessionRecord::decode_at(record.kind, record.body, now, wall_now)?);
                return Ok(());
            }
            match records::decode_at(record.kind, record.body, now, wall_now)? {
                Decoded::RetainedSet(topic, Some(message)) => {
                    retained.set(topic, Arc::new(*message));
                }
                Decoded::RetainedSet(topic, None) => {
                    // Expired while the broker was down; a later record may set it again.
                    retained.remove(&topic);
                    expired += 1;
                }
                Decoded::RetainedClear(topic) => {
                    retained.remove(&topic);
                }
            }
            Ok(())
        })?;
        let (restored_sessions, detach, sessions_dropped) = sessions.restore(Instant::now(), SystemTime::now());
        let restored_wills = sessions.restore_wills();
        let restored_queues = queues.restored();
        let queue_messages = queues.messages();
        let journal = Self {
            store,
            sessions: Mutex::new(sessions),
            queues: Mutex::new(queues),
        };
        // Sessions that were online when the broker stopped are offline from now.
        for record in detach {
            journal
                .log(record)
                .map_err(|e| StoreError::Poisoned(crate::Poisoned { reason: e.reason }))?;
        }
        let restored = Restored {
            recovery,
            retained: retained.len(),
            expired,
            session_counts: journal.sessions.lock().counts(),
            sessions: restored_sessions,
            wills: restored_wills,
            sessions_dropped,
            queues: restored_queues,
            queue_messages,
            queue_messages_expired,
            took: started.elapsed(),
        };
        Ok((journal, restored))
    }

    /// Appends a session record and applies it to the sessions' state, in one order.
    fn log(&self, record: SessionRecord) -> Result<Lsn, StorageUnavailable> {
        let mut body = Vec::with_capacity(48);
        record.encode(&mut body);
        let mut sessions = self.sessions.lock();
        let lsn = self.store.append(record.kind(), &body).map_err(unavailable)?;
        sessions.apply(&record);
        Ok(lsn)
    }

    /// A lazy record: an error means the store is poisoned, which every later record
    /// that an acknowledgement waits for reports.
    fn log_lazily(&self, record: SessionRecord) {
        let _ = self.log(record);
    }

    /// Appends the record that `key`'s session holds `delivery`, with the message's
    /// body before it when the sessions' state has no body under the message's id (its
    /// first copy, or every earlier copy was acknowledged and the body let go): both
    /// under one hold of the sessions' lock, so that a snapshot, which takes that lock
    /// to read its position, never falls between a body and the copy that needs it.
    fn log_enqueued(&self, key: SessionKey, delivery: &Delivery) -> Result<Lsn, StorageUnavailable> {
        let message = &delivery.message;
        // The body's bytes, encoded before the lock when this is likely its first copy
        // (the id is patched in under the lock).
        let mut body_record = message.stored_id().is_none().then(|| encode_body(message));
        let record = |body| SessionRecord::Enqueued {
            key,
            body,
            qos: delivery.qos,
            retain: delivery.retain,
            subscription_ids: delivery.subscription_ids.clone(),
        };
        let mut sessions = self.sessions.lock();
        let body = match message.stored_id() {
            Some(id) if sessions.has_body(id) => id,
            known => {
                let id = known.unwrap_or_else(|| sessions.new_body());
                let mut bytes = body_record.take().unwrap_or_else(|| encode_body(message));
                // The id sits right after the format byte.
                bytes[1..9].copy_from_slice(&id.to_le_bytes());
                self.store.append(session_records::BODY, &bytes).map_err(unavailable)?;
                sessions.apply(&SessionRecord::Body {
                    id,
                    message: Some(message.clone()),
                });
                // Under the lock nobody else sets it meanwhile: this is `id`.
                let Ok(id) = message.stored_id_or(|| Ok::<_, std::convert::Infallible>(id));
                id
            }
        };
        let record = record(body);
        let mut bytes = Vec::with_capacity(48);
        record.encode(&mut bytes);
        let lsn = self.store.append(record.kind(), &bytes).map_err(unavailable)?;
        sessions.apply(&record);
        Ok(lsn)
    }

    /// Appends a queue record (kind `kind`, body written by `encode`) and applies it to
    /// the queues' state with `apply`, in one order.
    fn log_queue(
        &self,
        kind: u8,
        encode: impl FnOnce(&mut Vec<u8>),
        apply: impl FnOnce(&mut StoredQueues),
    ) -> Result<Lsn, StorageUnavailable> {
        let mut body = Vec::with_capacity(64);
        encode(&mut body);
        let mut queues = self.queues.lock();
        let lsn = self.store.append(kind, &body).map_err(unavailable)?;
        apply(&mut queues);
        Ok(lsn)
    }

    /// STOMP's durable queues now: how many hold messages, and how many messages.
    pub fn queue_counts(&self) -> (usize, usize) {
        let q = self.queues.lock();
        (q.queues(), q.messages())
    }

    /// What the persistent sessions hold now.
    pub fn session_counts(&self) -> SessionCounts {
        self.sessions.lock().counts()
    }

    /// The store underneath, for its counters and health.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Writes a snapshot of `router`'s durable state if one is due ([`Store::snapshot_due`]:
    /// the log moved into a new segment and outgrew the last snapshot, or grew by
    /// [`StoreConfig::snapshot_after_bytes`]), deleting the segments it
    /// covers. Blocking (it writes and syncs files): call it off the async threads.
    pub fn snapshot_if_due(&self, router: &Router) -> crate::Result<Option<SnapshotInfo>> {
        if !self.store.snapshot_due() {
            return Ok(None);
        }
        self.snapshot(router).map(Some)
    }

    /// Writes a snapshot of `router`'s durable state now (nothing if no record was
    /// written since the last one).
    pub fn snapshot(&self, router: &Router) -> crate::Result<SnapshotInfo> {
        // Both locks at once (retained order → sessions): no record is appended while the
        // position is read, so the snapshot covers exactly the records up to it.
        let ((lsn, session_records, queues), all) = router.retained_snapshot(|| {
            let sessions = self.sessions.lock();
            let queues = self.queues.lock();
            (self.store.last_lsn(), sessions.snapshot_records(), queues.copy())
        });
        let now = Instant::now();
        let mut w = self.store.begin_snapshot(lsn)?;
        let mut body = Vec::new();
        for m in all.iter().filter(|m| !m.is_expired(now)) {
            body.clear();
            records::encode_retained_set(m, &mut body);
            w.push(RETAINED_SET, &body)?;
        }
        for r in &session_records {
            body.clear();
            r.encode(&mut body);
            w.push(r.kind(), &body)?;
        }
        queues.write(|kind, body| w.push(kind, body))?;
        let info = w.finish()?;
        info!(
            lsn,
            retained = all.len(),
            session_records = session_records.len(),
            queue_messages = queues.len(),
            "storage: snapshot written"
        );
        Ok(info)
    }

    /// Writes what is queued and stops the writer; the error if the store was poisoned.
    pub fn close(self) -> Result<(), crate::Poisoned> {
        self.store.close()
    }
}

/// A BODY record of `message` with id 0 (the caller patches the id in at bytes 1..9).
fn encode_body(message: &Message) -> Vec<u8> {
    let mut body = Vec::with_capacity(48 + message.topic.as_str().len() + message.payload.len());
    SessionRecord::Body { id: 0, message: None }.encode(&mut body);
    records::encode_message(message, &mut body);
    body
}

impl Journal for BrokerJournal {
    fn retained_set(&self, message: &Message) -> Result<Lsn, StorageUnavailable> {
        let mut body = Vec::with_capacity(32 + message.topic.as_str().len() + message.payload.len());
        records::encode_retained_set(message, &mut body);
        self.store.append(RETAINED_SET, &body).map_err(unavailable)
    }

    fn retained_clear(&self, topic: &TopicName) -> Result<Lsn, StorageUnavailable> {
        let mut body = Vec::with_capacity(8 + topic.as_str().len());
        records::encode_retained_clear(topic, &mut body);
        self.store.append(RETAINED_CLEAR, &body).map_err(unavailable)
    }

    fn session_open(
        &self,
        key: Option<SessionKey>,
        client_id: &str,
        expiry: Option<Duration>,
    ) -> Result<(SessionKey, Lsn), StorageUnavailable> {
        let client_id: Arc<str> = Arc::from(client_id);
        let mut sessions = self.sessions.lock();
        let key = key.unwrap_or_else(|| sessions.new_key());
        let record = SessionRecord::Open { key, client_id, expiry };
        let mut body = Vec::with_capacity(32);
        record.encode(&mut body);
        let lsn = self.store.append(record.kind(), &body).map_err(unavailable)?;
        sessions.apply(&record);
        Ok((key, lsn))
    }

    fn session_detached(&self, key: SessionKey, expiry: Option<Duration>) {
        let expires_at_ms = expiry.map(|e| {
            let now = SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            u64::try_from(now.saturating_add(e).as_millis()).unwrap_or(u64::MAX - 1)
        });
        self.log_lazily(SessionRecord::Detached { key, expires_at_ms });
    }

    fn session_end(&self, key: SessionKey) {
        self.log_lazily(SessionRecord::End { key });
    }

    fn subscribed(
        &self,
        key: SessionKey,
        filter: &str,
        subscription: &Subscription,
        options: &SubscribeOptions,
    ) -> Result<Lsn, StorageUnavailable> {
        // A shared subscription's filter is read back the MQTT 5 way; a plain one is read
        // as a topic filter, which is what MQTT 3.1.1 made of it.
        self.log(SessionRecord::Subscribed {
            key,
            filter: filter.to_owned(),
            shared_syntax: matches!(subscription, Subscription::Shared(_)),
            options: *options,
        })
    }

    fn unsubscribed(&self, key: SessionKey, filter: &str) -> Result<Lsn, StorageUnavailable> {
        self.log(SessionRecord::Unsubscribed {
            key,
            filter: filter.to_owned(),
        })
    }

    fn enqueued(&self, key: SessionKey, delivery: &Delivery) -> Result<Lsn, StorageUnavailable> {
        self.log_enqueued(key, delivery)
    }

    fn sent(&self, key: SessionKey, message: &Message, pkid: u16) {
        if let Some(body) = message.stored_id() {
            self.log_lazily(SessionRecord::Outgoing {
                key,
                pkid,
                stage: Outgoing::Sent { body },
            });
        }
    }

    fn released(&self, key: SessionKey, pkid: u16) {
        self.log_lazily(SessionRecord::Outgoing {
            key,
            pkid,
            stage: Outgoing::Released,
        });
    }

    fn acked(&self, key: SessionKey, message: &Message) {
        if let Some(body) = message.stored_id() {
            self.log_lazily(SessionRecord::Acked { key, body });
        }
    }

    fn qos2_received(&self, key: SessionKey, pkid: u16) -> Result<Lsn, StorageUnavailable> {
        self.log(SessionRecord::Incoming { key, pkid, received: true })
    }

    fn qos2_released(&self, key: SessionKey, pkid: u16) -> Result<Lsn, StorageUnavailable> {
        self.log(SessionRecord::Incoming {
            key,
            pkid,
            received: false,
        })
    }

    fn will_delayed(&self, client_id: &str, message: &Arc<Message>, delay: Duration) {
        let now = SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let at_ms = u64::try_from(now.saturating_add(delay).as_millis()).unwrap_or(u64::MAX);
        self.log_lazily(SessionRecord::WillDelayed {
            client_id: Arc::from(client_id),
            at_ms,
            message: Some(message.clone()),
        });
    }

    fn will_done(&self, client_id: &str) {
        self.log_lazily(SessionRecord::WillDone {
            client_id: Arc::from(client_id),
        });
    }

    fn durable_lsn(&self) -> Lsn {
        self.store.durable_lsn()
    }

    fn when_durable(&self, lsn: Lsn, wakeup: Wakeup) {
        self.store.on_durable(lsn, move |_| wakeup.wake());
    }

    fn health(&self) -> Result<(), StorageUnavailable> {
        self.store.health().map_err(|p| StorageUnavailable {
            full: is_full(&p.reason),
            reason: p.reason,
        })
    }

    fn queue_put(&self, queue: &str, entry: u64, message: &Arc<Message>) -> Result<Lsn, StorageUnavailable> {
        self.log_queue(
            QUEUE_PUT,
            |body| queue_records::encode_put(queue, entry, false, message, body),
            |q| q.put(queue, entry, message.clone(), false),
        )
    }

    fn queue_delivered(&self, queue: &str, entry: u64) {
        // Lazy: an error means the store is poisoned, which the next put reports.
        let _ = self.log_queue(
            QUEUE_DELIVERED,
            |body| queue_records::encode_delivered(queue, entry, body),
            |q| q.delivered(queue, entry),
        );
    }

    fn queue_removed(&self, queue: &str, entry: u64) {
        let _ = self.log_queue(
            QUEUE_REMOVED,
            |body| queue_records::encode_removed(queue, entry, body),
            |q| q.removed(queue, entry),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ferry_core::{QoS, TopicFilter};

    fn retained(topic: &str, payload: &'static [u8]) -> Arc<Message> {
        Arc::new(Message::new(
            TopicName::new(topic).unwrap(),
            Bytes::from_static(payload),
            QoS::AtLeastOnce,
            true,
        ))
    }

    fn open(dir: &std::path::Path) -> (Arc<BrokerJournal>, Arc<MemoryRetained<Arc<Message>>>, Router, Restored) {
        let memory = Arc::new(MemoryRetained::new());
        let (journal, restored) = BrokerJournal::open(StoreConfig::new(dir), &memory).unwrap();
        let journal = Arc::new(journal);
        let router = Router::new(memory.clone()).with_journal(journal.clone());
        (journal, memory, router, restored)
    }

    fn topics(memory: &MemoryRetained<Arc<Message>>) -> Vec<(String, Bytes)> {
        let mut all: Vec<_> = memory
            .matching(&TopicFilter::new("#").unwrap())
            .into_iter()
            .map(|(t, m)| (t.to_string(), m.payload.clone()))
            .collect();
        all.sort();
        all
    }

    #[test]
    fn retained_changes_survive_a_reopen_through_the_router() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _, router, restored) = open(dir.path());
        assert_eq!(restored.retained, 0);
        let now = Instant::now();
        let a = router.publish_durable(retained("a", b"1"), now).unwrap();
        router.publish_durable(retained("b", b"2"), now).unwrap();
        router.publish_durable(retained("a", b"3"), now).unwrap();
        let clear = router.publish_durable(retained("b", b""), now).unwrap();
        let none = router.publish_durable(retained("never/set", b""), now).unwrap();
        assert!(a.durable_at.is_some() && clear.durable_at > a.durable_at);
        assert_eq!(none.durable_at, None, "clearing nothing writes nothing");
        let last = clear.durable_at.unwrap();
        journal.store().wait_durable(last).unwrap();
        drop(router);
        Arc::try_unwrap(journal).unwrap().close().unwrap();
        let (_, memory, _, restored) = open(dir.path());
        assert_eq!(restored.recovery.log_records, 4);
        assert_eq!(topics(&memory), [("a".to_owned(), Bytes::from_static(b"3"))]);
    }

    #[test]
    fn a_snapshot_replaces_the_log_and_later_records_replay_on_top() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _, router, _) = open(dir.path());
        let now = Instant::now();
        for i in 0..100u32 {
            let topic = format!("t/{}", i % 10);
            let m = Arc::new(Message::new(
                TopicName::new(&topic).unwrap(),
                Bytes::from(i.to_string()),
                QoS::AtMostOnce,
                true,
            ));
            router.publish_durable(m, now).unwrap();
        }
        let info = journal.snapshot(&router).unwrap();
        assert_eq!(info.records, 10);
        let inspected = crate::inspect(dir.path()).unwrap();
        assert_eq!(inspected.live_bytes, info.bytes, "inspect's live state is what the snapshot wrote");
        router.publish_durable(retained("t/0", b""), now).unwrap();
        let last = router.publish_durable(retained("$app/x", b"dollar"), now).unwrap();
        journal.store().wait_durable(last.durable_at.unwrap()).unwrap();
        drop(router);
        Arc::try_unwrap(journal).unwrap().close().unwrap();
        let (_, memory, _, restored) = open(dir.path());
        assert_eq!(restored.recovery.snapshot_records, 10);
        assert_eq!(restored.recovery.log_records, 2);
        assert_eq!(restored.retained, 10, "t/1..t/9 and $app/x");
        let t = topics(&memory);
        assert_eq!(t.len(), 9, "# leaves out $app/x");
        assert_eq!(t[0], ("t/1".to_owned(), Bytes::from_static(b"91")));
        assert!(memory.get(&TopicName::new("$app/x").unwrap()).is_some());
    }

    #[test]
    fn a_poisoned_journal_refuses_and_leaves_memory_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let io = crate::io::FaultyIo::new();
        let faults = io.faults();
        let memory = Arc::new(MemoryRetained::new());
        let (journal, _) = BrokerJournal::open_with(StoreConfig::new(dir.path()), Arc::new(io), &memory).unwrap();
        let journal = Arc::new(journal);
        let router = Router::new(memory.clone()).with_journal(journal.clone());
        let now = Instant::now();
        let first = router.publish_durable(retained("kept", b"1"), now).unwrap();
        journal.store().wait_durable(first.durable_at.unwrap()).unwrap();
        faults.fail_sync(1);
        let second = router.publish_durable(retained("lost", b"2"), now).unwrap();
        assert!(journal.store().wait_durable(second.durable_at.unwrap()).is_err());
        let e = journal.health().unwrap_err();
        assert!(!e.full);
        let refused = router.publish_durable(retained("kept", b"3"), now).unwrap_err();
        assert_eq!(refused, e);
        assert_eq!(memory.get(&TopicName::new("kept").unwrap()).unwrap().payload, "1");
        // What needs no disk still goes.
        let live = Arc::new(Message::new(TopicName::new("live").unwrap(), Bytes::new(), QoS::AtLeastOnce, false));
        assert!(router.publish_durable(live, now).is_ok());
    }

    #[test]
    fn a_publish_to_a_persistent_session_waits_for_the_disk_and_is_refused_once_it_failed() {
        use ferry_core::{Outbox, OutboxLimits, SubscribeOptions, Subscriber, Subscription};
        let dir = tempfile::tempdir().unwrap();
        let io = crate::io::FaultyIo::new();
        let faults = io.faults();
        let memory = Arc::new(MemoryRetained::new());
        let (journal, _) = BrokerJournal::open_with(StoreConfig::new(dir.path()), Arc::new(io), &memory).unwrap();
        let journal = Arc::new(journal);
        let router = Router::new(memory).with_journal(journal.clone());
        let (key, _) = journal.session_open(None, "dev", None).unwrap();
        let outbox = Arc::new(Outbox::new(OutboxLimits::default()));
        let subscription = Subscription::parse("t/#").unwrap();
        let options = SubscribeOptions {
            qos: QoS::AtLeastOnce,
            ..Default::default()
        };
        journal.subscribed(key, "t/#", &subscription, &options).unwrap();
        router.subscribe(
            &subscription,
            Subscriber {
                id: 1,
                outbox: outbox.clone(),
                options,
                durable: Some(key),
            },
        );
        let now = Instant::now();
        let message = |p: &'static [u8]| {
            Arc::new(Message::new(
                TopicName::new("t/a").unwrap(),
                Bytes::from_static(p),
                QoS::AtLeastOnce,
                false,
            ))
        };
        let first = router.publish_durable(message(b"1"), now).unwrap();
        let at = first.durable_at.expect("the ack waits for the queued copy");
        journal.store().wait_durable(at).unwrap();
        // QoS 0 to the same session never touches the disk.
        let q0 = Arc::new(Message::new(TopicName::new("t/a").unwrap(), Bytes::new(), QoS::AtMostOnce, false));
        assert_eq!(router.publish_durable(q0, now).unwrap().durable_at, None);
        faults.fail_sync(1);
        // Refused at once (the writer synced the body alone and failed before the queued
        // copy was appended) or its position never becomes durable: either way no ack.
        match router.publish_durable(message(b"2"), now) {
            Ok(second) => assert!(journal.store().wait_durable(second.durable_at.unwrap()).is_err(), "no ack"),
            Err(e) => assert!(!e.full),
        }
        let refused = router.publish_durable(message(b"3"), now).unwrap_err();
        assert!(!refused.full);
        drop(router);
        // What was acknowledged is back after a reopen; what was refused is not.
        let journal = Arc::try_unwrap(journal).unwrap();
        let _ = journal.close();
        let memory = MemoryRetained::new();
        let (_, restored) = BrokerJournal::open(StoreConfig::new(dir.path()), &memory).unwrap();
        let held: Vec<Bytes> = restored.sessions[0]
            .messages
            .iter()
            .map(|m| m.delivery.message.payload.clone())
            .collect();
        assert_eq!(held[0], Bytes::from_static(b"1"));
        assert!(!held.contains(&Bytes::from_static(b"3")));
    }

    /// A message two sessions hold, acknowledged by the first before the second's copy
    /// was logged (fan-out racing a fast subscriber), with or without a snapshot
    /// between: the second copy is back after a reopen, its body with it.
    #[test]
    fn a_body_let_go_by_one_session_is_written_again_for_the_next() {
        use ferry_core::Delivery;
        for snapshot_between in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let (journal, _, router, _) = open(dir.path());
            let (first, _) = journal.session_open(None, "first", None).unwrap();
            let (second, _) = journal.session_open(None, "second", None).unwrap();
            let message = Arc::new(Message::new(
                TopicName::new("t/a").unwrap(),
                Bytes::from_static(b"kept"),
                QoS::AtLeastOnce,
                false,
            ));
            let delivery = Delivery {
                message: message.clone(),
                qos: QoS::AtLeastOnce,
                retain: false,
                subscription_ids: Vec::new(),
            };
            journal.enqueued(first, &delivery).unwrap();
            let id = message.stored_id().expect("the body was written");
            journal.sent(first, &message, 1);
            journal.acked(first, &message);
            assert_eq!(journal.session_counts().bodies, 0, "nobody holds the body now");
            if snapshot_between {
                journal.snapshot(&router).unwrap();
            }
            let last = journal.enqueued(second, &delivery).unwrap();
            assert_eq!(message.stored_id(), Some(id), "written again under its id");
            journal.store().wait_durable(last).unwrap();
            drop(router);
            Arc::try_unwrap(journal).unwrap().close().unwrap();
            let (_, _, _, restored) = open(dir.path());
            let held = |client: &str| {
                restored
                    .sessions
                    .iter()
                    .find(|s| &*s.client_id == client)
                    .map(|s| s.messages.iter().map(|m| m.delivery.message.payload.clone()).collect::<Vec<_>>())
                    .unwrap()
            };
            assert!(held("first").is_empty(), "snapshot between: {snapshot_between}");
            assert_eq!(
                held("second"),
                [Bytes::from_static(b"kept")],
                "snapshot between: {snapshot_between}"
            );
        }
    }
}
