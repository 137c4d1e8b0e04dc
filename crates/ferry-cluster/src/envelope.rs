//! The envelope a message crosses NATS in (sans-IO).
//!
//! ```text
//! "FRY" | version 1 | flags | origin len u8 | origin bytes | instance u64 | seq u64
//!       | published unix ms u64 | [expiry ms u32] | [properties] | payload …
//! flags: bits 0-1 QoS, bit 2 retain, bit 3 expiry present, bit 4 properties present
//! properties: present u8 (bit 0 content type, 1 response topic, 2 correlation data,
//!             3 payload format) | each present one as u32 length + bytes (the format
//!             as one byte: 0 bytes, 1 UTF-8) | user property count u32 | (name, value)
//!             as u32 length + bytes each
//! ```
//!
//! Integers are big-endian. The topic is not in the envelope: the subject (or the KV
//! key) carries it. A NATS message without the magic comes from a NATS client that is
//! not Ferry: it is taken as a QoS 0 message from origin `nats`, its bytes the payload.

use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ferry_core::{Expiry, Message, Properties, QoS, TopicName};

/// The first bytes of every envelope.
pub const MAGIC: &[u8; 3] = b"FRY";
/// The envelope version this code writes and reads.
pub const VERSION: u8 = 1;
/// The origin given to messages from NATS clients that are not Ferry nodes.
pub const FOREIGN_ORIGIN: &str = "nats";

const RETAIN: u8 = 0b100;
const HAS_EXPIRY: u8 = 0b1000;
const HAS_PROPERTIES: u8 = 0b1_0000;

/// Why an envelope (with the magic) could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// A version this node does not know.
    #[error("unknown envelope version {0}")]
    Version(u8),
    /// The bytes end before a field does.
    #[error("envelope truncated")]
    Truncated,
    /// QoS 3.
    #[error("bad QoS in envelope")]
    QoS,
    /// A text field that is not UTF-8.
    #[error("envelope text is not UTF-8")]
    Utf8,
}

/// Which node published a message: its name and the instance (one per process start),
/// so that a restarted node's sequence numbers are never taken for old ones.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The node's name (`cluster.node_name`), at most 255 bytes.
    pub name: String,
    /// Random per process start.
    pub instance: u64,
}

/// A message as it crossed NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Its publisher's node; `None` for a foreign NATS publisher.
    pub origin: Option<Origin>,
    /// The origin's sequence number (0 for foreign messages).
    pub seq: u64,
    /// The QoS it was published with.
    pub qos: QoS,
    /// The publisher's retain flag.
    pub retain: bool,
    /// When it was published, in milliseconds since the Unix epoch.
    pub published_ms: u64,
    /// Milliseconds it had left to live at `published_ms` (MQTT 5 message expiry).
    pub expiry_ms: Option<u32>,
    /// MQTT 5 properties and STOMP headers.
    pub properties: Properties,
    /// The application payload (a slice of the received bytes, not a copy).
    pub payload: Bytes,
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
    out.put_slice(&b[..b.len().min(u32::MAX as usize)]);
}

fn properties_len(p: &Properties) -> usize {
    let opt = |s: Option<usize>| s.map_or(0, |n| 4 + n);
    1 + opt(p.content_type.as_ref().map(String::len))
        + opt(p.response_topic.as_ref().map(String::len))
        + opt(p.correlation_data.as_ref().map(Bytes::len))
        + opt(p.payload_is_utf8.map(|_| 1))
        + 4
        + p.user_properties.iter().map(|(k, v)| 8 + k.len() + v.len()).sum::<usize>()
}

fn is_empty(p: &Properties) -> bool {
    p.content_type.is_none()
        && p.response_topic.is_none()
        && p.correlation_data.is_none()
        && p.payload_is_utf8.is_none()
        && p.user_properties.is_empty()
}

impl Envelope {
    /// The envelope of a message published on this node.
    pub fn encode_message(origin: &Origin, seq: u64, published_ms: u64, message: &Message, now: Instant) -> Bytes {
        let expiry_ms = message.expiry.map(|e| {
            let left = e.at.saturating_duration_since(now);
            u32::try_from(left.as_millis()).unwrap_or(u32::MAX)
        });
        encode(
            origin,
            seq,
            message.qos,
            message.retain,
            published_ms,
            expiry_ms,
            &message.properties,
            &message.payload,
        )
    }

    /// These fields as bytes.
    pub fn encode(&self) -> Bytes {
        let unknown = Origin {
            name: FOREIGN_ORIGIN.into(),
            instance: 0,
        };
        encode(
            self.origin.as_ref().unwrap_or(&unknown),
            self.seq,
            self.qos,
            self.retain,
            self.published_ms,
            self.expiry_ms,
            &self.properties,
            &self.payload,
        )
    }

    /// Reads `bytes`: an envelope when it starts with the magic, else a foreign QoS 0
    /// message whose payload is all of `bytes`.
    pub fn decode(bytes: Bytes) -> Result<Envelope, EnvelopeError> {
        if !bytes.starts_with(MAGIC) {
            return Ok(Envelope {
                origin: None,
                seq: 0,
                qos: QoS::AtMostOnce,
                retain: false,
                published_ms: 0,
                expiry_ms: None,
                properties: Properties::default(),
                payload: bytes,
            });
        }
        let mut r = Reader { b: bytes, at: MAGIC.len() };
        let version = r.u8()?;
        if version != VERSION {
            return Err(EnvelopeError::Version(version));
        }
        let flags = r.u8()?;
        let qos = QoS::from_u8(flags & 0b11).ok_or(EnvelopeError::QoS)?;
        let name_len = usize::from(r.u8()?);
        let name = r.text(name_len)?;
        let instance = r.u64()?;
        let seq = r.u64()?;
        let published_ms = r.u64()?;
        let expiry_ms = if flags & HAS_EXPIRY != 0 { Some(r.u32()?) } else { None };
        let mut properties = Properties::default();
        if flags & HAS_PROPERTIES != 0 {
            let present = r.u8()?;
            if present & 1 != 0 {
                properties.content_type = Some(r.string()?);
            }
            if present & 2 != 0 {
                properties.response_topic = Some(r.string()?);
            }
            if present & 4 != 0 {
                properties.correlation_data = Some(r.bytes()?);
            }
            if present & 8 != 0 {
                let format = r.bytes()?;
                properties.payload_is_utf8 = Some(format.first().is_some_and(|b| *b == 1));
            }
            let count = r.u32()?;
            // Bounded by the bytes there are: each pair takes at least 8.
            if usize::try_from(count).unwrap_or(usize::MAX) > r.remaining() / 8 {
                return Err(EnvelopeError::Truncated);
            }
            for _ in 0..count {
                let k = r.string()?;
                let v = r.string()?;
                properties.user_properties.push((k, v));
            }
        }
        let payload = r.b.slice(r.at..);
        Ok(Envelope {
            origin: Some(Origin { name, instance }),
            seq,
            qos,
            retain: flags & RETAIN != 0,
            published_ms,
            expiry_ms,
            properties,
            payload,
        })
    }

    /// The core message this envelope carries to `topic`, received at `now` (Instant)
    /// and `now_ms` (Unix ms): the expiry is what was left at publication less the
    /// time since (by the two nodes' clocks), or `None` when it has already passed.
    pub fn into_message(self, topic: TopicName, now: Instant, now_ms: u64) -> Option<Message> {
        let expiry = match self.expiry_ms {
            None => None,
            Some(left) => {
                let elapsed = now_ms.saturating_sub(self.published_ms);
                let left = u64::from(left).checked_sub(elapsed).filter(|l| *l > 0)?;
                Some(Expiry::after(now, Duration::from_millis(left)))
            }
        };
        Some(
            Message::new(topic, self.payload, self.qos, self.retain)
                .with_properties(self.properties)
                .with_expiry(expiry),
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn encode(
    origin: &Origin,
    seq: u64,
    qos: QoS,
    retain: bool,
    published_ms: u64,
    expiry_ms: Option<u32>,
    properties: &Properties,
    payload: &[u8],
) -> Bytes {
    let name = &origin.name.as_bytes()[..origin.name.len().min(255)];
    let has_props = !is_empty(properties);
    let len = 4 + 1 + 1 + name.len() + 24 + 4 + if has_props { properties_len(properties) } else { 0 } + payload.len();
    let mut out = BytesMut::with_capacity(len);
    out.put_slice(MAGIC);
    out.put_u8(VERSION);
    let mut flags = qos as u8;
    if retain {
        flags |= RETAIN;
    }
    if expiry_ms.is_some() {
        flags |= HAS_EXPIRY;
    }
    if has_props {
        flags |= HAS_PROPERTIES;
    }
    out.put_u8(flags);
    out.put_u8(u8::try_from(name.len()).unwrap_or(u8::MAX));
    out.put_slice(name);
    out.put_u64(origin.instance);
    out.put_u64(seq);
    out.put_u64(published_ms);
    if let Some(e) = expiry_ms {
        out.put_u32(e);
    }
    if has_props {
        let p = properties;
        let present = u8::from(p.content_type.is_some())
            | u8::from(p.response_topic.is_some()) << 1
            | u8::from(p.correlation_data.is_some()) << 2
            | u8::from(p.payload_is_utf8.is_some()) << 3;
        out.put_u8(present);
        if let Some(s) = &p.content_type {
            put_bytes(&mut out, s.as_bytes());
        }
        if let Some(s) = &p.response_topic {
            put_bytes(&mut out, s.as_bytes());
        }
        if let Some(b) = &p.correlation_data {
            put_bytes(&mut out, b);
        }
        if let Some(utf8) = p.payload_is_utf8 {
            put_bytes(&mut out, &[u8::from(utf8)]);
        }
        out.put_u32(u32::try_from(p.user_properties.len()).unwrap_or(u32::MAX));
        for (k, v) in &p.user_properties {
            put_bytes(&mut out, k.as_bytes());
            put_bytes(&mut out, v.as_bytes());
        }
    }
    out.put_slice(payload);
    out.freeze()
}

/// A cursor over received bytes that never reads past their end.
struct Reader {
    b: Bytes,
    at: usize,
}

impl Reader {
    fn remaining(&self) -> usize {
        self.b.len().saturating_sub(self.at)
    }

    fn take(&mut self, n: usize) -> Result<Bytes, EnvelopeError> {
        if self.remaining() < n {
            return Err(EnvelopeError::Truncated);
        }
        let out = self.b.slice(self.at..self.at + n);
        self.at += n;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, EnvelopeError> {
        Ok(self.take(1)?.get_u8())
    }

    fn u32(&mut self) -> Result<u32, EnvelopeError> {
        Ok(self.take(4)?.get_u32())
    }

    fn u64(&mut self) -> Result<u64, EnvelopeError> {
        Ok(self.take(8)?.get_u64())
    }

    fn bytes(&mut self) -> Result<Bytes, EnvelopeError> {
        let n = usize::try_from(self.u32()?).map_err(|_| EnvelopeError::Truncated)?;
        self.take(n)
    }

    fn text(&mut self, n: usize) -> Result<String, EnvelopeError> {
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| EnvelopeError::Utf8)
    }

    fn string(&mut self) -> Result<String, EnvelopeError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| EnvelopeError::Utf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            name: "n1".into(),
            instance: 0x0102_0304_0506_0708,
        }
    }

    #[test]
    fn a_plain_message_is_byte_exact() {
        let m = Message::new(TopicName::new("a/b").unwrap(), Bytes::from_static(b"hi"), QoS::AtLeastOnce, true);
        let bytes = Envelope::encode_message(&origin(), 9, 0x10, &m, Instant::now());
        let want: &[u8] = &[
            b'F', b'R', b'Y', 1,     // magic, version
            0b101, // QoS 1, retain
            2, b'n', b'1', // origin
            1, 2, 3, 4, 5, 6, 7, 8, // instance
            0, 0, 0, 0, 0, 0, 0, 9, // seq
            0, 0, 0, 0, 0, 0, 0, 0x10, // published ms
            b'h', b'i',
        ];
        assert_eq!(&bytes[..], want);
        let e = Envelope::decode(bytes).unwrap();
        assert_eq!(
            (e.origin, e.seq, e.qos, e.retain, e.published_ms),
            (Some(origin()), 9, QoS::AtLeastOnce, true, 0x10)
        );
        assert_eq!(&e.payload[..], b"hi");
        assert_eq!(e.properties, Properties::default());
    }

    #[test]
    fn properties_are_byte_exact_and_round_trip() {
        let props = Properties {
            payload_is_utf8: Some(true),
            content_type: Some("t".into()),
            response_topic: None,
            correlation_data: Some(Bytes::from_static(&[0xff])),
            user_properties: vec![("k".into(), "v".into())],
        };
        let e = Envelope {
            origin: Some(origin()),
            seq: 1,
            qos: QoS::ExactlyOnce,
            retain: false,
            published_ms: 2,
            expiry_ms: Some(3),
            properties: props,
            payload: Bytes::from_static(b"p"),
        };
        let bytes = e.encode();
        let tail: &[u8] = &[
            0, 0, 0, 3,      // expiry
            0b1101, // content type, correlation data, payload format
            0, 0, 0, 1, b't', //
            0, 0, 0, 1, 0xff, //
            0, 0, 0, 1, 1, // UTF-8
            0, 0, 0, 1, // one user property
            0, 0, 0, 1, b'k', 0, 0, 0, 1, b'v', //
            b'p',
        ];
        assert_eq!(bytes[4], 0b1_1010, "QoS 2, expiry, properties");
        assert!(bytes.ends_with(tail));
        assert_eq!(Envelope::decode(bytes).unwrap(), e);
    }

    #[test]
    fn bytes_without_the_magic_are_a_foreign_qos0_message() {
        let e = Envelope::decode(Bytes::from_static(b"hello")).unwrap();
        assert_eq!(
            (&e.origin, e.qos, e.retain, &e.payload[..]),
            (&None, QoS::AtMostOnce, false, &b"hello"[..])
        );
        let m = e.into_message(TopicName::new("t").unwrap(), Instant::now(), 5).unwrap();
        assert_eq!(&m.payload[..], b"hello");
    }

    #[test]
    fn every_truncation_and_bad_field_is_an_error_not_a_panic() {
        let m = Message::new(TopicName::new("a").unwrap(), Bytes::new(), QoS::AtMostOnce, false).with_properties(Properties {
            content_type: Some("x".into()),
            user_properties: vec![("a".into(), "b".into())],
            ..Default::default()
        });
        let full = Envelope::encode_message(&origin(), 1, 1, &m, Instant::now());
        for cut in MAGIC.len()..full.len() {
            assert!(Envelope::decode(full.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut bad = full.to_vec();
        bad[3] = 9;
        assert_eq!(Envelope::decode(bad.into()), Err(EnvelopeError::Version(9)));
        let mut bad = full.to_vec();
        bad[4] |= 3;
        assert_eq!(Envelope::decode(bad.into()), Err(EnvelopeError::QoS));
        // A huge user property count with no bytes behind it.
        let mut bad = full[..full.len() - 14].to_vec();
        bad.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(Envelope::decode(bad.into()), Err(EnvelopeError::Truncated));
    }

    #[test]
    fn expiry_counts_down_across_nodes() {
        let now = Instant::now();
        let m = Message::new(TopicName::new("e").unwrap(), Bytes::new(), QoS::AtMostOnce, false)
            .with_expiry(Some(Expiry::after(now, Duration::from_secs(10))));
        let e = Envelope::decode(Envelope::encode_message(&origin(), 1, 1_000, &m, now)).unwrap();
        assert_eq!(e.expiry_ms, Some(10_000));
        let t = TopicName::new("e").unwrap();
        let later = e.clone().into_message(t.clone(), now, 5_000).unwrap();
        assert_eq!(later.expiry.unwrap().remaining_secs(now), Some(6));
        assert!(e.into_message(t, now, 11_000).is_none(), "expired in transit");
    }
}
