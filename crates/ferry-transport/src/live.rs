//! The connections that are open now, so that shutdown can reach each one through its
//! doorbell instead of every connection polling a shared cancellation token on every
//! wake-up (that token's waiter list sits behind one lock for all connections).

use std::sync::atomic::{AtomicBool, Ordering};

use dashmap::DashMap;
use ferry_core::Wakeup;

/// Every open connection's doorbell, by connection id, and whether shutdown has begun.
#[derive(Debug, Default)]
pub(crate) struct LiveConnections {
    stopping: AtomicBool,
    wakeups: DashMap<u64, Wakeup>,
}

impl LiveConnections {
    /// Lists connection `id` until the returned guard drops.
    pub(crate) fn enlist<'a>(&'a self, id: u64, wakeup: &Wakeup) -> Enlisted<'a> {
        self.wakeups.insert(id, wakeup.clone());
        Enlisted { live: self, id }
    }

    /// Whether shutdown has begun: a connection checks this after each wake-up.
    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Begins shutdown: sets the flag, then rings every listed connection. A connection
    /// listed after the rings sees the flag on its first turn of the loop.
    pub(crate) fn stop_all(&self) {
        self.stopping.store(true, Ordering::Release);
        for entry in &self.wakeups {
            entry.value().wake();
        }
    }

    /// How many connections are listed.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.wakeups.len()
    }
}

/// Keeps a connection listed in [`LiveConnections`] while it lives.
pub(crate) struct Enlisted<'a> {
    live: &'a LiveConnections,
    id: u64,
}

impl Drop for Enlisted<'_> {
    fn drop(&mut self) {
        self.live.wakeups.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn stop_all_rings_listed_connections_and_sets_the_flag() {
        let live = LiveConnections::default();
        let (a, b) = (Wakeup::new(), Wakeup::new());
        let guard_a = live.enlist(1, &a);
        let guard_b = live.enlist(2, &b);
        assert!(!live.stopping());
        drop(guard_b);
        assert_eq!(live.len(), 1);
        live.stop_all();
        assert!(live.stopping());
        tokio::time::timeout(Duration::from_secs(1), a.woken())
            .await
            .expect("listed connection rung");
        let unlisted = tokio::time::timeout(Duration::from_millis(20), b.woken()).await;
        assert!(unlisted.is_err(), "a connection that left is not rung");
        drop(guard_a);
        assert_eq!(live.len(), 0);
    }
}
