//! Deliveries to the client: drained from the session's outbox under the in-flight
//! window, QoS 1/2 given packet ids and kept until acknowledged (resent with DUP after
//! a reconnect), QoS 0 frames encoded once per message and shared by every subscriber
//! that needs the same bytes.

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use ferry_core::{Delivery, Message, Output, QoS};

use super::{MqttConnection, OutAliases, Phase, Writer};
use crate::codec::{self, Ack, Packet, Property, Publish, ReasonCode, Version};
use crate::convert;
use crate::session_state::Stage;

/// Deliveries taken from the outbox per round.
const BATCH: usize = 64;

/// Encoding-cache slots of QoS 0 frames: (version, retain).
fn cache_slot(version: Version, retain: bool) -> usize {
    usize::from(version.is_v5()) * 2 + usize::from(retain)
}

impl MqttConnection {
    /// The PUBLISH packet for `d`, with `pkid` (0 for QoS 0) and `dup`, using a topic
    /// alias from `aliases` when the client accepts them.
    fn publish_packet(d: &Delivery, version: Version, pkid: u16, dup: bool, now: Instant, aliases: Option<&mut OutAliases>) -> Publish {
        let m = &d.message;
        let mut p = Publish::new(ByteString::from(m.topic.as_str()), d.qos, m.payload.clone());
        p.retain = d.retain;
        p.pkid = pkid;
        p.dup = dup;
        if version.is_v5() {
            convert::properties_out(&m.properties, &mut p.properties);
            if let Some(left) = m.expiry.and_then(|e| e.remaining_secs(now)) {
                p.properties.push(Property::MessageExpiryInterval(left));
            }
            for id in &d.subscription_ids {
                p.properties.push(Property::SubscriptionIdentifier(*id));
            }
            if let Some((alias, known)) = aliases.and_then(|a| a.alias(m.topic.as_str())) {
                p.properties.push(Property::TopicAlias(alias));
                if known {
                    p.topic = ByteString::new();
                }
            }
        }
        p
    }

    fn encode(packet: &Packet, version: Version) -> Bytes {
        let mut buf = BytesMut::new();
        if let Err(e) = codec::encode(packet, version, &mut buf) {
            tracing::error!(error = %e, "internal error: cannot encode an outgoing PUBLISH");
        }
        buf.freeze()
    }

    /// Send what the outbox holds, as far as the in-flight window allows.
    pub(super) fn pump(&mut self, now: Instant, w: &mut Writer, out: &mut Output) {
        let Phase::Connected(c) = &self.phase else { return };
        // A connection whose session was taken over sends nothing more, even before it
        // has noticed: what waits in the outbox is the new connection's.
        if c.ended.is_some() || c.owner.is_taken_over() || c.awaiting_connack {
            return;
        }
        let version = c.version;
        let outbox = c.slot.outbox.clone();
        let journal = self.broker.router.journal();
        // Whether deliveries pass the ACL: asked once per call that has something to send
        // (the ACL may be reloaded between calls), so that a broker without delivery rules
        // does no ACL work per message, and an empty pump none at all.
        let mut check_delivery = None;
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let free = {
                let state = c.slot.state.lock();
                usize::from(c.send_window).saturating_sub(state.inflight.len())
            };
            batch.clear();
            // Take no more than the window can send (but at least one, so QoS 0 messages
            // at the head still flow while the window is full): what cannot go now stays
            // in the outbox instead of being popped and pushed back.
            if outbox.pop_into(BATCH.min(free.max(1)), &mut batch) == 0 {
                break;
            }
            let check_delivery = *check_delivery.get_or_insert_with(|| c.policy.needs_delivery_check());
            let mut rest = batch.drain(..);
            let mut sent_qos12 = 0;
            let mut stopped = None;
            // A QoS 1/2 delivery of a persistent session dropped here (expired, withheld,
            // too large) is done with: the journal is told, lazily.
            let done_with = |d: &Delivery| {
                if let (Some(journal), true) = (journal, d.qos != QoS::AtMostOnce) {
                    if let Some(key) = c.slot.state.lock().durable {
                        journal.acked(key, &d.message);
                    }
                }
            };
            for d in rest.by_ref() {
                if d.message.is_expired(now) {
                    done_with(&d);
                    continue;
                }
                // Withheld (and counted) when the ACL refuses this topic to the client;
                // a QoS 1/2 delivery is simply dropped here, before it takes a packet id.
                if check_delivery && !c.policy.may_receive(d.message.topic.as_str()) {
                    done_with(&d);
                    continue;
                }
                let mut aliases = c.aliases_out.borrow_mut();
                let aliasing = aliases.max > 0;
                if d.qos == QoS::AtMostOnce {
                    // The same bytes for every subscriber unless something in them is this
                    // subscriber's own (subscription ids, aliases, a shrinking expiry).
                    let shared = d.subscription_ids.is_empty() && !aliasing && (!version.is_v5() || d.message.expiry.is_none());
                    let frame = if shared {
                        d.message.encoded(cache_slot(version, d.retain), |_: &Message| {
                            Self::encode(&Packet::Publish(Self::publish_packet(&d, version, 0, false, now, None)), version)
                        })
                    } else {
                        Self::encode(
                            &Packet::Publish(Self::publish_packet(&d, version, 0, false, now, Some(&mut aliases))),
                            version,
                        )
                    };
                    if c.too_big_for_client(frame.len()) {
                        self.broker.stats.too_large_for_client.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    self.broker.stats.publishes_out.fetch_add(1, Ordering::Relaxed);
                    ferry_core::monitor::ConnectionCounters::bump(&self.info.monitor.counters.messages_out);
                    w.frame(frame, out);
                    continue;
                }
                if sent_qos12 >= free {
                    stopped = Some(d);
                    break;
                }
                let mut state = c.slot.state.lock();
                // Checked under the state lock: the connection that takes the session over
                // reads the in-flight messages (to resend them) under it too, after the
                // take-over, so a message is either resent by it or stays queued for it.
                if c.owner.is_taken_over() {
                    stopped = Some(d);
                    break;
                }
                let Some(pkid) = state.next_pkid() else {
                    stopped = Some(d);
                    break;
                };
                let packet = Packet::Publish(Self::publish_packet(&d, version, pkid, false, now, Some(&mut aliases)));
                let frame = Self::encode(&packet, version);
                if c.too_big_for_client(frame.len()) {
                    self.broker.stats.too_large_for_client.fetch_add(1, Ordering::Relaxed);
                    drop(state);
                    done_with(&d);
                    continue;
                }
                if let (Some(journal), Some(key)) = (journal, state.durable) {
                    journal.sent(key, &d.message, pkid);
                }
                state.send(pkid, d);
                drop(state);
                sent_qos12 += 1;
                self.broker.stats.publishes_out.fetch_add(1, Ordering::Relaxed);
                ferry_core::monitor::ConnectionCounters::bump(&self.info.monitor.counters.messages_out);
                w.frame(frame, out);
            }
            if let Some(first) = stopped {
                // The window is full: the rest waits, in order, for acknowledgements.
                outbox.requeue_front(std::iter::once(first).chain(rest).collect::<Vec<_>>().into_iter());
                break;
            }
        }
    }

    /// After a reconnect: resend what was in flight, PUBLISH with DUP or PUBREL.
    pub(super) fn resend_inflight(&mut self, now: Instant, w: &mut Writer) {
        let Phase::Connected(c) = &self.phase else { return };
        if c.awaiting_connack {
            return;
        }
        let state = c.slot.state.lock();
        let mut aliases = c.aliases_out.borrow_mut();
        for (pkid, f) in state.in_order() {
            match f.stage {
                Stage::Published => {
                    let publish = Self::publish_packet(&f.delivery, c.version, pkid, true, now, Some(&mut aliases));
                    w.packet(&Packet::Publish(publish), c.version)
                }
                Stage::Released => w.packet(&Packet::PubRel(Ack::new(pkid)), c.version),
            }
        }
    }

    pub(super) fn on_puback(&mut self, a: Ack, now: Instant, w: &mut Writer, out: &mut Output) {
        let Phase::Connected(c) = &self.phase else { return };
        let known = {
            let mut state = c.slot.state.lock();
            let known = match state.inflight.get(&a.pkid) {
                Some(f) if f.stage == Stage::Published && f.delivery.qos == QoS::AtLeastOnce => state.complete(a.pkid),
                _ => None,
            };
            Self::journal_done(&self.broker, &state, known.as_ref());
            known.is_some()
        };
        if !known && c.version.is_v5() {
            return self.violation(ReasonCode::PROTOCOL_ERROR, "PUBACK for an unknown packet id", w, out);
        }
        self.pump(now, w, out);
    }

    pub(super) fn on_pubrec(&mut self, a: Ack, now: Instant, w: &mut Writer, out: &mut Output) {
        let Phase::Connected(c) = &self.phase else { return };
        let version = c.version;
        let mut state = c.slot.state.lock();
        match state.inflight.get_mut(&a.pkid) {
            Some(f) if f.delivery.qos == QoS::ExactlyOnce => {
                if a.reason.is_error() {
                    // MQTT 5 §4.3.3: a failing PUBREC ends the exchange.
                    let done = state.complete(a.pkid);
                    Self::journal_done(&self.broker, &state, done.as_ref());
                    drop(state);
                    return self.pump(now, w, out);
                }
                f.stage = Stage::Released;
                if let (Some(journal), Some(key)) = (self.broker.router.journal(), state.durable) {
                    journal.released(key, a.pkid);
                }
                drop(state);
                w.packet(&Packet::PubRel(Ack::new(a.pkid)), version);
            }
            _ => {
                drop(state);
                let mut rel = Ack::new(a.pkid);
                if version.is_v5() {
                    rel.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                }
                w.packet(&Packet::PubRel(rel), version);
            }
        }
    }

    pub(super) fn on_pubcomp(&mut self, a: Ack, now: Instant, w: &mut Writer, out: &mut Output) {
        let Phase::Connected(c) = &self.phase else { return };
        {
            let mut state = c.slot.state.lock();
            if state.inflight.get(&a.pkid).is_some_and(|f| f.stage == Stage::Released) {
                let done = state.complete(a.pkid);
                Self::journal_done(&self.broker, &state, done.as_ref());
            }
        }
        self.pump(now, w, out);
    }

    /// Tells the journal that a persistent session is done with `done` (lazily).
    fn journal_done(
        broker: &crate::shared::MqttShared,
        state: &crate::session_state::SessionState,
        done: Option<&crate::session_state::InFlight>,
    ) {
        if let (Some(journal), Some(key), Some(done)) = (broker.router.journal(), state.durable, done) {
            journal.acked(key, &done.delivery.message);
        }
    }
}
