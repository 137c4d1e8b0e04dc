//! JSON in and out: error bodies, messages as the API shows them, EMQX's publish body.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use ferry_core::{Expiry, Message, Properties, QoS, TopicName};
use ferry_transport::HttpResponse;
use hyper::header::{HeaderValue, WWW_AUTHENTICATE};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

/// `application/json`.
pub const JSON: &str = "application/json";

/// A JSON response.
pub fn ok(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::new(status, JSON, body.to_string())
}

/// A JSON error: `{"error": CODE, "message": TEXT}`.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> HttpResponse {
    ok(status, &json!({"error": code, "message": message.into()}))
}

/// 401 with a challenge for `scheme` (`Basic realm="…"`, `Bearer`).
pub fn unauthorized(challenge: &'static str, message: &str) -> HttpResponse {
    let mut r = error(StatusCode::UNAUTHORIZED, "unauthorized", message);
    r.headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    r
}

/// A payload as JSON: its text when it is UTF-8 (`plain`), base64 otherwise.
pub fn payload(bytes: &[u8]) -> (Value, &'static str) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (Value::String(text.to_owned()), "plain"),
        Err(_) => (Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)), "base64"),
    }
}

/// A message as the API shows it: `{topic, payload, payload_encoding, qos, retain,
/// properties}`; `retain` is the flag it is delivered with.
pub fn message(m: &Message, retain: bool, qos: QoS, now: Instant) -> Value {
    let (payload, encoding) = payload(&m.payload);
    let mut props = serde_json::Map::new();
    let p = &m.properties;
    if let Some(ct) = &p.content_type {
        props.insert("content_type".into(), json!(ct));
    }
    if let Some(rt) = &p.response_topic {
        props.insert("response_topic".into(), json!(rt));
    }
    if let Some(cd) = &p.correlation_data {
        props.insert("correlation_data".into(), self::payload(cd).0);
    }
    if let Some(utf8) = p.payload_is_utf8 {
        props.insert("payload_format_indicator".into(), json!(u8::from(utf8)));
    }
    if !p.user_properties.is_empty() {
        let map: serde_json::Map<String, Value> = p.user_properties.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        props.insert("user_properties".into(), Value::Object(map));
    }
    if let Some(left) = m.expiry.and_then(|e| e.remaining_secs(now)) {
        props.insert("message_expiry_interval".into(), json!(left));
    }
    json!({
        "topic": m.topic.as_str(),
        "payload": payload,
        "payload_encoding": encoding,
        "qos": qos as u8,
        "retain": retain,
        "properties": props,
        "size": m.payload.len(),
    })
}

/// EMQX's publish body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    /// The topic.
    pub topic: String,
    /// The payload, as `payload_encoding` says.
    #[serde(default)]
    pub payload: String,
    /// `plain` (default) or `base64`.
    #[serde(default)]
    pub payload_encoding: Option<String>,
    /// 0, 1 or 2 (default 0).
    #[serde(default)]
    pub qos: u8,
    /// The retain flag.
    #[serde(default)]
    pub retain: bool,
    /// EMQX accepts a client id to publish as; Ferry ignores it.
    #[serde(default)]
    pub clientid: Option<String>,
    /// MQTT 5 properties.
    #[serde(default)]
    pub properties: PublishProperties,
}

/// The `properties` of a publish body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishProperties {
    /// MIME type.
    pub content_type: Option<String>,
    /// `{"key": "value"}`.
    #[serde(default)]
    pub user_properties: serde_json::Map<String, Value>,
    /// Reply topic.
    pub response_topic: Option<String>,
    /// Correlation data (as text).
    pub correlation_data: Option<String>,
    /// Seconds until the message expires.
    pub message_expiry_interval: Option<u32>,
    /// 1 when the payload is UTF-8.
    pub payload_format_indicator: Option<u8>,
}

/// Why a publish body is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadPublish {
    /// 400 with this message.
    Invalid(String),
    /// 413: the payload is longer than the limit.
    TooLarge(usize),
}

/// Parses and checks a publish body into a message (publisher `None`: the broker's own).
pub fn publish_message(body: &[u8], max_payload: usize, now: Instant) -> Result<Message, BadPublish> {
    let b: PublishBody = serde_json::from_slice(body).map_err(|e| BadPublish::Invalid(format!("bad JSON body: {e}")))?;
    let topic = TopicName::new(&b.topic).map_err(|e| BadPublish::Invalid(format!("bad topic {:?}: {e}", b.topic)))?;
    let payload = match b.payload_encoding.as_deref().unwrap_or("plain") {
        "plain" => Bytes::from(b.payload.into_bytes()),
        "base64" => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(b.payload.as_bytes())
                .map_err(|e| BadPublish::Invalid(format!("payload is not base64: {e}")))?,
        ),
        other => {
            return Err(BadPublish::Invalid(format!(
                "payload_encoding must be plain or base64, not {other:?}"
            )))
        }
    };
    if payload.len() > max_payload {
        return Err(BadPublish::TooLarge(max_payload));
    }
    let qos = QoS::from_u8(b.qos).ok_or_else(|| BadPublish::Invalid(format!("qos must be 0, 1 or 2, not {}", b.qos)))?;
    let p = b.properties;
    let mut user_properties = Vec::new();
    for (k, v) in p.user_properties {
        let v = match v {
            Value::String(s) => s,
            other => other.to_string(),
        };
        user_properties.push((k, v));
    }
    if let Some(rt) = &p.response_topic {
        TopicName::new(rt).map_err(|e| BadPublish::Invalid(format!("bad response_topic: {e}")))?;
    }
    let properties = Properties {
        payload_is_utf8: p.payload_format_indicator.map(|v| v == 1),
        content_type: p.content_type,
        response_topic: p.response_topic,
        correlation_data: p.correlation_data.map(|c| Bytes::from(c.into_bytes())),
        user_properties,
    };
    let expiry = p
        .message_expiry_interval
        .filter(|&s| s > 0)
        .map(|s| Expiry::after(now, Duration::from_secs(u64::from(s))));
    Ok(Message::new(topic, payload, qos, b.retain)
        .with_properties(properties)
        .with_expiry(expiry))
}

/// A shared message, for the router.
pub type Shared = Arc<Message>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emqx_bodies_parse_and_bad_ones_say_why() {
        let now = Instant::now();
        let m = publish_message(
            br#"{"topic":"a/b","payload":"aGk=","payload_encoding":"base64","qos":1,"retain":true,
                "properties":{"content_type":"text/plain","user_properties":{"k":"v"},"message_expiry_interval":60}}"#,
            100,
            now,
        )
        .unwrap();
        assert_eq!((&m.payload[..], m.qos, m.retain), (&b"hi"[..], QoS::AtLeastOnce, true));
        assert_eq!(m.properties.user_properties, vec![("k".to_owned(), "v".to_owned())]);
        let v = message(&m, true, QoS::AtLeastOnce, now);
        assert_eq!(v["payload"], "hi");
        assert_eq!(v["properties"]["message_expiry_interval"], 60);
        for (body, want) in [
            (&br#"{"topic":"a/+","payload":"x"}"#[..], "bad topic"),
            (br#"{"topic":"a","qos":3}"#, "qos"),
            (br#"{"topic":"a","payload":"%","payload_encoding":"base64"}"#, "base64"),
            (&b"{\"topic\":"[..], "bad JSON"),
            (br#"{"topic":"a","nope":1}"#, "bad JSON"),
        ] {
            match publish_message(body, 100, now) {
                Err(BadPublish::Invalid(m)) => assert!(m.contains(want), "{m}"),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            publish_message(br#"{"topic":"a","payload":"0123456789"}"#, 4, now).unwrap_err(),
            BadPublish::TooLarge(4)
        );
    }
}
