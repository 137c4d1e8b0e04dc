//! The records of persistent sessions, with no I/O: what [`crate::BrokerJournal`]
//! writes for the core's session calls, and reads back on recovery.
//!
//! Every body starts with the format byte ([`crate::records::FORMAT`]); the layout
//! rules are those of [`crate::records`] (little-endian, `u32`-length strings, times in
//! wall-clock milliseconds). `key` is a session's `u64` key, `body` a message body's
//! `u64` id.
//!
//! | kind | record | body after the format byte |
//! |---|---|---|
//! | 10 | [`BODY`] | body, then a message as a retained record holds one (topic … payload) |
//! | 11 | [`OPEN`] | key, expiry seconds `u64` (`u64::MAX`: never), client id |
//! | 12 | [`DETACHED`] | key, expires at `u64` ms (`u64::MAX`: never) |
//! | 13 | [`END`] | key |
//! | 14 | [`SUBSCRIBED`] | key, shared `u8`, qos `u8`, flags `u8`, [subscription id `u32`], filter |
//! | 15 | [`UNSUBSCRIBED`] | key, filter |
//! | 16 | [`ENQUEUED`] | key, body, qos `u8`, retain `u8`, id count `u32`, ids `u32`… |
//! | 17 | [`OUTGOING`] | key, pkid `u16`, stage `u8` (1 sent: then body; 2 released) |
//! | 18 | [`INCOMING`] | key, pkid `u16`, `u8` (1 received, 0 released) |
//! | 19 | [`ACKED`] | key, body |
//! | 3 | [`WILL_DELAYED`] | due at `u64` ms, client id, retain `u8`, then a message as a retained record holds one |
//! | 4 | [`WILL_DONE`] | client id |
//!
//! SUBSCRIBED flags: bit 0 no-local, bit 1 retain-as-published, bit 2 a subscription id
//! follows. "shared" says how the filter is read back: 1 as an MQTT 5 filter (which may
//! be `$share/GROUP/…`), 0 as a plain topic filter (MQTT 3.1.1, where `$share` means
//! nothing).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ferry_core::{Message, QoS, SessionKey, SubscribeOptions, Subscription, TopicFilter};

use crate::records::{encode_message_at, put_bytes, read_message, Reader, RecordError, FORMAT};

/// A message body, written once however many sessions hold it.
pub const BODY: u8 = 10;
/// A persistent session begins, or is resumed with a new expiry.
pub const OPEN: u8 = 11;
/// A session's connection ended.
pub const DETACHED: u8 = 12;
/// A session is gone.
pub const END: u8 = 13;
/// A session subscribed.
pub const SUBSCRIBED: u8 = 14;
/// A session unsubscribed.
pub const UNSUBSCRIBED: u8 = 15;
/// A QoS 1/2 message was queued for a session.
pub const ENQUEUED: u8 = 16;
/// An outgoing message was sent with a packet id, or released (QoS 2).
pub const OUTGOING: u8 = 17;
/// An incoming QoS 2 packet id was received or released.
pub const INCOMING: u8 = 18;
/// A session is done with a message.
pub const ACKED: u8 = 19;

/// A will waits for its delay.
pub const WILL_DELAYED: u8 = 3;
/// A delayed will was published or cancelled.
pub const WILL_DONE: u8 = 4;

/// Whether `kind` is one of these records.
pub fn is_session_kind(kind: u8) -> bool {
    (BODY..=ACKED).contains(&kind) || kind == WILL_DELAYED || kind == WILL_DONE
}

const NEVER: u64 = u64::MAX;
const NO_LOCAL: u8 = 1;
const RETAIN_AS_PUBLISHED: u8 = 1 << 1;
const HAS_ID: u8 = 1 << 2;
const STAGE_SENT: u8 = 1;
const STAGE_RELEASED: u8 = 2;

/// How far an outgoing message got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outgoing {
    /// Sent with its packet id; `body` names the message.
    Sent {
        /// The message's body id.
        body: u64,
    },
    /// QoS 2: PUBREC received, PUBREL sent.
    Released,
}

/// One session record.
#[derive(Debug, Clone)]
pub enum SessionRecord {
    /// A message body; `None` if the message expired while the broker was down.
    Body {
        /// Its id.
        id: u64,
        /// The message.
        message: Option<Arc<Message>>,
    },
    /// A session begins or is resumed.
    Open {
        /// The session.
        key: SessionKey,
        /// Its client identifier.
        client_id: Arc<str>,
        /// How long it outlives a connection.
        expiry: Option<Duration>,
    },
    /// Its connection ended.
    Detached {
        /// The session.
        key: SessionKey,
        /// When it is forgotten (ms since the Unix epoch; `None`: never).
        expires_at_ms: Option<u64>,
    },
    /// It is gone.
    End {
        /// The session.
        key: SessionKey,
    },
    /// It subscribed.
    Subscribed {
        /// The session.
        key: SessionKey,
        /// The filter as the client sent it.
        filter: String,
        /// Whether the filter is read the MQTT 5 way (`$share/…` is a shared one).
        shared_syntax: bool,
        /// Its options.
        options: SubscribeOptions,
    },
    /// It unsubscribed.
    Unsubscribed {
        /// The session.
        key: SessionKey,
        /// The filter as the client sent it.
        filter: String,
    },
    /// A message was queued for it.
    Enqueued {
        /// The session.
        key: SessionKey,
        /// The message's body id.
        body: u64,
        /// The delivery's QoS.
        qos: QoS,
        /// The delivery's retain flag.
        retain: bool,
        /// Its subscription identifiers.
        subscription_ids: Vec<u32>,
    },
    /// An outgoing message moved on.
    Outgoing {
        /// The session.
        key: SessionKey,
        /// Its packet id.
        pkid: u16,
        /// Where it stands.
        stage: Outgoing,
    },
    /// An incoming QoS 2 packet id.
    Incoming {
        /// The session.
        key: SessionKey,
        /// The packet id.
        pkid: u16,
        /// Received (true) or released (false).
        received: bool,
    },
    /// It is done with a message.
    Acked {
        /// The session.
        key: SessionKey,
        /// The message's body id.
        body: u64,
    },
    /// A client's will waits for its delay; `None` if the will expired while the
    /// broker was down.
    WillDelayed {
        /// The client.
        client_id: Arc<str>,
        /// When it is due (ms since the Unix epoch).
        at_ms: u64,
        /// The will.
        message: Option<Arc<Message>>,
    },
    /// A client's delayed will was published or cancelled.
    WillDone {
        /// The client.
        client_id: Arc<str>,
    },
}

impl SessionRecord {
    /// The record's kind byte.
    pub fn kind(&self) -> u8 {
        match self {
            Self::Body { .. } => BODY,
            Self::Open { .. } => OPEN,
            Self::Detached { .. } => DETACHED,
            Self::End { .. } => END,
            Self::Subscribed { .. } => SUBSCRIBED,
            Self::Unsubscribed { .. } => UNSUBSCRIBED,
            Self::Enqueued { .. } => ENQUEUED,
            Self::Outgoing { .. } => OUTGOING,
            Self::Incoming { .. } => INCOMING,
            Self::Acked { .. } => ACKED,
            Self::WillDelayed { .. } => WILL_DELAYED,
            Self::WillDone { .. } => WILL_DONE,
        }
    }

    /// Appends the record's body to `out` (a message's expiry as wall-clock time).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            // Only a message's expiry needs the clocks.
            Self::WillDelayed { message: Some(_), .. } => self.encode_at(Instant::now(), SystemTime::now(), out),
            Self::Body { id, message: Some(m) } => {
                out.push(FORMAT);
                out.extend_from_slice(&id.to_le_bytes());
                crate::records::encode_message(m, out);
            }
            // No other record holds a time that needs converting.
            _ => {
                static NO_CLOCK: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
                self.encode_at(*NO_CLOCK.get_or_init(Instant::now), std::time::UNIX_EPOCH, out)
            }
        }
    }

    pub(crate) fn encode_at(&self, now: Instant, wall_now: SystemTime, out: &mut Vec<u8>) {
        out.push(FORMAT);
        match self {
            Self::Body { id, message } => {
                out.extend_from_slice(&id.to_le_bytes());
                if let Some(m) = message {
                    encode_message_at(m, now, wall_now, out);
                }
            }
            Self::Open { key, client_id, expiry } => {
                out.extend_from_slice(&key.to_le_bytes());
                out.extend_from_slice(&expiry.map_or(NEVER, |d| d.as_secs().min(NEVER - 1)).to_le_bytes());
                put_bytes(out, client_id.as_bytes());
            }
            Self::Detached { key, expires_at_ms } => {
                out.extend_from_slice(&key.to_le_bytes());
                out.extend_from_slice(&expires_at_ms.map_or(NEVER, |ms| ms.min(NEVER - 1)).to_le_bytes());
            }
            Self::End { key } => out.extend_from_slice(&key.to_le_bytes()),
            Self::Subscribed {
                key,
                filter,
                shared_syntax,
                options,
            } => {
                out.extend_from_slice(&key.to_le_bytes());
                out.push(u8::from(*shared_syntax));
                out.push(options.qos as u8);
                let mut flags = 0;
                if options.no_local {
                    flags |= NO_LOCAL;
                }
                if options.retain_as_published {
                    flags |= RETAIN_AS_PUBLISHED;
                }
                if options.id.is_some() {
                    flags |= HAS_ID;
                }
                out.push(flags);
                if let Some(id) = options.id {
                    out.extend_from_slice(&id.to_le_bytes());
                }
                put_bytes(out, filter.as_bytes());
            }
            Self::Unsubscribed { key, filter } => {
                out.extend_from_slice(&key.to_le_bytes());
                put_bytes(out, filter.as_bytes());
            }
            Self::Enqueued {
                key,
                body,
                qos,
                retain,
                subscription_ids,
            } => {
                out.extend_from_slice(&key.to_le_bytes());
                out.extend_from_slice(&body.to_le_bytes());
                out.push(*qos as u8);
                out.push(u8::from(*retain));
                out.extend_from_slice(&u32::try_from(subscription_ids.len()).unwrap_or(u32::MAX).to_le_bytes());
                for id in subscription_ids {
                    out.extend_from_slice(&id.to_le_bytes());
                }
            }
            Self::Outgoing { key, pkid, stage } => {
                out.extend_from_slice(&key.to_le_bytes());
                out.extend_from_slice(&pkid.to_le_bytes());
                match stage {
                    Outgoing::Sent { body } => {
                        out.push(STAGE_SENT);
                        out.extend_from_slice(&body.to_le_bytes());
                    }
                    Outgoing::Released => out.push(STAGE_RELEASED),
                }
            }
            Self::Incoming { key, pkid, received } => {
                out.extend_from_slice(&key.to_le_bytes());
                out.extend_from_slice(&pkid.to_le_bytes());
                out.push(u8::from(*received));
            }
            Self::Acked { key, body } => {
                out.extend_from_slice(&key.to_le_bytes());
                out.extend_from_slice(&body.to_le_bytes());
            }
            Self::WillDelayed { client_id, at_ms, message } => {
                out.extend_from_slice(&at_ms.to_le_bytes());
                put_bytes(out, client_id.as_bytes());
                if let Some(m) = message {
                    out.push(u8::from(m.retain));
                    encode_message_at(m, now, wall_now, out);
                }
            }
            Self::WillDone { client_id } => put_bytes(out, client_id.as_bytes()),
        }
    }

    /// Reads a record of `kind` back (a message's expiry made an `Instant` again).
    pub fn decode(kind: u8, body: &[u8]) -> Result<Self, RecordError> {
        Self::decode_at(kind, body, Instant::now(), SystemTime::now())
    }

    pub(crate) fn decode_at(kind: u8, body: &[u8], now: Instant, wall_now: SystemTime) -> Result<Self, RecordError> {
        let mut r = Reader::new(body);
        let format = r.u8()?;
        if format > FORMAT {
            return Err(RecordError::NewerFormat(format));
        }
        let record = match kind {
            BODY => {
                let id = r.u64()?;
                let (_, message) = read_message(&mut r, false, now, wall_now)?;
                Self::Body {
                    id,
                    message: message.map(|m| Arc::new(m.with_stored_id(id))),
                }
            }
            OPEN => {
                let key = r.u64()?;
                let secs = r.u64()?;
                let client_id: Arc<str> = Arc::from(r.string()?);
                Self::Open {
                    key,
                    client_id,
                    expiry: (secs != NEVER).then(|| Duration::from_secs(secs)),
                }
            }
            DETACHED => {
                let key = r.u64()?;
                let ms = r.u64()?;
                Self::Detached {
                    key,
                    expires_at_ms: (ms != NEVER).then_some(ms),
                }
            }
            END => Self::End { key: r.u64()? },
            SUBSCRIBED => {
                let key = r.u64()?;
                let shared_syntax = r.u8()? != 0;
                let qos = r.u8()?;
                let qos = QoS::from_u8(qos).ok_or(RecordError::BadQos(qos))?;
                let flags = r.u8()?;
                let id = if flags & HAS_ID != 0 { Some(r.u32()?) } else { None };
                let filter = r.string()?;
                Self::Subscribed {
                    key,
                    filter,
                    shared_syntax,
                    options: SubscribeOptions {
                        qos,
                        no_local: flags & NO_LOCAL != 0,
                        retain_as_published: flags & RETAIN_AS_PUBLISHED != 0,
                        id,
                    },
                }
            }
            UNSUBSCRIBED => Self::Unsubscribed {
                key: r.u64()?,
                filter: r.string()?,
            },
            ENQUEUED => {
                let key = r.u64()?;
                let body = r.u64()?;
                let qos = r.u8()?;
                let qos = QoS::from_u8(qos).ok_or(RecordError::BadQos(qos))?;
                let retain = r.u8()? != 0;
                let count = r.u32()?;
                let mut subscription_ids = Vec::new();
                for _ in 0..count {
                    subscription_ids.push(r.u32()?);
                }
                Self::Enqueued {
                    key,
                    body,
                    qos,
                    retain,
                    subscription_ids,
                }
            }
            OUTGOING => {
                let key = r.u64()?;
                let pkid = r.u16()?;
                let stage = match r.u8()? {
                    STAGE_SENT => Outgoing::Sent { body: r.u64()? },
                    STAGE_RELEASED => Outgoing::Released,
                    other => return Err(RecordError::Invalid("outgoing stage", u64::from(other))),
                };
                Self::Outgoing { key, pkid, stage }
            }
            INCOMING => Self::Incoming {
                key: r.u64()?,
                pkid: r.u16()?,
                received: r.u8()? != 0,
            },
            ACKED => Self::Acked {
                key: r.u64()?,
                body: r.u64()?,
            },
            WILL_DELAYED => {
                let at_ms = r.u64()?;
                let client_id: Arc<str> = Arc::from(r.string()?);
                let retain = r.u8()? != 0;
                let (_, message) = read_message(&mut r, retain, now, wall_now)?;
                Self::WillDelayed {
                    client_id,
                    at_ms,
                    message: message.map(Arc::new),
                }
            }
            WILL_DONE => Self::WillDone {
                client_id: Arc::from(r.string()?),
            },
            other => return Err(RecordError::UnknownKind(other)),
        };
        if !r.is_done() {
            return Err(RecordError::Invalid("trailing bytes in a session record", body.len() as u64));
        }
        Ok(record)
    }
}

/// The subscription a SUBSCRIBED record's filter stands for.
pub fn subscription_of(filter: &str, shared_syntax: bool) -> Result<Subscription, RecordError> {
    let parsed = if shared_syntax {
        Subscription::parse(filter).ok()
    } else {
        TopicFilter::new(filter).ok().map(Subscription::Plain)
    };
    parsed.ok_or_else(|| RecordError::BadTopic(filter.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ferry_core::TopicName;

    fn roundtrip(r: &SessionRecord) -> SessionRecord {
        let mut out = Vec::new();
        r.encode(&mut out);
        SessionRecord::decode(r.kind(), &out).unwrap()
    }

    #[test]
    fn an_enqueued_record_byte_for_byte() {
        let r = SessionRecord::Enqueued {
            key: 7,
            body: 9,
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: vec![3],
        };
        let mut out = Vec::new();
        r.encode(&mut out);
        #[rustfmt::skip]
        let expected = [
            1,                      // format
            7, 0, 0, 0, 0, 0, 0, 0, // key
            9, 0, 0, 0, 0, 0, 0, 0, // body
            1,                      // QoS 1
            0,                      // retain
            1, 0, 0, 0,             // one subscription id
            3, 0, 0, 0,
        ];
        assert_eq!(out, expected);
        assert!(matches!(roundtrip(&r), SessionRecord::Enqueued { key: 7, body: 9, ref subscription_ids, .. } if subscription_ids == &[3]));
    }

    #[test]
    fn an_open_record_byte_for_byte() {
        let r = SessionRecord::Open {
            key: 1,
            client_id: Arc::from("c"),
            expiry: None,
        };
        let mut out = Vec::new();
        r.encode(&mut out);
        assert_eq!(
            out,
            [1, 1, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255, 1, 0, 0, 0, b'c']
        );
        let SessionRecord::Open { expiry, client_id, .. } = roundtrip(&r) else {
            panic!()
        };
        assert_eq!(expiry, None);
        assert_eq!(&*client_id, "c");
    }

    #[test]
    fn every_record_round_trips() {
        let m = Arc::new(Message::new(
            TopicName::new("a/b").unwrap(),
            Bytes::from_static(b"x"),
            QoS::ExactlyOnce,
            false,
        ));
        let records = [
            SessionRecord::Body { id: 5, message: Some(m) },
            SessionRecord::Open {
                key: 2,
                client_id: Arc::from("dev-1"),
                expiry: Some(Duration::from_secs(3600)),
            },
            SessionRecord::Detached {
                key: 2,
                expires_at_ms: Some(1_700_000_000_000),
            },
            SessionRecord::End { key: 2 },
            SessionRecord::Subscribed {
                key: 2,
                filter: "$share/g/a/#".into(),
                shared_syntax: true,
                options: SubscribeOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: false,
                    retain_as_published: true,
                    id: Some(77),
                },
            },
            SessionRecord::Unsubscribed {
                key: 2,
                filter: "a/+".into(),
            },
            SessionRecord::Outgoing {
                key: 2,
                pkid: 65535,
                stage: Outgoing::Sent { body: 5 },
            },
            SessionRecord::Outgoing {
                key: 2,
                pkid: 1,
                stage: Outgoing::Released,
            },
            SessionRecord::Incoming {
                key: 2,
                pkid: 9,
                received: true,
            },
            SessionRecord::Acked { key: 2, body: 5 },
            SessionRecord::WillDelayed {
                client_id: Arc::from("dev-1"),
                at_ms: 1_700_000_000_000,
                message: Some(Arc::new(Message::new(
                    TopicName::new("w/dev-1").unwrap(),
                    Bytes::from_static(b"gone"),
                    QoS::AtLeastOnce,
                    true,
                ))),
            },
            SessionRecord::WillDone {
                client_id: Arc::from("dev-1"),
            },
        ];
        for r in &records {
            let mut a = Vec::new();
            r.encode(&mut a);
            let back = roundtrip(r);
            let mut b = Vec::new();
            back.encode(&mut b);
            assert_eq!(a, b, "{r:?}");
            // Every cut is an error, never a panic; so is a trailing byte.
            for cut in 0..a.len() {
                assert!(SessionRecord::decode(r.kind(), &a[..cut]).is_err(), "{r:?} cut at {cut}");
            }
            a.push(0);
            assert!(SessionRecord::decode(r.kind(), &a).is_err());
        }
        let SessionRecord::Body { message: Some(m), .. } = roundtrip(&records[0]) else {
            panic!()
        };
        assert_eq!(m.stored_id(), Some(5), "a restored body keeps its id");
        let SessionRecord::Subscribed { filter, shared_syntax, .. } = roundtrip(&records[4]) else {
            panic!()
        };
        assert!(matches!(subscription_of(&filter, shared_syntax), Ok(Subscription::Shared(_))));
        assert!(matches!(subscription_of(&filter, false), Ok(Subscription::Plain(_))));
    }

    #[test]
    fn bad_fields_are_errors() {
        let mut out = Vec::new();
        SessionRecord::Outgoing {
            key: 1,
            pkid: 1,
            stage: Outgoing::Released,
        }
        .encode(&mut out);
        let last = out.len() - 1;
        out[last] = 9;
        assert!(matches!(SessionRecord::decode(OUTGOING, &out), Err(RecordError::Invalid(..))));
        assert_eq!(SessionRecord::decode(20, &out).unwrap_err(), RecordError::UnknownKind(20));
        out[0] = 2;
        assert_eq!(SessionRecord::decode(OUTGOING, &out).unwrap_err(), RecordError::NewerFormat(2));
    }
}
