//! The interface every protocol adapter implements, and the transport drives.
//!
//! The transport owns sockets, WebSocket framing and timers; an adapter owns one
//! protocol's bytes. They meet here:
//!
//! * [`Adapter`] is the factory registered once per protocol: its name, the WebSocket
//!   subprotocols it serves, how to recognise its first bytes, and [`Adapter::open`].
//! * [`Connection`] is one connection's protocol state machine. The transport feeds it
//!   [`Input`] and the current time; the session appends what it wants written to an
//!   [`Output`], which the transport writes in one batch per wake-up.
//!
//! Nothing in this module performs I/O or reads the clock, so a session can be tested
//! by feeding it bytes and instants.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use atomic_waker::AtomicWaker;
use bytes::Bytes;

/// What a connection runs over, so an adapter can tell how its bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// A WebSocket: input arrives message by message, output leaves as messages.
    WebSocket,
    /// A plain byte stream (TCP, with or without TLS).
    Stream,
}

/// The WebSocket message type an adapter writes (binary for MQTT, text for STOMP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Opcode 0x2: arbitrary bytes.
    Binary,
    /// Opcode 0x1: UTF-8 text, validated by the transport on the way in.
    Text,
}

/// One WebSocket subprotocol name an adapter serves, with its preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subprotocol {
    /// The token as it appears in `Sec-WebSocket-Protocol` (compared case-sensitively,
    /// as RFC 6455 requires).
    pub name: &'static str,
    /// Among the names of one adapter that a client offers, the highest rank wins;
    /// equal ranks keep the client's order.
    pub rank: u8,
}

/// The answer of [`Adapter::sniff`] to the first bytes of a connection that named no
/// subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    /// These bytes start this adapter's protocol.
    Match,
    /// Not enough bytes to tell yet.
    NeedMore,
    /// These bytes are not this adapter's protocol.
    NoMatch,
}

/// What the transport knows of a connection when it opens a session on it.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// Process-unique connection number, for logs.
    pub id: u64,
    /// The peer's address as the listener saw it.
    pub peer: SocketAddr,
    /// The name of the listener that accepted the connection (`ws`, `mqtt`, …).
    pub listener: &'static str,
    /// Whether the bytes travel inside TLS.
    pub tls: bool,
    /// WebSocket or plain stream.
    pub carrier: Carrier,
    /// The subprotocol the handshake settled on, if any.
    pub subprotocol: Option<&'static str>,
    /// Rings the connection's loop when the core has queued output for the session.
    pub wakeup: Wakeup,
    /// What the transport learnt of the client before the protocol began (a bearer token
    /// from the WebSocket upgrade, a verified client certificate); `None` when nothing.
    pub credentials: Option<Arc<TransportCredentials>>,
    /// What operators see of the connection (client details, counters, a kick request):
    /// read by the admin API through [`crate::monitor::Connections`].
    pub monitor: crate::monitor::ConnectionMonitor,
}

/// A verified TLS client certificate, as far as authentication needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCert {
    /// The subject's common name (CN), if it has one.
    pub common_name: Option<String>,
    /// The subject alternative names (DNS names, e-mail addresses, URIs, IP addresses as
    /// text), in certificate order.
    pub subject_alt_names: Vec<String>,
}

/// Credentials the transport collected before the adapter's protocol began. The bearer
/// token is a secret: never logged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TransportCredentials {
    /// A bearer token from the WebSocket upgrade: the `Authorization: Bearer` header or
    /// the `access_token` query parameter (already verified once by the transport).
    pub bearer: Option<String>,
    /// The client certificate of a TLS connection that presented a verified one.
    pub client_cert: Option<ClientCert>,
}

impl std::fmt::Debug for TransportCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportCredentials")
            .field("bearer", &self.bearer.as_ref().map(|_| "<redacted>"))
            .field("client_cert", &self.client_cert)
            .finish()
    }
}

/// A connection's doorbell: the core (or anything else off the connection's task) rings
/// it after queueing something for the session; the transport then calls
/// [`Connection::on_wake`]. Rings coalesce: many rings before the loop runs make one wake.
///
/// One task waits on it (the connection's); ringing is a flag and an atomic waker, no lock
/// and no allocation, because the router rings once per delivery.
#[derive(Debug, Clone, Default)]
pub struct Wakeup(Arc<Bell>);

#[derive(Debug, Default)]
struct Bell {
    rung: AtomicBool,
    waiter: AtomicWaker,
}

impl Wakeup {
    /// A new doorbell.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ring: the next (or current) wait returns.
    pub fn wake(&self) {
        self.0.rung.store(true, Ordering::Release);
        self.0.waiter.wake();
    }

    /// Wait for a ring. Cancel-safe: a ring that arrives while nobody waits is kept. Only
    /// one task may wait at a time (a second waiter replaces the first).
    pub async fn woken(&self) {
        std::future::poll_fn(|cx| self.poll_woken(cx)).await;
    }

    /// Poll for a ring, registering `cx`'s waker when there is none yet.
    pub fn poll_woken(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.rung.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.0.waiter.register(cx.waker());
        // A ring between the first check and the registration would be lost otherwise.
        if self.0.rung.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// A chunk of bytes from the peer.
#[derive(Debug, Clone)]
pub enum Input {
    /// Bytes from a stream; packet boundaries are not preserved.
    Stream(Bytes),
    /// One complete WebSocket message, reassembled from its fragments; text messages
    /// are valid UTF-8. Stream protocols treat it as the next bytes of the stream.
    Message(MessageKind, Bytes),
}

impl Input {
    /// The bytes, whatever their framing.
    pub fn bytes(&self) -> &Bytes {
        match self {
            Input::Stream(b) | Input::Message(_, b) => b,
        }
    }
}

/// One piece of output: over WebSocket, one message of `kind`; over a stream, bytes.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Frame type when the carrier is a WebSocket; ignored on streams.
    pub kind: MessageKind,
    /// The bytes; shared, never copied per receiver.
    pub data: Bytes,
}

/// A WebSocket close code (RFC 6455 §7.4.1), with names for the ones Ferry sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection was fulfilled.
    pub const NORMAL: Self = Self(1000);
    /// 1001: the server is going away (shutdown), or the peer stopped answering.
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: the peer broke the WebSocket or the adapter's protocol.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: a type of data the endpoint does not accept (MQTT in a text frame).
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1007: data not consistent with the message type (bad UTF-8, a bad deflate stream).
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: a rule of the broker refused the peer.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: a message too big to process.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1011: the server met a condition it could not handle.
    pub const INTERNAL_ERROR: Self = Self(1011);

    /// The code on the wire.
    pub fn as_u16(self) -> u16 {
        self.0
    }

    /// Whether closing with this code is an orderly end (1000, 1001).
    pub fn is_clean(self) -> bool {
        matches!(self.0, 1000 | 1001)
    }

    /// The code's name in RFC 6455 §7.4.1 (or "other" for the rest).
    pub fn name(self) -> &'static str {
        match self.0 {
            1000 => "normal closure",
            1001 => "going away",
            1002 => "protocol error",
            1003 => "unsupported data",
            1007 => "invalid payload data",
            1008 => "policy violation",
            1009 => "message too big",
            1010 => "mandatory extension",
            1011 => "internal error",
            _ => "other",
        }
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.0, self.name())
    }
}

impl PartialEq<u16> for CloseCode {
    fn eq(&self, other: &u16) -> bool {
        self.0 == *other
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.0
    }
}

/// A session's request to end its connection after what it has written is flushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    /// The WebSocket close code (RFC 6455 §7.4.1) the transport sends on WebSockets;
    /// on streams the socket is simply closed.
    pub code: CloseCode,
    /// A short reason, for the close frame and the log.
    pub reason: String,
}

impl CloseRequest {
    /// A close with `code` and `reason`.
    pub fn new(code: CloseCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    /// Normal closure (1000).
    pub fn normal(reason: impl Into<String>) -> Self {
        Self {
            code: CloseCode::NORMAL,
            reason: reason.into(),
        }
    }

    /// Protocol error (1002): the peer broke the adapter's protocol.
    pub fn protocol_error(reason: impl Into<String>) -> Self {
        Self {
            code: CloseCode::PROTOCOL_ERROR,
            reason: reason.into(),
        }
    }

    /// Policy violation (1008): a rule of the broker refused the peer.
    pub fn policy(reason: impl Into<String>) -> Self {
        Self {
            code: CloseCode::POLICY_VIOLATION,
            reason: reason.into(),
        }
    }

    /// Message too big (1009).
    pub fn too_big(reason: impl Into<String>) -> Self {
        Self {
            code: CloseCode::MESSAGE_TOO_BIG,
            reason: reason.into(),
        }
    }
}

/// What a session hands back to the transport from one call.
#[derive(Debug, Default)]
pub struct Output {
    /// Bytes to write, in order.
    pub writes: Vec<Outgoing>,
    /// Set when the connection must close once `writes` are flushed.
    pub close: Option<CloseRequest>,
}

impl Output {
    /// Queue `data` to be written as one message of `kind`.
    pub fn send(&mut self, kind: MessageKind, data: Bytes) {
        self.writes.push(Outgoing { kind, data });
    }

    /// Ask the transport to close the connection after flushing. The first request wins.
    pub fn close(&mut self, request: CloseRequest) {
        if self.close.is_none() {
            self.close = Some(request);
        }
    }

    /// True when there is nothing to write and no close requested.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.close.is_none()
    }
}

/// One connection's protocol state machine. Sans-IO: no method blocks or does I/O.
pub trait Connection: Send {
    /// Bytes arrived from the peer.
    fn on_input(&mut self, input: Input, now: Instant, out: &mut Output);

    /// The earliest instant at which the session wants [`Connection::on_timeout`] called,
    /// if any (keep-alive checks, retransmissions).
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// The connection's [`Wakeup`] rang: collect what the core queued for this session.
    fn on_wake(&mut self, _now: Instant, _out: &mut Output) {}

    /// The instant returned by [`Connection::poll_timeout`] has passed.
    fn on_timeout(&mut self, _now: Instant, _out: &mut Output) {}

    /// The broker is shutting down: last words to the peer (an MQTT 5 DISCONNECT, a
    /// STOMP ERROR) may be written to `out`. The transport closes the connection after.
    fn on_shutdown(&mut self, _now: Instant, _out: &mut Output) {}

    /// An administrator asked to close this connection (the admin API's kick): last
    /// words to the peer (an MQTT 5 DISCONNECT 0x98, a STOMP ERROR) may be written to
    /// `out`. The transport closes the connection after.
    fn on_kick(&mut self, _now: Instant, _out: &mut Output) {}

    /// The connection is over, for whatever reason: it started closing (the session
    /// asked to, the peer did, or the transport gave up on it) or it is gone. Called
    /// once; the session is not called again, and no more output is possible, though
    /// the transport may still be flushing what was written and finishing a WebSocket
    /// close handshake. `clean` is true when the session itself asked to close or the
    /// peer closed in an orderly way.
    fn on_closed(&mut self, _clean: bool, _now: Instant) {}
}

/// A protocol the transport can serve, registered once at start-up.
pub trait Adapter: Send + Sync + 'static {
    /// Short protocol name for logs and metrics (`mqtt`, `stomp`, `echo`).
    fn name(&self) -> &'static str;

    /// The WebSocket subprotocols this adapter serves.
    fn subprotocols(&self) -> &'static [Subprotocol];

    /// The message type this adapter writes over WebSocket.
    fn message_kind(&self) -> MessageKind;

    /// Whether `first_bytes` (the start of a connection that offered no subprotocol)
    /// begin this adapter's protocol.
    fn sniff(&self, first_bytes: &[u8]) -> Sniff;

    /// A new session for a connection opened at `now`. The session keeps `info` (a
    /// reference count: the transport and the session share one copy).
    fn open(&self, info: &Arc<ConnectionInfo>, now: Instant) -> Box<dyn Connection>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_close_request_wins() {
        let mut out = Output::default();
        assert!(out.is_empty());
        out.close(CloseRequest::too_big("first"));
        out.close(CloseRequest::normal("second"));
        assert_eq!(out.close, Some(CloseRequest::too_big("first")));
        assert!(!out.is_empty());
    }

    #[tokio::test]
    async fn rings_before_the_wait_are_kept_and_coalesced() {
        let w = Wakeup::new();
        w.wake();
        w.wake();
        tokio::time::timeout(std::time::Duration::from_secs(1), w.woken()).await.unwrap();
        let second = tokio::time::timeout(std::time::Duration::from_millis(20), w.woken()).await;
        assert!(second.is_err(), "two rings before the wait make one wake");
    }

    #[test]
    fn input_exposes_bytes_whatever_the_framing() {
        let b = Bytes::from_static(b"\x10\x00");
        assert_eq!(Input::Stream(b.clone()).bytes(), &b);
        assert_eq!(Input::Message(MessageKind::Binary, b.clone()).bytes(), &b);
    }
}
