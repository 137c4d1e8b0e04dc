//! The core's and the adapters' counters, read at every `/metrics` scrape.

use std::sync::Arc;

use ferry_auth::Gatekeeper;
use ferry_core::{Metric, MetricKind, Router};
use ferry_mqtt::MqttShared;
use ferry_stomp::StompShared;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Router, MQTT and STOMP counters as Prometheus metrics.
#[derive(Clone)]
pub(crate) struct BrokerCollector {
    /// The shared router.
    pub router: Arc<Router>,
    /// The MQTT adapter's shared state.
    pub mqtt: Arc<MqttShared>,
    /// The STOMP adapter's shared state.
    pub stomp: Arc<StompShared>,
    /// Authentication, ACL and limits.
    pub gate: Arc<Gatekeeper>,
    /// The admin API, `$SYS` and HTTP messaging.
    pub admin: Arc<ferry_admin::Admin>,
    /// The journal, when storage is on.
    pub journal: Option<Arc<ferry_store::BrokerJournal>>,
    /// The cluster link, when the node is in a cluster.
    pub cluster: Option<ferry_cluster::Cluster>,
}

impl std::fmt::Debug for BrokerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BrokerCollector")
    }
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: usize) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn counter_of(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// Every metric of a counters struct, as it declares them.
fn each(encoder: &mut DescriptorEncoder, metrics: impl Iterator<Item = Metric>) -> Result<(), std::fmt::Error> {
    for m in metrics {
        match m.kind {
            MetricKind::Counter => counter_of(encoder, m.name, m.help, m.value)?,
            MetricKind::Gauge => gauge(encoder, m.name, m.help, usize::try_from(m.value).unwrap_or(usize::MAX))?,
        }
    }
    Ok(())
}

/// The journal's counters (`storage_*`).
fn storage(e: &mut DescriptorEncoder, journal: &ferry_store::BrokerJournal) -> Result<(), std::fmt::Error> {
    let store = journal.store();
    let s = store.stats();
    let poisoned = usize::from(store.health().is_err());
    gauge(
        e,
        "storage_poisoned",
        "1 once a write or sync failed or the disk (storage.max_disk_bytes) is full: what needs the disk is refused",
        poisoned,
    )?;
    counter_of(e, "storage_records_written", "Records written to the log", s.records)?;
    counter_of(e, "storage_bytes_written", "Bytes written to the log", s.bytes)?;
    counter_of(e, "storage_batches", "Group commits: one write and one sync each", s.batches)?;
    counter_of(e, "storage_syncs", "fdatasync calls on log segments", s.syncs)?;
    let as_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    gauge(
        e,
        "storage_disk_bytes",
        "Bytes the store holds on disk (segments and snapshot); at most storage.max_disk_bytes",
        as_usize(s.disk_bytes),
    )?;
    gauge(e, "storage_segments", "Log segment files on disk", s.segments)?;
    gauge(
        e,
        "storage_queued_bytes",
        "Bytes waiting for the next group commit",
        as_usize(s.queued_bytes),
    )?;
    gauge(
        e,
        "storage_bytes_since_snapshot",
        "Log bytes since the last snapshot (one is taken once the log moves into a new segment and outgrows the last snapshot, or past storage.snapshot_after_bytes)",
        as_usize(s.bytes_since_snapshot),
    )?;
    gauge(e, "storage_durable_lsn", "The last log position on disk", as_usize(s.durable_lsn))
}

impl Collector for BrokerCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut e;
        each(e, self.admin.stats.metrics())?;
        each(e, self.router.stats.metrics())?;
        gauge(
            e,
            "subscriptions",
            "Subscriptions (a shared group counts once)",
            self.router.subscription_count(),
        )?;
        gauge(e, "retained_messages", "Retained messages", self.router.retained_count())?;
        if let Some(journal) = &self.journal {
            storage(e, journal)?;
        }
        if let Some(cluster) = &self.cluster {
            each(e, cluster.stats().metrics())?;
        }
        gauge(
            e,
            "mqtt_sessions",
            "MQTT sessions, online or kept offline",
            self.mqtt.sessions.len(),
        )?;
        each(e, self.mqtt.stats.metrics())?;
        each(e, self.stomp.stats.metrics())?;
        gauge(
            e,
            "connections_admitted",
            "Connections open and counted against the limits",
            self.gate.open_connections(),
        )?;
        each(e, self.gate.stats.metrics())?;
        gauge(
            e,
            "stomp_queues",
            "STOMP /queue/ destinations that exist now",
            self.stomp.queues.len(),
        )?;
        each(e, self.stomp.queues.stats.metrics())
    }
}
