//! State every MQTT connection shares: the core's router, the registry of persistent
//! sessions, wills waiting for their delay, and the adapter's counters. Time-driven
//! work (session expiry, delayed wills) happens in [`MqttShared::tick`], which the
//! binary calls periodically with the current time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ferry_auth::Gatekeeper;
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

/// Counters of the MQTT adapter.
#[derive(Debug, Default)]
pub struct MqttStats {
    /// CONNECTs accepted.
    pub connects: AtomicU64,
    /// CONNECTs refused (any CONNACK error code).
    pub refused: AtomicU64,
    /// Connections closed for a protocol violation.
    pub protocol_errors: AtomicU64,
    /// Connections closed for a keep-alive timeout.
    pub keep_alive_timeouts: AtomicU64,
    /// Acknowledgements held until the journal had their record on disk.
    pub acks_held: AtomicU64,
    /// Publishes refused because they needed the disk and storage was unavailable.
    pub storage_refused: AtomicU64,
    /// Will messages published.
    pub wills: AtomicU64,
    /// PUBLISH packets received.
    pub publishes_in: AtomicU64,
    /// PUBLISH packets sent.
    pub publishes_out: AtomicU64,
    /// Messages not sent because they exceeded the client's maximum packet size.
    pub too_large_for_client: AtomicU64,
    /// Connections closed before their CONNECT was accepted for sending a packet larger
    /// than `max_packet_size_unauthenticated`, or more than `max_packet_size` bytes while
    /// their credentials were checked.
    pub too_large_unauthenticated: AtomicU64,
    /// CONNECTs refused because the ACL denies the will topic (CONNACK 0x05 / 0x87).
    pub will_denied: AtomicU64,
    /// Connections closed for sending MQTT in a WebSocket text frame [MQTT-6.0.0-1].
    pub text_frames: AtomicU64,
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
    /// Shared state routing through `router`, sessions kept in memory, everyone allowed
    /// ([`Gatekeeper::open`]).
    pub fn new(router: Arc<Router>, config: MqttConfig) -> Self {
        Self::with_gatekeeper(router, config, Arc::new(Gatekeeper::open()))
    }

    /// Shared state routing through `router`, sessions kept in memory, clients checked by
    /// `gate`.
    pub fn with_gatekeeper(router: Arc<Router>, config: MqttConfig, gate: Arc<Gatekeeper>) -> Self {
        let limits = OutboxLimits {
            max_qos0: config.max_queued_qos0,
            max_qos12: config.max_queued_qos12,
            max_bytes: config.max_queued_bytes,
        };
        Self::with_parts(router, config, Arc::new(SessionRegistry::new(limits)), gate)
    }

    /// Shared state keeping sessions in `sessions` (any [`SessionStore`]), everyone allowed.
    pub fn with_sessions(router: Arc<Router>, config: MqttConfig, sessions: Arc<dyn SessionStore<SessionState>>) -> Self {
        Self::with_parts(router, config, sessions, Arc::new(Gatekeeper::open()))
    }

    /// Shared state keeping sessions in `sessions`, clients checked by `gate`.
    pub fn with_parts(
        router: Arc<Router>,
        config: MqttConfig,
        sessions: Arc<dyn SessionStore<SessionState>>,
        gate: Arc<Gatekeeper>,
    ) -> Self {
        Self {
            router,
            sessions,
            config,
            stats: MqttStats::default(),
            gate,
            wills: Mutex::new(Vec::new()),
            next_client: AtomicU64::new(1),
        }
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
