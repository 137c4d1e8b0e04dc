//! The progress line printed on stderr every second while a scenario runs.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::report::si;
use crate::stats::Counters;
use crate::sys;

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    /// Opening connections.
    Connecting = 0,
    /// `--role sub`: waiting for the first message.
    Waiting = 1,
    /// Running, not measured yet.
    Warmup = 2,
    /// Inside the measurement window.
    Measure = 3,
    /// Waiting for messages still in flight.
    Drain = 4,
    /// `conns`: holding idle connections.
    Hold = 5,
    /// Closing.
    Closing = 6,
    /// `slow`: phase A, the baseline.
    Baseline = 7,
    /// `slow`: phase B, with the stalled subscriber.
    Stalled = 8,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::Waiting => "waiting",
            Phase::Warmup => "warm-up",
            Phase::Measure => "measure",
            Phase::Drain => "drain",
            Phase::Hold => "hold",
            Phase::Closing => "closing",
            Phase::Baseline => "phase A",
            Phase::Stalled => "phase B",
        }
    }

    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Connecting,
            1 => Phase::Waiting,
            2 => Phase::Warmup,
            3 => Phase::Measure,
            4 => Phase::Drain,
            5 => Phase::Hold,
            7 => Phase::Baseline,
            8 => Phase::Stalled,
            _ => Phase::Closing,
        }
    }
}

/// What the progress line shows.
#[derive(Debug)]
pub(crate) struct Progress {
    phase: AtomicU8,
    /// Connections opened (or failed) so far.
    pub opened: Arc<AtomicU64>,
    /// Connections to open.
    pub to_open: AtomicU64,
    /// Connections lost while running.
    pub dropped: AtomicU64,
    counters: Arc<Counters>,
}

impl Progress {
    /// Progress over `counters`.
    pub(crate) fn new(counters: Arc<Counters>) -> Progress {
        Progress {
            phase: AtomicU8::new(Phase::Connecting as u8),
            opened: Arc::new(AtomicU64::new(0)),
            to_open: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            counters,
        }
    }

    /// Moves to `phase`.
    pub(crate) fn set(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// The current phase.
    pub(crate) fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }
}

/// Prints a line every second until `stop` (nothing when `quiet`).
pub(crate) fn spawn(progress: Arc<Progress>, broker_pid: Option<u32>, quiet: bool, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if quiet {
            return;
        }
        let start = Instant::now();
        let mut last = (
            Instant::now(),
            progress.counters.totals(),
            sys::self_cpu().ok(),
            broker_pid.and_then(|p| sys::pid_cpu(p).ok()),
        );
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = Instant::now();
            let totals = progress.counters.totals();
            let cpu = sys::self_cpu().ok();
            let broker = broker_pid.and_then(|p| sys::pid_cpu(p).ok());
            let wall = now - last.0;
            let secs = wall.as_secs_f64().max(1e-9);
            let mut line = format!("[{:>4.0}s] {:<10}", (now - start).as_secs_f64(), progress.phase().name());
            match progress.phase() {
                Phase::Connecting | Phase::Hold => {
                    line.push_str(&format!(
                        " opened {}/{}",
                        progress.opened.load(Ordering::Relaxed),
                        progress.to_open.load(Ordering::Relaxed)
                    ));
                    let dropped = progress.dropped.load(Ordering::Relaxed);
                    if dropped > 0 {
                        line.push_str(&format!(" dropped {dropped}"));
                    }
                }
                _ => line.push_str(&format!(
                    " pub {}/s  deliv {}/s",
                    si((totals.published - last.1.published) as f64 / secs),
                    si((totals.delivered - last.1.delivered) as f64 / secs)
                )),
            }
            if let (Some(a), Some(b)) = (last.2, cpu) {
                line.push_str(&format!("  cpu {:.0}%", 100.0 * b.fraction_since(&a, wall)));
            }
            if let (Some(a), Some(b)) = (last.3, broker) {
                line.push_str(&format!("  broker cpu {:.0}%", 100.0 * b.fraction_since(&a, wall)));
            }
            eprintln!("{line}");
            last = (now, totals, cpu, broker);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_round_trip() {
        for phase in [
            Phase::Connecting,
            Phase::Waiting,
            Phase::Warmup,
            Phase::Measure,
            Phase::Drain,
            Phase::Hold,
            Phase::Closing,
            Phase::Baseline,
            Phase::Stalled,
        ] {
            assert_eq!(Phase::from_u8(phase as u8), phase);
        }
        assert_eq!(Phase::Stalled.name(), "phase B");
    }
}
