//! Runs a flow scenario's [`Plan`]: opens the subscribers, then the publishers; warms
//! up; measures; stops the publishers (each sends an end marker); waits for what is
//! still in flight; closes everything; adds up.
//!
//! With `--role sub` the clock starts at the first message received, since the
//! publishers run in another process.
//!
//! [`run`] is [`start`], the clock, then [`finish`]; `slow` uses the first and the last
//! around a clock of its own.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::BytesMut;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::publisher::{self, PubConfig, PubOutcome, PubState};
use super::setup::{self, Opening, Session};
use super::subscriber::{self, LocalPublishers, SubOutcome};
use super::{Env, Plan};
use crate::client::Tx;
use crate::progress::Phase;
use crate::seq::SeqStats;
use crate::stats::{LatencySummary, Snapshot, Window};
use crate::transport::{self, Writer};

/// How long deliveries must pause before the drain is considered over.
pub(super) const IDLE: Duration = Duration::from_millis(300);
/// How many distinct errors a result lists.
const MAX_ERRORS: usize = 5;

/// The result of a flow scenario.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct FlowOutcome {
    /// Publishers this process ran.
    pub publishers: usize,
    /// Subscribers this process ran.
    pub subscribers: usize,
    /// Seconds spent opening connections.
    pub setup_secs: f64,
    /// The measurement window.
    pub window: Window,
    /// Latencies inside the window.
    pub latency: Option<LatencySummary>,
    /// Loss, duplicates and order over the whole run (warm-up and drain included).
    pub seq: SeqStats,
    /// Messages whose payload was not ours.
    pub foreign: u64,
    /// End-to-end windows written off (deliveries stopped coming).
    pub stalls: u64,
    /// Publishers and subscribers that stopped on an error while running.
    pub failures: u64,
    /// The first distinct errors.
    pub errors: Vec<String>,
}

struct RunningPub {
    id: u32,
    task: JoinHandle<(PubOutcome, Writer, Tx)>,
    reader: JoinHandle<Option<String>>,
}

struct RunningSub {
    tx: Tx,
    outbox: Arc<crate::outbox::Outbox>,
    sources: Vec<u32>,
    task: JoinHandle<SubOutcome>,
    writer: JoinHandle<std::io::Result<()>>,
}

/// A flow scenario under way: its connections open, subscribers reading, publishers
/// publishing, until [`finish`].
pub(crate) struct Running {
    plan: Plan,
    subs: Vec<RunningSub>,
    pubs: Vec<RunningPub>,
    states: Vec<Arc<PubState>>,
    stop_pubs: CancellationToken,
    stop_subs: CancellationToken,
    close: CancellationToken,
    setup_secs: f64,
}

/// Runs `env`'s flow scenario.
pub(crate) async fn run(env: &Env) -> anyhow::Result<FlowOutcome> {
    let running = start(env, Plan::for_args(&env.args)).await?;
    let window = clock(env).await?;
    Ok(finish(running, env, window).await)
}

/// Opens `plan`'s connections (subscribers first, so that nothing published is missed)
/// and starts its subscribers, then its publishers.
pub(crate) async fn start(env: &Env, plan: Plan) -> anyhow::Result<Running> {
    let args = &env.args;
    let counters = env.counters.clone();
    let progress = env.progress.clone();
    let pid = std::process::id();

    // Open every connection: subscribers first, so that nothing published is missed.
    let mut openings = Vec::new();
    for (i, s) in plan.subscribers.iter().enumerate() {
        let (connector, spec) = env.sub_side(s.protocol, i)?;
        openings.push(Opening {
            connector,
            spec,
            index: i,
            client_id: format!("fb{pid}s{}", args.id_offset as usize + i),
            subscribe: Some(s.filter.clone()),
            publish: s.filter.replace(['+', '#'], "x"),
            small_window: None,
        });
    }
    let n_subs = openings.len();
    for (j, p) in plan.publishers.iter().enumerate() {
        let (connector, spec) = env.side(p.protocol)?;
        openings.push(Opening {
            connector,
            spec,
            index: n_subs + j,
            client_id: format!("fb{pid}p{}", p.id),
            subscribe: None,
            publish: p.topic.clone(),
            small_window: None,
        });
    }
    progress.to_open.store(openings.len() as u64, Ordering::Relaxed);
    let setup_start = Instant::now();
    let pubs_openings = openings.split_off(n_subs);
    let mut sessions = open_or_fail(openings, env).await?;
    sessions.extend(open_or_fail(pubs_openings, env).await?);
    let setup_secs = setup_start.elapsed().as_secs_f64();
    let pub_sessions = sessions.split_off(n_subs);

    // Start the subscribers, then the publishers.
    let stop_pubs = CancellationToken::new();
    let stop_subs = CancellationToken::new();
    let close = CancellationToken::new();
    let base = plan.publishers.first().map_or(0, |p| p.id);
    let states: Vec<Arc<PubState>> = plan.publishers.iter().map(|_| Arc::new(PubState::default())).collect();
    let locals = LocalPublishers {
        base,
        local: Arc::new(states.clone()),
    };
    let mut subs = Vec::new();
    for (session, plan_sub) in sessions.into_iter().zip(&plan.subscribers) {
        let Session { conn, tx, rx, buf } = session;
        let outbox = conn.outbox.clone();
        let task = tokio::spawn(subscriber::receive(
            conn.reader,
            rx,
            buf,
            outbox.clone(),
            locals.clone(),
            counters.clone(),
            stop_subs.clone(),
        ));
        let writer = tokio::spawn(transport::drain_outbox(conn.writer, outbox.clone(), close.clone()));
        subs.push(RunningSub {
            tx,
            outbox,
            sources: plan_sub.sources.clone(),
            task,
            writer,
        });
    }
    let per_pub_rate = args.rate.map(|r| r / plan.publishers.len().max(1) as f64);
    let mut pubs = Vec::new();
    for (j, (session, p)) in pub_sessions.into_iter().zip(&plan.publishers).enumerate() {
        let Session { conn, tx, rx, buf } = session;
        let confirms = env.side(p.protocol)?.1.confirms();
        let phase = match per_pub_rate {
            Some(rate) => Duration::from_secs_f64(j as f64 / plan.publishers.len() as f64 / rate),
            None => Duration::ZERO,
        };
        let cfg = PubConfig {
            id: p.id,
            payload_size: args.payload,
            json_body: args.json_body,
            rate: per_pub_rate,
            phase,
            window: args.inflight as u64,
            confirms,
            local_fanout: plan.local_fanout(p.id),
            drain: args.drain,
        };
        let state = states[j].clone();
        let outbox = conn.outbox.clone();
        let reader = tokio::spawn(publisher::read_confirmations(
            conn.reader,
            rx,
            buf,
            outbox.clone(),
            state.clone(),
            counters.clone(),
            close.clone(),
        ));
        let (c, stop) = (counters.clone(), stop_pubs.clone());
        let (mut writer, mut tx) = (conn.writer, tx);
        let task = tokio::spawn(async move {
            let outcome = publisher::publish(cfg, &mut writer, &mut tx, outbox, state, c, stop).await;
            (outcome, writer, tx)
        });
        pubs.push(RunningPub { id: p.id, task, reader });
    }
    Ok(Running {
        plan,
        subs,
        pubs,
        states,
        stop_pubs,
        stop_subs,
        close,
        setup_secs,
    })
}

/// The clock of a flow scenario: the warm-up (after the first message with `--role
/// sub`), then the measurement window.
async fn clock(env: &Env) -> anyhow::Result<Window> {
    let (args, counters, progress) = (&env.args, &env.counters, &env.progress);
    let pid_b = args.broker_pid;
    if args.role.publishes() {
        progress.set(Phase::Warmup);
    } else {
        progress.set(Phase::Waiting);
        let first = counters.first_message.notified();
        if !counters.started.load(Ordering::Relaxed) && tokio::time::timeout(args.start_timeout, first).await.is_err() {
            bail!(
                "no message within --start-timeout {:?}: start the publishers after `ready`",
                args.start_timeout
            );
        }
        progress.set(Phase::Warmup);
    }
    tokio::time::sleep(args.warmup).await;
    let a = Snapshot::take(counters, pid_b);
    counters.measuring.store(true, Ordering::Relaxed);
    progress.set(Phase::Measure);
    tokio::time::sleep(args.duration).await;
    counters.measuring.store(false, Ordering::Relaxed);
    let b = Snapshot::take(counters, pid_b);
    Ok(Window::between(&a, &b))
}

impl Running {
    /// The publishers' shared counters, in plan order.
    pub(crate) fn publisher_states(&self) -> &[Arc<PubState>] {
        &self.states
    }
}

/// Stops `running`'s publishers (each sends its end marker), waits for what is still in
/// flight, closes every connection and adds up; `window` is the measurement.
pub(crate) async fn finish(running: Running, env: &Env, window: Window) -> FlowOutcome {
    let Running {
        plan,
        subs,
        pubs,
        states: _,
        stop_pubs,
        stop_subs,
        close,
        setup_secs,
    } = running;
    let (args, counters, progress) = (&env.args, &env.counters, &env.progress);
    // Stop publishing, wait for what is in flight.
    progress.set(Phase::Drain);
    stop_pubs.cancel();
    let mut errors = Vec::new();
    let mut failures = 0;
    let mut sent: HashMap<u32, u64> = HashMap::new();
    let mut stalls = 0;
    let mut pub_writers = Vec::new();
    let mut pub_readers = Vec::new();
    for p in pubs {
        match p.task.await {
            Ok((outcome, writer, tx)) => {
                sent.insert(outcome.id, outcome.sent);
                stalls += outcome.stalls;
                if let Some(e) = outcome.error {
                    failures += 1;
                    note(&mut errors, format!("publisher {}: {e}", p.id));
                }
                pub_writers.push((writer, tx));
            }
            Err(e) => {
                failures += 1;
                note(&mut errors, format!("publisher {} task: {e}", p.id));
            }
        }
        pub_readers.push(p.reader);
    }
    wait_idle(counters, args.drain, if args.role.publishes() { IDLE } else { IDLE * 2 }).await;
    progress.set(Phase::Closing);
    stop_subs.cancel();

    // Collect and close.
    let mut seq = SeqStats::default();
    let mut foreign = 0;
    let mut sub_writers = Vec::new();
    let n_pubs = pub_writers.len();
    for mut s in subs {
        match (&mut s.task).await {
            Ok(outcome) => {
                if let Some(e) = &outcome.error {
                    failures += 1;
                    note(&mut errors, format!("subscriber: {e}"));
                }
                seq += sequence_stats(&outcome, &s.sources, &sent);
                foreign += outcome.foreign;
            }
            Err(e) => {
                failures += 1;
                note(&mut errors, format!("subscriber task: {e}"));
            }
        }
        let mut bye = BytesMut::new();
        s.tx.disconnect(&mut bye);
        s.outbox.push_framed(&bye);
        sub_writers.push(s.writer);
    }
    for (mut writer, mut tx) in pub_writers {
        let mut bye = BytesMut::new();
        tx.disconnect(&mut bye);
        let _ = writer.write_all(&bye).await;
        let _ = writer.shutdown().await;
    }
    close.cancel();
    let closing = async {
        for w in sub_writers {
            let _ = w.await;
        }
        for r in pub_readers {
            if let Ok(Some(e)) = r.await {
                tracing::debug!("publisher reader: {e}");
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(5), closing).await.is_err() {
        tracing::warn!("connections still closing after 5 s");
    }
    FlowOutcome {
        publishers: n_pubs,
        subscribers: plan.subscribers.len(),
        setup_secs,
        window,
        latency: {
            let latency = counters.latency.lock();
            (latency.count() > 0).then(|| latency.summary())
        },
        seq,
        foreign,
        stalls,
        failures,
        errors,
    }
}

/// Opens `openings`; any failure fails the scenario (flows need every client).
async fn open_or_fail(openings: Vec<Opening>, env: &Env) -> anyhow::Result<Vec<Session>> {
    let args = &env.args;
    let results = setup::open_all(
        openings,
        args.connect_concurrency,
        args.connect_timeout,
        env.progress.opened.clone(),
    )
    .await;
    let mut sessions = Vec::with_capacity(results.len());
    let mut failed = 0;
    let mut first = None;
    for r in results {
        match r {
            Ok(s) => sessions.push(s),
            Err(e) => {
                failed += 1;
                first.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first {
        return Err(e).with_context(|| format!("{failed} of {} connections failed", sessions.len() + failed));
    }
    Ok(sessions)
}

/// Loss accounting for one subscriber: every stream it saw, with the publisher's count
/// from its end marker or from this process; a local source it never heard from lost
/// everything it sent.
fn sequence_stats(outcome: &SubOutcome, sources: &[u32], sent: &HashMap<u32, u64>) -> SeqStats {
    let mut total = SeqStats::default();
    for (id, tracker) in outcome.trackers.iter() {
        let published = outcome.ends.get(&id).copied().max(sent.get(&id).copied());
        total += tracker.stats(published);
    }
    for id in sources {
        if !outcome.trackers.contains(*id) {
            if let Some(&n) = sent.get(id) {
                total.lost += n;
            }
        }
    }
    total
}

/// Waits until deliveries pause for `idle`, at most `limit`.
pub(super) async fn wait_idle(counters: &crate::stats::Counters, limit: Duration, idle: Duration) {
    let deadline = Instant::now() + limit;
    let mut last = counters.totals().delivered;
    let mut since = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = counters.totals().delivered;
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= idle {
            return;
        }
    }
}

/// Keeps the first [`MAX_ERRORS`] distinct errors.
fn note(errors: &mut Vec<String>, e: String) {
    tracing::warn!("{e}");
    if errors.len() < MAX_ERRORS && !errors.contains(&e) {
        errors.push(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_uses_the_best_known_count() {
        let mut outcome = SubOutcome::default();
        for s in 0..8 {
            outcome.trackers.get_mut(1).record(s);
        }
        outcome.ends.insert(1, 10);
        let sent = HashMap::from([(1, 9), (2, 5)]);
        // Publisher 1: end marker says 10, 8 seen → 2 lost. Publisher 2 never heard: 5 lost.
        let s = sequence_stats(&outcome, &[1, 2], &sent);
        assert_eq!((s.received, s.lost), (8, 7));
        // Publisher 3 is not local and never heard from: unknown, not counted.
        let s = sequence_stats(&outcome, &[1, 3], &sent);
        assert_eq!((s.received, s.lost), (8, 2));
    }

    #[test]
    fn errors_are_deduplicated_and_capped() {
        let mut errors = Vec::new();
        for i in 0..10 {
            note(&mut errors, format!("e{}", i % 7));
            note(&mut errors, "same".into());
        }
        assert_eq!(errors.len(), MAX_ERRORS);
        assert_eq!(errors.iter().filter(|e| *e == "same").count(), 1);
    }
}
