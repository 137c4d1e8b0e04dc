//! A published message as the core routes it: protocol-neutral, shared by every
//! subscriber (`Arc<Message>`), with its payload as `Bytes` so that no subscriber copies
//! it, and a small cache so that a frame encoded for one subscriber is reused by all
//! the others that need the same bytes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::retained::Weighed;
use crate::topic::TopicName;

/// Delivery guarantee (MQTT's QoS; STOMP acknowledgement modes map onto it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum QoS {
    /// At most once: fire and forget.
    #[default]
    AtMostOnce = 0,
    /// At least once: redelivered until acknowledged.
    AtLeastOnce = 1,
    /// Exactly once: MQTT's four-packet handshake.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for a wire value 0..=2.
    pub fn from_u8(value: u8) -> Option<QoS> {
        match value {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// Identifies a subscriber: what a message came from or goes to, outliving any one
/// connection (an MQTT session, a STOMP subscription). The router keys subscriptions by it, so it must be unique across every protocol:
/// take new ones from [`next_subscriber_id`].
pub type SubscriberId = u64;

/// A new, process-wide unique [`SubscriberId`] (never 0). Every adapter takes the
/// identities it subscribes under from here, so that an MQTT session and a STOMP
/// subscription never share one in the router (where the same id on the same filter
/// would replace each other's subscription).
pub fn next_subscriber_id() -> SubscriberId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Metadata that travels with a payload: MQTT 5 properties and STOMP headers, mapped
/// onto each other by the adapters. Forwarded unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    /// MQTT 5 payload format indicator: `Some(true)` when the payload is UTF-8 text.
    pub payload_is_utf8: Option<bool>,
    /// MIME type of the payload (MQTT 5 content type, STOMP `content-type`).
    pub content_type: Option<String>,
    /// Where to send a reply (MQTT 5 response topic, STOMP `reply-to` once mapped).
    pub response_topic: Option<String>,
    /// Opaque request/reply correlation data.
    pub correlation_data: Option<Bytes>,
    /// Application key/value pairs (MQTT 5 user properties, extra STOMP headers), in order.
    pub user_properties: Vec<(String, String)>,
}

/// When a message stops being deliverable (MQTT 5 message expiry interval).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// The instant after which the message is dropped instead of delivered.
    pub at: Instant,
}

impl Expiry {
    /// Expiry `interval` after `now`.
    pub fn after(now: Instant, interval: Duration) -> Self {
        Self { at: now + interval }
    }

    /// Whole seconds left at `now` (what MQTT 5 forwards), or `None` once expired.
    pub fn remaining_secs(&self, now: Instant) -> Option<u32> {
        let left = self.at.checked_duration_since(now)?;
        if left.is_zero() {
            return None;
        }
        // Round up so a message with time left never shows 0.
        Some(u32::try_from(left.as_millis().div_ceil(1000)).unwrap_or(u32::MAX))
    }
}

/// Number of encoding slots a message caches (see [`Message::encoded`]): MQTT takes
/// 0–3 (3.1.1 or 5, retain or not), [`SSE_JSON_SLOT`] is the event stream's JSON.
pub const ENCODING_SLOTS: usize = 5;

/// The encoding slot of a message's JSON as Server-Sent Events carry it (ferry-admin).
pub const SSE_JSON_SLOT: usize = 4;

/// A message in flight through the broker.
#[derive(Debug)]
pub struct Message {
    /// The topic it was published to.
    pub topic: TopicName,
    /// The application payload, shared.
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: QoS,
    /// Whether the publisher set the retain flag.
    pub retain: bool,
    /// Metadata forwarded with it.
    pub properties: Properties,
    /// Expiry, if the publisher set one.
    pub expiry: Option<Expiry>,
    /// The publishing subscriber, for MQTT 5's no-local option; `None` for the broker's own.
    pub publisher: Option<SubscriberId>,
    /// The encodings cache, allocated on a message's first encoding: most messages a
    /// broker holds (retained, queued for offline sessions) are never encoded, and the
    /// slots inline would make every message about 190 bytes bigger.
    encoded: OnceLock<Box<[OnceLock<Bytes>; ENCODING_SLOTS]>>,
    /// The journal's id of this message's body, once a durable queue holds it: the body
    /// is written once however many sessions or queues hold the message.
    stored: OnceLock<u64>,
}

impl Message {
    /// A message with no metadata, expiry or publisher.
    pub fn new(topic: TopicName, payload: Bytes, qos: QoS, retain: bool) -> Self {
        Self {
            topic,
            payload,
            qos,
            retain,
            properties: Properties::default(),
            expiry: None,
            publisher: None,
            encoded: OnceLock::new(),
            stored: OnceLock::new(),
        }
    }

    /// Set the metadata.
    pub fn with_properties(mut self, properties: Properties) -> Self {
        self.properties = properties;
        self
    }

    /// Set the expiry.
    pub fn with_expiry(mut self, expiry: Option<Expiry>) -> Self {
        self.expiry = expiry;
        self
    }

    /// Set the publishing subscriber.
    pub fn with_publisher(mut self, publisher: SubscriberId) -> Self {
        self.publisher = Some(publisher);
        self
    }

    /// Whether the message may no longer be delivered at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expiry.is_some_and(|e| e.remaining_secs(now).is_none())
    }

    /// The bytes of this message in encoding `slot`, made by `encode` the first time and
    /// shared by every later caller. Adapters own slot numbers (below
    /// [`ENCODING_SLOTS`]) and use one only for frames that are the same for every
    /// subscriber (no packet id, alias or subscription id in them). An out-of-range slot
    /// just encodes without caching.
    pub fn encoded(&self, slot: usize, encode: impl FnOnce(&Message) -> Bytes) -> Bytes {
        if slot >= ENCODING_SLOTS {
            return encode(self);
        }
        self.encoded.get_or_init(Box::default)[slot].get_or_init(|| encode(self)).clone()
    }
}

impl Message {
    /// The journal's id of this message's body, if it was written (see
    /// [`Message::stored_id_or`]).
    pub fn stored_id(&self) -> Option<u64> {
        self.stored.get().copied()
    }

    /// The journal's id of this message's body: `store` writes it the first time and
    /// returns the new id; every later caller gets that id. Two callers racing on a
    /// message's first write may both run `store`; the first id set wins (the other
    /// body is an orphan the next snapshot leaves out).
    pub fn stored_id_or<E>(&self, store: impl FnOnce() -> Result<u64, E>) -> Result<u64, E> {
        if let Some(id) = self.stored.get() {
            return Ok(*id);
        }
        let id = store()?;
        Ok(*self.stored.get_or_init(|| id))
    }

    /// Marks the body as already in the journal under `id` (a message restored at start).
    pub fn with_stored_id(self, id: u64) -> Self {
        let _ = self.stored.set(id);
        self
    }
}

impl Weighed for Message {
    /// Topic and payload bytes, for limits on retained and queued messages.
    fn weight(&self) -> usize {
        self.topic.as_str().len() + self.payload.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn msg() -> Message {
        Message::new(TopicName::new("a/b").unwrap(), Bytes::from_static(b"hi"), QoS::AtLeastOnce, false)
    }

    /// What a message costs a broker that holds many (retained, queued): its struct,
    /// without the encodings cache until it is first encoded.
    #[test]
    fn a_message_is_small_until_encoded() {
        let size = std::mem::size_of::<Message>();
        assert!(size <= 240, "Message is {size} bytes");
    }

    #[test]
    fn encoding_is_done_once_per_slot() {
        let m = msg();
        let calls = Cell::new(0);
        let enc = |m: &Message| {
            calls.set(calls.get() + 1);
            m.payload.clone()
        };
        let a = m.encoded(0, enc);
        let b = m.encoded(0, enc);
        assert_eq!(calls.get(), 1);
        assert_eq!(a.as_ptr(), b.as_ptr(), "the same bytes are shared");
        m.encoded(1, enc);
        m.encoded(ENCODING_SLOTS, enc);
        m.encoded(ENCODING_SLOTS, enc);
        assert_eq!(calls.get(), 4, "a new slot encodes again; out of range never caches");
    }

    #[test]
    fn expiry_counts_whole_seconds_up_and_ends() {
        let now = Instant::now();
        let e = Expiry::after(now, Duration::from_millis(1500));
        assert_eq!(e.remaining_secs(now), Some(2));
        assert_eq!(e.remaining_secs(now + Duration::from_millis(600)), Some(1));
        assert_eq!(e.remaining_secs(now + Duration::from_millis(1500)), None);
        let m = msg().with_expiry(Some(e));
        assert!(!m.is_expired(now));
        assert!(m.is_expired(now + Duration::from_secs(2)));
    }

    #[test]
    fn subscriber_ids_are_unique_and_never_zero() {
        let a = next_subscriber_id();
        let b = next_subscriber_id();
        assert!(a > 0 && b > a);
    }

    #[test]
    fn qos_from_wire() {
        assert_eq!(QoS::from_u8(2), Some(QoS::ExactlyOnce));
        assert_eq!(QoS::from_u8(3), None);
        assert!(QoS::AtMostOnce < QoS::ExactlyOnce);
    }
}
