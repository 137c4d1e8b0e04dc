//! The core's and the adapters' counters, read at every `/metrics` scrape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ferry_core::Router;
use ferry_mqtt::MqttBroker;
use ferry_stomp::StompBroker;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Router, MQTT and STOMP counters as Prometheus metrics.
#[derive(Clone)]
pub struct BrokerCollector {
    /// The shared router.
    pub router: Arc<Router>,
    /// The MQTT adapter's shared state.
    pub mqtt: Arc<MqttBroker>,
    /// The STOMP adapter's shared state.
    pub stomp: Arc<StompBroker>,
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

impl Collector for BrokerCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
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
