//! Runs one connection: a reader task turns the socket into [`Inbound`] events (it is
//! the only code that reads, so no read sits in a cancellable `select!` arm), and the
//! connection loop feeds them to the protocol session, keeps the WebSocket timers and
//! close handshake, and writes everything pending in one batch per wake-up.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fastwebsockets::{OpCode, Payload, WebSocketError, WebSocketRead};
use ferry_core::{Adapter, Carrier, CloseRequest, ConnectionInfo, Input, MessageKind, Output, Session};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info};

use crate::assembler::{Assembler, Event, RawFrame, Violation};
use crate::outbuf::OutBuf;
use crate::registry::Sniffed;
use crate::server::Shared;

/// Pending output above which the loop stops taking input until the peer reads.
const HIGH_WATER: usize = 256 * 1024;
/// Most bytes a sniffing connection may send before its protocol must be known.
const SNIFF_LIMIT: usize = 64;
/// Events the reader may run ahead of the connection loop.
const INBOUND_QUEUE: usize = 8;
/// Read buffer growth step for stream carriers.
const READ_CHUNK: usize = 4096;

/// What the reader task reports.
#[derive(Debug)]
enum Inbound {
    /// Bytes from a stream carrier.
    Bytes(Bytes),
    /// A checked WebSocket event.
    Ws(Event),
    /// The peer broke the WebSocket protocol.
    Violation(Violation),
    /// The socket ended or failed; nothing more will come.
    Eof,
}

/// How the connection picks its session.
pub(crate) enum Start {
    /// A known adapter (negotiated subprotocol, protocol port, echo path).
    Open(Arc<dyn Adapter>),
    /// Sniff the first bytes against the registry.
    Sniff,
}

enum Proto {
    Sniffing(BytesMut),
    Running(Box<dyn Session>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// Traffic flows.
    Open,
    /// Our close frame is queued; waiting for the peer's until the instant.
    CloseSent(Instant),
    /// Flush what is pending (until the instant), then drop the connection.
    Finished(Instant),
}

/// Serve a WebSocket connection whose handshake is done.
pub(crate) async fn serve_websocket<S>(stream: S, info: ConnectionInfo, start: Start, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    let (mut ws_read, _) = fastwebsockets::after_handshake_split(rd, tokio::io::sink(), fastwebsockets::Role::Server);
    ws_read.set_auto_close(false);
    ws_read.set_auto_pong(false);
    // fastwebsockets refuses a frame whose payload is >= this, before reading it.
    ws_read.set_max_message_size(shared.config.websocket.max_message_size.saturating_add(1));
    let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
    let reader = tokio::spawn(read_websocket(ws_read, tx, shared.config.websocket.max_message_size));
    run(wr, rx, reader, info, start, shared).await;
}

/// Serve a plain stream (TCP or TLS) carrying a protocol directly.
pub(crate) async fn serve_stream<S>(stream: S, info: ConnectionInfo, start: Start, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
    let reader = tokio::spawn(read_stream(rd, tx));
    run(wr, rx, reader, info, start, shared).await;
}

async fn read_stream<R: AsyncRead + Unpin>(mut rd: R, tx: mpsc::Sender<Inbound>) {
    let mut buf = BytesMut::new();
    loop {
        buf.reserve(READ_CHUNK);
        let event = match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => Inbound::Eof,
            Ok(_) => Inbound::Bytes(buf.split().freeze()),
        };
        let eof = matches!(event, Inbound::Eof);
        if tx.send(event).await.is_err() || eof {
            return;
        }
    }
}

async fn read_websocket<R: AsyncRead + Unpin>(mut ws: WebSocketRead<R>, tx: mpsc::Sender<Inbound>, max_message_size: usize) {
    let mut assembler = Assembler::new(max_message_size);
    // With auto-close and auto-pong off, fastwebsockets has nothing to send on its own.
    let mut no_obligations = |_| async { Ok::<(), Infallible>(()) };
    loop {
        let event = match ws.read_frame(&mut no_obligations).await {
            Ok(mut frame) => {
                // The mask bit is private in fastwebsockets; its own header encoder shows it.
                let mut head = [0u8; 16];
                frame.fmt_head(&mut head);
                let raw = RawFrame {
                    fin: frame.fin,
                    opcode: frame.opcode,
                    masked: head[1] & 0x80 != 0,
                    payload: into_bytes(frame.payload),
                };
                match assembler.push(raw) {
                    Ok(event) => Inbound::Ws(event),
                    Err(violation) => Inbound::Violation(violation),
                }
            }
            Err(e) => match violation_of(&e) {
                Some(v) => Inbound::Violation(v),
                None => Inbound::Eof,
            },
        };
        let last = matches!(event, Inbound::Eof | Inbound::Violation(_) | Inbound::Ws(Event::Close(_)));
        if tx.send(event).await.is_err() || last {
            return;
        }
    }
}

fn into_bytes(payload: Payload<'_>) -> Bytes {
    match payload {
        Payload::Bytes(b) => b.freeze(),
        Payload::Owned(v) => Bytes::from(v),
        other => Bytes::copy_from_slice(&other),
    }
}

/// The close code for an error fastwebsockets reports while reading; `None` when the
/// socket simply ended.
fn violation_of(e: &WebSocketError) -> Option<Violation> {
    let (code, reason) = match e {
        WebSocketError::UnexpectedEOF | WebSocketError::IoError(_) | WebSocketError::ConnectionClosed => return None,
        WebSocketError::FrameTooLarge => (1009, "message too big"),
        WebSocketError::InvalidUTF8 => (1007, "invalid UTF-8 in a text message"),
        WebSocketError::ReservedBitsNotZero => (1002, "reserved bits set without a negotiated extension"),
        WebSocketError::ControlFrameFragmented => (1002, "control frames must not be fragmented"),
        WebSocketError::PingFrameTooLarge => (1002, "control frame payload over 125 bytes"),
        WebSocketError::InvalidValue => (1002, "reserved opcode"),
        _ => (1002, "malformed frame"),
    };
    Some(Violation { code, reason })
}

/// The state of one connection loop.
struct Conn {
    info: ConnectionInfo,
    shared: Arc<Shared>,
    proto: Option<Proto>,
    closing: Closing,
    /// Whether the peer's close frame has arrived.
    peer_closed: bool,
    /// Whether the session asked to close or the peer closed in order.
    clean: bool,
    last_rx: Instant,
    ping_sent: Option<Instant>,
    shutting_down: bool,
}

async fn run<W>(mut wr: W, mut rx: mpsc::Receiver<Inbound>, reader: JoinHandle<()>, info: ConnectionInfo, start: Start, shared: Arc<Shared>)
where
    W: AsyncWrite + Unpin,
{
    let now = Instant::now();
    let _active = shared.metrics.connection_opened(info.listener);
    let mut out = OutBuf::new();
    let proto = match start {
        Start::Open(adapter) => Proto::Running(adapter.open(&info, now)),
        Start::Sniff => Proto::Sniffing(BytesMut::new()),
    };
    let mut conn = Conn {
        info,
        shared: shared.clone(),
        proto: Some(proto),
        closing: Closing::Open,
        peer_closed: false,
        clean: false,
        last_rx: now,
        ping_sent: None,
        shutting_down: false,
    };
    debug!(conn = conn.info.id, peer = %conn.info.peer, listener = conn.info.listener, subprotocol = conn.info.subprotocol, "connection open");
    let wakeup = conn.info.wakeup.clone();
    loop {
        if let Closing::Finished(_) = conn.closing {
            if out.is_empty() {
                break;
            }
        }
        let deadline = conn.next_deadline();
        let taking_input = (out.len() < HIGH_WATER && conn.closing == Closing::Open) || matches!(conn.closing, Closing::CloseSent(_));
        tokio::select! {
            biased;
            written = wr.write_all_buf(&mut out), if !out.is_empty() => {
                if written.is_err() {
                    break;
                }
                out.shrink_if_drained();
                if out.is_empty() {
                    // One flush per batch: a no-op on TCP, it pushes TLS records out.
                    if wr.flush().await.is_err() {
                        break;
                    }
                }
            }
            _ = shared.shutdown.cancelled(), if !conn.shutting_down => {
                conn.shutting_down = true;
                conn.on_shutdown(&mut out);
            }
            event = rx.recv(), if taking_input => {
                conn.last_rx = Instant::now();
                conn.ping_sent = None;
                match event {
                    Some(Inbound::Eof) | None => {
                        conn.peer_closed = true;
                        break;
                    }
                    Some(event) => conn.on_inbound(event, &mut out),
                }
            }
            _ = wakeup.woken(), if out.len() < HIGH_WATER && conn.closing == Closing::Open => conn.on_wake(&mut out),
            _ = sleep_until(deadline), if deadline.is_some() => {
                if conn.on_timer(&mut out) {
                    break;
                }
            }
        }
    }
    reader.abort();
    if !out.is_empty() {
        let _ = tokio::time::timeout(Duration::from_millis(100), wr.write_all_buf(&mut out)).await;
    }
    let _ = tokio::time::timeout(Duration::from_millis(100), wr.shutdown()).await;
    if let Some(Proto::Running(session)) = conn.proto.as_mut() {
        session.on_closed(conn.clean, Instant::now());
    }
    debug!(conn = conn.info.id, peer = %conn.info.peer, clean = conn.clean, peer_closed = conn.peer_closed, "connection closed");
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(at) = deadline {
        tokio::time::sleep_until(at.into()).await;
    }
}

impl Conn {
    fn ws(&self) -> bool {
        self.info.carrier == Carrier::WebSocket
    }

    fn next_deadline(&self) -> Option<Instant> {
        let ws = &self.shared.config.websocket;
        let closing = match self.closing {
            Closing::Open => None,
            Closing::CloseSent(at) | Closing::Finished(at) => Some(at),
        };
        let ping = if self.ws() && self.closing == Closing::Open && !ws.ping_interval.is_zero() {
            Some(match self.ping_sent {
                None => self.last_rx + ws.ping_interval,
                Some(sent) => sent + ws.ping_timeout,
            })
        } else {
            None
        };
        let session = match &self.proto {
            Some(Proto::Running(s)) if self.closing == Closing::Open => s.poll_timeout(),
            _ => None,
        };
        [closing, ping, session].into_iter().flatten().min()
    }

    /// Returns true when the connection must be dropped now.
    fn on_timer(&mut self, out: &mut OutBuf) -> bool {
        let now = Instant::now();
        match self.closing {
            Closing::CloseSent(at) | Closing::Finished(at) if now >= at => {
                debug!(conn = self.info.id, peer = %self.info.peer, "close handshake timed out");
                return true;
            }
            _ => {}
        }
        if self.closing != Closing::Open {
            return false;
        }
        let ws = &self.shared.config.websocket;
        if self.ws() && !ws.ping_interval.is_zero() {
            match self.ping_sent {
                Some(sent) if now >= sent + ws.ping_timeout => {
                    info!(conn = self.info.id, peer = %self.info.peer, "no answer to ping: closing");
                    self.close(
                        CloseRequest {
                            code: 1001,
                            reason: "ping timeout".into(),
                        },
                        out,
                    );
                    self.closing = Closing::Finished(now + Duration::from_millis(100));
                    return false;
                }
                None if now >= self.last_rx + ws.ping_interval => {
                    out.push_frame(OpCode::Ping, &Bytes::new());
                    self.ping_sent = Some(now);
                }
                _ => {}
            }
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
        if let Some(Proto::Running(session)) = self.proto.as_mut() {
            let mut output = Output::default();
            session.on_wake(Instant::now(), &mut output);
            self.apply(output, out);
        }
    }

    fn on_shutdown(&mut self, out: &mut OutBuf) {
        if self.closing != Closing::Open {
            return;
        }
        let mut output = Output::default();
        if let Some(Proto::Running(session)) = self.proto.as_mut() {
            session.on_shutdown(Instant::now(), &mut output);
        }
        output.close(CloseRequest {
            code: 1001,
            reason: "server shutting down".into(),
        });
        self.apply(output, out);
    }

    fn on_inbound(&mut self, event: Inbound, out: &mut OutBuf) {
        match event {
            Inbound::Bytes(bytes) => self.on_data(Input::Stream(bytes), out),
            Inbound::Ws(Event::Message(kind, bytes)) => self.on_data(Input::Message(kind, bytes), out),
            Inbound::Ws(Event::Partial | Event::Pong) => {}
            Inbound::Ws(Event::Ping(payload)) => {
                if self.closing == Closing::Open {
                    out.push_frame(OpCode::Pong, &payload);
                }
            }
            Inbound::Ws(Event::Close(code)) => {
                self.peer_closed = true;
                self.clean = true;
                match self.closing {
                    Closing::Open => {
                        debug!(conn = self.info.id, peer = %self.info.peer, ?code, "peer closed");
                        self.shared.metrics.close_sent(1000);
                        // Answer with the peer's code (RFC 6455 §5.5.1).
                        out.push_close(code.unwrap_or(1000), "");
                        self.finish();
                    }
                    _ => self.finish(),
                }
            }
            Inbound::Violation(v) => {
                info!(conn = self.info.id, peer = %self.info.peer, code = v.code, reason = v.reason, "websocket protocol violation: closing");
                self.close(
                    CloseRequest {
                        code: v.code,
                        reason: v.reason.into(),
                    },
                    out,
                );
                // The reader has stopped: nothing more will be read, so do not wait.
                self.finish();
            }
            Inbound::Eof => {}
        }
    }

    fn on_data(&mut self, input: Input, out: &mut OutBuf) {
        if self.closing != Closing::Open {
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
                        let first = buf.freeze();
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
        for w in output.writes {
            if ws {
                let opcode = match w.kind {
                    MessageKind::Binary => OpCode::Binary,
                    MessageKind::Text => OpCode::Text,
                };
                out.push_frame(opcode, &w.data);
            } else {
                out.push_bytes(&w.data);
            }
        }
        if let Some(request) = output.close {
            if request.code == 1000 || request.code == 1001 {
                self.clean = true;
            }
            self.close(request, out);
        }
    }

    /// Start closing: on WebSocket send a close frame and wait for the peer's.
    fn close(&mut self, request: CloseRequest, out: &mut OutBuf) {
        if self.closing != Closing::Open {
            return;
        }
        if !self.ws() {
            self.finish();
            return;
        }
        self.shared.metrics.close_sent(request.code);
        out.push_close(request.code, &request.reason);
        if self.peer_closed {
            self.finish();
        } else {
            self.closing = Closing::CloseSent(Instant::now() + self.shared.config.websocket.close_timeout);
        }
    }

    fn finish(&mut self) {
        let at = Instant::now() + self.shared.config.websocket.close_timeout;
        self.closing = Closing::Finished(at);
    }
}
