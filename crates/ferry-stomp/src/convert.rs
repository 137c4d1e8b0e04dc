//! Between STOMP headers and the core's protocol-neutral metadata, both ways, and the
//! MESSAGE frame a subscriber is sent.
//!
//! | STOMP | core ([`Properties`]) / MQTT 5 |
//! |---|---|
//! | `content-type` | content type |
//! | `reply-to:/topic/KEY` | response topic (mapped like a destination) |
//! | `correlation-id` | correlation data (when it is UTF-8 on the way back) |
//! | any other header | a user property, in order, first of a repeated name only |
//!
//! Headers the broker owns (`destination`, `content-length`, `message-id`,
//! `subscription`, `ack`, `redelivered`, `receipt`, `transaction`) are never forwarded,
//! and a user property that carries one of these names is not written into a MESSAGE.

use bytes::Bytes;
use ferry_core::{Message, Properties, TopicName};
use smallvec::SmallVec;

use crate::codec::{check_header, Command, Escaping, Frame, Version};
use crate::destination::{self, TOPIC};

/// Headers set by the broker or meaningful only to it.
const RESERVED: &[&str] = &[
    "destination",
    "content-length",
    "content-type",
    "message-id",
    "subscription",
    "ack",
    "redelivered",
    "receipt",
    "transaction",
];

/// The headers of a SEND that travel with its message: all but the reserved ones,
/// the first of each name only, in order.
pub fn app_headers(frame: &Frame) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, value) in frame.headers.iter() {
        if RESERVED.contains(&name) || out.iter().any(|(n, _)| n == name) {
            continue;
        }
        out.push((name.to_owned(), value.to_owned()));
    }
    out
}

/// The core metadata of a SEND to a topic, from its application headers.
pub fn properties_in(content_type: Option<&str>, headers: Vec<(String, String)>) -> Properties {
    let mut p = Properties {
        content_type: content_type.map(str::to_owned),
        ..Properties::default()
    };
    for (name, value) in headers {
        match name.as_str() {
            "reply-to" if p.response_topic.is_none() => match value.strip_prefix(TOPIC).and_then(|key| destination::topic_name(key).ok()) {
                Some(topic) => p.response_topic = Some(topic.as_str().to_owned()),
                None => p.user_properties.push((name, value)),
            },
            "correlation-id" if p.correlation_data.is_none() => p.correlation_data = Some(Bytes::from(value.into_bytes())),
            _ => p.user_properties.push((name, value)),
        }
    }
    p
}

/// The core message a SEND to a queue puts into it: the body as its payload,
/// `content-type` as its content type, the application's headers as its user
/// properties (as they are, in order: a queue message reaches STOMP consumers only),
/// at QoS 1, with `topic` (the destination, [`destination::queue_topic`]) as its topic.
pub fn queue_message(topic: TopicName, body: Bytes, content_type: Option<String>, headers: Vec<(String, String)>) -> Message {
    let properties = Properties {
        content_type,
        user_properties: headers,
        ..Properties::default()
    };
    Message::new(topic, body, ferry_core::QoS::AtLeastOnce, false).with_properties(properties)
}

/// The broker-set part of a MESSAGE frame.
#[derive(Debug, Clone)]
pub struct MessageHead<'a> {
    /// `destination`.
    pub destination: &'a str,
    /// `message-id` (also the `ack` value in 1.2 when the subscription acknowledges).
    pub message_id: &'a str,
    /// `subscription`.
    pub subscription: &'a str,
    /// Whether the subscription acknowledges (1.2 adds the `ack` header).
    pub needs_ack: bool,
    /// Whether to add `redelivered:true`.
    pub redelivered: bool,
}

/// The headers of a MESSAGE frame for a session speaking `version`, borrowed (no
/// allocation per header; encode them with a [`crate::codec::FrameRef`]): the broker's
/// headers first, then `content-type`, then the application's headers that this version
/// can carry (a user property with a line feed cannot be written in STOMP 1.0, say, and
/// is left out).
pub fn message_headers<'h>(
    head: &MessageHead<'h>,
    version: Version,
    content_type: Option<&'h str>,
    headers: impl IntoIterator<Item = (&'h str, &'h str)>,
) -> MessageHeaders<'h> {
    let mut out = MessageHeaders::new();
    out.push(("destination", head.destination));
    out.push(("message-id", head.message_id));
    out.push(("subscription", head.subscription));
    if head.needs_ack && version >= Version::V1_2 {
        out.push(("ack", head.message_id));
    }
    if head.redelivered {
        out.push(("redelivered", "true"));
    }
    let escaping = Escaping::for_frame(Some(version), Command::Message);
    let fits = |name: &str, value: &str| check_header(name, value, escaping).is_ok();
    if let Some(ct) = content_type.filter(|ct| fits("content-type", ct)) {
        out.push(("content-type", ct));
    }
    for (name, value) in headers {
        if !RESERVED.contains(&name) && fits(name, value) {
            out.push((name, value));
        }
    }
    out
}

/// A MESSAGE's headers as [`message_headers`] lists them: inline up to eight.
pub type MessageHeaders<'h> = SmallVec<[(&'h str, &'h str); 8]>;

/// The application headers of a message routed through the topic tree.
pub fn topic_headers(message: &Message) -> Vec<(&str, String)> {
    let p = &message.properties;
    let extra = usize::from(p.response_topic.is_some()) + usize::from(p.correlation_data.is_some());
    // No allocation for the usual message, which has none of these.
    let mut out = Vec::with_capacity(p.user_properties.len() + extra);
    if let Some(topic) = p.response_topic.as_deref().and_then(|t| TopicName::new(t).ok()) {
        out.push(("reply-to", destination::topic_destination(&topic)));
    }
    if let Some(cd) = p.correlation_data.as_ref().and_then(|cd| std::str::from_utf8(cd).ok()) {
        out.push(("correlation-id", cd.to_owned()));
    }
    for (k, v) in &p.user_properties {
        out.push((k.as_str(), v.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(headers: &[(&str, &str)]) -> Frame {
        let mut f = Frame::new(Command::Send);
        for (k, v) in headers {
            f.headers.push(*k, *v);
        }
        f
    }

    #[test]
    fn reserved_headers_stay_and_the_first_of_a_name_wins() {
        let f = send(&[
            ("destination", "/topic/a"),
            ("x-a", "1"),
            ("receipt", "r"),
            ("x-a", "2"),
            ("content-type", "text/plain"),
            ("x-b", "3"),
        ]);
        assert_eq!(app_headers(&f), [("x-a".into(), "1".into()), ("x-b".into(), "3".into())]);
    }

    #[test]
    fn reply_to_and_correlation_id_map_onto_mqtt_5_properties() {
        let headers = vec![
            ("reply-to".to_owned(), "/topic/replies.app1".to_owned()),
            ("correlation-id".to_owned(), "c-1".to_owned()),
            ("k".to_owned(), "v".to_owned()),
        ];
        let p = properties_in(Some("application/json"), headers);
        assert_eq!(p.content_type.as_deref(), Some("application/json"));
        assert_eq!(p.response_topic.as_deref(), Some("replies/app1"));
        assert_eq!(p.correlation_data.as_deref(), Some(&b"c-1"[..]));
        assert_eq!(p.user_properties, [("k".to_owned(), "v".to_owned())]);
        let m = Message::new(TopicName::new("t").unwrap(), Bytes::new(), ferry_core::QoS::AtMostOnce, false).with_properties(p);
        let back: Vec<(&str, String)> = topic_headers(&m);
        assert_eq!(back[0], ("reply-to", "/topic/replies.app1".to_owned()));
        assert_eq!(back[1], ("correlation-id", "c-1".to_owned()));
        assert_eq!(back[2], ("k", "v".to_owned()));
    }

    #[test]
    fn a_reply_to_that_is_not_a_topic_stays_a_header() {
        let p = properties_in(None, vec![("reply-to".into(), "/reply-queue/x".into())]);
        assert_eq!(p.response_topic, None);
        assert_eq!(p.user_properties, [("reply-to".to_owned(), "/reply-queue/x".to_owned())]);
    }

    #[test]
    fn message_frames_carry_what_the_version_can() {
        let head = MessageHead {
            destination: "/topic/a",
            message_id: "s-1",
            subscription: "0",
            needs_ack: true,
            redelivered: true,
        };
        let headers = [("multi", "line\nvalue"), ("destination", "/evil"), ("ok", "yes")];
        let h12 = message_headers(&head, Version::V1_2, Some("text/plain"), headers);
        let names: Vec<&str> = h12.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "destination",
                "message-id",
                "subscription",
                "ack",
                "redelivered",
                "content-type",
                "multi",
                "ok"
            ]
        );
        let h10 = message_headers(&head, Version::V1_0, None, headers);
        let names: Vec<&str> = h10.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["destination", "message-id", "subscription", "redelivered", "ok"]);
    }
}
