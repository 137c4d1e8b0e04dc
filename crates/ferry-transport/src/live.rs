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
    /// Lists connection `id`, to be rung at shutdown, until [`LiveConnections::delist`].
    pub(crate) fn enlist(&self, id: u64, wakeup: &Wakeup) {
        self.wakeups.insert(id, wakeup.clone());
    }

    /// Takes connection `id` off the list: it has closed.
    pub(crate) fn delist(&self, id: u64) {
        self.wakeups.remove(&id);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn stop_all_rings_listed_connections_and_sets_the_flag() {
        let live = LiveConnections::default();
        let (a, b) = (Wakeup::new(), Wakeup::new());
        live.enlist(1, &a);
        live.enlist(2, &b);
        assert!(!live.stopping());
        live.delist(2);
        assert_eq!(live.len(), 1);
        live.stop_all();
        assert!(live.stopping());
        tokio::time::timeout(Duration::from_secs(1), a.woken())
            .await
            .expect("listed connection rung");
        let unlisted = tokio::time::timeout(Duration::from_millis(20), b.woken()).await;
        assert!(unlisted.is_err(), "a connection that left is not rung");
        live.delist(1);
        assert_eq!(live.len(), 0);
    }
}
