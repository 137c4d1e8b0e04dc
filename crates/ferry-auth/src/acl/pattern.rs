//! ACL patterns: MQTT topic filters (or STOMP queue name patterns) that may hold `%u`
//! (user name) and `%c` (client id), and the two questions asked of them: does the pattern
//! *cover* a requested filter (every topic the filter matches, the pattern matches too), and
//! how *specific* is it.

use std::fmt;

use ferry_core::topic::{TopicFilter, MULTI_LEVEL_WILDCARD, SEPARATOR, SINGLE_LEVEL_WILDCARD};
use thiserror::Error;

/// What a pattern names: MQTT topics (STOMP `/topic/` destinations are checked after their
/// mapping to MQTT topics), or STOMP `/queue/` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// MQTT topics: levels separated by `/`, wildcards `+` (one level) and `#` (the rest),
    /// and `$` topics unmatched by a leading wildcard.
    Topic,
    /// STOMP queue names: words separated by `.`, wildcards `*` (one word) and `#` (the
    /// rest), as in RabbitMQ.
    Queue,
}

impl Namespace {
    fn separator(self) -> char {
        match self {
            Self::Topic => SEPARATOR,
            Self::Queue => '.',
        }
    }

    fn single_wildcard(self) -> &'static str {
        match self {
            Self::Topic => SINGLE_LEVEL_WILDCARD,
            Self::Queue => "*",
        }
    }

    /// Whether a substituted value (a user name or client id) could escape its level.
    fn value_is_safe(self, value: &str) -> bool {
        let forbidden: &[char] = match self {
            Self::Topic => &['/', '+', '#', '\0'],
            Self::Queue => &['.', '*', '#', '\0'],
        };
        !value.is_empty() && !value.contains(forbidden)
    }
}

/// Why a pattern is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PatternError {
    /// The pattern is empty.
    #[error("the pattern is empty")]
    Empty,
    /// With `%u`/`%c` taken as plain text, the pattern is not a valid MQTT topic filter.
    #[error("{0}")]
    Topic(#[from] ferry_core::TopicError),
    /// A queue pattern has a wildcard that is not a whole word, or `#` not last.
    #[error("'*' and '#' must be whole words of a queue pattern, and '#' the last one")]
    QueueWildcard,
    /// A `%` not followed by `u`, `c` or `%`.
    #[error("unknown substitution '%{0}': use %u (user name), %c (client id) or %% (a '%')")]
    UnknownSubstitution(String),
}

/// One piece of a level that holds substitutions.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Box<str>),
    User,
    Client,
}

/// One level of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// A literal level.
    Literal(Box<str>),
    /// A level with `%u` / `%c` in it.
    Template(Box<[Piece]>),
    /// `+` (topics) or `*` (queues).
    One,
    /// `#`: the rest, possibly nothing.
    Rest,
}

/// One level of what is asked for.
#[derive(Debug, Clone, Copy)]
enum Requested<'a> {
    Literal(&'a str),
    One,
    Rest,
}

/// The values `%u` and `%c` stand for. A value that is absent, empty or holds a separator or
/// wildcard of the namespace makes every pattern that uses it match nothing (so that a
/// client id `a/b` cannot reach into `devices/a/...`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Vars<'a> {
    /// The user name, if the client has one.
    pub username: Option<&'a str>,
    /// The client id.
    pub client_id: Option<&'a str>,
}

/// How specific a pattern is; greater is more specific. Compared in order: literal levels
/// before the first wildcard, literal levels in all, not ending with `#`, levels in all
/// (`%u`/`%c` levels count as literal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Specificity {
    literal_prefix: usize,
    literals: usize,
    bounded: bool,
    levels: usize,
}

/// A validated ACL pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    namespace: Namespace,
    segments: Box<[Segment]>,
    text: Box<str>,
    specificity: Specificity,
}

impl Pattern {
    /// A pattern taken literally (`topic` lines): `%` is an ordinary character.
    pub fn literal(namespace: Namespace, text: &str) -> Result<Self, PatternError> {
        Self::build(namespace, text, false)
    }

    /// A pattern with substitutions (`pattern` lines, token claims): `%u` is the user name,
    /// `%c` the client id, `%%` a `%`.
    pub fn with_substitutions(namespace: Namespace, text: &str) -> Result<Self, PatternError> {
        Self::build(namespace, text, true)
    }

    fn build(namespace: Namespace, text: &str, substitute: bool) -> Result<Self, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        let separator = namespace.separator();
        let single = namespace.single_wildcard();
        let words: Vec<&str> = text.split(separator).collect();
        let mut segments = Vec::with_capacity(words.len());
        for word in &words {
            let segment = if *word == single {
                Segment::One
            } else if *word == MULTI_LEVEL_WILDCARD {
                Segment::Rest
            } else if substitute && word.contains('%') {
                let pieces = parse_pieces(word)?;
                match pieces.as_slice() {
                    [] => Segment::Literal("".into()),
                    [Piece::Text(text)] => Segment::Literal(text.clone()),
                    _ => Segment::Template(pieces.into_boxed_slice()),
                }
            } else {
                Segment::Literal((*word).into())
            };
            segments.push(segment);
        }
        // Validate what the pattern is once the substitutions are filled in.
        let sample: Vec<String> = segments
            .iter()
            .map(|s| match s {
                Segment::Literal(text) => text.to_string(),
                Segment::Template(pieces) => pieces
                    .iter()
                    .map(|p| match p {
                        Piece::Text(text) => text,
                        Piece::User | Piece::Client => "x",
                    })
                    .collect(),
                Segment::One => single.to_owned(),
                Segment::Rest => MULTI_LEVEL_WILDCARD.to_owned(),
            })
            .collect();
        match namespace {
            Namespace::Topic => TopicFilter::validate(&sample.join("/"))?,
            Namespace::Queue => {
                let last = segments.len().saturating_sub(1);
                let bad = segments.iter().zip(&sample).enumerate().any(|(i, (segment, word))| match segment {
                    Segment::Rest => i != last,
                    Segment::One => false,
                    Segment::Literal(_) | Segment::Template(_) => word.contains(['*', '#', '\0']),
                });
                if bad {
                    return Err(PatternError::QueueWildcard);
                }
            }
        }
        let specificity = specificity(&segments);
        Ok(Self {
            namespace,
            segments: segments.into_boxed_slice(),
            text: text.into(),
            specificity,
        })
    }

    /// The namespace the pattern belongs to.
    pub fn namespace(&self) -> Namespace {
        self.namespace
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// How specific the pattern is.
    pub fn specificity(&self) -> Specificity {
        self.specificity
    }

    /// Whether the pattern uses `%u` or `%c`.
    pub fn has_substitutions(&self) -> bool {
        self.segments.iter().any(|s| matches!(s, Segment::Template(_)))
    }

    /// Whether every topic (or queue) the valid filter `requested` matches, the pattern
    /// matches too, with `vars` substituted. For a topic name (no wildcard) this is plain
    /// matching. Queue names are literal: `*` and `#` in them are ordinary words.
    pub fn covers(&self, requested: &str, vars: Vars<'_>) -> bool {
        let separator = self.namespace.separator();
        match self.namespace {
            Namespace::Topic => {
                let levels = requested.split(separator).map(|level| match level {
                    SINGLE_LEVEL_WILDCARD => Requested::One,
                    MULTI_LEVEL_WILDCARD => Requested::Rest,
                    _ => Requested::Literal(level),
                });
                covers(&self.segments, levels, requested.starts_with('$'), self.namespace, vars)
            }
            Namespace::Queue => covers(
                &self.segments,
                requested.split(separator).map(Requested::Literal),
                false,
                self.namespace,
                vars,
            ),
        }
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text, f)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_pieces(word: &str) -> Result<Vec<Piece>, PatternError> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            text.push(c);
            continue;
        }
        let var = match chars.next() {
            Some('u') => Piece::User,
            Some('c') => Piece::Client,
            Some('%') => {
                text.push('%');
                continue;
            }
            Some(other) => return Err(PatternError::UnknownSubstitution(other.to_string())),
            None => return Err(PatternError::UnknownSubstitution(String::new())),
        };
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text).into()));
        }
        pieces.push(var);
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text.into()));
    }
    Ok(pieces)
}

fn specificity(segments: &[Segment]) -> Specificity {
    let is_literal = |s: &Segment| matches!(s, Segment::Literal(_) | Segment::Template(_));
    Specificity {
        literal_prefix: segments.iter().take_while(|s| is_literal(s)).count(),
        literals: segments.iter().filter(|s| is_literal(s)).count(),
        bounded: !matches!(segments.last(), Some(Segment::Rest)),
        levels: segments.len(),
    }
}

/// Whether a template level, with `vars` filled in, is exactly `level`.
fn template_matches(pieces: &[Piece], level: &str, namespace: Namespace, vars: Vars<'_>) -> bool {
    let mut rest = level;
    for piece in pieces {
        let text = match piece {
            Piece::Text(text) => &**text,
            Piece::User | Piece::Client => {
                let value = if matches!(piece, Piece::User) {
                    vars.username
                } else {
                    vars.client_id
                };
                match value {
                    Some(value) if namespace.value_is_safe(value) => value,
                    _ => return false,
                }
            }
        };
        match rest.strip_prefix(text) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

/// The covering test, level by level. `dollar`: the request's first level is a literal
/// starting with `$`, which a leading wildcard of the pattern does not match.
fn covers<'a>(
    segments: &[Segment],
    mut requested: impl Iterator<Item = Requested<'a>>,
    dollar: bool,
    namespace: Namespace,
    vars: Vars<'_>,
) -> bool {
    // Whether the levels before `i` join into the empty string (no level yet, or one
    // empty level): then a requested `#` at `i` cannot match zero levels, since the empty
    // topic does not exist, and `+/#` covers it as well as `#` does.
    let mut prefix_empty = true;
    for i in 0.. {
        let segment = segments.get(i);
        let level = requested.next();
        match (segment, level) {
            // `#` matches whatever remains, even nothing (`a/#` matches `a`).
            (Some(Segment::Rest), _) => return !(i == 0 && dollar),
            (None, None) => return true,
            (None, Some(_)) | (Some(_), None) => return false,
            // The request's `#` matches the levels so far (unless they are the empty topic)
            // and any number of further levels; only `#` matches them all, or `+/#` when
            // the levels so far are the empty topic.
            (Some(segment), Some(Requested::Rest)) => {
                return prefix_empty && matches!(segment, Segment::One) && matches!(segments.get(i + 1..), Some([Segment::Rest]));
            }
            (Some(Segment::One), Some(Requested::One)) => {}
            (Some(Segment::One), Some(Requested::Literal(_))) => {
                if i == 0 && dollar {
                    return false;
                }
            }
            (Some(Segment::Literal(text)), Some(Requested::Literal(level))) => {
                if **text != *level {
                    return false;
                }
            }
            (Some(Segment::Template(pieces)), Some(Requested::Literal(level))) => {
                if !template_matches(pieces, level, namespace, vars) {
                    return false;
                }
            }
            (Some(Segment::Literal(_) | Segment::Template(_)), Some(Requested::One)) => return false,
        }
        prefix_empty = i == 0 && prefix_empty && level_is_empty(level);
    }
    false
}

fn level_is_empty(level: Option<Requested<'_>>) -> bool {
    matches!(level, Some(Requested::Literal("")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::topic::matches;
    use proptest::prelude::*;

    fn topic(text: &str) -> Pattern {
        Pattern::with_substitutions(Namespace::Topic, text).unwrap()
    }

    fn covers(pattern: &str, filter: &str) -> bool {
        assert!(TopicFilter::new(filter).is_ok(), "invalid filter {filter:?}");
        topic(pattern).covers(filter, Vars::default())
    }

    #[test]
    fn a_hash_after_an_empty_first_level_has_no_zero_level_case() {
        // Found by proptest: `/#` matches `/`, `/a`, … but not the empty topic, so `/+/#`
        // covers it, as `+/#` covers `#`.
        assert!(covers("/+/#", "/#"));
        assert!(covers("+/#", "#"));
        assert!(!covers("a/+/#", "a/#"), "`a/#` matches `a` itself, which `a/+/#` does not");
    }

    #[test]
    fn filters_covering_filters() {
        assert!(covers("sensors/#", "sensors/+/temp"));
        assert!(!covers("sensors/+/temp", "sensors/#"));
        assert!(covers("sensors/#", "sensors/#"));
        assert!(covers("sensors/#", "sensors"));
        assert!(!covers("sensors/+", "sensors/#"));
        assert!(covers("#", "#"));
        assert!(covers("+/#", "#"));
        assert!(!covers("+/+/#", "#"));
        assert!(!covers("a/+/#", "a/#"));
        assert!(covers("+/+", "a/+"));
        assert!(!covers("a/+", "+/+"));
        assert!(covers("a/b", "a/b"));
        assert!(!covers("a/b", "a/b/c"));
        assert!(!covers("a/b/c", "a/b"));
        assert!(covers("a/b/#", "a/b"));
        // `$` topics: a leading wildcard does not reach them, even through a filter.
        assert!(!covers("#", "$SYS/#"));
        assert!(!covers("+/x", "$SYS/x"));
        assert!(covers("$SYS/#", "$SYS/+/x"));
        assert!(covers("#", "a/$b"));
    }

    #[test]
    fn substitutions() {
        let p = topic("users/%u/%c-in/#");
        let vars = Vars {
            username: Some("alice"),
            client_id: Some("phone"),
        };
        assert!(p.has_substitutions());
        assert!(p.covers("users/alice/phone-in/x", vars));
        assert!(p.covers("users/alice/phone-in/#", vars));
        assert!(!p.covers("users/alice/+/x", vars));
        assert!(!p.covers("users/bob/phone-in/x", vars));
        assert!(!p.covers("users/alice/phone-inx", vars));
        // A value holding a separator or a wildcard matches nothing.
        for bad in ["a/b", "+", "#", ""] {
            let vars = Vars {
                username: Some(bad),
                client_id: Some("phone"),
            };
            assert!(!p.covers(&format!("users/{bad}/phone-in/x"), vars), "{bad:?}");
        }
        assert!(!p.covers("users/alice/phone-in/x", Vars::default()));
        // `%%` is a `%`; `topic` lines take `%u` literally.
        assert!(topic("rates/100%%").covers("rates/100%", Vars::default()));
        assert!(!topic("rates/100%%").has_substitutions());
        let literal = Pattern::literal(Namespace::Topic, "a/%u").unwrap();
        assert!(literal.covers("a/%u", vars) && !literal.covers("a/alice", vars));
        assert!(matches!(
            Pattern::with_substitutions(Namespace::Topic, "a/%x"),
            Err(PatternError::UnknownSubstitution(_))
        ));
        assert!(Pattern::with_substitutions(Namespace::Topic, "a/%").is_err());
        assert!(Pattern::with_substitutions(Namespace::Topic, "a/%u+").is_err());
        assert!(Pattern::with_substitutions(Namespace::Topic, "a/#/b").is_err());
        assert_eq!(Pattern::literal(Namespace::Topic, ""), Err(PatternError::Empty));
    }

    #[test]
    fn queue_patterns() {
        let q = |p: &str| Pattern::with_substitutions(Namespace::Queue, p).unwrap();
        let vars = Vars {
            username: Some("alice"),
            client_id: None,
        };
        assert!(q("jobs").covers("jobs", vars));
        assert!(!q("jobs").covers("jobs.eu", vars));
        assert!(q("jobs.*").covers("jobs.eu", vars));
        assert!(!q("jobs.*").covers("jobs", vars));
        assert!(q("jobs.#").covers("jobs", vars));
        assert!(q("jobs.#").covers("jobs.eu.de", vars));
        assert!(q("inbox.%u").covers("inbox.alice", vars));
        assert!(!q("inbox.%u").covers("inbox.bob", vars));
        // `/` is an ordinary character in queue names; `.` in a user name is not safe.
        assert!(q("a/b.*").covers("a/b.c", vars));
        let dotted = Vars {
            username: Some("john.doe"),
            client_id: None,
        };
        assert!(!q("inbox.%u").covers("inbox.john.doe", dotted));
        assert!(Pattern::literal(Namespace::Queue, "jobs.#.x").is_err());
        assert!(Pattern::literal(Namespace::Queue, "jobs*").is_err());
    }

    #[test]
    fn specificity_orders_as_documented() {
        let s = |p: &str| topic(p).specificity();
        assert!(s("a/b/c") > s("a/b/+"));
        assert!(s("a/b/+") > s("a/b/#"));
        assert!(s("a/b/#") > s("a/+/c"));
        assert!(s("a/+/c") > s("a/+/+"));
        assert!(s("a/+/+") > s("a/#"));
        assert!(s("a/+/#") > s("a/#"));
        assert!(s("+/b/c") > s("#"));
        assert!(s("a/%u") == s("a/b"));
    }

    /// The definition of covering, by brute force: every topic over a small alphabet that
    /// the filter matches, the pattern matches. Filters have at most 3 levels, so topics
    /// of up to 5 levels tell all cases apart; `c` stands for "any other word".
    fn covers_by_brute_force(pattern: &str, filter: &str) -> bool {
        static TOPICS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let topics = TOPICS.get_or_init(|| {
            let words = ["a", "b", "$a", "", "c"];
            let mut topics: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
            let mut layer = topics.clone();
            for _ in 1..5 {
                layer = layer.iter().flat_map(|t| words.iter().map(move |w| format!("{t}/{w}"))).collect();
                topics.extend(layer.iter().cloned());
            }
            topics.retain(|t| !t.is_empty());
            topics
        });
        topics.iter().all(|t| !matches(filter, t) || matches(pattern, t))
    }

    fn filter_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(vec!["a", "b", "$a", "", "+", "#"]), 1..=3)
            .prop_map(|levels| levels.join("/"))
            .prop_filter("valid filter", |f| TopicFilter::new(f).is_ok())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn covering_agrees_with_brute_force(pattern in filter_strategy(), filter in filter_strategy()) {
            let expected = covers_by_brute_force(&pattern, &filter);
            prop_assert_eq!(topic(&pattern).covers(&filter, Vars::default()), expected, "{} covers {}", pattern, filter);
        }

        #[test]
        fn covering_a_name_is_matching(pattern in filter_strategy(), name in "[ab$/]{1,6}") {
            prop_assume!(ferry_core::TopicName::new(&name).is_ok());
            prop_assert_eq!(topic(&pattern).covers(&name, Vars::default()), matches(&pattern, &name));
        }
    }
}
