//! A bounded table of per-address state.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

#[derive(Debug, Clone)]
struct Entry<V> {
    value: V,
    last_seen: Instant,
}

/// Per-address state, at most `capacity` addresses. When a new address finds the table
/// full, idle entries (which a caller's test says are no different from new ones) are
/// dropped; if that frees less than an eighth of the table, the least recently seen eighth
/// goes too. So inserting costs O(1) amortized, and the table never outgrows `capacity`.
#[derive(Debug, Clone)]
pub(crate) struct AddressTable<V> {
    map: HashMap<IpAddr, Entry<V>>,
    capacity: usize,
}

impl<V> AddressTable<V> {
    /// A table of at most `capacity` addresses (at least 1).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// The number of addresses held.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The state of `key`, if held.
    pub(crate) fn get(&self, key: &IpAddr) -> Option<&V> {
        self.map.get(key).map(|e| &e.value)
    }

    /// Forgets `key`.
    pub(crate) fn remove(&mut self, key: &IpAddr) {
        self.map.remove(key);
    }

    /// The state of `key`, made with `make` if new (making room first, with `idle` telling
    /// which entries can go); marks it seen at `now`.
    pub(crate) fn entry(&mut self, key: IpAddr, now: Instant, idle: impl Fn(&V, Instant) -> bool, make: impl FnOnce() -> V) -> &mut V {
        if !self.map.contains_key(&key) && self.map.len() >= self.capacity {
            self.make_room(now, idle);
        }
        let entry = self.map.entry(key).or_insert_with(|| Entry {
            value: make(),
            last_seen: now,
        });
        entry.last_seen = entry.last_seen.max(now);
        &mut entry.value
    }

    fn make_room(&mut self, now: Instant, idle: impl Fn(&V, Instant) -> bool) {
        self.map.retain(|_, e| !idle(&e.value, now));
        let eighth = (self.capacity / 8).max(1);
        if self.map.len() + eighth <= self.capacity {
            return;
        }
        let excess = self.map.len() + eighth - self.capacity;
        let mut seen: Vec<Instant> = self.map.values().map(|e| e.last_seen).collect();
        let Some(index) = excess.checked_sub(1).filter(|i| *i < seen.len()) else {
            self.map.clear();
            return;
        };
        let (_, cutoff, _) = seen.select_nth_unstable(index);
        let cutoff = *cutoff;
        let mut removed = 0;
        self.map.retain(|_, e| {
            if removed < excess && e.last_seen <= cutoff {
                removed += 1;
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(i: u32) -> IpAddr {
        IpAddr::from(i.to_be_bytes())
    }

    #[test]
    fn bounded_with_idle_entries_first_then_oldest() {
        let t0 = Instant::now();
        let mut table: AddressTable<bool> = AddressTable::new(16);
        // Addresses 0..16, the even ones idle.
        for i in 0..16 {
            *table.entry(ip(i), t0 + Duration::from_secs(u64::from(i)), |_, _| false, || i % 2 == 0) = i % 2 == 0;
        }
        assert_eq!(table.len(), 16);
        let later = t0 + Duration::from_secs(100);
        table.entry(ip(100), later, |idle, _| *idle, || false);
        assert_eq!(table.len(), 9, "the 8 idle entries went");
        assert!(table.get(&ip(1)).is_some() && table.get(&ip(0)).is_none());
        // Now nothing is idle: the oldest go, at least an eighth of the table.
        for i in 200..207 {
            table.entry(ip(i), later, |idle, _| *idle, || false);
        }
        assert_eq!(table.len(), 16);
        table.entry(ip(300), later, |idle, _| *idle, || false);
        assert!(table.len() <= 16 - 2 + 1, "{}", table.len());
        assert!(
            table.get(&ip(1)).is_none() && table.get(&ip(3)).is_none(),
            "the least recently seen went first"
        );
        assert!(table.get(&ip(300)).is_some() && table.get(&ip(100)).is_some());
    }

    #[test]
    fn never_grows_past_capacity() {
        let t0 = Instant::now();
        for capacity in [0, 1, 2, 7, 100] {
            let mut table: AddressTable<()> = AddressTable::new(capacity);
            for i in 0..1000 {
                table.entry(ip(i), t0, |_, _| false, || ());
                assert!(table.len() <= capacity.max(1));
            }
        }
    }
}
