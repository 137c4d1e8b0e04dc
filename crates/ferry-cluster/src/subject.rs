//! Topic ↔ NATS subject encoding (sans-IO).
//!
//! One MQTT topic level becomes one NATS token, `E(level)`: the level itself when it
//! is made of `[A-Za-z0-9_-]` only, otherwise `=` followed by the base64url (no
//! padding) of its UTF-8 bytes; the empty level is `=`. The result never holds `.`,
//! `*`, `>` or whitespace, is inside the JetStream KV key alphabet, and is injective
//! (a plain token never starts with `=`), so the same encoding names subjects and the
//! retained bucket's keys. Filters keep their meaning: `+` is `*`, and `#` is `>` plus
//! the parent subject (MQTT's `a/#` also matches `a`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ferry_core::{TopicFilter, TopicName};

/// Why a subject or key could not be turned back into a topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// The subject does not start with the configured prefix.
    #[error("subject is not under the cluster prefix")]
    Prefix,
    /// A token is neither plain nor `=` + base64url of UTF-8.
    #[error("bad token {0:?}")]
    Token(String),
    /// The decoded topic is not a valid topic name.
    #[error("decoded topic is invalid: {0}")]
    Topic(String),
}

fn is_plain(level: &str) -> bool {
    !level.is_empty() && level.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Appends `E(level)` to `out`.
pub fn encode_level(level: &str, out: &mut String) {
    if is_plain(level) {
        out.push_str(level);
    } else {
        out.push('=');
        URL_SAFE_NO_PAD.encode_string(level.as_bytes(), out);
    }
}

/// The level a token encodes.
pub fn decode_level(token: &str) -> Result<String, SubjectError> {
    match token.strip_prefix('=') {
        None if is_plain(token) => Ok(token.to_owned()),
        None => Err(SubjectError::Token(token.to_owned())),
        Some(b64) => URL_SAFE_NO_PAD
            .decode(b64)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| SubjectError::Token(token.to_owned())),
    }
}

/// The encoded levels of `topic` joined by `.`: a KV key, or a subject once prefixed.
pub fn topic_key(topic: &str) -> String {
    let mut out = String::with_capacity(topic.len() + 8);
    for (i, level) in topic.split('/').enumerate() {
        if i > 0 {
            out.push('.');
        }
        encode_level(level, &mut out);
    }
    out
}

/// The topic a KV key (as [`topic_key`] makes it) names.
pub fn key_topic(key: &str) -> Result<TopicName, SubjectError> {
    let mut topic = String::with_capacity(key.len());
    for (i, token) in key.split('.').enumerate() {
        if i > 0 {
            topic.push('/');
        }
        topic.push_str(&decode_level(token)?);
    }
    TopicName::new(&topic).map_err(|e| SubjectError::Topic(e.to_string()))
}

/// The subjects under which topics and filters travel: `<prefix>.m.<E(levels)…>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    /// `<prefix>.m.`
    message_prefix: String,
    /// `<prefix>.ctl.`
    control_prefix: String,
}

impl Subjects {
    /// Subjects under `prefix` (`ferry` by default).
    pub fn new(prefix: &str) -> Self {
        Self {
            message_prefix: format!("{prefix}.m."),
            control_prefix: format!("{prefix}.ctl."),
        }
    }

    /// The subject node `node` answers take-over requests on:
    /// `<prefix>.ctl.<E(node)>.takeover`.
    pub fn takeover(&self, node: &str) -> String {
        let mut s = self.control_prefix.clone();
        encode_level(node, &mut s);
        s.push_str(".takeover");
        s
    }

    /// The subject a message published to `topic` is sent on.
    pub fn topic(&self, topic: &TopicName) -> String {
        let mut s = self.message_prefix.clone();
        s.push_str(&topic_key(topic.as_str()));
        s
    }

    /// The topic a subject carries (a foreign publisher's subject may not be one).
    pub fn parse(&self, subject: &str) -> Result<TopicName, SubjectError> {
        let key = subject.strip_prefix(&self.message_prefix).ok_or(SubjectError::Prefix)?;
        key_topic(key)
    }

    /// The subject matching every message: `<prefix>.m.>` (broadcast routing).
    pub fn all(&self) -> String {
        format!("{}>", self.message_prefix)
    }

    /// The NATS subjects that together match what `filter` matches: one, or two for a
    /// filter ending in `#` that has a parent level (`a/#` is `a.>` and `a`).
    pub fn filter(&self, filter: &TopicFilter) -> Vec<String> {
        let levels: Vec<&str> = filter.levels().collect();
        let mut s = self.message_prefix.clone();
        let mut parent = None;
        for (i, level) in levels.iter().enumerate() {
            if i > 0 {
                s.push('.');
            }
            match *level {
                "+" => s.push('*'),
                "#" => {
                    if i > 0 {
                        parent = Some(s[..s.len() - 1].to_owned());
                    }
                    s.push('>');
                }
                level => encode_level(level, &mut s),
            }
        }
        let mut out = vec![s];
        out.extend(parent);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(topic: &str) -> String {
        Subjects::new("ferry").topic(&TopicName::new(topic).unwrap())
    }

    fn filter(f: &str) -> Vec<String> {
        Subjects::new("ferry").filter(&TopicFilter::new(f).unwrap())
    }

    /// The examples of the design's topic table, byte for byte.
    #[test]
    fn topics_encode_as_the_design_table_says() {
        let table = [
            ("sensors/temp", "ferry.m.sensors.temp"),
            ("a.b/c", "ferry.m.=YS5i.c"),
            ("/leading", "ferry.m.=.leading"),
            ("a//b", "ferry.m.a.=.b"),
            ("$SYS/broker/uptime", "ferry.m.=JFNZUw.broker.uptime"),
            ("home/living room", "ferry.m.home.=bGl2aW5nIHJvb20"),
            ("x/*/>", "ferry.m.x.=Kg.=Pg"),
            ("données/€", "ferry.m.=ZG9ubsOpZXM.=4oKs"),
        ];
        let s = Subjects::new("ferry");
        for (topic, want) in table {
            assert_eq!(subject(topic), want, "{topic}");
            assert_eq!(s.parse(want).unwrap().as_str(), topic, "round trip of {topic}");
        }
    }

    #[test]
    fn filters_encode_as_the_design_table_says() {
        assert_eq!(filter("a/+/c"), ["ferry.m.a.*.c"]);
        assert_eq!(filter("a/#"), ["ferry.m.a.>", "ferry.m.a"]);
        assert_eq!(filter("#"), ["ferry.m.>"]);
        assert_eq!(filter("+"), ["ferry.m.*"]);
        assert_eq!(filter("a b/+/#"), ["ferry.m.=YSBi.*.>", "ferry.m.=YSBi.*"]);
        assert_eq!(filter("exact/topic"), [subject("exact/topic")]);
    }

    #[test]
    fn tokens_are_valid_kv_keys_and_never_hold_nats_specials() {
        for topic in ["a.b/c d", "*/>/\t", "é/=/x", "$share/x", "/", "//"] {
            let key = topic_key(topic);
            assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_=.".contains(&b)), "{key}");
            assert_eq!(key.split('.').count(), topic.split('/').count(), "one token per level: {key}");
            assert_eq!(key_topic(&key).unwrap().as_str(), topic);
        }
    }

    #[test]
    fn foreign_subjects_are_refused_not_panicked_on() {
        let s = Subjects::new("ferry");
        assert_eq!(s.parse("other.m.a"), Err(SubjectError::Prefix));
        assert!(matches!(s.parse("ferry.m.a.=!!"), Err(SubjectError::Token(_))));
        assert!(matches!(s.parse("ferry.m.a.b*c"), Err(SubjectError::Token(_))));
        // base64 of invalid UTF-8 (0xff).
        assert!(matches!(s.parse("ferry.m.=_w"), Err(SubjectError::Token(_))));
        // A decoded wildcard is not a topic.
        assert!(matches!(s.parse("ferry.m.=Iw"), Err(SubjectError::Topic(_))));
    }
}
