//! State every STOMP connection shares: the core's router (the topic tree all
//! protocols meet on), the queues, the settings, the gatekeeper (authentication, ACL,
//! rate limits, shared with the other protocols) and the adapter's counters.

use std::sync::Arc;

use ferry_auth::{CoreParts, Gatekeeper};
use ferry_core::Router;

use crate::config::StompConfig;
use crate::queue::Queues;

ferry_core::counters! {
    /// Counters of the STOMP adapter.
    pub struct StompStats {
        connects: Counter("stomp_connects", "STOMP CONNECT/STOMP frames accepted"),
        protocol_errors: Counter("stomp_protocol_errors", "STOMP sessions ended by an ERROR frame"),
        connect_timeouts: Counter("stomp_connect_timeouts", "STOMP connections that sent no CONNECT in time"),
        heart_beat_timeouts: Counter("stomp_heart_beat_timeouts", "STOMP connections closed because heart-beats stopped"),
        sends: Counter("stomp_sends", "STOMP SEND frames applied"),
        messages_out: Counter("stomp_messages_sent", "STOMP MESSAGE frames sent"),
        redelivered: Counter("stomp_redelivered", "STOMP topic messages redelivered after a NACK"),
        receipts_held: Counter("stomp_receipts_held", "STOMP RECEIPTs held until the journal had what they acknowledge on disk"),
    }
}

/// The STOMP adapter's shared state.
pub struct StompShared {
    /// The broker-wide router (shared with the other protocols).
    pub router: Arc<Router>,
    /// `/queue/` destinations and the connections' temporary queues (the named ones
    /// durable when the router has a journal; restore them with [`Queues::restore`]
    /// before serving).
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
        let queues = Queues::new(config.max_queues, config.max_queue_length).with_journal(parts.router.journal().cloned());
        Self {
            router: parts.router,
            queues,
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
