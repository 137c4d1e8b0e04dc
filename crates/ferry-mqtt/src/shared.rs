//! State every MQTT connection shares: the core's router, the registry of persistent
//! sessions, wills waiting for their delay, and the adapter's counters. Time-driven
//! work (session expiry, delayed wills) happens in [`MqttShared::tick`], which the
//! binary calls periodically with the current time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use ferry_auth::{CoreParts, Gatekeeper};
use ferry_core::{
    Journal, Lsn, Message, MovedSession, OutboxLimits, RestoredSession, RestoredWill, Router, SessionHandoff, SessionOwnership,
    SessionRegistry, SessionSlot, SessionStore, Subscriber, Subscription, TopicFilter,
};
use parking_lot::Mutex;
use tracing::{info, warn};

use crate::config::MqttConfig;
use crate::session_state::{InFlight, SessionState, Stage};

/// A will waiting for its delay interval (MQTT 5 §3.1.3.2).
#[derive(Debug)]
struct PendingWill {
    at: Instant,
    client_id: Arc<str>,
    message: Arc<Message>,
}

ferry_core::counters! {
    /// Counters of the MQTT adapter.
    pub struct MqttStats {
        connects: Counter("mqtt_connects", "MQTT CONNECTs accepted"),
        refused: Counter("mqtt_connects_refused", "MQTT CONNECTs refused"),
        protocol_errors: Counter("mqtt_protocol_errors", "MQTT connections closed for a protocol violation"),
        keep_alive_timeouts: Counter("mqtt_keep_alive_timeouts", "MQTT connections closed for silence past 1.5 keep-alives"),
        acks_held: Counter("mqtt_acks_held", "MQTT PUBACKs and PUBRECs held until the journal had their retained message on disk"),
        storage_refused: Counter("mqtt_publishes_refused_storage", "MQTT publishes refused because they needed the disk and storage was unavailable"),
        wills: Counter("mqtt_wills", "MQTT will messages published"),
        publishes_in: Counter("mqtt_publishes_received", "MQTT PUBLISH packets received"),
        publishes_out: Counter("mqtt_publishes_sent", "MQTT PUBLISH packets sent"),
        too_large_for_client: Counter("mqtt_too_large_for_client", "MQTT messages not sent because they exceed the client's maximum packet size"),
        too_large_unauthenticated: Counter("mqtt_too_large_unauthenticated", "MQTT connections closed for input beyond mqtt.max_packet_size_unauthenticated before authentication"),
        will_denied: Counter("mqtt_will_denied", "MQTT CONNECTs refused because the ACL denies the will topic"),
        text_frames: Counter("mqtt_text_frames", "MQTT connections closed for sending a packet in a WebSocket text frame"),
        handed_off: Counter("mqtt_sessions_handed_off", "MQTT sessions handed to another node of the cluster (its client connected there)"),
        adopted: Counter("mqtt_sessions_adopted", "MQTT sessions taken from another node of the cluster"),
        adopt_dropped: Counter("mqtt_adopted_messages_dropped", "Messages of a session taken from another node that did not fit its queue"),
    }
}

/// The MQTT adapter's shared state.
pub struct MqttShared {
    /// The broker-wide router (shared with the other protocols).
    pub router: Arc<Router>,
    /// Persistent sessions by client id (in memory until durable storage exists).
    pub sessions: Arc<dyn SessionStore<SessionState>>,
    /// The adapter's settings.
    pub config: MqttConfig,
    /// Counters.
    pub stats: MqttStats,
    /// Authentication, ACL and per-connection limits.
    pub gate: Arc<Gatekeeper>,
    wills: Mutex<Vec<PendingWill>>,
    next_client: AtomicU64,
    ownership: OnceLock<Arc<dyn SessionOwnership>>,
}

impl MqttShared {
    /// Shared state built from the broker-wide `parts`, sessions kept in memory (bounded
    /// by the `[mqtt]` queue limits).
    pub fn new(parts: CoreParts, config: MqttConfig) -> Self {
        let limits = OutboxLimits {
            max_qos0: config.max_queued_qos0,
            max_qos12: config.max_queued_qos12,
            max_bytes: config.max_queued_bytes,
        };
        Self {
            router: parts.router,
            sessions: Arc::new(SessionRegistry::new(limits)),
            config,
            stats: MqttStats::default(),
            gate: parts.gate,
            wills: Mutex::new(Vec::new()),
            next_client: AtomicU64::new(1),
            ownership: OnceLock::new(),
        }
    }

    /// In a cluster: client ids are claimed through `ownership` before a CONNECT is
    /// accepted (set once, before the listeners open; a second call is ignored).
    pub fn set_ownership(&self, ownership: Arc<dyn SessionOwnership>) {
        let _ = self.ownership.set(ownership);
    }

    /// The cluster's session ownership, when in a cluster.
    pub(crate) fn ownership(&self) -> Option<&Arc<dyn SessionOwnership>> {
        self.ownership.get()
    }

    /// In a cluster: tells it the subscriptions of `slot`, a persistent session, so
    /// that another node can resume it should this one die.
    pub(crate) fn share_subscriptions(&self, slot: &SessionSlot<SessionState>) {
        let Some(ownership) = self.ownership() else { return };
        let subscriptions = slot.state.lock().subscriptions.iter().map(|(f, (_, o))| (f.clone(), *o)).collect();
        ownership.subscriptions_changed(&slot.client_id, subscriptions);
    }

    /// Restores a session another node handed over into `slot` (just claimed): its
    /// subscriptions in the router, its messages queued (what does not fit is dropped
    /// and counted).
    pub(crate) fn adopt(&self, slot: &SessionSlot<SessionState>, moved: MovedSession) {
        self.stats.adopted.fetch_add(1, Ordering::Relaxed);
        let durable = slot.state.lock().durable;
        for (filter, options) in moved.subscriptions {
            let parsed = Subscription::parse(&filter)
                .ok()
                .or_else(|| TopicFilter::new(&filter).ok().map(Subscription::Plain));
            let Some(subscription) = parsed else {
                warn!(client = %slot.client_id, filter, "cluster: a handed-over subscription is not a valid filter; left out");
                continue;
            };
            let subscriber = Subscriber {
                id: slot.id,
                outbox: slot.outbox.clone(),
                options,
                durable,
            };
            self.router.subscribe_as(&subscription, subscriber, Some(slot.client_id.clone()));
            slot.state.lock().subscriptions.insert(filter, (subscription, options));
        }
        for delivery in moved.deliveries {
            if slot.outbox.push(delivery) == ferry_core::Pushed::Dropped {
                self.stats.adopt_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The same, keeping sessions in `sessions` (any [`SessionStore`]) instead.
    pub fn with_sessions(mut self, sessions: Arc<dyn SessionStore<SessionState>>) -> Self {
        self.sessions = sessions;
        self
    }

    /// A client identifier for a client that sent an empty one.
    pub fn assign_client_id(&self) -> String {
        format!(
            "ferry-{:x}-{}",
            std::process::id(),
            self.next_client.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Publish a will now, or at `at` if it is later than `now`.
    pub fn publish_will(&self, client_id: Arc<str>, message: Arc<Message>, at: Instant, now: Instant) {
        if at <= now {
            self.stats.wills.fetch_add(1, Ordering::Relaxed);
            self.router.publish(message, now);
        } else {
            // Kept across a restart: the journal has it until it is published or cancelled.
            if let Some(journal) = self.router.journal() {
                journal.will_delayed(&client_id, &message, at - now);
            }
            self.wills.lock().push(PendingWill { at, client_id, message });
        }
    }

    /// A client connected again: its delayed will is not published.
    pub fn cancel_will(&self, client_id: &str) {
        let cancelled = {
            let mut wills = self.wills.lock();
            let before = wills.len();
            wills.retain(|w| &*w.client_id != client_id);
            wills.len() != before
        };
        if let (true, Some(journal)) = (cancelled, self.router.journal()) {
            journal.will_done(client_id);
        }
    }

    /// Publishes a delayed will now that it is due (or its session ended).
    fn will_due(&self, will: PendingWill, now: Instant) {
        self.stats.wills.fetch_add(1, Ordering::Relaxed);
        if let Some(journal) = self.router.journal() {
            journal.will_done(&will.client_id);
        }
        self.router.publish(will.message, now);
    }

    /// Schedules again the delayed wills the journal restored at start (`now` and
    /// `wall_now` the same moment); one that fell due while the broker was down goes at
    /// the next [`MqttShared::tick`]. Returns how many.
    pub fn restore_wills(&self, wills: Vec<RestoredWill>, now: Instant, wall_now: SystemTime) -> usize {
        let n = wills.len();
        let mut pending = self.wills.lock();
        for w in wills {
            let at = now + w.at.duration_since(wall_now).unwrap_or(Duration::ZERO);
            pending.push(PendingWill {
                at,
                client_id: w.client_id,
                message: w.message,
            });
        }
        n
    }

    /// Remove every subscription of a session that ends (and the session from the
    /// journal).
    pub fn drop_session(&self, slot: &SessionSlot<SessionState>) {
        let state = slot.state.lock();
        for (subscription, _) in state.subscriptions.values() {
            self.router.unsubscribe(subscription, slot.id);
        }
        if let (Some(journal), Some(key)) = (self.router.journal(), state.durable) {
            journal.session_end(key);
        }
    }

    /// Records a persistent session in the journal: a new key, or the key it has with
    /// its expiry again. A session resumed without a key (it was not persistent until
    /// now) gets its subscriptions journaled too, and its router entries the key.
    /// Returns the position its CONNACK waits for (`None`: the journal failed; the
    /// session stays in memory only, and what needs the disk is refused).
    pub(crate) fn journal_session(&self, journal: &Arc<dyn Journal>, slot: &SessionSlot<SessionState>, expiry: Duration) -> Option<Lsn> {
        let mut state = slot.state.lock();
        let expiry = (expiry != Duration::MAX).then_some(expiry);
        let (key, mut lsn) = match journal.session_open(state.durable, &slot.client_id, expiry) {
            Ok(opened) => opened,
            Err(e) => {
                warn!(client = %slot.client_id, error = %e, "persistent session not journaled");
                return None;
            }
        };
        if state.durable.replace(key).is_none() {
            for (filter, (subscription, options)) in state.subscriptions.iter() {
                if let Ok(at) = journal.subscribed(key, filter, subscription, options) {
                    lsn = at;
                }
                let subscriber = Subscriber {
                    id: slot.id,
                    outbox: slot.outbox.clone(),
                    options: *options,
                    durable: Some(key),
                };
                self.router.subscribe_as(subscription, subscriber, Some(slot.client_id.clone()));
            }
        }
        Some(lsn)
    }

    /// Takes back the persistent sessions the journal restored at start (`now` and
    /// `wall_now` the same moment): each offline, with its subscriptions in the router,
    /// its in-flight messages (resent with DUP when its client connects) and its
    /// queued ones. Returns how many sessions and messages were taken back.
    pub fn restore(&self, sessions: Vec<RestoredSession>, now: Instant, wall_now: SystemTime) -> (usize, usize) {
        let (mut count, mut messages) = (0, 0);
        for restored in sessions {
            let expires_at = restored
                .expires_at
                .map(|at| now + at.duration_since(wall_now).unwrap_or(Duration::ZERO));
            let mut state = SessionState {
                durable: Some(restored.key),
                ..SessionState::default()
            };
            state.incoming_qos2.extend(restored.incoming_qos2.iter().copied());
            let mut queued = Vec::new();
            for m in restored.messages {
                match m.pkid {
                    Some(pkid) if !state.inflight.contains_key(&pkid) => {
                        state.inflight.insert(
                            pkid,
                            InFlight {
                                delivery: m.delivery,
                                stage: if m.released { Stage::Released } else { Stage::Published },
                            },
                        );
                        state.order.push_back(pkid);
                        state.last_pkid = state.last_pkid.max(pkid);
                    }
                    _ => queued.push(m.delivery),
                }
            }
            for (filter, subscription, options) in &restored.subscriptions {
                state.subscriptions.insert(filter.clone(), (subscription.clone(), *options));
            }
            let Some(slot) = self.sessions.restore(&restored.client_id, state, expires_at) else {
                warn!(client = %restored.client_id, "storage: two stored sessions for one client id; the second left out");
                continue;
            };
            for (_, subscription, options) in restored.subscriptions {
                let subscriber = Subscriber {
                    id: slot.id,
                    outbox: slot.outbox.clone(),
                    options,
                    durable: Some(restored.key),
                };
                self.router.subscribe_as(&subscription, subscriber, Some(slot.client_id.clone()));
            }
            messages += slot.state.lock().inflight.len();
            for delivery in queued {
                let message = delivery.message.clone();
                match slot.outbox.push(delivery) {
                    ferry_core::Pushed::Queued => messages += 1,
                    // The queue limits shrank since: the rest is dropped, as it would be.
                    ferry_core::Pushed::Dropped => {
                        if let Some(journal) = self.router.journal() {
                            journal.acked(restored.key, &message);
                        }
                    }
                }
            }
            count += 1;
        }
        (count, messages)
    }

    /// Time-driven work: publish wills whose delay passed, forget expired sessions.
    /// Returns the next instant it has work for.
    pub fn tick(&self, now: Instant) -> Option<Instant> {
        let due: Vec<PendingWill> = {
            let mut wills = self.wills.lock();
            let (due, keep) = std::mem::take(&mut *wills).into_iter().partition(|w| w.at <= now);
            *wills = keep;
            due
        };
        for will in due {
            self.will_due(will, now);
        }
        for slot in self.sessions.expire(now) {
            // A session that ends publishes its delayed will at once (MQTT 5 §3.1.3.2).
            let ended: Vec<PendingWill> = {
                let mut wills = self.wills.lock();
                let (ended, keep) = std::mem::take(&mut *wills).into_iter().partition(|w| w.client_id == slot.client_id);
                *wills = keep;
                ended
            };
            for will in ended {
                self.will_due(will, now);
            }
            self.drop_session(&slot);
        }
        let next_will = self.wills.lock().iter().map(|w| w.at).min();
        [next_will, self.sessions.next_expiry()].into_iter().flatten().min()
    }
}

impl SessionHandoff for MqttShared {
    fn hand_off(&self, client_id: &str) -> Option<MovedSession> {
        let slot = self.sessions.hand_off(client_id)?;
        // The client came back (on another node): a delayed will of its is not sent.
        self.cancel_will(client_id);
        let mut moved = {
            let state = slot.state.lock();
            let subscriptions = state.subscriptions.iter().map(|(f, (_, o))| (f.clone(), *o)).collect();
            // In-flight PUBLISHes first (a QoS 2 one already released reached its
            // client: not sent again), then the queue.
            let deliveries: Vec<_> = state
                .order
                .iter()
                .filter_map(|pkid| state.inflight.get(pkid))
                .filter(|f| f.stage == Stage::Published)
                .map(|f| f.delivery.clone())
                .collect();
            MovedSession { subscriptions, deliveries }
        };
        // The queue after the state's lock is released (the two are not nested).
        while slot.outbox.pop_into(1024, &mut moved.deliveries) > 0 {}
        self.drop_session(&slot);
        self.stats.handed_off.fetch_add(1, Ordering::Relaxed);
        info!(
            client = client_id,
            subscriptions = moved.subscriptions.len(),
            messages = moved.deliveries.len(),
            "cluster: session handed to another node"
        );
        Some(moved)
    }
}
