//! The records of STOMP's durable queues (kinds 20–29), with no I/O: what
//! [`BrokerJournal`](crate::BrokerJournal) writes for the core's `queue_*` calls and
//! reads back on recovery. The layout follows [`crate::records`]: a format byte first,
//! little-endian integers, strings as a `u32` length and the bytes.
//!
//! | kind | record | body after the format byte |
//! |---|---|---|
//! | 20 | [`QUEUE_PUT`] | queue, entry `u64`, flags `u8`, the message as a retained record holds it (topic … payload) |
//! | 21 | [`QUEUE_DELIVERED`] | queue, entry `u64` |
//! | 22 | [`QUEUE_REMOVED`] | queue, entry `u64` |
//!
//! Flags of a put: bit 0, the entry was delivered before (a snapshot writes it for an
//! entry sent and not yet acknowledged; a SEND never sets it). A message is written
//! whole in its put: a queue message belongs to one queue, so there is no body to share.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use ferry_core::Message;

use crate::records::{encode_message_at, put_bytes, read_message, Reader, RecordError, FORMAT};

/// A message put into a queue (or, in a snapshot, one the queue still holds).
pub const QUEUE_PUT: u8 = 20;
/// A queue's entry was sent to a consumer that acknowledges: it comes back
/// `redelivered:true` after a restart.
pub const QUEUE_DELIVERED: u8 = 21;
/// A queue's entry is gone: acknowledged, or taken by an `ack:auto` consumer.
pub const QUEUE_REMOVED: u8 = 22;

const DELIVERED: u8 = 1;

/// Whether `kind` is one of the queues' records.
pub fn is_queue_kind(kind: u8) -> bool {
    (20..30).contains(&kind)
}

/// A queue record read back.
#[derive(Debug)]
pub enum QueueRecord {
    /// [`QUEUE_PUT`]; `message` is `None` if it expired while the broker was down.
    Put {
        /// The queue's name.
        queue: String,
        /// The entry's id in its queue.
        entry: u64,
        /// Whether it had been delivered.
        delivered: bool,
        /// The message.
        message: Option<Arc<Message>>,
    },
    /// [`QUEUE_DELIVERED`].
    Delivered {
        /// The queue's name.
        queue: String,
        /// The entry's id in its queue.
        entry: u64,
    },
    /// [`QUEUE_REMOVED`].
    Removed {
        /// The queue's name.
        queue: String,
        /// The entry's id in its queue.
        entry: u64,
    },
}

fn head(queue: &str, entry: u64, out: &mut Vec<u8>) {
    out.push(FORMAT);
    put_bytes(out, queue.as_bytes());
    out.extend_from_slice(&entry.to_le_bytes());
}

/// Appends the body of a [`QUEUE_PUT`] record to `out`.
pub fn encode_put(queue: &str, entry: u64, delivered: bool, message: &Message, out: &mut Vec<u8>) {
    encode_put_at(queue, entry, delivered, message, Instant::now(), SystemTime::now(), out);
}

fn encode_put_at(queue: &str, entry: u64, delivered: bool, message: &Message, now: Instant, wall_now: SystemTime, out: &mut Vec<u8>) {
    head(queue, entry, out);
    out.push(if delivered { DELIVERED } else { 0 });
    encode_message_at(message, now, wall_now, out);
}

/// Appends the body of a [`QUEUE_DELIVERED`] record to `out`.
pub fn encode_delivered(queue: &str, entry: u64, out: &mut Vec<u8>) {
    head(queue, entry, out);
}

/// Appends the body of a [`QUEUE_REMOVED`] record to `out`.
pub fn encode_removed(queue: &str, entry: u64, out: &mut Vec<u8>) {
    head(queue, entry, out);
}

/// Reads a queue record of `kind` back.
pub fn decode(kind: u8, body: &[u8]) -> Result<QueueRecord, RecordError> {
    decode_at(kind, body, Instant::now(), SystemTime::now())
}

pub(crate) fn decode_at(kind: u8, body: &[u8], now: Instant, wall_now: SystemTime) -> Result<QueueRecord, RecordError> {
    let mut r = Reader::new(body);
    let format = r.u8()?;
    if format > FORMAT {
        return Err(RecordError::NewerFormat(format));
    }
    if !matches!(kind, QUEUE_PUT | QUEUE_DELIVERED | QUEUE_REMOVED) {
        return Err(RecordError::UnknownKind(kind));
    }
    let queue = r.string()?;
    let entry = r.u64()?;
    Ok(match kind {
        QUEUE_PUT => {
            let delivered = r.u8()? & DELIVERED != 0;
            let (_, message) = read_message(&mut r, false, now, wall_now)?;
            QueueRecord::Put {
                queue,
                entry,
                delivered,
                message: message.map(Arc::new),
            }
        }
        QUEUE_DELIVERED => QueueRecord::Delivered { queue, entry },
        _ => QueueRecord::Removed { queue, entry },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ferry_core::{Properties, QoS, TopicName};

    fn message() -> Message {
        Message::new(
            TopicName::new("/queue/q").unwrap(),
            Bytes::from_static(b"hi"),
            QoS::AtLeastOnce,
            false,
        )
        .with_properties(Properties {
            content_type: Some("text/plain".into()),
            user_properties: vec![("reply-to".into(), "/reply-queue/t".into())],
            ..Properties::default()
        })
    }

    #[test]
    fn a_removal_byte_for_byte() {
        let mut out = Vec::new();
        encode_removed("q", 258, &mut out);
        assert_eq!(out, [1, 1, 0, 0, 0, b'q', 2, 1, 0, 0, 0, 0, 0, 0]);
        let QueueRecord::Removed { queue, entry } = decode(QUEUE_REMOVED, &out).unwrap() else {
            panic!()
        };
        assert_eq!((queue.as_str(), entry), ("q", 258));
        let mut delivered = Vec::new();
        encode_delivered("q", 258, &mut delivered);
        assert_eq!(delivered, out, "the same body, another kind");
        assert!(matches!(
            decode(QUEUE_DELIVERED, &delivered).unwrap(),
            QueueRecord::Delivered { entry: 258, .. }
        ));
    }

    #[test]
    fn a_put_byte_for_byte_and_back() {
        let m = Message::new(
            TopicName::new("/queue/q").unwrap(),
            Bytes::from_static(b"42"),
            QoS::AtLeastOnce,
            false,
        );
        let mut out = Vec::new();
        encode_put("q", 7, true, &m, &mut out);
        #[rustfmt::skip]
        let expected = [
            1,                          // format
            1, 0, 0, 0, b'q',           // queue
            7, 0, 0, 0, 0, 0, 0, 0,     // entry
            1,                          // delivered
            8, 0, 0, 0, b'/', b'q', b'u', b'e', b'u', b'e', b'/', b'q', // topic
            1,                          // QoS 1
            0,                          // no message flags
            0, 0, 0, 0,                 // no user properties
            2, 0, 0, 0, b'4', b'2',     // payload
        ];
        assert_eq!(out, expected);
        let m = message();
        out.clear();
        encode_put("q", 9, false, &m, &mut out);
        let QueueRecord::Put {
            queue,
            entry,
            delivered,
            message: Some(back),
        } = decode(QUEUE_PUT, &out).unwrap()
        else {
            panic!()
        };
        assert_eq!((queue.as_str(), entry, delivered), ("q", 9, false));
        assert_eq!(back.topic, m.topic);
        assert_eq!(back.payload, m.payload);
        assert_eq!(back.properties, m.properties);
        assert!(!back.retain);
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let mut put = Vec::new();
        encode_put("jobs", 1, false, &message(), &mut put);
        for cut in 0..put.len() {
            assert!(decode(QUEUE_PUT, &put[..cut]).is_err(), "put cut at {cut}");
        }
        let mut removed = Vec::new();
        encode_removed("jobs", 1, &mut removed);
        for cut in 0..removed.len() {
            assert!(decode(QUEUE_REMOVED, &removed[..cut]).is_err(), "removal cut at {cut}");
            assert!(decode(QUEUE_DELIVERED, &removed[..cut]).is_err(), "delivery cut at {cut}");
        }
        let mut huge = put.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(QUEUE_PUT, &huge), Err(RecordError::Short(_))));
        let mut bad_name = put.clone();
        bad_name[5] = 0xff;
        assert!(matches!(decode(QUEUE_PUT, &bad_name), Err(RecordError::NotUtf8(_))));
        assert_eq!(decode(23, &put).unwrap_err(), RecordError::UnknownKind(23));
        let mut newer = put;
        newer[0] = 2;
        assert_eq!(decode(QUEUE_PUT, &newer).unwrap_err(), RecordError::NewerFormat(2));
        assert!(is_queue_kind(QUEUE_PUT) && is_queue_kind(29) && !is_queue_kind(19) && !is_queue_kind(30));
    }

    #[test]
    fn an_expired_message_reads_back_as_none() {
        let now = Instant::now();
        let wall = SystemTime::now();
        let m = message().with_expiry(Some(ferry_core::Expiry::after(now, std::time::Duration::from_secs(5))));
        let mut out = Vec::new();
        encode_put_at("q", 1, false, &m, now, wall, &mut out);
        let later = decode_at(QUEUE_PUT, &out, now, wall + std::time::Duration::from_secs(6)).unwrap();
        assert!(matches!(later, QueueRecord::Put { message: None, .. }));
    }
}
