//! Admission of new connections before any byte of them is read: the per-listener count
//! (`max_connections` of a `[listeners.*]` table) here, the broker-wide and per-address
//! counts and the per-address rate in [`Gatekeeper::admit`]. Refusals are counted and
//! logged without flooding the log: one debug line each, one warning per second at most.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_auth::limits::{ConnectionGuard, LimitExceeded};
use ferry_auth::{Gatekeeper, Refusal, SecurityStats};
use tracing::{debug, warn};

use crate::metrics::Metrics;

/// Counts the open connections of one listener against its `max_connections`.
#[derive(Debug)]
pub(crate) struct ListenerLimit {
    max: usize,
    open: AtomicUsize,
}

/// One connection counted on its listener until dropped.
#[derive(Debug)]
pub(crate) struct ListenerSlot(Arc<ListenerLimit>);

impl Drop for ListenerSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ListenerLimit {
    /// A limit of `max` open connections; `None` for 0 (no limit, nothing counted).
    pub(crate) fn new(max: usize) -> Option<Arc<Self>> {
        (max > 0).then(|| {
            Arc::new(Self {
                max,
                open: AtomicUsize::new(0),
            })
        })
    }

    /// A slot for one more connection, unless the listener is full.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<ListenerSlot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1))
            .ok()
            .map(|_| ListenerSlot(Arc::clone(self)))
    }
}

/// What keeps a connection counted: its listener slot and its place in the gatekeeper's
/// counts. Lives in the connection's task as long as the connection.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    #[expect(dead_code, reason = "held for its Drop, which frees the listener slot")]
    pub(crate) listener: Option<ListenerSlot>,
    pub(crate) gate: Option<ConnectionGuard>,
}

/// Why a connection was refused admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denied {
    /// The listener's `max_connections`.
    Listener,
    /// `limits.max_connections`.
    Total,
    /// `limits.max_connections_per_address`.
    Address,
    /// `limits.connection_rate`.
    Rate,
}

impl Denied {
    /// The label of the `ferry_connections_refused_total` metric.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Listener => "limit_listener",
            Self::Total => "limit_total",
            Self::Address => "limit_address",
            Self::Rate => "limit_rate",
        }
    }

    /// What an HTTP client is told: 429 for the rate, 503 for the counts.
    pub(crate) fn http_status(self) -> u16 {
        match self {
            Self::Rate => 429,
            _ => 503,
        }
    }
}

impl From<Refusal> for Denied {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::TooFast => Self::Rate,
            Refusal::TooMany(LimitExceeded::Total { .. }) => Self::Total,
            Refusal::TooMany(LimitExceeded::PerAddress { .. }) => Self::Address,
        }
    }
}

/// Takes a listener slot (if the listener has a limit); counts a refusal in `gate.stats`.
pub(crate) fn listener_slot(limit: Option<&Arc<ListenerLimit>>, gate: &Gatekeeper) -> Result<Option<ListenerSlot>, Denied> {
    match limit {
        None => Ok(None),
        Some(limit) => limit.try_acquire().map(Some).ok_or_else(|| {
            SecurityStats::bump(&gate.stats.refused_listener);
            Denied::Listener
        }),
    }
}

/// Admits `peer` at the gatekeeper (counted there when refused): the guard that keeps
/// it counted, and how long to hold it before serving it (the connection rate's pacing).
pub(crate) fn admit(gate: &Gatekeeper, peer: IpAddr) -> Result<(ConnectionGuard, Duration), Denied> {
    gate.admit(peer, Instant::now())
        .map(|admitted| (admitted.guard, admitted.wait))
        .map_err(Denied::from)
}

/// Logs refusals: each at debug level, and a warning at most once per second with the
/// number refused since the last one, so that a flood does not flood the log.
#[derive(Debug)]
pub(crate) struct RefusalLog {
    epoch: Instant,
    pending: AtomicU64,
    last_warn_ms: AtomicU64,
    last_reason: Mutex<&'static str>,
}

impl Default for RefusalLog {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            pending: AtomicU64::new(0),
            // Far enough in the past that the first refusal warns at once.
            last_warn_ms: AtomicU64::new(0),
            last_reason: Mutex::new(""),
        }
    }
}

const WARN_EVERY: Duration = Duration::from_secs(1);

impl RefusalLog {
    /// Counts and logs one refused connection.
    pub(crate) fn refused(&self, metrics: &Metrics, listener: &'static str, peer: std::net::SocketAddr, reason: &'static str) {
        metrics.refused(reason);
        debug!(%peer, listener, reason, "connection refused");
        self.pending.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_reason.lock() {
            *last = reason;
        }
        let now_ms = u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1000);
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < WARN_EVERY.as_millis() as u64 {
            return;
        }
        if self
            .last_warn_ms
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            let refused = self.pending.swap(0, Ordering::Relaxed);
            let latest = self.last_reason.lock().map(|r| *r).unwrap_or("");
            warn!(
                refused,
                latest_reason = latest,
                latest_peer = %peer,
                "connections refused by limits (at most one such line per second; see ferry_connections_refused_total)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_limit_counts_slots_until_dropped() {
        assert!(ListenerLimit::new(0).is_none(), "0 means no limit");
        let limit = ListenerLimit::new(2).unwrap();
        let a = limit.try_acquire().unwrap();
        let _b = limit.try_acquire().unwrap();
        assert!(limit.try_acquire().is_none());
        drop(a);
        assert!(limit.try_acquire().is_some());
    }

    #[test]
    fn refusals_map_to_labels_and_statuses() {
        let gate = Gatekeeper::open();
        let limit = ListenerLimit::new(1);
        let _slot = listener_slot(limit.as_ref(), &gate).unwrap();
        assert_eq!(listener_slot(limit.as_ref(), &gate).err(), Some(Denied::Listener));
        assert_eq!(gate.stats.refused_listener.load(Ordering::Relaxed), 1);
        assert_eq!(Denied::from(Refusal::TooFast).http_status(), 429);
        assert_eq!(Denied::Address.http_status(), 503);
        assert_eq!(Denied::Total.label(), "limit_total");
    }

    #[test]
    fn refusal_log_warns_once_per_second_at_most() {
        let log = RefusalLog::default();
        let m = Metrics::default();
        let peer = "127.0.0.1:1".parse().unwrap();
        for _ in 0..100 {
            log.refused(&m, "ws", peer, "limit_rate");
        }
        // The first warned at once; the other 99 wait for the next warning.
        assert_eq!(log.pending.load(Ordering::Relaxed), 99);
        assert!(m.render().contains("ferry_connections_refused_total{reason=\"limit_rate\"} 100"));
    }
}
