//! The subscription tree: which subscriptions match a published topic, found without
//! scanning every subscription.
//!
//! A trie indexed by topic level. Each node has its exact-level children in a hash map,
//! one dedicated child for `+`, and two sets of subscriptions: those whose filter ends at
//! this node (`a/b`) and those whose filter is this node followed by `#` (`a/b/#`).
//! Matching `a/b/c` walks the levels once, following at each node the exact child, the
//! `+` child and collecting the `#` subscriptions, so its cost grows with the topic's
//! depth and the number of matches, never with the number of subscriptions.
//!
//! Nodes live in one arena (`Vec`) and refer to each other by index: no recursion
//! anywhere (not in matching, changing or dropping), so a filter 30,000 levels deep
//! cannot overflow a stack. Empty nodes are pruned on removal and their slots reused.
//!
//! The tree holds no lock: `&self` matches, `&mut self` changes. The router decides how
//! to share it.

use std::hash::Hash;

use foldhash::fast::RandomState;

use crate::compact_map::CompactMap;
use crate::topic::{TopicFilter, TopicName, MULTI_LEVEL_WILDCARD, SEPARATOR, SINGLE_LEVEL_WILDCARD};

/// Index of a node in the arena.
type NodeId = usize;

/// The root: the node before the first level. Never freed.
const ROOT: NodeId = 0;

/// One level of the trie.
#[derive(Debug)]
struct Node<K, V> {
    /// Children reached by an exact level (which may be the empty string).
    children: CompactMap<Box<str>, NodeId, RandomState>,
    /// The child reached by `+`.
    plus: Option<NodeId>,
    /// Subscriptions whose filter ends at this node.
    exact: CompactMap<K, V, RandomState>,
    /// Subscriptions whose filter is this node's path followed by `/#` (or `#` alone at
    /// the root).
    multi: CompactMap<K, V, RandomState>,
}

impl<K, V> Node<K, V> {
    fn new() -> Self {
        Self {
            children: CompactMap::default(),
            plus: None,
            exact: CompactMap::default(),
            multi: CompactMap::default(),
        }
    }

    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.plus.is_none() && self.exact.is_empty() && self.multi.is_empty()
    }
}

/// How a node is reached from its parent, remembered to prune on the way back up.
enum Edge<'a> {
    Exact(&'a str),
    Plus,
}

/// The last level of a filter, once the levels before it are nodes.
enum Tail {
    /// The filter ends at the node (`a/b`).
    Exact,
    /// The filter ends with `#` after the node (`a/b/#`).
    Multi,
}

/// Splits the first level off `rest`: `("a", Some("b/c"))` for `a/b/c`, `("c", None)`
/// for `c`.
fn split_level(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once(SEPARATOR) {
        Some((level, rest)) => (level, Some(rest)),
        None => (rest, None),
    }
}

/// The work list of a match: a stack that lives on the call stack while it is small
/// (each level adds at most two entries, and the walk is depth-first) and spills to the
/// heap beyond, so a typical publish allocates nothing.
struct Pending<'t> {
    inline: [(NodeId, Option<&'t str>); 16],
    len: usize,
    spill: Vec<(NodeId, Option<&'t str>)>,
}

impl<'t> Pending<'t> {
    fn new(first: (NodeId, Option<&'t str>)) -> Self {
        let mut inline = [(ROOT, None); 16];
        inline[0] = first;
        Self {
            inline,
            len: 1,
            spill: Vec::new(),
        }
    }

    fn push(&mut self, item: (NodeId, Option<&'t str>)) {
        match self.inline.get_mut(self.len) {
            Some(slot) => {
                *slot = item;
                self.len += 1;
            }
            None => self.spill.push(item),
        }
    }

    fn pop(&mut self) -> Option<(NodeId, Option<&'t str>)> {
        if let Some(item) = self.spill.pop() {
            return Some(item);
        }
        self.len = self.len.checked_sub(1)?;
        Some(self.inline[self.len])
    }
}

/// A set of subscriptions indexed by topic filter, to find the subscriptions that match
/// a published topic.
///
/// `K` identifies the subscriber (a session id, or a shared group and a session); `V` is
/// the subscription's data (its options). A subscriber has at most one subscription per
/// filter; it may have several filters that match the same topic, in which case
/// [`for_each_match`](Self::for_each_match) visits it once per matching filter.
#[derive(Debug)]
pub struct SubscriptionTree<K, V> {
    /// The arena; `nodes[ROOT]` is the root.
    nodes: Vec<Node<K, V>>,
    /// Slots of pruned nodes, reused before the arena grows.
    free: Vec<NodeId>,
    /// The number of subscriptions.
    len: usize,
}

impl<K, V> Default for SubscriptionTree<K, V> {
    fn default() -> Self {
        Self {
            nodes: vec![Node::new()],
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<K: Eq + Hash, V> SubscriptionTree<K, V> {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of subscriptions (pairs of filter and key).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the tree holds no subscription.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of live trie nodes, the root included: a measure of memory use (an empty
    /// tree has one).
    pub fn node_count(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    /// Subscribes `key` to `filter` with `value`. If `key` already had a subscription on
    /// this very filter, its value is replaced and the old one returned (MQTT: a
    /// SUBSCRIBE for an existing filter replaces the subscription).
    pub fn insert(&mut self, filter: &TopicFilter, key: K, value: V) -> Option<V> {
        let mut id = ROOT;
        let mut rest = Some(filter.as_str());
        let mut tail = Tail::Exact;
        while let Some(r) = rest {
            let (level, next) = split_level(r);
            if level == MULTI_LEVEL_WILDCARD {
                // A valid filter has `#` only as its last level.
                tail = Tail::Multi;
                break;
            }
            id = if level == SINGLE_LEVEL_WILDCARD {
                match self.nodes[id].plus {
                    Some(child) => child,
                    None => {
                        let child = self.alloc();
                        self.nodes[id].plus = Some(child);
                        child
                    }
                }
            } else {
                match self.nodes[id].children.get(level) {
                    Some(&child) => child,
                    None => {
                        let child = self.alloc();
                        self.nodes[id].children.insert(level.into(), child);
                        child
                    }
                }
            };
            rest = next;
        }
        let node = &mut self.nodes[id];
        let subs = match tail {
            Tail::Exact => &mut node.exact,
            Tail::Multi => &mut node.multi,
        };
        let old = subs.insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Unsubscribes `key` from `filter`, returning the subscription's value if there was
    /// one. Nodes left empty are pruned.
    pub fn remove(&mut self, filter: &TopicFilter, key: &K) -> Option<V> {
        let mut path: Vec<(NodeId, Edge<'_>)> = Vec::new();
        let (id, tail) = self.find(filter, Some(&mut path))?;
        let node = &mut self.nodes[id];
        let old = match tail {
            Tail::Exact => node.exact.remove(key),
            Tail::Multi => node.multi.remove(key),
        }?;
        self.len -= 1;
        self.prune(id, path);
        Some(old)
    }

    /// The value of `key`'s subscription to `filter`, if it has one.
    pub fn get(&self, filter: &TopicFilter, key: &K) -> Option<&V> {
        let (id, tail) = self.find(filter, None)?;
        let node = &self.nodes[id];
        match tail {
            Tail::Exact => node.exact.get(key),
            Tail::Multi => node.multi.get(key),
        }
    }

    /// The number of subscriptions (keys) on exactly `filter`.
    pub fn count(&self, filter: &TopicFilter) -> usize {
        let Some((id, tail)) = self.find(filter, None) else { return 0 };
        let node = &self.nodes[id];
        match tail {
            Tail::Exact => node.exact.len(),
            Tail::Multi => node.multi.len(),
        }
    }

    /// Calls `f` with every subscription whose filter matches `topic` (MQTT §4.7,
    /// including the rule that `+` or `#` as a filter's first level does not match a topic
    /// starting with `$`). A key with several matching filters is visited once per
    /// filter, in no particular order: deduplicating is the caller's job.
    pub fn for_each_match(&self, topic: &TopicName, mut f: impl FnMut(&K, &V)) {
        let topic = topic.as_str();
        let dollar = topic.starts_with('$');
        // (node, the topic levels still to match; None once all are consumed).
        let mut pending = Pending::new((ROOT, Some(topic)));
        while let Some((id, rest)) = pending.pop() {
            let node = &self.nodes[id];
            let Some(rest) = rest else {
                // All levels consumed: `a/b` and `a/b/#` both match `a/b`.
                node.exact.iter().chain(&node.multi).for_each(|(k, v)| f(k, v));
                continue;
            };
            let (level, next) = split_level(rest);
            let wildcards_apply = !(dollar && id == ROOT);
            if wildcards_apply {
                node.multi.iter().for_each(|(k, v)| f(k, v));
                if let Some(plus) = node.plus {
                    pending.push((plus, next));
                }
            }
            if let Some(&child) = node.children.get(level) {
                pending.push((child, next));
            }
        }
    }

    /// Visits every subscription, with its filter rebuilt from the path, for
    /// administration and tests (this one does scan the whole tree).
    pub fn for_each(&self, mut f: impl FnMut(&str, &K, &V)) {
        let mut pending: Vec<(NodeId, String)> = vec![(ROOT, String::new())];
        while let Some((id, path)) = pending.pop() {
            let node = &self.nodes[id];
            let join = |level: &str| {
                if id == ROOT {
                    level.to_owned()
                } else {
                    format!("{path}{SEPARATOR}{level}")
                }
            };
            if id != ROOT {
                node.exact.iter().for_each(|(k, v)| f(&path, k, v));
            }
            let multi = join(MULTI_LEVEL_WILDCARD);
            node.multi.iter().for_each(|(k, v)| f(&multi, k, v));
            if let Some(plus) = node.plus {
                pending.push((plus, join(SINGLE_LEVEL_WILDCARD)));
            }
            for (level, &child) in &node.children {
                pending.push((child, join(level)));
            }
        }
    }

    /// Finds the node where `filter` ends, recording the path when asked to.
    fn find<'f>(&self, filter: &'f TopicFilter, mut path: Option<&mut Vec<(NodeId, Edge<'f>)>>) -> Option<(NodeId, Tail)> {
        let mut id = ROOT;
        let mut rest = Some(filter.as_str());
        while let Some(r) = rest {
            let (level, next) = split_level(r);
            if level == MULTI_LEVEL_WILDCARD {
                return Some((id, Tail::Multi));
            }
            let (child, edge) = if level == SINGLE_LEVEL_WILDCARD {
                (self.nodes[id].plus?, Edge::Plus)
            } else {
                (*self.nodes[id].children.get(level)?, Edge::Exact(level))
            };
            if let Some(path) = path.as_deref_mut() {
                path.push((id, edge));
            }
            id = child;
            rest = next;
        }
        Some((id, Tail::Exact))
    }

    /// Frees `id` and its ancestors for as long as they are empty, `path` being the
    /// (parent, edge) pairs from the root down to `id`.
    fn prune(&mut self, mut id: NodeId, mut path: Vec<(NodeId, Edge<'_>)>) {
        while id != ROOT && self.nodes[id].is_empty() {
            let Some((parent, edge)) = path.pop() else { return };
            match edge {
                Edge::Plus => self.nodes[parent].plus = None,
                Edge::Exact(level) => {
                    self.nodes[parent].children.remove(level);
                }
            }
            // Replace rather than keep: drops the empty maps' allocations.
            self.nodes[id] = Node::new();
            self.free.push(id);
            id = parent;
        }
    }

    /// A fresh empty node, from the free list or at the end of the arena.
    fn alloc(&mut self) -> NodeId {
        match self.free.pop() {
            Some(id) => id,
            None => {
                self.nodes.push(Node::new());
                self.nodes.len() - 1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::matches;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn filter(s: &str) -> TopicFilter {
        TopicFilter::new(s).unwrap()
    }

    fn topic(s: &str) -> TopicName {
        TopicName::new(s).unwrap()
    }

    fn matched<V: Clone + Ord>(tree: &SubscriptionTree<u64, V>, t: &str) -> Vec<(u64, V)> {
        let mut out = Vec::new();
        tree.for_each_match(&topic(t), |k, v| out.push((*k, v.clone())));
        out.sort();
        out
    }

    #[test]
    fn insert_replace_remove() {
        let mut tree = SubscriptionTree::new();
        assert!(tree.is_empty());
        assert_eq!(tree.insert(&filter("a/b"), 1u64, "x"), None);
        assert_eq!(tree.insert(&filter("a/b"), 1, "y"), Some("x"));
        assert_eq!(tree.insert(&filter("a/b"), 2, "z"), None);
        assert_eq!(tree.insert(&filter("a/#"), 1, "w"), None);
        assert_eq!(tree.len(), 3);
        assert_eq!(tree.get(&filter("a/b"), &1), Some(&"y"));
        assert_eq!(tree.get(&filter("a/#"), &1), Some(&"w"));
        assert_eq!(tree.get(&filter("a/+"), &1), None);
        assert_eq!(matched(&tree, "a/b"), vec![(1, "w"), (1, "y"), (2, "z")]);
        assert_eq!(tree.remove(&filter("a/b"), &3), None);
        assert_eq!(tree.remove(&filter("a/+"), &1), None);
        assert_eq!(tree.remove(&filter("a/b"), &1), Some("y"));
        assert_eq!(tree.remove(&filter("a/b"), &1), None);
        assert_eq!(tree.len(), 2);
        assert_eq!(tree.remove(&filter("a/b"), &2), Some("z"));
        assert_eq!(tree.remove(&filter("a/#"), &1), Some("w"));
        assert!(tree.is_empty());
        assert_eq!(tree.node_count(), 1, "empty nodes are pruned");
    }

    #[test]
    fn spec_matching() {
        let mut tree = SubscriptionTree::new();
        let filters = [
            "sport/tennis/player1/#",
            "sport/#",
            "#",
            "sport/tennis/+",
            "sport/+",
            "+/+",
            "/+",
            "+",
            "$SYS/#",
            "$SYS/monitor/+",
            "+/monitor/Clients",
        ];
        for (i, f) in filters.iter().enumerate() {
            tree.insert(&filter(f), i as u64, *f);
        }
        let expect = |t: &str| {
            let mut v: Vec<(u64, &str)> = filters
                .iter()
                .enumerate()
                .filter(|(_, f)| matches(f, t))
                .map(|(i, f)| (i as u64, *f))
                .collect();
            v.sort();
            v
        };
        for t in [
            "sport",
            "sport/",
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "/finance",
            "$SYS/monitor/Clients",
            "$SYS",
            "a/monitor/Clients",
            "/",
        ] {
            assert_eq!(matched(&tree, t), expect(t), "{t}");
        }
        assert_eq!(matched(&tree, "$SYS/monitor/Clients"), vec![(8, "$SYS/#"), (9, "$SYS/monitor/+")]);
        assert_eq!(matched(&tree, "sport"), vec![(1, "sport/#"), (2, "#"), (7, "+")]);
        assert_eq!(matched(&tree, "$x"), vec![]);
    }

    #[test]
    fn for_each_lists_filters() {
        let mut tree = SubscriptionTree::new();
        for f in ["#", "a", "a/#", "+/b", "/", "a//+"] {
            tree.insert(&filter(f), 1u64, ());
        }
        let mut seen = Vec::new();
        tree.for_each(|f, _, _| seen.push(f.to_owned()));
        seen.sort();
        assert_eq!(seen, ["#", "+/b", "/", "a", "a/#", "a//+"]);
    }

    #[test]
    fn very_deep_filters_do_not_overflow_the_stack() {
        let deep = "/".repeat(crate::topic::MAX_TOPIC_LEN - 1) + "#";
        let mut tree = SubscriptionTree::new();
        tree.insert(&filter(&deep), 1u64, ());
        tree.insert(&filter(&"+/".repeat(30_000)), 2, ());
        assert_eq!(matched(&tree, &"/".repeat(crate::topic::MAX_TOPIC_LEN)), vec![(1, ())]);
        assert_eq!(tree.remove(&filter(&deep), &1), Some(()));
        drop(tree);
        let mut tree = SubscriptionTree::new();
        tree.insert(&filter(&deep), 1u64, ());
        drop(tree); // dropping a deep tree is not recursive either
    }

    #[test]
    fn node_slots_are_reused() {
        let mut tree = SubscriptionTree::new();
        for round in 0..3u64 {
            for i in 0..100u64 {
                tree.insert(&filter(&format!("a/{i}/+/#")), round, ());
            }
            for i in 0..100u64 {
                tree.remove(&filter(&format!("a/{i}/+/#")), &round);
            }
            assert_eq!(tree.node_count(), 1);
            assert!(tree.nodes.len() <= 202, "arena grew to {}", tree.nodes.len());
        }
    }

    // ---- property tests against the naive `matches` ----

    use crate::test_support::{filter_strategy, topic_strategy};

    #[derive(Debug, Clone)]
    enum Op {
        Insert(String, u8, u16),
        Remove(String, u8),
    }

    fn op_strategy(filters: Vec<String>) -> impl Strategy<Value = Op> {
        let f = prop::sample::select(filters);
        prop_oneof![
            3 => (f.clone(), 0..4u8, any::<u16>()).prop_map(|(f, k, v)| Op::Insert(f, k, v)),
            2 => (f, 0..4u8).prop_map(|(f, k)| Op::Remove(f, k)),
        ]
    }

    fn scenario() -> impl Strategy<Value = (Vec<Op>, Vec<String>)> {
        prop::collection::vec(filter_strategy(), 1..12).prop_flat_map(|filters| {
            (
                prop::collection::vec(op_strategy(filters), 0..60),
                prop::collection::vec(topic_strategy(), 1..12),
            )
        })
    }

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 400,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn tree_agrees_with_naive_matching((ops, topics) in scenario()) {
            let mut tree = SubscriptionTree::new();
            let mut model: BTreeMap<(String, u8), u16> = BTreeMap::new();
            for op in &ops {
                match op {
                    Op::Insert(f, k, v) => {
                        prop_assert_eq!(tree.insert(&filter(f), *k, *v), model.insert((f.clone(), *k), *v));
                    }
                    Op::Remove(f, k) => {
                        prop_assert_eq!(tree.remove(&filter(f), k), model.remove(&(f.clone(), *k)));
                    }
                }
                prop_assert_eq!(tree.len(), model.len());
            }
            for t in &topics {
                let mut got = Vec::new();
                tree.for_each_match(&topic(t), |k, v| got.push((*k, *v)));
                got.sort();
                let mut want: Vec<(u8, u16)> =
                    model.iter().filter(|((f, _), _)| matches(f, t)).map(|((_, k), v)| (*k, *v)).collect();
                want.sort();
                prop_assert_eq!(got, want, "topic {:?}", t);
            }
            let mut listed = Vec::new();
            tree.for_each(|f, k, v| listed.push(((f.to_owned(), *k), *v)));
            listed.sort();
            prop_assert_eq!(listed, model.clone().into_iter().collect::<Vec<_>>());
            for (f, k) in model.keys() {
                prop_assert!(tree.remove(&filter(f), k).is_some());
            }
            prop_assert!(tree.is_empty());
            prop_assert_eq!(tree.node_count(), 1);
        }
    }
}
