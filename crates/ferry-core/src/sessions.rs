//! Sessions that outlive connections: which client id owns which session, taking a
//! session over when its client connects again (the previous connection is told to
//! leave), and forgetting offline sessions whose expiry has passed.
//!
//! The registry is protocol-neutral: `S` is the adapter's persistent state (MQTT keeps
//! subscriptions and in-flight packet ids there). The core never reads the clock:
//! callers pass `now`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::adapter::Wakeup;
use crate::message::{next_subscriber_id, SubscriberId};
use crate::monitor::SessionSummary;
use crate::outbox::{Outbox, OutboxLimits};

/// The connection currently serving a session.
#[derive(Debug, Clone)]
pub struct Owner {
    /// The transport's connection id.
    pub connection: u64,
    /// That connection's doorbell.
    pub wakeup: Wakeup,
    /// Set when another connection took the session over; the owner must then leave
    /// (MQTT 5: DISCONNECT 0x8E session taken over).
    pub taken_over: Arc<AtomicBool>,
}

impl Owner {
    /// An owner for `connection` ringing `wakeup`.
    pub fn new(connection: u64, wakeup: Wakeup) -> Self {
        Self {
            connection,
            wakeup,
            taken_over: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether another connection has taken the session over.
    pub fn is_taken_over(&self) -> bool {
        self.taken_over.load(Ordering::Acquire)
    }

    fn evict(&self) {
        self.taken_over.store(true, Ordering::Release);
        self.wakeup.wake();
    }
}

/// One client's session.
#[derive(Debug)]
pub struct SessionSlot<S> {
    /// The session's id, used by the router.
    pub id: SubscriberId,
    /// The client identifier it belongs to.
    pub client_id: Arc<str>,
    /// Deliveries waiting for the client, kept while it is away.
    pub outbox: Arc<Outbox>,
    /// The adapter's persistent state.
    pub state: Mutex<S>,
    owner: Mutex<Option<Owner>>,
    /// While offline: when the session is forgotten (`None`: never).
    expires_at: Mutex<Option<Instant>>,
}

impl<S> SessionSlot<S> {
    /// The connection serving the session now, if any.
    pub fn owner(&self) -> Option<Owner> {
        self.owner.lock().clone()
    }
}

/// The outcome of [`SessionRegistry::claim`].
#[derive(Debug)]
pub struct Claim<S> {
    /// The session now owned by the claiming connection.
    pub slot: Arc<SessionSlot<S>>,
    /// Whether an earlier session was resumed (MQTT's "session present").
    pub resumed: bool,
    /// A session that was discarded (clean start over an existing one): the caller
    /// removes its subscriptions from the router.
    pub discarded: Option<Arc<SessionSlot<S>>>,
}

/// The live registry of sessions, by client id. Not a persistence seam: it hands out
/// live slots, and `S` is changed in place under `SessionSlot::state` (ARCHITECTURE.md,
/// "Storage").
pub trait SessionStore<S>: Send + Sync {
    /// Give `client_id`'s session to `owner` (see [`SessionRegistry::claim`]).
    fn claim(&self, client_id: &str, owner: Owner, clean_start: bool) -> Claim<S>;

    /// The connection no longer serves `slot` (see [`SessionRegistry::release`]).
    fn release(&self, slot: &Arc<SessionSlot<S>>, connection: u64, expiry: Option<Duration>, now: Instant) -> Option<Arc<SessionSlot<S>>>;

    /// Takes back an offline session restored from the journal at start, with its
    /// `state`, forgotten at `expires_at` (`None`: never) unless its client comes back.
    /// Returns the live slot (its outbox, for the restored messages) or `None` if a
    /// session of that client id is already known.
    fn restore(&self, client_id: &str, state: S, expires_at: Option<Instant>) -> Option<Arc<SessionSlot<S>>>;

    /// Forget offline sessions whose expiry has passed, returning them.
    fn expire(&self, now: Instant) -> Vec<Arc<SessionSlot<S>>>;

    /// The earliest expiry of an offline session.
    fn next_expiry(&self) -> Option<Instant>;

    /// Sessions known, online or not.
    fn len(&self) -> usize;

    /// Another node took `client_id` over: forget its session here, telling a
    /// connection serving it to leave, and return it (see
    /// [`SessionRegistry::hand_off`]; the default: nothing handed off).
    fn hand_off(&self, _client_id: &str) -> Option<Arc<SessionSlot<S>>> {
        None
    }
    /// Every known session, copied out for operators (the default: none listed).
    fn summaries(&self) -> Vec<SessionSummary> {
        Vec::new()
    }

    /// Whether no session is known.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<S: Default + Send> SessionStore<S> for SessionRegistry<S> {
    fn claim(&self, client_id: &str, owner: Owner, clean_start: bool) -> Claim<S> {
        SessionRegistry::claim(self, client_id, owner, clean_start)
    }

    fn release(&self, slot: &Arc<SessionSlot<S>>, connection: u64, expiry: Option<Duration>, now: Instant) -> Option<Arc<SessionSlot<S>>> {
        SessionRegistry::release(self, slot, connection, expiry, now)
    }

    fn restore(&self, client_id: &str, state: S, expires_at: Option<Instant>) -> Option<Arc<SessionSlot<S>>> {
        SessionRegistry::restore(self, client_id, state, expires_at)
    }

    fn expire(&self, now: Instant) -> Vec<Arc<SessionSlot<S>>> {
        SessionRegistry::expire(self, now)
    }

    fn next_expiry(&self) -> Option<Instant> {
        SessionRegistry::next_expiry(self)
    }

    fn len(&self) -> usize {
        SessionRegistry::len(self)
    }

    fn summaries(&self) -> Vec<SessionSummary> {
        SessionRegistry::summaries(self)
    }

    fn hand_off(&self, client_id: &str) -> Option<Arc<SessionSlot<S>>> {
        SessionRegistry::hand_off(self, client_id)
    }
}

/// Every known session, by client id, in memory: the [`SessionStore`] Ferry runs on
/// until durable storage exists.
pub struct SessionRegistry<S> {
    sessions: Mutex<HashMap<Arc<str>, Arc<SessionSlot<S>>>>,
    limits: OutboxLimits,
}

impl<S: Default> SessionRegistry<S> {
    /// An empty registry whose sessions' outboxes have `limits`.
    pub fn new(limits: OutboxLimits) -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            limits,
        }
    }

    /// Give `client_id`'s session to `owner`. With `clean_start`, any existing session
    /// is discarded and a new one made; otherwise an existing one is resumed. Either way
    /// a connection that owned it is told to leave.
    pub fn claim(&self, client_id: &str, owner: Owner, clean_start: bool) -> Claim<S> {
        let mut sessions = self.sessions.lock();
        let existing = sessions.get(client_id).cloned();
        if let Some(old) = existing.as_ref().and_then(|s| s.owner.lock().take()) {
            old.evict();
        }
        match existing {
            Some(slot) if !clean_start => {
                *slot.owner.lock() = Some(owner.clone());
                *slot.expires_at.lock() = None;
                slot.outbox.attach(owner.wakeup);
                Claim {
                    slot,
                    resumed: true,
                    discarded: None,
                }
            }
            discarded => {
                let client_id: Arc<str> = Arc::from(client_id);
                let slot = Arc::new(SessionSlot {
                    // Process-wide, so no other adapter's identity collides in the router.
                    id: next_subscriber_id(),
                    client_id: client_id.clone(),
                    outbox: Arc::new(Outbox::new(self.limits)),
                    state: Mutex::new(S::default()),
                    owner: Mutex::new(Some(owner.clone())),
                    expires_at: Mutex::new(None),
                });
                slot.outbox.attach(owner.wakeup);
                sessions.insert(client_id, slot.clone());
                Claim {
                    slot,
                    resumed: false,
                    discarded,
                }
            }
        }
    }

    /// Another node took `client_id` over: the session is removed, a connection that
    /// served it is told to leave (as by a take-over) and the slot is returned so the
    /// caller can hand its state over and remove its subscriptions from the router.
    pub fn hand_off(&self, client_id: &str) -> Option<Arc<SessionSlot<S>>> {
        let slot = self.sessions.lock().remove(client_id)?;
        if let Some(old) = slot.owner.lock().take() {
            old.evict();
        }
        slot.outbox.detach();
        Some(slot)
    }

    /// The connection `connection` no longer serves `slot`. The session stays for
    /// `expiry` (`None`: until the broker stops); with a zero expiry it is forgotten at
    /// once and returned so the caller can remove its subscriptions. A connection that
    /// was taken over releases nothing.
    pub fn release(
        &self,
        slot: &Arc<SessionSlot<S>>,
        connection: u64,
        expiry: Option<Duration>,
        now: Instant,
    ) -> Option<Arc<SessionSlot<S>>> {
        let mut sessions = self.sessions.lock();
        {
            let mut owner = slot.owner.lock();
            if owner.as_ref().map(|o| o.connection) != Some(connection) {
                return None;
            }
            *owner = None;
        }
        slot.outbox.detach();
        slot.outbox.discard_qos0();
        match expiry {
            Some(d) if d.is_zero() => {
                if sessions.get(&slot.client_id).is_some_and(|s| Arc::ptr_eq(s, slot)) {
                    sessions.remove(&slot.client_id);
                }
                Some(slot.clone())
            }
            Some(d) => {
                *slot.expires_at.lock() = Some(now + d);
                None
            }
            None => None,
        }
    }

    /// Takes back an offline session restored at start (see [`SessionStore::restore`]).
    pub fn restore(&self, client_id: &str, state: S, expires_at: Option<Instant>) -> Option<Arc<SessionSlot<S>>> {
        let mut sessions = self.sessions.lock();
        if sessions.contains_key(client_id) {
            return None;
        }
        let client_id: Arc<str> = Arc::from(client_id);
        let slot = Arc::new(SessionSlot {
            id: next_subscriber_id(),
            client_id: client_id.clone(),
            outbox: Arc::new(Outbox::new(self.limits)),
            state: Mutex::new(state),
            owner: Mutex::new(None),
            expires_at: Mutex::new(expires_at),
        });
        sessions.insert(client_id, slot.clone());
        Some(slot)
    }

    /// Forget the offline sessions whose expiry has passed; returns them so the caller
    /// can remove their subscriptions.
    pub fn expire(&self, now: Instant) -> Vec<Arc<SessionSlot<S>>> {
        let mut sessions = self.sessions.lock();
        let expired: Vec<Arc<str>> = sessions
            .iter()
            .filter(|(_, s)| s.owner.lock().is_none() && s.expires_at.lock().is_some_and(|at| at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        expired.iter().filter_map(|k| sessions.remove(k)).collect()
    }

    /// The earliest expiry of an offline session, to schedule the next [`Self::expire`].
    pub fn next_expiry(&self) -> Option<Instant> {
        self.sessions.lock().values().filter_map(|s| *s.expires_at.lock()).min()
    }

    /// Sessions known, online or not.
    pub fn len(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Every known session, sorted by client id. The map's lock is held only to copy
    /// the slots out; each slot's `owner` is read after it is released.
    pub fn summaries(&self) -> Vec<SessionSummary> {
        let slots: Vec<Arc<SessionSlot<S>>> = self.sessions.lock().values().cloned().collect();
        let mut out: Vec<SessionSummary> = slots
            .iter()
            .map(|slot| SessionSummary {
                client_id: slot.client_id.clone(),
                connection: slot.owner().map(|o| o.connection),
                queued: slot.outbox.len(),
            })
            .collect();
        out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        out
    }

    /// Whether no session is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(conn: u64) -> Owner {
        Owner::new(conn, Wakeup::new())
    }

    #[test]
    fn a_new_client_gets_a_new_session() {
        let r: SessionRegistry<u32> = SessionRegistry::new(OutboxLimits::default());
        let c = r.claim("a", owner(1), false);
        assert!(!c.resumed);
        assert!(c.discarded.is_none());
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn reconnecting_resumes_and_evicts_the_old_connection() {
        let r: SessionRegistry<u32> = SessionRegistry::new(OutboxLimits::default());
        let first = owner(1);
        let c1 = r.claim("a", first.clone(), false);
        *c1.slot.state.lock() = 42;
        let c2 = r.claim("a", owner(2), false);
        assert!(c2.resumed);
        assert!(first.is_taken_over(), "the old connection is told to leave");
        assert_eq!(*c2.slot.state.lock(), 42, "state survives");
        assert_eq!(c1.slot.id, c2.slot.id);
        // The evicted connection's late release does not touch the new owner.
        assert!(r.release(&c1.slot, 1, Some(Duration::ZERO), Instant::now()).is_none());
        assert_eq!(c2.slot.owner().map(|o| o.connection), Some(2));
    }

    #[test]
    fn a_session_handed_off_to_another_node_is_forgotten_and_its_connection_told_to_leave() {
        let r: SessionRegistry<u32> = SessionRegistry::new(OutboxLimits::default());
        let first = owner(1);
        let c1 = r.claim("a", first.clone(), false);
        *c1.slot.state.lock() = 7;
        let gone = r.hand_off("a").expect("the session");
        assert!(first.is_taken_over());
        assert_eq!((gone.id, *gone.state.lock()), (c1.slot.id, 7));
        assert!(r.is_empty());
        assert!(r.hand_off("a").is_none());
        // The evicted connection's late release changes nothing.
        assert!(r.release(&c1.slot, 1, Some(Duration::ZERO), Instant::now()).is_none());
        // A new claim starts afresh.
        assert!(!r.claim("a", owner(2), false).resumed);
    }

    #[test]
    fn clean_start_discards_the_old_session() {
        let r: SessionRegistry<u32> = SessionRegistry::new(OutboxLimits::default());
        let c1 = r.claim("a", owner(1), false);
        let c2 = r.claim("a", owner(2), true);
        assert!(!c2.resumed);
        assert_eq!(c2.discarded.map(|s| s.id), Some(c1.slot.id));
        assert_ne!(c1.slot.id, c2.slot.id);
    }

    #[test]
    fn sessions_expire_only_while_offline() {
        let r: SessionRegistry<u32> = SessionRegistry::new(OutboxLimits::default());
        let now = Instant::now();
        let c = r.claim("a", owner(1), false);
        assert!(r.release(&c.slot, 1, Some(Duration::from_secs(10)), now).is_none());
        assert_eq!(r.next_expiry(), Some(now + Duration::from_secs(10)));
        assert!(r.expire(now + Duration::from_secs(5)).is_empty());
        // Back before expiry: the session is kept and no longer expires.
        let c = r.claim("a", owner(2), false);
        assert!(c.resumed);
        assert!(r.expire(now + Duration::from_secs(60)).is_empty());
        r.release(&c.slot, 2, Some(Duration::from_secs(10)), now);
        assert_eq!(r.expire(now + Duration::from_secs(11)).len(), 1);
        assert!(r.is_empty());
    }

    #[test]
    fn a_restored_session_is_offline_until_claimed() {
        let r: SessionRegistry<u32> = SessionRegistry::new(OutboxLimits::default());
        let now = Instant::now();
        let slot = r.restore("a", 7, Some(now + Duration::from_secs(5))).unwrap();
        assert!(slot.owner().is_none());
        assert!(r.restore("a", 8, None).is_none(), "one session per client id");
        assert_eq!(r.next_expiry(), Some(now + Duration::from_secs(5)));
        let c = r.claim("a", owner(1), false);
        assert!(c.resumed);
        assert_eq!(*c.slot.state.lock(), 7);
    }

    #[test]
    fn zero_expiry_forgets_at_once() {
        let r: SessionRegistry<u32> = SessionRegistry::new(OutboxLimits::default());
        let c = r.claim("a", owner(1), true);
        assert!(r.release(&c.slot, 1, Some(Duration::ZERO), Instant::now()).is_some());
        assert!(r.is_empty());
        assert!(!r.claim("a", owner(2), false).resumed);
    }
}
