//! Authentication, ACL and limits as the binary runs them: the [`Gatekeeper`] built from
//! `[auth]` and `[limits]`, password checks on a bounded set of blocking threads, and the
//! reloads on SIGHUP and (with `auth.watch_files`) when the files change on disk.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use ferry_auth::{Authenticator, Gatekeeper, Offload};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::settings::Settings;

/// Runs password checks on tokio's blocking threads, at most `permits` at once: each
/// argon2id check holds ~20 MiB, so a burst of connections must not start hundreds.
struct BlockingChecks {
    runtime: Handle,
    permits: Arc<Semaphore>,
}

impl Offload for BlockingChecks {
    fn run(&self, job: Box<dyn FnOnce() + Send>) {
        let permits = Arc::clone(&self.permits);
        self.runtime.spawn(async move {
            // The semaphore is never closed, so acquiring only fails if it were.
            let Ok(_permit) = permits.acquire_owned().await else { return };
            if let Err(e) = tokio::task::spawn_blocking(job).await {
                warn!(error = %e, "a password check failed to run");
            }
        });
    }
}

/// Loads the password, ACL and key files named in `[auth]` (failing with the file's name
/// when one is unusable) and builds the gatekeeper every connection shares.
pub(crate) fn gatekeeper(settings: &Settings, runtime: Handle) -> anyhow::Result<Arc<Gatekeeper>> {
    let authenticator = Arc::new(Authenticator::from_settings(&settings.auth).context("cannot load the [auth] files")?);
    let threads = match settings.auth.password_check_threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let offload = BlockingChecks {
        runtime,
        permits: Arc::new(Semaphore::new(threads)),
    };
    info!(auth = %authenticator.summary(), "authentication loaded");
    Ok(Arc::new(Gatekeeper::new(
        authenticator,
        &settings.auth,
        settings.limits.clone(),
        Arc::new(offload),
    )))
}

/// Re-reads the auth files; the old ones stay in force when a new one is invalid.
pub(crate) fn reload(gate: &Gatekeeper, why: &'static str) {
    match gate.reload() {
        Ok(summary) => info!(why, auth = %summary, "authentication reloaded"),
        Err(e) => warn!(why, error = %e, "authentication not reloaded; the previous files stay in force"),
    }
}

/// Reloads on every SIGHUP, for the life of the process.
pub(crate) async fn reload_on_sighup(gate: Arc<Gatekeeper>, mut hangups: tokio::signal::unix::Signal) {
    while hangups.recv().await.is_some() {
        reload(&gate, "SIGHUP");
    }
}

/// What a watched file looked like: its modification time and length, or nothing when
/// it cannot be read.
type Stamp = Option<(SystemTime, u64)>;

fn stamps(files: &[PathBuf]) -> Vec<Stamp> {
    files
        .iter()
        .map(|f| std::fs::metadata(f).ok().and_then(|m| Some((m.modified().ok()?, m.len()))))
        .collect()
}

/// Reloads when a watched file (password, ACL, JWT key) changes, looking every `interval`.
pub(crate) async fn reload_on_change(gate: Arc<Gatekeeper>, interval: Duration) {
    let files = gate.authenticator().watched_files();
    if files.is_empty() {
        return;
    }
    let mut seen = stamps(&files);
    let mut every = tokio::time::interval(interval.max(Duration::from_millis(100)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let now = stamps(&files);
        if now != seen {
            seen = now;
            reload(&gate, "file changed");
        }
    }
}
