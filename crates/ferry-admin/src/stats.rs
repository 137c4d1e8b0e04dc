//! The broker's figures: one [`Snapshot`] read from the core's registries and counters,
//! the ring buffer of samples behind the dashboard's charts, and the `$SYS` tree
//! published from them (Mosquitto's names, plus `$SYS/broker/stomp/...` and
//! `$SYS/broker/websocket/...`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use ferry_core::{Message, QoS, TopicName};
use serde::Serialize;

use crate::Admin;

/// The broker's figures at one instant.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// Ferry's version.
    pub version: &'static str,
    /// Seconds since the broker started.
    pub uptime_seconds: u64,
    /// Open connections (every protocol, including ones not connected yet).
    pub connections: usize,
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Open connections by protocol (`mqtt`, `stomp`, `pending`).
    pub by_protocol: BTreeMap<&'static str, usize>,
    /// Open connections by transport (`ws`, `wss`, `tcp`, `tls`).
    pub by_transport: BTreeMap<&'static str, usize>,
    /// MQTT sessions known (online or kept offline).
    pub sessions: usize,
    /// MQTT sessions kept for clients that are away.
    pub sessions_offline: usize,
    /// Messages published into the router (all protocols, HTTP, `$SYS`, wills).
    pub messages_received: u64,
    /// Deliveries queued to subscribers.
    pub messages_sent: u64,
    /// Deliveries dropped because a subscriber's queue was full.
    pub messages_dropped: u64,
    /// Messages that matched no subscription.
    pub messages_unrouted: u64,
    /// Bytes read from clients.
    pub bytes_received: u64,
    /// Bytes written to clients.
    pub bytes_sent: u64,
    /// Subscriptions (a shared group counts once).
    pub subscriptions: usize,
    /// Retained messages.
    pub retained: usize,
    /// Bytes of retained topics and payloads.
    pub retained_bytes: usize,
    /// Event streams open.
    pub sse_streams: u64,
    /// HTTP publishes accepted.
    pub http_publishes: u64,
    /// Counters the adapters export (`mqtt/...`, `stomp/...`).
    pub adapters: BTreeMap<&'static str, u64>,
}

/// One sample of the dashboard's charts.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub t: u64,
    /// Messages received so far.
    pub received: u64,
    /// Deliveries so far.
    pub sent: u64,
    /// Drops so far.
    pub dropped: u64,
    /// Open connections.
    pub connections: usize,
}

/// Exponentially damped per-minute rates over 1, 5 and 15 minutes, as Mosquitto's.
#[derive(Debug, Clone, Copy, Default)]
struct Load {
    last: u64,
    rates: [f64; 3],
}

impl Load {
    const WINDOWS: [f64; 3] = [60.0, 300.0, 900.0];

    fn update(&mut self, value: u64, dt: f64) {
        if dt <= 0.0 {
            return;
        }
        #[allow(clippy::cast_precision_loss)]
        let per_minute = value.saturating_sub(self.last) as f64 * 60.0 / dt;
        self.last = value;
        for (rate, window) in self.rates.iter_mut().zip(Self::WINDOWS) {
            let k = (-dt / window).exp();
            *rate = *rate * k + per_minute * (1.0 - k);
        }
    }
}

/// The `$SYS` publisher's memory: what was last published on each topic, and the loads.
#[derive(Debug, Default)]
pub(crate) struct SysState {
    published: HashMap<String, String>,
    loads: BTreeMap<&'static str, Load>,
    last: Option<Instant>,
}

impl Admin {
    /// The broker's figures now.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let totals = self.connections.totals();
        let mut by_protocol = BTreeMap::new();
        let mut by_transport = BTreeMap::new();
        for info in self.connections.all() {
            let protocol = info.monitor.client().map_or("pending", |c| c.protocol);
            *by_protocol.entry(protocol).or_insert(0) += 1;
            *by_transport
                .entry(ferry_core::monitor::transport_name(info.carrier, info.tls))
                .or_insert(0) += 1;
        }
        let sessions = self.sources.sessions();
        let r = &self.router.stats;
        Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: now.saturating_duration_since(self.started).as_secs(),
            connections: totals.open,
            connections_total: totals.accepted,
            by_protocol,
            by_transport,
            sessions_offline: sessions.iter().filter(|s| s.connection.is_none()).count(),
            sessions: sessions.len(),
            messages_received: r.published.load(Ordering::Relaxed),
            messages_sent: r.delivered.load(Ordering::Relaxed),
            messages_dropped: r.dropped.load(Ordering::Relaxed),
            messages_unrouted: r.unrouted.load(Ordering::Relaxed),
            bytes_received: totals.bytes_in,
            bytes_sent: totals.bytes_out,
            subscriptions: self.router.subscription_count(),
            retained: self.router.retained_count(),
            retained_bytes: self.router.retained_bytes(),
            sse_streams: self.stats.sse_streams.load(Ordering::Relaxed),
            http_publishes: self.stats.http_publishes.load(Ordering::Relaxed),
            adapters: self.sources.counters().into_iter().collect(),
        }
    }

    /// The samples kept, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().iter().copied().collect()
    }

    /// Takes a sample for the charts (called every `admin.sample_interval`).
    pub fn sample(&self, now: Instant, unix_ms: u64) {
        let s = self.snapshot(now);
        let mut ring = self.samples.lock();
        while ring.len() >= self.settings.max_samples.max(1) {
            ring.pop_front();
        }
        ring.push_back(Sample {
            t: unix_ms,
            received: s.messages_received,
            sent: s.messages_sent,
            dropped: s.messages_dropped,
            connections: s.connections,
        });
    }

    /// The `$SYS` topics and their values now (the loads as last computed).
    pub fn sys_values(&self, s: &Snapshot) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = Vec::new();
        let mut put = |topic: &str, value: String| v.push((format!("$SYS/broker/{topic}"), value));
        put("version", format!("ferry version {}", s.version));
        put("uptime", format!("{} seconds", s.uptime_seconds));
        let connected = s
            .by_protocol
            .iter()
            .filter(|(p, _)| **p != "pending")
            .map(|(_, n)| n)
            .sum::<usize>();
        put("clients/connected", connected.to_string());
        put("clients/disconnected", s.sessions_offline.to_string());
        put("clients/total", (connected + s.sessions_offline).to_string());
        put("connections/socket/count", s.connections.to_string());
        put("messages/received", s.messages_received.to_string());
        put("messages/sent", s.messages_sent.to_string());
        put("publish/messages/dropped", s.messages_dropped.to_string());
        put("bytes/received", s.bytes_received.to_string());
        put("bytes/sent", s.bytes_sent.to_string());
        put("subscriptions/count", s.subscriptions.to_string());
        put("retained messages/count", s.retained.to_string());
        put("store/messages/bytes", s.retained_bytes.to_string());
        put(
            "mqtt/clients/connected",
            s.by_protocol.get("mqtt").copied().unwrap_or(0).to_string(),
        );
        put(
            "stomp/clients/connected",
            s.by_protocol.get("stomp").copied().unwrap_or(0).to_string(),
        );
        let ws = s.by_transport.get("ws").copied().unwrap_or(0) + s.by_transport.get("wss").copied().unwrap_or(0);
        put("websocket/connections/count", ws.to_string());
        put("http/events/streams", s.sse_streams.to_string());
        put("http/publish/received", s.http_publishes.to_string());
        for (name, value) in &s.adapters {
            put(name, value.to_string());
        }
        let sys = self.sys.lock();
        for (name, load) in &sys.loads {
            for (rate, window) in load.rates.iter().zip(["1min", "5min", "15min"]) {
                put(&format!("load/{name}/{window}"), format!("{rate:.2}"));
            }
        }
        v
    }

    /// Publishes the `$SYS` topics whose values changed since the last call: retained,
    /// QoS 0 (called every `admin.sys_interval`). Returns how many were published.
    pub fn publish_sys(&self, now: Instant) -> usize {
        let s = self.snapshot(now);
        {
            let mut sys = self.sys.lock();
            let dt = sys.last.map_or(0.0, |l| now.saturating_duration_since(l).as_secs_f64());
            sys.last = Some(now);
            for (name, value) in [
                ("messages/received", s.messages_received),
                ("messages/sent", s.messages_sent),
                ("bytes/received", s.bytes_received),
                ("bytes/sent", s.bytes_sent),
                ("publish/dropped", s.messages_dropped),
                ("connections", s.connections_total),
            ] {
                let load = sys.loads.entry(name).or_insert(Load {
                    last: value,
                    rates: [0.0; 3],
                });
                load.update(value, dt);
            }
        }
        let values = self.sys_values(&s);
        let mut changed = Vec::new();
        {
            let mut sys = self.sys.lock();
            for (topic, value) in values {
                if sys.published.get(&topic) != Some(&value) {
                    sys.published.insert(topic.clone(), value.clone());
                    changed.push((topic, value));
                }
            }
        }
        let mut n = 0;
        for (topic, value) in changed {
            let Ok(topic) = TopicName::new(&topic) else { continue };
            let message = Message::new(topic, Bytes::from(value.into_bytes()), QoS::AtMostOnce, true);
            self.router.publish_own(Arc::new(message), now);
            n += 1;
        }
        self.stats.sys_published.fetch_add(n as u64, Ordering::Relaxed);
        n
    }
}

/// The sample ring's type.
pub(crate) type Ring = VecDeque<Sample>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_approach_a_steady_rate() {
        let mut l = Load::default();
        for i in 1..=200u64 {
            l.update(i * 100, 10.0); // 100 per 10 s: 600 per minute
        }
        assert!((l.rates[0] - 600.0).abs() < 1.0, "{:?}", l.rates);
        assert!(l.rates[2] > 500.0 && l.rates[2] < 600.0, "{:?}", l.rates);
    }
}
