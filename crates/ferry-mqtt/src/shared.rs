//! State every MQTT connection shares: the core's router, the registry of persistent
//! sessions, wills waiting for their delay, and the adapter's counters. Time-driven
//! work (session expiry, delayed wills) happens in [`MqttShared::tick`], which the
//! binary calls periodically with the current time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ferry_auth::{CoreParts, Gatekeeper};
use ferry_core::{Message, OutboxLimits, Router, SessionRegistry, SessionSlot, SessionStore};
use parking_lot::Mutex;

use crate::config::MqttConfig;
use crate::session_state::SessionState;

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
            self.wills.lock().push(PendingWill { at, client_id, message });
        }
    }

    /// A client connected again: its delayed will is not published.
    pub fn cancel_will(&self, client_id: &str) {
        self.wills.lock().retain(|w| &*w.client_id != client_id);
    }

    /// Remove every subscription of a session that ends.
    pub fn drop_session(&self, slot: &SessionSlot<SessionState>) {
        let state = slot.state.lock();
        for (subscription, _) in state.subscriptions.values() {
            self.router.unsubscribe(subscription, slot.id);
        }
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
            self.stats.wills.fetch_add(1, Ordering::Relaxed);
            self.router.publish(will.message, now);
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
                self.stats.wills.fetch_add(1, Ordering::Relaxed);
                self.router.publish(will.message, now);
            }
            self.drop_session(&slot);
        }
        let next_will = self.wills.lock().iter().map(|w| w.at).min();
        [next_will, self.sessions.next_expiry()].into_iter().flatten().min()
    }
}
