//! The durable state of persistent sessions as the journal's records describe it: a
//! "shadow" of what the MQTT adapter keeps live, rebuilt from the snapshot and the log
//! at start, updated under one lock in the order records are appended, and written out
//! whole as a snapshot's session records. Message bodies are counted by reference: a
//! body stays while a session holds it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_core::{Delivery, Message, QoS, RestoredDelivery, RestoredSession, RestoredWill, SessionKey, SubscribeOptions};
use tracing::warn;

use crate::session_records::{subscription_of, Outgoing, SessionRecord};

/// A message body and how many queued copies name it.
#[derive(Debug)]
struct Body {
    /// `None`: it expired while the broker was down.
    message: Option<Arc<Message>>,
    refs: u32,
}

/// One message a session holds.
#[derive(Debug, Clone)]
struct Queued {
    body: u64,
    qos: QoS,
    retain: bool,
    subscription_ids: Vec<u32>,
    pkid: Option<u16>,
    released: bool,
}

/// One persistent session.
#[derive(Debug, Default)]
struct Stored {
    client_id: Arc<str>,
    expiry: Option<Duration>,
    /// `None` while online; else when it is forgotten (ms since the epoch; inner
    /// `None`: never).
    detached: Option<Option<u64>>,
    /// Filter as sent → (read the MQTT 5 way, options).
    subscriptions: BTreeMap<String, (bool, SubscribeOptions)>,
    queue: VecDeque<Queued>,
    /// Every message before this index in `queue` was sent (has a packet id): where a
    /// SENT record's message is looked for first (sending goes in queue order).
    sent_prefix: usize,
    incoming: BTreeSet<u16>,
}

/// Counts of what the sessions hold, for logs and `ferry storage inspect`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCounts {
    /// Persistent sessions.
    pub sessions: usize,
    /// Their subscriptions.
    pub subscriptions: usize,
    /// Messages they hold (queued and in flight).
    pub messages: usize,
    /// Distinct message bodies.
    pub bodies: usize,
    /// Delayed wills waiting.
    pub wills: usize,
}

/// What [`StoredSessions::restore`] dropped because time passed while the broker was
/// down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Sessions whose expiry passed.
    pub sessions: usize,
    /// Messages whose expiry passed.
    pub messages: usize,
}

/// The sessions' durable state.
#[derive(Debug, Default)]
pub(crate) struct StoredSessions {
    /// Delayed wills by client: when due (ms since the epoch) and the will (`None`: it
    /// expired while the broker was down).
    wills: BTreeMap<Arc<str>, (u64, Option<Arc<Message>>)>,
    sessions: HashMap<SessionKey, Stored, Fast>,
    bodies: HashMap<u64, Body, Fast>,
    next_key: SessionKey,
    next_body: u64,
}

/// A fast hasher: the keys are the journal's own numbers, not a peer's input.
type Fast = foldhash::fast::RandomState;

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl StoredSessions {
    /// A key no session has.
    pub(crate) fn new_key(&mut self) -> SessionKey {
        self.next_key = self.next_key.max(1);
        let key = self.next_key;
        self.next_key += 1;
        key
    }

    /// An id no body has.
    pub(crate) fn new_body(&mut self) -> u64 {
        self.next_body = self.next_body.max(1);
        let id = self.next_body;
        self.next_body += 1;
        id
    }

    /// Whether a body is held under `id` (a copy names it, or it was just written).
    pub(crate) fn has_body(&self, id: u64) -> bool {
        self.bodies.contains_key(&id)
    }

    fn release(bodies: &mut HashMap<u64, Body, Fast>, id: u64) {
        if let Some(b) = bodies.get_mut(&id) {
            b.refs = b.refs.saturating_sub(1);
            if b.refs == 0 {
                bodies.remove(&id);
            }
        }
    }

    /// Applies one record. A record naming a session or body that is gone is ignored
    /// (a lazy acknowledgement of a session that ended meanwhile).
    pub(crate) fn apply(&mut self, record: &SessionRecord) {
        match record {
            SessionRecord::Body { id, message } => {
                self.next_body = self.next_body.max(id.saturating_add(1));
                self.bodies.entry(*id).or_insert(Body {
                    message: message.clone(),
                    refs: 0,
                });
            }
            SessionRecord::Open { key, client_id, expiry } => {
                self.next_key = self.next_key.max(key.saturating_add(1));
                let s = self.sessions.entry(*key).or_default();
                s.client_id = client_id.clone();
                s.expiry = *expiry;
                s.detached = None;
            }
            SessionRecord::Detached { key, expires_at_ms } => {
                if let Some(s) = self.sessions.get_mut(key) {
                    s.detached = Some(*expires_at_ms);
                }
            }
            SessionRecord::End { key } => {
                if let Some(s) = self.sessions.remove(key) {
                    for q in s.queue {
                        Self::release(&mut self.bodies, q.body);
                    }
                }
            }
            SessionRecord::Subscribed {
                key,
                filter,
                shared_syntax,
                options,
            } => {
                if let Some(s) = self.sessions.get_mut(key) {
                    s.subscriptions.insert(filter.clone(), (*shared_syntax, *options));
                }
            }
            SessionRecord::Unsubscribed { key, filter } => {
                if let Some(s) = self.sessions.get_mut(key) {
                    s.subscriptions.remove(filter);
                }
            }
            SessionRecord::Enqueued {
                key,
                body,
                qos,
                retain,
                subscription_ids,
            } => {
                let Some(b) = self.bodies.get_mut(body) else { return };
                let Some(s) = self.sessions.get_mut(key) else {
                    // The session ended meanwhile: a body only it was to hold goes.
                    if b.refs == 0 {
                        self.bodies.remove(body);
                    }
                    return;
                };
                b.refs += 1;
                s.queue.push_back(Queued {
                    body: *body,
                    qos: *qos,
                    retain: *retain,
                    subscription_ids: subscription_ids.clone(),
                    pkid: None,
                    released: false,
                });
            }
            SessionRecord::Outgoing { key, pkid, stage } => {
                let Some(s) = self.sessions.get_mut(key) else { return };
                match stage {
                    Outgoing::Sent { body } => {
                        let from = s.sent_prefix.min(s.queue.len());
                        if let Some(q) = s.queue.range_mut(from..).find(|q| q.body == *body && q.pkid.is_none()) {
                            q.pkid = Some(*pkid);
                        }
                        while s.queue.get(s.sent_prefix).is_some_and(|q| q.pkid.is_some()) {
                            s.sent_prefix += 1;
                        }
                    }
                    Outgoing::Released => {
                        if let Some(q) = s.queue.iter_mut().find(|q| q.pkid == Some(*pkid)) {
                            q.released = true;
                        }
                    }
                }
            }
            SessionRecord::Incoming { key, pkid, received } => {
                if let Some(s) = self.sessions.get_mut(key) {
                    if *received {
                        s.incoming.insert(*pkid);
                    } else {
                        s.incoming.remove(pkid);
                    }
                }
            }
            SessionRecord::WillDelayed { client_id, at_ms, message } => {
                self.wills.insert(client_id.clone(), (*at_ms, message.clone()));
            }
            SessionRecord::WillDone { client_id } => {
                self.wills.remove(client_id);
            }
            SessionRecord::Acked { key, body } => {
                let Some(s) = self.sessions.get_mut(key) else { return };
                if let Some(i) = s.queue.iter().position(|q| q.body == *body) {
                    s.queue.remove(i);
                    if i < s.sent_prefix {
                        s.sent_prefix -= 1;
                    }
                    Self::release(&mut self.bodies, *body);
                }
            }
        }
    }

    /// The whole state as records, in an order [`StoredSessions::apply`] rebuilds it
    /// from: the bodies still held, then each session with its subscriptions, its
    /// incoming QoS 2 ids and its messages.
    pub(crate) fn snapshot_records(&self) -> Vec<SessionRecord> {
        let mut out = Vec::with_capacity(self.bodies.len() + self.sessions.len() * 4);
        let mut bodies: Vec<(&u64, &Body)> = self.bodies.iter().filter(|(_, b)| b.refs > 0).collect();
        bodies.sort_unstable_by_key(|(id, _)| **id);
        for (id, b) in bodies {
            if let Some(m) = &b.message {
                out.push(SessionRecord::Body {
                    id: *id,
                    message: Some(m.clone()),
                });
            }
        }
        for (client_id, (at_ms, message)) in &self.wills {
            if message.is_some() {
                out.push(SessionRecord::WillDelayed {
                    client_id: client_id.clone(),
                    at_ms: *at_ms,
                    message: message.clone(),
                });
            }
        }
        let mut keys: Vec<&SessionKey> = self.sessions.keys().collect();
        keys.sort_unstable();
        for key in keys {
            let Some(s) = self.sessions.get(key) else { continue };
            let key = *key;
            out.push(SessionRecord::Open {
                key,
                client_id: s.client_id.clone(),
                expiry: s.expiry,
            });
            if let Some(expires_at_ms) = s.detached {
                out.push(SessionRecord::Detached { key, expires_at_ms });
            }
            for (filter, (shared_syntax, options)) in &s.subscriptions {
                out.push(SessionRecord::Subscribed {
                    key,
                    filter: filter.clone(),
                    shared_syntax: *shared_syntax,
                    options: *options,
                });
            }
            for pkid in &s.incoming {
                out.push(SessionRecord::Incoming {
                    key,
                    pkid: *pkid,
                    received: true,
                });
            }
            for q in &s.queue {
                out.push(SessionRecord::Enqueued {
                    key,
                    body: q.body,
                    qos: q.qos,
                    retain: q.retain,
                    subscription_ids: q.subscription_ids.clone(),
                });
                if let Some(pkid) = q.pkid {
                    out.push(SessionRecord::Outgoing {
                        key,
                        pkid,
                        stage: Outgoing::Sent { body: q.body },
                    });
                    if q.released {
                        out.push(SessionRecord::Outgoing {
                            key,
                            pkid,
                            stage: Outgoing::Released,
                        });
                    }
                }
            }
        }
        out
    }

    /// Counts of what is held.
    pub(crate) fn counts(&self) -> SessionCounts {
        SessionCounts {
            sessions: self.sessions.len(),
            subscriptions: self.sessions.values().map(|s| s.subscriptions.len()).sum(),
            messages: self.sessions.values().map(|s| s.queue.len()).sum(),
            bodies: self.bodies.len(),
            wills: self.wills.len(),
        }
    }

    /// After replay, at start (`now` and `wall_now` the same moment): drops the
    /// sessions and messages whose expiry passed while the broker was down, marks the
    /// sessions that were online as offline from now (returned as the [`Detached`]
    /// records to log, so that another restart does not extend their expiry again), and
    /// returns every session for its adapter.
    ///
    /// [`Detached`]: SessionRecord::Detached
    pub(crate) fn restore(&mut self, now: Instant, wall_now: SystemTime) -> (Vec<RestoredSession>, Vec<SessionRecord>, Dropped) {
        let wall_ms = unix_ms(wall_now);
        let mut dropped = Dropped::default();
        let mut detach = Vec::new();
        let mut gone = Vec::new();
        for (key, s) in &mut self.sessions {
            if s.detached.is_none() {
                let at = s
                    .expiry
                    .map(|e| unix_ms(wall_now.checked_add(e).unwrap_or(UNIX_EPOCH + Duration::from_millis(u64::MAX - 1))));
                s.detached = Some(at);
                detach.push(SessionRecord::Detached {
                    key: *key,
                    expires_at_ms: at,
                });
            }
            if s.detached.flatten().is_some_and(|at| at <= wall_ms) {
                gone.push(*key);
            }
        }
        for key in gone {
            if let Some(s) = self.sessions.remove(&key) {
                dropped.sessions += 1;
                for q in s.queue {
                    Self::release(&mut self.bodies, q.body);
                }
            }
        }
        let mut restored = Vec::with_capacity(self.sessions.len());
        for (key, s) in &mut self.sessions {
            let bodies = &mut self.bodies;
            let before = s.queue.len();
            s.sent_prefix = 0;
            s.queue.retain(|q| {
                let live = bodies
                    .get(&q.body)
                    .is_some_and(|b| b.message.as_ref().is_some_and(|m| !m.is_expired(now)));
                if !live {
                    Self::release(bodies, q.body);
                }
                live
            });
            dropped.messages += before - s.queue.len();
            let mut subscriptions = Vec::with_capacity(s.subscriptions.len());
            for (filter, (shared_syntax, options)) in &s.subscriptions {
                match subscription_of(filter, *shared_syntax) {
                    Ok(sub) => subscriptions.push((filter.clone(), sub, *options)),
                    Err(e) => {
                        warn!(client = %s.client_id, filter, error = %e, "storage: a stored subscription is not a valid filter; left out")
                    }
                }
            }
            let messages = s
                .queue
                .iter()
                .filter_map(|q| {
                    let message = bodies.get(&q.body)?.message.clone()?;
                    Some(RestoredDelivery {
                        delivery: Delivery {
                            message,
                            qos: q.qos,
                            retain: q.retain,
                            subscription_ids: q.subscription_ids.clone(),
                        },
                        pkid: q.pkid,
                        released: q.released,
                    })
                })
                .collect();
            restored.push(RestoredSession {
                key: *key,
                client_id: s.client_id.clone(),
                expiry: s.expiry,
                expires_at: s.detached.flatten().map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
                subscriptions,
                messages,
                incoming_qos2: s.incoming.iter().copied().collect(),
            });
        }
        restored.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        (restored, detach, dropped)
    }

    /// The delayed wills held (after replay, at start), with their wall-clock times;
    /// one whose message expired while the broker was down is left out (and forgotten).
    pub(crate) fn restore_wills(&mut self) -> Vec<RestoredWill> {
        self.wills.retain(|_, (_, m)| m.is_some());
        self.wills
            .iter()
            .filter_map(|(client_id, (at_ms, m))| {
                Some(RestoredWill {
                    client_id: client_id.clone(),
                    message: m.clone()?,
                    at: UNIX_EPOCH + Duration::from_millis(*at_ms),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ferry_core::TopicName;

    fn message(id: u64, expiry: Option<ferry_core::Expiry>) -> Arc<Message> {
        Arc::new(
            Message::new(TopicName::new("t").unwrap(), Bytes::from(id.to_string()), QoS::AtLeastOnce, false)
                .with_expiry(expiry)
                .with_stored_id(id),
        )
    }

    fn enqueue(key: SessionKey, body: u64) -> SessionRecord {
        SessionRecord::Enqueued {
            key,
            body,
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: vec![],
        }
    }

    fn open(key: SessionKey, client: &str, expiry: Option<Duration>) -> SessionRecord {
        SessionRecord::Open {
            key,
            client_id: Arc::from(client),
            expiry,
        }
    }

    #[test]
    fn a_body_lives_while_a_session_holds_it() {
        let mut s = StoredSessions::default();
        s.apply(&open(1, "a", None));
        s.apply(&open(2, "b", None));
        s.apply(&SessionRecord::Body {
            id: 1,
            message: Some(message(1, None)),
        });
        s.apply(&enqueue(1, 1));
        s.apply(&enqueue(2, 1));
        assert_eq!(s.counts().bodies, 1);
        assert_eq!(s.counts().messages, 2);
        s.apply(&SessionRecord::Acked { key: 1, body: 1 });
        assert_eq!(s.counts().bodies, 1, "b still holds it");
        s.apply(&SessionRecord::End { key: 2 });
        assert_eq!(
            s.counts(),
            SessionCounts {
                sessions: 1,
                subscriptions: 0,
                messages: 0,
                bodies: 0,
                wills: 0,
            }
        );
        // A lazy ack of a session that is gone is ignored.
        s.apply(&SessionRecord::Acked { key: 2, body: 1 });
    }

    #[test]
    fn a_snapshot_rebuilds_the_same_state() {
        let mut s = StoredSessions::default();
        s.apply(&open(1, "a", Some(Duration::from_secs(60))));
        s.apply(&SessionRecord::Subscribed {
            key: 1,
            filter: "a/#".into(),
            shared_syntax: true,
            options: SubscribeOptions {
                qos: QoS::AtLeastOnce,
                ..Default::default()
            },
        });
        for id in 1..=3 {
            s.apply(&SessionRecord::Body {
                id,
                message: Some(message(id, None)),
            });
            s.apply(&enqueue(1, id));
        }
        s.apply(&SessionRecord::Outgoing {
            key: 1,
            pkid: 10,
            stage: Outgoing::Sent { body: 1 },
        });
        s.apply(&SessionRecord::Outgoing {
            key: 1,
            pkid: 10,
            stage: Outgoing::Released,
        });
        s.apply(&SessionRecord::Incoming {
            key: 1,
            pkid: 4,
            received: true,
        });
        s.apply(&SessionRecord::Acked { key: 1, body: 2 });
        s.apply(&SessionRecord::WillDelayed {
            client_id: Arc::from("a"),
            at_ms: 1,
            message: Some(message(9, None)),
        });
        s.apply(&SessionRecord::WillDelayed {
            client_id: Arc::from("b"),
            at_ms: 2,
            message: Some(message(10, None)),
        });
        s.apply(&SessionRecord::WillDone { client_id: Arc::from("b") });
        let mut again = StoredSessions::default();
        for r in s.snapshot_records() {
            again.apply(&r);
        }
        assert_eq!(again.counts(), s.counts());
        assert_eq!(again.counts().wills, 1, "the cancelled will is not in the snapshot");
        let wills = again.restore_wills();
        assert_eq!((&*wills[0].client_id, wills[0].at), ("a", UNIX_EPOCH + Duration::from_millis(1)));
        let now = Instant::now();
        let wall = SystemTime::now();
        let (a, _, _) = s.restore(now, wall);
        let (b, detach, _) = again.restore(now, wall);
        assert_eq!(detach.len(), 1, "it was online: it is detached from now");
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        let r = &b[0];
        assert_eq!(r.subscriptions.len(), 1);
        assert_eq!(r.incoming_qos2, [4]);
        let held: Vec<_> = r
            .messages
            .iter()
            .map(|m| (m.delivery.message.payload.clone(), m.pkid, m.released))
            .collect();
        assert_eq!(held, [(Bytes::from("1"), Some(10), true), (Bytes::from("3"), None, false)]);
        assert!(r.expires_at.is_some_and(|at| at > wall));
        assert_eq!(again.new_key(), 2);
        assert_eq!(again.new_body(), 4);
    }

    #[test]
    fn restore_drops_what_expired_while_the_broker_was_down() {
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut s = StoredSessions::default();
        s.apply(&open(1, "gone", Some(Duration::from_secs(10))));
        s.apply(&SessionRecord::Detached {
            key: 1,
            expires_at_ms: Some(unix_ms(wall) - 1),
        });
        s.apply(&open(2, "kept", None));
        s.apply(&SessionRecord::Body {
            id: 1,
            message: Some(message(1, None)),
        });
        s.apply(&SessionRecord::Body { id: 2, message: None });
        s.apply(&enqueue(1, 1));
        s.apply(&enqueue(2, 1));
        s.apply(&enqueue(2, 2));
        let (restored, _, dropped) = s.restore(now, wall);
        assert_eq!(dropped, Dropped { sessions: 1, messages: 1 });
        assert_eq!(restored.len(), 1);
        assert_eq!(&*restored[0].client_id, "kept");
        assert_eq!(restored[0].expires_at, None);
        assert_eq!(restored[0].messages.len(), 1);
        assert_eq!(s.counts().bodies, 1);
    }
}
