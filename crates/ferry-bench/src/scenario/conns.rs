//! `conns`: N idle connections, each subscribed to a topic of its own. Reports how long
//! setting them up took, how many failed or were dropped while held, and, given the
//! broker's pid, its resident memory per connection (`VmRSS` before the first
//! connection and after holding them all; run it on a fresh broker).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::setup::{self, Opening, Session};
use super::subscriber;
use super::Env;
use crate::progress::Phase;
use crate::sys;
use crate::transport;

/// Pause after the last connection before memory is read.
const SETTLE: Duration = Duration::from_secs(1);
/// How many distinct errors are listed.
const MAX_ERRORS: usize = 5;

/// The result of `conns`.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct ConnsOutcome {
    /// Connections asked for.
    pub requested: usize,
    /// Connections set up (CONNECT and SUBSCRIBE answered).
    pub established: usize,
    /// Connections that could not be set up.
    pub failed: usize,
    /// Set-up wall time, seconds.
    pub setup_secs: f64,
    /// Connections set up per second.
    pub setup_per_s: f64,
    /// This process's CPU use during set-up (1.0 = one core).
    pub setup_bench_cpu: Option<f64>,
    /// Connections lost while held.
    pub dropped: u64,
    /// Seconds they were held.
    pub hold_secs: f64,
    /// Broker `VmRSS` before the first connection, KiB.
    pub broker_rss_before_kib: Option<u64>,
    /// Broker `VmRSS` with every connection held, KiB.
    pub broker_rss_after_kib: Option<u64>,
    /// (after − before) / established, KiB.
    pub broker_rss_per_conn_kib: Option<f64>,
    /// This process's own growth per connection, KiB.
    pub bench_rss_per_conn_kib: Option<f64>,
    /// The first distinct errors.
    pub errors: Vec<String>,
}

/// Runs `conns`.
pub(crate) async fn run(env: &Env) -> anyhow::Result<ConnsOutcome> {
    let args = &env.args;
    let (connector, spec) = env.side(args.protocol)?;
    let prefix = args.topic_prefix.trim_end_matches('/');
    let pid = std::process::id();
    let broker_before = args.broker_pid.and_then(|p| sys::pid_rss_kib(p).ok());
    let self_before = sys::self_rss_kib().ok();
    let openings: Vec<Opening> = (0..args.clients)
        .map(|i| {
            let n = args.id_offset as usize + i;
            let topic = format!("{prefix}/conns/{n}");
            Opening {
                connector: connector.clone(),
                spec: spec.clone(),
                index: i,
                client_id: format!("fb{pid}c{n}"),
                subscribe: Some(topic.clone()),
                publish: topic,
                small_window: None,
            }
        })
        .collect();
    env.progress.to_open.store(openings.len() as u64, Ordering::Relaxed);
    env.progress.set(Phase::Connecting);
    let cpu0 = sys::self_cpu().ok();
    let t0 = Instant::now();
    let results = setup::open_all(
        openings,
        args.connect_concurrency,
        args.connect_timeout,
        env.progress.opened.clone(),
    )
    .await;
    let setup = t0.elapsed();
    let cpu1 = sys::self_cpu().ok();

    let mut outcome = ConnsOutcome {
        requested: args.clients,
        setup_secs: setup.as_secs_f64(),
        broker_rss_before_kib: broker_before,
        ..ConnsOutcome::default()
    };
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        outcome.setup_bench_cpu = Some(b.fraction_since(&a, setup));
    }
    let stop = CancellationToken::new();
    let dropped = Arc::new(AtomicU64::new(0));
    let mut held = Vec::new();
    let mut tasks = Vec::new();
    for r in results {
        match r {
            Ok(Session { conn, tx, rx, buf }) => {
                let outbox = conn.outbox.clone();
                let (stop_r, dropped, progress) = (stop.clone(), dropped.clone(), env.progress.clone());
                let reader = conn.reader;
                let out = outbox.clone();
                tasks.push(tokio::spawn(async move {
                    let ended = subscriber::idle(reader, rx, buf, out, stop_r).await;
                    if ended.is_some() {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        progress.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    ended
                }));
                tasks.push(tokio::spawn(async move {
                    let _ = transport::drain_outbox(conn.writer, outbox, CancellationToken::new()).await;
                    None
                }));
                held.push((tx, conn.outbox));
                outcome.established += 1;
            }
            Err(e) => {
                outcome.failed += 1;
                let e = e.to_string();
                if outcome.errors.len() < MAX_ERRORS && !outcome.errors.contains(&e) {
                    outcome.errors.push(e);
                }
            }
        }
    }
    outcome.setup_per_s = if outcome.setup_secs > 0.0 {
        outcome.established as f64 / outcome.setup_secs
    } else {
        0.0
    };

    env.progress.set(Phase::Hold);
    let hold_start = Instant::now();
    tokio::time::sleep(SETTLE.max(args.duration)).await;
    outcome.hold_secs = hold_start.elapsed().as_secs_f64();
    outcome.dropped = dropped.load(Ordering::Relaxed);
    outcome.broker_rss_after_kib = args.broker_pid.and_then(|p| sys::pid_rss_kib(p).ok());
    let per_conn = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(b), Some(a)) if outcome.established > 0 => Some((a as f64 - b as f64) / outcome.established as f64),
        _ => None,
    };
    outcome.broker_rss_per_conn_kib = per_conn(outcome.broker_rss_before_kib, outcome.broker_rss_after_kib);
    outcome.bench_rss_per_conn_kib = per_conn(self_before, sys::self_rss_kib().ok());

    env.progress.set(Phase::Closing);
    for (mut tx, outbox) in held {
        let mut bye = BytesMut::new();
        tx.disconnect(&mut bye);
        outbox.push_framed(&bye);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    for t in tasks {
        t.abort();
    }
    Ok(outcome)
}
