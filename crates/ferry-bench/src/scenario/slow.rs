//! `slow`: does a consumer that stops reading slow the others down, and does the
//! broker's memory stay bounded meanwhile?
//!
//! One publisher → N healthy subscribers on `PREFIX/slow` (as `fanout`, any QoS or
//! protocol), and one more subscriber that stalls. `--duration` is split into two
//! phases of equal length, timed by this process:
//!
//! * **phase A**, the baseline: the publisher and the N healthy subscribers;
//! * then the extra subscriber connects and subscribes like the others (that set-up is
//!   in neither phase). From its SUBACK on, nothing reads its socket: the connection
//!   stays open and silent. The broker's writes to it back up, first into the two
//!   kernel buffers, then into whatever the broker queues for that connection. The
//!   kernel buffers are kept to a few dozen KiB ([`STALLED`]: a fixed 4 KiB receive
//!   buffer, and a 536-byte segment size announced to the broker, without which Linux
//!   gives the broker's side of a loopback socket megabytes of send buffer and the
//!   broker's own queues would only fill seconds later);
//! * **phase B**: the same publisher and healthy subscribers, with the stalled
//!   subscriber present from its first second.
//!
//! Reported per phase: the healthy subscribers' deliveries per second (all N together;
//! the stalled subscriber is never counted), the publish rate, latencies, and with
//! `--broker-pid` the broker's `VmRSS`, read every [`RSS_EVERY`] (first, highest, last
//! sample), and the broker's CPU time per healthy delivery. Then the ratio B/A of the
//! healthy delivery rate (the target is at least [`TARGET_RATIO`]), the same ratio of
//! the broker's CPU per delivery (on a shared machine a lower rate in B at the same
//! cost per delivery means the broker got less CPU in B, not more work from the stall),
//! and the broker's RSS growth from the end of A (just before the stalled subscriber
//! connects) to the highest sample of B. After the run (publisher
//! stopped, healthy subscribers drained), the stalled subscriber reads what the broker
//! kept for it and reports how much that was, how much of what was published since
//! its subscription it never got (dropped for it), and whether the broker had closed
//! its connection.
//!
//! Why the stalled subscriber joins only for B, rather than being connected from the
//! start and stopping reading at B: a connection that has been reading at full speed
//! has had its kernel buffers grown by autotuning, so megabytes would go into the
//! kernel before the broker noticed anything, and a subscriber reading through a
//! fixed few-KiB buffer in A might lag and make the broker queue for it in the
//! baseline. Joining for B keeps A clean, and B starts when the stall does, so the
//! fill-up of the broker's queues is inside B (and inside its RSS samples). The price:
//! in B the broker routes each message to N + 1 subscriptions instead of N, 1/N more
//! fan-out work (1% at 100 subscribers), which a broker at its limit could show as up
//! to about 1% less: small beside the 10% the target allows.
//!
//! Pacing: as every flow scenario. With `--max` (the default) the publisher goes as fast
//! as its end-to-end window of `--inflight` messages allows, and that window counts the
//! healthy subscribers only (the stalled one is no part of the plan, so it can neither
//! hold the window nor be written off as a stall): B/A then compares what the broker
//! sustains for the healthy subscribers with and without a stalled one. With `--rate R`
//! both phases are offered the same load (the window still applies, so the publisher
//! never floods the broker): when R is below what the broker sustains, B/A stays near 1
//! unless the stall costs the others. `bench/run.sh` runs both: `--max`, then `--rate`
//! at 90% of the publish rate of phase A of the broker's first `--max` run.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::BytesMut;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::flow::{self, FlowOutcome, IDLE};
use super::setup::{self, Opening, Session};
use super::subscriber::{self, LocalPublishers};
use super::{fanout, Env, Plan};
use crate::progress::Phase;
use crate::stats::{Counters, LatencySummary, Snapshot, Window};
use crate::sys;
use crate::transport::{self, SmallWindow};

/// The stalled subscriber's socket options: a 4 KiB receive buffer (Linux doubles it
/// for its bookkeeping and no longer autotunes it) and a 536-byte MSS (the broker's
/// kernel then sizes its send buffer for small segments).
pub(crate) const STALLED: SmallWindow = SmallWindow {
    recv_buffer: 4096,
    mss: 536,
};
/// How often the broker's RSS is read during a phase.
pub(crate) const RSS_EVERY: Duration = Duration::from_millis(100);
/// The lowest acceptable B/A of the healthy subscribers' delivery rate: a stalled
/// subscriber may cost the others at most 10%.
pub(crate) const TARGET_RATIO: f64 = 0.90;

/// The plan: publisher `offset` on `PREFIX/slow`, `n` healthy subscribers to it (the
/// stalled one is not part of it).
pub(crate) fn plan(prefix: &str, protocol: crate::cli::Protocol, n: usize, offset: u32) -> Plan {
    let mut plan = fanout::plan(prefix, protocol, n, offset);
    let topic = format!("{prefix}/slow");
    for p in &mut plan.publishers {
        p.topic = topic.clone();
    }
    for s in &mut plan.subscribers {
        s.filter = topic.clone();
    }
    plan
}

/// The length of each phase: half of `--duration`.
pub(crate) fn phase_length(duration: Duration) -> Duration {
    duration / 2
}

/// `after / before`, when `before` is a positive rate.
pub(crate) fn ratio(after: f64, before: f64) -> Option<f64> {
    (before > 0.0 && before.is_finite() && after.is_finite()).then(|| after / before)
}

/// The broker's resident memory through one phase, KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct RssTrack {
    /// The first sample, at the phase's start.
    pub start_kib: u64,
    /// The highest sample.
    pub max_kib: u64,
    /// The last sample, at the phase's end.
    pub end_kib: u64,
    /// Samples read.
    pub samples: u32,
}

impl RssTrack {
    /// A track whose first sample is `kib`.
    pub(crate) fn new(kib: u64) -> RssTrack {
        RssTrack {
            start_kib: kib,
            max_kib: kib,
            end_kib: kib,
            samples: 1,
        }
    }

    /// Adds a sample.
    pub(crate) fn record(&mut self, kib: u64) {
        self.max_kib = self.max_kib.max(kib);
        self.end_kib = kib;
        self.samples += 1;
    }
}

/// Adds a sample to `track`, starting it with the first one.
fn record_rss(track: &mut Option<RssTrack>, kib: Option<u64>) {
    if let Some(kib) = kib {
        match track {
            Some(t) => t.record(kib),
            None => *track = Some(RssTrack::new(kib)),
        }
    }
}

/// Growth from `before` (KiB) to the highest sample of `during`.
pub(crate) fn rss_growth(before: Option<u64>, during: Option<&RssTrack>) -> Option<i64> {
    Some(during?.max_kib as i64 - before? as i64)
}

/// The broker's CPU time per delivery to the healthy subscribers in `w`, µs.
pub(crate) fn cpu_per_delivery_us(w: &Window) -> Option<f64> {
    let cpu = w.broker_cpu?;
    (w.delivered > 0).then(|| cpu * w.secs * 1e6 / w.delivered as f64)
}

/// One phase of the run.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct PhaseOutcome {
    /// Its window: the healthy subscribers' deliveries, publications, CPU use.
    pub window: Window,
    /// The broker's CPU time per delivery to a healthy subscriber, µs (with
    /// `--broker-pid`): what the phase's work costs the broker, however much CPU other
    /// processes left it.
    pub broker_us_per_delivery: Option<f64>,
    /// The healthy subscribers' latencies in it.
    pub latency: Option<LatencySummary>,
    /// The broker's RSS through it (with `--broker-pid`).
    pub broker_rss: Option<RssTrack>,
}

/// The stalled subscriber.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct StalledOutcome {
    /// Its fixed socket receive buffer, bytes asked for.
    pub recv_buffer: u32,
    /// The segment size it announced, bytes.
    pub mss: u32,
    /// Seconds from the end of phase A to its SUBACK.
    pub connect_secs: f64,
    /// Data messages published from its SUBACK to the end of the run.
    pub published: u64,
    /// Of those, the ones it received when it read at last, after the run: what the
    /// broker and the two kernel buffers had kept for it.
    pub backlog: u64,
    /// `published − backlog`: dropped for it (or lost with its connection).
    pub dropped: u64,
    /// The broker had closed its connection.
    pub closed_by_broker: bool,
    /// How reading its backlog ended, when not by running dry.
    pub error: Option<String>,
}

/// The result of `slow`, beside the flow result (whose window spans both phases).
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct SlowOutcome {
    /// Each phase's length, seconds.
    pub phase_secs: f64,
    /// Phase A: the healthy subscribers alone.
    pub phase_a: PhaseOutcome,
    /// Phase B: with the stalled subscriber.
    pub phase_b: PhaseOutcome,
    /// The healthy subscribers' deliveries per second, B / A.
    pub delivered_ratio: Option<f64>,
    /// Publications per second, B / A.
    pub published_ratio: Option<f64>,
    /// The broker's CPU time per healthy delivery, B / A: above 1, the stalled
    /// subscriber costs the broker work; near 1 with a lower rate in B, the broker got
    /// less CPU in B (other processes on a shared machine), not more work.
    pub broker_cost_ratio: Option<f64>,
    /// `delivered_ratio` ≥ [`TARGET_RATIO`].
    pub meets_target: Option<bool>,
    /// Broker RSS from the end of A to the highest sample of B, KiB.
    pub broker_rss_growth_kib: Option<i64>,
    /// What became of the stalled subscriber.
    pub stalled: StalledOutcome,
}

/// Runs `slow`.
pub(crate) async fn run(env: &Env) -> anyhow::Result<(FlowOutcome, SlowOutcome)> {
    let args = &env.args;
    let plan = Plan::for_args(args);
    let n = plan.subscribers.len() + plan.publishers.len();
    let (connector, spec) = env.side(args.protocol)?;
    let topic = plan
        .subscribers
        .first()
        .map(|s| s.filter.clone())
        .context("slow needs subscribers")?;
    let stall = Opening {
        connector,
        spec,
        index: n,
        client_id: format!("fb{}stall{}", std::process::id(), args.id_offset),
        subscribe: Some(topic.clone()),
        publish: topic,
        small_window: Some(STALLED),
    };
    let running = flow::start(env, plan).await?;
    let states = running.publisher_states().to_vec();
    let pid = args.broker_pid;
    let half = phase_length(args.duration);

    env.progress.set(Phase::Warmup);
    tokio::time::sleep(args.warmup).await;
    let first = Snapshot::take(&env.counters, pid);
    let phase_a = phase(env, half, Phase::Baseline).await;

    let connecting = Instant::now();
    let session = match setup::open(&stall, args.connect_timeout).await {
        Ok(s) => s,
        Err(e) => {
            let _ = flow::finish(running, env, Window::default()).await;
            return Err(e).context("the stalled subscriber could not subscribe");
        }
    };
    let connect_secs = connecting.elapsed().as_secs_f64();
    let published_from = env.counters.totals().published;
    let phase_b = phase(env, half, Phase::Stalled).await;
    let last = Snapshot::take(&env.counters, pid);

    let flow = flow::finish(running, env, Window::between(&first, &last)).await;
    let sent: u64 = states.iter().map(|s| s.sent.load(Ordering::Relaxed)).sum();
    let mut stalled = read_backlog(session, args.drain).await;
    stalled.recv_buffer = STALLED.recv_buffer;
    stalled.mss = STALLED.mss;
    stalled.connect_secs = connect_secs;
    stalled.published = sent.saturating_sub(published_from);
    stalled.dropped = stalled.published.saturating_sub(stalled.backlog);

    let delivered_ratio = ratio(phase_b.window.delivered_per_s, phase_a.window.delivered_per_s);
    let slow = SlowOutcome {
        phase_secs: half.as_secs_f64(),
        delivered_ratio,
        published_ratio: ratio(phase_b.window.published_per_s, phase_a.window.published_per_s),
        broker_cost_ratio: match (phase_a.broker_us_per_delivery, phase_b.broker_us_per_delivery) {
            (Some(a), Some(b)) => ratio(b, a),
            _ => None,
        },
        meets_target: delivered_ratio.map(|r| r >= TARGET_RATIO),
        broker_rss_growth_kib: rss_growth(phase_a.broker_rss.map(|r| r.end_kib), phase_b.broker_rss.as_ref()),
        phase_a,
        phase_b,
        stalled,
    };
    Ok((flow, slow))
}

/// Measures one phase of `len`: its window, its latencies, and the broker's RSS every
/// [`RSS_EVERY`].
async fn phase(env: &Env, len: Duration, name: Phase) -> PhaseOutcome {
    let (counters, pid) = (&env.counters, env.args.broker_pid);
    let rss = || pid.and_then(|p| sys::pid_rss_kib(p).ok());
    env.progress.set(name);
    let latency_before = counters.latency.lock().clone();
    let mut broker_rss = None;
    record_rss(&mut broker_rss, rss());
    let a = Snapshot::take(counters, pid);
    counters.measuring.store(true, Ordering::Relaxed);
    let end = Instant::now() + len;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        tokio::time::sleep_until((now + RSS_EVERY).min(end).into()).await;
        if Instant::now() < end {
            record_rss(&mut broker_rss, rss());
        }
    }
    counters.measuring.store(false, Ordering::Relaxed);
    let b = Snapshot::take(counters, pid);
    record_rss(&mut broker_rss, rss());
    let latency = counters.latency.lock().since(&latency_before);
    let window = Window::between(&a, &b);
    PhaseOutcome {
        broker_us_per_delivery: cpu_per_delivery_us(&window),
        window,
        latency: (latency.count() > 0).then(|| latency.summary()),
        broker_rss,
    }
}

/// The stalled subscriber reads at last, until nothing more comes (or `limit`), then
/// says goodbye. Counts go to counters of its own: it is never one of the healthy.
async fn read_backlog(session: Session, limit: Duration) -> StalledOutcome {
    let Session { conn, mut tx, rx, buf } = session;
    let counters = Arc::new(Counters::default());
    let stop = CancellationToken::new();
    let close = CancellationToken::new();
    let outbox = conn.outbox.clone();
    let mut reader = tokio::spawn(subscriber::receive(
        conn.reader,
        rx,
        buf,
        outbox.clone(),
        LocalPublishers::default(),
        counters.clone(),
        stop.clone(),
    ));
    // Acknowledgements (QoS 1/2) and pongs leave through the outbox.
    let writer = tokio::spawn(transport::drain_outbox(conn.writer, outbox.clone(), close.clone()));
    let ended = async {
        flow::wait_idle(&counters, limit, IDLE).await;
    };
    let early = tokio::select! {
        _ = ended => None,
        done = &mut reader => Some(done),
    };
    stop.cancel();
    let sub = match early {
        Some(done) => done,
        None => reader.await,
    };
    let mut bye = BytesMut::new();
    tx.disconnect(&mut bye);
    outbox.push_framed(&bye);
    close.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    let mut outcome = StalledOutcome::default();
    match sub {
        Ok(sub) => {
            outcome.backlog = sub.trackers.iter().map(|(_, t)| t.stats(None).received).sum();
            outcome.closed_by_broker = sub.error.is_some();
            outcome.error = sub.error;
        }
        Err(e) => outcome.error = Some(format!("reader task: {e}")),
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Protocol;

    #[test]
    fn healthy_subscribers_only() {
        let p = plan("bench", Protocol::Mqtt, 3, 7);
        assert_eq!(p.publishers.len(), 1);
        assert_eq!((p.publishers[0].id, p.publishers[0].topic.as_str()), (7, "bench/slow"));
        assert_eq!(p.subscribers.len(), 3, "the stalled subscriber is not in the plan");
        assert!(p.subscribers.iter().all(|s| s.filter == "bench/slow" && s.sources == [7]));
        assert_eq!(p.local_fanout(7), 3, "the end-to-end window counts the healthy only");
    }

    #[test]
    fn two_equal_phases() {
        assert_eq!(phase_length(Duration::from_secs(10)), Duration::from_secs(5));
        assert_eq!(phase_length(Duration::from_millis(3)), Duration::from_micros(1500));
        let d = Duration::from_millis(1234);
        assert!(d - 2 * phase_length(d) < Duration::from_nanos(2));
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(90.0, 100.0), Some(0.9));
        assert_eq!(ratio(0.0, 100.0), Some(0.0));
        assert_eq!(ratio(5.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
        assert!(ratio(89.0, 100.0).is_some_and(|r| r < TARGET_RATIO));
    }

    #[test]
    fn broker_cost() {
        let mut w = Window {
            secs: 2.0,
            delivered: 1_000_000,
            broker_cpu: Some(0.5),
            ..Window::default()
        };
        // One core-second for a million deliveries: 1 µs each.
        assert_eq!(cpu_per_delivery_us(&w), Some(1.0));
        w.delivered = 0;
        assert_eq!(cpu_per_delivery_us(&w), None);
        w.delivered = 10;
        w.broker_cpu = None;
        assert_eq!(cpu_per_delivery_us(&w), None);
    }

    #[test]
    fn rss_tracks() {
        let mut t = None;
        record_rss(&mut t, None);
        assert_eq!(t, None, "no broker pid, no track");
        for kib in [100, 180, 150] {
            record_rss(&mut t, Some(kib));
        }
        let t = t.unwrap();
        assert_eq!((t.start_kib, t.max_kib, t.end_kib, t.samples), (100, 180, 150, 3));
        assert_eq!(rss_growth(Some(120), Some(&t)), Some(60));
        assert_eq!(rss_growth(Some(200), Some(&t)), Some(-20));
        assert_eq!(rss_growth(None, Some(&t)), None);
        assert_eq!(rss_growth(Some(1), None), None);
    }
}
