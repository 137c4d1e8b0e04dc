//! A token bucket.

use std::time::{Duration, Instant};

/// Slack for floating-point refills (a bucket refilled to 0.999999999 of a token has one).
const EPSILON: f64 = 1e-9;

/// A token bucket: holds at most `burst` tokens, refilled at `rate` tokens per second,
/// full at the start. Time is passed in; an earlier `now` than already seen counts as no
/// time passing.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilled at `rate` per second (a negative or
    /// non-finite rate counts as 0: the bucket never refills).
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let rate = if rate.is_finite() && rate > 0.0 { rate } else { 0.0 };
        Self {
            rate,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            updated: now,
        }
    }

    /// Tokens per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The most tokens the bucket holds.
    pub fn burst(&self) -> u32 {
        // Built from a u32.
        self.burst as u32
    }

    /// The tokens held at `now` (fractional).
    pub fn available(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        (self.tokens + elapsed * self.rate).min(self.burst)
    }

    /// Whether the bucket is full at `now`: then it is no different from a new one.
    pub fn is_full(&self, now: Instant) -> bool {
        self.available(now) + EPSILON >= self.burst
    }

    fn refill(&mut self, now: Instant) {
        if now > self.updated {
            self.tokens = self.available(now);
            self.updated = now;
        }
    }

    /// Takes `n` tokens if the bucket holds them at `now`; otherwise takes none.
    pub fn try_take(&mut self, now: Instant, n: u32) -> bool {
        self.refill(now);
        let n = f64::from(n);
        if self.tokens + EPSILON >= n {
            self.tokens = (self.tokens - n).max(0.0);
            true
        } else {
            false
        }
    }

    /// When the bucket will next hold a token (`now` if it does); `None` if never (rate 0,
    /// or a burst of 0).
    pub fn next_available(&self, now: Instant) -> Option<Instant> {
        self.time_until(now, 1).and_then(|wait| now.checked_add(wait))
    }

    /// How long from `now` until the bucket holds `n` tokens; `None` if never.
    pub fn time_until(&self, now: Instant, n: u32) -> Option<Duration> {
        let missing = f64::from(n) - self.available(now);
        if missing <= EPSILON {
            return Some(Duration::ZERO);
        }
        if f64::from(n) > self.burst + EPSILON || self.rate == 0.0 {
            return None;
        }
        Duration::try_from_secs_f64(missing / self.rate).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, 3, t0);
        assert!(b.is_full(t0));
        assert!(b.try_take(t0, 1) && b.try_take(t0, 2));
        assert!(!b.try_take(t0, 1));
        assert_eq!(b.next_available(t0), Some(t0 + Duration::from_millis(500)));
        assert!(!b.try_take(t0 + Duration::from_millis(499), 1));
        assert!(b.try_take(t0 + Duration::from_millis(500), 1));
        // Refills stop at the burst.
        let later = t0 + Duration::from_secs(100);
        assert!(b.is_full(later));
        assert!(b.try_take(later, 3) && !b.try_take(later, 1));
        assert_eq!(b.time_until(later, 2), Some(Duration::from_secs(1)));
        assert_eq!(b.time_until(later, 4), None, "more than the burst never fits");
        assert!(!b.try_take(later, 4));
        // Time going backwards is no time at all.
        assert!(!b.try_take(t0, 1));
        assert_eq!((b.rate(), b.burst()), (2.0, 3));
    }

    #[test]
    fn many_small_refills_add_up() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3.0, 3, t0);
        assert!(b.try_take(t0, 3));
        let mut taken = 0;
        for ms in 1..=1000 {
            if b.try_take(t0 + Duration::from_millis(ms), 1) {
                taken += 1;
            }
        }
        assert_eq!(taken, 3);
    }

    #[test]
    fn zero_rate_never_refills() {
        let t0 = Instant::now();
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let mut b = TokenBucket::new(rate, 1, t0);
            assert!(b.try_take(t0, 1));
            assert!(!b.try_take(t0 + Duration::from_secs(3600), 1));
            assert_eq!(b.next_available(t0), None);
        }
        assert_eq!(TokenBucket::new(1.0, 0, t0).next_available(t0), None);
        assert_eq!(TokenBucket::new(1.0, 1, t0).next_available(t0), Some(t0));
    }
}
