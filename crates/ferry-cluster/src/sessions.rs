//! Session ownership, sans-IO: the key and record a client id has in the sessions
//! bucket, and the bytes of a take-over request and of its answer (the session the old
//! owner hands over). The I/O is in [`crate::ownership`].
//!
//! Request (`<prefix>.ctl.<E(node)>.takeover`): `FYT`, version 1, a flags byte
//! (bit 0: hand the session over), then the client id (the rest, UTF-8).
//!
//! Answer: `FYS`, version 1, a byte 0 (no session known) or 1, then
//! `u32` subscription count, each `u16` filter length, filter, QoS, flags (bit 0 no
//! local, bit 1 retain as published, bit 2 an identifier follows), [`u32` identifier];
//! then `u32` delivery count, each `u16` topic length, topic, QoS, retain, `u16`
//! identifier count, `u32` identifiers, `u32` envelope length, envelope (see
//! [`crate::envelope`]). Integers are big-endian.

use std::time::Instant;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ferry_core::{Delivery, MovedSession, QoS, SubscribeOptions, TopicName};
use serde::{Deserialize, Serialize};

use crate::envelope::{Envelope, Origin};
use crate::subject::encode_level;

const REQUEST_MAGIC: &[u8] = b"FYT";
const ANSWER_MAGIC: &[u8] = b"FYS";
const VERSION: u8 = 1;

/// Why bytes from NATS or the bucket could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionWireError {
    /// Not a take-over request or answer of a version this node knows.
    #[error("not a session message of a known version")]
    Magic,
    /// The bytes end before a field does.
    #[error("session message truncated")]
    Truncated,
    /// A text field that is not UTF-8, or a topic that is not valid.
    #[error("bad text in session message")]
    Text,
    /// QoS 3.
    #[error("bad QoS in session message")]
    QoS,
    /// A record that is not the JSON this node writes.
    #[error("bad session record: {0}")]
    Record(String),
}

/// The sessions bucket's key for `client_id` (one KV token, `E(client_id)`).
pub fn client_key(client_id: &str) -> String {
    let mut key = String::with_capacity(client_id.len() + 8);
    encode_level(client_id, &mut key);
    key
}

/// The record a client id has in the sessions bucket: which node owns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Format version (1).
    pub v: u32,
    /// The owning node's name.
    pub owner: String,
    /// Incremented by every claim.
    pub epoch: u64,
    /// Whether the session outlives its connection.
    pub persistent: bool,
    /// A persistent session's subscriptions, as its owner last wrote them: what
    /// another node resumes from if the owner dies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subs: Vec<RecordSub>,
    /// The connected client's will, for another node to publish should the owner die
    /// (cleared when the connection ends on a live owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub will: Option<RecordWill>,
}

/// A will in a [`Record`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordWill {
    /// The will's topic.
    pub topic: String,
    /// Seconds to wait before publishing it (the lower of will delay and session
    /// expiry).
    pub delay_s: u64,
    /// The message's envelope (QoS, retain, properties, payload; see
    /// [`crate::envelope`]), base64 (standard, padded).
    pub env: String,
}

impl RecordWill {
    /// The record's form of `message`, due `delay` after its connection is lost.
    pub fn new(message: &ferry_core::Message, delay: std::time::Duration, origin: &Origin, now: Instant, now_ms: u64) -> Self {
        use base64::Engine;
        let envelope = Envelope::encode_message(origin, 0, now_ms, message, now);
        Self {
            topic: message.topic.as_str().to_owned(),
            delay_s: delay.as_secs(),
            env: base64::engine::general_purpose::STANDARD.encode(&envelope),
        }
    }

    /// The message again (`None`: unreadable, or expired meanwhile).
    pub fn message(&self, now: Instant, now_ms: u64) -> Option<ferry_core::Message> {
        use base64::Engine;
        let topic = TopicName::new(&self.topic).ok()?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(&self.env).ok()?;
        Envelope::decode(Bytes::from(bytes)).ok()?.into_message(topic, now, now_ms)
    }
}

/// One subscription in a [`Record`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSub {
    /// The filter as the client sent it.
    pub f: String,
    /// The granted QoS (0 to 2).
    pub qos: u8,
    /// No local.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nl: bool,
    /// Retain as published.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rap: bool,
    /// The subscription identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<u32>,
}

impl RecordSub {
    /// The record's form of a subscription.
    pub fn new(filter: &str, o: &SubscribeOptions) -> Self {
        Self {
            f: filter.to_owned(),
            qos: o.qos as u8,
            nl: o.no_local,
            rap: o.retain_as_published,
            sid: o.id,
        }
    }

    /// Back to the filter and options; `None` for a QoS this node cannot read.
    pub fn options(&self) -> Option<(String, SubscribeOptions)> {
        Some((
            self.f.clone(),
            SubscribeOptions {
                qos: QoS::from_u8(self.qos)?,
                no_local: self.nl,
                retain_as_published: self.rap,
                id: self.sid,
            },
        ))
    }
}

impl Record {
    /// The record's bytes (JSON).
    pub fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads a record; one this node cannot read is an error (the caller treats it as
    /// absent).
    pub fn decode(bytes: &[u8]) -> Result<Record, SessionWireError> {
        let record: Record = serde_json::from_slice(bytes).map_err(|e| SessionWireError::Record(e.to_string()))?;
        if record.v != 1 {
            return Err(SessionWireError::Record(format!("version {}", record.v)));
        }
        Ok(record)
    }
}

/// A take-over request: the client id, and whether the session is to be handed over.
pub fn encode_request(client_id: &str, hand_over: bool) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + client_id.len());
    b.put_slice(REQUEST_MAGIC);
    b.put_u8(VERSION);
    b.put_u8(u8::from(hand_over));
    b.put_slice(client_id.as_bytes());
    b.freeze()
}

/// Reads a take-over request: `(client_id, hand_over)`.
pub fn decode_request(bytes: &[u8]) -> Result<(String, bool), SessionWireError> {
    let rest = bytes.strip_prefix(REQUEST_MAGIC).ok_or(SessionWireError::Magic)?;
    let [version, flags, id @ ..] = rest else {
        return Err(SessionWireError::Truncated);
    };
    if *version != VERSION {
        return Err(SessionWireError::Magic);
    }
    let id = std::str::from_utf8(id).map_err(|_| SessionWireError::Text)?;
    Ok((id.to_owned(), flags & 1 != 0))
}

fn put_short(b: &mut BytesMut, s: &[u8]) -> bool {
    let Ok(len) = u16::try_from(s.len()) else { return false };
    b.put_u16(len);
    b.put_slice(s);
    true
}

/// The answer to a take-over: `session` (or none), at most `max_len` bytes: the
/// deliveries that do not fit are left out. Returns the bytes and how many were left
/// out.
pub fn encode_answer(session: Option<&MovedSession>, origin: &Origin, now: Instant, now_ms: u64, max_len: usize) -> (Bytes, usize) {
    let mut b = BytesMut::with_capacity(256);
    b.put_slice(ANSWER_MAGIC);
    b.put_u8(VERSION);
    let Some(session) = session else {
        b.put_u8(0);
        return (b.freeze(), 0);
    };
    b.put_u8(1);
    let subs: Vec<_> = session
        .subscriptions
        .iter()
        .filter(|(f, _)| f.len() <= usize::from(u16::MAX))
        .collect();
    b.put_u32(u32::try_from(subs.len()).unwrap_or(u32::MAX));
    for (filter, o) in subs {
        put_short(&mut b, filter.as_bytes());
        b.put_u8(o.qos as u8);
        b.put_u8(u8::from(o.no_local) | (u8::from(o.retain_as_published) << 1) | (u8::from(o.id.is_some()) << 2));
        if let Some(id) = o.id {
            b.put_u32(id);
        }
    }
    let count_at = b.len();
    b.put_u32(0);
    let (mut count, mut left_out) = (0u32, 0usize);
    for d in &session.deliveries {
        let envelope = Envelope::encode_message(origin, 0, now_ms, &d.message, now);
        let topic = d.message.topic.as_str().as_bytes();
        let ids = d.subscription_ids.len().min(usize::from(u16::MAX));
        let len = 2 + topic.len() + 2 + 2 + 4 * ids + 4 + envelope.len();
        if b.len() + len > max_len || topic.len() > usize::from(u16::MAX) || count == u32::MAX {
            left_out += 1;
            continue;
        }
        put_short(&mut b, topic);
        b.put_u8(d.qos as u8);
        b.put_u8(u8::from(d.retain));
        b.put_u16(u16::try_from(ids).unwrap_or(u16::MAX));
        for id in &d.subscription_ids[..ids] {
            b.put_u32(*id);
        }
        b.put_u32(u32::try_from(envelope.len()).unwrap_or(u32::MAX));
        b.put_slice(&envelope);
        count += 1;
    }
    b[count_at..count_at + 4].copy_from_slice(&count.to_be_bytes());
    (b.freeze(), left_out)
}

struct Reader {
    b: Bytes,
}

impl Reader {
    fn take(&mut self, n: usize) -> Result<Bytes, SessionWireError> {
        if self.b.len() < n {
            return Err(SessionWireError::Truncated);
        }
        Ok(self.b.split_to(n))
    }
    fn u8(&mut self) -> Result<u8, SessionWireError> {
        Ok(self.take(1)?.get_u8())
    }
    fn u16(&mut self) -> Result<u16, SessionWireError> {
        Ok(self.take(2)?.get_u16())
    }
    fn u32(&mut self) -> Result<u32, SessionWireError> {
        Ok(self.take(4)?.get_u32())
    }
    fn short_text(&mut self) -> Result<String, SessionWireError> {
        let n = usize::from(self.u16()?);
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| SessionWireError::Text)
    }
    fn qos(&mut self) -> Result<QoS, SessionWireError> {
        QoS::from_u8(self.u8()?).ok_or(SessionWireError::QoS)
    }
    /// A count of items taking at least `min` bytes each, bounded by what is left.
    fn count(&mut self, min: usize) -> Result<usize, SessionWireError> {
        let n = usize::try_from(self.u32()?).map_err(|_| SessionWireError::Truncated)?;
        if n > self.b.len() / min {
            return Err(SessionWireError::Truncated);
        }
        Ok(n)
    }
}

/// Reads a take-over answer received at `now` (Unix ms `now_ms`): the session, or
/// `None` when the old owner knew none. Deliveries whose message expired meanwhile
/// are left out.
pub fn decode_answer(bytes: Bytes, now: Instant, now_ms: u64) -> Result<Option<MovedSession>, SessionWireError> {
    if !bytes.starts_with(ANSWER_MAGIC) {
        return Err(SessionWireError::Magic);
    }
    let mut r = Reader {
        b: bytes.slice(ANSWER_MAGIC.len()..),
    };
    if r.u8()? != VERSION {
        return Err(SessionWireError::Magic);
    }
    if r.u8()? == 0 {
        return Ok(None);
    }
    let mut session = MovedSession::default();
    for _ in 0..r.count(4)? {
        let filter = r.short_text()?;
        let qos = r.qos()?;
        let flags = r.u8()?;
        let id = if flags & 4 != 0 { Some(r.u32()?) } else { None };
        session.subscriptions.push((
            filter,
            SubscribeOptions {
                qos,
                no_local: flags & 1 != 0,
                retain_as_published: flags & 2 != 0,
                id,
            },
        ));
    }
    for _ in 0..r.count(14)? {
        let topic = TopicName::new(&r.short_text()?).map_err(|_| SessionWireError::Text)?;
        let qos = r.qos()?;
        let retain = r.u8()? != 0;
        let ids = usize::from(r.u16()?);
        let mut subscription_ids = Vec::with_capacity(ids.min(r.b.len() / 4));
        for _ in 0..ids {
            subscription_ids.push(r.u32()?);
        }
        let len = usize::try_from(r.u32()?).map_err(|_| SessionWireError::Truncated)?;
        let envelope = Envelope::decode(r.take(len)?).map_err(|_| SessionWireError::Truncated)?;
        let Some(message) = envelope.into_message(topic, now, now_ms) else {
            continue;
        };
        session.deliveries.push(Delivery {
            message: std::sync::Arc::new(message),
            qos,
            retain,
            subscription_ids,
        });
    }
    Ok(Some(session))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ferry_core::{Message, Properties};

    use super::*;

    fn origin() -> Origin {
        Origin {
            name: "n1".into(),
            instance: 7,
        }
    }

    #[test]
    fn key_is_one_token() {
        assert_eq!(client_key("sensor-1"), "sensor-1");
        assert_eq!(client_key("a.b c"), "=YS5iIGM");
        assert!(!client_key("a/b.c*>").contains(['.', '*', '>', '/']));
    }

    #[test]
    fn request_round_trip_byte_exact() {
        let b = encode_request("é/x", true);
        assert_eq!(&b[..], b"FYT\x01\x01\xc3\xa9/x");
        assert_eq!(decode_request(&b), Ok(("é/x".to_owned(), true)));
        assert_eq!(decode_request(&encode_request("c", false)), Ok(("c".to_owned(), false)));
        assert_eq!(decode_request(b"FYT\x01"), Err(SessionWireError::Truncated));
        assert_eq!(decode_request(b"XYZ\x01\x00c"), Err(SessionWireError::Magic));
        assert_eq!(decode_request(b"FYT\x01\x00\xff"), Err(SessionWireError::Text));
    }

    #[test]
    fn record_round_trip() {
        let mut r = Record {
            v: 1,
            owner: "n2".into(),
            epoch: 7,
            persistent: true,
            subs: Vec::new(),
            will: None,
        };
        let b = r.encode();
        assert_eq!(&b[..], br#"{"v":1,"owner":"n2","epoch":7,"persistent":true}"#);
        assert_eq!(Record::decode(&b), Ok(r.clone()));
        let o = SubscribeOptions {
            qos: QoS::AtLeastOnce,
            no_local: true,
            retain_as_published: false,
            id: Some(5),
        };
        r.subs = vec![RecordSub::new("a/#", &o), RecordSub::new("b", &SubscribeOptions::default())];
        let b = r.encode();
        assert_eq!(
            &b[..],
            br#"{"v":1,"owner":"n2","epoch":7,"persistent":true,"subs":[{"f":"a/#","qos":1,"nl":true,"sid":5},{"f":"b","qos":0}]}"#
        );
        let back = Record::decode(&b).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.subs[0].options(), Some(("a/#".to_owned(), o)));
        assert_eq!(
            Record::decode(br#"{"v":1,"owner":"n","epoch":1,"persistent":true,"subs":[{"f":"x","qos":3}]}"#)
                .unwrap()
                .subs[0]
                .options(),
            None
        );
        assert!(Record::decode(b"{}").is_err());
        assert!(Record::decode(br#"{"v":2,"owner":"n2","epoch":7,"persistent":true}"#).is_err());
    }

    #[test]
    fn will_in_a_record_round_trips() {
        let now = Instant::now();
        let m = Message::new(TopicName::new("w/x").unwrap(), Bytes::from_static(b"bye"), QoS::AtLeastOnce, true);
        let w = RecordWill::new(&m, std::time::Duration::from_secs(10), &origin(), now, 1_000);
        assert_eq!(w.topic, "w/x");
        assert_eq!(w.delay_s, 10);
        let r = Record {
            v: 1,
            owner: "n1".into(),
            epoch: 1,
            persistent: false,
            subs: Vec::new(),
            will: Some(w.clone()),
        };
        let back = Record::decode(&r.encode()).unwrap();
        assert_eq!(back, r);
        let m2 = back.will.unwrap().message(now, 1_000).unwrap();
        assert_eq!((m2.topic, m2.payload, m2.qos, m2.retain), (m.topic, m.payload, m.qos, m.retain));
        let bad = RecordWill {
            env: "not base64!".into(),
            ..w
        };
        assert!(bad.message(now, 1_000).is_none());
    }

    #[test]
    fn no_session_answer() {
        let (b, left) = encode_answer(None, &origin(), Instant::now(), 1_000, 1 << 20);
        assert_eq!((&b[..], left), (&b"FYS\x01\x00"[..], 0));
        assert!(decode_answer(b, Instant::now(), 1_000).unwrap().is_none());
    }

    fn session() -> MovedSession {
        let props = Properties {
            content_type: Some("text/plain".into()),
            user_properties: vec![("k".into(), "v".into())],
            ..Default::default()
        };
        let m = Message::new(
            TopicName::new("a/b").unwrap(),
            Bytes::from_static(b"hello"),
            QoS::AtLeastOnce,
            false,
        )
        .with_properties(props);
        MovedSession {
            subscriptions: vec![
                (
                    "a/#".into(),
                    SubscribeOptions {
                        qos: QoS::AtLeastOnce,
                        no_local: true,
                        retain_as_published: false,
                        id: Some(5),
                    },
                ),
                ("$share/g/x".into(), SubscribeOptions::default()),
            ],
            deliveries: vec![Delivery {
                message: Arc::new(m),
                qos: QoS::AtLeastOnce,
                retain: true,
                subscription_ids: vec![5],
            }],
        }
    }

    #[test]
    fn session_answer_round_trip() {
        let now = Instant::now();
        let s = session();
        let (b, left) = encode_answer(Some(&s), &origin(), now, 1_000, 1 << 20);
        assert_eq!(left, 0);
        // The subscriptions' bytes, exactly.
        assert_eq!(
            &b[..34],
            b"FYS\x01\x01\x00\x00\x00\x02\x00\x03a/#\x01\x05\x00\x00\x00\x05\x00\x0a$share/g/x\x00\x00"
        );
        let back = decode_answer(b.clone(), now, 1_000).unwrap().unwrap();
        assert_eq!(back.subscriptions, s.subscriptions);
        assert_eq!(back.deliveries.len(), 1);
        let (d, e) = (&back.deliveries[0], &s.deliveries[0]);
        assert_eq!((d.qos, d.retain, &d.subscription_ids), (e.qos, e.retain, &e.subscription_ids));
        assert_eq!(d.message.topic, e.message.topic);
        assert_eq!(d.message.payload, e.message.payload);
        assert_eq!(d.message.properties, e.message.properties);
        // Encoding what was decoded gives the same bytes.
        assert_eq!(encode_answer(Some(&back), &origin(), now, 1_000, 1 << 20).0, b);
        // Every truncation is an error, never a panic.
        for n in 0..b.len() {
            assert!(decode_answer(b.slice(..n), now, 1_000).is_err(), "{n}");
        }
    }

    #[test]
    fn answer_past_the_limit_leaves_deliveries_out() {
        let s = session();
        let (b, left) = encode_answer(Some(&s), &origin(), Instant::now(), 1_000, 40);
        assert_eq!(left, 1);
        let back = decode_answer(b, Instant::now(), 1_000).unwrap().unwrap();
        assert_eq!((back.subscriptions.len(), back.deliveries.len()), (2, 0));
    }
}
