//! The NATS link: the [`ClusterLink`] the router calls (non-blocking: it encodes and
//! hands over through bounded channels), and the tasks that do the I/O on one NATS
//! connection: forwarding, interest (subscriptions), receiving, and the retained
//! bucket (writes, and the watch that mirrors it into the router).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv;
use bytes::Bytes;
use ferry_core::{ClaimTicket, ClusterLink, Message, Router, SessionHandoff, SessionOwnership, TopicFilter, TopicName, Wakeup};
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::config::{ClusterConfig, Routing};
use crate::dedup::{Dedup, Seen};
use crate::envelope::{Envelope, Origin};
use crate::ownership::{self, ClaimRequest, Ownership, SubsWrite};
use crate::sessions::{RecordSub, RecordWill};
use crate::subject::{key_topic, topic_key, Subjects};

/// Subjects longer than this are not sent (NATS's control line is 4096 bytes).
const MAX_SUBJECT: usize = 3_800;
/// Retained writes waiting for the bucket; past it they are dropped and counted.
const KV_QUEUE: usize = 16_384;
/// Origin instances the dedup window remembers.
const MAX_ORIGINS: usize = 4_096;

ferry_core::counters! {
    /// The link's counters, per node.
    pub struct ClusterStats {
        sent: Counter("cluster_messages_sent", "Messages published on this node and sent to the cluster"),
        received: Counter("cluster_messages_received", "Messages from other nodes delivered to this node's router"),
        forward_dropped: Counter("cluster_forward_dropped", "Messages not sent to the cluster: cluster.forward_queue full or subject too long"),
        send_errors: Counter("cluster_send_errors", "Messages NATS refused to take (too large, connection closed)"),
        dedup_dropped: Counter("cluster_dedup_dropped", "Second NATS copies of a message (overlapping subscriptions) dropped"),
        own_dropped: Counter("cluster_own_dropped", "Messages from this node's own name that came back, dropped"),
        bad_messages: Counter("cluster_bad_messages", "NATS messages that could not be read (bad subject or envelope), dropped"),
        foreign: Counter("cluster_foreign_messages", "Messages from NATS clients that are not Ferry nodes, delivered as QoS 0"),
        slow_consumer: Counter("cluster_slow_consumer", "Times NATS dropped messages for this node because it read too slowly"),
        subscriptions: Gauge("cluster_nats_subscriptions", "NATS subscriptions this node holds for its sessions' filters"),
        kv_puts: Counter("cluster_kv_puts", "Retained messages written to the cluster's bucket"),
        kv_deletes: Counter("cluster_kv_deletes", "Retained messages deleted from the cluster's bucket"),
        kv_errors: Counter("cluster_kv_errors", "Retained bucket writes that failed or were dropped (NATS down, queue full)"),
        kv_applied: Counter("cluster_kv_applied", "Retained changes from the cluster's bucket applied to this node"),
        connected: Gauge("cluster_connected", "1 while the NATS connection is up"),
        connects: Counter("cluster_connects", "Times the NATS connection came up (the first time and every reconnect)"),
        retained_synced: Gauge("cluster_retained_synced", "1 once the retained mirror caught up with the bucket since the last connect"),
        resync_ms: Gauge("cluster_retained_resync_ms", "How long the last catch-up of the retained mirror took, in milliseconds"),
        claims: Counter("cluster_claims", "Client ids this node's connections claimed in the cluster"),
        claims_refused: Counter("cluster_claims_refused", "Claims of persistent sessions refused (NATS unreachable, bucket errors, timeouts, queue full): CONNACK server unavailable"),
        claims_local: Counter("cluster_claims_local", "Clean sessions that proceeded on this node alone because the cluster could not be asked"),
        takeovers: Counter("cluster_takeovers", "Client ids this node took from another node (take-over requests sent)"),
        takeovers_received: Counter("cluster_takeovers_received", "Take-over requests from other nodes answered by this node"),
        takeovers_unanswered: Counter("cluster_takeovers_unanswered", "Take-overs whose previous owner did not answer in time (dead or cut off)"),
        sessions_moved_in: Counter("cluster_sessions_moved_in", "Sessions another node handed over to this node"),
        handoff_dropped: Counter("cluster_handoff_messages_dropped", "Messages of a handed-over session left out: the answer would exceed NATS's max_payload"),
        session_kv_reads: Counter("cluster_sessions_kv_reads", "Reads of the sessions bucket"),
        session_kv_writes: Counter("cluster_sessions_kv_writes", "Compare-and-set writes to the sessions bucket that succeeded"),
        session_kv_conflicts: Counter("cluster_sessions_kv_conflicts", "Compare-and-set writes to the sessions bucket that lost to another node's write"),
        nodes_dead: Counter("cluster_nodes_dead", "Nodes this node judged dead (no heartbeat for cluster.node_timeout)"),
        wills_published: Counter("cluster_dead_node_wills_published", "Wills of a dead node's clients this node published (it won their records)"),
        fenced: Counter("cluster_sessions_fenced", "Local sessions closed because their record named another node when this one wrote it (a take-over this node missed)"),
        session_kv_errors: Counter("cluster_sessions_kv_errors", "Sessions bucket operations that failed"),
    }
}

/// What the router's thread hands to the forwarding task.
struct Outgoing {
    subject: String,
    payload: Bytes,
}

/// A retained change for the bucket: a value, or a delete.
struct RetainedWrite {
    key: String,
    value: Option<Bytes>,
}

/// An interest change, in the order the router made it.
enum Interest {
    Added(TopicFilter),
    Removed(TopicFilter),
}

pub(crate) struct Shared {
    pub(crate) origin: Origin,
    pub(crate) subjects: Subjects,
    seq: AtomicU64,
    out: mpsc::Sender<Outgoing>,
    kv: mpsc::Sender<RetainedWrite>,
    interest: mpsc::UnboundedSender<Interest>,
    pub(crate) stats: ClusterStats,
    pub(crate) ownership: Ownership,
    /// Why the link is not up, if it is not (for `/healthz`).
    pub(crate) down: Mutex<Option<String>>,
    synced: AtomicBool,
}

/// This node's link to the cluster: give it to the router with
/// [`Router::with_cluster`], then start its tasks with [`LinkTasks::start`].
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node", &self.shared.origin.name).finish()
    }
}

/// The receiving ends the link's tasks drain, until they are started.
pub struct LinkTasks {
    config: ClusterConfig,
    url: String,
    shared: Arc<Shared>,
    out: mpsc::Receiver<Outgoing>,
    kv: mpsc::Receiver<RetainedWrite>,
    interest: mpsc::UnboundedReceiver<Interest>,
    claims: mpsc::Receiver<ClaimRequest>,
    subs: mpsc::Receiver<SubsWrite>,
}

/// Why the link could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `cluster.nats_url` is unset.
    #[error("cluster.nats_url is not set")]
    NoUrl,
    /// The node name is empty or longer than 255 bytes.
    #[error("cluster.node_name must be 1 to 255 bytes")]
    NodeName,
    /// The credentials file could not be read.
    #[error("cannot read cluster.creds_file {path}: {source}")]
    Credentials {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The NATS client refused the options or the address.
    #[error("cannot connect to NATS: {0}")]
    Connect(#[from] async_nats::ConnectError),
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn instance_id() -> u64 {
    // Unique per process start: the clock's nanoseconds mixed with the process id.
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 40) ^ ((nanos >> 64) as u64);
    mixed.max(1)
}

impl Cluster {
    /// A link for node `node_name` as `config` says; nothing is connected until
    /// [`LinkTasks::start`].
    pub fn new(config: ClusterConfig, node_name: String) -> Result<(Cluster, LinkTasks), ClusterError> {
        let url = config.nats_url.clone().ok_or(ClusterError::NoUrl)?;
        if node_name.is_empty() || node_name.len() > 255 {
            return Err(ClusterError::NodeName);
        }
        let (out_tx, out_rx) = mpsc::channel(config.forward_queue.max(1));
        let (kv_tx, kv_rx) = mpsc::channel(KV_QUEUE);
        let (interest_tx, interest_rx) = mpsc::unbounded_channel();
        let (claims_tx, claims_rx) = mpsc::channel(config.claim_queue.max(1));
        let (subs_tx, subs_rx) = mpsc::channel(config.claim_queue.max(1));
        let shared = Arc::new(Shared {
            origin: Origin {
                name: node_name,
                instance: instance_id(),
            },
            subjects: Subjects::new(&config.subject_prefix),
            seq: AtomicU64::new(0),
            out: out_tx,
            kv: kv_tx,
            interest: interest_tx,
            stats: ClusterStats::default(),
            ownership: Ownership::new(claims_tx, subs_tx, config.claim_timeout),
            down: Mutex::new(Some("not connected to NATS yet".into())),
            synced: AtomicBool::new(false),
        });
        let tasks = LinkTasks {
            config,
            url,
            shared: shared.clone(),
            out: out_rx,
            kv: kv_rx,
            interest: interest_rx,
            claims: claims_rx,
            subs: subs_rx,
        };
        Ok((Cluster { shared }, tasks))
    }

    /// The link's counters.
    pub fn stats(&self) -> &ClusterStats {
        &self.shared.stats
    }

    /// The adapter that hands a session over when another node takes its client id
    /// (set once, before the link starts; a second call is ignored).
    pub fn set_handoff(&self, handoff: Arc<dyn SessionHandoff>) {
        let _ = self.shared.ownership.handoff.set(handoff);
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.shared.origin.name
    }

    /// `Err(reason)` while the node is cut off from the cluster (NATS unreachable) or
    /// its retained mirror has not caught up since the last connect.
    pub fn health(&self) -> Result<(), String> {
        if let Some(reason) = self.shared.down.lock().clone() {
            return Err(format!("cluster: {reason}"));
        }
        if !self.shared.synced.load(Ordering::Relaxed) {
            return Err("cluster: retained messages not synchronised yet".into());
        }
        Ok(())
    }
}

impl SessionOwnership for Cluster {
    fn claim(&self, client_id: &str, persistent: bool, will: Option<(Arc<Message>, Duration)>, wakeup: Wakeup) -> ClaimTicket {
        let s = &self.shared;
        s.stats.claims.fetch_add(1, Ordering::Relaxed);
        let ticket = ClaimTicket::new(wakeup, Instant::now() + s.ownership.claim_timeout);
        if s.down.lock().is_some() {
            ticket.resolve(ownership::without_cluster(s, client_id, persistent, "NATS unreachable"));
            return ticket;
        }
        let request = ClaimRequest {
            client_id: client_id.to_owned(),
            persistent,
            will: will.map(|(m, delay)| RecordWill::new(&m, delay, &s.origin, Instant::now(), unix_ms())),
            ticket: ticket.clone(),
        };
        if s.ownership.tx.try_send(request).is_err() {
            ticket.resolve(ownership::without_cluster(
                s,
                client_id,
                persistent,
                "too many claims waiting (cluster.claim_queue)",
            ));
        }
        ticket
    }

    fn subscriptions_changed(&self, client_id: &str, subscriptions: Vec<(String, ferry_core::SubscribeOptions)>) {
        let write = SubsWrite::Subs {
            client_id: client_id.to_owned(),
            subs: subscriptions.iter().map(|(f, o)| RecordSub::new(f, o)).collect(),
        };
        if self.shared.ownership.subs_tx.try_send(write).is_err() {
            self.shared.stats.session_kv_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn connection_ended(&self, client_id: &str, epoch: u64) {
        if epoch == 0 {
            return;
        }
        let write = SubsWrite::Ended {
            client_id: client_id.to_owned(),
            epoch,
        };
        if self.shared.ownership.subs_tx.try_send(write).is_err() {
            self.shared.stats.session_kv_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl ClusterLink for Cluster {
    fn interest_added(&self, filter: &TopicFilter) {
        let _ = self.shared.interest.send(Interest::Added(filter.clone()));
    }

    fn interest_removed(&self, filter: &TopicFilter) {
        let _ = self.shared.interest.send(Interest::Removed(filter.clone()));
    }

    fn published(&self, message: &Arc<Message>, now: Instant) {
        let s = &self.shared;
        let seq = s.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let payload = Envelope::encode_message(&s.origin, seq, unix_ms(), message, now);
        if message.retain {
            let write = RetainedWrite {
                key: topic_key(message.topic.as_str()),
                value: (!message.payload.is_empty()).then(|| payload.clone()),
            };
            if s.kv.try_send(write).is_err() {
                s.stats.kv_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        let subject = s.subjects.topic(&message.topic);
        if subject.len() > MAX_SUBJECT || s.out.try_send(Outgoing { subject, payload }).is_err() {
            s.stats.forward_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn retained_removed(&self, topic: &TopicName) {
        let write = RetainedWrite {
            key: topic_key(topic.as_str()),
            value: None,
        };
        if self.shared.kv.try_send(write).is_err() {
            self.shared.stats.kv_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl LinkTasks {
    /// Connects to NATS (in the background: the node runs while NATS is unreachable,
    /// and the client reconnects for ever) and starts the link's tasks, which deliver
    /// what other nodes send into `router`. Returns the tasks' handles.
    pub async fn start(self, router: Arc<Router>) -> Result<Vec<JoinHandle<()>>, ClusterError> {
        let LinkTasks {
            config,
            url,
            shared,
            out,
            kv,
            interest,
            claims,
            subs,
        } = self;
        let (connected_tx, connected_rx) = watch::channel(0u64);
        let events = shared.clone();
        let mut options = async_nats::ConnectOptions::new()
            .name(&shared.origin.name)
            .no_echo()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| Duration::from_millis(100 * (attempts.min(20) as u64)))
            .event_callback(move |event| {
                let events = events.clone();
                let connected_tx = connected_tx.clone();
                async move { on_event(&events, &connected_tx, event) }
            });
        if let (Some(user), Some(password)) = (&config.user, &config.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &config.token {
            options = options.token(token.clone());
        }
        if let Some(path) = &config.creds_file {
            options = options.credentials_file(path).await.map_err(|source| ClusterError::Credentials {
                path: path.display().to_string(),
                source,
            })?;
        }
        if let Some(ca) = &config.tls_ca_file {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        let addrs: Vec<String> = url.split(',').map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()).collect();
        let client = options
            .connect(addrs.iter().map(String::as_str).collect::<Vec<_>>().as_slice())
            .await?;
        info!(node = %shared.origin.name, nats = %url, routing = ?config.routing, "cluster: link started");
        let receive = Arc::new(Receive {
            shared: shared.clone(),
            router: router.clone(),
            dedup: Mutex::new(Dedup::new(MAX_ORIGINS)),
        });
        let (store_tx, store_rx) = watch::channel(None);
        let (sessions_tx, sessions_rx) = watch::channel(None);
        Ok(vec![
            tokio::spawn(ownership::sessions_bucket(
                client.clone(),
                config.clone(),
                connected_rx.clone(),
                sessions_tx,
            )),
            tokio::spawn(ownership::subscriptions_writer(
                shared.clone(),
                config.clone(),
                sessions_rx.clone(),
                subs,
            )),
            tokio::spawn(ownership::claims(
                client.clone(),
                shared.clone(),
                config.clone(),
                sessions_rx.clone(),
                claims,
            )),
            tokio::spawn(ownership::control(client.clone(), shared.clone())),
            tokio::spawn(crate::liveness::liveness(
                client.clone(),
                shared.clone(),
                router.clone(),
                config.clone(),
                connected_rx.clone(),
                sessions_rx,
            )),
            tokio::spawn(forward(client.clone(), shared.clone(), out)),
            tokio::spawn(interest_task(client.clone(), receive, config.routing, interest)),
            tokio::spawn(retained_writer(shared.clone(), store_rx, kv)),
            tokio::spawn(retained_mirror(client, shared, router, config, connected_rx, store_tx)),
        ])
    }
}

fn on_event(shared: &Shared, connected: &watch::Sender<u64>, event: async_nats::Event) {
    match event {
        async_nats::Event::Connected => {
            shared.stats.connected.store(1, Ordering::Relaxed);
            shared.stats.connects.fetch_add(1, Ordering::Relaxed);
            *shared.down.lock() = None;
            shared.synced.store(false, Ordering::Relaxed);
            connected.send_modify(|n| *n += 1);
            info!("cluster: connected to NATS");
        }
        async_nats::Event::Disconnected => {
            shared.stats.connected.store(0, Ordering::Relaxed);
            *shared.down.lock() = Some("NATS unreachable; serving local clients only".into());
            warn!("cluster: disconnected from NATS; local clients are still served, cross-node delivery stops until it is back");
        }
        async_nats::Event::SlowConsumer(sid) => {
            shared.stats.slow_consumer.fetch_add(1, Ordering::Relaxed);
            warn!(sid, "cluster: NATS dropped messages for a subscription this node read too slowly");
        }
        other => debug!(event = %other, "cluster: NATS event"),
    }
}

/// Sends what the router handed over, in order, on the one connection (NATS keeps one
/// publisher's order).
async fn forward(client: async_nats::Client, shared: Arc<Shared>, mut rx: mpsc::Receiver<Outgoing>) {
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, 256).await > 0 {
        for m in batch.drain(..) {
            match client.publish(m.subject, m.payload).await {
                Ok(()) => shared.stats.sent.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    debug!(error = %e, "cluster: publish refused");
                    shared.stats.send_errors.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
    }
}

/// What every receiving subscription shares.
struct Receive {
    shared: Arc<Shared>,
    router: Arc<Router>,
    dedup: Mutex<Dedup>,
}

impl Receive {
    /// One NATS message from another node (or a foreign NATS client): untrusted input.
    fn handle(&self, subject: &str, payload: Bytes) {
        let stats = &self.shared.stats;
        let Ok(topic) = self.shared.subjects.parse(subject) else {
            stats.bad_messages.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let envelope = match Envelope::decode(payload) {
            Ok(e) => e,
            Err(e) => {
                debug!(error = %e, subject, "cluster: unreadable envelope dropped");
                stats.bad_messages.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        match &envelope.origin {
            Some(origin) if origin.name == self.shared.origin.name => {
                stats.own_dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Some(origin) => {
                if self.dedup.lock().check(origin, envelope.seq) == Seen::Duplicate {
                    stats.dedup_dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            None => {
                stats.foreign.fetch_add(1, Ordering::Relaxed);
            }
        }
        let now = Instant::now();
        let Some(message) = envelope.into_message(topic, now, unix_ms()) else {
            return;
        };
        stats.received.fetch_add(1, Ordering::Relaxed);
        self.router.deliver_remote(Arc::new(message), now);
    }
}

/// Reads one NATS subscription until it is dropped.
async fn read(mut sub: async_nats::Subscriber, receive: Arc<Receive>) {
    while let Some(m) = sub.next().await {
        receive.handle(m.subject.as_str(), m.payload);
    }
}

/// Keeps one NATS subscription per distinct subject the local filters need (counted),
/// or one for everything in broadcast mode.
async fn interest_task(client: async_nats::Client, receive: Arc<Receive>, routing: Routing, mut rx: mpsc::UnboundedReceiver<Interest>) {
    let shared = receive.shared.clone();
    let mut held: HashMap<String, (usize, JoinHandle<()>)> = HashMap::new();
    if routing == Routing::Broadcast {
        let all = shared.subjects.all();
        match client.subscribe(all.clone()).await {
            Ok(sub) => {
                held.insert(all, (1, tokio::spawn(read(sub, receive.clone()))));
            }
            Err(e) => warn!(error = %e, "cluster: cannot subscribe to every message"),
        }
        shared.stats.subscriptions.store(held.len() as u64, Ordering::Relaxed);
    }
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, 256).await > 0 {
        if routing == Routing::Broadcast {
            batch.clear();
            continue;
        }
        for change in batch.drain(..) {
            match change {
                Interest::Added(filter) => {
                    for subject in shared.subjects.filter(&filter) {
                        if let Some((count, _)) = held.get_mut(&subject) {
                            *count += 1;
                            continue;
                        }
                        match client.subscribe(subject.clone()).await {
                            Ok(sub) => {
                                held.insert(subject, (1, tokio::spawn(read(sub, receive.clone()))));
                            }
                            Err(e) => warn!(error = %e, subject, "cluster: cannot subscribe"),
                        }
                    }
                }
                Interest::Removed(filter) => {
                    for subject in shared.subjects.filter(&filter) {
                        if let Some((count, _)) = held.get_mut(&subject) {
                            *count -= 1;
                            if *count == 0 {
                                if let Some((_, reader)) = held.remove(&subject) {
                                    // Dropping the subscription unsubscribes it.
                                    reader.abort();
                                }
                            }
                        }
                    }
                }
            }
        }
        // The server has the subscriptions once it answers a PING sent after them.
        if let Err(e) = client.flush().await {
            debug!(error = %e, "cluster: flush after subscribing failed");
        }
        shared.stats.subscriptions.store(held.len() as u64, Ordering::Relaxed);
    }
}

/// Writes retained changes to the bucket, in order, once it is there.
async fn retained_writer(shared: Arc<Shared>, mut store: watch::Receiver<Option<kv::Store>>, mut rx: mpsc::Receiver<RetainedWrite>) {
    while let Some(write) = rx.recv().await {
        let kv = match store.wait_for(Option::is_some).await {
            Ok(kv) => kv.clone(),
            Err(_) => return,
        };
        let Some(kv) = kv else { continue };
        let result = match write.value {
            Some(value) => kv
                .put(&write.key, value)
                .await
                .map(|_| &shared.stats.kv_puts)
                .map_err(|e| e.to_string()),
            None => kv
                .delete(&write.key)
                .await
                .map(|()| &shared.stats.kv_deletes)
                .map_err(|e| e.to_string()),
        };
        match result {
            Ok(counter) => {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                shared.stats.kv_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, key = write.key, "cluster: retained message not written to the cluster's bucket");
            }
        }
    }
}

/// Opens (or creates) a bucket. The stream is created here with the configuration a
/// KV bucket has, rather than through `create_key_value`, which first asks for the
/// account's info in a form nats-server 2.9 does not answer in.
pub(crate) async fn open_bucket(
    client: &async_nats::Client,
    bucket: &str,
    replicas: usize,
    description: &str,
    max_age: Duration,
) -> Result<kv::Store, String> {
    use async_nats::jetstream::stream;
    let js = async_nats::jetstream::new(client.clone());
    if let Ok(store) = js.get_key_value(bucket).await {
        return Ok(store);
    }
    let created = js
        .create_stream(stream::Config {
            name: format!("KV_{bucket}"),
            description: Some(description.into()),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            storage: stream::StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            deny_purge: false,
            allow_direct: true,
            num_replicas: replicas.max(1),
            max_age,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await;
    if let Err(e) = created {
        // Another node may have created it meanwhile: try to open it once more.
        debug!(error = %e, bucket, "cluster: creating a bucket failed");
    }
    js.get_key_value(bucket).await.map_err(|e| e.to_string())
}

/// Mirrors the retained bucket into the router: on every connect, a watch that starts
/// with the last value of every key (a full resynchronisation), then follows changes
/// (`watch_with_history`: `watch_all` would deliver new changes only).
async fn retained_mirror(
    client: async_nats::Client,
    shared: Arc<Shared>,
    router: Arc<Router>,
    config: ClusterConfig,
    mut connected: watch::Receiver<u64>,
    store_tx: watch::Sender<Option<kv::Store>>,
) {
    loop {
        if connected.wait_for(|n| *n > 0).await.is_err() {
            return;
        }
        connected.mark_unchanged();
        let started = Instant::now();
        let store = match open_bucket(
            &client,
            &config.retained_bucket,
            config.retained_replicas,
            "Ferry's retained messages",
            Duration::ZERO,
        )
        .await
        {
            Ok(store) => store,
            Err(e) => {
                warn!(error = %e, bucket = config.retained_bucket, "cluster: retained bucket not available; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        store_tx.send_replace(Some(store.clone()));
        let mut watch = match store.watch_with_history(">").await {
            Ok(w) => w,
            Err(e) => {
                warn!(error = %e, "cluster: cannot watch the retained bucket; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Before the catch-up: what this node holds that the bucket may no longer have.
        let before: HashSet<TopicName> = router.retained_topics().into_iter().filter(|t| !t.is_dollar()).collect();
        let mut seen: HashSet<TopicName> = HashSet::new();
        let mut synced = false;
        if store.status().await.map(|s| s.values() == 0).unwrap_or(false) {
            finish_sync(&shared, &router, &before, &seen, started);
            synced = true;
        }
        loop {
            tokio::select! {
                entry = watch.next() => {
                    let entry = match entry {
                        Some(Ok(entry)) => entry,
                        Some(Err(e)) => {
                            warn!(error = %e, "cluster: retained watch failed; starting again");
                            break;
                        }
                        None => break,
                    };
                    let caught_up = entry.delta == 0 || entry.seen_current;
                    if let Some(topic) = apply(&shared, &router, entry) {
                        seen.insert(topic);
                    }
                    if !synced && caught_up {
                        finish_sync(&shared, &router, &before, &seen, started);
                        synced = true;
                    }
                }
                changed = connected.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    debug!("cluster: reconnected; resynchronising the retained mirror");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Applies one bucket entry; returns its topic.
fn apply(shared: &Shared, router: &Router, entry: kv::Entry) -> Option<TopicName> {
    let Ok(topic) = key_topic(&entry.key) else {
        shared.stats.bad_messages.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    let message = match entry.operation {
        kv::Operation::Delete | kv::Operation::Purge => None,
        kv::Operation::Put => match Envelope::decode(entry.value) {
            Ok(envelope) => {
                let mut envelope = envelope;
                envelope.retain = true;
                envelope.into_message(topic.clone(), Instant::now(), unix_ms()).map(Arc::new)
            }
            Err(e) => {
                debug!(error = %e, key = entry.key, "cluster: unreadable retained value ignored");
                shared.stats.bad_messages.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        },
    };
    let present = message.is_some();
    match router.retained_apply(&topic, message) {
        Ok(()) => {
            shared.stats.kv_applied.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => warn!(error = %e, topic = topic.as_str(), "cluster: retained change from the cluster not kept"),
    }
    present.then_some(topic)
}

/// The mirror caught up: what this node held before and the bucket does not have any
/// more (deleted while this node was away) goes.
fn finish_sync(shared: &Shared, router: &Router, before: &HashSet<TopicName>, seen: &HashSet<TopicName>, started: Instant) {
    let mut removed = 0;
    for topic in before.difference(seen) {
        if router.retained_apply(topic, None).is_ok() {
            removed += 1;
        }
    }
    let took = started.elapsed();
    shared
        .stats
        .resync_ms
        .store(u64::try_from(took.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    shared.synced.store(true, Ordering::Relaxed);
    info!(
        retained = seen.len(),
        removed,
        took_ms = took.as_millis() as u64,
        "cluster: retained messages synchronised"
    );
}
