//! A subscriber: reads messages, checks sequence numbers per publisher, records
//! latencies inside the measurement window, and answers what the protocol requires
//! through the connection's outbox (one write per batch read).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use tokio_util::sync::CancellationToken;

use super::publisher::PubState;
use crate::client::Rx;
use crate::outbox::Outbox;
use crate::payload::{self, Kind};
use crate::seq::Streams;
use crate::stats::Counters;
use crate::sys::monotonic_ns;
use crate::transport::Reader;

/// The publishers of this process, for the end-to-end window: publisher `base + i` is
/// `local[i]`.
#[derive(Clone, Default)]
pub(super) struct LocalPublishers {
    /// Id of the first.
    pub base: u32,
    /// Their shared counters.
    pub local: Arc<Vec<Arc<PubState>>>,
}

impl LocalPublishers {
    fn index(&self, id: u32) -> Option<usize> {
        let i = id.checked_sub(self.base)? as usize;
        (i < self.local.len()).then_some(i)
    }
}

/// What a subscriber saw.
#[derive(Debug, Default)]
pub(super) struct SubOutcome {
    /// Per publisher id.
    pub trackers: Streams,
    /// End markers: publisher id → messages it sent.
    pub ends: HashMap<u32, u64>,
    /// Payloads without our header.
    pub foreign: u64,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

/// Receives until `stop` or until the connection fails.
pub(super) async fn receive(
    mut reader: Reader,
    mut rx: Rx,
    mut buf: BytesMut,
    outbox: Arc<Outbox>,
    publishers: LocalPublishers,
    counters: Arc<Counters>,
    stop: CancellationToken,
) -> SubOutcome {
    let mut outcome = SubOutcome::default();
    let mut replies = BytesMut::new();
    let mut per_pub = vec![0u64; publishers.local.len()];
    let mut touched: Vec<usize> = Vec::new();
    let mut started = false;
    let mut latencies: Vec<u64> = Vec::new();
    loop {
        let now = monotonic_ns();
        let measuring = counters.measuring.load(Ordering::Relaxed);
        let mut count = 0u64;
        let SubOutcome {
            trackers, ends, foreign, ..
        } = &mut outcome;
        let mut on_message = |body: &[u8]| match payload::read(body) {
            Ok(h) if h.kind == Kind::Data => {
                count += 1;
                trackers.get_mut(h.publisher).record(h.seq);
                if measuring {
                    latencies.push(now.saturating_sub(h.sent_ns));
                }
                if let Some(i) = publishers.index(h.publisher) {
                    if per_pub[i] == 0 {
                        touched.push(i);
                    }
                    per_pub[i] += 1;
                }
            }
            Ok(h) => {
                ends.insert(h.publisher, h.seq);
            }
            Err(_) => *foreign += 1,
        };
        let input = rx.input(&mut buf, &mut replies, &mut on_message);
        if !latencies.is_empty() {
            let mut histogram = counters.latency.lock();
            for ns in latencies.drain(..) {
                histogram.record_ns(ns);
            }
        }
        if count > 0 {
            counters.delivered.fetch_add(count, Ordering::Relaxed);
            if !started {
                started = true;
                counters.mark_started();
            }
        }
        for i in touched.drain(..) {
            let state = &publishers.local[i];
            state.delivered.fetch_add(std::mem::take(&mut per_pub[i]), Ordering::Relaxed);
            state.wake.notify_one();
        }
        if !replies.is_empty() {
            outbox.push_framed(&replies);
            replies.clear();
        }
        if let Err(e) = input {
            outcome.error = Some(e.to_string());
            break;
        }
        let read = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            read = reader.read(&mut buf, &outbox) => read,
        };
        match read {
            Ok(0) => {
                outcome.error = Some("closed by the broker".into());
                break;
            }
            Ok(_) => {}
            Err(e) => {
                outcome.error = Some(e.to_string());
                break;
            }
        }
    }
    outcome
}

/// Reads an idle connection (`conns`): answers pings, counts nothing. Returns why it
/// ended, unless `stop`.
pub(super) async fn idle(
    mut reader: Reader,
    mut rx: Rx,
    mut buf: BytesMut,
    outbox: Arc<Outbox>,
    stop: CancellationToken,
) -> Option<String> {
    let mut replies = BytesMut::new();
    loop {
        if let Err(e) = rx.input(&mut buf, &mut replies, &mut |_| {}) {
            return Some(e.to_string());
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
