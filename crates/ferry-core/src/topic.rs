//! Topic names, topic filters and shared-subscription filters, validated once.
//!
//! The core's canonical topic syntax is MQTT's (MQTT 3.1.1 §4.7, MQTT 5.0 §4.7): levels
//! separated by `/`, the single-level wildcard `+` and the multi-level wildcard `#`.
//! Other protocols (STOMP) map their destinations onto it in their adapter.
//!
//! * [`TopicName`] is what a message is published to: no wildcards.
//! * [`TopicFilter`] is what a subscription asks for: wildcards allowed where MQTT allows
//!   them.
//! * [`SharedFilter`] is an MQTT 5 shared subscription, `$share/GROUP/FILTER` (§4.8.2);
//!   [`Subscription::parse`] tells a plain filter from a shared one.
//! * [`matches()`] is the plain, obviously-correct matching function: the reference the
//!   indexed structures ([`crate::tree`], [`crate::retained`]) are tested against.
//!
//! Both newtypes hold an `Arc<str>`: cloning one is a reference-count increment.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use thiserror::Error;

/// The level separator.
pub const SEPARATOR: char = '/';
/// The single-level wildcard, valid only as a whole level of a filter.
pub const SINGLE_LEVEL_WILDCARD: &str = "+";
/// The multi-level wildcard, valid only as the whole last level of a filter.
pub const MULTI_LEVEL_WILDCARD: &str = "#";
/// The longest topic name or filter, in bytes (a UTF-8 string in MQTT carries a 16-bit length).
pub const MAX_TOPIC_LEN: usize = 65_535;
/// The prefix that makes a subscription filter a shared subscription (MQTT 5.0 §4.8.2).
pub const SHARE_PREFIX: &str = "$share/";

/// Why a string is not a valid [`TopicName`] or [`TopicFilter`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TopicError {
    /// Topic names and filters must be at least one character long.
    #[error("topic is empty")]
    Empty,
    /// Longer than [`MAX_TOPIC_LEN`] bytes.
    #[error("topic is {len} bytes long, the limit is {MAX_TOPIC_LEN}")]
    TooLong {
        /// The length that was offered, in bytes.
        len: usize,
    },
    /// Contains U+0000, which MQTT forbids in every string.
    #[error("topic contains the null character U+0000")]
    NullCharacter,
    /// A topic name (something published to) contains `+` or `#`.
    #[error("topic name contains the wildcard '{wildcard}', which only a subscription filter may hold")]
    WildcardInName {
        /// The wildcard character found.
        wildcard: char,
    },
    /// `+` used as part of a level (`sport+`) rather than as a whole level.
    #[error("'+' must occupy a whole level of the filter (level {level} is '{text}')")]
    SingleLevelWildcardNotAlone {
        /// Zero-based index of the offending level.
        level: usize,
        /// The offending level.
        text: String,
    },
    /// `#` used as part of a level (`sport#`) or anywhere but the last level (`a/#/b`).
    #[error("'#' must be the whole last level of the filter (found in level {level}, '{text}')")]
    MultiLevelWildcardNotLast {
        /// Zero-based index of the offending level.
        level: usize,
        /// The offending level.
        text: String,
    },
}

/// Why a string is not a valid shared subscription (`$share/GROUP/FILTER`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SharedFilterError {
    /// The string does not start with `$share/`.
    #[error("a shared subscription starts with '$share/'")]
    NotShared,
    /// `$share//…`: the share name is empty.
    #[error("the share name of a shared subscription is empty")]
    EmptyGroup,
    /// The share name contains `+` or `#` (it cannot contain `/`: that ends it).
    #[error("the share name '{group}' contains '{wildcard}'")]
    WildcardInGroup {
        /// The share name that was offered.
        group: String,
        /// The forbidden character found in it.
        wildcard: char,
    },
    /// `$share/GROUP` with no `/FILTER` after the share name.
    #[error("the shared subscription '$share/{group}' has no topic filter")]
    MissingFilter {
        /// The share name that was offered.
        group: String,
    },
    /// The part after `$share/GROUP/` is not a valid topic filter.
    #[error("invalid topic filter in shared subscription: {0}")]
    Filter(#[from] TopicError),
}

/// Checks the length rules that names and filters share: not empty, at most
/// [`MAX_TOPIC_LEN`] bytes.
fn check_length(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong { len: s.len() });
    }
    Ok(())
}

/// Checks the rules that names and filters share: length and the null character.
fn check_common(s: &str) -> Result<(), TopicError> {
    check_length(s)?;
    if s.contains('\0') {
        return Err(TopicError::NullCharacter);
    }
    Ok(())
}

/// Whether a topic or filter (as a string) starts with `$`: the broker's own topics
/// (`$SYS/…`) and reserved prefixes, which the wildcards of a filter's first level skip.
fn starts_with_dollar(s: &str) -> bool {
    s.starts_with('$')
}

/// The levels of a topic name or filter, in order; `a//b` has an empty middle level,
/// `/finance` an empty first level.
pub fn levels(s: &str) -> std::str::Split<'_, char> {
    s.split(SEPARATOR)
}

/// A topic name a message is published to: non-empty, at most [`MAX_TOPIC_LEN`] bytes,
/// no U+0000 and no wildcard. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(Arc<str>);

impl TopicName {
    /// Validates `name` as a topic name.
    pub fn new(name: &str) -> Result<Self, TopicError> {
        Self::validate(name)?;
        Ok(Self(Arc::from(name)))
    }

    /// Checks `name` against the rules of a topic name without allocating.
    pub fn validate(name: &str) -> Result<(), TopicError> {
        check_length(name)?;
        // One pass over the bytes (this runs for every PUBLISH and SEND): in UTF-8 the
        // bytes of U+0000, `+` and `#` never occur inside a multi-byte character. A
        // U+0000 anywhere outranks a wildcard, as in `check_common`.
        let mut wildcard = None;
        for &b in name.as_bytes() {
            match b {
                0 => return Err(TopicError::NullCharacter),
                b'+' | b'#' if wildcard.is_none() => wildcard = Some(char::from(b)),
                _ => {}
            }
        }
        match wildcard {
            Some(wildcard) => Err(TopicError::WildcardInName { wildcard }),
            None => Ok(()),
        }
    }

    /// How many levels the name has (`a/b` has two, `/` has two empty ones).
    pub fn level_count(&self) -> usize {
        self.0.bytes().filter(|&b| b == b'/').count() + 1
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The levels of the name, in order (never empty: `""` is not a valid name).
    pub fn levels(&self) -> std::str::Split<'_, char> {
        levels(&self.0)
    }

    /// Whether the name starts with `$` (e.g. `$SYS/…`): such a topic is not matched by a
    /// filter whose first level is a wildcard.
    pub fn is_dollar(&self) -> bool {
        starts_with_dollar(&self.0)
    }
}

/// A subscription's topic filter: non-empty, at most [`MAX_TOPIC_LEN`] bytes, no U+0000,
/// `+` only as a whole level and `#` only as the whole last level. Cheap to clone.
///
/// `$share/GROUP/FILTER` is syntactically a valid filter too; use [`Subscription::parse`]
/// where shared subscriptions are understood (MQTT 5).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(Arc<str>);

impl TopicFilter {
    /// Validates `filter` as a topic filter.
    pub fn new(filter: &str) -> Result<Self, TopicError> {
        Self::validate(filter)?;
        Ok(Self(Arc::from(filter)))
    }

    /// Checks `filter` against the rules of a topic filter without allocating.
    pub fn validate(filter: &str) -> Result<(), TopicError> {
        check_common(filter)?;
        let mut levels = levels(filter).enumerate().peekable();
        while let Some((index, level)) = levels.next() {
            let is_last = levels.peek().is_none();
            if level.contains('#') && (level != MULTI_LEVEL_WILDCARD || !is_last) {
                return Err(TopicError::MultiLevelWildcardNotLast {
                    level: index,
                    text: level.to_owned(),
                });
            }
            if level.contains('+') && level != SINGLE_LEVEL_WILDCARD {
                return Err(TopicError::SingleLevelWildcardNotAlone {
                    level: index,
                    text: level.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// The filter as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The levels of the filter, in order.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        levels(&self.0)
    }

    /// Whether the filter holds a wildcard (`+` or `#`) and so may match several topics.
    pub fn has_wildcards(&self) -> bool {
        self.levels().any(|l| l == SINGLE_LEVEL_WILDCARD || l == MULTI_LEVEL_WILDCARD)
    }

    /// Whether `topic` matches this filter (MQTT §4.7, including the `$` rule).
    pub fn matches(&self, topic: &TopicName) -> bool {
        matches(&self.0, &topic.0)
    }
}

impl From<TopicName> for TopicFilter {
    /// A topic name is a filter that matches exactly itself.
    fn from(name: TopicName) -> Self {
        Self(name.0)
    }
}

/// An MQTT 5 shared subscription, `$share/GROUP/FILTER` (MQTT 5.0 §4.8.2): the
/// subscribers of one group share the messages matching `filter`, each message going to
/// one of them.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SharedFilter {
    /// The share name: non-empty, without `/`, `+` or `#`.
    pub group: Arc<str>,
    /// The filter the group subscribes to.
    pub filter: TopicFilter,
}

impl SharedFilter {
    /// Parses `$share/GROUP/FILTER`.
    pub fn parse(s: &str) -> Result<Self, SharedFilterError> {
        check_common(s)?;
        let rest = s.strip_prefix(SHARE_PREFIX).ok_or(SharedFilterError::NotShared)?;
        let (group, filter) = match rest.split_once(SEPARATOR) {
            Some(parts) => parts,
            None if rest.is_empty() => return Err(SharedFilterError::EmptyGroup),
            None => return Err(SharedFilterError::MissingFilter { group: rest.to_owned() }),
        };
        if group.is_empty() {
            return Err(SharedFilterError::EmptyGroup);
        }
        if let Some(wildcard) = group.chars().find(|c| matches!(c, '+' | '#')) {
            return Err(SharedFilterError::WildcardInGroup {
                group: group.to_owned(),
                wildcard,
            });
        }
        Ok(Self {
            group: Arc::from(group),
            filter: TopicFilter::new(filter)?,
        })
    }
}

/// What a subscribe request asks for: a plain filter or a shared one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subscription {
    /// A subscription of this session alone.
    Plain(TopicFilter),
    /// A shared subscription: one member of the group gets each message.
    Shared(SharedFilter),
}

impl Subscription {
    /// Parses a subscription filter the MQTT 5 way: a string starting with `$share/` is a
    /// shared subscription and must be one; anything else is a plain filter. (MQTT 3.1.1
    /// has no shared subscriptions: an adapter that wants 3.1.1's reading uses
    /// [`TopicFilter::new`] directly.)
    pub fn parse(s: &str) -> Result<Self, SharedFilterError> {
        if s.starts_with(SHARE_PREFIX) {
            Ok(Self::Shared(SharedFilter::parse(s)?))
        } else {
            Ok(Self::Plain(TopicFilter::new(s)?))
        }
    }

    /// The filter messages are matched against, shared or not.
    pub fn filter(&self) -> &TopicFilter {
        match self {
            Self::Plain(filter) => filter,
            Self::Shared(shared) => &shared.filter,
        }
    }
}

/// Whether the topic `topic` matches the filter `filter`, exactly as MQTT 3.1.1 §4.7 and
/// MQTT 5.0 §4.7 say:
///
/// * levels are compared one by one, byte for byte (case matters);
/// * `+` matches exactly one level, which may be empty;
/// * `#` matches the rest of the topic, including nothing at all (`sport/#` matches
///   `sport`);
/// * a topic starting with `$` is not matched by a filter whose first level is `+` or `#`.
///
/// Meant for valid names and filters; on anything else it returns an answer without
/// panicking. It is the simple reference implementation: routing uses
/// [`crate::tree::SubscriptionTree`], which gives the same answers without visiting every
/// filter.
pub fn matches(filter: &str, topic: &str) -> bool {
    let mut filter_levels = levels(filter);
    let mut topic_levels = levels(topic);
    if starts_with_dollar(topic) {
        let first = levels(filter).next();
        if first == Some(SINGLE_LEVEL_WILDCARD) || first == Some(MULTI_LEVEL_WILDCARD) {
            return false;
        }
    }
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some(MULTI_LEVEL_WILDCARD), _) => return true,
            (Some(SINGLE_LEVEL_WILDCARD), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

macro_rules! string_newtype_impls {
    ($ty:ident) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $ty {
            type Err = TopicError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = TopicError;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = TopicError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::validate(&s)?;
                Ok(Self(Arc::from(s)))
            }
        }
    };
}

string_newtype_impls!(TopicName);
string_newtype_impls!(TopicFilter);

impl fmt::Display for SharedFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SHARE_PREFIX}{}/{}", self.group, self.filter)
    }
}

impl fmt::Debug for SharedFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

impl FromStr for SharedFilter {
    type Err = SharedFilterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(filter: &str, topic: &str) -> bool {
        // Every example is valid: check that too, so a typo cannot pass silently.
        assert!(TopicFilter::new(filter).is_ok(), "invalid filter {filter:?}");
        assert!(TopicName::new(topic).is_ok(), "invalid topic {topic:?}");
        matches(filter, topic)
    }

    #[test]
    fn multi_level_wildcard_spec_examples() {
        // MQTT 5.0 §4.7.1.2
        assert!(m("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(m("sport/tennis/player1/#", "sport/tennis/player1/ranking"));
        assert!(m("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon"));
        assert!(m("sport/#", "sport"));
        assert!(TopicFilter::new("#").is_ok());
        assert!(TopicFilter::new("sport/tennis/#").is_ok());
        assert!(matches!(
            TopicFilter::new("sport/tennis#"),
            Err(TopicError::MultiLevelWildcardNotLast { level: 1, .. })
        ));
        assert!(matches!(
            TopicFilter::new("sport/tennis/#/ranking"),
            Err(TopicError::MultiLevelWildcardNotLast { level: 2, .. })
        ));
        assert!(m("#", "sport/tennis"));
        assert!(!m("sport/tennis/player1/#", "sport/tennis"));
        assert!(!m("sport/tennis/player1/#", "sport/tennis/player2"));
    }

    #[test]
    fn single_level_wildcard_spec_examples() {
        // MQTT 5.0 §4.7.1.3
        assert!(m("sport/tennis/+", "sport/tennis/player1"));
        assert!(m("sport/tennis/+", "sport/tennis/player2"));
        assert!(!m("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!m("sport/+", "sport"));
        assert!(m("sport/+", "sport/"));
        assert!(TopicFilter::new("+").is_ok());
        assert!(TopicFilter::new("+/tennis/#").is_ok());
        assert!(TopicFilter::new("sport/+/player1").is_ok());
        assert!(matches!(
            TopicFilter::new("sport+"),
            Err(TopicError::SingleLevelWildcardNotAlone { level: 0, .. })
        ));
        assert!(m("sport/+/player1", "sport/tennis/player1"));
        assert!(m("sport/+/player1", "sport//player1"));
        // "/finance" has an empty first level.
        assert!(m("+/+", "/finance"));
        assert!(m("/+", "/finance"));
        assert!(!m("+", "/finance"));
    }

    #[test]
    fn dollar_topics_spec_examples() {
        // MQTT 5.0 §4.7.2
        assert!(!m("#", "$SYS/monitor/Clients"));
        assert!(!m("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(m("$SYS/#", "$SYS/monitor/Clients"));
        assert!(m("$SYS/monitor/+", "$SYS/monitor/Clients"));
        assert!(!m("+", "$SYS"));
        assert!(m("$SYS", "$SYS"));
        assert!(m("$SYS/#", "$SYS"));
        // The rule is about the first level only.
        assert!(m("a/+", "a/$b"));
        assert!(m("a/#", "a/$b"));
        assert!(!m("+/#", "$a/b"));
    }

    #[test]
    fn topic_semantics_spec_examples() {
        // MQTT 5.0 §4.7.3
        assert!(!m("ACCOUNTS", "Accounts"));
        assert!(m("Accounts payable", "Accounts payable"));
        assert!(m("/", "/"));
        assert!(m("+/+", "/"));
        assert!(m("#", "/"));
        assert!(!m("+", "/"));
        assert!(!m("finance", "/finance"));
        assert!(!m("finance", "finance/"));
        assert!(m("finance/#", "finance/"));
    }

    #[test]
    fn topic_names() {
        assert_eq!(TopicName::new(""), Err(TopicError::Empty));
        assert_eq!(TopicName::new("a\0b"), Err(TopicError::NullCharacter));
        assert_eq!(TopicName::new("a/+"), Err(TopicError::WildcardInName { wildcard: '+' }));
        assert_eq!(TopicName::new("a#"), Err(TopicError::WildcardInName { wildcard: '#' }));
        assert!(TopicName::new("/").is_ok());
        assert!(TopicName::new("$SYS/x").is_ok_and(|t| t.is_dollar()));
        assert!(TopicName::new("a/b").is_ok_and(|t| !t.is_dollar() && t.levels().eq(["a", "b"])));
        // U+0000 outranks a wildcard wherever it is; multi-byte characters pass.
        assert_eq!(TopicName::new("a+\0"), Err(TopicError::NullCharacter));
        assert_eq!(TopicName::new("é/#/+"), Err(TopicError::WildcardInName { wildcard: '#' }));
        assert!(TopicName::new("größe/温度/🌡").is_ok_and(|t| t.level_count() == 3));
        assert!(TopicName::new("/").is_ok_and(|t| t.level_count() == 2));
        let max = "a".repeat(MAX_TOPIC_LEN);
        assert!(TopicName::new(&max).is_ok());
        assert_eq!(
            TopicName::new(&format!("{max}b")),
            Err(TopicError::TooLong { len: MAX_TOPIC_LEN + 1 })
        );
        // Multi-byte characters count in bytes.
        assert!(TopicName::new(&"é".repeat(MAX_TOPIC_LEN / 2 + 1)).is_err());
        assert_eq!(
            TopicName::try_from(String::from("x/y")).map(|t| t.to_string()),
            Ok("x/y".to_owned())
        );
    }

    #[test]
    fn topic_filters() {
        assert_eq!(TopicFilter::new(""), Err(TopicError::Empty));
        assert_eq!(TopicFilter::new("a/\0"), Err(TopicError::NullCharacter));
        for ok in ["#", "+", "/", "+/+", "a/+/b", "a//#", "/#", "+/#", "$SYS/#", "a/b c/d"] {
            assert!(TopicFilter::new(ok).is_ok(), "{ok}");
        }
        for bad in ["sport+", "sport#", "a/#/b", "#/", "##", "++", "a/+b", "a/b#", "#/#"] {
            assert!(TopicFilter::new(bad).is_err(), "{bad}");
        }
        assert_eq!(
            TopicFilter::new("a/+x"),
            Err(TopicError::SingleLevelWildcardNotAlone {
                level: 1,
                text: "+x".to_owned()
            })
        );
        assert!(TopicFilter::new("a/+").is_ok_and(|f| f.has_wildcards()));
        assert!(TopicFilter::new("a/b").is_ok_and(|f| !f.has_wildcards()));
        let name = TopicName::new("a/b").unwrap();
        assert_eq!(TopicFilter::from(name.clone()).as_str(), "a/b");
        assert!(TopicFilter::new("a/#").is_ok_and(|f| f.matches(&name)));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = TopicFilter::new("a/#/b").unwrap_err().to_string();
        assert!(e.contains("'#'") && e.contains("last"), "{e}");
        let e = TopicName::new("a/+").unwrap_err().to_string();
        assert!(e.contains("'+'"), "{e}");
        let e = SharedFilter::parse("$share/g+/x").unwrap_err().to_string();
        assert!(e.contains("g+"), "{e}");
    }

    #[test]
    fn shared_filters() {
        let s = SharedFilter::parse("$share/group1/sport/+/player1").unwrap();
        assert_eq!(&*s.group, "group1");
        assert_eq!(s.filter.as_str(), "sport/+/player1");
        assert_eq!(s.to_string(), "$share/group1/sport/+/player1");
        assert_eq!(SharedFilter::parse("$share/g/#").map(|s| s.filter.to_string()), Ok("#".to_owned()));
        assert_eq!(SharedFilter::parse("$share/g//").map(|s| s.filter.to_string()), Ok("/".to_owned()));
        assert_eq!(SharedFilter::parse("sport/#"), Err(SharedFilterError::NotShared));
        assert_eq!(SharedFilter::parse("$share//a"), Err(SharedFilterError::EmptyGroup));
        assert_eq!(SharedFilter::parse("$share/"), Err(SharedFilterError::EmptyGroup));
        assert_eq!(
            SharedFilter::parse("$share/g"),
            Err(SharedFilterError::MissingFilter { group: "g".to_owned() })
        );
        assert_eq!(SharedFilter::parse("$share/g/"), Err(SharedFilterError::Filter(TopicError::Empty)));
        assert!(matches!(
            SharedFilter::parse("$share/#/a"),
            Err(SharedFilterError::WildcardInGroup { wildcard: '#', .. })
        ));
        assert!(matches!(
            SharedFilter::parse("$share/a+/a"),
            Err(SharedFilterError::WildcardInGroup { wildcard: '+', .. })
        ));
        assert!(matches!(
            SharedFilter::parse("$share/g/a/#/b"),
            Err(SharedFilterError::Filter(TopicError::MultiLevelWildcardNotLast { .. }))
        ));
        assert_eq!(
            SharedFilter::parse("$share/g/\0"),
            Err(SharedFilterError::Filter(TopicError::NullCharacter))
        );

        assert!(matches!(Subscription::parse("$share/g/a"), Ok(Subscription::Shared(_))));
        assert!(matches!(Subscription::parse("$share"), Ok(Subscription::Plain(_))));
        assert!(matches!(Subscription::parse("$sharex/g/a"), Ok(Subscription::Plain(_))));
        assert!(Subscription::parse("$share/g").is_err());
        assert_eq!(Subscription::parse("a/+").map(|s| s.filter().to_string()), Ok("a/+".to_owned()));
    }

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        /// Parsing never panics, and what it accepts obeys the level rules.
        #[test]
        fn filter_validation_is_sound(s in "[a$+#/\\x00]{0,8}") {
            match TopicFilter::new(&s) {
                Ok(f) => {
                    let levels: Vec<&str> = f.levels().collect();
                    prop_assert!(!s.contains('\0'));
                    for (i, level) in levels.iter().enumerate() {
                        prop_assert!(!level.contains('#') || (*level == "#" && i + 1 == levels.len()));
                        prop_assert!(!level.contains('+') || *level == "+");
                    }
                }
                Err(_) => {
                    let levels: Vec<&str> = s.split('/').collect();
                    let ok = !s.is_empty() && !s.contains('\0') && levels.iter().enumerate().all(|(i, l)| {
                        (!l.contains('#') || (*l == "#" && i + 1 == levels.len())) && (!l.contains('+') || *l == "+")
                    });
                    prop_assert!(!ok, "{s:?} refused");
                }
            }
            let _ = SharedFilter::parse(&s);
            let _ = Subscription::parse(&s);
        }

        /// A topic name is valid exactly when it is non-empty and has no NUL, `+` or `#`;
        /// and as a filter it matches exactly itself.
        #[test]
        fn name_validation_and_self_match(s in "[a$+#/\\x00]{0,8}") {
            let ok = !s.is_empty() && !s.contains(['\0', '+', '#']);
            prop_assert_eq!(TopicName::new(&s).is_ok(), ok);
            if ok {
                prop_assert!(matches(&s, &s));
            }
        }
    }
}
