//! The rules on topic names, topic filters and client identifiers that decoding (and
//! encoding) enforce. Topic syntax itself is the core's ([`ferry_core::topic`]): one
//! definition for every protocol; this module maps its verdicts to [`DecodeError`]s and
//! adds what is MQTT's own.

use ferry_core::topic::{SharedFilter, SharedFilterError, TopicFilter, TopicName, SHARE_PREFIX};

use super::error::DecodeError;
use super::packet::Version;

/// The longest client identifier MQTT 3.1 allows, in bytes (3.1 §3.1).
pub const MAX_CLIENT_ID_3_1: usize = 23;

/// A non-empty topic name without wildcards (3.1.1 §4.7.3, 5.0 §4.7.3).
pub fn topic_name(name: &str) -> Result<(), DecodeError> {
    Ok(TopicName::validate(name)?)
}

/// A PUBLISH topic name: as [`topic_name`], except that 5.0 allows an empty one when a
/// Topic Alias stands for it (§3.3.2.3.4).
pub fn publish_topic(name: &str, version: Version, has_alias: bool) -> Result<(), DecodeError> {
    if name.is_empty() && version.is_v5() && has_alias {
        return Ok(());
    }
    topic_name(name)
}

/// A topic filter, plain (3.1.1 §4.7.1, 5.0 §4.7.1: `+` a whole level, `#` the whole
/// last level, non-empty) or shared (`$share/GROUP/FILTER`, 5.0 §4.8.2; checked in every
/// version, since Ferry gives `$share/` its meaning for 3.x clients too).
pub fn topic_filter(filter: &str) -> Result<(), DecodeError> {
    let result = if filter.starts_with(SHARE_PREFIX) {
        SharedFilter::parse(filter).map(drop)
    } else {
        TopicFilter::validate(filter).map_err(SharedFilterError::Filter)
    };
    result.map_err(|e| match e {
        SharedFilterError::Filter(ferry_core::topic::TopicError::NullCharacter) => DecodeError::NullCharacter,
        other => DecodeError::InvalidTopicFilter(other),
    })
}

/// Whether `filter` is a shared subscription.
pub fn is_shared(filter: &str) -> bool {
    filter.starts_with(SHARE_PREFIX)
}

/// The client identifier rules that are the protocol's, not the broker's policy:
/// MQTT 3.1 allows 1 to 23 bytes; 3.1.1 refuses an empty identifier unless Clean
/// Session is set ([MQTT-3.1.3-8]); 5.0 allows an empty one (the server assigns one).
pub fn client_id(id: &str, version: Version, clean_start: bool) -> Result<(), DecodeError> {
    match version {
        Version::V3_1 if id.is_empty() => Err(DecodeError::ClientIdRejected("MQTT 3.1 requires a client identifier")),
        Version::V3_1 if id.len() > MAX_CLIENT_ID_3_1 => Err(DecodeError::ClientIdRejected("MQTT 3.1 allows at most 23 bytes")),
        Version::V3_1_1 if id.is_empty() && !clean_start => {
            Err(DecodeError::ClientIdRejected("an empty client identifier requires Clean Session"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_from_the_spec() {
        // 3.1.1 §4.7.3 / 5.0 §4.7.3.
        for ok in ["sport/tennis/player1", "/finance", "finance/", "$SYS/monitor/Clients", "A\u{2A6D4}"] {
            assert_eq!(topic_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(topic_name("sport/+/player1"), Err(DecodeError::WildcardInTopicName));
        assert_eq!(topic_name("sport/#"), Err(DecodeError::WildcardInTopicName));
        assert_eq!(topic_name(""), Err(DecodeError::EmptyTopicName));
        assert_eq!(topic_name("a\0b"), Err(DecodeError::NullCharacter));
    }

    #[test]
    fn empty_publish_topic_needs_a_v5_alias() {
        assert_eq!(publish_topic("", Version::V5, true), Ok(()));
        assert_eq!(publish_topic("", Version::V5, false), Err(DecodeError::EmptyTopicName));
        assert_eq!(publish_topic("", Version::V3_1_1, true), Err(DecodeError::EmptyTopicName));
    }

    #[test]
    fn topic_filters_from_the_spec() {
        // 3.1.1 §4.7.1.2 / §4.7.1.3 non-normative examples.
        for ok in [
            "sport/tennis/player1/#",
            "sport/#",
            "#",
            "+",
            "+/tennis/#",
            "sport/+/player1",
            "/+",
            "+/+",
        ] {
            assert_eq!(topic_filter(ok), Ok(()), "{ok}");
        }
        for bad in ["sport/tennis#", "sport/tennis/#/ranking", "sport+", "", "a/#/b", "#/", "a/b+/c"] {
            assert!(matches!(topic_filter(bad), Err(DecodeError::InvalidTopicFilter(_))), "{bad}");
        }
        assert_eq!(topic_filter("a/\0"), Err(DecodeError::NullCharacter));
    }

    #[test]
    fn shared_subscription_syntax() {
        // 5.0 §4.8.2.
        assert_eq!(topic_filter("$share/consumer1/sport/tennis/+"), Ok(()));
        assert_eq!(topic_filter("$share/g/#"), Ok(()));
        for bad in [
            "$share/",
            "$share//a",
            "$share/g",
            "$share/g/",
            "$share/g+/a",
            "$share/g#/a",
            "$share/g/a/#/b",
        ] {
            assert!(matches!(topic_filter(bad), Err(DecodeError::InvalidTopicFilter(_))), "{bad}");
        }
        assert!(is_shared("$share/g/a"));
        assert!(!is_shared("$shared/g/a"));
    }

    #[test]
    fn client_identifier_rules_per_version() {
        assert!(client_id("", Version::V3_1, true).is_err());
        assert!(client_id(&"x".repeat(23), Version::V3_1, true).is_ok());
        assert!(client_id(&"x".repeat(24), Version::V3_1, true).is_err());
        assert!(client_id("", Version::V3_1_1, true).is_ok());
        assert!(client_id("", Version::V3_1_1, false).is_err());
        assert!(client_id(&"x".repeat(100), Version::V3_1_1, false).is_ok());
        assert!(client_id("", Version::V5, false).is_ok());
    }
}
