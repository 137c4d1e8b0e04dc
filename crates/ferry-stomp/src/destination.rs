//! STOMP destinations and their mapping onto the core's (MQTT-syntax) topic tree.
//!
//! | destination | what it is |
//! |---|---|
//! | `/topic/ROUTING.KEY` | publish/subscribe on the shared topic tree |
//! | `/queue/NAME` | a point-to-point queue (STOMP's own; see [`crate::queue`]) |
//! | `/temp-queue/NAME` | a queue private to the connection, for request/reply |
//! | `/reply-queue/TOKEN` | what a `reply-to:/temp-queue/NAME` is rewritten to: others SEND replies there |
//!
//! RabbitMQ's web-stomp destinations are served too, for users moving from it:
//!
//! | destination | is |
//! |---|---|
//! | `/exchange/amq.topic/KEY` | `/topic/KEY` (the same tree: MQTT sees the same topic) |
//! | `/amq/queue/NAME` | `/queue/NAME` |
//! | `/exchange/amq.fanout`, `/exchange/amq.fanout/ANY` | one fan-out destination every subscriber of it gets (the routing key is ignored); the MQTT topic [`FANOUT_TOPIC`] |
//! | any other `/exchange/…` | refused, naming what is served |
//!
//! Routing keys map onto MQTT topics as ARCHITECTURE.md (MQTT ↔ STOMP) says, the way RabbitMQ users expect:
//! words are separated by `.` in STOMP and levels by `/` in MQTT, and a `/` inside a
//! STOMP word is a `.` inside the MQTT level (the two characters swap). In a
//! subscription, the word `*` (exactly one word) is MQTT's `+` and `#` (zero or more
//! words) is MQTT's `#`.
//!
//! | STOMP | MQTT |
//! |---|---|
//! | `/topic/sensors.room1.temp` | `sensors/room1/temp` |
//! | `/topic/sensors.*.temp` | `sensors/+/temp` |
//! | `/topic/sensors.#` | `sensors/#` |
//! | `/topic/v1/x.y` | `v1.x/y` |
//!
//! `+` has no STOMP meaning and would turn into an MQTT wildcard, so it is refused in
//! routing keys. An MQTT level that is a literal `*` shows as the word `*` in a
//! MESSAGE's `destination` (MQTT allows it in a topic name; STOMP cannot tell it apart).

use ferry_core::{TopicError, TopicFilter, TopicName};
use thiserror::Error;

/// Prefix of publish/subscribe destinations.
pub const TOPIC: &str = "/topic/";
/// Prefix of point-to-point queues.
pub const QUEUE: &str = "/queue/";
/// Prefix of a connection's private queues.
pub const TEMP_QUEUE: &str = "/temp-queue/";
/// Prefix of the public names of temporary queues (only to SEND replies to).
pub const REPLY_QUEUE: &str = "/reply-queue/";

/// Prefix of RabbitMQ's exchange destinations.
pub const EXCHANGE: &str = "/exchange/";
/// Prefix of RabbitMQ's queue destinations (the same queues as `/queue/`).
pub const AMQ_QUEUE: &str = "/amq/queue/";
/// The exchanges served under [`EXCHANGE`], for error messages.
pub const EXCHANGES: &str = "/exchange/amq.topic/KEY, /exchange/amq.fanout";
/// The MQTT topic of `/exchange/amq.fanout`: a `$` topic, so that no `#` or `+`
/// subscriber gets its messages by accident (MQTT 5 §4.7.2).
pub const FANOUT_TOPIC: &str = "$exchange/amq.fanout";
/// The destination MESSAGE frames of [`FANOUT_TOPIC`] carry.
pub const FANOUT: &str = "/exchange/amq.fanout";

/// The accepted prefixes, for error messages.
pub const ACCEPTED: &str =
    "/topic/, /queue/, /temp-queue/ (and /reply-queue/ for replies), /exchange/amq.topic/, /exchange/amq.fanout, /amq/queue/";

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DestinationError {
    /// Not one of the accepted prefixes.
    #[error("destination {destination:?} is not supported: use {ACCEPTED}")]
    UnknownPrefix {
        /// The destination as sent.
        destination: String,
    },
    /// An exchange other than `amq.topic` and `amq.fanout`.
    #[error("destination {destination:?}: only the exchanges {EXCHANGES} are served; or use {ACCEPTED}")]
    UnknownExchange {
        /// The destination as sent.
        destination: String,
    },
    /// A prefix with nothing after it.
    #[error("destination {destination:?} names no topic or queue")]
    Empty {
        /// The destination as sent.
        destination: String,
    },
    /// A routing key holds `+`, which would be an MQTT wildcard.
    #[error("destination {destination:?}: '+' is not allowed in a routing key")]
    Plus {
        /// The destination as sent.
        destination: String,
    },
    /// A wildcard (`*`, `#`) in a destination that is sent to.
    #[error("destination {destination:?}: wildcards ('*', '#') are only allowed in SUBSCRIBE")]
    WildcardInSend {
        /// The destination as sent.
        destination: String,
    },
    /// The mapped MQTT topic or filter is not valid.
    #[error("destination {destination:?} is not a valid topic: {source}")]
    InvalidTopic {
        /// The destination as sent.
        destination: String,
        /// What the topic tree refused.
        source: TopicError,
    },
}

/// A parsed destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `/topic/KEY`: the routing key (STOMP syntax, not yet mapped).
    Topic(String),
    /// `/queue/NAME`.
    Queue(String),
    /// `/temp-queue/NAME`: the connection's own temporary queue NAME.
    TempQueue(String),
    /// `/reply-queue/TOKEN`: somebody's temporary queue, to send a reply to.
    ReplyQueue(String),
}

impl Destination {
    /// Parse a `destination` header.
    pub fn parse(destination: &str) -> Result<Destination, DestinationError> {
        if let Some(exchange) = destination.strip_prefix(EXCHANGE) {
            return Self::exchange(destination, exchange);
        }
        let (make, rest): (fn(String) -> Destination, &str) = if let Some(r) = destination.strip_prefix(TOPIC) {
            (Destination::Topic, r)
        } else if let Some(r) = destination.strip_prefix(QUEUE) {
            (Destination::Queue, r)
        } else if let Some(r) = destination.strip_prefix(TEMP_QUEUE) {
            (Destination::TempQueue, r)
        } else if let Some(r) = destination.strip_prefix(REPLY_QUEUE) {
            (Destination::ReplyQueue, r)
        } else if let Some(r) = destination.strip_prefix(AMQ_QUEUE) {
            (Destination::Queue, r)
        } else {
            return Err(DestinationError::UnknownPrefix {
                destination: destination.to_owned(),
            });
        };
        if rest.is_empty() {
            return Err(DestinationError::Empty {
                destination: destination.to_owned(),
            });
        }
        Ok(make(rest.to_owned()))
    }

    /// RabbitMQ's `/exchange/NAME[/KEY]`: `amq.topic` is the topic tree, `amq.fanout`
    /// one fan-out topic whatever the key.
    fn exchange(destination: &str, exchange: &str) -> Result<Destination, DestinationError> {
        let (name, key) = exchange.split_once('/').unwrap_or((exchange, ""));
        match name {
            "amq.topic" if key.is_empty() => Err(DestinationError::Empty {
                destination: destination.to_owned(),
            }),
            "amq.topic" => Ok(Destination::Topic(key.to_owned())),
            "amq.fanout" => Ok(Destination::Topic(routing_key(FANOUT_TOPIC))),
            _ => Err(DestinationError::UnknownExchange {
                destination: destination.to_owned(),
            }),
        }
    }
}

/// The MQTT topic a routing key is sent to (`sensors.room1.temp` → `sensors/room1/temp`).
/// Wildcards are refused.
pub fn topic_name(key: &str) -> Result<TopicName, DestinationError> {
    let destination = || format!("{TOPIC}{key}");
    if key.contains(['*', '#']) && key.split('.').any(|w| w == "*" || w == "#") {
        return Err(DestinationError::WildcardInSend {
            destination: destination(),
        });
    }
    let mqtt = to_mqtt(key).map_err(|()| DestinationError::Plus {
        destination: destination(),
    })?;
    TopicName::new(&mqtt).map_err(|source| DestinationError::InvalidTopic {
        destination: destination(),
        source,
    })
}

/// The topic a queue's message carries: its destination as it was sent
/// (`/queue/jobs`), or the prefix [`QUEUE`] alone when the destination cannot be a
/// topic name (a queue name may hold `+` or `#`). A queue message is never routed by
/// topic: this is for the journal and for people.
pub fn queue_topic(destination: &str) -> Result<TopicName, DestinationError> {
    TopicName::new(destination)
        .or_else(|_| TopicName::new(QUEUE))
        .map_err(|source| DestinationError::InvalidTopic {
            destination: destination.to_owned(),
            source,
        })
}

/// The MQTT filter a routing key subscribes to (`sensors.*.temp` → `sensors/+/temp`).
pub fn topic_filter(key: &str) -> Result<TopicFilter, DestinationError> {
    let destination = || format!("{TOPIC}{key}");
    let mqtt = to_mqtt(key).map_err(|()| DestinationError::Plus {
        destination: destination(),
    })?;
    TopicFilter::new(&mqtt).map_err(|source| DestinationError::InvalidTopic {
        destination: destination(),
        source,
    })
}

/// The routing key of an MQTT topic or filter (`sensors/+/temp` → `sensors.*.temp`).
pub fn routing_key(mqtt: &str) -> String {
    let mut key = String::with_capacity(mqtt.len());
    translate(mqtt, '/', "+", "*", &mut key);
    key
}

/// The `destination` of a MESSAGE for a message published on `topic`.
pub fn topic_destination(topic: &TopicName) -> String {
    let mqtt = topic.as_str();
    if mqtt == FANOUT_TOPIC {
        return FANOUT.to_owned();
    }
    let mut destination = String::with_capacity(TOPIC.len() + mqtt.len());
    destination.push_str(TOPIC);
    translate(mqtt, '/', "+", "*", &mut destination);
    destination
}

/// Map a routing key to MQTT syntax; `Err` when it holds a `+`.
fn to_mqtt(key: &str) -> Result<String, ()> {
    if key.contains('+') {
        return Err(());
    }
    let mut mqtt = String::with_capacity(key.len());
    translate(key, '.', "*", "+", &mut mqtt);
    Ok(mqtt)
}

/// Appends `from` to `out` with its separator swapped for the other syntax's (`.` and
/// `/` trade places, inside levels too) and a level that is exactly the wildcard `wild`
/// written as `other_wild`. Every change is one ASCII character for another, so the
/// levels keep their byte offsets (it runs for every SEND and every MESSAGE).
fn translate(from: &str, separator: char, wild: &str, other_wild: &str, out: &mut String) {
    let other = if separator == '/' { '.' } else { '/' };
    let base = out.len();
    out.extend(from.chars().map(|c| match c {
        c if c == separator => other,
        c if c == other => separator,
        c => c,
    }));
    if from.contains(wild) {
        let mut start = base;
        for level in from.split(separator) {
            if level == wild {
                out.replace_range(start..start + wild.len(), other_wild);
            }
            start += level.len() + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_recognised_and_others_refused_by_name() {
        assert_eq!(Destination::parse("/topic/a.b"), Ok(Destination::Topic("a.b".into())));
        assert_eq!(Destination::parse("/queue/jobs"), Ok(Destination::Queue("jobs".into())));
        assert_eq!(Destination::parse("/temp-queue/r"), Ok(Destination::TempQueue("r".into())));
        assert_eq!(Destination::parse("/reply-queue/x.r"), Ok(Destination::ReplyQueue("x.r".into())));
        let err = Destination::parse("/exchange/amq.direct/x").unwrap_err();
        assert!(err.to_string().contains("/exchange/amq.topic/KEY, /exchange/amq.fanout"), "{err}");
        let err = Destination::parse("/other/x").unwrap_err();
        assert!(err.to_string().contains("/topic/, /queue/, /temp-queue/"), "{err}");
        assert!(matches!(Destination::parse("/queue/"), Err(DestinationError::Empty { .. })));
        assert!(matches!(Destination::parse("topic/a"), Err(DestinationError::UnknownPrefix { .. })));
    }

    #[test]
    fn rabbitmq_destinations_map_onto_ours() {
        assert_eq!(Destination::parse("/exchange/amq.topic/a.b"), Ok(Destination::Topic("a.b".into())));
        assert_eq!(Destination::parse("/amq/queue/jobs"), Ok(Destination::Queue("jobs".into())));
        let fanout = Destination::Topic(routing_key(FANOUT_TOPIC));
        assert_eq!(Destination::parse("/exchange/amq.fanout"), Ok(fanout.clone()));
        assert_eq!(Destination::parse("/exchange/amq.fanout/any.key"), Ok(fanout));
        assert_eq!(topic_name(&routing_key(FANOUT_TOPIC)).unwrap().as_str(), FANOUT_TOPIC);
        assert_eq!(topic_destination(&TopicName::new(FANOUT_TOPIC).unwrap()), "/exchange/amq.fanout");
        assert!(matches!(
            Destination::parse("/exchange/amq.topic"),
            Err(DestinationError::Empty { .. })
        ));
        assert!(matches!(
            Destination::parse("/exchange/amq.topic/"),
            Err(DestinationError::Empty { .. })
        ));
        assert!(matches!(Destination::parse("/amq/queue/"), Err(DestinationError::Empty { .. })));
        assert!(matches!(
            Destination::parse("/exchange/amq.headers"),
            Err(DestinationError::UnknownExchange { .. })
        ));
    }

    #[test]
    fn routing_keys_map_to_mqtt_topics_as_architecture_says() {
        assert_eq!(topic_name("sensors.room1.temp").unwrap().as_str(), "sensors/room1/temp");
        assert_eq!(topic_filter("sensors.*.temp").unwrap().as_str(), "sensors/+/temp");
        assert_eq!(topic_filter("sensors.#").unwrap().as_str(), "sensors/#");
        assert_eq!(topic_filter("#").unwrap().as_str(), "#");
        assert_eq!(topic_filter("a.b").unwrap().as_str(), "a/b");
    }

    /// The mapping as ARCHITECTURE.md states it, word by word: the reference `translate` is
    /// checked against.
    fn reference_to_mqtt(key: &str) -> String {
        key.split('.')
            .map(|word| if word == "*" { "+".to_owned() } else { word.replace('/', ".") })
            .collect::<Vec<_>>()
            .join("/")
    }

    fn reference_routing_key(mqtt: &str) -> String {
        mqtt.split('/')
            .map(|level| if level == "+" { "*".to_owned() } else { level.replace('.', "/") })
            .collect::<Vec<_>>()
            .join(".")
    }

    proptest::proptest! {
        #[test]
        fn translation_matches_the_word_by_word_reference(text in "[a-c./*#+$é]{0,12}") {
            proptest::prop_assert_eq!(routing_key(&text), reference_routing_key(&text));
            if !text.contains('+') {
                proptest::prop_assert_eq!(to_mqtt(&text), Ok(reference_to_mqtt(&text)));
            }
        }
    }

    #[test]
    fn mqtt_topics_map_back_to_routing_keys() {
        assert_eq!(routing_key("sensors/room1/temp"), "sensors.room1.temp");
        assert_eq!(routing_key("sensors/+/temp"), "sensors.*.temp");
        assert_eq!(routing_key("sensors/#"), "sensors.#");
        let t = TopicName::new("a/b").unwrap();
        assert_eq!(topic_destination(&t), "/topic/a.b");
    }

    #[test]
    fn dot_in_an_mqtt_level_and_slash_in_a_stomp_word_swap() {
        // MQTT level "v1.2" is the STOMP word "v1/2", and back.
        assert_eq!(routing_key("fw/v1.2/status"), "fw.v1/2.status");
        assert_eq!(topic_name("fw.v1/2.status").unwrap().as_str(), "fw/v1.2/status");
        assert_eq!(topic_filter("fw.v1/2.*").unwrap().as_str(), "fw/v1.2/+");
        for mqtt in ["a/b.c/d", "x.y", "/lead", "trail/", "a//b", "$SYS/broker/uptime"] {
            let key = routing_key(mqtt);
            assert_eq!(topic_name(&key).unwrap().as_str(), mqtt, "round trip of {mqtt} via {key}");
        }
    }

    #[test]
    fn wildcards_and_plus_are_refused_where_they_do_not_belong() {
        assert!(matches!(topic_name("a.*.c"), Err(DestinationError::WildcardInSend { .. })));
        assert!(matches!(topic_name("a.#"), Err(DestinationError::WildcardInSend { .. })));
        assert!(matches!(topic_filter("a.+"), Err(DestinationError::Plus { .. })));
        assert!(matches!(topic_name("a+b"), Err(DestinationError::Plus { .. })));
        assert!(matches!(topic_filter("a.#.b"), Err(DestinationError::InvalidTopic { .. })));
        assert!(matches!(topic_name("a#b"), Err(DestinationError::InvalidTopic { .. })));
        // `*` inside a word is just a character.
        assert_eq!(topic_name("a*b.c").unwrap().as_str(), "a*b/c");
    }
}
