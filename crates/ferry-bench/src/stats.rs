//! Counters shared by the running tasks, and latency histograms.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::Notify;

use crate::sys::{self, CpuTime};

/// Totals every task adds to (in batches, not per message), read by the progress line
/// and at the edges of the measurement window.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Data messages written by publishers.
    pub published: AtomicU64,
    /// Data messages received by subscribers (duplicates included).
    pub delivered: AtomicU64,
    /// Publications confirmed by the broker (PUBACK, PUBCOMP, RECEIPT).
    pub confirmed: AtomicU64,
    /// True inside the measurement window: latencies are recorded.
    pub measuring: AtomicBool,
    /// Set when a subscriber receives its first data message.
    pub started: AtomicBool,
    /// Notified with `started`.
    pub first_message: Notify,
    /// Latencies inside the measurement window, from every subscriber (one histogram
    /// for the process: a hundred of them would not stay in the CPU's caches).
    pub latency: parking_lot::Mutex<Latency>,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    /// See [`Counters::published`].
    pub published: u64,
    /// See [`Counters::delivered`].
    pub delivered: u64,
    /// See [`Counters::confirmed`].
    pub confirmed: u64,
}

impl Counters {
    /// The current totals.
    pub(crate) fn totals(&self) -> Totals {
        Totals {
            published: self.published.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            confirmed: self.confirmed.load(Ordering::Relaxed),
        }
    }

    /// Marks the first data message (once).
    pub(crate) fn mark_started(&self) {
        if !self.started.swap(true, Ordering::Relaxed) {
            self.first_message.notify_waiters();
            self.first_message.notify_one();
        }
    }
}

/// The counters and CPU times at one instant (an edge of the measurement window).
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    /// When.
    pub at: Instant,
    /// The counters.
    pub totals: Totals,
    /// This process's CPU time.
    pub cpu: Option<CpuTime>,
    /// The broker's CPU time (with `--broker-pid`).
    pub broker_cpu: Option<CpuTime>,
    /// Busy and total ticks per core.
    pub cores: Option<Vec<(u64, u64)>>,
}

impl Snapshot {
    /// Takes one now.
    pub(crate) fn take(counters: &Counters, broker_pid: Option<u32>) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            totals: counters.totals(),
            cpu: sys::self_cpu().ok(),
            broker_cpu: broker_pid.and_then(|pid| sys::pid_cpu(pid).ok()),
            cores: sys::core_ticks(),
        }
    }
}

/// What happened between two snapshots.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Window {
    /// Wall time, seconds.
    pub secs: f64,
    /// Data messages published.
    pub published: u64,
    /// Data messages delivered.
    pub delivered: u64,
    /// Publications confirmed.
    pub confirmed: u64,
    /// Published per second.
    pub published_per_s: f64,
    /// Delivered per second.
    pub delivered_per_s: f64,
    /// This process's CPU use, user + system time over wall time (1.0 = one core).
    pub bench_cpu: Option<f64>,
    /// Of which user time.
    pub bench_cpu_user: Option<f64>,
    /// The broker's CPU use (with `--broker-pid`).
    pub broker_cpu: Option<f64>,
    /// How busy each core of the machine was, by anyone (0–1): with the two CPU
    /// figures above, shows how much other processes took from the run.
    pub core_busy: Vec<f64>,
}

impl Window {
    /// The window from `a` to `b`.
    pub(crate) fn between(a: &Snapshot, b: &Snapshot) -> Window {
        let wall = b.at.saturating_duration_since(a.at);
        let secs = wall.as_secs_f64();
        let per_s = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let published = b.totals.published.saturating_sub(a.totals.published);
        let delivered = b.totals.delivered.saturating_sub(a.totals.delivered);
        let fraction = |x: Option<CpuTime>, y: Option<CpuTime>| Some(y?.fraction_since(&x?, wall));
        Window {
            secs,
            published,
            delivered,
            confirmed: b.totals.confirmed.saturating_sub(a.totals.confirmed),
            published_per_s: per_s(published),
            delivered_per_s: per_s(delivered),
            bench_cpu: fraction(a.cpu, b.cpu),
            bench_cpu_user: match (a.cpu, b.cpu) {
                (Some(x), Some(y)) if secs > 0.0 => Some(((y.user - x.user) / secs).max(0.0)),
                _ => None,
            },
            broker_cpu: fraction(a.broker_cpu, b.broker_cpu),
            core_busy: match (&a.cores, &b.cores) {
                (Some(x), Some(y)) => x
                    .iter()
                    .zip(y)
                    .map(|(&(busy0, total0), &(busy1, total1))| {
                        let total = total1.saturating_sub(total0);
                        if total == 0 {
                            0.0
                        } else {
                            busy1.saturating_sub(busy0) as f64 / total as f64
                        }
                    })
                    .collect(),
                _ => Vec::new(),
            },
        }
    }
}

/// Highest latency recorded, µs (an hour: anything above is clamped).
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// End-to-end latencies in microseconds.
#[derive(Debug, Clone)]
pub(crate) struct Latency {
    hist: Histogram<u64>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct LatencySummary {
    /// Messages measured.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty histogram: 1 µs to an hour, 3 significant digits.
    pub(crate) fn new() -> Latency {
        let hist = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("1 µs to an hour at 3 digits is a valid histogram");
        Latency { hist }
    }

    /// Records a latency of `ns` nanoseconds (below 1 µs counts as 1 µs).
    pub(crate) fn record_ns(&mut self, ns: u64) {
        let us = (ns / 1000).clamp(1, MAX_LATENCY_US);
        // In range by construction.
        let _ = self.hist.record(us);
    }

    /// Messages recorded.
    pub(crate) fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The latencies recorded since `earlier`, a copy of this histogram taken then
    /// (so every count of `earlier` is still in `self`). Were it not, the whole of
    /// `self` is returned.
    pub(crate) fn since(&self, earlier: &Latency) -> Latency {
        let mut hist = self.hist.clone();
        if hist.subtract(&earlier.hist).is_err() {
            hist = self.hist.clone();
        }
        Latency { hist }
    }

    /// Percentiles in milliseconds.
    pub(crate) fn summary(&self) -> LatencySummary {
        let ms = |us: u64| us as f64 / 1000.0;
        if self.hist.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.hist.len(),
            p50: ms(self.hist.value_at_quantile(0.50)),
            p90: ms(self.hist.value_at_quantile(0.90)),
            p99: ms(self.hist.value_at_quantile(0.99)),
            p999: ms(self.hist.value_at_quantile(0.999)),
            max: ms(self.hist.max()),
            mean: self.hist.mean() / 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_milliseconds() {
        let mut a = Latency::new();
        for us in 1..=1000u64 {
            a.record_ns(us * 1000);
        }
        let s = a.summary();
        assert_eq!(s.count, 1000);
        assert!((s.p50 - 0.5).abs() < 0.002, "{s:?}");
        assert!((s.p99 - 0.99).abs() < 0.002, "{s:?}");
        assert!((s.max - 1.0).abs() < 0.002, "{s:?}");
        a.record_ns(5_000_000_000);
        a.record_ns(10); // below a microsecond
        assert_eq!(a.count(), 1002);
        assert!((a.summary().max - 5000.0).abs() < 5.0);
        assert_eq!(Latency::new().summary(), LatencySummary::default());
    }

    #[test]
    fn latencies_since_an_earlier_copy() {
        let mut a = Latency::new();
        for _ in 0..10 {
            a.record_ns(5_000_000);
        }
        let earlier = a.clone();
        for _ in 0..4 {
            a.record_ns(1_000_000);
        }
        let since = a.since(&earlier);
        assert_eq!(since.count(), 4);
        let s = since.summary();
        assert!((s.max - 1.0).abs() < 0.01 && (s.p50 - 1.0).abs() < 0.01, "{s:?}");
        assert_eq!(a.since(&a).count(), 0);
        // Not an earlier copy: everything.
        assert_eq!(earlier.since(&a).count(), 10);
    }

    #[test]
    fn counters_snapshot() {
        let c = Counters::default();
        c.published.fetch_add(3, Ordering::Relaxed);
        c.delivered.fetch_add(300, Ordering::Relaxed);
        assert_eq!(
            c.totals(),
            Totals {
                published: 3,
                delivered: 300,
                confirmed: 0
            }
        );
        c.mark_started();
        c.mark_started();
        assert!(c.started.load(Ordering::Relaxed));
    }
}
