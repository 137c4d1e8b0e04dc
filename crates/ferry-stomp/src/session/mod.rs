//! One STOMP connection's state machine (sans-IO): bytes in, frames decoded and acted
//! on through the core, frames out. Split by concern: [`connect`] (CONNECT/STOMP,
//! version and heart-beat negotiation, authentication, CONNECTED), [`send`] (SEND to topics, queues
//! and temporary queues), [`subscribe`] (SUBSCRIBE, UNSUBSCRIBE, retained messages),
//! [`ack`] (ACK, NACK), [`transaction`] (BEGIN, COMMIT, ABORT), [`deliver`]
//! (MESSAGE frames under each subscription's window), [`heartbeat`], [`writer`].
//!
//! Every protocol error ends the session the same way: an ERROR frame with a `message`
//! header and an explaining body, then a close request (see [`ProtocolError`]).
//!
//! Security, through the broker's [`Gatekeeper`](ferry_auth::Gatekeeper): the CONNECT is
//! authenticated (see [`connect`]) and the [`Identity`] kept; a SEND to `/topic/X` is
//! checked as an MQTT publish to X's mapped topic, a SUBSCRIBE to `/topic/F` as an MQTT
//! subscribe to F's mapped filter, `/queue/NAME` by the ACL's queue rules; a temporary
//! queue is private to its connection and a reply queue is reached only through the
//! `reply-to` its owner handed out, so neither is checked. A refusal is an ERROR
//! `message:access refused` naming the destination, then close. When the ACL can take
//! away part of an allowed subscription, each topic message is checked before delivery
//! and withheld if refused. A token that expires closes the connection (ERROR, "token
//! expired"); SENDs beyond `limits.messages_per_second` close it too.
//!
//! Durability: a RECEIPT says that everything the connection's earlier frames made
//! durable (a message put into a durable `/queue/`, directly or at COMMIT) is on disk.
//! Until then it is held ([`HeldAcks`], in order, the connection's other work going on)
//! and the journal rings the connection's doorbell when it may go; a DISCONNECT with a
//! receipt closes only after its RECEIPT went. If the journal fails meanwhile, the held
//! receipt is answered with an ERROR ("storage unavailable") instead, then close.

mod ack;
mod connect;
mod deliver;
pub mod heartbeat;
mod send;
mod subscribe;
#[cfg(test)]
mod tests;
mod transaction;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ferry_auth::{ClientPolicy, Identity};
use ferry_core::{CloseRequest, CompactMap, Connection, ConnectionInfo, HeldAcks, Input, Lsn, Output, SubscriberId, TopicName};
use foldhash::fast::RandomState;
use tracing::{debug, info};

use crate::codec::{Command, Decoded, Decoder, Frame, Version};
use crate::error::ProtocolError;
use crate::queue::QueueError;
use crate::shared::StompShared;

use connect::Authenticating;
use heartbeat::HeartBeat;
use subscribe::{Pending, Sub};
use transaction::Transactions;
use writer::Writer;

/// What the client said of itself in its CONNECT. The `passcode` is handed to the
/// gatekeeper and not kept.
#[derive(Debug, Clone, Default)]
pub struct ConnectHeaders {
    /// `host`: the virtual host the client asked for.
    pub host: Option<String>,
    /// `login`.
    pub login: Option<String>,
}

/// State of a connection whose CONNECT was accepted.
struct Connected {
    version: Version,
    /// The `session` header sent in CONNECTED; also the prefix of message ids.
    name: String,
    connect_headers: ConnectHeaders,
    /// Who the client authenticated as, its token's expiry (the connection closes
    /// then), its message rate, its quota and ACL.
    policy: ClientPolicy,
    heart_beat: HeartBeat,
    /// The identity this connection publishes under (never subscribes under).
    publisher: SubscriberId,
    /// Subscriptions by id (most sessions have one or a few: a right-sized vector, not a
    /// B-tree node with room for eleven).
    subs: CompactMap<String, Sub, RandomState>,
    /// Messages sent and not yet acknowledged, by sequence number.
    unacked: BTreeMap<u64, Pending>,
    /// The next message sequence number (message ids are `NAME-SEQ`).
    next_seq: u64,
    /// Where the next delivery round starts among the subscriptions.
    pump_start: usize,
    transactions: Transactions,
    /// Temporary queues by name: their reply token.
    temp: HashMap<String, String>,
    /// The `destination` of the last topic delivered and the topic it maps from: a
    /// subscription mostly sees one topic, so its MESSAGEs reuse the string instead of
    /// mapping the topic again for every delivery.
    last_destination: Option<(TopicName, String)>,
    /// Where each MESSAGE's `message-id` is written (reused, not allocated per message).
    message_id: String,
    /// The last journal position this connection's frames made: a RECEIPT waits for it.
    written: Lsn,
    /// RECEIPTs waiting for the journal, oldest first.
    held: HeldAcks<HeldReceipt>,
}

/// A RECEIPT waiting for the journal.
#[derive(Debug)]
enum HeldReceipt {
    /// For any frame but DISCONNECT: its `receipt-id`.
    Frame(String),
    /// For DISCONNECT: the connection closes once it went.
    Disconnect(String),
}

enum Phase {
    /// Waiting for CONNECT until the deadline (`None`: a timeout too large to matter).
    AwaitingConnect { deadline: Option<Instant> },
    /// CONNECT received, its credentials being checked; what arrives meanwhile waits
    /// undecoded in the input buffer.
    Authenticating(Box<Authenticating>),
    /// CONNECT accepted.
    Connected(Box<Connected>),
}

/// The STOMP state machine of one connection.
pub struct StompConnection {
    broker: Arc<StompShared>,
    info: Arc<ConnectionInfo>,
    decoder: Decoder,
    input: BytesMut,
    phase: Phase,
    /// Set once the session asked to close (ERROR, DISCONNECT, shutdown): nothing more
    /// is read or delivered.
    closing: bool,
    /// A DISCONNECT's RECEIPT waits for the journal: the connection closes once it went.
    disconnecting: bool,
    last_received: Instant,
    last_sent: Instant,
}

impl Connected {
    /// See [`StompConnection::hold_receipt`].
    fn hold_receipt(&mut self, broker: &StompShared, info: &ConnectionInfo, receipt: HeldReceipt) -> bool {
        let Some(journal) = broker.router.journal() else { return false };
        let waits = journal.durable_lsn() < self.written;
        if !waits && self.held.is_empty() {
            return false;
        }
        if waits {
            broker.stats.receipts_held.fetch_add(1, Ordering::Relaxed);
            journal.when_durable(self.written, info.wakeup.clone());
        }
        self.held.hold(self.written, receipt);
        true
    }
}

/// What the handlers of one frame share.
struct Ctx<'a> {
    broker: &'a StompShared,
    info: &'a ConnectionInfo,
    now: Instant,
}

impl StompConnection {
    /// A session for a new connection, opened at `now`.
    pub fn new(broker: Arc<StompShared>, info: Arc<ConnectionInfo>, now: Instant) -> Self {
        let deadline = now.checked_add(broker.config.connect_timeout);
        let decoder = Decoder::new(broker.config.unauthenticated_limits());
        Self {
            broker,
            info,
            decoder,
            input: BytesMut::new(),
            phase: Phase::AwaitingConnect { deadline },
            closing: false,
            disconnecting: false,
            last_received: now,
            last_sent: now,
        }
    }

    /// What the client said of itself in its CONNECT, once connected.
    pub fn connect_headers(&self) -> Option<&ConnectHeaders> {
        match &self.phase {
            Phase::Connected(c) => Some(&c.connect_headers),
            _ => None,
        }
    }

    /// Who the client authenticated as, once connected.
    pub fn identity(&self) -> Option<&Identity> {
        match &self.phase {
            Phase::Connected(c) => Some(c.policy.identity()),
            _ => None,
        }
    }

    fn version(&self) -> Version {
        match &self.phase {
            Phase::Connected(c) => c.version,
            // Before CONNECTED nothing is escaped: an ERROR is written as 1.0 writes it.
            Phase::AwaitingConnect { .. } | Phase::Authenticating(_) => Version::V1_0,
        }
    }

    /// End the session with an ERROR frame about `error` (naming `receipt` when the
    /// failing frame asked for one), then close.
    fn fail(&mut self, error: &ProtocolError, receipt: Option<&str>, w: &mut Writer, out: &mut Output) {
        let stats = &self.broker.stats;
        match error {
            ProtocolError::ConnectTimeout(_) => stats.connect_timeouts.fetch_add(1, Ordering::Relaxed),
            ProtocolError::HeartBeatTimeout(_) => stats.heart_beat_timeouts.fetch_add(1, Ordering::Relaxed),
            _ => stats.protocol_errors.fetch_add(1, Ordering::Relaxed),
        };
        info!(conn = self.info.id, peer = %self.info.peer, error = %error, "STOMP error: closing");
        let mut frame = Frame::new(Command::Error).with_header("message", error.summary());
        if matches!(error, ProtocolError::NoCommonVersion { .. }) {
            frame.headers.push("version", "1.0,1.1,1.2");
        }
        if let Some(r) = receipt {
            frame.headers.push("receipt-id", r);
        }
        frame.headers.push("content-type", "text/plain");
        frame.body = format!("{error}\n").into();
        if !w.frame(&frame, self.version(), out) {
            // The receipt id could not be written back: say the rest without it.
            frame.headers.remove("receipt-id");
            w.frame(&frame, self.version(), out);
        }
        w.flush(out);
        out.close(error.close_request());
        self.leave();
    }

    /// The session asked to close: nothing more is read or delivered, so it stops
    /// consuming now (its queue consumers go, and what they held goes back to the
    /// queues for the others) rather than when the transport reports the connection
    /// gone, which over WebSocket may wait for the close handshake.
    fn leave(&mut self) {
        self.closing = true;
        if let Phase::Connected(c) = &mut self.phase {
            c.release(&self.broker);
        }
    }

    /// Act on one frame.
    fn handle(&mut self, frame: Frame, now: Instant, w: &mut Writer, out: &mut Output) {
        let receipt = frame.header("receipt").map(str::to_owned);
        // CONNECTED answers a CONNECT: a receipt header on it is not answered.
        let connect = matches!(frame.command, Command::Connect | Command::Stomp);
        let result = match &mut self.phase {
            Phase::AwaitingConnect { .. } => match frame.command {
                Command::Connect | Command::Stomp => self.on_connect(&frame, now, w, out),
                command => Err(ProtocolError::NotConnected { command }),
            },
            // Not reached: nothing is decoded while authenticating.
            Phase::Authenticating(_) => Ok(()),
            // `expired` counts the expiry; the arm always ends the connection.
            Phase::Connected(c) if c.policy.expired(now) => Err(ProtocolError::TokenExpired),
            Phase::Connected(c) => {
                let ctx = Ctx {
                    broker: &self.broker,
                    info: &self.info,
                    now,
                };
                let version = c.version;
                match frame.command {
                    Command::Connect | Command::Stomp => Err(ProtocolError::AlreadyConnected { command: frame.command }),
                    Command::Connected | Command::Message | Command::Receipt | Command::Error => {
                        Err(ProtocolError::ServerCommand { command: frame.command })
                    }
                    Command::Send => c.on_send(&ctx, frame),
                    Command::Subscribe => c.on_subscribe(&ctx, &frame),
                    Command::Unsubscribe => c.on_unsubscribe(&ctx, &frame),
                    Command::Ack | Command::Nack => c.on_ack(&ctx, &frame),
                    Command::Begin => c.on_begin(&ctx, &frame),
                    Command::Commit => c.on_commit(&ctx, &frame),
                    Command::Abort => c.on_abort(&frame),
                    Command::Disconnect => {
                        if let Some(r) = &receipt {
                            if c.hold_receipt(&self.broker, &self.info, HeldReceipt::Disconnect(r.clone())) {
                                // Closed once the journal has what the RECEIPT promises.
                                debug!(conn = self.info.id, "client disconnected: its RECEIPT waits for the journal");
                                self.disconnecting = true;
                                self.leave();
                                return;
                            }
                            w.frame(&Frame::new(Command::Receipt).with_header("receipt-id", r.as_str()), version, out);
                        }
                        debug!(conn = self.info.id, session = %c.name, "client disconnected");
                        w.flush(out);
                        out.close(CloseRequest::normal("disconnect"));
                        self.leave();
                        return;
                    }
                }
            }
        };
        match result {
            Ok(()) => {
                if let (Some(r), false) = (receipt, connect) {
                    if !self.hold_receipt(HeldReceipt::Frame(r.clone())) {
                        let version = self.version();
                        w.frame(&Frame::new(Command::Receipt).with_header("receipt-id", r), version, out);
                    }
                }
            }
            Err(e) => self.fail(&e, receipt.as_deref(), w, out),
        }
    }

    /// Holds `receipt` when what it acknowledges is not on disk yet, or when an earlier
    /// one is held (receipts keep their order); the journal rings the connection once
    /// it may go. False: nothing to wait for, send it now.
    fn hold_receipt(&mut self, receipt: HeldReceipt) -> bool {
        let Phase::Connected(c) = &mut self.phase else { return false };
        c.hold_receipt(&self.broker, &self.info, receipt)
    }

    /// Sends the held RECEIPTs whose records are durable now (closing after a
    /// DISCONNECT's); if the journal failed, answers the first still waiting with an
    /// ERROR instead and closes.
    fn release_receipts(&mut self, w: &mut Writer, out: &mut Output) {
        let version = self.version();
        let Phase::Connected(c) = &mut self.phase else { return };
        if c.held.is_empty() {
            return;
        }
        let Some(journal) = self.broker.router.journal() else { return };
        let durable = journal.durable_lsn();
        let mut disconnect = false;
        c.held.release(durable, |held| {
            let (HeldReceipt::Frame(r) | HeldReceipt::Disconnect(r)) = &held;
            w.frame(&Frame::new(Command::Receipt).with_header("receipt-id", r.as_str()), version, out);
            disconnect |= matches!(held, HeldReceipt::Disconnect(_));
        });
        if disconnect {
            self.disconnecting = false;
            w.flush(out);
            out.close(CloseRequest::normal("disconnect"));
            return;
        }
        if c.held.is_empty() {
            return;
        }
        let Err(e) = journal.health() else { return };
        let first = c.held.drain().next().map(|(_, held)| match held {
            HeldReceipt::Frame(r) | HeldReceipt::Disconnect(r) => r,
        });
        self.disconnecting = false;
        self.fail(&ProtocolError::Queue(QueueError::Storage(e)), first.as_deref(), w, out);
    }

    /// Deliver what waits for this connection's subscriptions.
    fn pump(&mut self, now: Instant, w: &mut Writer, out: &mut Output) {
        if self.closing {
            return;
        }
        if let Phase::Connected(c) = &mut self.phase {
            let ctx = Ctx {
                broker: &self.broker,
                info: &self.info,
                now,
            };
            c.pump(&ctx, w, out);
        }
    }

    /// Decode and act on what waits in the input buffer, until it holds no complete
    /// frame, the session closes, or a CONNECT is being authenticated (then the rest
    /// waits, undecoded, up to `max_body_unauthenticated` octets).
    fn process_input(&mut self, now: Instant, w: &mut Writer, out: &mut Output) {
        while !self.closing {
            if matches!(self.phase, Phase::Authenticating(_)) {
                let limit = self.broker.config.max_body_unauthenticated;
                if self.input.len() > limit {
                    self.fail(&ProtocolError::TooMuchBeforeConnected { limit }, None, w, out);
                }
                return;
            }
            match self.decoder.decode(&mut self.input) {
                Ok(Some(Decoded::Frame(frame))) => self.handle(frame, now, w, out),
                Ok(Some(Decoded::HeartBeat)) => {}
                Ok(None) => break,
                Err(e) => {
                    self.fail(&ProtocolError::Frame(e), None, w, out);
                    break;
                }
            }
        }
    }

    fn finish_call(&mut self, w: &mut Writer, now: Instant, out: &mut Output) {
        w.flush(out);
        if w.wrote() {
            self.last_sent = now;
        }
    }
}

impl Connection for StompConnection {
    fn on_input(&mut self, input: Input, now: Instant, out: &mut Output) {
        if self.closing {
            return;
        }
        let bytes = input.bytes();
        if !bytes.is_empty() {
            self.last_received = now;
        }
        self.input.extend_from_slice(bytes);
        let mut w = Writer::new(self.info.carrier);
        self.process_input(now, &mut w, out);
        self.pump(now, &mut w, out);
        self.finish_call(&mut w, now, out);
    }

    fn on_wake(&mut self, now: Instant, out: &mut Output) {
        if self.disconnecting {
            let mut w = Writer::new(self.info.carrier);
            self.release_receipts(&mut w, out);
            self.finish_call(&mut w, now, out);
            return;
        }
        if self.closing {
            return;
        }
        let mut w = Writer::new(self.info.carrier);
        self.release_receipts(&mut w, out);
        if matches!(self.phase, Phase::Authenticating(_)) {
            // The verdict may be in: answer, then read what waited for it.
            self.advance_auth(now, &mut w, out);
            self.process_input(now, &mut w, out);
        }
        self.pump(now, &mut w, out);
        self.finish_call(&mut w, now, out);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.closing {
            return None;
        }
        match &self.phase {
            Phase::AwaitingConnect { deadline } => *deadline,
            Phase::Authenticating(a) => a.check.timeout(),
            Phase::Connected(c) => {
                let send = c.heart_beat.send_every.and_then(|d| self.last_sent.checked_add(d));
                let receive = c.heart_beat.silence_limit.and_then(|d| self.last_received.checked_add(d));
                send.into_iter().chain(receive).chain(c.policy.expires_at()).min()
            }
        }
    }

    fn on_timeout(&mut self, now: Instant, out: &mut Output) {
        if self.closing {
            return;
        }
        let mut w = Writer::new(self.info.carrier);
        match &self.phase {
            Phase::AwaitingConnect { deadline } => {
                if deadline.is_some_and(|d| now >= d) {
                    let e = ProtocolError::ConnectTimeout(self.broker.config.connect_timeout);
                    self.fail(&e, None, &mut w, out);
                }
            }
            Phase::Authenticating(a) => {
                if a.check.timed_out(now) {
                    let e = ProtocolError::ConnectTimeout(self.broker.config.connect_timeout);
                    self.fail(&e, None, &mut w, out);
                } else {
                    // The delay of a verdict is over: answer, then read what waited.
                    self.advance_auth(now, &mut w, out);
                    self.process_input(now, &mut w, out);
                    self.pump(now, &mut w, out);
                }
            }
            Phase::Connected(c) => {
                let hb = c.heart_beat;
                let due = |since: Instant, d: Duration| since.checked_add(d).is_some_and(|at| now >= at);
                if c.policy.expired(now) {
                    self.fail(&ProtocolError::TokenExpired, None, &mut w, out);
                } else if let Some(limit) = hb.silence_limit.filter(|&l| due(self.last_received, l)) {
                    self.fail(&ProtocolError::HeartBeatTimeout(limit), None, &mut w, out);
                } else if hb.send_every.is_some_and(|d| due(self.last_sent, d)) {
                    w.heartbeat(out);
                }
            }
        }
        self.finish_call(&mut w, now, out);
    }

    fn on_shutdown(&mut self, now: Instant, out: &mut Output) {
        if self.closing {
            return;
        }
        let mut w = Writer::new(self.info.carrier);
        let frame = Frame::new(Command::Error)
            .with_header("message", "server shutting down")
            .with_header("content-type", "text/plain")
            .with_body("the broker is shutting down; reconnect later\n");
        w.frame(&frame, self.version(), out);
        self.leave();
        self.finish_call(&mut w, now, out);
    }

    fn on_kick(&mut self, now: Instant, out: &mut Output) {
        if self.closing {
            return;
        }
        let mut w = Writer::new(self.info.carrier);
        let frame = Frame::new(Command::Error)
            .with_header("message", "closed by an administrator")
            .with_header("content-type", "text/plain")
            .with_body("an administrator closed this connection\n");
        w.frame(&frame, self.version(), out);
        self.closing = true;
        self.finish_call(&mut w, now, out);
    }

    fn on_closed(&mut self, _clean: bool, _now: Instant) {
        self.closing = true;
        let Phase::Connected(c) = &mut self.phase else {
            return;
        };
        c.release(&self.broker);
        debug!(conn = self.info.id, session = %c.name, "STOMP session ended");
    }
}
