//! [`CoreParts`]: the broker-wide parts every protocol adapter is built from. A new
//! broker-wide part (a store handle, the cluster link) is added here once, instead of as
//! one more constructor on each adapter.

use std::sync::Arc;

use ferry_core::Router;

use crate::gate::Gatekeeper;

/// The broker-wide parts an adapter shares with every other: the router all protocols
/// publish through, and the gatekeeper that authenticates, authorizes and rate-limits.
#[derive(Clone)]
pub struct CoreParts {
    /// The broker-wide router (subscriptions of every protocol, retained messages).
    pub router: Arc<Router>,
    /// Authentication, ACL and per-connection limits.
    pub gate: Arc<Gatekeeper>,
}

impl CoreParts {
    /// Parts from a router and a gatekeeper.
    pub fn new(router: Arc<Router>, gate: Arc<Gatekeeper>) -> Self {
        Self { router, gate }
    }

    /// A fresh in-memory router and a gatekeeper that lets everyone do anything
    /// ([`Gatekeeper::open`]): tests and tools.
    pub fn open() -> Self {
        Self::new(Arc::new(Router::default()), Arc::new(Gatekeeper::open()))
    }

    /// [`CoreParts::open`] around an existing router.
    pub fn open_with(router: Arc<Router>) -> Self {
        Self::new(router, Arc::new(Gatekeeper::open()))
    }
}

impl std::fmt::Debug for CoreParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreParts").finish_non_exhaustive()
    }
}
