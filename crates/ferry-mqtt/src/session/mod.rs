//! One MQTT connection's state machine (sans-IO): bytes in, packets decoded and acted
//! on through the core, packets out. Split by concern: [`connect`] (CONNECT, CONNACK,
//! take-over), [`inbound`] (PUBLISH from the client and its acknowledgements),
//! [`outbound`] (deliveries to the client under its in-flight window),
//! [`subscribe`] (SUBSCRIBE, UNSUBSCRIBE, retained messages), [`writer`] (batching).

mod connect;
mod inbound;
mod outbound;
mod subscribe;
mod writer;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use bytestring::ByteString;
use ferry_auth::{ClientPolicy, ConnectCheck, Identity};
use ferry_core::{
    ClaimTicket, CloseCode, CloseRequest, Connection, ConnectionInfo, HeldAcks, Input, Message, MessageKind, Output, Owner, SessionSlot,
};
use tracing::{debug, info};

use crate::codec::{DecodeError, Decoder, Disconnect, Packet, ReasonCode, Version};
use crate::session_state::SessionState;
use crate::shared::MqttShared;

use writer::Writer;

/// A will as kept until the connection ends.
#[derive(Debug, Clone)]
struct PendingWill {
    message: Arc<Message>,
    delay: Duration,
}

/// State of a connection that sent an accepted CONNECT.
struct Connected {
    version: Version,
    client_id: Arc<str>,
    slot: Arc<SessionSlot<SessionState>>,
    owner: Owner,
    /// 1.5 × the keep-alive, or `None` when keep-alive is off.
    keep_alive_limit: Option<Duration>,
    will: Option<PendingWill>,
    session_expiry: Duration,
    /// Outgoing QoS 1/2 messages allowed in flight at once.
    send_window: u16,
    /// The client's maximum packet size (MQTT 5).
    client_max_packet: Option<u32>,
    /// Topic aliases the client set toward the broker; boxed on the first one, so that
    /// a client that sets none (every MQTT 3 client) carries only a pointer.
    #[expect(clippy::box_collection, reason = "a pointer while unused instead of an empty map's 48 bytes")]
    aliases_in: Option<Box<HashMap<u16, ByteString>>>,
    /// Topic aliases the broker set toward the client (MQTT 5 §3.3.2.3.4), at most the
    /// client's Topic Alias Maximum; a cell because sending happens behind `&self`.
    aliases_out: std::cell::RefCell<OutAliases>,
    /// Set once the connection leaves: DISCONNECT, take-over or error.
    ended: Option<End>,
    /// Who the client is, its token's expiry (the connection is closed then), its
    /// PUBLISH rate, its quota and ACL.
    policy: ClientPolicy,
    /// Acknowledgements waiting for the journal (storage on): a PUBACK or PUBREC for a
    /// retained change goes once it is on disk, and every acknowledgement after it
    /// waits behind it. Boxed on first use.
    held: Option<Box<HeldAcks<Packet>>>,
    /// The CONNACK is held (a persistent session's record is not on disk yet): nothing
    /// else is sent before it.
    awaiting_connack: bool,
    /// In a cluster: the epoch of this connection's claim (see
    /// `ferry_core::SessionOwnership::connection_ended`).
    cluster_epoch: Option<u64>,
}

impl Connected {
    /// Whether a packet of `len` bytes exceeds the client's Maximum Packet Size (MQTT 5
    /// §3.1.2.11.4); such a packet must not be sent to it.
    fn too_big_for_client(&self, len: usize) -> bool {
        self.client_max_packet
            .is_some_and(|max| len > usize::try_from(max).unwrap_or(usize::MAX))
    }
}

/// State of a connection whose CONNECT is valid and whose credentials are being checked.
/// Nothing of the client's session is touched yet: a client without the right password
/// must not take over (or even disturb) the real one.
struct Authenticating {
    /// The CONNECT, validated, its password already handed to the check.
    accepted: connect::Accepted,
    /// The gatekeeper's verdict, its delay and the CONNECT timeout (the connection's
    /// wakeup rings when the verdict is in).
    check: ConnectCheck,
}

/// State of an authenticated connection whose client id is being claimed in the
/// cluster (and its session fetched from the node that had it); the connection's
/// wakeup rings when the claim is settled.
struct Claiming {
    accepted: connect::Accepted,
    identity: Identity,
    ticket: ClaimTicket,
    /// Past it the CONNECT is refused with "server unavailable".
    deadline: Instant,
}

/// The broker's topic aliases toward one client: the first `max` distinct topics sent
/// get an alias each, so later messages on them carry two bytes instead of the topic.
/// The map is boxed on the first alias.
#[derive(Debug, Default)]
struct OutAliases {
    max: u16,
    #[expect(clippy::box_collection, reason = "a pointer while unused instead of an empty map's 48 bytes")]
    by_topic: Option<Box<HashMap<Arc<str>, u16>>>,
}

impl OutAliases {
    /// The alias for `topic` and whether the client already knows it, or `None` when
    /// the client takes no (more) aliases.
    fn alias(&mut self, topic: &str) -> Option<(u16, bool)> {
        if let Some(a) = self.by_topic.as_ref().and_then(|m| m.get(topic)) {
            return Some((*a, true));
        }
        // The map is made only for an alias given out: a client that takes none (Topic
        // Alias Maximum 0, the default) never gets one.
        let given = self.by_topic.as_ref().map_or(0, |m| m.len());
        let next = u16::try_from(given + 1).ok().filter(|n| *n <= self.max)?;
        self.by_topic.get_or_insert_default().insert(Arc::from(topic), next);
        Some((next, false))
    }
}

/// How a connected session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Normal DISCONNECT: no will.
    Disconnect,
    /// DISCONNECT 0x04: publish the will.
    DisconnectWithWill,
    /// Another connection took the session: it is not released.
    TakenOver,
    /// Anything else: the will is published.
    Abnormal,
}

enum Phase {
    /// Waiting for CONNECT until the deadline.
    AwaitingConnect { deadline: Instant },
    /// CONNECT valid, credentials being checked; later input is kept undecoded.
    Authenticating(Box<Authenticating>),
    /// Authenticated, the client id being claimed in the cluster; later input is kept
    /// undecoded.
    Claiming(Box<Claiming>),
    /// CONNECT accepted.
    Connected(Box<Connected>),
    /// Closing; nothing more is read.
    Closed,
}

/// The MQTT state machine of one connection.
pub struct MqttConnection {
    broker: Arc<MqttShared>,
    info: Arc<ConnectionInfo>,
    decoder: Decoder,
    input: BytesMut,
    phase: Phase,
    last_packet: Instant,
}

impl MqttConnection {
    /// A session for a new connection, opened at `now`.
    pub fn new(broker: Arc<MqttShared>, info: Arc<ConnectionInfo>, now: Instant) -> Self {
        let deadline = now + broker.config.connect_timeout;
        // Until the client is authenticated, only small packets: the CONNECT is all it
        // may send, and each byte it sends before then costs an unknown peer nothing.
        let decoder = Decoder::server(broker.config.max_packet_size_unauthenticated);
        Self {
            broker,
            info,
            decoder,
            input: BytesMut::new(),
            phase: Phase::AwaitingConnect { deadline },
            last_packet: now,
        }
    }

    fn version(&self) -> Option<Version> {
        match &self.phase {
            Phase::Connected(c) => Some(c.version),
            _ => None,
        }
    }

    /// Close because of a protocol violation: MQTT 5 gets DISCONNECT with `reason`
    /// (before CONNECT, or on MQTT 3, the socket is simply closed).
    fn violation(&mut self, reason: ReasonCode, why: &str, w: &mut Writer, out: &mut Output) {
        self.broker.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
        info!(conn = self.info.id, peer = %self.info.peer, reason = %reason.named(), why, "MQTT protocol violation: closing");
        self.server_disconnect(reason, why, End::Abnormal, w, out);
    }

    /// Close because a packet came in a WebSocket text frame: MQTT 3.1.1 and 5.0 §6.0
    /// [MQTT-6.0.0-1] allow only binary frames. MQTT 5 gets DISCONNECT 0x82 once
    /// connected; the WebSocket is closed with 1003 (a type of data not accepted).
    fn refuse_text_frame(&mut self, w: &mut Writer, out: &mut Output) {
        const WHY: &str = "MQTT packets must be sent in binary WebSocket frames";
        self.broker.stats.text_frames.fetch_add(1, Ordering::Relaxed);
        self.broker.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
        info!(conn = self.info.id, peer = %self.info.peer, "MQTT packet in a WebSocket text frame: closing");
        if let Phase::Connected(c) = &mut self.phase {
            if c.version.is_v5() {
                let mut d = Disconnect::new(ReasonCode::PROTOCOL_ERROR);
                d.properties.push(crate::codec::Property::ReasonString(ByteString::from(WHY)));
                w.packet(&Packet::Disconnect(d), c.version);
            }
            c.ended.get_or_insert(End::Abnormal);
        } else {
            self.phase = Phase::Closed;
        }
        w.flush(out);
        out.close(CloseRequest {
            code: CloseCode::UNSUPPORTED_DATA,
            reason: WHY.into(),
        });
    }

    /// End the connection from the broker's side.
    fn server_disconnect(&mut self, reason: ReasonCode, why: &str, end: End, w: &mut Writer, out: &mut Output) {
        if let Phase::Connected(c) = &mut self.phase {
            if c.version.is_v5() {
                let mut d = Disconnect::new(reason);
                if !why.is_empty() {
                    d.properties.push(crate::codec::Property::ReasonString(ByteString::from(why)));
                }
                w.packet(&Packet::Disconnect(d), c.version);
            }
            c.ended.get_or_insert(end);
        }
        self.phase_close(why, w, out);
    }

    fn phase_close(&mut self, why: &str, w: &mut Writer, out: &mut Output) {
        w.flush(out);
        out.close(if why.is_empty() {
            CloseRequest::normal("")
        } else {
            CloseRequest::policy(why)
        });
        if !matches!(self.phase, Phase::Connected(_)) {
            self.phase = Phase::Closed;
        }
    }

    fn handle(&mut self, packet: Packet, now: Instant, w: &mut Writer, out: &mut Output) {
        let connected = matches!(self.phase, Phase::Connected(_));
        match (packet, connected) {
            (Packet::Connect(connect), false) => self.on_connect(connect, now, w, out),
            (Packet::Connect(_), true) => self.violation(ReasonCode::PROTOCOL_ERROR, "second CONNECT", w, out),
            (p, false) => {
                info!(conn = self.info.id, peer = %self.info.peer, packet = ?p.packet_type(), "packet before CONNECT: closing");
                self.phase_close("", w, out);
                self.phase = Phase::Closed;
            }
            (Packet::Publish(p), true) => self.on_publish(p, now, w, out),
            (Packet::PubAck(a), true) => self.on_puback(a, now, w, out),
            (Packet::PubRec(a), true) => self.on_pubrec(a, now, w, out),
            (Packet::PubRel(a), true) => self.on_pubrel(a, w),
            (Packet::PubComp(a), true) => self.on_pubcomp(a, now, w, out),
            (Packet::Subscribe(s), true) => self.on_subscribe(s, now, w, out),
            (Packet::Unsubscribe(u), true) => self.on_unsubscribe(u, w),
            (Packet::PingReq, true) => {
                if let Some(v) = self.version() {
                    w.packet(&Packet::PingResp, v);
                }
            }
            (Packet::Disconnect(d), true) => self.on_disconnect(d, w, out),
            (Packet::Auth(_), true) => self.violation(ReasonCode::PROTOCOL_ERROR, "AUTH without enhanced authentication", w, out),
            (p, true) => {
                let why = format!("{:?} is not sent by clients", p.packet_type());
                self.violation(ReasonCode::PROTOCOL_ERROR, &why, w, out)
            }
        }
    }

    fn on_disconnect(&mut self, d: Disconnect, w: &mut Writer, out: &mut Output) {
        let Phase::Connected(c) = &mut self.phase else { return };
        if let Some(expiry) = d.properties.session_expiry_interval() {
            // MQTT 5 §3.14.2.2.2: a session that was to end with the connection cannot
            // be given an expiry at DISCONNECT.
            if c.session_expiry.is_zero() && expiry != 0 {
                return self.violation(
                    ReasonCode::PROTOCOL_ERROR,
                    "session expiry set at DISCONNECT after 0 at CONNECT",
                    w,
                    out,
                );
            }
            c.session_expiry = Duration::from_secs(u64::from(expiry)).min(self.broker.config.max_session_expiry);
        }
        c.ended = Some(if d.reason == ReasonCode::DISCONNECT_WITH_WILL {
            End::DisconnectWithWill
        } else {
            End::Disconnect
        });
        debug!(conn = self.info.id, client = %c.client_id, "client disconnected");
        self.phase_close("", w, out);
    }

    /// Decode and act on the buffered input, as far as the phase allows: while the
    /// credentials are checked, input is only kept (at most `max_packet_size` bytes).
    fn decode_input(&mut self, now: Instant, w: &mut Writer, out: &mut Output) {
        loop {
            match &self.phase {
                Phase::Closed | Phase::Authenticating(_) | Phase::Claiming(_) => break,
                Phase::Connected(c) if c.ended.is_some() => break,
                _ => {}
            }
            match self.decoder.decode(&mut self.input) {
                Ok(Some(packet)) => {
                    self.last_packet = now;
                    self.handle(packet, now, w, out);
                }
                Ok(None) => break,
                Err(e) => {
                    match &self.phase {
                        Phase::Connected(_) => self.violation(e.reason_code(), &e.to_string(), w, out),
                        _ => {
                            if matches!(e, DecodeError::PacketTooLarge { .. }) {
                                self.broker.stats.too_large_unauthenticated.fetch_add(1, Ordering::Relaxed);
                            }
                            self.refuse_connect_error(&e, w, out)
                        }
                    }
                    break;
                }
            }
        }
        let waiting = match &self.phase {
            Phase::Authenticating(a) => Some(a.accepted.version()),
            Phase::Claiming(c) => Some(c.accepted.version()),
            _ => None,
        };
        if let (Some(version), true) = (waiting, self.input.len() > self.broker.config.max_packet_size) {
            self.broker.stats.too_large_unauthenticated.fetch_add(1, Ordering::Relaxed);
            info!(conn = self.info.id, peer = %self.info.peer, buffered = self.input.len(), "too much input while authenticating: closing");
            // The CONNECT is not answered yet: a 5.0 client reads why in its CONNACK.
            if version.is_v5() {
                return self.refuse(version, ReasonCode::PACKET_TOO_LARGE, "too much input before CONNACK", w, out);
            }
            self.phase_close("", w, out);
            self.phase = Phase::Closed;
        }
    }

    /// Leave without a word after a take-over (MQTT 3) or with DISCONNECT 0x8E (MQTT 5).
    fn check_taken_over(&mut self, w: &mut Writer, out: &mut Output) -> bool {
        let Phase::Connected(c) = &self.phase else { return false };
        if c.ended.is_none() && c.owner.is_taken_over() {
            info!(conn = self.info.id, client = %c.client_id, "session taken over by a new connection");
            self.server_disconnect(ReasonCode::SESSION_TAKEN_OVER, "session taken over", End::TakenOver, w, out);
            return true;
        }
        false
    }
}

impl Connection for MqttConnection {
    fn on_input(&mut self, input: Input, now: Instant, out: &mut Output) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        let mut w = Writer::default();
        if let Input::Message(MessageKind::Text, _) = input {
            self.refuse_text_frame(&mut w, out);
            return w.flush(out);
        }
        self.input.extend_from_slice(input.bytes());
        self.decode_input(now, &mut w, out);
        w.flush(out);
    }

    fn on_wake(&mut self, now: Instant, out: &mut Output) {
        let mut w = Writer::default();
        if matches!(self.phase, Phase::Authenticating(_)) {
            self.advance_auth(now, &mut w, out);
        } else if matches!(self.phase, Phase::Claiming(_)) {
            self.advance_claim(now, &mut w, out);
        } else if !self.check_taken_over(&mut w, out) {
            self.release_acks(now, &mut w, out);
            self.pump(now, &mut w, out);
        }
        w.flush(out);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::AwaitingConnect { deadline } => Some(*deadline),
            // Once the verdict is in, only its delay is waited for.
            Phase::Authenticating(a) => a.check.timeout(),
            Phase::Claiming(c) => Some(c.deadline),
            Phase::Connected(c) if c.ended.is_none() => {
                let keep_alive = c.keep_alive_limit.map(|limit| self.last_packet + limit);
                [keep_alive, c.policy.expires_at()].into_iter().flatten().min()
            }
            _ => None,
        }
    }

    fn on_timeout(&mut self, now: Instant, out: &mut Output) {
        let mut w = Writer::default();
        if matches!(self.phase, Phase::Authenticating(_)) {
            self.advance_auth(now, &mut w, out);
        }
        match &self.phase {
            Phase::AwaitingConnect { deadline } if now >= *deadline => {
                info!(conn = self.info.id, peer = %self.info.peer, "no CONNECT in time: closing");
                self.phase_close("", &mut w, out);
                self.phase = Phase::Closed;
            }
            Phase::Claiming(c) if now >= c.deadline => {
                let version = c.accepted.version();
                self.refuse(
                    version,
                    ReasonCode::SERVER_UNAVAILABLE,
                    "the cluster did not settle the client id in time",
                    &mut w,
                    out,
                );
            }
            Phase::Authenticating(a) if a.check.timed_out(now) => {
                let version = a.accepted.version();
                self.refuse(
                    version,
                    ReasonCode::SERVER_UNAVAILABLE,
                    "authentication did not finish in time",
                    &mut w,
                    out,
                );
            }
            // `expired` counts the expiry: it is asked last, and the arm always closes.
            Phase::Connected(c) if c.ended.is_none() && c.policy.expired(now) => {
                info!(conn = self.info.id, client = %c.client_id, user = ?c.policy.identity().username, "token expired: closing");
                // MQTT 5 has no "token expired" code: 0x87 as EMQX, with a reason string.
                self.server_disconnect(ReasonCode::NOT_AUTHORIZED, "token expired", End::Abnormal, &mut w, out);
            }
            Phase::Connected(c) if c.keep_alive_limit.is_some_and(|l| now >= self.last_packet + l) => {
                self.broker.stats.keep_alive_timeouts.fetch_add(1, Ordering::Relaxed);
                info!(conn = self.info.id, client = %c.client_id, "keep-alive timeout: closing");
                self.server_disconnect(ReasonCode::KEEP_ALIVE_TIMEOUT, "keep alive timeout", End::Abnormal, &mut w, out);
            }
            _ => {}
        }
        w.flush(out);
    }

    fn on_shutdown(&mut self, _now: Instant, out: &mut Output) {
        let mut w = Writer::default();
        self.server_disconnect(ReasonCode::SERVER_SHUTTING_DOWN, "server shutting down", End::Abnormal, &mut w, out);
        w.flush(out);
    }

    fn on_kick(&mut self, _now: Instant, out: &mut Output) {
        let mut w = Writer::default();
        self.server_disconnect(
            ReasonCode::ADMINISTRATIVE_ACTION,
            "closed by an administrator",
            End::Abnormal,
            &mut w,
            out,
        );
        w.flush(out);
    }

    fn on_closed(&mut self, _clean: bool, now: Instant) {
        let Phase::Connected(c) = std::mem::replace(&mut self.phase, Phase::Closed) else {
            return;
        };
        // A take-over may have happened while this connection was already ending.
        let end = if c.owner.is_taken_over() {
            End::TakenOver
        } else {
            c.ended.unwrap_or(End::Abnormal)
        };
        if let (false, Some(epoch), Some(ownership)) = (end == End::TakenOver, c.cluster_epoch, self.broker.ownership()) {
            ownership.connection_ended(&c.client_id, epoch);
        }
        if end == End::TakenOver {
            // MQTT 5 §3.1.4: the old connection's will is published on take-over
            // unless its delay outlasts the new connection's arrival.
            if let Some(will) = c.will.filter(|w| w.delay.is_zero()) {
                self.broker.publish_will(c.client_id.clone(), will.message, now, now);
            }
            return;
        }
        if matches!(end, End::Abnormal | End::DisconnectWithWill) {
            if let Some(will) = c.will {
                // MQTT 5 §3.1.3.2.2: the will goes when its delay passes or the session
                // ends, whichever is first; a session expiry of 0 ends it now.
                let delay = will.delay.min(c.session_expiry);
                self.broker.publish_will(c.client_id.clone(), will.message, now + delay, now);
            }
        }
        match self
            .broker
            .sessions
            .release(&c.slot, c.owner.connection, Some(c.session_expiry), now)
        {
            Some(ended) => self.broker.drop_session(&ended),
            None => {
                let key = c.slot.state.lock().durable;
                if let (Some(journal), Some(key)) = (self.broker.router.journal(), key) {
                    journal.session_detached(key, (c.session_expiry != Duration::MAX).then_some(c.session_expiry));
                }
            }
        }
        debug!(conn = self.info.id, client = %c.client_id, ?end, "MQTT session left");
    }
}

#[cfg(test)]
mod tests;
