//! [`Gatekeeper`]: what the transport and the protocol adapters ask of security at run
//! time, in one shared object: may this address open a connection, who is this client,
//! may it publish or subscribe here, how fast may it go.
//!
//! Checking a password means an argon2id hash: tens of milliseconds of CPU. A session is
//! sans-IO and must not block its connection's task that long, so [`Gatekeeper::check`]
//! hands such work to an [`Offload`] (the binary's is `tokio::task::spawn_blocking`) and
//! returns a [`PendingVerdict`]; the job rings the connection's [`Wakeup`] when the verdict
//! is in, and the session takes it in its `on_wake`. Checks with nothing slow to do (no
//! password file, a token, a certificate, anonymous access) run inline, so the verdict is
//! ready when `check` returns.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ferry_core::{TransportCredentials, Wakeup};
use parking_lot::Mutex;
use thiserror::Error;
use tracing::{debug, warn};

use crate::acl::{Action, Decision};
use crate::authenticator::{AuthParts, Authenticator, LoadError, Summary};
use crate::client_policy::ClientPolicy;
use crate::config::{AnonymousPolicy, AuthSettings, LimitSettings};
use crate::connect_check::ConnectCheck;
use crate::identity::{AuthFailure, Credentials, Identity};
use crate::limits::{ConnectionGuard, ConnectionLimiter, ConnectionRateLimiter, FailedAuthTracker, LimitExceeded, Pace, TokenBucket};

/// Runs a slow job (a password hash) away from the connection's task.
pub trait Offload: Send + Sync + 'static {
    /// Run `job` somewhere it may take tens of milliseconds of CPU.
    fn run(&self, job: Box<dyn FnOnce() + Send>);
}

/// An [`Offload`] that runs the job at once on the caller's thread: for tests and tools.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunInline;

impl Offload for RunInline {
    fn run(&self, job: Box<dyn FnOnce() + Send>) {
        job();
    }
}

/// The wall clock token expiry is checked against (a fixed one in tests).
pub type WallClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// A client's attempt to authenticate, as an adapter saw it in its CONNECT.
#[derive(Clone)]
pub struct ConnectAttempt {
    /// The client's address (after the PROXY protocol or `X-Forwarded-For`).
    pub peer: SocketAddr,
    /// `mqtt` or `stomp`, for the log line.
    pub protocol: &'static str,
    /// The MQTT client id; for STOMP, the connection's session id.
    pub client_id: String,
    /// MQTT user name, STOMP `login`.
    pub username: Option<String>,
    /// MQTT password, STOMP `passcode` (a password, or a JWT). Never logged.
    pub password: Option<Vec<u8>>,
    /// What the transport collected: a bearer token, a client certificate.
    pub transport: Option<Arc<TransportCredentials>>,
}

impl fmt::Debug for ConnectAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectAttempt")
            .field("peer", &self.peer)
            .field("protocol", &self.protocol)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("transport", &self.transport)
            .finish()
    }
}

/// The answer to a [`ConnectAttempt`].
#[derive(Debug, Clone)]
pub struct Verdict {
    /// Who the client is, or why it is refused.
    pub result: Result<Identity, AuthFailure>,
    /// How long the session should wait before answering the client (repeated failures
    /// from its address; zero otherwise).
    pub delay: Duration,
}

/// A [`Verdict`] that may not be in yet; the connection's [`Wakeup`] rings when it is.
#[derive(Debug, Clone, Default)]
pub struct PendingVerdict(Arc<Mutex<Option<Verdict>>>);

impl PendingVerdict {
    /// The verdict, once (later calls return `None`).
    pub fn take(&self) -> Option<Verdict> {
        self.0.lock().take()
    }

    pub(crate) fn set(&self, verdict: Verdict) {
        *self.0.lock() = Some(verdict);
    }
}

/// A connection admitted by [`Gatekeeper::admit`]: counted while `guard` lives, to be
/// served after `wait` (zero unless it came faster than `limits.connection_rate`).
#[derive(Debug)]
#[must_use = "the connection is counted only while the guard lives"]
pub struct Admitted {
    /// Keeps the connection counted.
    pub guard: ConnectionGuard,
    /// How long to hold the connection, unread, before serving it.
    pub wait: Duration,
}

/// Why the transport refuses a new connection before any byte of it is read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    /// The broker-wide or per-address connection count is reached.
    #[error(transparent)]
    TooMany(#[from] LimitExceeded),
    /// The address opens connections faster than `limits.connection_rate`.
    #[error("too many new connections from this address")]
    TooFast,
}

ferry_core::counters! {
    /// Counters for the metrics endpoint, bumped by the gatekeeper, the adapters and the
    /// transport as each limit or rule bites.
    pub struct SecurityStats {
        auth_successes: Counter("auth_successes", "Clients authenticated (anonymous included)"),
        auth_bad_credentials: Counter("auth_bad_credentials", "Clients refused for bad credentials (CONNACK 0x04/0x86, STOMP ERROR, HTTP 401)"),
        auth_not_authorized: Counter("auth_not_authorized", "Clients refused as not authorized (CONNACK 0x05/0x87, STOMP ERROR)"),
        denied_publish: Counter("acl_denied_publish", "Publishes, wills and SENDs the ACL refused"),
        denied_subscribe: Counter("acl_denied_subscribe", "Subscriptions the ACL refused"),
        denied_delivery: Counter("acl_denied_delivery", "Deliveries withheld because the ACL refuses the topic to the subscriber"),
        refused_total: Counter("connections_refused_total_limit", "Connections refused at limits.max_connections"),
        refused_listener: Counter("connections_refused_listener_limit", "Connections refused at a listener's max_connections"),
        refused_address: Counter("connections_refused_address_limit", "Connections refused at limits.max_connections_per_address"),
        refused_rate: Counter("connections_refused_rate_limit", "Connections refused at limits.connection_rate (they would have waited longer than limits.connection_max_wait)"),
        paced: Counter("connections_paced", "Connections held back by limits.connection_rate before they were served"),
        message_rate_exceeded: Counter("message_rate_exceeded", "Connections closed for limits.messages_per_second"),
        byte_rate_throttled: Counter("byte_rate_throttled", "Times a connection's reads were paused for limits.bytes_per_second"),
        subscription_quota_exceeded: Counter("subscription_quota_exceeded", "Subscriptions refused at max_subscriptions"),
        token_expired: Counter("token_expired", "Connections closed because their token expired"),
    }
}

impl SecurityStats {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Authentication, authorization and limits, shared by every connection (`Arc`).
pub struct Gatekeeper {
    authenticator: Arc<Authenticator>,
    limits: LimitSettings,
    failures: Mutex<FailedAuthTracker>,
    connections: ConnectionLimiter,
    connection_rate: Mutex<ConnectionRateLimiter>,
    offload: Arc<dyn Offload>,
    clock: WallClock,
    /// What has bitten so far.
    pub stats: SecurityStats,
}

impl fmt::Debug for Gatekeeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gatekeeper")
            .field("authenticator", &self.authenticator)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Gatekeeper {
    /// A gatekeeper over `authenticator`, with `auth`'s failed-authentication slowdown and
    /// `limits`; slow checks go to `offload`.
    pub fn new(authenticator: Arc<Authenticator>, auth: &AuthSettings, limits: LimitSettings, offload: Arc<dyn Offload>) -> Self {
        Self {
            authenticator,
            failures: Mutex::new(FailedAuthTracker::new(auth.failed_auth.clone(), limits.ipv6_prefix_len)),
            connections: ConnectionLimiter::from_settings(&limits),
            connection_rate: Mutex::new(ConnectionRateLimiter::from_settings(&limits)),
            limits,
            offload,
            clock: Arc::new(SystemTime::now),
            stats: SecurityStats::default(),
        }
    }

    /// Everyone may connect and do anything, with the default limits, checks inline: what
    /// adapters and the transport use when the binary gives them no gatekeeper (tests).
    pub fn open() -> Self {
        let authenticator = Arc::new(Authenticator::from_parts(AuthParts {
            anonymous: AnonymousPolicy::Allow,
            ..AuthParts::default()
        }));
        Self::new(
            authenticator,
            &AuthSettings::default(),
            LimitSettings::default(),
            Arc::new(RunInline),
        )
    }

    /// The same gatekeeper reading `clock` for token expiry (tests).
    pub fn with_clock(mut self, clock: WallClock) -> Self {
        self.clock = clock;
        self
    }

    /// The authenticator (for reloads and summaries).
    pub fn authenticator(&self) -> &Arc<Authenticator> {
        &self.authenticator
    }

    /// The `[limits]` in force.
    pub fn limits(&self) -> &LimitSettings {
        &self.limits
    }

    /// Re-reads the password, ACL and key files (see [`Authenticator::reload`]).
    pub fn reload(&self) -> Result<Summary, LoadError> {
        self.authenticator.reload()
    }

    /// The wall-clock time now, as token expiry sees it.
    pub fn wall_clock(&self) -> SystemTime {
        (self.clock)()
    }

    /// When, on the session's monotonic clock, a connection authenticated as `identity`
    /// must close for its token's expiry (`now` is the session's current instant).
    pub fn expiry_deadline(&self, identity: &Identity, now: Instant) -> Option<Instant> {
        identity.expires_in(self.wall_clock()).map(|left| now + left)
    }

    /// Admits a new connection from `peer` at `now`, or says why not: the broker-wide and
    /// per-address counts and the per-address rate of new connections. The guard keeps the
    /// connection counted until it is dropped. Refusals are counted in [`Gatekeeper::stats`].
    ///
    /// A connection that comes faster than `limits.connection_rate` allows is admitted
    /// with a wait (`limits.connection_max_wait` at most): the transport holds it, unread,
    /// until then. Only one that would wait longer is refused.
    pub fn admit(&self, peer: IpAddr, now: Instant) -> Result<Admitted, Refusal> {
        let wait = match self.connection_rate.lock().pace(peer, now) {
            Pace::Now => Duration::ZERO,
            Pace::After(wait) => wait,
            Pace::Refuse => {
                SecurityStats::bump(&self.stats.refused_rate);
                return Err(Refusal::TooFast);
            }
        };
        let guard = self.connections.try_acquire(peer).map_err(|e| {
            SecurityStats::bump(match e {
                LimitExceeded::Total { .. } => &self.stats.refused_total,
                LimitExceeded::PerAddress { .. } => &self.stats.refused_address,
            });
            Refusal::TooMany(e)
        })?;
        if !wait.is_zero() {
            SecurityStats::bump(&self.stats.paced);
        }
        Ok(Admitted { guard, wait })
    }

    /// Open connections counted by [`Gatekeeper::admit`].
    pub fn open_connections(&self) -> usize {
        self.connections.total()
    }

    /// Whether JWT is on: without it a bearer token on a WebSocket upgrade is ignored (not
    /// refused), as a header meant for something else in front of the broker may be.
    pub fn accepts_tokens(&self) -> bool {
        self.authenticator.summary().jwt
    }

    /// Checks a bearer token from a WebSocket upgrade before the upgrade is answered, so a
    /// bad one gets HTTP 401 ([`AuthFailure::http_status`]). The adapter checks it again,
    /// with the client id, when the protocol's CONNECT arrives.
    pub fn verify_bearer(&self, peer: SocketAddr, token: &str) -> Result<(), AuthFailure> {
        let credentials = Credentials {
            bearer: Some(token),
            ..Credentials::default()
        };
        match self.authenticator.authenticate(&credentials, self.wall_clock()) {
            Ok(_) => Ok(()),
            Err(e) => {
                self.count_failure(&e);
                warn!(%peer, protocol = "http", reason = %e, "bearer token refused");
                Err(e)
            }
        }
    }

    /// [`Gatekeeper::check`] `attempt`, as a [`ConnectCheck`] that gives up at `deadline`.
    pub fn begin_check(self: &Arc<Self>, attempt: ConnectAttempt, now: Instant, wakeup: Wakeup, deadline: Option<Instant>) -> ConnectCheck {
        ConnectCheck::new(self.check(attempt, now, wakeup), now, deadline)
    }

    /// The policy a client authenticated as `identity` at `now` is held to while it is
    /// connected: its token's expiry, its message rate, its quota and ACL.
    pub fn client_policy(self: &Arc<Self>, identity: Identity, now: Instant) -> ClientPolicy {
        ClientPolicy::new(Arc::clone(self), identity, now)
    }

    /// Authenticates `attempt`. The verdict is in the returned [`PendingVerdict`] at once
    /// when nothing slow had to be done; otherwise the check runs on the [`Offload`] and
    /// `wakeup` rings when the verdict is in. Failures are logged (address, protocol, user
    /// name; never the secret) and slow down later attempts from the same address.
    pub fn check(self: &Arc<Self>, attempt: ConnectAttempt, now: Instant, wakeup: Wakeup) -> PendingVerdict {
        let pending = PendingVerdict::default();
        let delay = self.failures.lock().delay(attempt.peer.ip(), now);
        let slow = attempt.password.is_some() && self.authenticator.summary().users > 0;
        let gate = Arc::clone(self);
        let slot = pending.clone();
        let job = move || {
            let result = gate.authenticate(&attempt, now);
            slot.set(Verdict { result, delay });
            wakeup.wake();
        };
        if slow {
            self.offload.run(Box::new(job));
        } else {
            job();
        }
        pending
    }

    fn authenticate(&self, attempt: &ConnectAttempt, now: Instant) -> Result<Identity, AuthFailure> {
        let transport = attempt.transport.as_deref();
        let credentials = Credentials {
            client_id: &attempt.client_id,
            username: attempt.username.as_deref(),
            password: attempt.password.as_deref(),
            bearer: transport.and_then(|t| t.bearer.as_deref()),
            tls: transport.and_then(|t| t.client_cert.as_ref()),
        };
        let result = self.authenticator.authenticate(&credentials, self.wall_clock());
        let ip = attempt.peer.ip();
        match &result {
            Ok(identity) => {
                SecurityStats::bump(&self.stats.auth_successes);
                self.failures.lock().record_success(ip);
                debug!(peer = %attempt.peer, protocol = attempt.protocol, user = ?identity.username, method = ?identity.method, "authenticated");
            }
            Err(e) => {
                self.count_failure(e);
                let delay = self.failures.lock().record_failure(ip, now);
                warn!(
                    peer = %attempt.peer,
                    protocol = attempt.protocol,
                    user = attempt.username.as_deref().unwrap_or(""),
                    client = %attempt.client_id,
                    reason = %e,
                    next_delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "authentication failed"
                );
            }
        }
        result
    }

    fn count_failure(&self, e: &AuthFailure) {
        SecurityStats::bump(match e {
            AuthFailure::BadCredentials(_) => &self.stats.auth_bad_credentials,
            AuthFailure::NotAuthorized(_) => &self.stats.auth_not_authorized,
        });
    }

    /// Whether `identity` may publish to `topic` (an MQTT topic name; a STOMP `/topic/`
    /// destination after its mapping). A refusal is counted.
    pub fn may_publish(&self, identity: &Identity, topic: &str) -> bool {
        self.decide(identity, Action::Publish, topic, &self.stats.denied_publish)
    }

    /// Whether `identity` may subscribe to `filter` (an MQTT filter, shared-subscription
    /// prefix removed; a STOMP destination after its mapping). A refusal is counted.
    pub fn may_subscribe(&self, identity: &Identity, filter: &str) -> bool {
        self.decide(identity, Action::Subscribe, filter, &self.stats.denied_subscribe)
    }

    /// Whether a message on `topic` may be delivered to `identity`'s subscription (see
    /// [`Authenticator::needs_delivery_check`]: cheap and `true` when the ACL cannot take
    /// away part of an allowed subscription). A refusal is counted.
    pub fn may_receive(&self, identity: &Identity, topic: &str) -> bool {
        if !self.needs_delivery_check(identity) {
            return true;
        }
        self.decide(identity, Action::Subscribe, topic, &self.stats.denied_delivery)
    }

    /// Whether deliveries to `identity` must pass [`Gatekeeper::may_receive`]; when false,
    /// an adapter may skip the call on its hot path.
    pub fn needs_delivery_check(&self, identity: &Identity) -> bool {
        identity.grants.is_some() || self.authenticator.needs_delivery_check()
    }

    /// Whether `identity` may send to (`Publish`) or consume from (`Subscribe`) the STOMP
    /// queue `name`. A refusal is counted.
    pub fn may_use_queue(&self, identity: &Identity, action: Action, name: &str) -> bool {
        let allowed = self.authenticator.authorize_queue(identity, action, name) == Decision::Allow;
        if !allowed {
            SecurityStats::bump(match action {
                Action::Publish => &self.stats.denied_publish,
                Action::Subscribe => &self.stats.denied_subscribe,
            });
        }
        allowed
    }

    fn decide(&self, identity: &Identity, action: Action, topic: &str, denied: &AtomicU64) -> bool {
        let allowed = self.authenticator.authorize(identity, action, topic) == Decision::Allow;
        if !allowed {
            SecurityStats::bump(denied);
            debug!(user = ?identity.username, client = %identity.client_id, ?action, topic, "ACL denied");
        }
        allowed
    }

    /// A token bucket for one connection's messages per second (`limits.messages_per_second`
    /// and `limits.message_burst`); `None` when unlimited.
    pub fn message_bucket(&self, now: Instant) -> Option<TokenBucket> {
        (self.limits.messages_per_second > 0.0)
            .then(|| TokenBucket::new(self.limits.messages_per_second, self.limits.message_burst.max(1), now))
    }

    /// A token bucket for one connection's received bytes per second
    /// (`limits.bytes_per_second` and `limits.byte_burst`); `None` when unlimited.
    pub fn byte_bucket(&self, now: Instant) -> Option<TokenBucket> {
        (self.limits.bytes_per_second > 0).then(|| {
            #[allow(clippy::cast_precision_loss)]
            let rate = self.limits.bytes_per_second as f64;
            TokenBucket::new(rate, self.limits.byte_burst.max(1), now)
        })
    }
}

#[cfg(test)]
mod tests;
