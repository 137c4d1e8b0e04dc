//! The per-origin sliding window that drops the second copy of a message (sans-IO).
//!
//! A node subscribed to both `a.>` and `a.b` gets two NATS copies of a publish to
//! `a.b`, one per subscription, and the copies of different subscriptions interleave,
//! so "the last sequence seen" is not enough: each origin instance gets a bitmap of
//! the last [`WINDOW`] sequence numbers. A number older than the window is taken as
//! seen (dropped): with one FIFO connection per origin such a late copy is a duplicate
//! of something long delivered.

use std::collections::HashMap;

use crate::envelope::Origin;

/// Sequence numbers remembered per origin instance.
pub const WINDOW: u64 = 65_536;
const WORDS: usize = (WINDOW / 64) as usize;

/// What the window says of a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time: deliver it.
    New,
    /// Seen before (or older than the window): drop it.
    Duplicate,
}

#[derive(Debug)]
struct Window {
    /// The highest sequence number seen.
    top: u64,
    bits: Box<[u64; WORDS]>,
}

impl Window {
    fn new() -> Self {
        Self {
            top: 0,
            bits: Box::new([0; WORDS]),
        }
    }

    fn bit(seq: u64) -> (usize, u64) {
        let i = seq % WINDOW;
        ((i / 64) as usize, 1 << (i % 64))
    }

    fn check(&mut self, seq: u64) -> Seen {
        if seq > self.top {
            if seq - self.top >= WINDOW {
                self.bits.fill(0);
            } else {
                for s in self.top + 1..seq {
                    let (w, b) = Self::bit(s);
                    self.bits[w] &= !b;
                }
            }
            self.top = seq;
            let (w, b) = Self::bit(seq);
            self.bits[w] |= b;
            return Seen::New;
        }
        if self.top - seq >= WINDOW {
            return Seen::Duplicate;
        }
        let (w, b) = Self::bit(seq);
        if self.bits[w] & b != 0 {
            return Seen::Duplicate;
        }
        self.bits[w] |= b;
        Seen::New
    }
}

/// One window per origin instance, at most `max_origins` of them (the least recently
/// used is forgotten past that: a node restarted many times leaves old instances).
#[derive(Debug)]
pub struct Dedup {
    windows: HashMap<Origin, (Window, u64)>,
    max_origins: usize,
    clock: u64,
}

impl Dedup {
    /// A window set for at most `max_origins` origin instances.
    pub fn new(max_origins: usize) -> Self {
        Self {
            windows: HashMap::new(),
            max_origins: max_origins.max(1),
            clock: 0,
        }
    }

    /// Whether `seq` from `origin` is new; records it.
    pub fn check(&mut self, origin: &Origin, seq: u64) -> Seen {
        self.clock += 1;
        if let Some((w, used)) = self.windows.get_mut(origin) {
            *used = self.clock;
            return w.check(seq);
        }
        if self.windows.len() >= self.max_origins {
            if let Some(oldest) = self.windows.iter().min_by_key(|(_, (_, used))| *used).map(|(o, _)| o.clone()) {
                self.windows.remove(&oldest);
            }
        }
        let mut w = Window::new();
        let seen = w.check(seq);
        self.windows.insert(origin.clone(), (w, self.clock));
        seen
    }

    /// Origin instances remembered.
    pub fn origins(&self) -> usize {
        self.windows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(name: &str, instance: u64) -> Origin {
        Origin {
            name: name.into(),
            instance,
        }
    }

    #[test]
    fn interleaved_copies_are_delivered_once() {
        let mut d = Dedup::new(8);
        let a = o("a", 1);
        // Two subscriptions' channels: 1 2 3 on one, then 1 2 3 on the other, interleaved.
        let arrivals = [1, 2, 1, 3, 2, 3];
        let seen: Vec<Seen> = arrivals.iter().map(|s| d.check(&a, *s)).collect();
        use Seen::*;
        assert_eq!(seen, [New, New, Duplicate, New, Duplicate, Duplicate]);
    }

    #[test]
    fn a_lower_seq_not_yet_seen_is_new() {
        let mut d = Dedup::new(8);
        let a = o("a", 1);
        assert_eq!(d.check(&a, 10), Seen::New);
        assert_eq!(d.check(&a, 5), Seen::New, "arrived late through another subscription");
        assert_eq!(d.check(&a, 5), Seen::Duplicate);
    }

    #[test]
    fn origins_and_instances_are_apart() {
        let mut d = Dedup::new(8);
        assert_eq!(d.check(&o("a", 1), 1), Seen::New);
        assert_eq!(d.check(&o("b", 1), 1), Seen::New);
        assert_eq!(d.check(&o("a", 2), 1), Seen::New, "a restarted node starts again at 1");
        assert_eq!(d.check(&o("a", 1), 1), Seen::Duplicate);
    }

    #[test]
    fn the_window_slides_and_forgets_what_fell_out() {
        let mut d = Dedup::new(8);
        let a = o("a", 1);
        assert_eq!(d.check(&a, 1), Seen::New);
        assert_eq!(d.check(&a, WINDOW), Seen::New);
        assert_eq!(d.check(&a, 1), Seen::Duplicate, "still inside the window");
        assert_eq!(d.check(&a, WINDOW + 1), Seen::New);
        assert_eq!(d.check(&a, 1), Seen::Duplicate, "older than the window: dropped");
        // A bit reused after the window moved on is cleared, not taken as seen.
        assert_eq!(d.check(&a, 2 * WINDOW + 2), Seen::New);
        assert_eq!(d.check(&a, WINDOW + 2 + 1), Seen::New);
        // A jump past the whole window clears everything.
        assert_eq!(d.check(&a, 10 * WINDOW), Seen::New);
        assert_eq!(d.check(&a, 10 * WINDOW - 1), Seen::New);
    }

    #[test]
    fn the_least_recently_used_origin_is_forgotten_past_the_limit() {
        let mut d = Dedup::new(2);
        d.check(&o("a", 1), 1);
        d.check(&o("b", 1), 1);
        d.check(&o("a", 1), 2);
        d.check(&o("c", 1), 1);
        assert_eq!(d.origins(), 2);
        assert_eq!(d.check(&o("a", 1), 2), Seen::Duplicate, "a was kept");
        assert_eq!(d.check(&o("b", 1), 1), Seen::New, "b was forgotten");
    }
}
