//! Retained messages: the last message kept per topic, handed to each new subscription
//! whose filter matches.
//!
//! [`RetainedStore`] is the interface, object-safe so the router can hold an
//! `Arc<dyn RetainedStore<M>>` (it is called inside `Router::publish`). Durability is
//! the router's [`Journal`](crate::journal::Journal), not the store's business.
//! [`MemoryRetained`] keeps everything in memory, in a trie of topic levels: finding the
//! messages that match `a/+/c` follows `a`, then every child of `a`, then `c`, without
//! looking at topics elsewhere in the tree.
//!
//! What MQTT says about *when* to retain (a retained PUBLISH with an empty payload
//! deletes; QoS and retain-as-published on delivery) is the router's business: this
//! module only stores.

use crate::compact_map::CompactMap;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use foldhash::fast::RandomState;
use parking_lot::RwLock;
use tracing::debug;

use crate::topic::{TopicFilter, TopicName, MULTI_LEVEL_WILDCARD, SEPARATOR, SINGLE_LEVEL_WILDCARD};

/// A message type that knows its size in bytes, for the store's byte accounting and its
/// limits.
pub trait Weighed {
    /// The bytes this message accounts for (its payload, plus whatever else the
    /// implementor wants counted).
    fn weight(&self) -> usize;
}

impl Weighed for Bytes {
    fn weight(&self) -> usize {
        self.len()
    }
}

impl Weighed for Vec<u8> {
    fn weight(&self) -> usize {
        self.len()
    }
}

impl Weighed for String {
    fn weight(&self) -> usize {
        self.len()
    }
}

impl<T: Weighed + ?Sized> Weighed for std::sync::Arc<T> {
    fn weight(&self) -> usize {
        (**self).weight()
    }
}

/// Where retained messages are kept: at most one message per topic.
///
/// Methods take `&self`: an implementation does its own locking. The callback of
/// [`for_each_matching`](Self::for_each_matching) may run while the store holds a lock:
/// it must not call back into the store.
pub trait RetainedStore<M>: Send + Sync {
    /// Keeps `message` as the retained message of `topic`, replacing (and returning) the
    /// one kept before. A store with limits does not keep a message on a new topic beyond
    /// them (see [`RetainedStore::try_set`] to tell).
    fn set(&self, topic: TopicName, message: M) -> Option<M>;

    /// Like [`RetainedStore::set`], but says when `message` was not kept because it is on
    /// a new topic and the store is at its limits. Replacing the message of a topic
    /// already retained always succeeds. The default (a store without limits) never
    /// refuses.
    fn try_set(&self, topic: TopicName, message: M) -> Result<Option<M>, RetainedFull> {
        Ok(self.set(topic, message))
    }

    /// Forgets the retained message of `topic`, returning it if there was one.
    fn remove(&self, topic: &TopicName) -> Option<M>;

    /// A copy of the retained message of `topic`, if any.
    fn get(&self, topic: &TopicName) -> Option<M>
    where
        M: Clone;

    /// Calls `f` with every retained message whose topic matches `filter` (MQTT §4.7,
    /// including the `$` rule), in no particular order.
    fn for_each_matching(&self, filter: &TopicFilter, f: &mut dyn FnMut(&TopicName, &M));

    /// Calls `f` with every retained message, `$` topics included (for a snapshot). The
    /// same locking rule as [`for_each_matching`](Self::for_each_matching) holds. The
    /// default visits what `#` matches (no `$` topics).
    fn for_each(&self, f: &mut dyn FnMut(&TopicName, &M)) {
        if let Ok(all) = TopicFilter::new("#") {
            self.for_each_matching(&all, f);
        }
    }

    /// The retained messages matching `filter`, copied out (cheap when `M` is an `Arc` or
    /// `Bytes`): what a new subscription is sent, without holding any lock while sending.
    fn matching(&self, filter: &TopicFilter) -> Vec<(TopicName, M)>
    where
        M: Clone,
    {
        let mut out = Vec::new();
        self.for_each_matching(filter, &mut |topic, message| out.push((topic.clone(), message.clone())));
        out
    }

    /// The number of retained messages.
    fn len(&self) -> usize;

    /// Whether no message is retained.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes held: for every retained message, its topic's length plus its
    /// [`Weighed::weight`]. For limits and metrics.
    fn total_bytes(&self) -> usize;
}

/// A retained message on a new topic was not kept: the store holds its maximum number of
/// messages or bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("retained store full ({messages} messages, {bytes} bytes)")]
pub struct RetainedFull {
    /// Messages held when the new one was refused.
    pub messages: usize,
    /// Bytes held (topics and weights) when the new one was refused.
    pub bytes: usize,
}

/// Index of a node in the arena.
type NodeId = usize;

/// The root: the node before the first level. Never freed, never holds a message.
const ROOT: NodeId = 0;

/// One topic level.
#[derive(Debug)]
struct Node<M> {
    /// Children by level (which may be the empty string).
    children: CompactMap<Box<str>, NodeId, RandomState>,
    /// The message retained on the topic that ends here.
    message: Option<Entry<M>>,
}

/// A retained message with its topic, and the bytes it was counted for when stored (so
/// the accounting stays exact even if a message's weight could change).
#[derive(Debug)]
struct Entry<M> {
    topic: TopicName,
    message: M,
    bytes: usize,
}

impl<M> Node<M> {
    fn new() -> Self {
        Self {
            children: CompactMap::default(),
            message: None,
        }
    }
}

/// The trie, behind the lock.
#[derive(Debug)]
struct Trie<M> {
    nodes: Vec<Node<M>>,
    free: Vec<NodeId>,
    len: usize,
    bytes: usize,
}

/// Work left while matching a filter.
enum Step<'f> {
    /// Match the filter levels `rest` (None: all consumed) from this node.
    Match(NodeId, Option<&'f str>),
    /// Every message at and below this node matches (a `#` was reached).
    All(NodeId),
}

/// Splits the first level off `rest`.
fn split_level(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once(SEPARATOR) {
        Some((level, rest)) => (level, Some(rest)),
        None => (rest, None),
    }
}

impl<M: Weighed> Trie<M> {
    fn new() -> Self {
        Self {
            nodes: vec![Node::new()],
            free: Vec::new(),
            len: 0,
            bytes: 0,
        }
    }

    fn find(&self, topic: &TopicName) -> Option<NodeId> {
        topic
            .levels()
            .try_fold(ROOT, |id, level| self.nodes[id].children.get(level).copied())
    }

    /// Whether `topic` holds a message.
    fn holds(&self, topic: &TopicName) -> bool {
        self.find(topic).is_some_and(|id| self.nodes[id].message.is_some())
    }

    fn set(&mut self, topic: TopicName, message: M) -> Option<M> {
        let mut id = ROOT;
        for level in topic.levels() {
            id = match self.nodes[id].children.get(level) {
                Some(&child) => child,
                None => {
                    let child = self.alloc();
                    self.nodes[id].children.insert(level.into(), child);
                    child
                }
            };
        }
        let bytes = topic.as_str().len().saturating_add(message.weight());
        self.bytes = self.bytes.saturating_add(bytes);
        self.len += 1;
        let old = self.nodes[id].message.replace(Entry { topic, message, bytes });
        old.map(|old| self.forget(old))
    }

    fn remove(&mut self, topic: &TopicName) -> Option<M> {
        let mut path = Vec::new();
        let mut id = ROOT;
        for level in topic.levels() {
            path.push((id, level));
            id = *self.nodes[id].children.get(level)?;
        }
        let old = self.nodes[id].message.take()?;
        // Prune the nodes left with neither a message nor children.
        while id != ROOT && self.nodes[id].message.is_none() && self.nodes[id].children.is_empty() {
            let Some((parent, level)) = path.pop() else { break };
            self.nodes[parent].children.remove(level);
            self.nodes[id] = Node::new();
            self.free.push(id);
            id = parent;
        }
        Some(self.forget(old))
    }

    /// Takes a message that left the store out of the counts.
    fn forget(&mut self, entry: Entry<M>) -> M {
        self.len -= 1;
        self.bytes -= entry.bytes;
        entry.message
    }

    fn for_each_matching(&self, filter: &TopicFilter, f: &mut dyn FnMut(&TopicName, &M)) {
        let mut pending = vec![Step::Match(ROOT, Some(filter.as_str()))];
        while let Some(step) = pending.pop() {
            match step {
                Step::Match(id, None) => {
                    if let Some(entry) = &self.nodes[id].message {
                        f(&entry.topic, &entry.message);
                    }
                }
                Step::Match(id, Some(rest)) => {
                    let node = &self.nodes[id];
                    let (level, next) = split_level(rest);
                    if level == MULTI_LEVEL_WILDCARD || level == SINGLE_LEVEL_WILDCARD {
                        // At the root, wildcards skip the `$` topics.
                        let visible = node.children.iter().filter(|(l, _)| id != ROOT || !l.starts_with('$'));
                        if level == MULTI_LEVEL_WILDCARD {
                            // `#` matches the parent level too: `a/#` matches `a`.
                            if let Some(entry) = &node.message {
                                f(&entry.topic, &entry.message);
                            }
                            pending.extend(visible.map(|(_, &child)| Step::All(child)));
                        } else {
                            pending.extend(visible.map(|(_, &child)| Step::Match(child, next)));
                        }
                    } else if let Some(&child) = node.children.get(level) {
                        pending.push(Step::Match(child, next));
                    }
                }
                Step::All(id) => {
                    let node = &self.nodes[id];
                    if let Some(entry) = &node.message {
                        f(&entry.topic, &entry.message);
                    }
                    pending.extend(node.children.values().map(|&child| Step::All(child)));
                }
            }
        }
    }

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

/// The in-memory [`RetainedStore`]: a trie of topic levels behind a read-write lock
/// (readers match in parallel; a `set` or `remove` takes the lock briefly).
#[derive(Debug)]
pub struct MemoryRetained<M> {
    trie: RwLock<Trie<M>>,
    /// Most messages kept; 0: no limit.
    max_messages: usize,
    /// Most bytes kept (topics and weights, as [`RetainedStore::total_bytes`]); 0: no limit.
    max_bytes: u64,
    /// Messages on new topics not kept because of the limits.
    refused: AtomicU64,
}

impl<M: Weighed> MemoryRetained<M> {
    /// An empty store without limits.
    pub fn new() -> Self {
        Self::with_limits(0, 0)
    }

    /// An empty store keeping at most `max_messages` messages and `max_bytes` bytes (the
    /// topics' lengths plus the messages' [`Weighed::weight`]); 0 means no limit. A message
    /// on a new topic beyond either limit is not kept (counted in
    /// [`MemoryRetained::refused`]); replacing or deleting a retained message always works.
    pub fn with_limits(max_messages: usize, max_bytes: u64) -> Self {
        Self {
            trie: RwLock::new(Trie::new()),
            max_messages,
            max_bytes,
            refused: AtomicU64::new(0),
        }
    }

    /// Messages on new topics not kept because the store was at its limits.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Whether a new message of `bytes` bytes fits beside what `trie` holds.
    fn fits(&self, trie: &Trie<M>, bytes: usize) -> bool {
        let count_ok = self.max_messages == 0 || trie.len < self.max_messages;
        let total = u64::try_from(trie.bytes.saturating_add(bytes)).unwrap_or(u64::MAX);
        let bytes_ok = self.max_bytes == 0 || total <= self.max_bytes;
        count_ok && bytes_ok
    }
}

impl<M: Weighed> Default for MemoryRetained<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Weighed + Send + Sync> RetainedStore<M> for MemoryRetained<M> {
    fn set(&self, topic: TopicName, message: M) -> Option<M> {
        self.try_set(topic, message).ok().flatten()
    }

    fn try_set(&self, topic: TopicName, message: M) -> Result<Option<M>, RetainedFull> {
        let mut trie = self.trie.write();
        if (self.max_messages > 0 || self.max_bytes > 0) && !trie.holds(&topic) {
            let bytes = topic.as_str().len().saturating_add(message.weight());
            if !self.fits(&trie, bytes) {
                let full = RetainedFull {
                    messages: trie.len,
                    bytes: trie.bytes,
                };
                drop(trie);
                self.refused.fetch_add(1, Ordering::Relaxed);
                debug!(topic = topic.as_str(), held = %full, "retained message on a new topic not kept: store full");
                return Err(full);
            }
        }
        Ok(trie.set(topic, message))
    }

    fn remove(&self, topic: &TopicName) -> Option<M> {
        self.trie.write().remove(topic)
    }

    fn get(&self, topic: &TopicName) -> Option<M>
    where
        M: Clone,
    {
        let trie = self.trie.read();
        let id = trie.find(topic)?;
        trie.nodes[id].message.as_ref().map(|entry| entry.message.clone())
    }

    fn for_each_matching(&self, filter: &TopicFilter, f: &mut dyn FnMut(&TopicName, &M)) {
        self.trie.read().for_each_matching(filter, f)
    }

    fn for_each(&self, f: &mut dyn FnMut(&TopicName, &M)) {
        let trie = self.trie.read();
        for entry in trie.nodes.iter().filter_map(|n| n.message.as_ref()) {
            f(&entry.topic, &entry.message);
        }
    }

    fn len(&self) -> usize {
        self.trie.read().len
    }

    fn total_bytes(&self) -> usize {
        self.trie.read().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::matches;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn topic(s: &str) -> TopicName {
        TopicName::new(s).unwrap()
    }

    fn filter(s: &str) -> TopicFilter {
        TopicFilter::new(s).unwrap()
    }

    fn matched(store: &dyn RetainedStore<Bytes>, f: &str) -> Vec<String> {
        let mut out: Vec<String> = store.matching(&filter(f)).into_iter().map(|(t, _)| t.to_string()).collect();
        out.sort();
        out
    }

    #[test]
    fn limits_refuse_new_topics_only() {
        // Two messages, or 12 bytes (topic + payload): "a" + "xxxx" = 5 each.
        let store: MemoryRetained<Bytes> = MemoryRetained::with_limits(2, 0);
        assert_eq!(store.try_set(topic("a"), Bytes::from_static(b"1")), Ok(None));
        assert_eq!(store.try_set(topic("b"), Bytes::from_static(b"2")), Ok(None));
        let full = store.try_set(topic("c"), Bytes::from_static(b"3")).unwrap_err();
        assert_eq!(full.messages, 2);
        assert_eq!(store.set(topic("c"), Bytes::from_static(b"3")), None);
        assert_eq!((store.len(), store.refused()), (2, 2));
        // Replacing and deleting still work at the limit.
        assert_eq!(store.set(topic("a"), Bytes::from_static(b"one")), Some(Bytes::from_static(b"1")));
        assert!(store.remove(&topic("b")).is_some());
        assert_eq!(store.try_set(topic("c"), Bytes::from_static(b"3")), Ok(None));

        let store: MemoryRetained<Bytes> = MemoryRetained::with_limits(0, 12);
        assert!(store.try_set(topic("a"), Bytes::from_static(b"xxxx")).is_ok());
        assert!(store.try_set(topic("b"), Bytes::from_static(b"xxxx")).is_ok());
        assert!(store.try_set(topic("c"), Bytes::from_static(b"xxxx")).is_err());
        assert!(store.try_set(topic("c"), Bytes::from_static(b"x")).is_ok(), "12 bytes exactly fit");
        // A replacement may grow beyond the byte limit: the topic was already kept.
        assert!(store.try_set(topic("a"), Bytes::from_static(b"xxxxxxxxxx")).is_ok());
        assert_eq!((store.len(), store.total_bytes(), store.refused()), (3, 18, 1));

        let unlimited: MemoryRetained<Bytes> = MemoryRetained::default();
        for i in 0..100 {
            assert!(unlimited.try_set(topic(&format!("t/{i}")), Bytes::from_static(b"x")).is_ok());
        }
        assert_eq!(unlimited.refused(), 0);
    }

    #[test]
    fn set_get_remove_and_accounting() {
        let store: Arc<dyn RetainedStore<Bytes>> = Arc::new(MemoryRetained::new());
        assert!(store.is_empty());
        assert_eq!(store.set(topic("a/b"), Bytes::from_static(b"12345")), None);
        assert_eq!(store.total_bytes(), 3 + 5);
        assert_eq!(
            store.set(topic("a/b"), Bytes::from_static(b"1")),
            Some(Bytes::from_static(b"12345"))
        );
        assert_eq!(store.total_bytes(), 3 + 1);
        assert_eq!(store.set(topic("a"), Bytes::from_static(b"xy")), None);
        assert_eq!(store.len(), 2);
        assert_eq!(store.total_bytes(), 4 + 3);
        assert_eq!(store.get(&topic("a")), Some(Bytes::from_static(b"xy")));
        assert_eq!(store.get(&topic("a/c")), None);
        assert_eq!(store.remove(&topic("a/b/c")), None);
        assert_eq!(store.remove(&topic("a/b")), Some(Bytes::from_static(b"1")));
        assert_eq!(store.remove(&topic("a/b")), None);
        assert_eq!(
            store.get(&topic("a")),
            Some(Bytes::from_static(b"xy")),
            "an ancestor survives pruning"
        );
        assert_eq!(store.remove(&topic("a")), Some(Bytes::from_static(b"xy")));
        assert!(store.is_empty());
        assert_eq!(store.total_bytes(), 0);
    }

    #[test]
    fn pruning_frees_nodes() {
        let store = MemoryRetained::new();
        for i in 0..50 {
            store.set(topic(&format!("x/{i}/y/z")), Bytes::new());
        }
        for i in 0..50 {
            store.remove(&topic(&format!("x/{i}/y/z")));
        }
        let trie = store.trie.read();
        assert_eq!(trie.nodes.len() - trie.free.len(), 1);
    }

    #[test]
    fn wildcard_lookups() {
        let store = MemoryRetained::new();
        for t in [
            "sport",
            "sport/",
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "/finance",
            "$SYS/monitor/Clients",
            "$SYS",
        ] {
            store.set(topic(t), Bytes::from(t.to_owned()));
        }
        assert_eq!(
            matched(&store, "sport/#"),
            ["sport", "sport/", "sport/tennis/player1", "sport/tennis/player1/ranking"]
        );
        assert_eq!(matched(&store, "sport/+"), ["sport/"]);
        assert_eq!(matched(&store, "sport/tennis/+"), ["sport/tennis/player1"]);
        assert_eq!(matched(&store, "+/+"), ["/finance", "sport/"]);
        assert_eq!(matched(&store, "+"), ["sport"]);
        assert_eq!(
            matched(&store, "#"),
            [
                "/finance",
                "sport",
                "sport/",
                "sport/tennis/player1",
                "sport/tennis/player1/ranking"
            ]
        );
        assert_eq!(matched(&store, "$SYS/#"), ["$SYS", "$SYS/monitor/Clients"]);
        assert_eq!(matched(&store, "+/monitor/Clients"), Vec::<String>::new());
        assert_eq!(matched(&store, "$SYS/monitor/+"), ["$SYS/monitor/Clients"]);
        assert_eq!(matched(&store, "sport/tennis/player1"), ["sport/tennis/player1"]);
        assert_eq!(matched(&store, "nothing/#"), Vec::<String>::new());
    }

    #[test]
    fn deep_topics_do_not_overflow_the_stack() {
        let deep = "/".repeat(crate::topic::MAX_TOPIC_LEN);
        let store = MemoryRetained::new();
        store.set(topic(&deep), Bytes::new());
        assert_eq!(matched(&store, "#").len(), 1);
        assert_eq!(matched(&store, &deep).len(), 1);
        assert!(store.remove(&topic(&deep)).is_some());
        store.set(topic(&deep), Bytes::new());
        drop(store);
    }

    use crate::test_support::{filter_strategy, topic_strategy};

    #[derive(Debug, Clone)]
    enum Op {
        Set(String, Vec<u8>),
        Remove(String),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        let op = prop_oneof![
            3 => (topic_strategy(), prop::collection::vec(any::<u8>(), 0..4)).prop_map(|(t, m)| Op::Set(t, m)),
            1 => topic_strategy().prop_map(Op::Remove),
        ];
        prop::collection::vec(op, 0..40)
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
        fn store_agrees_with_naive_matching(ops in ops(), filters in prop::collection::vec(filter_strategy(), 1..12)) {
            let store: MemoryRetained<Vec<u8>> = MemoryRetained::new();
            let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            for op in &ops {
                match op {
                    Op::Set(t, m) => prop_assert_eq!(store.set(topic(t), m.clone()), model.insert(t.clone(), m.clone())),
                    Op::Remove(t) => prop_assert_eq!(store.remove(&topic(t)), model.remove(t)),
                }
            }
            prop_assert_eq!(store.len(), model.len());
            prop_assert_eq!(store.total_bytes(), model.iter().map(|(t, m)| t.len() + m.len()).sum::<usize>());
            for f in &filters {
                let mut got: Vec<(String, Vec<u8>)> = store.matching(&filter(f)).into_iter().map(|(t, m)| (t.to_string(), m)).collect();
                got.sort();
                let want: Vec<(String, Vec<u8>)> = model.iter().filter(|(t, _)| matches(f, t)).map(|(t, m)| (t.clone(), m.clone())).collect();
                prop_assert_eq!(got, want, "filter {:?}", f);
            }
            for t in model.keys() {
                prop_assert!(store.remove(&topic(t)).is_some());
            }
            let trie = store.trie.read();
            prop_assert_eq!(trie.nodes.len() - trie.free.len(), 1);
            prop_assert_eq!(trie.bytes, 0);
        }
    }
}
