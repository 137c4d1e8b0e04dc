//! Runs one connection in one task: the loop reads the socket (reads that are
//! cancel-safe inside `select!`), cuts WebSocket frames out of the read buffer
//! with the sans-IO [`FrameReader`] and [`Assembler`], feeds the protocol session, keeps
//! the WebSocket timers and close handshake, and writes everything pending in one batch
//! per wake-up. No reader task, no channel, and no read buffer while idle (small reads
//! into an empty buffer go through a per-thread scratch buffer).
//!
//! With `limits.bytes_per_second`, reads take tokens from a per-connection bucket; when
//! it is empty the loop stops reading until it refills (the peer feels TCP back-pressure;
//! nothing is refused). Unlimited connections carry no bucket.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Poll};
use std::time::{Duration, Instant};

use bytes::BufMut;
use bytes::{Bytes, BytesMut};
use fastwebsockets::OpCode;
use ferry_auth::limits::TokenBucket;
use ferry_auth::SecurityStats;
use ferry_core::monitor::ConnectionCounters;
use ferry_core::{Adapter, Carrier, CloseRequest, ConnectionInfo, Input, MessageKind, Output, Session};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio_util::io::{poll_read_buf, poll_write_buf};
use tracing::{debug, info};

use crate::admission::Admission;
use crate::assembler::{Assembler, Event, Violation};
use crate::frame_reader::FrameReader;
use crate::outbuf::OutBuf;
use crate::registry::Sniffed;
use crate::server::Shared;

/// Most bytes a sniffing connection may send before its protocol must be known.
const SNIFF_LIMIT: usize = 64;
/// Room made for the first read, and the least ever made.
const READ_MIN: usize = 256;
/// The most room made for one read.
const READ_MAX: usize = 64 * 1024;

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
    Running(Box<dyn Session>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// Traffic flows.
    Open,
    /// Our close frame is queued; waiting for the peer's until `Conn::closing_until`.
    CloseSent,
    /// Flush what is pending (until `Conn::closing_until`), then drop the connection.
    Finished,
}

/// Serve one connection: a WebSocket whose handshake is done when `info.carrier` says
/// so, else a plain stream (TCP or TLS) carrying a protocol directly. `admission` keeps
/// it counted until it closes.
pub(crate) fn serve<S>(stream: S, info: ConnectionInfo, start: Start, admission: Admission, shared: Arc<Shared>) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let reading = match info.carrier {
        Carrier::WebSocket => {
            let max = shared.config.websocket.max_message_size;
            Reading::WebSocket(Box::new(WsReading {
                frames: FrameReader::new(max),
                assembler: Assembler::new(max),
            }))
        }
        Carrier::Stream => Reading::Stream,
    };
    let (rd, wr) = tokio::io::split(stream);
    run(rd, wr, reading, Conn::new(info, start, admission, shared))
}

/// The state of one connection loop.
struct Conn {
    info: Arc<ConnectionInfo>,
    shared: Arc<Shared>,
    proto: Option<Proto>,
    closing: Closing,
    /// The deadline of the closing step (meaningless while open); kept beside `closing`
    /// rather than in it so that the state packs with the flags.
    closing_until: Instant,
    /// Whether the peer's close frame has arrived.
    peer_closed: bool,
    /// Whether the session asked to close or the peer closed in order.
    clean: bool,
    last_rx: Instant,
    ping_sent: Option<Instant>,
    shutting_down: bool,
    /// Counted by the listener and the gatekeeper until the connection ends.
    _admission: Admission,
}

/// How much room to make for the next read: doubles while reads fill the room it
/// made, halves while they use less than a quarter, so a busy connection reads in large
/// chunks and an idle one reads through the thread's scratch buffer.
#[derive(Debug)]
struct ReadSize(usize);

impl ReadSize {
    fn adapt(&mut self, read: usize) {
        if read >= self.0 {
            self.0 = (self.0 * 2).min(READ_MAX);
        } else if read < self.0 / 4 {
            self.0 = (self.0 / 2).max(READ_MIN);
        }
    }
}

/// Reads up to this size into an empty buffer go through the thread's scratch buffer.
const SCRATCH_SIZE: usize = 4096;

thread_local! {
    /// Where a read into an empty buffer lands before it is copied into a buffer of
    /// exactly its length: one per worker thread, so that a connection waiting for input
    /// holds no read buffer of its own.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_SIZE].into_boxed_slice());
}

/// Read at most `size` bytes into `buf`. When `buf` is empty and the read small (an idle
/// or lightly used connection) the bytes go through [`SCRATCH`], so nothing is held
/// while the read waits; otherwise straight into room made in `buf`.
///
/// A plain function around `poll_fn`, not an `async fn`: the future is in every
/// connection's task, and this keeps it at the three references it needs.
fn read_some<'a, R: AsyncRead + Unpin>(
    rd: &'a mut R,
    buf: &'a mut BytesMut,
    size: usize,
) -> impl Future<Output = std::io::Result<usize>> + 'a {
    std::future::poll_fn(move |cx| {
        if buf.is_empty() && size <= SCRATCH_SIZE {
            return SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let mut room = ReadBuf::new(&mut scratch[..size]);
                ready!(Pin::new(&mut *rd).poll_read(cx, &mut room))?;
                buf.extend_from_slice(room.filled());
                Poll::Ready(Ok(room.filled().len()))
            });
        }
        buf.reserve(size);
        poll_read_buf(Pin::new(&mut *rd), cx, &mut (&mut *buf).limit(size))
    })
}

/// Write everything in `out`, in vectored writes, then flush once (a no-op on TCP; it
/// pushes TLS records out). Cancel-safe: what was written has left `out`.
fn write_out<'a, W: AsyncWrite + Unpin>(wr: &'a mut W, out: &'a mut OutBuf) -> impl Future<Output = std::io::Result<()>> + 'a {
    std::future::poll_fn(move |cx| {
        while !out.is_empty() {
            if ready!(poll_write_buf(Pin::new(&mut *wr), cx, out))? == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
        }
        Pin::new(&mut *wr).poll_flush(cx)
    })
}

/// A connection's byte-rate bucket (`limits.bytes_per_second`), boxed so that an
/// unlimited connection carries only an empty pointer.
struct ByteRate {
    bucket: TokenBucket,
    /// Tokens to wait for once the bucket is empty: a twentieth of a second's worth (at
    /// most 20 pauses a second), no more than the burst.
    resume_at: u32,
    /// Whether reads are paused now (the pause is counted once).
    paused: bool,
    /// While paused: when to try reading again.
    resume: Option<Instant>,
}

impl ByteRate {
    fn new(bucket: TokenBucket) -> Box<Self> {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let twentieth = (bucket.rate() / 20.0).clamp(1.0, f64::from(u32::MAX)) as u32;
        let resume_at = twentieth.min(bucket.burst()).max(1);
        Box::new(Self {
            bucket,
            resume_at,
            paused: false,
            resume: None,
        })
    }

    /// How many bytes the next read may take, or when to try again (`Err`).
    fn allowance(&mut self, now: Instant, want: usize, stats: &SecurityStats) -> Result<usize, Instant> {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let available = self.bucket.available(now).floor() as usize;
        let needed = if self.paused { self.resume_at as usize } else { 1 };
        if available >= needed {
            self.paused = false;
            return Ok(available.min(want));
        }
        if !self.paused {
            self.paused = true;
            SecurityStats::bump(&stats.byte_rate_throttled);
        }
        let wait = self.bucket.time_until(now, self.resume_at).unwrap_or(Duration::from_millis(50));
        Err(now + wait.max(Duration::from_millis(1)))
    }

    /// Takes the tokens for `n` bytes just read.
    fn consumed(&mut self, now: Instant, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        if !self.bucket.try_take(now, n) {
            // Reads never exceed what was available; drain anyway if the clock disagrees.
            let left = self.bucket.available(now).floor();
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let _ = self.bucket.try_take(now, left as u32);
        }
    }
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
        // Rung (through `info.wakeup`) when shutdown begins; delisted on drop.
        shared.live.enlist(&info);
        Self {
            info,
            shared,
            proto: Some(proto),
            closing: Closing::Open,
            closing_until: now,
            peer_closed: false,
            clean: false,
            last_rx: now,
            ping_sent: None,
            shutting_down: false,
            _admission: admission,
        }
    }
}

// The loop is an `async move` block, not an `async fn`: an async fn keeps its arguments
// in its state and moves them again into locals, so each would take room twice for the
// connection's whole life; a block uses what it captured in place. `conn` is built and
// the stream split before the block is made, for the same reason.
fn run<S>(rd: ReadHalf<S>, wr: WriteHalf<S>, reading: Reading, conn: Conn) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut rd, mut wr, mut reading, mut conn) = (rd, wr, reading, conn);
    async move {
        let mut byte_rate = conn.shared.gate.byte_bucket(Instant::now()).map(ByteRate::new);
        let _active = conn.shared.metrics.connection_opened(conn.info.listener);
        let mut out = OutBuf::new();
        let mut input = BytesMut::new();
        let mut read_size = ReadSize(READ_MIN);
        debug!(conn = conn.info.id, peer = %conn.info.peer, listener = conn.info.listener, subprotocol = conn.info.subprotocol, "connection open");
        // One timer for every deadline (close handshake, ping, session keep-alive, byte-rate
        // pause), re-armed only when a deadline comes earlier than the armed one or after it
        // fired: firing early is harmless (`on_timer` checks each deadline against the
        // clock), so a busy connection does not touch the timer wheel on every wake-up.
        // The loop's own block, so that its timer is gone before the final flush, which
        // has timers of its own.
        {
            let timer = tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_secs(86_400));
            tokio::pin!(timer);
            // Whether the timer is set for a deadline still wanted (its own deadline tells which).
            let mut armed = false;
            let mut unflushed = false;
            loop {
                if conn.closing == Closing::Finished && out.is_empty() {
                    break;
                }
                if !conn.shutting_down && conn.shared.live.stopping() {
                    conn.shutting_down = true;
                    conn.on_shutdown(&mut out);
                }
                // Below `listeners.max_pending_output` of pending output the loop takes input
                // and wake-ups; above it, it waits for the peer to read.
                let room = out.len() < conn.shared.config.listeners.max_pending_output.max(1);
                let taking_wakes = room && conn.closing == Closing::Open;
                let taking_input = taking_wakes || conn.closing == Closing::CloseSent;
                let mut read_limit = read_size.0;
                if let (true, Some(rate)) = (taking_input, byte_rate.as_mut()) {
                    match rate.allowance(Instant::now(), read_limit, &conn.shared.gate.stats) {
                        Ok(n) => {
                            read_limit = n;
                            rate.resume = None;
                        }
                        Err(at) => rate.resume = Some(at),
                    }
                }
                // After the allowance: a bucket found empty just now pauses this turn's read.
                let paused = byte_rate.as_ref().is_some_and(|rate| rate.resume.is_some());
                match (
                    conn.next_deadline()
                        .into_iter()
                        .chain(byte_rate.as_ref().and_then(|rate| rate.resume).filter(|_| taking_input))
                        .min(),
                    armed,
                ) {
                    (None, _) => armed = false,
                    (Some(at), true) if at >= timer.deadline().into_std() => {}
                    (Some(at), _) => {
                        timer.as_mut().reset(at.into());
                        armed = true;
                    }
                }
                // Set before a batch is written, cleared once it is written and flushed: if
                // another branch wins first, the flush is still owed on the next turn.
                unflushed |= !out.is_empty();
                tokio::select! {
                    biased;
                    written = write_out(&mut wr, &mut out), if unflushed => {
                        if written.is_err() {
                            break;
                        }
                        unflushed = false;
                        out.shrink_if_drained();
                    }
                read = read_some(&mut rd, &mut input, read_limit), if taking_input && !paused => {
                        match read {
                            Ok(0) | Err(_) => {
                                conn.peer_closed = true;
                                break;
                            }
                            Ok(n) => {
                                if let Some(rate) = byte_rate.as_mut() {
                                    rate.consumed(Instant::now(), n);
                                }
                                read_size.adapt(n);
                                ConnectionCounters::add(&conn.info.monitor.counters.bytes_in, n);
                                conn.last_rx = Instant::now();
                                conn.ping_sent = None;
                                conn.on_read(&mut reading, &mut input, &mut out);
                                if input.is_empty() {
                                    // An idle connection keeps no read buffer.
                                    input = BytesMut::new();
                                }
                            }
                        }
                    }
                    _ = conn.info.wakeup.woken(), if taking_wakes => conn.on_wake(&mut out),
                    () = &mut timer, if armed => {
                        armed = false;
                        let now = Instant::now();
                        if let Some(rate) = byte_rate.as_mut().filter(|rate| rate.resume.is_some_and(|at| now >= at)) {
                            rate.resume = None;
                        }
                        if conn.next_deadline().is_some_and(|at| now >= at) && conn.on_timer(&mut out) {
                            break;
                        }
                    }
                }
            }
        }
        if !out.is_empty() {
            let _ = tokio::time::timeout(Duration::from_millis(100), wr.write_all_buf(&mut out)).await;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), wr.shutdown()).await;
        if let Some(Proto::Running(session)) = conn.proto.as_mut() {
            session.on_closed(conn.clean, Instant::now());
        }
        debug!(conn = conn.info.id, peer = %conn.info.peer, clean = conn.clean, peer_closed = conn.peer_closed, "connection closed");
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

    fn next_deadline(&self) -> Option<Instant> {
        let ws = &self.shared.config.websocket;
        let closing = (self.closing != Closing::Open).then_some(self.closing_until);
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
        if self.closing != Closing::Open {
            if now >= self.closing_until {
                debug!(conn = self.info.id, peer = %self.info.peer, "close handshake timed out");
                return true;
            }
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
                    self.set_closing(Closing::Finished, now + Duration::from_millis(100));
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

    /// An administrator asked to close the connection: the session's last words, then
    /// close 1008.
    fn on_kick(&mut self, out: &mut OutBuf) {
        if self.closing != Closing::Open {
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

    /// Act on what was just read: the bytes themselves, or the WebSocket frames they
    /// complete (a partial frame stays in `input`).
    fn on_read(&mut self, reading: &mut Reading, input: &mut BytesMut, out: &mut OutBuf) {
        match reading {
            Reading::Stream => self.on_inbound(Inbound::Bytes(input.split().freeze()), out),
            Reading::WebSocket(ws) => {
                let WsReading { frames, assembler } = &mut **ws;
                // Stop at the first frame that ends the conversation; what follows is
                // never read (the loop takes no more input once closing).
                while matches!(self.closing, Closing::Open | Closing::CloseSent) {
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
            self.set_closing(Closing::CloseSent, Instant::now() + self.shared.config.websocket.close_timeout);
        }
    }

    fn finish(&mut self) {
        let at = Instant::now() + self.shared.config.websocket.close_timeout;
        self.set_closing(Closing::Finished, at);
    }

    fn set_closing(&mut self, state: Closing, until: Instant) {
        self.closing = state;
        self.closing_until = until;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_size_grows_with_full_reads_and_shrinks_when_idle() {
        let mut size = ReadSize(READ_MIN);
        for _ in 0..20 {
            let full = size.0;
            size.adapt(full);
        }
        assert_eq!(size.0, READ_MAX, "bulk transfers read in large chunks");
        for _ in 0..20 {
            size.adapt(10);
        }
        assert_eq!(size.0, READ_MIN, "small reads bring it back down");
        size.adapt(READ_MIN / 2);
        assert_eq!(size.0, READ_MIN, "a moderate read keeps the size");
    }
}
