//! Property-test strategies shared by the topic tree's and the retained store's tests.

use proptest::prelude::*;

/// Levels of a small alphabet, so that random filters and topics collide often; `$`
/// levels exercise the rule that leading wildcards do not match them.
const LEVELS: &[&str] = &["a", "b", "", "$sys", "$"];

/// Random topic names over [`LEVELS`].
pub(crate) fn topic_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(LEVELS), 1..5)
        .prop_map(|l| l.join("/"))
        .prop_filter("a topic is non-empty", |t| !t.is_empty())
}

/// Random valid filters over [`LEVELS`], `+` and a trailing `#`.
pub(crate) fn filter_strategy() -> impl Strategy<Value = String> {
    let level = prop_oneof![3 => prop::sample::select(LEVELS), 1 => Just("+")];
    (prop::collection::vec(level, 0..5), any::<bool>())
        .prop_map(|(mut l, hash)| {
            if hash || l.is_empty() {
                l.push("#");
            }
            l.join("/")
        })
        .prop_filter("a filter is non-empty", |f| !f.is_empty())
}
