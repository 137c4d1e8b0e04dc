//! The core's and the adapters' counters, read at every `/metrics` scrape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ferry_auth::Gatekeeper;
use ferry_core::Router;
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
}

impl std::fmt::Debug for BrokerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BrokerCollector")
    }
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: &AtomicU64) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value.load(Ordering::Relaxed));
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: usize) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn counter_of(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
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
        "Log bytes since the last snapshot (one is taken past storage.snapshot_after_bytes)",
        as_usize(s.bytes_since_snapshot),
    )?;
    gauge(e, "storage_durable_lsn", "The last log position on disk", as_usize(s.durable_lsn))
}

impl Collector for BrokerCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let a = &self.admin.stats;
        counter(
            &mut e,
            "http_publishes",
            "HTTP publishes accepted (admin and public listeners)",
            &a.http_publishes,
        )?;
        counter(
            &mut e,
            "http_publishes_refused",
            "HTTP publishes refused: bad body, too large (http_api.max_body, http_api.max_payload), credentials, ACL, rate",
            &a.http_publish_refused,
        )?;
        gauge(
            &mut e,
            "sse_streams",
            "Server-Sent Event streams open (at most http_api.max_streams)",
            usize::try_from(a.sse_streams.load(Ordering::Relaxed)).unwrap_or(usize::MAX),
        )?;
        counter(&mut e, "sse_streams_opened", "Server-Sent Event streams opened", &a.sse_opened)?;
        counter(&mut e, "sse_events", "Events written to Server-Sent Event streams", &a.sse_events)?;
        counter(
            &mut e,
            "sse_dropped",
            "Events dropped because a stream's queue was full (http_api.sse_queue), counted when the stream closes",
            &a.sse_dropped,
        )?;
        counter(&mut e, "admin_kicks", "Clients closed through the admin API", &a.kicks)?;
        counter(
            &mut e,
            "admin_auth_refused",
            "Admin API requests refused for want of a valid key or role",
            &a.auth_refused,
        )?;
        counter(
            &mut e,
            "sys_published",
            "$SYS messages published (admin.sys_interval)",
            &a.sys_published,
        )?;
        let r = &self.router.stats;
        counter(&mut e, "messages_published", "Messages published, all protocols", &r.published)?;
        counter(&mut e, "deliveries", "Deliveries queued to subscribers", &r.delivered)?;
        counter(
            &mut e,
            "deliveries_dropped",
            "Deliveries dropped because a subscriber's queue was full",
            &r.dropped,
        )?;
        counter(&mut e, "messages_unrouted", "Messages that matched no subscription", &r.unrouted)?;
        counter(
            &mut e,
            "messages_expired",
            "Deliveries skipped because the message had expired",
            &r.expired,
        )?;
        gauge(
            &mut e,
            "subscriptions",
            "Subscriptions (a shared group counts once)",
            self.router.subscription_count(),
        )?;
        gauge(&mut e, "retained_messages", "Retained messages", self.router.retained_count())?;
        counter(
            &mut e,
            "retained_refused",
            "Retained messages on new topics not kept: limits.max_retained_messages or max_retained_bytes reached",
            &r.retained_refused,
        )?;
        if let Some(journal) = &self.journal {
            storage(&mut e, journal)?;
        }
        let m = &self.mqtt.stats;
        gauge(
            &mut e,
            "mqtt_sessions",
            "MQTT sessions, online or kept offline",
            self.mqtt.sessions.len(),
        )?;
        counter(&mut e, "mqtt_connects", "MQTT CONNECTs accepted", &m.connects)?;
        counter(&mut e, "mqtt_connects_refused", "MQTT CONNECTs refused", &m.refused)?;
        counter(
            &mut e,
            "mqtt_too_large_unauthenticated",
            "MQTT connections closed for input beyond mqtt.max_packet_size_unauthenticated before authentication",
            &m.too_large_unauthenticated,
        )?;
        counter(
            &mut e,
            "mqtt_will_denied",
            "MQTT CONNECTs refused because the ACL denies the will topic",
            &m.will_denied,
        )?;
        counter(
            &mut e,
            "mqtt_text_frames",
            "MQTT connections closed for sending a packet in a WebSocket text frame",
            &m.text_frames,
        )?;
        counter(
            &mut e,
            "mqtt_protocol_errors",
            "MQTT connections closed for a protocol violation",
            &m.protocol_errors,
        )?;
        counter(
            &mut e,
            "mqtt_keep_alive_timeouts",
            "MQTT connections closed for silence past 1.5 keep-alives",
            &m.keep_alive_timeouts,
        )?;
        counter(&mut e, "mqtt_wills", "MQTT will messages published", &m.wills)?;
        counter(
            &mut e,
            "mqtt_acks_held",
            "MQTT PUBACKs and PUBRECs held until the journal had their retained message on disk",
            &m.acks_held,
        )?;
        counter(
            &mut e,
            "mqtt_publishes_refused_storage",
            "MQTT publishes refused because they needed the disk and storage was unavailable",
            &m.storage_refused,
        )?;
        counter(&mut e, "mqtt_publishes_received", "MQTT PUBLISH packets received", &m.publishes_in)?;
        counter(&mut e, "mqtt_publishes_sent", "MQTT PUBLISH packets sent", &m.publishes_out)?;
        counter(
            &mut e,
            "mqtt_too_large_for_client",
            "MQTT messages not sent because they exceed the client's maximum packet size",
            &m.too_large_for_client,
        )?;
        let s = &self.stomp.stats;
        counter(&mut e, "stomp_connects", "STOMP CONNECT/STOMP frames accepted", &s.connects)?;
        counter(
            &mut e,
            "stomp_protocol_errors",
            "STOMP sessions ended by an ERROR frame",
            &s.protocol_errors,
        )?;
        counter(
            &mut e,
            "stomp_connect_timeouts",
            "STOMP connections that sent no CONNECT in time",
            &s.connect_timeouts,
        )?;
        counter(
            &mut e,
            "stomp_heart_beat_timeouts",
            "STOMP connections closed because heart-beats stopped",
            &s.heart_beat_timeouts,
        )?;
        counter(&mut e, "stomp_sends", "STOMP SEND frames applied", &s.sends)?;
        counter(&mut e, "stomp_messages_sent", "STOMP MESSAGE frames sent", &s.messages_out)?;
        counter(
            &mut e,
            "stomp_redelivered",
            "STOMP topic messages redelivered after a NACK",
            &s.redelivered,
        )?;
        self.encode_security(&mut e)?;
        let q = &self.stomp.queues.stats;
        gauge(
            &mut e,
            "stomp_queues",
            "STOMP /queue/ destinations that exist now",
            self.stomp.queues.len(),
        )?;
        counter(&mut e, "stomp_queue_enqueued", "Messages put into STOMP queues", &q.enqueued)?;
        counter(
            &mut e,
            "stomp_queue_redelivered",
            "STOMP queue messages redelivered",
            &q.redelivered,
        )?;
        counter(
            &mut e,
            "stomp_queue_refused_full",
            "SENDs refused because the queue was full",
            &q.refused_full,
        )?;
        counter(
            &mut e,
            "stomp_queue_refused_too_many",
            "SENDs refused because no more queues may be created",
            &q.refused_too_many,
        )?;
        counter(
            &mut e,
            "stomp_replies_dropped",
            "Replies to a temporary queue whose owner had gone",
            &q.replies_dropped,
        )?;
        Ok(())
    }
}

impl BrokerCollector {
    fn encode_security(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let g = &self.gate.stats;
        gauge(
            e,
            "connections_admitted",
            "Connections open and counted against the limits",
            self.gate.open_connections(),
        )?;
        let counters: [(&str, &str, &AtomicU64); 15] = [
            ("auth_successes", "Clients authenticated (anonymous included)", &g.auth_successes),
            (
                "auth_bad_credentials",
                "Clients refused for bad credentials (CONNACK 0x04/0x86, STOMP ERROR, HTTP 401)",
                &g.auth_bad_credentials,
            ),
            (
                "auth_not_authorized",
                "Clients refused as not authorized (CONNACK 0x05/0x87, STOMP ERROR)",
                &g.auth_not_authorized,
            ),
            (
                "acl_denied_publish",
                "Publishes, wills and SENDs the ACL refused",
                &g.denied_publish,
            ),
            ("acl_denied_subscribe", "Subscriptions the ACL refused", &g.denied_subscribe),
            (
                "acl_denied_delivery",
                "Deliveries withheld because the ACL refuses the topic to the subscriber",
                &g.denied_delivery,
            ),
            (
                "connections_refused_total_limit",
                "Connections refused at limits.max_connections",
                &g.refused_total,
            ),
            (
                "connections_refused_listener_limit",
                "Connections refused at a listener's max_connections",
                &g.refused_listener,
            ),
            (
                "connections_refused_address_limit",
                "Connections refused at limits.max_connections_per_address",
                &g.refused_address,
            ),
            (
                "connections_refused_rate_limit",
                "Connections refused at limits.connection_rate (they would have waited longer than limits.connection_max_wait)",
                &g.refused_rate,
            ),
            (
                "connections_paced",
                "Connections held back by limits.connection_rate before they were served",
                &g.paced,
            ),
            (
                "message_rate_exceeded",
                "Connections closed for limits.messages_per_second",
                &g.message_rate_exceeded,
            ),
            (
                "byte_rate_throttled",
                "Times a connection's reads were paused for limits.bytes_per_second",
                &g.byte_rate_throttled,
            ),
            (
                "subscription_quota_exceeded",
                "Subscriptions refused at max_subscriptions",
                &g.subscription_quota_exceeded,
            ),
            ("token_expired", "Connections closed because their token expired", &g.token_expired),
        ];
        for (name, help, value) in counters {
            counter(e, name, help, value)?;
        }
        Ok(())
    }
}
