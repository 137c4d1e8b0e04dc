//! CONNECT: version, client identifier, session claim or take-over, keep-alive, will,
//! MQTT 5 limits exchanged both ways, and the CONNACK.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use ferry_auth::{AuthFailure, CheckState, ConnectAttempt, Identity};
use ferry_core::{ClaimOutcome, Expiry, Message, Output, Owner, TopicName};
use tracing::{debug, info};

use super::{Authenticating, Claiming, Connected, MqttConnection, PendingWill, Phase, Writer};
use crate::codec::{ConnAck, Connect, DecodeError, Packet, Property, ReasonCode, Version};
use crate::convert;

/// A CONNECT that passed validation, waiting for its credentials' verdict.
pub(super) struct Accepted {
    /// The CONNECT, its password taken out.
    connect: Connect,
    /// The client identifier (assigned when the client sent none).
    client_id: Arc<str>,
    /// The identifier the broker assigned, to send back in an MQTT 5 CONNACK.
    assigned: Option<String>,
    /// The will, validated.
    will: Option<PendingWill>,
}

impl Accepted {
    /// The protocol version of the CONNECT.
    pub(super) fn version(&self) -> Version {
        self.connect.version
    }
}

impl MqttConnection {
    /// A CONNECT the codec could not accept: answer with the CONNACK the client's
    /// version understands when there is one, then close.
    pub(super) fn refuse_connect_error(&mut self, e: &DecodeError, w: &mut Writer, out: &mut Output) {
        self.broker.stats.refused.fetch_add(1, Ordering::Relaxed);
        info!(conn = self.info.id, peer = %self.info.peer, error = %e, "CONNECT refused");
        if let Some((version, connack)) = self.decoder.refusal(e) {
            w.packet(&Packet::ConnAck(connack), version);
        }
        self.phase_close("", w, out);
        self.phase = Phase::Closed;
    }

    pub(super) fn refuse(&mut self, version: Version, code: ReasonCode, why: &str, w: &mut Writer, out: &mut Output) {
        self.broker.stats.refused.fetch_add(1, Ordering::Relaxed);
        info!(conn = self.info.id, peer = %self.info.peer, code = %code.named(), why, "CONNECT refused");
        let mut ack = ConnAck::refused(code);
        if version.is_v5() {
            ack.properties.push(Property::ReasonString(ByteString::from(why)));
        }
        w.packet(&Packet::ConnAck(ack), version);
        self.phase_close("", w, out);
        self.phase = Phase::Closed;
    }

    /// A decoded CONNECT: validated (version, client id, will), then its credentials are
    /// checked by the gatekeeper, at once or off the connection's task.
    pub(super) fn on_connect(&mut self, mut connect: Connect, now: Instant, w: &mut Writer, out: &mut Output) {
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
        let attempt = ConnectAttempt {
            peer: self.info.peer,
            protocol: "mqtt",
            client_id: client_id.to_string(),
            username: connect.username.as_ref().map(ToString::to_string),
            // Taken out of the CONNECT: the password is not kept once handed over.
            password: connect.password.take().map(|p| p.to_vec()),
            transport: self.info.credentials.clone(),
        };
        let deadline = match &self.phase {
            Phase::AwaitingConnect { deadline } => *deadline,
            _ => now + config.connect_timeout,
        };
        let check = self.broker.gate.begin_check(attempt, now, self.info.wakeup.clone(), Some(deadline));
        self.phase = Phase::Authenticating(Box::new(Authenticating {
            accepted: Accepted {
                connect,
                client_id,
                assigned,
                will,
            },
            check,
        }));
        self.advance_auth(now, w, out);
    }

    /// Takes the gatekeeper's verdict when it is in and its delay has passed: refuse the
    /// CONNECT, or accept it and go on with the input the client sent meanwhile.
    pub(super) fn advance_auth(&mut self, now: Instant, w: &mut Writer, out: &mut Output) {
        let Phase::Authenticating(a) = &mut self.phase else { return };
        // A timeout is answered by `on_timeout`.
        let CheckState::Ready(verdict) = a.check.poll(now) else { return };
        let Phase::Authenticating(a) = std::mem::replace(&mut self.phase, Phase::Closed) else {
            return;
        };
        let Authenticating { accepted, .. } = *a;
        let version = accepted.version();
        match verdict.result {
            Ok(identity) => {
                self.finish_connect(accepted, identity, None, now, w, out);
                self.after_connect(now, w, out);
            }
            Err(failure) => {
                let code = if version.is_v5() {
                    ReasonCode(failure.mqtt_v5_reason_code())
                } else {
                    ReasonCode::from_v3_connack(failure.mqtt_v3_return_code()).unwrap_or(ReasonCode::NOT_AUTHORIZED)
                };
                let why = match failure {
                    AuthFailure::BadCredentials(_) => "bad user name or password",
                    AuthFailure::NotAuthorized(_) => "not authorized",
                };
                self.refuse(version, code, why, w, out);
            }
        }
    }

    /// Once connected: the full packet size, and the input the client sent meanwhile.
    fn after_connect(&mut self, now: Instant, w: &mut Writer, out: &mut Output) {
        if matches!(self.phase, Phase::Connected(_)) {
            self.decoder.set_max_packet_size(self.broker.config.max_packet_size);
            self.decode_input(now, w, out);
        }
    }

    /// The cluster settled the client id's claim (the wakeup rang): go on with the
    /// CONNECT, under the claim's lock (a take-over from another node waits for it).
    pub(super) fn advance_claim(&mut self, now: Instant, w: &mut Writer, out: &mut Output) {
        let Phase::Claiming(c) = &self.phase else { return };
        if !c.ticket.is_settled() {
            return;
        }
        let Phase::Claiming(c) = std::mem::replace(&mut self.phase, Phase::Closed) else {
            return;
        };
        let Claiming {
            accepted,
            identity,
            ticket,
            ..
        } = *c;
        ticket.settle(|outcome| self.finish_connect(accepted, identity, Some(outcome), now, w, out));
        self.after_connect(now, w, out);
    }

    /// An authenticated CONNECT: the will's topic checked against the ACL, the client
    /// id claimed in the cluster (`claimed`: how that ended; `None`: not asked yet),
    /// then the session claimed (or taken over), keep-alive and limits settled,
    /// CONNACK sent.
    fn finish_connect(
        &mut self,
        accepted: Accepted,
        identity: Identity,
        claimed: Option<ClaimOutcome>,
        now: Instant,
        w: &mut Writer,
        out: &mut Output,
    ) {
        let version = accepted.connect.version;
        let v5 = version.is_v5();
        let gate = self.broker.gate.clone();
        // As Mosquitto: a will the client may not publish refuses the CONNECT.
        if let Some(will) = &accepted.will {
            if !gate.may_publish(&identity, will.message.topic.as_str()) {
                self.broker.stats.will_denied.fetch_add(1, Ordering::Relaxed);
                return self.refuse(version, ReasonCode::NOT_AUTHORIZED, "will topic not authorized", w, out);
            }
        }
        let session_expiry = if v5 {
            Duration::from_secs(u64::from(accepted.connect.properties.session_expiry_interval().unwrap_or(0)))
        } else if accepted.connect.clean_start {
            Duration::ZERO
        } else {
            Duration::MAX
        }
        .min(self.broker.config.max_session_expiry);
        // A session that must outlive its connection needs the disk: refuse the CONNECT
        // before claiming anything when the journal cannot take it.
        let journal = self.broker.router.journal().cloned().filter(|_| !session_expiry.is_zero());
        if let Some(Err(e)) = journal.as_ref().map(|j| j.health()) {
            info!(conn = self.info.id, client = %accepted.client_id, error = %e, "persistent session refused: storage unavailable");
            return self.refuse(version, ReasonCode::SERVER_UNAVAILABLE, "storage unavailable", w, out);
        }
        // In a cluster the client id is claimed there first (off this task; the
        // wakeup rings when it is settled), and a session another node had comes along.
        let mut cluster_epoch = None;
        let moved = match (self.broker.ownership().cloned(), claimed) {
            (None, _) => None,
            (Some(ownership), None) => {
                let persistent = !accepted.connect.clean_start || !session_expiry.is_zero();
                // MQTT 5 §3.1.3.2.2: the will waits for its delay or the session's end.
                let will = accepted.will.as_ref().map(|w| (w.message.clone(), w.delay.min(session_expiry)));
                let ticket = ownership.claim(&accepted.client_id, persistent, will, self.info.wakeup.clone());
                let deadline = ticket.deadline() + Duration::from_secs(1);
                self.phase = Phase::Claiming(Box::new(Claiming {
                    accepted,
                    identity,
                    ticket,
                    deadline,
                }));
                // The outcome may be in already (NATS unreachable, say).
                return self.advance_claim(now, w, out);
            }
            (Some(_), Some(ClaimOutcome::Unavailable(why))) => {
                info!(conn = self.info.id, client = %accepted.client_id, why, "CONNECT refused: the cluster could not settle the client id");
                return self.refuse(version, ReasonCode::SERVER_UNAVAILABLE, "cluster unavailable", w, out);
            }
            (Some(_), Some(ClaimOutcome::Owned { moved, epoch })) => {
                cluster_epoch = Some(epoch);
                moved
            }
        };
        let Accepted {
            connect,
            client_id,
            assigned,
            will,
        } = accepted;
        let config = &self.broker.config;
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
        let mut session_present = claim.resumed && !connect.clean_start;
        if let (Some(moved), false) = (moved, connect.clean_start) {
            info!(conn = self.info.id, client = %client_id, subscriptions = moved.subscriptions.len(), messages = moved.deliveries.len(), "cluster: session taken from another node");
            self.broker.adopt(&claim.slot, moved);
            session_present = true;
        }
        let connack_at = journal.and_then(|j| self.broker.journal_session(&j, &claim.slot, session_expiry));
        if !session_expiry.is_zero() {
            self.broker.share_subscriptions(&claim.slot);
        }
        let receive_max = connect.properties.receive_maximum().unwrap_or(u16::MAX);
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
        self.broker.stats.connects.fetch_add(1, Ordering::Relaxed);
        self.info.monitor.set_client(ferry_core::ClientDetails {
            protocol: "mqtt",
            version: match version {
                crate::codec::Version::V3_1 => "3.1",
                crate::codec::Version::V3_1_1 => "3.1.1",
                crate::codec::Version::V5 => "5.0",
            },
            client_id: client_id.clone(),
            user: identity.username.as_deref().map(Arc::from),
        });
        debug!(conn = self.info.id, client = %client_id, ?version, session_present, keep_alive, "MQTT client connected");
        self.phase = Phase::Connected(Box::new(Connected {
            version,
            client_id,
            slot: claim.slot,
            owner,
            keep_alive_limit: (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500)),
            will,
            session_expiry,
            send_window: config.max_inflight.min(receive_max).max(1),
            client_max_packet: connect.properties.maximum_packet_size(),
            aliases_in: Default::default(),
            aliases_out: std::cell::RefCell::new(super::OutAliases {
                max: connect.properties.topic_alias_maximum().unwrap_or(0),
                by_topic: Default::default(),
            }),
            ended: None,
            held: None,
            awaiting_connack: false,
            cluster_epoch,
            policy: gate.client_policy(identity, now),
        }));
        // The CONNACK of a persistent session waits for its record to be on disk; what
        // the session has to send waits behind it.
        self.acknowledge(Packet::ConnAck(ack), connack_at, w);
        if let Phase::Connected(c) = &mut self.phase {
            c.awaiting_connack = c.held.as_ref().is_some_and(|h| !h.is_empty());
        }
        self.resend_inflight(now, w);
        self.pump(now, w, out);
    }
}
