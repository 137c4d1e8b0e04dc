//! Loss, duplicate and order accounting for one publisher's stream as one subscriber
//! sees it.
//!
//! Sequence numbers start at 0. The tracker keeps the next expected number and the
//! gaps (ranges skipped over, half-open) in order. A number at or past the expected one
//! is in order, and any skipped numbers become a gap, counted as lost for now. A number
//! below the expected one is *out of order* if it fills a gap (it is then no longer
//! lost) and a *duplicate* otherwise. At most [`MAX_GAPS`] gaps are remembered; the
//! oldest are forgotten beyond that (still counted as lost), and a late message in a
//! forgotten gap is counted as a duplicate, since the two can no longer be told apart.

use std::collections::{HashMap, VecDeque};
use std::ops::AddAssign;

use serde::Serialize;

/// How many separate gaps a tracker remembers.
pub(crate) const MAX_GAPS: usize = 4096;

/// What one arrival was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// The next expected number.
    InOrder,
    /// Past the expected number: this many were skipped (lost unless they come later).
    Skipped(u64),
    /// Below the expected number, filling a gap.
    OutOfOrder,
    /// Seen before (or too late to tell).
    Duplicate,
}

/// One stream's accounting.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tracker {
    next: u64,
    /// Half-open ranges of missing numbers, ascending, disjoint, all below `next`.
    gaps: VecDeque<(u64, u64)>,
    missing: u64,
    duplicates: u64,
    out_of_order: u64,
}

/// Totals over one or more streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct SeqStats {
    /// Distinct messages received.
    pub received: u64,
    /// Messages published but never received (gaps, and the tail not received when a
    /// publisher's final count is known).
    pub lost: u64,
    /// Messages received more than once.
    pub duplicates: u64,
    /// Messages received after a later one of the same publisher.
    pub out_of_order: u64,
}

impl AddAssign for SeqStats {
    fn add_assign(&mut self, other: SeqStats) {
        self.received += other.received;
        self.lost += other.lost;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
    }
}

impl Tracker {
    /// Records the arrival of `seq`.
    pub(crate) fn record(&mut self, seq: u64) -> Arrival {
        if seq == self.next {
            self.next += 1;
            return Arrival::InOrder;
        }
        if seq > self.next {
            let skipped = seq - self.next;
            self.gaps.push_back((self.next, seq));
            self.missing += skipped;
            if self.gaps.len() > MAX_GAPS {
                self.gaps.pop_front();
            }
            self.next = seq + 1;
            return Arrival::Skipped(skipped);
        }
        // seq < next: fills a gap, or was seen already.
        let i = self.gaps.partition_point(|&(_, end)| end <= seq);
        match self.gaps.get(i).copied() {
            Some((start, end)) if start <= seq => {
                self.missing -= 1;
                self.out_of_order += 1;
                match (start == seq, end == seq + 1) {
                    (true, true) => {
                        self.gaps.remove(i);
                    }
                    (true, false) => self.gaps[i].0 = seq + 1,
                    (false, true) => self.gaps[i].1 = seq,
                    (false, false) => {
                        self.gaps[i].1 = seq;
                        self.gaps.insert(i + 1, (seq + 1, end));
                    }
                }
                Arrival::OutOfOrder
            }
            _ => {
                self.duplicates += 1;
                Arrival::Duplicate
            }
        }
    }

    /// The totals, given how many messages the publisher sent if known (its end marker
    /// or the in-process count): messages past the highest received are lost too.
    pub(crate) fn stats(&self, published: Option<u64>) -> SeqStats {
        let tail = published.map_or(0, |n| n.saturating_sub(self.next));
        SeqStats {
            received: self.next - self.missing,
            lost: self.missing + tail,
            duplicates: self.duplicates,
            out_of_order: self.out_of_order,
        }
    }
}

/// Publisher ids below this are looked up by index, the rest in a map.
const DIRECT_IDS: u32 = 4096;

/// One tracker per publisher id, found without hashing for the small ids a run uses.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    direct: Vec<Option<Tracker>>,
    other: HashMap<u32, Tracker>,
}

impl Streams {
    /// The tracker of publisher `id`, created on first use.
    pub(crate) fn get_mut(&mut self, id: u32) -> &mut Tracker {
        if id < DIRECT_IDS {
            let i = id as usize;
            if self.direct.len() <= i {
                self.direct.resize_with(i + 1, || None);
            }
            self.direct[i].get_or_insert_with(Tracker::default)
        } else {
            self.other.entry(id).or_default()
        }
    }

    /// Whether publisher `id` was heard from.
    pub(crate) fn contains(&self, id: u32) -> bool {
        match self.direct.get(id as usize) {
            Some(slot) if id < DIRECT_IDS => slot.is_some(),
            _ => self.other.contains_key(&id),
        }
    }

    /// Every publisher heard from, with its tracker.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &Tracker)> {
        let direct = self.direct.iter().enumerate().filter_map(|(i, t)| Some((i as u32, t.as_ref()?)));
        direct.chain(self.other.iter().map(|(id, t)| (*id, t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(seqs: &[u64]) -> Tracker {
        let mut t = Tracker::default();
        for &s in seqs {
            t.record(s);
        }
        t
    }

    fn stats(received: u64, lost: u64, duplicates: u64, out_of_order: u64) -> SeqStats {
        SeqStats {
            received,
            lost,
            duplicates,
            out_of_order,
        }
    }

    #[test]
    fn in_order_stream() {
        let t = feed(&[0, 1, 2, 3, 4]);
        assert_eq!(t.stats(None), stats(5, 0, 0, 0));
        assert_eq!(t.stats(Some(5)), stats(5, 0, 0, 0));
        assert_eq!(t.next, 5);
    }

    #[test]
    fn gaps_are_lost_and_the_tail_too_when_the_count_is_known() {
        let mut t = Tracker::default();
        assert_eq!(t.record(0), Arrival::InOrder);
        assert_eq!(t.record(3), Arrival::Skipped(2));
        assert_eq!(t.record(4), Arrival::InOrder);
        assert_eq!(t.stats(None), stats(3, 2, 0, 0));
        assert_eq!(t.stats(Some(10)), stats(3, 7, 0, 0));
        // A count below what was seen does not make negative loss.
        assert_eq!(t.stats(Some(1)), stats(3, 2, 0, 0));
        // Nothing received at all: everything published is lost.
        assert_eq!(Tracker::default().stats(Some(4)), stats(0, 4, 0, 0));
    }

    #[test]
    fn late_arrivals_fill_gaps() {
        let mut t = feed(&[0, 5]);
        assert_eq!(t.record(3), Arrival::OutOfOrder); // splits [1,5) into [1,3) [4,5)
        assert_eq!(t.record(1), Arrival::OutOfOrder); // [2,3) [4,5)
        assert_eq!(t.record(4), Arrival::OutOfOrder); // [2,3)
        assert_eq!(t.stats(None), stats(5, 1, 0, 3));
        assert_eq!(t.record(2), Arrival::OutOfOrder);
        assert_eq!(t.stats(Some(6)), stats(6, 0, 0, 4));
        assert!(t.gaps.is_empty());
    }

    #[test]
    fn duplicates_are_counted_once_each() {
        let mut t = feed(&[0, 1, 2]);
        assert_eq!(t.record(1), Arrival::Duplicate);
        assert_eq!(t.record(2), Arrival::Duplicate);
        assert_eq!(t.record(3), Arrival::InOrder);
        // A late message filling a gap, then its duplicate.
        t.record(6);
        assert_eq!(t.record(5), Arrival::OutOfOrder);
        assert_eq!(t.record(5), Arrival::Duplicate);
        assert_eq!(t.stats(Some(7)), stats(6, 1, 3, 1));
    }

    #[test]
    fn reordered_neighbours() {
        // 1 and 0 swapped, then 3 and 2 swapped.
        let t = feed(&[1, 0, 3, 2, 4]);
        assert_eq!(t.stats(Some(5)), stats(5, 0, 0, 2));
    }

    #[test]
    fn forgotten_gaps_stay_lost() {
        let mut t = Tracker::default();
        // MAX_GAPS + 1 gaps of one message each: 1, 3, 5, ... are missing.
        for i in 0..=(MAX_GAPS as u64 + 1) {
            t.record(2 * i);
        }
        assert_eq!(t.gaps.len(), MAX_GAPS);
        let lost = MAX_GAPS as u64 + 1;
        assert_eq!(t.stats(None).lost, lost);
        // The oldest gap (1) was forgotten: its late arrival counts as a duplicate.
        assert_eq!(t.record(1), Arrival::Duplicate);
        // A remembered one still fills its gap.
        assert_eq!(t.record(3), Arrival::OutOfOrder);
        assert_eq!(t.stats(None).lost, lost - 1);
    }

    #[test]
    fn streams_by_id() {
        let mut s = Streams::default();
        s.get_mut(3).record(0);
        s.get_mut(3).record(1);
        s.get_mut(DIRECT_IDS + 5).record(0);
        assert!(s.contains(3) && s.contains(DIRECT_IDS + 5));
        assert!(!s.contains(2) && !s.contains(100_000) && !s.contains(DIRECT_IDS));
        let mut seen: Vec<(u32, u64)> = s.iter().map(|(id, t)| (id, t.stats(None).received)).collect();
        seen.sort();
        assert_eq!(seen, [(3, 2), (DIRECT_IDS + 5, 1)]);
    }

    #[test]
    fn stats_add_up() {
        let mut total = SeqStats::default();
        total += stats(1, 2, 3, 4);
        total += stats(10, 20, 30, 40);
        assert_eq!(total, stats(11, 22, 33, 44));
    }
}
