//! [`ClientPolicy`]: what holds for one authenticated client while it is connected —
//! who it is, when its token expires, how fast it may publish, how many subscriptions
//! it may hold — with the refusals counted in the [`SecurityStats`]. Both adapters keep
//! one per connection instead of each re-implementing the checks.

use std::sync::Arc;
use std::time::Instant;

use crate::acl::Action;
use crate::gate::{Gatekeeper, SecurityStats};
use crate::identity::Identity;
use crate::limits::TokenBucket;

/// One connected client's identity and limits (built by [`Gatekeeper::client_policy`]).
pub struct ClientPolicy {
    gate: Arc<Gatekeeper>,
    identity: Identity,
    /// When the client's token expires (`auth.jwt.close_on_expiry`).
    expires_at: Option<Instant>,
    /// The client's message rate (`limits.messages_per_second`); `None`: no limit. Boxed
    /// so that a connection without a limit stays small.
    bucket: Option<Box<TokenBucket>>,
}

impl std::fmt::Debug for ClientPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientPolicy")
            .field("identity", &self.identity)
            .field("expires_at", &self.expires_at)
            .field("rate_limited", &self.bucket.is_some())
            .finish_non_exhaustive()
    }
}

impl ClientPolicy {
    pub(crate) fn new(gate: Arc<Gatekeeper>, identity: Identity, now: Instant) -> Self {
        let expires_at = gate.expiry_deadline(&identity, now);
        let bucket = gate.message_bucket(now).map(Box::new);
        Self {
            gate,
            identity,
            expires_at,
            bucket,
        }
    }

    /// Who the client is: what the ACL is checked against.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// When the client's token expires and the connection must close, if ever.
    pub fn expires_at(&self) -> Option<Instant> {
        self.expires_at
    }

    /// Whether the token has expired at `now`. Counted (`token_expired`) when it has:
    /// call it once, when deciding to close.
    pub fn expired(&self, now: Instant) -> bool {
        let expired = self.expires_at.is_some_and(|at| now >= at);
        if expired {
            SecurityStats::bump(&self.gate.stats.token_expired);
        }
        expired
    }

    /// Whether a message rate applies (no bucket is allocated otherwise).
    pub fn rate_limited(&self) -> bool {
        self.bucket.is_some()
    }

    /// Take one message from the rate bucket; false (and counted,
    /// `message_rate_exceeded`) when the client publishes faster than allowed.
    pub fn take_message(&mut self, now: Instant) -> bool {
        let allowed = self.bucket.as_mut().is_none_or(|b| b.try_take(now, 1));
        if !allowed {
            SecurityStats::bump(&self.gate.stats.message_rate_exceeded);
        }
        allowed
    }

    /// Whether a client holding `held` subscriptions may add one more under `limit`
    /// (`mqtt.max_subscriptions`, `stomp.max_subscriptions`); a refusal is counted
    /// (`subscription_quota_exceeded`).
    pub fn may_add_subscription(&self, held: usize, limit: usize) -> bool {
        let allowed = held < limit;
        if !allowed {
            SecurityStats::bump(&self.gate.stats.subscription_quota_exceeded);
        }
        allowed
    }

    /// Whether the client may publish to `topic` (ACL; a refusal is counted).
    pub fn may_publish(&self, topic: &str) -> bool {
        self.gate.may_publish(&self.identity, topic)
    }

    /// Whether the client may subscribe to `filter` (ACL; a refusal is counted).
    pub fn may_subscribe(&self, filter: &str) -> bool {
        self.gate.may_subscribe(&self.identity, filter)
    }

    /// Whether a message on `topic` may be delivered to the client (the ACL's read rules).
    pub fn may_receive(&self, topic: &str) -> bool {
        self.gate.may_receive(&self.identity, topic)
    }

    /// Whether deliveries to the client need [`ClientPolicy::may_receive`] at all.
    pub fn needs_delivery_check(&self) -> bool {
        self.gate.needs_delivery_check(&self.identity)
    }

    /// Whether the client may send to or consume from the STOMP queue `name`.
    pub fn may_use_queue(&self, action: Action, name: &str) -> bool {
        self.gate.may_use_queue(&self.identity, action, name)
    }
}
