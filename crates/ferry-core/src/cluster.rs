//! The cluster seam: what the router tells a link to other nodes (ferry-cluster fills
//! it with NATS), and nothing about how the link talks to them.
//!
//! The router calls a [`ClusterLink`] synchronously, some calls under its tree lock:
//! every method must return at once (hand work to the link's own task through a
//! non-blocking channel, count what it drops) and must never call back into the
//! router. Messages that come from another node enter through
//! [`Router::deliver_remote`](crate::Router::deliver_remote) and
//! [`Router::retained_apply`](crate::Router::retained_apply), which never call the
//! link again: nothing is forwarded twice.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::adapter::Wakeup;
use crate::message::Message;
use crate::outbox::Delivery;
use crate::router::SubscribeOptions;
use crate::topic::{TopicFilter, TopicName};

/// A link from this node's router to the other nodes of a cluster.
pub trait ClusterLink: Send + Sync {
    /// The first local subscription on `filter` appeared (a session's own, or the first
    /// member of a shared group; persistent sessions keep theirs while offline). Called
    /// under the router's tree lock, so calls for one filter come in order.
    fn interest_added(&self, filter: &TopicFilter);

    /// The last local subscription on `filter` went. Called under the tree lock.
    fn interest_removed(&self, filter: &TopicFilter);

    /// A message published on this node was routed locally (and, if retained, kept);
    /// send it to the other nodes. Not called for the broker's own (`$SYS`) messages.
    fn published(&self, message: &Arc<Message>, now: Instant);

    /// An operator removed `topic`'s retained message on this node (admin API).
    fn retained_removed(&self, topic: &TopicName);
}

/// A session one node hands to another when its client connects there: what the
/// new node restores (protocol-neutral; the MQTT adapter fills and reads it).
#[derive(Debug, Clone, Default)]
pub struct MovedSession {
    /// The subscriptions, by filter as the client sent it, with their options.
    pub subscriptions: Vec<(String, SubscribeOptions)>,
    /// Deliveries not acknowledged yet (in-flight first, then queued), oldest first.
    pub deliveries: Vec<Delivery>,
}

/// How claiming a client id in the cluster ended.
#[derive(Debug)]
pub enum ClaimOutcome {
    /// This node owns the client id now. `moved`: what the previous owner handed over
    /// (or, if it did not answer, what the cluster's record held); `None` when there
    /// was no session to move.
    Owned {
        /// The session handed over, if any.
        moved: Option<MovedSession>,
        /// The claim's epoch in the cluster's record (0: not recorded, the session is
        /// on this node alone); given back in [`SessionOwnership::connection_ended`].
        epoch: u64,
    },
    /// Ownership could not be settled (NATS unreachable, too many concurrent claims):
    /// the CONNECT is refused with "server unavailable".
    Unavailable(String),
}

#[derive(Debug, Default)]
struct TicketState {
    outcome: Option<ClaimOutcome>,
    /// Another node took the client id after this claim won.
    revoked: bool,
}

#[derive(Debug)]
struct TicketInner {
    state: Mutex<TicketState>,
    wakeup: Wakeup,
    deadline: Instant,
}

/// A claim in progress: the link settles it from its task and rings the connection's
/// wakeup; the connection reads it with [`ClaimTicket::settle`]. Cloning shares it.
#[derive(Debug, Clone)]
pub struct ClaimTicket(Arc<TicketInner>);

impl ClaimTicket {
    /// A ticket ringing `wakeup` when settled; the link promises an outcome before
    /// `deadline`.
    pub fn new(wakeup: Wakeup, deadline: Instant) -> Self {
        Self(Arc::new(TicketInner {
            state: Mutex::new(TicketState::default()),
            wakeup,
            deadline,
        }))
    }

    /// The instant by which the link settles the claim (the connection gives up a
    /// little after it).
    pub fn deadline(&self) -> Instant {
        self.0.deadline
    }

    /// Whether the claim is settled (and not read yet).
    pub fn is_settled(&self) -> bool {
        self.0.state.lock().outcome.is_some()
    }

    /// Settle the claim (the link's side); a second outcome is ignored.
    pub fn resolve(&self, outcome: ClaimOutcome) {
        {
            let mut state = self.0.state.lock();
            if state.outcome.is_some() {
                return;
            }
            state.outcome = Some(outcome);
        }
        self.0.wakeup.wake();
    }

    /// Another node took the client id over: a connection that has not acted on the
    /// outcome yet gets "unavailable" instead. Waits for one acting on it now (see
    /// [`ClaimTicket::settle`]), so the caller then finds its session registered.
    pub fn revoke(&self) {
        self.0.state.lock().revoked = true;
    }

    /// The connection's side: `Some(f(outcome))` once settled, `f` running under the
    /// ticket's lock so that a [`ClaimTicket::revoke`] waits for it (`f` registers the
    /// session; it must not call into the link). `None` while unsettled.
    pub fn settle<R>(&self, f: impl FnOnce(ClaimOutcome) -> R) -> Option<R> {
        let mut state = self.0.state.lock();
        let outcome = state.outcome.take()?;
        let outcome = if state.revoked {
            ClaimOutcome::Unavailable("the client id was taken by another node meanwhile".into())
        } else {
            outcome
        };
        Some(f(outcome))
    }
}

/// Session ownership across the cluster (ferry-cluster fills it with a JetStream KV
/// bucket): a client id is owned by one node at a time.
pub trait SessionOwnership: Send + Sync {
    /// Start claiming `client_id` for this node, from a connection's task: returns at
    /// once; the ticket's `wakeup` rings once it is settled. `persistent`: the session
    /// outlives its connection or resumes one (it needs the cluster; a clean one may
    /// proceed locally when the cluster is unreachable). `will`: the connection's will
    /// and the delay it waits (the lower of will delay and session expiry), kept with
    /// the record so that another node publishes it should this one die.
    fn claim(&self, client_id: &str, persistent: bool, will: Option<(Arc<Message>, std::time::Duration)>, wakeup: Wakeup) -> ClaimTicket;

    /// The connection that claimed `client_id` at `epoch` ended without being taken
    /// over: its will is no longer for the cluster to publish (this node published or
    /// scheduled it, or the client disconnected normally). Returns at once.
    fn connection_ended(&self, _client_id: &str, _epoch: u64) {}

    /// A persistent session this node owns now has `subscriptions` (after its CONNECT,
    /// a SUBSCRIBE or an UNSUBSCRIBE): kept with its ownership record so that another
    /// node can resume it if this one dies. Returns at once (the write is queued; one
    /// the queue cannot take is dropped and counted). The default: not kept.
    fn subscriptions_changed(&self, _client_id: &str, _subscriptions: Vec<(String, SubscribeOptions)>) {}
}

/// The adapter's side of a take-over from another node.
pub trait SessionHandoff: Send + Sync {
    /// Another node now owns `client_id`: close its connection here (MQTT 5: DISCONNECT
    /// 0x8E), forget its session here and return it (`None`: none known). Called from a
    /// link task; must not block on I/O.
    fn hand_off(&self, client_id: &str) -> Option<MovedSession>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket() -> ClaimTicket {
        ClaimTicket::new(Wakeup::default(), Instant::now())
    }

    #[test]
    fn a_ticket_settles_once() {
        let t = ticket();
        assert!(!t.is_settled());
        assert!(t.settle(|_| ()).is_none(), "nothing before the outcome");
        t.resolve(ClaimOutcome::Owned { moved: None, epoch: 1 });
        t.resolve(ClaimOutcome::Unavailable("second".into()));
        assert!(t.is_settled());
        let got = t.settle(|o| matches!(o, ClaimOutcome::Owned { moved: None, .. }));
        assert_eq!(got, Some(true), "the first outcome counts");
        assert!(t.settle(|_| ()).is_none(), "read once");
    }

    #[test]
    fn a_revoked_claim_is_unavailable_to_its_connection() {
        let t = ticket();
        t.resolve(ClaimOutcome::Owned { moved: None, epoch: 1 });
        t.clone().revoke();
        let got = t.settle(|o| matches!(o, ClaimOutcome::Unavailable(_)));
        assert_eq!(got, Some(true));
    }
}
