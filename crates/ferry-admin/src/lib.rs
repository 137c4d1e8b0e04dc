//! Ferry you can see into: the admin API and dashboard (on the admin listener), the
//! `$SYS` topics, and HTTP messaging (`POST /api/v1/publish`, Server-Sent Events at
//! `GET /api/v1/events`) on the public listeners.
//!
//! Everything here sits on two seams: the core's read-only data functions
//! ([`ferry_core::Connections`], [`ferry_core::Router::subscriptions`],
//! [`ferry_core::Router::retained_list`], session summaries) and the transport's HTTP
//! seam ([`ferry_transport::HttpRoutes`]). It knows no protocol: the binary passes what
//! the adapters know through [`BrokerSources`]. Authentication and the ACL of HTTP
//! messaging are the [`ferry_auth::Gatekeeper`]'s, as for every client.
//!
//! No lock is held across an `.await`; an event stream is one QoS 0 subscriber with a
//! bounded [`ferry_core::Outbox`] of its own, drained by the HTTP connection's task.

// A handler's `Err` is the HTTP answer to send instead, built once per refused request:
// its size does not matter, and boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

mod api;
pub mod config;
mod dashboard;
pub mod error;
pub mod json;
pub mod keys;
mod messaging;
mod stats;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use ferry_auth::limits::TokenBucket;
use ferry_auth::Gatekeeper;
use ferry_core::monitor::SessionSummary;
use ferry_core::{Connections, Router};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;

pub use config::{AdminSettings, HttpApiSettings};
pub use error::AdminError;
pub use keys::{ApiKeys, Role};
pub use stats::{Sample, Snapshot};

/// What only the adapters know, handed over by the binary.
pub trait BrokerSources: Send + Sync + 'static {
    /// The MQTT sessions, online or kept offline.
    fn sessions(&self) -> Vec<SessionSummary>;

    /// Named counters of the adapters, published under `$SYS/broker/` and shown by
    /// `/api/v1/stats` (`mqtt/connects/received`, `stomp/messages/received`, …).
    fn counters(&self) -> Vec<(&'static str, u64)>;
}

/// No adapters' figures (for tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoSources;

impl BrokerSources for NoSources {
    fn sessions(&self) -> Vec<SessionSummary> {
        Vec::new()
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

/// One listener as `/api/v1/listeners` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ListenerInfo {
    /// Its name (`ws`, `mqtt`, `admin`, …).
    pub name: &'static str,
    /// The address it bound.
    pub address: SocketAddr,
    /// What it serves (`mqtt+stomp over WebSocket, HTTP`, `mqtt`, …).
    pub protocol: &'static str,
    /// Whether it is TLS.
    pub tls: bool,
}

ferry_core::counters! {
    /// The admin crate's counters (exported by the binary's `/metrics`).
    pub struct AdminStats {
        http_publishes: Counter("http_publishes", "HTTP publishes accepted (admin and public listeners)"),
        http_publish_refused: Counter("http_publishes_refused", "HTTP publishes refused: bad body, too large (http_api.max_body, http_api.max_payload), credentials, ACL, rate"),
        sse_streams: Gauge("sse_streams", "Server-Sent Event streams open (at most http_api.max_streams)"),
        sse_opened: Counter("sse_streams_opened", "Server-Sent Event streams opened"),
        sse_events: Counter("sse_events", "Events written to Server-Sent Event streams"),
        sse_dropped: Counter("sse_dropped", "Events dropped because a stream's queue was full (http_api.sse_queue), counted when the stream closes"),
        kicks: Counter("admin_kicks", "Clients closed through the admin API"),
        sys_published: Counter("sys_published", "$SYS messages published (admin.sys_interval)"),
        auth_refused: Counter("admin_auth_refused", "Admin API requests refused for want of a valid key or role"),
    }
}

/// The admin side of the broker: shared by the admin routes, the messaging routes and
/// the ticker that samples and publishes `$SYS`.
pub struct Admin {
    router: Arc<Router>,
    connections: Arc<Connections>,
    gate: Arc<Gatekeeper>,
    sources: Arc<dyn BrokerSources>,
    settings: AdminSettings,
    http_api: HttpApiSettings,
    keys: RwLock<Arc<ApiKeys>>,
    started: Instant,
    samples: Mutex<stats::Ring>,
    sys: Mutex<stats::SysState>,
    listeners: RwLock<Vec<ListenerInfo>>,
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
    next_id: AtomicU64,
    /// Counters.
    pub stats: AdminStats,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// Everything [`Admin::new`] needs.
pub struct AdminParts {
    /// The broker's router.
    pub router: Arc<Router>,
    /// The registry of open connections (the transport fills it).
    pub connections: Arc<Connections>,
    /// Authentication and ACL for HTTP messaging.
    pub gate: Arc<Gatekeeper>,
    /// What the adapters know.
    pub sources: Arc<dyn BrokerSources>,
    /// `[admin]`.
    pub settings: AdminSettings,
    /// `[http_api]`.
    pub http_api: HttpApiSettings,
    /// The admin listener's address, to decide whether keys are required.
    pub admin_bind: SocketAddr,
    /// When the broker started.
    pub started: Instant,
}

impl Admin {
    /// The admin side. Fails when the admin listener binds a non-loopback address and
    /// `admin.api_keys_file` names no keys, or the key file is unusable.
    pub fn new(parts: AdminParts) -> Result<Arc<Admin>, AdminError> {
        let keys = match &parts.settings.api_keys_file {
            Some(path) => ApiKeys::load(path, &parts.settings.admin_keys)?,
            None if parts.admin_bind.ip().is_loopback() => ApiKeys::open(),
            None => return Err(AdminError::PublicWithoutKeys(parts.admin_bind)),
        };
        Ok(Arc::new(Admin {
            router: parts.router,
            connections: parts.connections,
            gate: parts.gate,
            sources: parts.sources,
            settings: parts.settings,
            http_api: parts.http_api,
            keys: RwLock::new(Arc::new(keys)),
            started: parts.started,
            samples: Mutex::new(stats::Ring::new()),
            sys: Mutex::new(stats::SysState::default()),
            listeners: RwLock::new(Vec::new()),
            buckets: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            stats: AdminStats::default(),
        }))
    }

    /// Re-reads the API key file (SIGHUP). Keeps the old keys if the new file is bad.
    pub fn reload_keys(&self) -> Result<usize, AdminError> {
        let Some(path) = &self.settings.api_keys_file else {
            return Ok(0);
        };
        let keys = ApiKeys::load(path, &self.settings.admin_keys)?;
        let n = keys.len();
        *self.keys.write() = Arc::new(keys);
        Ok(n)
    }

    /// Records the listeners that run (after the transport bound them).
    pub fn set_listeners(&self, listeners: Vec<ListenerInfo>) {
        *self.listeners.write() = listeners;
    }

    /// The `[admin]` settings.
    pub fn settings(&self) -> &AdminSettings {
        &self.settings
    }

    /// The admin listener's routes: the API (`/api/v1/`) and the dashboard (`/`).
    pub fn admin_routes(self: &Arc<Self>) -> Vec<Arc<dyn ferry_transport::HttpRoutes>> {
        vec![
            Arc::new(api::AdminRoutes { admin: self.clone() }),
            Arc::new(dashboard::DashboardRoutes { admin: self.clone() }),
        ]
    }

    /// The public listeners' messaging routes: `POST /api/v1/publish`, `GET
    /// /api/v1/events`.
    pub fn messaging_routes(self: &Arc<Self>) -> Arc<dyn ferry_transport::HttpRoutes> {
        Arc::new(messaging::MessagingRoutes { admin: self.clone() })
    }

    /// A new broker-wide sequence number (publish ids, event ids).
    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// The current keys.
    fn keys(&self) -> Arc<ApiKeys> {
        self.keys.read().clone()
    }
}
