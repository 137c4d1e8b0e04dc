//! A connection's byte-rate throttle (`limits.bytes_per_second`): reads take tokens from
//! a per-connection bucket; when it is empty the driver stops reading until it refills
//! (the peer feels TCP back-pressure; nothing is refused). Unlimited connections carry
//! no bucket.

use std::time::{Duration, Instant};

use ferry_auth::limits::TokenBucket;
use ferry_auth::SecurityStats;

/// A connection's byte-rate bucket, boxed so that an unlimited connection carries only
/// an empty pointer.
pub(super) struct ByteRate {
    bucket: TokenBucket,
    /// Tokens to wait for once the bucket is empty: a twentieth of a second's worth (at
    /// most 20 pauses a second), no more than the burst.
    resume_at: u32,
    /// Whether reads are paused now (the pause is counted once).
    paused: bool,
    /// While paused: when to try reading again.
    pub(super) resume: Option<Instant>,
}

impl ByteRate {
    /// The throttle of `bucket`.
    pub(super) fn new(bucket: TokenBucket) -> Box<Self> {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let twentieth = (bucket.rate() / 20.0).clamp(1.0, f64::from(u32::MAX)) as u32;
        let resume_at = twentieth.min(bucket.burst()).max(1);
        Box::new(Self {
            bucket,
            resume_at,
            paused: false,
            resume: None,
        })
    }

    /// How many bytes the next read may take, or when to try again (`Err`).
    pub(super) fn allowance(&mut self, now: Instant, want: usize, stats: &SecurityStats) -> Result<usize, Instant> {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let available = self.bucket.available(now).floor() as usize;
        let needed = if self.paused { self.resume_at as usize } else { 1 };
        if available >= needed {
            self.paused = false;
            return Ok(available.min(want));
        }
        if !self.paused {
            self.paused = true;
            SecurityStats::bump(&stats.byte_rate_throttled);
        }
        let wait = self.bucket.time_until(now, self.resume_at).unwrap_or(Duration::from_millis(50));
        Err(now + wait.max(Duration::from_millis(1)))
    }

    /// Takes the tokens for `n` bytes just read.
    pub(super) fn consumed(&mut self, now: Instant, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        if !self.bucket.try_take(now, n) {
            // Reads never exceed what was available; drain anyway if the clock disagrees.
            let left = self.bucket.available(now).floor();
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let _ = self.bucket.try_take(now, left as u32);
        }
    }
}
