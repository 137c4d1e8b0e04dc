//! One connection in one task, split the way quinn splits quinn-proto from quinn: the
//! sans-IO pieces decide, the [`driver`] only waits and hands events over.
//!
//! - [`driver`]: the `select!` over the socket's write and read, the session's doorbell
//!   and one timer; the final flush and shutdown.
//! - [`read`]: cancel-safe reads (through a per-thread scratch buffer while idle) and the
//!   read sizing; the vectored write of the pending output.
//! - [`byte_rate`]: the `limits.bytes_per_second` throttle.
//! - [`crate::ws`]: the WebSocket pieces (frame reader, assembler, the link that keeps
//!   pings and the close handshake, the frames written).
//! - here, [`Conn`]: what the connection is (its link, its protocol session or the
//!   sniffing of its first bytes) and what each event does to it.

mod byte_rate;
mod driver;
mod read;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use fastwebsockets::OpCode;
use ferry_core::{Adapter, Carrier, CloseCode, CloseRequest, Connection, ConnectionInfo, Input, MessageKind, Output};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info};

use ferry_core::monitor::ConnectionCounters;

use crate::admission::Admission;
use crate::outbuf::OutBuf;
use crate::registry::Sniffed;
use crate::server::Shared;
use crate::ws::assembler::{Assembler, Event, Violation};
use crate::ws::deflate::negotiate::Negotiated;
use crate::ws::deflate::MessageDeflater;
use crate::ws::frame_reader::FrameReader;
use crate::ws::link::{Link, TimerOutcome};

/// Most bytes a sniffing connection may send before its protocol must be known.
const SNIFF_LIMIT: usize = 64;

/// One unit of input for the session or the WebSocket layer.
#[derive(Debug)]
enum Inbound {
    /// Bytes from a stream carrier.
    Bytes(Bytes),
    /// A checked WebSocket event.
    Ws(Event),
    /// The peer broke the WebSocket protocol.
    Violation(Violation),
}

/// How the connection's bytes are read.
enum Reading {
    /// As they come (TCP, TLS).
    Stream,
    /// As WebSocket frames, reassembled into messages (boxed, so that a stream
    /// connection's task does not carry the room).
    WebSocket(Box<WsReading>),
}

/// A WebSocket connection's reading state.
struct WsReading {
    frames: FrameReader,
    assembler: Assembler,
}

/// How the connection picks its session.
pub(crate) enum Start {
    /// A known adapter (negotiated subprotocol, protocol port, echo path).
    Open(Arc<dyn Adapter>),
    /// Sniff the first bytes against the registry.
    Sniff,
}

enum Proto {
    Sniffing(Vec<u8>),
    Running(Box<dyn Connection>),
}

/// Serve one connection: a WebSocket whose handshake is done when `info.carrier` says
/// so, else a plain stream (TCP or TLS) carrying a protocol directly. `admission` keeps
/// it counted until it closes.
/// With `deflate`, the WebSocket negotiated permessage-deflate.
pub(crate) fn serve<S>(
    stream: S,
    info: ConnectionInfo,
    start: Start,
    admission: Admission,
    deflate: Option<Negotiated>,
    shared: Arc<Shared>,
) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut deflater = None;
    let reading = match info.carrier {
        Carrier::WebSocket => {
            let ws = &shared.config.websocket;
            let max = ws.max_message_size;
            let (mut frames, mut assembler) = (FrameReader::new(max), Assembler::new(max));
            if let Some(negotiated) = deflate {
                let compression = &ws.compression;
                let (inflater, out) = negotiated.into_codecs(compression.level(), compression.threshold);
                frames = frames.with_deflate();
                assembler = assembler.with_inflater(inflater, compression.max_first_message);
                deflater = Some(Box::new(out));
            }
            Reading::WebSocket(Box::new(WsReading { frames, assembler }))
        }
        Carrier::Stream => Reading::Stream,
    };
    let (rd, wr) = tokio::io::split(stream);
    let mut conn = Conn::new(info, start, admission, shared);
    conn.deflater = deflater;
    driver::run(rd, wr, reading, conn)
}

/// The state of one connection: its link, its protocol, and what it shares.
struct Conn {
    info: Arc<ConnectionInfo>,
    shared: Arc<Shared>,
    proto: Option<Proto>,
    link: Link,
    /// permessage-deflate's sending half, when negotiated (one pointer otherwise).
    deflater: Option<Box<MessageDeflater>>,
    shutting_down: bool,
    /// Whether the session was told the connection is over ([`Session::on_closed`]).
    ended: bool,
    /// Counted by the listener and the gatekeeper until the connection ends.
    _admission: Admission,
}

impl Conn {
    /// The state of a connection that starts now (the session opened, unless sniffing).
    fn new(info: ConnectionInfo, start: Start, admission: Admission, shared: Arc<Shared>) -> Self {
        let now = Instant::now();
        let info = Arc::new(info);
        let proto = match start {
            Start::Open(adapter) => Proto::Running(adapter.open(&info, now)),
            Start::Sniff => Proto::Sniffing(Vec::new()),
        };
        // Rung (through `info.wakeup`) when shutdown begins; delisted when the session ends, or on drop.
        shared.live.enlist(&info);
        Self {
            link: Link::new(info.carrier == Carrier::WebSocket, now),
            info,
            shared,
            proto: Some(proto),
            deflater: None,
            shutting_down: false,
            ended: false,
            _admission: admission,
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.shared.live.delist(self.info.id);
    }
}

impl Conn {
    fn ws(&self) -> bool {
        self.info.carrier == Carrier::WebSocket
    }

    /// The earliest deadline: the link's (closing, ping) or, while open, the session's.
    fn next_deadline(&self) -> Option<Instant> {
        let session = match &self.proto {
            Some(Proto::Running(s)) if self.link.is_open() => s.poll_timeout(),
            _ => None,
        };
        [self.link.next_deadline(&self.shared.config.websocket), session]
            .into_iter()
            .flatten()
            .min()
    }

    /// A deadline passed. Returns true when the connection must be dropped now.
    fn on_timer(&mut self, out: &mut OutBuf) -> bool {
        let now = Instant::now();
        let shared = &self.shared;
        match self.link.on_timer(now, &shared.config.websocket, &shared.metrics, out) {
            TimerOutcome::Drop => {
                debug!(conn = self.info.id, peer = %self.info.peer, "close handshake timed out");
                return true;
            }
            TimerOutcome::PingTimeout => {
                info!(conn = self.info.id, peer = %self.info.peer, "no answer to ping: closing");
                return false;
            }
            TimerOutcome::Closing => return false,
            TimerOutcome::Open => {}
        }
        if let Some(Proto::Running(session)) = self.proto.as_mut() {
            if session.poll_timeout().is_some_and(|at| now >= at) {
                let mut output = Output::default();
                session.on_timeout(now, &mut output);
                self.apply(output, out);
            }
        }
        false
    }

    fn on_wake(&mut self, out: &mut OutBuf) {
        if self.info.monitor.take_kick() {
            return self.on_kick(out);
        }
        if let Some(Proto::Running(session)) = self.proto.as_mut() {
            let mut output = Output::default();
            session.on_wake(Instant::now(), &mut output);
            self.apply(output, out);
        }
    }

    fn on_shutdown(&mut self, out: &mut OutBuf) {
        if !self.link.is_open() {
            return;
        }
        let mut output = Output::default();
        if let Some(Proto::Running(session)) = self.proto.as_mut() {
            session.on_shutdown(Instant::now(), &mut output);
        }
        output.close(CloseRequest::new(CloseCode::GOING_AWAY, "server shutting down"));
        self.apply(output, out);
    }

    /// An administrator asked to close the connection: the session's last words, then
    /// close 1008.
    fn on_kick(&mut self, out: &mut OutBuf) {
        if !self.link.is_open() {
            return;
        }
        info!(conn = self.info.id, peer = %self.info.peer, "closed by an administrator");
        let mut output = Output::default();
        if let Some(Proto::Running(session)) = self.proto.as_mut() {
            session.on_kick(Instant::now(), &mut output);
        }
        output.close(CloseRequest::policy("closed by an administrator"));
        self.apply(output, out);
    }

    /// Tell the session the connection is over, once: as soon as the connection starts
    /// closing (from then on the session is never called again: no input, no wake-ups,
    /// no timers), not after the close handshake or the final flush, so that it lets go
    /// of what it holds (queue consumers, its session slot, its will) instead of keeping
    /// it for up to `websocket.close_timeout`. The connection leaves the registry then
    /// too: to an operator a closing client is gone (a kicked client is no longer listed
    /// by the time its last words reach it), even while its socket lingers.
    fn end_session(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.shared.live.delist(self.info.id);
        if let Some(Proto::Running(session)) = self.proto.as_mut() {
            session.on_closed(self.link.clean(), Instant::now());
        }
    }

    /// Act on what was just read: the bytes themselves, or the WebSocket frames they
    /// complete (a partial frame stays in `input`).
    fn on_read(&mut self, reading: &mut Reading, input: &mut BytesMut, out: &mut OutBuf) {
        match reading {
            Reading::Stream => self.on_inbound(Inbound::Bytes(input.split().freeze()), out),
            Reading::WebSocket(ws) => {
                let WsReading { frames, assembler } = &mut **ws;
                // Stop at the first frame that ends the conversation; what follows is
                // never read (the loop takes no more input once closing).
                while self.link.reads() {
                    let event = match frames.next_frame(input) {
                        Ok(None) => return,
                        Ok(Some(frame)) => match assembler.push(frame) {
                            Ok(event) => Inbound::Ws(event),
                            Err(violation) => Inbound::Violation(violation),
                        },
                        Err(violation) => Inbound::Violation(violation),
                    };
                    self.on_inbound(event, out);
                }
                input.clear();
            }
        }
    }

    fn on_inbound(&mut self, event: Inbound, out: &mut OutBuf) {
        let now = Instant::now();
        let shared = &self.shared;
        match event {
            Inbound::Bytes(bytes) => self.on_data(Input::Stream(bytes), out),
            Inbound::Ws(Event::Message(kind, bytes)) => self.on_data(Input::Message(kind, bytes), out),
            Inbound::Ws(Event::Partial | Event::Pong) => {}
            Inbound::Ws(Event::Ping(payload)) => self.link.on_ping(&payload, out),
            Inbound::Ws(Event::Close(code)) => {
                if self.link.is_open() {
                    debug!(conn = self.info.id, peer = %self.info.peer, ?code, "peer closed");
                }
                self.link.on_peer_close(code, now, &shared.config.websocket, &shared.metrics, out);
            }
            Inbound::Violation(v) => {
                info!(conn = self.info.id, peer = %self.info.peer, code = %v.code, reason = v.reason, "websocket protocol violation: closing");
                // The reader has stopped: nothing more will be read, so do not wait.
                let request = CloseRequest::new(v.code, v.reason);
                self.link.on_violation(request, now, &shared.config.websocket, &shared.metrics, out);
            }
        }
    }

    fn on_data(&mut self, input: Input, out: &mut OutBuf) {
        if !self.link.is_open() {
            return; // Data after our close frame is discarded (RFC 6455 §1.4).
        }
        let now = Instant::now();
        let mut output = Output::default();
        match self.proto.take() {
            Some(Proto::Running(mut session)) => {
                session.on_input(input, now, &mut output);
                self.proto = Some(Proto::Running(session));
            }
            Some(Proto::Sniffing(mut buf)) => {
                buf.extend_from_slice(input.bytes());
                match self.shared.registry.sniff(&buf) {
                    Sniffed::Adapter(adapter) => {
                        debug!(
                            conn = self.info.id,
                            protocol = adapter.name(),
                            "protocol recognised from first bytes"
                        );
                        let mut session = adapter.open(&self.info, now);
                        let first = Bytes::from(buf);
                        let input = match input {
                            Input::Stream(_) => Input::Stream(first),
                            Input::Message(kind, _) => Input::Message(kind, first),
                        };
                        session.on_input(input, now, &mut output);
                        self.proto = Some(Proto::Running(session));
                    }
                    Sniffed::NeedMore if buf.len() < SNIFF_LIMIT => self.proto = Some(Proto::Sniffing(buf)),
                    _ => {
                        info!(conn = self.info.id, peer = %self.info.peer, "first bytes match no served protocol: closing");
                        output.close(CloseRequest::protocol_error(
                            "unrecognised protocol: offer a subprotocol or send a CONNECT",
                        ));
                        self.proto = Some(Proto::Sniffing(buf));
                    }
                }
            }
            None => {}
        }
        self.apply(output, out);
    }

    /// Write a session's output and act on its close request.
    fn apply(&mut self, output: Output, out: &mut OutBuf) {
        let ws = self.ws();
        let written: usize = output.writes.iter().map(|w| w.data.len()).sum();
        ConnectionCounters::add(&self.info.monitor.counters.bytes_out, written);
        let mut close = output.close;
        for w in output.writes {
            if ws {
                let opcode = match w.kind {
                    MessageKind::Binary => OpCode::Binary,
                    MessageKind::Text => OpCode::Text,
                };
                if out.push_message(opcode, &w.data, self.deflater.as_deref_mut()).is_err() {
                    info!(conn = self.info.id, peer = %self.info.peer, "compression failed: closing");
                    close = Some(CloseRequest::new(CloseCode::INTERNAL_ERROR, "compression failed"));
                    break;
                }
            } else {
                out.push_bytes(&w.data);
            }
        }
        if let Some(request) = close {
            let shared = &self.shared;
            self.link
                .on_close_request(request, Instant::now(), &shared.config.websocket, &shared.metrics, out);
        }
    }
}
