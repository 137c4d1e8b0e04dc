//! A connection's link state, sans-IO: where it stands in closing (the WebSocket close
//! handshake and its deadline), and the WebSocket ping that checks a silent peer. The
//! driver asks it for its next deadline and tells it when that passed, when the peer's
//! bytes or close frame arrived and when a session asked to close; it writes the frames
//! this asks for into the connection's output and never reads the clock.

use std::time::{Duration, Instant};

use bytes::Bytes;
use fastwebsockets::OpCode;
use ferry_core::{CloseCode, CloseRequest};

use crate::config::WebSocketConfig;
use crate::metrics::Metrics;
use crate::outbuf::OutBuf;

/// How long a connection closed for an unanswered ping waits for its last bytes to go.
const PING_TIMEOUT_FLUSH: Duration = Duration::from_millis(100);

/// Where a connection stands in closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closing {
    /// Traffic flows.
    Open,
    /// Our close frame is queued; waiting for the peer's until the closing deadline.
    CloseSent,
    /// Flush what is pending (until the closing deadline), then drop the connection.
    Finished,
}

/// What a passed deadline meant for the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerOutcome {
    /// Still open: the session's own deadlines are the caller's to check.
    Open,
    /// Closing (already): nothing more for the session.
    Closing,
    /// The peer did not answer the ping: closing now with 1001.
    PingTimeout,
    /// The closing deadline passed: drop the connection now.
    Drop,
}

/// The link state of one connection (WebSocket or stream).
#[derive(Debug)]
pub(crate) struct Link {
    /// Whether the connection is a WebSocket (pings, close frames) or a plain stream.
    ws: bool,
    closing: Closing,
    /// Whether the peer's close frame has arrived, or its end of stream.
    peer_closed: bool,
    /// Whether the session asked to close or the peer closed in order.
    clean: bool,
    /// The deadline of the closing step (meaningless while open); beside `closing`
    /// rather than in it so that the state packs with the flags.
    closing_until: Instant,
    /// When the peer last sent anything.
    last_rx: Instant,
    /// When our unanswered ping left, if one is out.
    ping_sent: Option<Instant>,
}

impl Link {
    /// The link of a connection that opens at `now`.
    pub(crate) fn new(ws: bool, now: Instant) -> Self {
        Self {
            ws,
            closing: Closing::Open,
            peer_closed: false,
            clean: false,
            closing_until: now,
            last_rx: now,
            ping_sent: None,
        }
    }

    /// Where the link stands in closing.
    pub(crate) fn closing(&self) -> Closing {
        self.closing
    }

    /// Whether traffic flows (nothing asked to close yet).
    pub(crate) fn is_open(&self) -> bool {
        self.closing == Closing::Open
    }

    /// Whether the peer's input is still read: while open, and while waiting for the
    /// peer's close frame.
    pub(crate) fn reads(&self) -> bool {
        matches!(self.closing, Closing::Open | Closing::CloseSent)
    }

    /// Whether the peer closed (its close frame, or the end of its stream).
    pub(crate) fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Whether the connection ended in order (the session asked, or the peer closed).
    pub(crate) fn clean(&self) -> bool {
        self.clean
    }

    /// The peer's stream ended (or failed).
    pub(crate) fn on_end_of_stream(&mut self) {
        self.peer_closed = true;
    }

    /// Bytes arrived from the peer at `now`: it is alive, any ping is answered.
    pub(crate) fn on_received(&mut self, now: Instant) {
        self.last_rx = now;
        self.ping_sent = None;
    }

    /// The earliest deadline of the link: the closing step's, or the ping's.
    pub(crate) fn next_deadline(&self, ws: &WebSocketConfig) -> Option<Instant> {
        if self.closing != Closing::Open {
            return Some(self.closing_until);
        }
        if !self.ws || ws.ping_interval.is_zero() {
            return None;
        }
        Some(match self.ping_sent {
            None => self.last_rx + ws.ping_interval,
            Some(sent) => sent + ws.ping_timeout,
        })
    }

    /// A deadline may have passed at `now`: drop after a closing step timed out, ping a
    /// silent peer, close one that did not answer.
    pub(crate) fn on_timer(&mut self, now: Instant, ws: &WebSocketConfig, metrics: &Metrics, out: &mut OutBuf) -> TimerOutcome {
        if self.closing != Closing::Open {
            return if now >= self.closing_until {
                TimerOutcome::Drop
            } else {
                TimerOutcome::Closing
            };
        }
        if self.ws && !ws.ping_interval.is_zero() {
            match self.ping_sent {
                Some(sent) if now >= sent + ws.ping_timeout => {
                    self.close(CloseRequest::new(CloseCode::GOING_AWAY, "ping timeout"), now, ws, metrics, out);
                    self.set_closing(Closing::Finished, now + PING_TIMEOUT_FLUSH);
                    return TimerOutcome::PingTimeout;
                }
                None if now >= self.last_rx + ws.ping_interval => {
                    out.push_frame(OpCode::Ping, &Bytes::new());
                    self.ping_sent = Some(now);
                }
                _ => {}
            }
        }
        TimerOutcome::Open
    }

    /// The peer pinged: answer while open.
    pub(crate) fn on_ping(&self, payload: &Bytes, out: &mut OutBuf) {
        if self.closing == Closing::Open {
            out.push_frame(OpCode::Pong, payload);
        }
    }

    /// The peer's close frame arrived (with its code, if it gave one): answer it with
    /// the same code if we had not closed (RFC 6455 §5.5.1), then finish.
    pub(crate) fn on_peer_close(&mut self, code: Option<u16>, now: Instant, ws: &WebSocketConfig, metrics: &Metrics, out: &mut OutBuf) {
        self.peer_closed = true;
        self.clean = true;
        if self.closing == Closing::Open {
            let code = CloseCode(code.unwrap_or(CloseCode::NORMAL.as_u16()));
            metrics.close_sent(CloseCode::NORMAL);
            out.push_close(code, "");
        }
        self.finish(now, ws);
    }

    /// A session (or the broker) asks to close: an orderly code makes the end clean.
    pub(crate) fn on_close_request(
        &mut self,
        request: CloseRequest,
        now: Instant,
        ws: &WebSocketConfig,
        metrics: &Metrics,
        out: &mut OutBuf,
    ) {
        if request.code.is_clean() {
            self.clean = true;
        }
        self.close(request, now, ws, metrics, out);
    }

    /// The peer broke the WebSocket protocol: close with the code, and do not wait for
    /// its close frame (nothing more is read).
    pub(crate) fn on_violation(&mut self, request: CloseRequest, now: Instant, ws: &WebSocketConfig, metrics: &Metrics, out: &mut OutBuf) {
        self.close(request, now, ws, metrics, out);
        self.finish(now, ws);
    }

    /// Start closing: on a WebSocket send a close frame and wait for the peer's (unless
    /// it already came); a stream just finishes.
    fn close(&mut self, request: CloseRequest, now: Instant, ws: &WebSocketConfig, metrics: &Metrics, out: &mut OutBuf) {
        if self.closing != Closing::Open {
            return;
        }
        if !self.ws {
            self.finish(now, ws);
            return;
        }
        metrics.close_sent(request.code);
        out.push_close(request.code, &request.reason);
        if self.peer_closed {
            self.finish(now, ws);
        } else {
            self.set_closing(Closing::CloseSent, now + ws.close_timeout);
        }
    }

    /// Nothing more is read: flush what is pending (for at most the close timeout).
    fn finish(&mut self, now: Instant, ws: &WebSocketConfig) {
        self.set_closing(Closing::Finished, now + ws.close_timeout);
    }

    fn set_closing(&mut self, state: Closing, until: Instant) {
        self.closing = state;
        self.closing_until = until;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> WebSocketConfig {
        WebSocketConfig {
            ping_interval: Duration::from_secs(10),
            ping_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(2),
            ..WebSocketConfig::default()
        }
    }

    #[test]
    fn a_silent_peer_is_pinged_then_closed_with_1001() {
        let (cfg, metrics, t0) = (config(), Metrics::default(), Instant::now());
        let mut link = Link::new(true, t0);
        let mut out = OutBuf::new();
        assert_eq!(link.next_deadline(&cfg), Some(t0 + Duration::from_secs(10)));
        assert_eq!(
            link.on_timer(t0 + Duration::from_secs(10), &cfg, &metrics, &mut out),
            TimerOutcome::Open
        );
        assert_eq!(out.drained(), [0x89, 0x00], "a ping");
        let mut out = OutBuf::new();
        assert_eq!(link.next_deadline(&cfg), Some(t0 + Duration::from_secs(15)));
        let at = t0 + Duration::from_secs(15);
        assert_eq!(link.on_timer(at, &cfg, &metrics, &mut out), TimerOutcome::PingTimeout);
        assert_eq!(&out.drained()[..4], &[0x88, 14, 0x03, 0xe9], "close 1001 ping timeout");
        assert_eq!(link.closing(), Closing::Finished);
        assert_eq!(
            link.on_timer(at + PING_TIMEOUT_FLUSH, &cfg, &metrics, &mut OutBuf::new()),
            TimerOutcome::Drop
        );
    }

    #[test]
    fn an_answered_ping_restarts_the_wait() {
        let (cfg, metrics, t0) = (config(), Metrics::default(), Instant::now());
        let mut link = Link::new(true, t0);
        link.on_timer(t0 + Duration::from_secs(10), &cfg, &metrics, &mut OutBuf::new());
        link.on_received(t0 + Duration::from_secs(11));
        assert_eq!(link.next_deadline(&cfg), Some(t0 + Duration::from_secs(21)));
    }

    #[test]
    fn our_close_waits_for_the_peers_then_finishes() {
        let (cfg, metrics, t0) = (config(), Metrics::default(), Instant::now());
        let mut link = Link::new(true, t0);
        let mut out = OutBuf::new();
        link.on_close_request(CloseRequest::policy("no"), t0, &cfg, &metrics, &mut out);
        assert_eq!(&out.drained()[..4], &[0x88, 4, 0x03, 0xf0], "close 1008");
        assert_eq!(link.closing(), Closing::CloseSent);
        assert!(link.reads() && !link.clean());
        assert_eq!(link.next_deadline(&cfg), Some(t0 + Duration::from_secs(2)));
        let mut out = OutBuf::new();
        link.on_peer_close(Some(1000), t0, &cfg, &metrics, &mut out);
        assert!(out.drained().is_empty(), "our close frame was sent already");
        assert_eq!(link.closing(), Closing::Finished);
        assert!(link.clean() && link.peer_closed());
    }

    #[test]
    fn the_peers_close_is_answered_with_its_code() {
        let (cfg, metrics, t0) = (config(), Metrics::default(), Instant::now());
        let mut link = Link::new(true, t0);
        let mut out = OutBuf::new();
        link.on_peer_close(Some(1001), t0, &cfg, &metrics, &mut out);
        assert_eq!(out.drained(), [0x88, 2, 0x03, 0xe9]);
        assert_eq!(link.closing(), Closing::Finished);
    }

    #[test]
    fn a_stream_finishes_without_frames_or_pings() {
        let (cfg, metrics, t0) = (config(), Metrics::default(), Instant::now());
        let mut link = Link::new(false, t0);
        assert_eq!(link.next_deadline(&cfg), None);
        let mut out = OutBuf::new();
        link.on_close_request(CloseRequest::normal(""), t0, &cfg, &metrics, &mut out);
        assert!(out.drained().is_empty());
        assert_eq!(link.closing(), Closing::Finished);
        assert!(link.clean());
    }
}
