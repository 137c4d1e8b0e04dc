//! `[stomp]`: the STOMP adapter's limits and defaults, as they appear in
//! `conf/ferry.toml`. Every limit the adapter enforces is here.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::codec::Limits;

/// The STOMP adapter's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StompConfig {
    /// Largest frame body accepted, in bytes; larger: ERROR "frame too large".
    pub max_body: usize,
    /// Largest frame body accepted before the client is authenticated (the CONNECT frame),
    /// in bytes, and the most bytes buffered after a CONNECT while its credentials are
    /// checked; larger: ERROR "frame too large". [`StompConfig::max_body`] applies once
    /// CONNECTED is sent (the smaller of the two applies before).
    pub max_body_unauthenticated: usize,
    /// Most header lines in one frame, repetitions included.
    pub max_headers: usize,
    /// Longest header line (`name:value` as sent), in bytes.
    pub max_header_line: usize,
    /// Unacknowledged messages one `client`/`client-individual` subscription may hold
    /// when its SUBSCRIBE has no `prefetch-count` header.
    pub default_prefetch: usize,
    /// The largest window a subscription may ask for with `prefetch-count`; larger
    /// values, and 0 ("no limit"), are lowered to it.
    pub max_prefetch: usize,
    /// Most subscriptions (and temporary queues) one connection may hold.
    pub max_subscriptions: usize,
    /// Messages queued for one `/topic/` subscription (beyond its window); more are
    /// dropped and counted. The MQTT counterpart is `mqtt.max_queued_qos0`/`_qos12`.
    pub max_queued_per_subscription: usize,
    /// Body and topic bytes queued for one `/topic/` subscription; a message that would
    /// go over is dropped and counted (one always fits). 0: no byte limit. The MQTT
    /// counterpart is `mqtt.max_queued_bytes`.
    pub max_queued_bytes_per_subscription: usize,
    /// Messages one `/queue/` may hold for its consumers; a SEND to a full queue is
    /// refused with an ERROR (and counted).
    pub max_queue_length: usize,
    /// Most `/queue/` destinations at once (a queue goes away when it is empty and has
    /// no consumer).
    pub max_queues: usize,
    /// Bytes one connection may hold in open transactions (frames buffered until
    /// COMMIT: bodies, headers and a small overhead per frame and transaction).
    pub max_transaction_bytes: usize,
    /// How often the server can send heart-beats (the first number of CONNECTED's
    /// `heart-beat`); "0s": never.
    #[serde(with = "humantime_serde")]
    pub heart_beat_send: Duration,
    /// How often the server wants heart-beats from the client (the second number of
    /// CONNECTED's `heart-beat`); "0s": never.
    #[serde(with = "humantime_serde")]
    pub heart_beat_receive: Duration,
    /// A client that promised heart-beats is closed after this many negotiated intervals
    /// of silence.
    pub heart_beat_grace: f64,
    /// How long a connection may take to send CONNECT after opening.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Deprecated name of [`StompConfig::max_queued_per_subscription`], still accepted
    /// (see [`StompConfig::take_deprecated`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_per_subscription: Option<usize>,
    /// Deprecated name of [`StompConfig::max_queued_bytes_per_subscription`], still
    /// accepted (see [`StompConfig::take_deprecated`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_bytes_per_subscription: Option<usize>,
}

/// A deprecated key that was given: its old name and the name that replaces it.
pub type DeprecatedKey = (&'static str, &'static str);

impl Default for StompConfig {
    fn default() -> Self {
        Self {
            max_body: Limits::DEFAULT_MAX_BODY,
            max_body_unauthenticated: 64 * 1024,
            max_headers: Limits::DEFAULT_MAX_HEADERS,
            max_header_line: Limits::DEFAULT_MAX_HEADER_LINE,
            default_prefetch: 100,
            max_prefetch: 1000,
            max_subscriptions: 1000,
            max_queued_per_subscription: 1000,
            max_queued_bytes_per_subscription: ferry_core::outbox::DEFAULT_MAX_BYTES,
            max_queue_length: 100_000,
            max_queues: 10_000,
            max_transaction_bytes: 8 * 1024 * 1024,
            heart_beat_send: Duration::from_secs(10),
            heart_beat_receive: Duration::from_secs(10),
            heart_beat_grace: 2.0,
            connect_timeout: Duration::from_secs(10),
            max_pending_per_subscription: None,
            max_pending_bytes_per_subscription: None,
        }
    }
}

impl StompConfig {
    /// Move the values given under deprecated names to their current keys (the old
    /// name wins when both are given) and name each one, for the caller to log.
    pub fn take_deprecated(&mut self) -> Vec<DeprecatedKey> {
        let mut given = Vec::new();
        if let Some(n) = self.max_pending_per_subscription.take() {
            self.max_queued_per_subscription = n;
            given.push(("stomp.max_pending_per_subscription", "stomp.max_queued_per_subscription"));
        }
        if let Some(n) = self.max_pending_bytes_per_subscription.take() {
            self.max_queued_bytes_per_subscription = n;
            given.push((
                "stomp.max_pending_bytes_per_subscription",
                "stomp.max_queued_bytes_per_subscription",
            ));
        }
        given
    }

    /// The window of a subscription that asked for `requested` (`None`: no
    /// `prefetch-count` header): at least 1, at most [`StompConfig::max_prefetch`].
    pub fn prefetch(&self, requested: Option<usize>) -> usize {
        let max = self.max_prefetch.max(1);
        match requested.unwrap_or(self.default_prefetch) {
            0 => max,
            n => n.min(max),
        }
    }

    /// The codec's limits once the client is authenticated.
    pub fn limits(&self) -> Limits {
        Limits {
            max_command_line: Limits::DEFAULT_MAX_COMMAND_LINE,
            max_headers: self.max_headers,
            max_header_line: self.max_header_line,
            max_body: self.max_body,
        }
    }

    /// The codec's limits before the client is authenticated: the body limit is
    /// [`StompConfig::max_body_unauthenticated`] (never above [`StompConfig::max_body`]).
    pub fn unauthenticated_limits(&self) -> Limits {
        Limits {
            max_body: self.max_body_unauthenticated.min(self.max_body),
            ..self.limits()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_limits_follow_the_settings() {
        let c = StompConfig {
            max_body: 10,
            max_headers: 3,
            max_header_line: 40,
            ..Default::default()
        };
        let l = c.limits();
        assert_eq!((l.max_body, l.max_headers, l.max_header_line), (10, 3, 40));
        assert_eq!(StompConfig::default().limits(), Limits::default());
        assert_eq!(c.unauthenticated_limits().max_body, 10, "never above max_body");
        assert_eq!(StompConfig::default().unauthenticated_limits().max_body, 65536);
    }

    #[test]
    fn prefetch_is_bounded_and_zero_means_the_most_allowed() {
        let c = StompConfig::default();
        assert_eq!(c.prefetch(None), 100);
        assert_eq!(c.prefetch(Some(5)), 5);
        assert_eq!(c.prefetch(Some(0)), 1000);
        assert_eq!(c.prefetch(Some(1_000_000)), 1000);
    }

    #[test]
    fn deprecated_queue_limit_names_are_moved_to_the_new_ones() {
        let mut c = StompConfig {
            max_pending_per_subscription: Some(5),
            max_pending_bytes_per_subscription: Some(64),
            ..Default::default()
        };
        let given = c.take_deprecated();
        assert_eq!(given.len(), 2);
        assert_eq!((c.max_queued_per_subscription, c.max_queued_bytes_per_subscription), (5, 64));
        assert_eq!(
            c,
            StompConfig {
                max_queued_per_subscription: 5,
                max_queued_bytes_per_subscription: 64,
                ..Default::default()
            }
        );
        assert!(StompConfig::default().take_deprecated().is_empty());
    }
}
