//! [`CompactMap`]: a map for the many small maps a broker keeps per connection and per
//! topic (a session's subscriptions, the subscribers at one node of the topic tree, a
//! node's children), most of which hold one entry or a few.
//!
//! A `HashMap` never holds fewer than four buckets, so one entry costs the room of four
//! plus the control bytes: about 300 bytes for a session's one subscription. Up to
//! [`FEW`] entries this map keeps a vector grown one slot at a time and searched
//! linearly (as fast as hashing for so few), and moves to a hash map beyond, so that a
//! topic with 100,000 subscribers is still indexed.

use std::borrow::Borrow;
use std::collections::hash_map;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// The most entries kept in the vector; one more moves the map to a hash map.
pub const FEW: usize = 8;

/// A map that is a right-sized vector while small and a hash map once large.
#[derive(Debug, Clone)]
pub enum CompactMap<K, V, S> {
    /// Up to [`FEW`] entries, capacity exactly what was needed so far.
    Few(Vec<(K, V)>),
    /// More than [`FEW`] entries (it stays hashed until emptied). Boxed, so that the
    /// map itself is the size of a vector (24 bytes): it sits in every tree node.
    Many(Box<HashMap<K, V, S>>),
}

impl<K, V, S> Default for CompactMap<K, V, S> {
    fn default() -> Self {
        Self::Few(Vec::new())
    }
}

impl<K, V, S> CompactMap<K, V, S> {
    /// An empty map; allocates nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        match self {
            Self::Few(v) => v.len(),
            Self::Many(m) => m.len(),
        }
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries, in no particular order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        match self {
            Self::Few(v) => Iter::Few(v.iter()),
            Self::Many(m) => Iter::Many(m.iter()),
        }
    }

    /// The keys, in no particular order (the same order as [`CompactMap::iter`]).
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }

    /// The values, in no particular order (the same order as [`CompactMap::iter`]).
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }
}

impl<K: Eq + Hash, V, S: BuildHasher + Default> CompactMap<K, V, S> {
    /// The value for `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self {
            Self::Few(v) => v.iter().find(|(k, _)| k.borrow() == key).map(|(_, v)| v),
            Self::Many(m) => m.get(key),
        }
    }

    /// The value for `key`, to change it.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self {
            Self::Few(v) => v.iter_mut().find(|(k, _)| k.borrow() == key).map(|(_, v)| v),
            Self::Many(m) => m.get_mut(key),
        }
    }

    /// Whether `key` has an entry.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`, returning the value it replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self {
            Self::Few(v) => {
                if let Some((_, old)) = v.iter_mut().find(|(k, _)| *k == key) {
                    return Some(std::mem::replace(old, value));
                }
                if v.len() < FEW {
                    // One slot at a time: the point is not to hold room for entries that
                    // most of these maps never get.
                    v.reserve_exact(1);
                    v.push((key, value));
                    return None;
                }
                let mut m = HashMap::with_capacity_and_hasher(FEW * 2, S::default());
                m.extend(v.drain(..));
                m.insert(key, value);
                *self = Self::Many(Box::new(m));
                None
            }
            Self::Many(m) => m.insert(key, value),
        }
    }

    /// Removes `key`'s entry, returning its value. An emptied map frees its room.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let old = match self {
            Self::Few(v) => {
                let i = v.iter().position(|(k, _)| k.borrow() == key)?;
                Some(v.swap_remove(i).1)
            }
            Self::Many(m) => m.remove(key),
        };
        if old.is_some() && self.is_empty() {
            *self = Self::Few(Vec::new());
        }
        old
    }
}

/// An iterator over a [`CompactMap`]'s entries.
#[derive(Debug, Clone)]
pub enum Iter<'a, K, V> {
    /// Over the vector.
    Few(std::slice::Iter<'a, (K, V)>),
    /// Over the hash map.
    Many(hash_map::Iter<'a, K, V>),
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::Few(it) => it.next().map(|(k, v)| (k, v)),
            Self::Many(it) => it.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Self::Few(it) => it.size_hint(),
            Self::Many(it) => it.size_hint(),
        }
    }
}

impl<'a, K, V, S> IntoIterator for &'a CompactMap<K, V, S> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::hash::RandomState;

    use proptest::prelude::*;

    type Map = CompactMap<u16, u32, RandomState>;

    #[test]
    fn the_map_is_as_small_as_a_vector() {
        assert_eq!(std::mem::size_of::<Map>(), std::mem::size_of::<Vec<(u16, u32)>>());
    }

    #[test]
    fn one_entry_takes_one_slot() {
        let mut m = Map::new();
        assert_eq!(m.insert(7, 1), None);
        match &m {
            CompactMap::Few(v) => assert_eq!(v.capacity(), 1),
            CompactMap::Many(_) => panic!("one entry is few"),
        }
        assert_eq!(m.insert(7, 2), Some(1), "same key replaces");
        assert_eq!(m.len(), 1);
        assert_eq!(m.get(&7), Some(&2));
    }

    #[test]
    fn grows_into_a_hash_map_and_frees_when_emptied() {
        let mut m = Map::new();
        for k in 0..=u16::try_from(FEW).unwrap() {
            m.insert(k, u32::from(k));
        }
        assert!(matches!(m, CompactMap::Many(_)), "FEW + 1 entries are hashed");
        assert_eq!(m.len(), FEW + 1);
        for k in 0..=u16::try_from(FEW).unwrap() {
            assert_eq!(m.remove(&k), Some(u32::from(k)));
        }
        assert!(
            matches!(&m, CompactMap::Few(v) if v.capacity() == 0),
            "an emptied map holds nothing"
        );
        assert_eq!(m.remove(&0), None);
    }

    #[test]
    fn borrowed_keys_look_up_owned_ones() {
        let mut m: CompactMap<Box<str>, u8, RandomState> = CompactMap::new();
        m.insert("a/b".into(), 1);
        assert_eq!(m.get("a/b"), Some(&1));
        assert!(m.contains_key("a/b"));
        *m.get_mut("a/b").unwrap() = 2;
        assert_eq!(m.remove("a/b"), Some(2));
        assert!(m.is_empty());
    }

    proptest! {
        /// Any sequence of inserts and removes leaves the same entries as a BTreeMap.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec((any::<bool>(), 0u16..24, any::<u32>()), 0..200)) {
            let mut m = Map::new();
            let mut model = BTreeMap::new();
            for (insert, k, v) in ops {
                if insert {
                    prop_assert_eq!(m.insert(k, v), model.insert(k, v));
                } else {
                    prop_assert_eq!(m.remove(&k), model.remove(&k));
                }
                prop_assert_eq!(m.len(), model.len());
            }
            let mut seen: Vec<(u16, u32)> = m.iter().map(|(k, v)| (*k, *v)).collect();
            seen.sort_unstable();
            prop_assert_eq!(seen, model.into_iter().collect::<Vec<_>>());
        }
    }
}
