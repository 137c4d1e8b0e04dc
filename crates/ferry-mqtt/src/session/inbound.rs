//! PUBLISH from the client: topic aliases, validation, routing through the core, and
//! the acknowledgement of each QoS (PUBACK; PUBREC, then PUBCOMP on PUBREL) with
//! exactly-once kept by the session's set of unreleased QoS 2 packet ids.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use ferry_auth::SecurityStats;
use ferry_core::{Expiry, Message, Output, QoS, TopicName};
use tracing::info;

use super::{End, MqttSession, Phase, Writer};
use crate::codec::{Ack, Packet, Publish, ReasonCode};
use crate::convert;

impl MqttSession {
    pub(super) fn on_publish(&mut self, p: Publish, now: Instant, w: &mut Writer, out: &mut Output) {
        self.broker.stats.publishes_in.fetch_add(1, Ordering::Relaxed);
        let Phase::Connected(c) = &mut self.phase else { return };
        let version = c.version;
        if c.bucket.as_mut().is_some_and(|b| !b.try_take(now, 1)) {
            SecurityStats::bump(&self.broker.gate.stats.message_rate_exceeded);
            info!(conn = self.info.id, client = %c.client_id, "message rate too high: closing");
            return self.server_disconnect(ReasonCode::MESSAGE_RATE_TOO_HIGH, "message rate too high", End::Abnormal, w, out);
        }
        // Topic alias (MQTT 5 §3.3.2.3.4): set or use a mapping.
        let topic: ByteString = match p.properties.topic_alias() {
            Some(alias) if alias == 0 || alias > self.broker.config.topic_alias_maximum => {
                return self.violation(ReasonCode::TOPIC_ALIAS_INVALID, "topic alias out of range", w, out);
            }
            Some(alias) if p.topic.is_empty() => match c.aliases_in.as_ref().and_then(|a| a.get(&alias)) {
                Some(t) => t.clone(),
                None => return self.violation(ReasonCode::PROTOCOL_ERROR, "unknown topic alias", w, out),
            },
            Some(alias) => {
                c.aliases_in.get_or_insert_default().insert(alias, p.topic.clone());
                p.topic.clone()
            }
            None => p.topic.clone(),
        };
        let topic = match TopicName::new(&topic) {
            Ok(t) if t.level_count() <= self.broker.config.max_topic_levels => t,
            _ => return self.violation(ReasonCode::TOPIC_NAME_INVALID, "invalid topic name", w, out),
        };
        if p.qos == QoS::ExactlyOnce {
            let state = c.slot.state.lock();
            let duplicate = state.incoming_qos2.contains(&p.pkid);
            let full = state.incoming_qos2.len() >= usize::from(self.broker.config.receive_maximum);
            drop(state);
            if duplicate {
                // Already routed: only acknowledge again (exactly once).
                w.packet(&Packet::PubRec(Ack::new(p.pkid)), version);
                return;
            }
            if full && version.is_v5() {
                return self.violation(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED, "receive maximum exceeded", w, out);
            }
        }
        if !self.broker.gate.may_publish(&c.identity, topic.as_str()) {
            // Counted by the gatekeeper. MQTT 5 says why; MQTT 3.1.1 has no way to, so the
            // message is dropped and acknowledged as if delivered (as Mosquitto does).
            let mut ack = Ack::new(p.pkid);
            if version.is_v5() {
                ack.reason = ReasonCode::NOT_AUTHORIZED;
            }
            match p.qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => w.packet(&Packet::PubAck(ack), version),
                QoS::ExactlyOnce => {
                    // A failing PUBREC ends a 5.0 exchange; 3.1.1 goes on to PUBREL.
                    if !version.is_v5() {
                        c.slot.state.lock().incoming_qos2.insert(p.pkid);
                    }
                    w.packet(&Packet::PubRec(ack), version);
                }
            }
            return;
        }
        let expiry = p
            .properties
            .message_expiry_interval()
            .map(|s| Expiry::after(now, Duration::from_secs(u64::from(s))));
        let message = Message::new(topic, p.payload, p.qos, p.retain)
            .with_properties(convert::properties_in(&p.properties))
            .with_expiry(expiry)
            .with_publisher(c.slot.id);
        let routed = self.broker.router.publish(Arc::new(message), now);
        ferry_core::monitor::ConnectionCounters::bump(&self.info.monitor.counters.messages_in);
        let mut ack = Ack::new(p.pkid);
        if routed == 0 && version.is_v5() {
            ack.reason = ReasonCode::NO_MATCHING_SUBSCRIBERS;
        }
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => w.packet(&Packet::PubAck(ack), version),
            QoS::ExactlyOnce => {
                c.slot.state.lock().incoming_qos2.insert(p.pkid);
                w.packet(&Packet::PubRec(ack), version);
            }
        }
    }

    pub(super) fn on_pubrel(&mut self, a: Ack, w: &mut Writer) {
        let Phase::Connected(c) = &mut self.phase else { return };
        let known = c.slot.state.lock().incoming_qos2.remove(&a.pkid);
        let mut comp = Ack::new(a.pkid);
        if !known && c.version.is_v5() {
            comp.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
        }
        w.packet(&Packet::PubComp(comp), c.version);
    }
}
