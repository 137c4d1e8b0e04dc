//! `[mqtt]`: the MQTT adapter's limits and defaults, as they appear in
//! `conf/ferry.toml`. Every limit the adapter enforces is here.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The MQTT adapter's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Largest packet accepted, in bytes (MQTT 5 Maximum Packet Size, sent in CONNACK).
    /// Larger: MQTT 5 DISCONNECT 0x95, MQTT 3 connection closed.
    pub max_packet_size: usize,
    /// Largest packet accepted before a CONNECT is authenticated (the CONNECT itself, and
    /// what the client sends while its credentials are checked), in bytes. Larger: MQTT 5
    /// CONNACK 0x95, MQTT 3 connection closed.
    pub max_packet_size_unauthenticated: usize,
    /// QoS 1/2 messages sent to a client and not yet acknowledged (the in-flight window);
    /// a MQTT 5 client's Receive Maximum lowers it.
    pub max_inflight: u16,
    /// QoS 1/2 PUBLISHes a client may have in flight to the broker (MQTT 5 Receive
    /// Maximum, sent in CONNACK); more: DISCONNECT 0x93.
    pub receive_maximum: u16,
    /// QoS 0 messages queued for one session; more are dropped and counted.
    pub max_queued_qos0: usize,
    /// QoS 1/2 messages queued for one session (also while it is offline); more are
    /// dropped and counted.
    pub max_queued_qos12: usize,
    /// Topic and payload bytes queued for one session, all QoS together; a message that
    /// would go over is dropped and counted (one always fits). 0: no byte limit.
    pub max_queued_bytes: usize,
    /// Keep-alive the broker imposes when a client asks for 0 (none) or more: 0 keeps
    /// the client's value. Sent as MQTT 5 Server Keep Alive when it changes the client's.
    #[serde(with = "humantime_serde")]
    pub max_keep_alive: Duration,
    /// Longest session expiry interval granted to MQTT 5 clients (MQTT 3 persistent
    /// sessions, clean session 0, use it too).
    #[serde(with = "humantime_serde")]
    pub max_session_expiry: Duration,
    /// Topic aliases a client may use toward the broker (MQTT 5 Topic Alias Maximum).
    pub topic_alias_maximum: u16,
    /// Most subscriptions one session may hold; more are refused (SUBACK 0x97 / 0x80).
    pub max_subscriptions: usize,
    /// Most levels in a topic or filter; deeper ones are refused.
    pub max_topic_levels: usize,
    /// Longest client identifier accepted, in bytes.
    pub max_client_id_len: usize,
    /// How long a connection may take to send CONNECT after opening.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            max_packet_size: 1024 * 1024,
            max_packet_size_unauthenticated: 64 * 1024,
            max_inflight: 32,
            receive_maximum: 64,
            max_queued_qos0: 1000,
            max_queued_bytes: ferry_core::outbox::DEFAULT_MAX_BYTES,
            max_queued_qos12: 10_000,
            max_keep_alive: Duration::from_secs(0),
            max_session_expiry: Duration::from_secs(2 * 60 * 60),
            topic_alias_maximum: 64,
            max_subscriptions: 1000,
            max_topic_levels: 128,
            max_client_id_len: 256,
            connect_timeout: Duration::from_secs(10),
        }
    }
}
