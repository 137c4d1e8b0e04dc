//! CONNECT: version, client identifier, session claim or take-over, keep-alive, will,
//! MQTT 5 limits exchanged both ways, and the CONNACK.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use ferry_core::{Expiry, Message, Output, Owner, TopicName};
use tracing::{debug, info};

use super::{Connected, MqttSession, PendingWill, Phase, Writer};
use crate::codec::{ConnAck, Connect, DecodeError, Packet, Property, ReasonCode, Version};
use crate::convert;

impl MqttSession {
    /// A CONNECT the codec could not accept: answer with the CONNACK the client's
    /// version understands when there is one, then close.
    pub(super) fn refuse_connect_error(&mut self, e: &DecodeError, w: &mut Writer, out: &mut Output) {
        self.broker.stats.refused.fetch_add(1, Ordering::Relaxed);
        info!(conn = self.info.id, peer = %self.info.peer, error = %e, "CONNECT refused");
        if let Some((version, code)) = e.connack_refusal(self.decoder.version()) {
            w.packet(&Packet::ConnAck(ConnAck::refused(code)), version);
        }
        self.phase_close("", w, out);
        self.phase = Phase::Closed;
    }

    fn refuse(&mut self, version: Version, code: ReasonCode, why: &str, w: &mut Writer, out: &mut Output) {
        self.broker.stats.refused.fetch_add(1, Ordering::Relaxed);
        info!(conn = self.info.id, peer = %self.info.peer, code = code.0, why, "CONNECT refused");
        let mut ack = ConnAck::refused(code);
        if version.is_v5() {
            ack.properties.push(Property::ReasonString(ByteString::from(why)));
        }
        w.packet(&Packet::ConnAck(ack), version);
        self.phase_close("", w, out);
        self.phase = Phase::Closed;
    }

    pub(super) fn on_connect(&mut self, connect: Connect, now: Instant, w: &mut Writer, out: &mut Output) {
        let version = connect.version;
        let config = &self.broker.config;
        let v5 = version.is_v5();
        if connect.properties.authentication_method().is_some() {
            return self.refuse(
                version,
                ReasonCode::BAD_AUTHENTICATION_METHOD,
                "enhanced authentication is not supported",
                w,
                out,
            );
        }
        // Client identifier: assigned when empty (MQTT 3.1.1 only with clean session).
        let mut assigned = None;
        let client_id: Arc<str> = if connect.client_id.is_empty() {
            if !connect.clean_start && !v5 {
                return self.refuse(
                    version,
                    ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                    "empty client id needs clean session",
                    w,
                    out,
                );
            }
            let id = self.broker.assign_client_id();
            assigned = Some(id.clone());
            Arc::from(id)
        } else if connect.client_id.len() > config.max_client_id_len {
            return self.refuse(version, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, "client id too long", w, out);
        } else {
            Arc::from(&*connect.client_id)
        };
        // The will, validated now so a bad one refuses the CONNECT.
        let will = match &connect.will {
            None => None,
            Some(will) => match TopicName::new(&will.topic) {
                Ok(topic) if topic.levels().count() <= config.max_topic_levels => {
                    let delay = Duration::from_secs(u64::from(will.properties.will_delay_interval().unwrap_or(0)));
                    let expiry = will
                        .properties
                        .message_expiry_interval()
                        .map(|s| Expiry::after(now, Duration::from_secs(u64::from(s))));
                    let message = Message::new(topic, will.payload.clone(), will.qos, will.retain)
                        .with_properties(convert::properties_in(&will.properties))
                        .with_expiry(expiry);
                    Some(PendingWill {
                        message: Arc::new(message),
                        delay,
                    })
                }
                _ => return self.refuse(version, ReasonCode::TOPIC_NAME_INVALID, "invalid will topic", w, out),
            },
        };
        let session_expiry = if v5 {
            Duration::from_secs(u64::from(connect.properties.session_expiry_interval().unwrap_or(0)))
        } else if connect.clean_start {
            Duration::ZERO
        } else {
            Duration::MAX
        }
        .min(config.max_session_expiry);
        let mut keep_alive = connect.keep_alive;
        let max_keep_alive = u16::try_from(config.max_keep_alive.as_secs()).unwrap_or(u16::MAX);
        let server_keep_alive = if max_keep_alive > 0 && (keep_alive == 0 || keep_alive > max_keep_alive) && v5 {
            keep_alive = max_keep_alive;
            Some(max_keep_alive)
        } else {
            None
        };
        let owner = Owner::new(self.info.id, self.info.wakeup.clone());
        // Claim first: it marks a previous connection as taken over, so that if that
        // connection ends only now it does not queue its delayed will; then cancel a
        // will it queued before (MQTT 5 §3.1.3.2: the client came back in time).
        let claim = self.broker.sessions.claim(&client_id, owner.clone(), connect.clean_start);
        self.broker.cancel_will(&client_id);
        if let Some(old) = &claim.discarded {
            self.broker.drop_session(old);
        }
        // MQTT 3.1.1 §3.2.2.2: session present only for a resumed clean-session-0 session.
        let session_present = claim.resumed && !connect.clean_start;
        let receive_max = usize::from(connect.properties.receive_maximum().unwrap_or(u16::MAX));
        let mut ack = ConnAck::accepted(session_present);
        if v5 {
            let p = &mut ack.properties;
            p.push(Property::ReceiveMaximum(config.receive_maximum));
            p.push(Property::MaximumPacketSize(
                u32::try_from(config.max_packet_size).unwrap_or(u32::MAX),
            ));
            p.push(Property::TopicAliasMaximum(config.topic_alias_maximum));
            if let Some(id) = assigned {
                p.push(Property::AssignedClientIdentifier(ByteString::from(id)));
            }
            if let Some(ka) = server_keep_alive {
                p.push(Property::ServerKeepAlive(ka));
            }
            let requested = connect.properties.session_expiry_interval().unwrap_or(0);
            let granted = u32::try_from(session_expiry.as_secs()).unwrap_or(u32::MAX);
            if granted != requested {
                p.push(Property::SessionExpiryInterval(granted));
            }
        }
        w.packet(&Packet::ConnAck(ack), version);
        self.broker.stats.connects.fetch_add(1, Ordering::Relaxed);
        debug!(conn = self.info.id, client = %client_id, ?version, session_present, keep_alive, "MQTT client connected");
        self.phase = Phase::Connected(Box::new(Connected {
            version,
            client_id,
            slot: claim.slot,
            owner,
            keep_alive_limit: (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500)),
            will,
            session_expiry,
            send_window: usize::from(config.max_inflight).min(receive_max).max(1),
            client_max_packet: connect.properties.maximum_packet_size().and_then(|m| usize::try_from(m).ok()),
            aliases_in: Default::default(),
            aliases_out: std::cell::RefCell::new(super::OutAliases {
                max: connect.properties.topic_alias_maximum().unwrap_or(0),
                by_topic: Default::default(),
            }),
            ended: None,
        }));
        self.resend_inflight(now, w);
        self.pump(now, w, out);
    }
}
