//! State every STOMP connection shares: the core's router (the topic tree all
//! protocols meet on), the queues, the settings, the gatekeeper (authentication, ACL,
//! rate limits, shared with the other protocols) and the adapter's counters.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use ferry_auth::{CoreParts, Gatekeeper};
use ferry_core::Router;

use crate::config::StompConfig;
use crate::queue::Queues;

/// Counters of the STOMP adapter.
#[derive(Debug, Default)]
pub struct StompStats {
    /// CONNECT/STOMP frames accepted.
    pub connects: AtomicU64,
    /// Sessions ended by an ERROR frame (protocol errors and refusals, timeouts aside).
    pub protocol_errors: AtomicU64,
    /// Connections that sent no CONNECT in time.
    pub connect_timeouts: AtomicU64,
    /// Connections closed because the client's heart-beats stopped.
    pub heart_beat_timeouts: AtomicU64,
    /// SEND frames applied (committed, for transactions).
    pub sends: AtomicU64,
    /// MESSAGE frames sent.
    pub messages_out: AtomicU64,
    /// Messages redelivered to a topic subscription after a NACK.
    pub redelivered: AtomicU64,
}

/// The STOMP adapter's shared state.
pub struct StompShared {
    /// The broker-wide router (shared with the other protocols).
    pub router: Arc<Router>,
    /// `/queue/` destinations and the connections' temporary queues.
    pub queues: Queues,
    /// The adapter's settings.
    pub config: StompConfig,
    /// Authentication, authorization and rate limits (the broker-wide one).
    pub gate: Arc<Gatekeeper>,
    /// Counters.
    pub stats: StompStats,
}

impl StompShared {
    /// Shared state built from the broker-wide `parts`: routing through their router,
    /// asking their gatekeeper who may connect and what they may do.
    pub fn new(parts: CoreParts, config: StompConfig) -> Self {
        Self {
            router: parts.router,
            queues: Queues::new(config.max_queues, config.max_queue_length),
            config,
            gate: parts.gate,
            stats: StompStats::default(),
        }
    }

    /// The `session` header value for the connection numbered `connection`: unique
    /// within this process run.
    pub fn session_name(&self, connection: u64) -> String {
        format!("ferry-{:x}-{connection}", std::process::id())
    }
}
