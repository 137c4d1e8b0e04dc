//! The connections that are open now, so that shutdown can reach each one through its
//! doorbell instead of every connection polling a shared cancellation token on every
//! wake-up (that token's waiter list sits behind one lock for all connections).
//!
//! The list itself is the core's [`Connections`] registry, shared with whoever reads it
//! (the admin API): each entry is the connection's own `Arc<ConnectionInfo>`, so listing
//! a connection allocates nothing beyond the map's slot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ferry_core::{ConnectionInfo, Connections};

/// Every open connection, by connection id, and whether shutdown has begun.
#[derive(Debug, Default)]
pub(crate) struct LiveConnections {
    stopping: AtomicBool,
    list: Arc<Connections>,
}

impl LiveConnections {
    /// Open connections listed in `list` (shared with the admin API).
    pub(crate) fn new(list: Arc<Connections>) -> Self {
        Self {
            stopping: AtomicBool::new(false),
            list,
        }
    }

    /// Lists connection `info`, to be rung at shutdown, until [`LiveConnections::delist`].
    pub(crate) fn enlist(&self, info: &Arc<ConnectionInfo>) {
        self.list.insert(info.clone());
    }

    /// Takes connection `id` off the list: it has closed.
    pub(crate) fn delist(&self, id: u64) {
        self.list.remove(id);
    }

    /// Whether shutdown has begun: a connection checks this after each wake-up.
    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Begins shutdown: sets the flag, then rings every listed connection. A connection
    /// listed after the rings sees the flag on its first turn of the loop.
    pub(crate) fn stop_all(&self) {
        self.stopping.store(true, Ordering::Release);
        self.list.wake_all();
    }

    /// How many connections are listed.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.list.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::{Carrier, Wakeup};
    use std::time::Duration;

    fn info(id: u64) -> Arc<ConnectionInfo> {
        Arc::new(ConnectionInfo {
            id,
            peer: "127.0.0.1:1".parse().unwrap(),
            listener: "ws",
            tls: false,
            carrier: Carrier::WebSocket,
            subprotocol: None,
            wakeup: Wakeup::new(),
            credentials: None,
            monitor: Default::default(),
        })
    }

    #[tokio::test]
    async fn stop_all_rings_listed_connections_and_sets_the_flag() {
        let live = LiveConnections::default();
        let (a, b) = (info(1), info(2));
        live.enlist(&a);
        live.enlist(&b);
        assert!(!live.stopping());
        live.delist(2);
        assert_eq!(live.len(), 1);
        live.stop_all();
        assert!(live.stopping());
        tokio::time::timeout(Duration::from_secs(1), a.wakeup.woken())
            .await
            .expect("listed connection rung");
        let unlisted = tokio::time::timeout(Duration::from_millis(20), b.wakeup.woken()).await;
        assert!(unlisted.is_err(), "a connection that left is not rung");
        live.delist(1);
        assert_eq!(live.len(), 0);
    }
}
