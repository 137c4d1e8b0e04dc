//! The transport's metrics, served as Prometheus text at `GET /metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: u16,
}

/// Counters and gauges of the transport, cheap to update from any task.
pub struct Metrics {
    registry: Registry,
    opened: Family<ListenerLabel, Counter>,
    active: Family<ListenerLabel, Gauge>,
    refused: Family<ReasonLabel, Counter>,
    closes: Family<CodeLabel, Counter>,
    http_requests: Family<RouteLabel, Counter>,
    tasks: Gauge,
    lingered: Counter,
    linger_discarded: Counter,
    linger_cut: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ferry");
        let opened = Family::<ListenerLabel, Counter>::default();
        let active = Family::<ListenerLabel, Gauge>::default();
        let refused = Family::<ReasonLabel, Counter>::default();
        let closes = Family::<CodeLabel, Counter>::default();
        let http_requests = Family::<RouteLabel, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests handed to a registered route (health, metrics, admin, messaging, dashboard), per route",
            http_requests.clone(),
        );
        let tasks = Gauge::default();
        registry.register(
            "connections_opened",
            "Connections whose protocol session started, per listener",
            opened.clone(),
        );
        registry.register("connections_active", "Connections open now, per listener", active.clone());
        registry.register(
            "connections_refused",
            "Connections refused before a session started (limits, PROXY protocol, handshake, bearer token, TLS, timeouts), per reason",
            refused.clone(),
        );
        registry.register(
            "websocket_closes_sent",
            "WebSocket close frames sent, per close code",
            closes.clone(),
        );
        registry.register("runtime_alive_tasks", "Tasks alive in the broker's runtime", tasks.clone());
        let lingered = Counter::default();
        let linger_discarded = Counter::default();
        let linger_cut = Counter::default();
        registry.register(
            "lingering_closes",
            "Connections the broker ended that were drained before closing (listeners.linger_timeout)",
            lingered.clone(),
        );
        registry.register(
            "linger_discarded_bytes",
            "Bytes read and discarded from connections being closed",
            linger_discarded.clone(),
        );
        registry.register(
            "linger_cut",
            "Lingering closes cut short by listeners.linger_timeout or listeners.linger_max_bytes",
            linger_cut.clone(),
        );
        Self {
            registry,
            opened,
            active,
            refused,
            closes,
            http_requests,
            tasks,
            lingered,
            linger_discarded,
            linger_cut,
        }
    }
}

/// Keeps a connection counted as active until dropped.
pub struct ActiveGuard {
    gauge: Gauge,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl Metrics {
    /// Serve another component's metrics too: `collector` is asked for its current
    /// values at every scrape (the core and the adapters keep plain atomics).
    pub fn register_collector(&mut self, collector: Box<dyn prometheus_client::collector::Collector>) {
        self.registry.register_collector(collector);
    }

    /// Count a new connection on `listener`; it stays active while the guard lives.
    pub fn connection_opened(&self, listener: &'static str) -> ActiveGuard {
        self.opened.get_or_create(&ListenerLabel { listener }).inc();
        let gauge = self.active.get_or_create(&ListenerLabel { listener }).clone();
        gauge.inc();
        ActiveGuard { gauge }
    }

    /// Count a connection refused before its session started.
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Count an HTTP request handed to the routes named `route`.
    pub fn http_request(&self, route: &'static str) {
        self.http_requests.get_or_create(&RouteLabel { route }).inc();
    }

    /// Count a close frame sent with `code`.
    pub fn close_sent(&self, code: ferry_core::CloseCode) {
        self.closes.get_or_create(&CodeLabel { code: code.as_u16() }).inc();
    }

    /// Count a lingering close that discarded `bytes`; `cut` when a bound ended it
    /// before the peer closed.
    pub fn lingered(&self, bytes: usize, cut: bool) {
        self.lingered.inc();
        self.linger_discarded.inc_by(bytes as u64);
        if cut {
            self.linger_cut.inc();
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            self.tasks.set(handle.metrics().num_alive_tasks() as i64);
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_active_gauge() {
        let m = Metrics::default();
        let guard = m.connection_opened("ws");
        m.refused("origin");
        m.close_sent(ferry_core::CloseCode::MESSAGE_TOO_BIG);
        let text = m.render();
        assert!(text.contains("ferry_connections_opened_total{listener=\"ws\"} 1"), "{text}");
        assert!(text.contains("ferry_connections_active{listener=\"ws\"} 1"), "{text}");
        assert!(text.contains("ferry_connections_refused_total{reason=\"origin\"} 1"), "{text}");
        assert!(text.contains("ferry_websocket_closes_sent_total{code=\"1009\"} 1"), "{text}");
        drop(guard);
        assert!(m.render().contains("ferry_connections_active{listener=\"ws\"} 0"));
    }
}
