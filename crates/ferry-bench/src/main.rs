//! `ferry-bench`: a load generator for MQTT and STOMP brokers on this machine.
//!
//! It speaks through Ferry's own codecs (`ferry_mqtt::codec`, `ferry_stomp::codec`),
//! over ws://, wss://, tcp:// and TLS, runs one scenario (`fanout`, `fanin`, `pairs`,
//! `conns`, `cross`, `slow`), prints a progress line every second on stderr, then a summary,
//! and with `--json` one JSON line on stdout. See `ferry-bench --help` and the crate
//! README.

mod cli;
mod client;
mod mqtt;
mod outbox;
mod payload;
mod progress;
mod report;
mod scenario;
mod seq;
mod stats;
mod stomp;
mod sys;
mod tls;
mod transport;
mod url;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::cli::{Args, Scenario};
use crate::report::Report;
use crate::scenario::Env;

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    args.validate()?;
    // Every connection is a descriptor; leave room for the runtime and the logs.
    let wanted = args.clients as u64 * 2 + 256;
    match sys::raise_nofile(wanted) {
        Ok(limit) if limit < args.clients as u64 + 64 => {
            tracing::warn!("open-file limit {limit} is below the {} connections asked for", args.clients)
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("could not raise the open-file limit: {e}"),
    }
    let threads = args.worker_threads();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let json = args.json;
    let report = runtime.block_on(async move {
        let env = Env::new(args)?;
        let target = env.side(env.args.protocol)?.0.target().clone();
        let mut report = Report::new(&env.args, &target, threads);
        let stop_progress = CancellationToken::new();
        let ticker = progress::spawn(env.progress.clone(), env.args.broker_pid, env.args.quiet, stop_progress.clone());
        let result = match env.args.scenario {
            Scenario::Conns => scenario::conns::run(&env).await.map(|c| report.conns = Some(c)),
            Scenario::Slow => scenario::slow::run(&env).await.map(|(f, s)| {
                report.flow = Some(f);
                report.slow = Some(s);
            }),
            _ => {
                let announce = env.args.role == cli::Role::Sub;
                if announce {
                    // Scripts wait for this line before starting the publishers.
                    let progress = env.progress.clone();
                    tokio::spawn(async move {
                        while progress.phase() == progress::Phase::Connecting {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                        eprintln!("ferry-bench: ready");
                    });
                }
                scenario::flow::run(&env).await.map(|f| report.flow = Some(f))
            }
        };
        stop_progress.cancel();
        let _ = ticker.await;
        result?;
        report.loadavg = sys::loadavg();
        Ok::<Report, anyhow::Error>(report)
    })?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    if json {
        eprint!("{}", report.summary());
        println!("{}", report.json());
    } else {
        print!("{}", report.summary());
    }
    Ok(())
}
