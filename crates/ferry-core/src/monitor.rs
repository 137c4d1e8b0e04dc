//! Read-only views of the broker for operators, in the manner of the NATS server's
//! `monitor.go`: plain structs copied out of the live state, and the small pieces of
//! live state they are read from.
//!
//! * [`ConnectionMonitor`] rides inside every [`ConnectionInfo`]: what the session learnt
//!   of its client (protocol, version, client id, user), a few counters, and an
//!   administrator's request to close the connection (a kick, rung through the
//!   connection's [`Wakeup`](crate::Wakeup)).
//! * [`Connections`] is the registry of open connections, by connection id, that the
//!   transport fills and the admin API reads ([`ConnectionSummary`]).
//!
//! Nothing here reads the clock: the transport stamps `connected_at` when it builds the
//! [`ConnectionInfo`]. Every lock is a short, leaf lock: copy out, then act.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use foldhash::fast::RandomState;
use parking_lot::Mutex;

use crate::adapter::{Carrier, ConnectionInfo};

/// What a session learnt of its client once the protocol's CONNECT was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientDetails {
    /// `mqtt` or `stomp`.
    pub protocol: &'static str,
    /// The protocol version: `3.1`, `3.1.1`, `5.0`, `1.0`, `1.1`, `1.2`.
    pub version: &'static str,
    /// The MQTT client id; for STOMP, `stomp-` and the connection id.
    pub client_id: Arc<str>,
    /// The authenticated user name, if any.
    pub user: Option<Arc<str>>,
}

/// Per-connection counters, bumped by the transport (bytes) and the session (messages).
#[derive(Debug, Default)]
pub struct ConnectionCounters {
    /// Messages the client published (MQTT PUBLISH, STOMP SEND).
    pub messages_in: AtomicU64,
    /// Messages written to the client (MQTT PUBLISH, STOMP MESSAGE).
    pub messages_out: AtomicU64,
    /// Bytes read from the socket.
    pub bytes_in: AtomicU64,
    /// Bytes handed to the socket.
    pub bytes_out: AtomicU64,
}

impl ConnectionCounters {
    /// Adds one to `counter` (relaxed: the counters are read for display only).
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// The operator's view of one connection, kept inside its [`ConnectionInfo`] so that the
/// registry needs no allocation of its own per connection.
#[derive(Debug, Default)]
pub struct ConnectionMonitor {
    /// When the connection was accepted, in milliseconds since the Unix epoch (set by the
    /// transport; 0 when unknown).
    pub connected_at_ms: u64,
    /// The counters.
    pub counters: ConnectionCounters,
    client: Mutex<Option<Box<ClientDetails>>>,
    kick: AtomicBool,
}

impl Clone for ConnectionMonitor {
    /// A copy with the same values, not shared with the original.
    fn clone(&self) -> Self {
        let c = &self.counters;
        let load = |a: &AtomicU64| AtomicU64::new(a.load(Ordering::Relaxed));
        Self {
            connected_at_ms: self.connected_at_ms,
            counters: ConnectionCounters {
                messages_in: load(&c.messages_in),
                messages_out: load(&c.messages_out),
                bytes_in: load(&c.bytes_in),
                bytes_out: load(&c.bytes_out),
            },
            client: Mutex::new(self.client.lock().clone()),
            kick: AtomicBool::new(self.kick.load(Ordering::Relaxed)),
        }
    }
}

impl ConnectionMonitor {
    /// A monitor for a connection accepted at `connected_at_ms` (Unix milliseconds).
    pub fn new(connected_at_ms: u64) -> Self {
        Self {
            connected_at_ms,
            ..Self::default()
        }
    }

    /// Records who the client is (called by the session when its CONNECT is accepted).
    pub fn set_client(&self, details: ClientDetails) {
        *self.client.lock() = Some(Box::new(details));
    }

    /// Who the client is, if its CONNECT was accepted.
    pub fn client(&self) -> Option<ClientDetails> {
        self.client.lock().as_deref().cloned()
    }

    /// Asks the connection to close on behalf of an administrator: the caller rings the
    /// connection's [`Wakeup`](crate::Wakeup) afterwards (see [`Connections::kick`]).
    pub fn request_kick(&self) {
        self.kick.store(true, Ordering::Release);
    }

    /// Whether a kick was requested; clears the request.
    pub fn take_kick(&self) -> bool {
        self.kick.swap(false, Ordering::AcqRel)
    }
}

/// How a connection travels, as the admin API names it.
pub fn transport_name(carrier: Carrier, tls: bool) -> &'static str {
    match (carrier, tls) {
        (Carrier::WebSocket, false) => "ws",
        (Carrier::WebSocket, true) => "wss",
        (Carrier::Stream, false) => "tcp",
        (Carrier::Stream, true) => "tls",
    }
}

/// One connection, copied out of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSummary {
    /// The transport's connection number.
    pub id: u64,
    /// `mqtt`, `stomp`, or `""` while the client has not connected yet.
    pub protocol: &'static str,
    /// The protocol version, `""` until connected.
    pub version: &'static str,
    /// `ws`, `wss`, `tcp` or `tls`.
    pub transport: &'static str,
    /// The listener that accepted it.
    pub listener: &'static str,
    /// The client's address.
    pub peer: SocketAddr,
    /// The authenticated user, if any.
    pub user: Option<Arc<str>>,
    /// The client id, once connected.
    pub client_id: Option<Arc<str>>,
    /// When it was accepted (Unix milliseconds).
    pub connected_at_ms: u64,
    /// Messages published by the client.
    pub messages_in: u64,
    /// Messages written to the client.
    pub messages_out: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
}

impl ConnectionSummary {
    /// The summary of `info` now.
    pub fn of(info: &ConnectionInfo) -> Self {
        let m = &info.monitor;
        let client = m.client();
        let c = &m.counters;
        Self {
            id: info.id,
            protocol: client.as_ref().map_or("", |d| d.protocol),
            version: client.as_ref().map_or("", |d| d.version),
            transport: transport_name(info.carrier, info.tls),
            listener: info.listener,
            peer: info.peer,
            user: client.as_ref().and_then(|d| d.user.clone()),
            client_id: client.map(|d| d.client_id),
            connected_at_ms: m.connected_at_ms,
            messages_in: c.messages_in.load(Ordering::Relaxed),
            messages_out: c.messages_out.load(Ordering::Relaxed),
            bytes_in: c.bytes_in.load(Ordering::Relaxed),
            bytes_out: c.bytes_out.load(Ordering::Relaxed),
        }
    }
}

/// Totals over every connection, open or closed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionTotals {
    /// Connections open now.
    pub open: usize,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Messages published by clients.
    pub messages_in: u64,
    /// Messages written to clients.
    pub messages_out: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
}

const SHARDS: usize = 16;

type Shard = Mutex<HashMap<u64, Arc<ConnectionInfo>, RandomState>>;

/// The open connections, by connection id: the transport lists each connection when it
/// opens and delists it when it closes; the admin API and shutdown read it.
///
/// Sixteen shards, each a leaf lock held only to insert, remove or clone out `Arc`s
/// (ringing a [`Wakeup`](crate::Wakeup) under it is allowed: it takes no lock). A closed
/// connection's counters are folded into the totals when it is delisted.
#[derive(Debug)]
pub struct Connections {
    shards: [Shard; SHARDS],
    accepted: AtomicU64,
    closed: [AtomicU64; 4],
}

impl Default for Connections {
    fn default() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::default())),
            accepted: AtomicU64::new(0),
            closed: Default::default(),
        }
    }
}

impl Connections {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn shard(&self, id: u64) -> &Shard {
        #[allow(clippy::cast_possible_truncation)]
        &self.shards[(id as usize) % SHARDS]
    }

    /// Lists an open connection.
    pub fn insert(&self, info: Arc<ConnectionInfo>) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.shard(info.id).lock().insert(info.id, info);
    }

    /// Delists connection `id` (it closed), keeping its counters in the totals.
    pub fn remove(&self, id: u64) {
        let Some(info) = self.shard(id).lock().remove(&id) else {
            return;
        };
        let c = &info.monitor.counters;
        for (total, counter) in self.closed.iter().zip([&c.messages_in, &c.messages_out, &c.bytes_in, &c.bytes_out]) {
            total.fetch_add(counter.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// Connection `id`, if open.
    pub fn get(&self, id: u64) -> Option<Arc<ConnectionInfo>> {
        self.shard(id).lock().get(&id).cloned()
    }

    /// Every open connection, copied out (a reference count each), in id order.
    pub fn all(&self) -> Vec<Arc<ConnectionInfo>> {
        let mut out = Vec::with_capacity(self.len());
        for shard in &self.shards {
            out.extend(shard.lock().values().cloned());
        }
        out.sort_unstable_by_key(|i| i.id);
        out
    }

    /// A summary of every open connection, in id order.
    pub fn summaries(&self) -> Vec<ConnectionSummary> {
        self.all().iter().map(|i| ConnectionSummary::of(i)).collect()
    }

    /// The open connection whose client id is `client_id`, or whose connection number is
    /// `client_id` written in decimal.
    pub fn find(&self, client_id: &str) -> Option<Arc<ConnectionInfo>> {
        let by_number = client_id.parse::<u64>().ok().and_then(|id| self.get(id));
        self.all()
            .into_iter()
            .find(|i| i.monitor.client().is_some_and(|d| &*d.client_id == client_id))
            .or(by_number)
    }

    /// Asks connection `info` to close on an administrator's behalf (its session writes
    /// its last words: MQTT 5 DISCONNECT 0x98, a STOMP ERROR).
    pub fn kick(info: &ConnectionInfo) {
        info.monitor.request_kick();
        info.wakeup.wake();
    }

    /// Rings every open connection's doorbell.
    pub fn wake_all(&self) {
        for shard in &self.shards {
            for info in shard.lock().values() {
                info.wakeup.wake();
            }
        }
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Totals over every connection, open or closed.
    pub fn totals(&self) -> ConnectionTotals {
        let closed = |i: usize| self.closed[i].load(Ordering::Relaxed);
        let mut t = ConnectionTotals {
            open: 0,
            accepted: self.accepted.load(Ordering::Relaxed),
            messages_in: closed(0),
            messages_out: closed(1),
            bytes_in: closed(2),
            bytes_out: closed(3),
        };
        for info in self.all() {
            let c = &info.monitor.counters;
            t.open += 1;
            t.messages_in += c.messages_in.load(Ordering::Relaxed);
            t.messages_out += c.messages_out.load(Ordering::Relaxed);
            t.bytes_in += c.bytes_in.load(Ordering::Relaxed);
            t.bytes_out += c.bytes_out.load(Ordering::Relaxed);
        }
        t
    }
}

/// One subscription, copied out of the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSummary {
    /// The filter, in MQTT syntax (without the `$share/GROUP/` prefix).
    pub filter: String,
    /// The `$share` group, for a shared subscription.
    pub group: Option<Arc<str>>,
    /// The client that holds it, when its adapter named one.
    pub client_id: Option<Arc<str>>,
    /// The granted QoS (0..=2).
    pub qos: u8,
}

/// One session of the session registry (MQTT's), online or kept offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    /// Its client id.
    pub client_id: Arc<str>,
    /// The connection serving it now; `None` while offline.
    pub connection: Option<u64>,
    /// Deliveries waiting in its queue.
    pub queued: usize,
}

/// One retained message, copied out of the store.
#[derive(Debug, Clone)]
pub struct RetainedSummary {
    /// Its topic.
    pub topic: String,
    /// The message (shared, not copied).
    pub message: Arc<crate::Message>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Wakeup;

    fn info(id: u64) -> Arc<ConnectionInfo> {
        Arc::new(ConnectionInfo {
            id,
            peer: "127.0.0.1:9".parse().unwrap(),
            listener: "ws",
            tls: false,
            carrier: Carrier::WebSocket,
            subprotocol: None,
            wakeup: Wakeup::new(),
            credentials: None,
            monitor: ConnectionMonitor::new(5),
        })
    }

    #[test]
    fn registry_lists_finds_kicks_and_keeps_totals() {
        let reg = Connections::new();
        let (a, b) = (info(1), info(2));
        reg.insert(a.clone());
        reg.insert(b.clone());
        b.monitor.set_client(ClientDetails {
            protocol: "mqtt",
            version: "5.0",
            client_id: "dev-1".into(),
            user: Some("ann".into()),
        });
        ConnectionCounters::add(&a.monitor.counters.bytes_in, 10);
        ConnectionCounters::bump(&b.monitor.counters.messages_in);
        assert_eq!(reg.len(), 2);
        assert_eq!(reg.find("dev-1").map(|i| i.id), Some(2));
        assert_eq!(reg.find("1").map(|i| i.id), Some(1));
        assert!(reg.find("nobody").is_none());
        let s = reg.summaries();
        assert_eq!((s[1].protocol, s[1].version, s[1].transport), ("mqtt", "5.0", "ws"));
        assert_eq!(s[1].user.as_deref(), Some("ann"));
        Connections::kick(&b);
        assert!(b.monitor.take_kick());
        assert!(!b.monitor.take_kick(), "a kick is taken once");
        reg.remove(1);
        let t = reg.totals();
        assert_eq!((t.open, t.accepted, t.bytes_in, t.messages_in), (1, 2, 10, 1));
    }
}
