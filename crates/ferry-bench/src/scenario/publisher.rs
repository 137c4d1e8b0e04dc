//! A publisher: the task that writes publications (and its connection's replies), and
//! the task that reads the broker's confirmations.
//!
//! Pacing: with a rate, message k is due at `phase + k / rate`; without one, as many as
//! the windows allow. Two windows of `--inflight` messages each apply:
//!
//! * the protocol's, when the broker confirms each publication (QoS 1/2 PUBACK/PUBCOMP,
//!   STOMP RECEIPT): messages not yet confirmed;
//! * end to end, when this process also runs the subscribers: messages whose deliveries
//!   to the local subscribers have not all been seen. A broker confirms a publication
//!   when it has it, not when every subscriber has it, so without this window a fast
//!   publisher only fills the broker's queues until they overflow, and a run measures
//!   what the broker drops rather than what it sustains. If deliveries stop coming (the
//!   broker dropped some), the outstanding ones are written off after half a second and
//!   counted as a stall.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::client::{Rx, Tx};
use crate::outbox::Outbox;
use crate::payload::{self, Header, Kind};
use crate::stats::Counters;
use crate::sys::monotonic_ns;
use crate::transport::{Reader, Writer};

/// Most messages encoded per write.
const BATCH: u64 = 64;
/// How long a full end-to-end window may see no delivery before it is written off.
const STALL: Duration = Duration::from_millis(500);

/// A publisher's counters, shared with its reader and with local subscribers.
#[derive(Debug, Default)]
pub(crate) struct PubState {
    /// Data messages written.
    pub sent: AtomicU64,
    /// Publications the broker confirmed.
    pub confirmed: AtomicU64,
    /// Deliveries of this publisher's messages seen by this process's subscribers.
    pub delivered: AtomicU64,
    /// Wakes the publisher: confirmations or deliveries arrived.
    pub wake: Notify,
}

/// How one publisher behaves.
#[derive(Debug, Clone)]
pub(super) struct PubConfig {
    /// Id in the payload header.
    pub id: u32,
    /// Payload size.
    pub payload_size: usize,
    /// Whether the body after the header is JSON text ([`payload::json_template`]).
    pub json_body: bool,
    /// Messages per second, or as fast as the window allows.
    pub rate: Option<f64>,
    /// Delay of this publisher's first message (spreads publishers over a period).
    pub phase: Duration,
    /// In-flight window (0: none).
    pub window: u64,
    /// Whether the broker confirms each publication.
    pub confirms: bool,
    /// Local subscribers receiving each message (0: no end-to-end window).
    pub local_fanout: u64,
    /// Longest wait for outstanding confirmations at the end.
    pub drain: Duration,
}

/// What a publisher did.
#[derive(Debug, Clone, Default)]
pub(super) struct PubOutcome {
    /// Its id.
    pub id: u32,
    /// Data messages written.
    pub sent: u64,
    /// End-to-end windows written off.
    pub stalls: u64,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

/// Publishes until `stop`, then sends the end marker and waits (up to `drain`) for the
/// outstanding confirmations.
pub(super) async fn publish(
    cfg: PubConfig,
    writer: &mut Writer,
    tx: &mut Tx,
    outbox: Arc<Outbox>,
    state: Arc<PubState>,
    counters: Arc<Counters>,
    stop: CancellationToken,
) -> PubOutcome {
    let mut p = Pacer::new(&cfg);
    let mut out = BytesMut::with_capacity(64 * 1024);
    let result = async {
        while !stop.is_cancelled() {
            outbox.take_into(&mut out);
            let now = Instant::now();
            let budget = p.budget(&state, now);
            for _ in 0..budget {
                let payload = p.stamp(Kind::Data, p.sent);
                if tx.publish(payload, &mut out).map_err(|e| e.to_string())? {
                    p.confirmable += 1;
                }
                p.sent += 1;
            }
            if budget > 0 {
                state.sent.store(p.sent, Ordering::Relaxed);
                counters.published.fetch_add(budget, Ordering::Relaxed);
            }
            if !out.is_empty() {
                writer.write_all(&out).await.map_err(|e| e.to_string())?;
                out.clear();
            }
            if budget == 0 {
                let wake_at = p.next_wake(now);
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => break,
                    _ = outbox.notified() => {}
                    _ = state.wake.notified() => {}
                    _ = tokio::time::sleep_until(wake_at.into()) => {}
                }
            }
        }
        let end = p.stamp(Kind::End, p.sent);
        if tx.publish(end, &mut out).map_err(|e| e.to_string())? {
            p.confirmable += 1;
        }
        let deadline = Instant::now() + cfg.drain;
        loop {
            outbox.take_into(&mut out);
            if !out.is_empty() {
                writer.write_all(&out).await.map_err(|e| e.to_string())?;
                out.clear();
            }
            if !cfg.confirms || state.confirmed.load(Ordering::Relaxed) >= p.confirmable || Instant::now() >= deadline {
                break;
            }
            tokio::select! {
                _ = outbox.notified() => {}
                _ = state.wake.notified() => {}
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
        }
        Ok::<(), String>(())
    }
    .await;
    PubOutcome {
        id: cfg.id,
        sent: p.sent,
        stalls: p.stalls,
        error: result.err(),
    }
}

/// Reads the publisher's connection: confirmations wake the publisher, replies the
/// protocol needs (PUBREL) go to the outbox. Returns why it stopped, unless `stop`.
pub(super) async fn read_confirmations(
    mut reader: Reader,
    mut rx: Rx,
    mut buf: BytesMut,
    outbox: Arc<Outbox>,
    state: Arc<PubState>,
    counters: Arc<Counters>,
    stop: CancellationToken,
) -> Option<String> {
    let mut replies = BytesMut::new();
    loop {
        match rx.input(&mut buf, &mut replies, &mut |_| {}) {
            Ok(0) => {}
            Ok(n) => {
                state.confirmed.fetch_add(n, Ordering::Relaxed);
                counters.confirmed.fetch_add(n, Ordering::Relaxed);
                state.wake.notify_one();
            }
            Err(e) => return Some(e.to_string()),
        }
        if !replies.is_empty() {
            outbox.push_framed(&replies);
            replies.clear();
        }
        let read = tokio::select! {
            biased;
            _ = stop.cancelled() => return None,
            read = reader.read(&mut buf, &outbox) => read,
        };
        match read {
            Ok(0) => return Some("closed by the broker".into()),
            Ok(_) => {}
            Err(e) => return Some(e.to_string()),
        }
    }
}

/// The publisher's bookkeeping: what is due, what the window allows, payload stamping.
struct Pacer {
    cfg: PubConfig,
    start: Instant,
    sent: u64,
    confirmable: u64,
    template: Vec<u8>,
    pool: BytesMut,
    written_off: u64,
    stalls: u64,
    last_delivered: u64,
    last_progress: Instant,
}

impl Pacer {
    fn new(cfg: &PubConfig) -> Pacer {
        let now = Instant::now();
        Pacer {
            cfg: cfg.clone(),
            start: now + cfg.phase,
            sent: 0,
            confirmable: 0,
            template: if cfg.json_body {
                payload::json_template(cfg.payload_size)
            } else {
                payload::template(cfg.payload_size)
            },
            pool: BytesMut::new(),
            written_off: 0,
            stalls: 0,
            last_delivered: 0,
            last_progress: now,
        }
    }

    /// Messages due now that have not been sent.
    fn due(&self, now: Instant) -> u64 {
        match self.cfg.rate {
            None => u64::MAX,
            Some(_) if now < self.start => 0,
            Some(rate) => {
                let due = ((now - self.start).as_secs_f64() * rate) as u64 + 1;
                due.saturating_sub(self.sent)
            }
        }
    }

    /// Messages to send now. When the window is the limit, nothing is sent until it has
    /// a quarter of its room back (at most [`BATCH`]): refilling it one message per
    /// acknowledgement would make every publication a write of its own, on both sides.
    fn budget(&mut self, state: &PubState, now: Instant) -> u64 {
        let due = BATCH.min(self.due(now));
        let room = self.room(state, now);
        if room < due && room < (self.cfg.window / 4).clamp(1, BATCH) {
            return 0;
        }
        due.min(room)
    }

    /// Messages the windows allow now: the protocol's (confirmations) and the end-to-end
    /// one (deliveries to local subscribers), whichever is smaller.
    fn room(&mut self, state: &PubState, now: Instant) -> u64 {
        let window = self.cfg.window;
        if window == 0 {
            return u64::MAX;
        }
        let protocol = if self.cfg.confirms {
            let confirmed = state.confirmed.load(Ordering::Relaxed);
            window.saturating_sub(self.confirmable.saturating_sub(confirmed))
        } else {
            u64::MAX
        };
        protocol.min(self.end_to_end_room(state, now))
    }

    /// Messages the end-to-end window allows now (unlimited without local subscribers).
    fn end_to_end_room(&mut self, state: &PubState, now: Instant) -> u64 {
        let window = self.cfg.window;
        let fanout = self.cfg.local_fanout;
        if fanout == 0 {
            return u64::MAX;
        }
        let delivered = state.delivered.load(Ordering::Relaxed);
        if delivered != self.last_delivered {
            self.last_delivered = delivered;
            self.last_progress = now;
        }
        let outstanding = (self.sent * fanout).saturating_sub(delivered + self.written_off);
        let room = window.saturating_sub(outstanding.div_ceil(fanout));
        if room == 0 && now.duration_since(self.last_progress) >= STALL {
            self.written_off += outstanding;
            self.stalls += 1;
            self.last_progress = now;
            return window;
        }
        room
    }

    /// When to look again if nothing could be sent now.
    fn next_wake(&self, now: Instant) -> Instant {
        let fallback = now + Duration::from_millis(100);
        match self.cfg.rate {
            Some(rate) => {
                let due = self.start + Duration::from_secs_f64(self.sent as f64 / rate);
                due.max(now).min(fallback)
            }
            None => fallback,
        }
    }

    /// A payload with a fresh header; payloads are cut from a shared pool so that a
    /// message costs no allocation of its own.
    fn stamp(&mut self, kind: Kind, seq: u64) -> Bytes {
        let header = Header {
            kind,
            publisher: self.cfg.id,
            seq,
            sent_ns: monotonic_ns(),
        };
        payload::write(&mut self.template, &header);
        if self.pool.capacity() < self.template.len() {
            self.pool.reserve(self.template.len() * 256);
        }
        self.pool.extend_from_slice(&self.template);
        self.pool.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PubConfig {
        PubConfig {
            id: 3,
            payload_size: 64,
            json_body: false,
            rate: None,
            phase: Duration::ZERO,
            window: 4,
            confirms: false,
            local_fanout: 0,
            drain: Duration::ZERO,
        }
    }

    #[test]
    fn rate_pacing() {
        let mut c = cfg();
        c.rate = Some(100.0);
        let mut p = Pacer::new(&c);
        let t0 = p.start;
        assert_eq!(p.due(t0), 1, "the first message goes at once");
        assert_eq!(p.due(t0 + Duration::from_millis(105)), 11);
        p.sent = 11;
        assert_eq!(p.due(t0 + Duration::from_millis(105)), 0);
        assert_eq!(p.next_wake(t0 + Duration::from_millis(105)), t0 + Duration::from_millis(110));
        c.phase = Duration::from_secs(1);
        let p = Pacer::new(&c);
        assert_eq!(p.due(Instant::now()), 0, "not before its phase");
        assert_eq!(Pacer::new(&cfg()).due(Instant::now()), u64::MAX);
    }

    #[test]
    fn a_full_window_refills_in_batches() {
        let mut c = cfg();
        c.window = 64;
        c.confirms = true;
        let mut p = Pacer::new(&c);
        let state = PubState::default();
        let now = Instant::now();
        assert_eq!(p.budget(&state, now), BATCH.min(64));
        p.confirmable = 64;
        state.confirmed.store(10, Ordering::Relaxed);
        assert_eq!(p.budget(&state, now), 0, "10 free, below a quarter of the window");
        state.confirmed.store(16, Ordering::Relaxed);
        assert_eq!(p.budget(&state, now), 16);
        // Paced below the window's pace: sent one at a time as they fall due.
        c.rate = Some(100.0);
        let mut p = Pacer::new(&c);
        p.confirmable = 60;
        state.confirmed.store(0, Ordering::Relaxed);
        assert_eq!(p.budget(&state, p.start), 1);
    }

    #[test]
    fn protocol_window() {
        let mut c = cfg();
        c.confirms = true;
        let mut p = Pacer::new(&c);
        let state = PubState::default();
        let now = Instant::now();
        assert_eq!(p.room(&state, now), 4);
        p.confirmable = 4;
        assert_eq!(p.room(&state, now), 0);
        state.confirmed.store(3, Ordering::Relaxed);
        assert_eq!(p.room(&state, now), 3);
        // With local subscribers, the end-to-end window applies as well.
        c.local_fanout = 2;
        let mut p = Pacer::new(&c);
        p.sent = 3;
        p.confirmable = 3;
        state.confirmed.store(3, Ordering::Relaxed);
        state.delivered.store(2, Ordering::Relaxed);
        assert_eq!(p.room(&state, now), 2, "confirmed, but two still on their way to a subscriber");
    }

    #[test]
    fn end_to_end_window_with_stall_guard() {
        let mut c = cfg();
        c.local_fanout = 10;
        let mut p = Pacer::new(&c);
        let state = PubState::default();
        let t0 = Instant::now();
        p.sent = 4;
        assert_eq!(p.room(&state, t0), 0);
        // One message delivered to all ten subscribers: one slot free.
        state.delivered.store(10, Ordering::Relaxed);
        assert_eq!(p.room(&state, t0), 1);
        // Half of another: still in flight.
        state.delivered.store(15, Ordering::Relaxed);
        assert_eq!(p.room(&state, t0), 1);
        p.sent = 5;
        assert_eq!(p.room(&state, t0), 0);
        // Nothing more for longer than STALL: written off.
        assert_eq!(p.room(&state, t0 + STALL), 4);
        assert_eq!(p.stalls, 1);
        assert_eq!(p.room(&state, t0 + STALL), 4);
        let mut c = cfg();
        c.window = 0;
        assert_eq!(Pacer::new(&c).room(&state, t0), u64::MAX);
    }

    #[test]
    fn stamped_payloads_carry_the_header() {
        let mut p = Pacer::new(&cfg());
        let a = p.stamp(Kind::Data, 7);
        let b = p.stamp(Kind::End, 8);
        assert_eq!(a.len(), 64);
        let ha = payload::read(&a).unwrap();
        assert_eq!((ha.kind, ha.publisher, ha.seq), (Kind::Data, 3, 7));
        let hb = payload::read(&b).unwrap();
        assert_eq!((hb.kind, hb.seq), (Kind::End, 8));
        assert!(hb.sent_ns >= ha.sent_ns);
    }
}
