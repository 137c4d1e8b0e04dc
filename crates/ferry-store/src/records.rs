//! The broker's record types and their bodies, with no I/O: what ferry-store writes for
//! the core's [`Journal`](ferry_core::Journal) calls, and reads back on recovery.
//!
//! Every body starts with a format byte ([`FORMAT`]); integers are little-endian;
//! strings and byte strings are a `u32` length and the bytes. Times are wall-clock
//! (milliseconds since the Unix epoch): an `Instant` means nothing after a restart.
//!
//! | kind | record | body after the format byte |
//! |---|---|---|
//! | 1 | [`RETAINED_SET`] | topic, qos `u8`, flags `u8`, [expiry `u64`], [content type], [response topic], [correlation data], user property count `u32` and pairs, payload |
//! | 2 | [`RETAINED_CLEAR`] | topic |
//!
//! Flags: bit 0 expiry present, bit 1 payload-format indicator present, bit 2 its value
//! (UTF-8), bit 3 content type present, bit 4 response topic present, bit 5
//! correlation data present.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ferry_core::{Expiry, Message, Properties, QoS, TopicName};

/// A retained message set: the whole message.
pub const RETAINED_SET: u8 = 1;
/// A retained message cleared: its topic.
pub const RETAINED_CLEAR: u8 = 2;

/// The body format written today; a newer one is refused on recovery.
pub const FORMAT: u8 = 1;

const HAS_EXPIRY: u8 = 1;
const HAS_UTF8: u8 = 1 << 1;
const IS_UTF8: u8 = 1 << 2;
const HAS_CONTENT_TYPE: u8 = 1 << 3;
const HAS_RESPONSE_TOPIC: u8 = 1 << 4;
const HAS_CORRELATION: u8 = 1 << 5;

/// Why a record's body cannot be read. The CRC matched, so this is a format this build
/// does not know (or a bug), never a torn write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The body ended before a field.
    #[error("record body ends early (at byte {0})")]
    Short(usize),
    /// A string field is not UTF-8.
    #[error("record field at byte {0} is not UTF-8")]
    NotUtf8(usize),
    /// The topic is not a valid topic name.
    #[error("record holds an invalid topic {0:?}")]
    BadTopic(String),
    /// A QoS other than 0, 1, 2.
    #[error("record holds QoS {0}")]
    BadQos(u8),
    /// Written by a newer Ferry.
    #[error("record format {0} is newer than this Ferry's ({FORMAT}); run the newer version")]
    NewerFormat(u8),
    /// A kind this build does not know.
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    /// A field holds a value its record does not allow.
    #[error("record holds an invalid {0} ({1})")]
    Invalid(&'static str, u64),
}

/// A record read back.
#[derive(Debug)]
pub enum Decoded {
    /// A retained message, with its expiry made an `Instant` again; `None` if it expired
    /// while the broker was down.
    RetainedSet(TopicName, Option<Box<Message>>),
    /// A retained message cleared.
    RetainedClear(TopicName),
}

/// Milliseconds since the Unix epoch of `at`, an instant measured against `now` and the
/// wall clock `wall_now`.
pub(crate) fn unix_ms(at: Instant, now: Instant, wall_now: SystemTime) -> u64 {
    let wall = match at.checked_duration_since(now) {
        Some(ahead) => wall_now + ahead,
        None => wall_now - now.saturating_duration_since(at),
    };
    wall.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The instant of the wall-clock time `ms`, or `None` if it has passed.
pub(crate) fn instant_of(ms: u64, now: Instant, wall_now: SystemTime) -> Option<Instant> {
    let wall = UNIX_EPOCH + Duration::from_millis(ms);
    let ahead = wall.duration_since(wall_now).ok().filter(|d| !d.is_zero())?;
    now.checked_add(ahead)
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // A field longer than 4 GiB cannot be in a record (a record fits in a segment).
    out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(b);
}

/// Appends the body of a [`RETAINED_SET`] record for `message` to `out`.
pub fn encode_retained_set(message: &Message, out: &mut Vec<u8>) {
    out.push(FORMAT);
    encode_message(message, out);
}

/// [`encode_message_at`] reading the clocks only for a message that expires (a clock
/// read costs more than encoding a small message).
pub(crate) fn encode_message(message: &Message, out: &mut Vec<u8>) {
    static NO_CLOCK: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let (now, wall_now) = match message.expiry {
        Some(_) => (Instant::now(), SystemTime::now()),
        None => (*NO_CLOCK.get_or_init(Instant::now), UNIX_EPOCH),
    };
    encode_message_at(message, now, wall_now, out);
}

#[cfg(test)]
fn encode_retained_set_at(message: &Message, now: Instant, wall_now: SystemTime, out: &mut Vec<u8>) {
    out.push(FORMAT);
    encode_message_at(message, now, wall_now, out);
}

/// Appends `message`'s fields (topic, QoS, flags, expiry, properties, payload: the
/// retained record's body after its format byte) to `out`.
pub(crate) fn encode_message_at(message: &Message, now: Instant, wall_now: SystemTime, out: &mut Vec<u8>) {
    let p = &message.properties;
    let mut flags = 0;
    if message.expiry.is_some() {
        flags |= HAS_EXPIRY;
    }
    if let Some(utf8) = p.payload_is_utf8 {
        flags |= HAS_UTF8 | if utf8 { IS_UTF8 } else { 0 };
    }
    for (present, bit) in [
        (p.content_type.is_some(), HAS_CONTENT_TYPE),
        (p.response_topic.is_some(), HAS_RESPONSE_TOPIC),
        (p.correlation_data.is_some(), HAS_CORRELATION),
    ] {
        if present {
            flags |= bit;
        }
    }
    put_bytes(out, message.topic.as_str().as_bytes());
    out.push(message.qos as u8);
    out.push(flags);
    if let Some(e) = message.expiry {
        out.extend_from_slice(&unix_ms(e.at, now, wall_now).to_le_bytes());
    }
    if let Some(c) = &p.content_type {
        put_bytes(out, c.as_bytes());
    }
    if let Some(r) = &p.response_topic {
        put_bytes(out, r.as_bytes());
    }
    if let Some(c) = &p.correlation_data {
        put_bytes(out, c);
    }
    out.extend_from_slice(&u32::try_from(p.user_properties.len()).unwrap_or(u32::MAX).to_le_bytes());
    for (k, v) in &p.user_properties {
        put_bytes(out, k.as_bytes());
        put_bytes(out, v.as_bytes());
    }
    put_bytes(out, &message.payload);
}

/// Appends the body of a [`RETAINED_CLEAR`] record for `topic` to `out`.
pub fn encode_retained_clear(topic: &TopicName, out: &mut Vec<u8>) {
    out.push(FORMAT);
    put_bytes(out, topic.as_str().as_bytes());
}

/// Reads a record of `kind` back.
pub fn decode(kind: u8, body: &[u8]) -> Result<Decoded, RecordError> {
    decode_at(kind, body, Instant::now(), SystemTime::now())
}

pub(crate) fn decode_at(kind: u8, body: &[u8], now: Instant, wall_now: SystemTime) -> Result<Decoded, RecordError> {
    let mut r = Reader::new(body);
    let format = r.u8()?;
    if format > FORMAT {
        return Err(RecordError::NewerFormat(format));
    }
    match kind {
        RETAINED_SET => {
            let (topic, message) = read_message(&mut r, true, now, wall_now)?;
            Ok(Decoded::RetainedSet(topic, message.map(Box::new)))
        }
        RETAINED_CLEAR => Ok(Decoded::RetainedClear(r.topic()?)),
        other => Err(RecordError::UnknownKind(other)),
    }
}

/// Reads the fields [`encode_message_at`] wrote: the topic, and the message with
/// `retain` set and its expiry made an `Instant` again, or `None` if it expired.
pub(crate) fn read_message(
    r: &mut Reader<'_>,
    retain: bool,
    now: Instant,
    wall_now: SystemTime,
) -> Result<(TopicName, Option<Message>), RecordError> {
    let topic = r.topic()?;
    let qos = r.u8()?;
    let qos = QoS::from_u8(qos).ok_or(RecordError::BadQos(qos))?;
    let flags = r.u8()?;
    let expires_at = if flags & HAS_EXPIRY != 0 { Some(r.u64()?) } else { None };
    let mut properties = Properties {
        payload_is_utf8: (flags & HAS_UTF8 != 0).then_some(flags & IS_UTF8 != 0),
        ..Properties::default()
    };
    if flags & HAS_CONTENT_TYPE != 0 {
        properties.content_type = Some(r.string()?);
    }
    if flags & HAS_RESPONSE_TOPIC != 0 {
        properties.response_topic = Some(r.string()?);
    }
    if flags & HAS_CORRELATION != 0 {
        properties.correlation_data = Some(Bytes::copy_from_slice(r.bytes()?));
    }
    let count = r.u32()?;
    for _ in 0..count {
        let k = r.string()?;
        let v = r.string()?;
        properties.user_properties.push((k, v));
    }
    let payload = Bytes::copy_from_slice(r.bytes()?);
    let expiry = match expires_at {
        None => None,
        Some(ms) => match instant_of(ms, now, wall_now) {
            Some(at) => Some(Expiry { at }),
            None => return Ok((topic, None)),
        },
    };
    let message = Message::new(topic.clone(), payload, qos, retain)
        .with_properties(properties)
        .with_expiry(expiry);
    Ok((topic, Some(message)))
}

/// Reads fields off a body, never past its end.
pub(crate) struct Reader<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `body`.
    pub(crate) fn new(body: &'a [u8]) -> Self {
        Self { body, at: 0 }
    }

    /// Whether every byte was read.
    pub(crate) fn is_done(&self) -> bool {
        self.at == self.body.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let end = self.at.checked_add(n).filter(|end| *end <= self.body.len());
        let end = end.ok_or(RecordError::Short(self.at))?;
        let out = &self.body[self.at..end];
        self.at = end;
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, RecordError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, RecordError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, RecordError> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], RecordError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    pub(crate) fn string(&mut self) -> Result<String, RecordError> {
        let at = self.at;
        let b = self.bytes()?;
        std::str::from_utf8(b).map(str::to_owned).map_err(|_| RecordError::NotUtf8(at))
    }

    pub(crate) fn topic(&mut self) -> Result<TopicName, RecordError> {
        let s = self.string()?;
        TopicName::new(&s).map_err(|_| RecordError::BadTopic(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn topic(s: &str) -> TopicName {
        TopicName::new(s).unwrap()
    }

    #[test]
    fn a_clear_record_byte_for_byte() {
        let mut out = Vec::new();
        encode_retained_clear(&topic("a/b"), &mut out);
        assert_eq!(out, [1, 3, 0, 0, 0, b'a', b'/', b'b']);
        let Decoded::RetainedClear(t) = decode(RETAINED_CLEAR, &out).unwrap() else {
            panic!()
        };
        assert_eq!(t.as_str(), "a/b");
    }

    #[test]
    fn a_plain_retained_message_byte_for_byte() {
        let m = Message::new(topic("t"), Bytes::from_static(b"42"), QoS::AtLeastOnce, true);
        let mut out = Vec::new();
        encode_retained_set(&m, &mut out);
        #[rustfmt::skip]
        let expected = [
            1,                  // format
            1, 0, 0, 0, b't',   // topic
            1,                  // QoS 1
            0,                  // no flags
            0, 0, 0, 0,         // no user properties
            2, 0, 0, 0, b'4', b'2', // payload
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn every_property_survives_and_expiry_keeps_its_remaining_time() {
        let now = Instant::now();
        let wall = SystemTime::now();
        let m = Message::new(topic("sensors/1"), Bytes::from_static(b"{\"t\":21}"), QoS::ExactlyOnce, true)
            .with_properties(Properties {
                payload_is_utf8: Some(true),
                content_type: Some("application/json".into()),
                response_topic: Some("replies/1".into()),
                correlation_data: Some(Bytes::from_static(&[0, 1, 2])),
                user_properties: vec![("unit".into(), "C".into()), ("unit".into(), "K".into())],
            })
            .with_expiry(Some(Expiry::after(now, Duration::from_secs(60))));
        let mut out = Vec::new();
        encode_retained_set_at(&m, now, wall, &mut out);
        // Restarted 20 s later: 40 s left.
        let later = now + Duration::from_secs(1);
        let Decoded::RetainedSet(t, Some(back)) = decode_at(RETAINED_SET, &out, later, wall + Duration::from_secs(20)).unwrap() else {
            panic!()
        };
        assert_eq!(t.as_str(), "sensors/1");
        assert_eq!(back.payload, m.payload);
        assert_eq!(back.qos, QoS::ExactlyOnce);
        assert!(back.retain);
        assert_eq!(back.properties, m.properties);
        assert_eq!(back.expiry.unwrap().remaining_secs(later), Some(40));
        // Restarted after it expired: gone.
        let gone = decode_at(RETAINED_SET, &out, later, wall + Duration::from_secs(61)).unwrap();
        assert!(matches!(gone, Decoded::RetainedSet(_, None)));
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let m = Message::new(topic("a"), Bytes::from_static(b"xyz"), QoS::AtMostOnce, true).with_properties(Properties {
            content_type: Some("text/plain".into()),
            user_properties: vec![("k".into(), "v".into())],
            ..Properties::default()
        });
        let mut out = Vec::new();
        encode_retained_set(&m, &mut out);
        for cut in 0..out.len() {
            assert!(decode(RETAINED_SET, &out[..cut]).is_err(), "cut at {cut}");
        }
        // Lengths that point past the end, bad UTF-8, bad QoS, unknown kinds, newer formats.
        let mut huge = out.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(RETAINED_SET, &huge), Err(RecordError::Short(_))));
        let mut bad_topic = out.clone();
        bad_topic[5] = 0xff;
        assert!(matches!(decode(RETAINED_SET, &bad_topic), Err(RecordError::NotUtf8(_))));
        let mut bad_qos = out.clone();
        bad_qos[6] = 3;
        assert_eq!(decode(RETAINED_SET, &bad_qos).unwrap_err(), RecordError::BadQos(3));
        assert_eq!(decode(9, &out).unwrap_err(), RecordError::UnknownKind(9));
        let mut newer = out;
        newer[0] = 2;
        assert_eq!(decode(RETAINED_SET, &newer).unwrap_err(), RecordError::NewerFormat(2));
        let wildcard = [1, 1, 0, 0, 0, b'#'];
        assert!(matches!(decode(RETAINED_CLEAR, &wildcard), Err(RecordError::BadTopic(_))));
    }
}
