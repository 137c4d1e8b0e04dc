//! `ferry`: the broker binary. Reads the settings, starts the transport with the
//! protocol adapters, and shuts down gracefully on SIGINT/SIGTERM.

mod admin;
mod logging;
mod metrics;
mod passwd;
mod security;
mod settings;
mod storage_cli;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use ferry_auth::{Authenticator, CoreParts, Gatekeeper};
use ferry_core::{Connections, MemoryRetained, Router};
use ferry_mqtt::{MqttAdapter, MqttShared};
use ferry_stomp::StompAdapter;
use ferry_store::BrokerJournal;
use ferry_transport::routes::{HealthRoutes, MetricsRoutes};
use ferry_transport::{HttpRouter, Metrics, Registry, Server, ServerParts};
use tracing::{info, warn};

use crate::settings::Settings;

/// The allocator: jemalloc. The message path makes many small, short-lived allocations;
/// with jemalloc instead of glibc's malloc, pairs 100 over MQTT delivered 15–23% more per
/// core at the same memory per idle connection (README, Benchmarks). Built without the
/// default `jemalloc` feature, Ferry uses the system allocator, which heap profilers
/// such as valgrind's massif can see into.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Ferry, a message broker for MQTT and STOMP over WebSocket and TCP.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Configuration file (TOML). Without it Ferry runs on its built-in defaults;
    /// `FERRY_*` environment variables override either.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker (the default).
    Run,
    /// Validate a configuration file (with the environment's overrides) and print the
    /// effective configuration.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Add a user to a password file or change their password (asked on the terminal, or
    /// read from standard input), or remove a user with -D. The file is created if needed.
    Passwd {
        /// Remove the user instead.
        #[arg(short = 'D', long = "delete")]
        delete: bool,
        /// The password file (`auth.password_file`).
        file: PathBuf,
        /// The user name.
        user: String,
    },
    /// Look at or repair a data directory (`storage.dir`).
    Storage {
        #[command(subcommand)]
        command: StorageCommand,
    },
}

#[derive(Subcommand)]
enum StorageCommand {
    /// What the directory holds: snapshot, segments, records by kind, bytes, problems.
    /// Read-only; works on a running broker's directory.
    Inspect {
        /// The data directory.
        dir: PathBuf,
    },
    /// Move whatever stops the directory from opening (corruption in the log, an
    /// unreadable or foreign file) into DIR/quarantine/, never deleting anything, so
    /// that the broker starts from what is intact. Not while a broker uses it.
    Repair {
        /// The data directory.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::CheckConfig { file }) => check_config(&file),
        Some(Command::Passwd { delete, file, user }) => passwd::run(&file, &user, delete),
        Some(Command::Storage {
            command: StorageCommand::Inspect { dir },
        }) => storage_cli::inspect(&dir),
        Some(Command::Storage {
            command: StorageCommand::Repair { dir },
        }) => storage_cli::repair(&dir),
        Some(Command::Run) | None => run(cli.config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    let settings = Settings::load(Some(file))?;
    for (old, new) in &settings.deprecated_keys {
        eprintln!("ferry: deprecated configuration key {old}: use {new}; the old name still works");
    }
    let auth = Authenticator::from_settings(&settings.auth).context("cannot load the [auth] files")?;
    print!("{}", settings.to_toml()?);
    eprintln!("ferry: auth: {}", auth.summary());
    eprintln!("ferry: {} is valid", file.display());
    Ok(())
}

fn run(config: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = Settings::load(config.as_deref())?;
    logging::init(&settings.log);
    for (old, new) in &settings.deprecated_keys {
        warn!(
            key = old,
            replacement = new,
            "deprecated configuration key {old}: use {new}; the old name still works"
        );
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if settings.runtime.worker_threads > 0 {
        runtime.worker_threads(settings.runtime.worker_threads);
    }
    let runtime = runtime.build().context("cannot start the async runtime")?;
    runtime.block_on(serve(settings))
}

/// What [`adapters`] builds.
struct Wired {
    registry: Registry,
    mqtt: Arc<MqttShared>,
    metrics: Metrics,
    admin: Arc<ferry_admin::Admin>,
    connections: Arc<Connections>,
    router: Arc<Router>,
    journal: Option<Arc<BrokerJournal>>,
    /// The cluster link and its tasks (not started yet), when `cluster.nats_url` is set.
    cluster: Option<(ferry_cluster::Cluster, ferry_cluster::LinkTasks)>,
}

/// This node's name in the cluster: `cluster.node_name`, else the host name and the
/// WebSocket port.
fn node_name(settings: &Settings) -> String {
    if let Some(name) = &settings.cluster.node_name {
        return name.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "ferry".into());
    format!("{host}-{}", settings.listeners.ws.bind.port())
}

/// What the journal holds beside retained messages, for the adapters to take back.
#[derive(Default)]
struct Stored {
    /// Persistent sessions and delayed wills, for the MQTT adapter.
    sessions: Vec<ferry_core::RestoredSession>,
    wills: Vec<ferry_core::RestoredWill>,
    /// STOMP queues, for the STOMP adapter.
    queues: Vec<ferry_core::RestoredQueue>,
}

/// Opens the journal in `storage.dir` and restores what it holds into `retained`;
/// returns it with the rest of what it holds.
fn open_storage(settings: &Settings, retained: &MemoryRetained<Arc<ferry_core::Message>>) -> anyhow::Result<(Arc<BrokerJournal>, Stored)> {
    let dir = &settings.storage.dir;
    let (journal, restored) = BrokerJournal::open(settings.storage.store_config(), retained).with_context(|| {
        format!(
            "cannot open storage in {} (storage.dir); `ferry storage inspect {0}` shows what is there, `ferry storage repair {0}` moves a damaged part aside",
            dir.display()
        )
    })?;
    if restored.recovery.truncated_bytes > 0 {
        warn!(
            dir = %dir.display(),
            bytes = restored.recovery.truncated_bytes,
            "storage: a torn record at the end of the log (a crash mid-write) was cut off; nothing acknowledged was in it"
        );
    }
    info!(
        dir = %dir.display(),
        retained = restored.retained,
        expired = restored.expired,
        sessions = restored.session_counts.sessions,
        session_messages = restored.session_counts.messages,
        sessions_expired = restored.sessions_dropped.sessions,
        messages_expired = restored.sessions_dropped.messages,
        queues = restored.queues.len(),
        queue_messages = restored.queue_messages,
        queue_messages_expired = restored.queue_messages_expired,
        snapshot_records = restored.recovery.snapshot_records,
        log_records = restored.recovery.log_records,
        took_ms = u64::try_from(restored.took.as_millis()).unwrap_or(u64::MAX),
        "storage: restored"
    );
    let stored = Stored {
        sessions: restored.sessions,
        wills: restored.wills,
        queues: restored.queues,
    };
    Ok((Arc::new(journal), stored))
}

/// The protocol adapters, sharing one router, the MQTT state that needs ticks, the
/// admin side over them, and the metrics that read them.
fn adapters(settings: &Settings, gate: &Arc<Gatekeeper>) -> anyhow::Result<Wired> {
    let retained = Arc::new(MemoryRetained::with_limits(
        settings.limits.max_retained_messages,
        settings.limits.max_retained_bytes,
    ));
    let opened = settings.storage.enabled.then(|| open_storage(settings, &retained)).transpose()?;
    let (journal, stored) = match opened {
        Some((journal, stored)) => (Some(journal), stored),
        None => (None, Stored::default()),
    };
    let Stored { sessions, wills, queues } = stored;
    let mut router = Router::new(retained);
    if let Some(journal) = &journal {
        router = router.with_journal(journal.clone());
    }
    // Before any session is restored: restored subscriptions are interest too.
    let cluster = match settings.cluster.nats_url {
        Some(_) => {
            Some(ferry_cluster::Cluster::new(settings.cluster.clone(), node_name(settings)).context("invalid [cluster] configuration")?)
        }
        None => None,
    };
    if let Some((link, _)) = &cluster {
        router = router.with_cluster(Arc::new(link.clone()));
    }
    let router = Arc::new(router);
    let parts = CoreParts::new(router.clone(), gate.clone());
    let mqtt = Arc::new(MqttAdapter::new(parts.clone(), settings.mqtt.clone()));
    let stomp = Arc::new(StompAdapter::new(parts, settings.stomp.clone()));
    let mut registry = Registry::new();
    let broker = mqtt.broker();
    // In a cluster, MQTT client ids are claimed there, and sessions handed between nodes.
    if let Some((link, _)) = &cluster {
        broker.set_ownership(Arc::new(link.clone()));
        link.set_handoff(broker.clone());
    }
    if !sessions.is_empty() {
        let (count, messages) = broker.restore(sessions, Instant::now(), std::time::SystemTime::now());
        info!(sessions = count, messages, "storage: persistent MQTT sessions taken back");
    }
    if !wills.is_empty() {
        let count = broker.restore_wills(wills, Instant::now(), std::time::SystemTime::now());
        info!(wills = count, "storage: delayed wills scheduled again");
    }
    let stomp_broker = stomp.broker();
    if !queues.is_empty() {
        let (count, messages) = (queues.len(), stomp_broker.queues.restore(queues));
        info!(queues = count, messages, "storage: STOMP queues taken back");
    }
    registry.register(mqtt);
    registry.register(stomp);
    let connections = Arc::new(Connections::new());
    let admin = ferry_admin::Admin::new(ferry_admin::AdminParts {
        router: router.clone(),
        connections: connections.clone(),
        gate: gate.clone(),
        sources: Arc::new(admin::AdapterSources {
            mqtt: broker.clone(),
            stomp: stomp_broker.clone(),
        }),
        settings: settings.admin.clone(),
        http_api: settings.http_api.clone(),
        admin_bind: settings.listeners.admin.bind,
        started: Instant::now(),
    })
    .context("cannot start the admin API")?;
    let mut metrics = Metrics::default();
    metrics.register_collector(Box::new(metrics::BrokerCollector {
        router: router.clone(),
        journal: journal.clone(),
        mqtt: broker.clone(),
        stomp: stomp_broker,
        gate: gate.clone(),
        admin: admin.clone(),
        cluster: cluster.as_ref().map(|(link, _)| link.clone()),
    }));
    Ok(Wired {
        registry,
        mqtt: broker,
        metrics,
        admin,
        connections,
        router,
        journal,
        cluster,
    })
}

/// The HTTP routes: `/healthz` everywhere, `/metrics` and HTTP messaging on the public
/// listeners, the admin API and dashboard on the admin listener.
fn http_routes(
    metrics: &Arc<Metrics>,
    admin: &Arc<ferry_admin::Admin>,
    journal: Option<&Arc<BrokerJournal>>,
    cluster: Option<&ferry_cluster::Cluster>,
    settings: &Settings,
) -> HttpRouter {
    let mut health = HealthRoutes::default();
    if let Some(journal) = journal {
        let journal = journal.clone();
        health = health.with_check(Arc::new(move || journal.store().health().map_err(|p| p.to_string())));
    }
    if let Some(cluster) = cluster {
        // Cut off from NATS, the node still serves its own clients: degraded, not down,
        // so that a load balancer does not take every node out when NATS goes.
        let cluster = cluster.clone();
        health = health.with_warning(Arc::new(move || cluster.health()));
    }
    let health = Arc::new(health);
    let mut routes = HttpRouter::new();
    routes.add("ws", health.clone());
    routes.add("ws", Arc::new(MetricsRoutes::new(metrics.clone())));
    routes.add("ws", admin.messaging_routes());
    if settings.listeners.admin.enabled {
        routes.add("admin", health);
        for r in admin.admin_routes() {
            routes.add("admin", r);
        }
    }
    routes
}

/// The listeners as the admin API shows them.
fn listener_infos(bound: &[(&'static str, std::net::SocketAddr)]) -> Vec<ferry_admin::ListenerInfo> {
    bound
        .iter()
        .map(|&(name, address)| ferry_admin::ListenerInfo {
            name,
            address,
            protocol: match name {
                "ws" | "wss" => "MQTT and STOMP over WebSocket; HTTP publish and events",
                "mqtt" | "mqtts" => "MQTT",
                "stomp" | "stomps" => "STOMP",
                "admin" => "admin API and dashboard",
                _ => "",
            },
            tls: matches!(name, "wss" | "mqtts" | "stomps"),
        })
        .collect()
}

/// Snapshots of the durable state when the log has grown enough, checked every
/// `storage.snapshot_check_interval`, written on a blocking thread.
async fn snapshots(journal: Arc<BrokerJournal>, router: Arc<Router>, every: Duration) {
    let mut every = tokio::time::interval(every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let (journal, router) = (journal.clone(), router.clone());
        match tokio::task::spawn_blocking(move || journal.snapshot_if_due(&router)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "storage: snapshot failed"),
            Err(e) => warn!(error = %e, "storage: snapshot task failed"),
        }
    }
}

/// Time-driven work of the adapters (session expiry, delayed wills), once a second.
async fn tick(mqtt: Arc<MqttShared>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        mqtt.tick(Instant::now());
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    // Listen for signals before anyone can see the broker up.
    let signals = Signals::new()?;
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let gate = security::gatekeeper(&settings, tokio::runtime::Handle::current())?;
    let Wired {
        registry,
        mqtt,
        metrics,
        admin,
        connections,
        router,
        journal,
        cluster,
    } = adapters(&settings, &gate)?;
    let metrics = Arc::new(metrics);
    let routes = http_routes(&metrics, &admin, journal.as_ref(), cluster.as_ref().map(|(c, _)| c), &settings);
    let server = Server::start(ServerParts {
        config: settings.transport(),
        registry,
        metrics,
        gate: gate.clone(),
        routes,
        connections,
    })
    .await?;
    admin.set_listeners(listener_infos(server.local_addrs()));
    if let Some((_, addr)) = server.local_addrs().iter().find(|(name, _)| *name == "admin") {
        info!("dashboard at http://{addr}/");
    }
    let cluster_tasks = match cluster {
        Some((link, tasks)) => {
            info!(node = link.node_name(), "cluster: joining");
            tasks.start(router.clone()).await.context("cannot start the cluster link")?
        }
        None => Vec::new(),
    };
    let ticker = tokio::spawn(tick(mqtt));
    let snapshotter = journal
        .clone()
        .map(|j| tokio::spawn(snapshots(j, router.clone(), settings.storage.snapshot_check_interval)));
    let admin_ticker = tokio::spawn(admin::tick(admin.clone()));
    let admin_hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let admin_reloader = tokio::spawn(admin::reload_on_sighup(admin.clone(), admin_hangups));
    let reloader = tokio::spawn(security::reload_on_sighup(gate.clone(), hangups));
    let watcher = settings
        .auth
        .watch_files
        .then(|| tokio::spawn(security::reload_on_change(gate.clone(), settings.auth.watch_interval)));
    info!(version = env!("CARGO_PKG_VERSION"), "ferry started");
    let signal = signals.wait().await;
    info!(signal, grace = ?settings.shutdown.grace_period, "shutting down");
    ticker.abort();
    for t in cluster_tasks {
        t.abort();
    }
    if let Some(s) = snapshotter {
        s.abort();
    }
    admin_ticker.abort();
    admin_reloader.abort();
    reloader.abort();
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    if server.shutdown(settings.shutdown.grace_period).await {
        info!("all connections closed; bye");
    } else {
        warn!("grace period over with connections still open; exiting anyway");
    }
    if let Some(journal) = journal {
        // Everything appended is written before the process goes (the writer thread
        // would be cut off at exit otherwise).
        let store = journal.store();
        match store.wait_durable_timeout(store.last_lsn(), Duration::from_secs(10)) {
            Some(Ok(())) => info!(dir = %settings.storage.dir.display(), "storage: everything on disk"),
            Some(Err(e)) => warn!(error = %e, "storage: poisoned at shutdown"),
            None => warn!("storage: the last writes did not finish in time"),
        }
    }
    drop(router);
    Ok(())
}

/// The signals that stop the broker.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
        })
    }

    /// Wait for SIGTERM or SIGINT; returns its name.
    async fn wait(mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
