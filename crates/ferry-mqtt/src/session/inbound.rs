//! PUBLISH from the client: topic aliases, validation, routing through the core, and
//! the acknowledgement of each QoS (PUBACK; PUBREC, then PUBCOMP on PUBREL) with
//! exactly-once kept by the session's set of unreleased QoS 2 packet ids.
//!
//! With storage on, the PUBACK or PUBREC of a retained message waits until the journal
//! has the change on disk ([`MqttConnection::acknowledge`]); if the journal fails, the
//! publish is refused instead: MQTT 5 with PUBACK/PUBREC 0x80 (0x97 for a full disk),
//! MQTT 3.1.1, which has no refusal, by closing the connection without the ack.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use ferry_core::{Expiry, Lsn, Message, Output, QoS, StorageUnavailable, TopicName};
use tracing::info;

use super::{End, MqttConnection, Phase, Writer};
use crate::codec::{Ack, Packet, Publish, ReasonCode};
use crate::convert;

impl MqttConnection {
    pub(super) fn on_publish(&mut self, p: Publish, now: Instant, w: &mut Writer, out: &mut Output) {
        self.broker.stats.publishes_in.fetch_add(1, Ordering::Relaxed);
        let Phase::Connected(c) = &mut self.phase else { return };
        let version = c.version;
        if !c.policy.take_message(now) {
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
                return self.acknowledge(Packet::PubRec(Ack::new(p.pkid)), None, w);
            }
            if full && version.is_v5() {
                return self.violation(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED, "receive maximum exceeded", w, out);
            }
        }
        if !c.policy.may_publish(topic.as_str()) {
            // Counted by the gatekeeper. MQTT 5 says why; MQTT 3.1.1 has no way to, so the
            // message is dropped and acknowledged as if delivered (as Mosquitto does).
            let mut ack = Ack::new(p.pkid);
            if version.is_v5() {
                ack.reason = ReasonCode::NOT_AUTHORIZED;
            }
            match p.qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => self.acknowledge(Packet::PubAck(ack), None, w),
                QoS::ExactlyOnce => {
                    // A failing PUBREC ends a 5.0 exchange; 3.1.1 goes on to PUBREL.
                    if !version.is_v5() {
                        c.slot.state.lock().incoming_qos2.insert(p.pkid);
                    }
                    self.acknowledge(Packet::PubRec(ack), None, w);
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
        let published = match self.broker.router.publish_durable(Arc::new(message), now) {
            Ok(published) => published,
            Err(e) => return self.refuse_unstored(p.qos, p.pkid, &e, w, out),
        };
        ferry_core::monitor::ConnectionCounters::bump(&self.info.monitor.counters.messages_in);
        let mut ack = Ack::new(p.pkid);
        if published.deliveries == 0 && version.is_v5() {
            ack.reason = ReasonCode::NO_MATCHING_SUBSCRIBERS;
        }
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.acknowledge(Packet::PubAck(ack), published.durable_at, w),
            QoS::ExactlyOnce => {
                let durable = {
                    let mut state = c.slot.state.lock();
                    state.incoming_qos2.insert(p.pkid);
                    state.durable
                };
                // A persistent session keeps the packet id across a restart, so that a
                // resent PUBLISH is not routed twice; the PUBREC waits for it.
                let mut durable_at = published.durable_at;
                if let (Some(journal), Some(key)) = (self.broker.router.journal(), durable) {
                    match journal.qos2_received(key, p.pkid) {
                        Ok(lsn) => durable_at = durable_at.max(Some(lsn)),
                        Err(e) => {
                            c.slot.state.lock().incoming_qos2.remove(&p.pkid);
                            return self.refuse_unstored(p.qos, p.pkid, &e, w, out);
                        }
                    }
                }
                self.acknowledge(Packet::PubRec(ack), durable_at, w);
            }
        }
    }

    pub(super) fn on_pubrel(&mut self, a: Ack, w: &mut Writer) {
        let Phase::Connected(c) = &mut self.phase else { return };
        let (known, durable) = {
            let mut state = c.slot.state.lock();
            (state.incoming_qos2.remove(&a.pkid), state.durable)
        };
        let mut comp = Ack::new(a.pkid);
        if !known && c.version.is_v5() {
            comp.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
        }
        // The PUBCOMP waits until the released id is on disk: after a restart the id must
        // not still be taken (a new PUBLISH with it would be dropped as a duplicate).
        let durable_at = match (self.broker.router.journal(), durable) {
            (Some(journal), Some(key)) if known => journal.qos2_released(key, a.pkid).ok(),
            _ => None,
        };
        self.acknowledge(Packet::PubComp(comp), durable_at, w);
    }

    /// Sends `ack` now, or holds it until the journal has `durable_at` on disk (and
    /// behind any ack already held, to keep their order).
    pub(super) fn acknowledge(&mut self, ack: Packet, durable_at: Option<Lsn>, w: &mut Writer) {
        let Phase::Connected(c) = &mut self.phase else { return };
        let journal = self.broker.router.journal();
        let wait_for = match (journal, durable_at) {
            (Some(journal), Some(lsn)) if journal.durable_lsn() < lsn => Some((journal, lsn)),
            _ => None,
        };
        let nothing_held = c.held.as_ref().is_none_or(|h| h.is_empty());
        match wait_for {
            None if nothing_held => w.packet(&ack, c.version),
            None => c.held.get_or_insert_default().hold(0, ack),
            Some((journal, lsn)) => {
                self.broker.stats.acks_held.fetch_add(1, Ordering::Relaxed);
                // One wake-up at a time: for the oldest held ack; `release_acks` asks
                // for the next one's (later acks' positions are never lower).
                if nothing_held {
                    journal.when_durable(lsn, self.info.wakeup.clone());
                }
                c.held.get_or_insert_default().hold(lsn, ack);
            }
        }
    }

    /// Sends the held acknowledgements whose records are now durable; if the journal
    /// failed, refuses the rest.
    pub(super) fn release_acks(&mut self, now: Instant, w: &mut Writer, out: &mut Output) {
        let Phase::Connected(c) = &mut self.phase else { return };
        let Some(held) = c.held.as_mut().filter(|h| !h.is_empty()) else {
            return;
        };
        let Some(journal) = self.broker.router.journal().cloned() else {
            return;
        };
        let durable = journal.durable_lsn();
        let version = c.version;
        let mut connack_sent = false;
        let before = held.len();
        held.release(durable, |ack| {
            connack_sent |= matches!(ack, Packet::ConnAck(_));
            w.packet(&ack, version)
        });
        let drained = held.is_empty();
        let released_any = held.len() != before;
        if connack_sent {
            // What the session had to send waited behind its CONNACK.
            c.awaiting_connack = false;
            self.resend_inflight(now, w);
            self.pump(now, w, out);
        }
        if drained {
            return;
        }
        let Err(e) = journal.health() else {
            // Still waiting: be woken when the oldest held ack's records are durable.
            // (The wake-up asked for earlier has not come yet when nothing went.)
            if let (Phase::Connected(c), true) = (&self.phase, released_any) {
                if let Some(lsn) = c.held.as_ref().and_then(|h| h.front_lsn()) {
                    journal.when_durable(lsn.max(durable + 1), self.info.wakeup.clone());
                }
            }
            return;
        };
        let Phase::Connected(c) = &mut self.phase else { return };
        let Some(held) = c.held.as_mut() else { return };
        let refused: Vec<(Lsn, Packet)> = held.drain().collect();
        for (lsn, ack) in refused {
            if !matches!(self.phase, Phase::Connected(_)) {
                break;
            }
            match ack {
                Packet::ConnAck(_) if lsn > durable => {
                    let Phase::Connected(c) = &self.phase else { break };
                    let version = c.version;
                    info!(conn = self.info.id, error = %e, "persistent session refused: storage unavailable");
                    let mut refusal = crate::codec::ConnAck::refused(ReasonCode::SERVER_UNAVAILABLE);
                    if version.is_v5() {
                        refusal
                            .properties
                            .push(crate::codec::Property::ReasonString(ByteString::from(e.to_string())));
                    }
                    w.packet(&Packet::ConnAck(refusal), version);
                    self.phase_close("", w, out);
                    if let Phase::Connected(c) = &mut self.phase {
                        c.ended = Some(End::Abnormal);
                    }
                    break;
                }
                Packet::PubAck(a) if lsn > durable => self.refuse_unstored(QoS::AtLeastOnce, a.pkid, &e, w, out),
                Packet::PubRec(a) if lsn > durable => {
                    if let Phase::Connected(c) = &self.phase {
                        c.slot.state.lock().incoming_qos2.remove(&a.pkid);
                    }
                    self.refuse_unstored(QoS::ExactlyOnce, a.pkid, &e, w, out)
                }
                other => {
                    if let Phase::Connected(c) = &self.phase {
                        w.packet(&other, c.version);
                    }
                }
            }
        }
    }

    /// Refuses a publish that needed the disk while the journal cannot take it: MQTT 5
    /// answers PUBACK/PUBREC 0x80 (0x97 for a full disk) with the reason; MQTT 3.1.1 has
    /// no refusal, so the connection is closed without an acknowledgement.
    fn refuse_unstored(&mut self, qos: QoS, pkid: u16, e: &StorageUnavailable, w: &mut Writer, out: &mut Output) {
        let Phase::Connected(c) = &self.phase else { return };
        self.broker.stats.storage_refused.fetch_add(1, Ordering::Relaxed);
        info!(conn = self.info.id, client = %c.client_id, error = %e, "publish refused: storage unavailable");
        let version = c.version;
        if !version.is_v5() {
            if qos != QoS::AtMostOnce {
                self.server_disconnect(ReasonCode::UNSPECIFIED_ERROR, "storage unavailable", End::Abnormal, w, out);
            }
            return;
        }
        let mut ack = Ack::new(pkid);
        ack.reason = if e.full {
            ReasonCode::QUOTA_EXCEEDED
        } else {
            ReasonCode::UNSPECIFIED_ERROR
        };
        ack.properties
            .push(crate::codec::Property::ReasonString(ByteString::from(e.to_string())));
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => w.packet(&Packet::PubAck(ack), version),
            QoS::ExactlyOnce => w.packet(&Packet::PubRec(ack), version),
        }
    }
}
