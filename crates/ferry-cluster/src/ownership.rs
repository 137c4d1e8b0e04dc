//! Session ownership, the I/O: claiming a client id in the sessions bucket by
//! compare-and-set, asking its previous owner to hand the session over, and answering
//! other nodes' take-over requests.
//!
//! The old owner learns of a take-over by a NATS request to its control subject, not
//! by watching the bucket: the request carries the answer back (the session) to the
//! one node that needs it, a dead owner shows at once as "no responders" (or the
//! timeout), and no node has to follow every client id's record.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use ferry_core::{ClaimOutcome, ClaimTicket, MovedSession, SessionHandoff};
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::config::ClusterConfig;
use crate::link::{open_bucket, unix_ms, Shared};
use crate::sessions::{client_key, decode_answer, decode_request, encode_answer, encode_request, Record, RecordSub, RecordWill};

/// One claim handed from a connection's task to the link.
pub(crate) struct ClaimRequest {
    pub(crate) client_id: String,
    pub(crate) persistent: bool,
    pub(crate) will: Option<RecordWill>,
    pub(crate) ticket: ClaimTicket,
}

/// A change to a record this node owns.
pub(crate) enum SubsWrite {
    /// A persistent session's subscriptions.
    Subs { client_id: String, subs: Vec<RecordSub> },
    /// The connection of the claim at `epoch` ended: its will is not the cluster's to
    /// publish any more.
    Ended { client_id: String, epoch: u64 },
}

impl SubsWrite {
    fn client_id(&self) -> &str {
        match self {
            SubsWrite::Subs { client_id, .. } | SubsWrite::Ended { client_id, .. } => client_id,
        }
    }
}

/// What claims and take-overs share inside the link.
pub(crate) struct Ownership {
    /// Claims waiting for the link.
    pub(crate) tx: mpsc::Sender<ClaimRequest>,
    /// Subscription changes waiting to be written to the records.
    pub(crate) subs_tx: mpsc::Sender<SubsWrite>,
    /// Claims this node won recently, by client id: a take-over request that comes
    /// before the connection acted on its outcome revokes it.
    won: Mutex<HashMap<String, (ClaimTicket, Instant)>>,
    /// The adapter that hands sessions over (set by the binary).
    pub(crate) handoff: std::sync::OnceLock<Arc<dyn SessionHandoff>>,
    pub(crate) claim_timeout: Duration,
}

impl Ownership {
    pub(crate) fn new(tx: mpsc::Sender<ClaimRequest>, subs_tx: mpsc::Sender<SubsWrite>, claim_timeout: Duration) -> Self {
        Self {
            tx,
            subs_tx,
            won: Mutex::new(HashMap::new()),
            handoff: std::sync::OnceLock::new(),
            claim_timeout,
        }
    }

    fn won(&self, client_id: &str, ticket: &ClaimTicket) {
        let now = Instant::now();
        let keep = self.claim_timeout * 2;
        let mut won = self.won.lock();
        won.retain(|_, (_, at)| now.duration_since(*at) < keep);
        won.insert(client_id.to_owned(), (ticket.clone(), now));
    }

    fn revoke(&self, client_id: &str) {
        let ticket = self.won.lock().remove(client_id);
        if let Some((ticket, _)) = ticket {
            ticket.revoke();
        }
    }
}

/// What a claim without the cluster comes to: a clean session proceeds on this node
/// alone, a persistent one is refused.
pub(crate) fn without_cluster(shared: &Shared, client_id: &str, persistent: bool, why: &str) -> ClaimOutcome {
    if persistent {
        shared.stats.claims_refused.fetch_add(1, Ordering::Relaxed);
        info!(client = client_id, why, "cluster: persistent session refused (server unavailable)");
        ClaimOutcome::Unavailable(why.to_owned())
    } else {
        shared.stats.claims_local.fetch_add(1, Ordering::Relaxed);
        info!(client = client_id, why, "cluster: clean session proceeds on this node alone");
        ClaimOutcome::Owned { moved: None, epoch: 0 }
    }
}

/// Opens the sessions bucket on every connect, for the claims.
pub(crate) async fn sessions_bucket(
    client: async_nats::Client,
    config: ClusterConfig,
    mut connected: watch::Receiver<u64>,
    store_tx: watch::Sender<Option<kv::Store>>,
) {
    loop {
        if connected.wait_for(|n| *n > 0).await.is_err() {
            return;
        }
        connected.mark_unchanged();
        match open_bucket(
            &client,
            &config.sessions_bucket,
            config.sessions_replicas,
            "Ferry's session ownership",
            Duration::ZERO,
        )
        .await
        {
            Ok(store) => {
                store_tx.send_replace(Some(store));
                if connected.changed().await.is_err() {
                    return;
                }
            }
            Err(e) => {
                warn!(error = %e, bucket = config.sessions_bucket, "cluster: sessions bucket not available; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Takes claims from connections and runs each in its own task.
pub(crate) async fn claims(
    client: async_nats::Client,
    shared: Arc<Shared>,
    config: ClusterConfig,
    store: watch::Receiver<Option<kv::Store>>,
    mut rx: mpsc::Receiver<ClaimRequest>,
) {
    let config = Arc::new(config);
    while let Some(request) = rx.recv().await {
        tokio::spawn(claim(client.clone(), shared.clone(), config.clone(), store.clone(), request));
    }
}

async fn claim(
    client: async_nats::Client,
    shared: Arc<Shared>,
    config: Arc<ClusterConfig>,
    mut store: watch::Receiver<Option<kv::Store>>,
    request: ClaimRequest,
) {
    let claimed = async {
        // Just after a (re)connect the bucket may still be opening.
        let kv = match store.wait_for(Option::is_some).await {
            Ok(kv) => kv.clone(),
            Err(_) => None,
        };
        let Some(kv) = kv else {
            return Err("sessions bucket not available".to_owned());
        };
        claim_inner(&client, &shared, &config, &kv, &request).await
    };
    let result = match tokio::time::timeout(config.claim_timeout, claimed).await {
        Ok(result) => result,
        Err(_) => Err("claiming the client id took longer than cluster.claim_timeout".to_owned()),
    };
    let outcome = match result {
        Ok((moved, epoch)) => ClaimOutcome::Owned { moved, epoch },
        Err(why) => without_cluster(&shared, &request.client_id, request.persistent, &why),
    };
    request.ticket.resolve(outcome);
}

/// The claim: the record written with this node as owner (compare-and-set), then the
/// previous owner asked to hand over.
async fn claim_inner(
    client: &async_nats::Client,
    shared: &Shared,
    config: &ClusterConfig,
    kv: &kv::Store,
    request: &ClaimRequest,
) -> Result<(Option<MovedSession>, u64), String> {
    let stats = &shared.stats;
    let me = &shared.origin.name;
    let key = client_key(&request.client_id);
    let mut previous = None;
    let mut won = None;
    for _ in 0..config.claim_attempts.max(1) {
        let entry = kv.entry(key.clone()).await.map_err(|e| {
            stats.session_kv_errors.fetch_add(1, Ordering::Relaxed);
            format!("reading the client id's record failed: {e}")
        })?;
        stats.session_kv_reads.fetch_add(1, Ordering::Relaxed);
        let current = entry.filter(|e| e.operation == kv::Operation::Put);
        let old = current.as_ref().and_then(|e| match Record::decode(&e.value) {
            Ok(r) => Some(r),
            Err(err) => {
                warn!(client = request.client_id, error = %err, "cluster: unreadable session record taken as absent");
                None
            }
        });
        let record = Record {
            v: 1,
            owner: me.clone(),
            epoch: old.as_ref().map_or(0, |r| r.epoch) + 1,
            persistent: request.persistent,
            // Kept until this node's session writes its own: should this node die
            // first, the next one still finds them.
            subs: old
                .as_ref()
                .filter(|_| request.persistent)
                .map(|r| r.subs.clone())
                .unwrap_or_default(),
            will: request.will.clone(),
        };
        let written = match current.as_ref().map(|e| e.revision) {
            None => kv
                .create(&key, record.encode())
                .await
                .map(|_| ())
                .map_err(|e| (e.kind() == kv::CreateErrorKind::AlreadyExists, e.to_string())),
            Some(revision) => kv
                .update(&key, record.encode(), revision)
                .await
                .map(|_| ())
                .map_err(|e| (e.kind() == kv::UpdateErrorKind::WrongLastRevision, e.to_string())),
        };
        match written {
            Ok(()) => {
                stats.session_kv_writes.fetch_add(1, Ordering::Relaxed);
                previous = old;
                won = Some(record.epoch);
                break;
            }
            Err((true, _)) => {
                stats.session_kv_conflicts.fetch_add(1, Ordering::Relaxed);
                debug!(
                    client = request.client_id,
                    "cluster: client id record changed meanwhile; reading it again"
                );
            }
            Err((false, e)) => {
                stats.session_kv_errors.fetch_add(1, Ordering::Relaxed);
                return Err(format!("writing the client id's record failed: {e}"));
            }
        }
    }
    let Some(epoch) = won else {
        return Err("the client id's record changed on every attempt".into());
    };
    shared.ownership.won(&request.client_id, &request.ticket);
    let Some(previous) = previous.filter(|r| &r.owner != me) else {
        return Ok((None, epoch));
    };
    let owner = previous.owner.clone();
    stats.takeovers.fetch_add(1, Ordering::Relaxed);
    let subject = shared.subjects.takeover(&owner);
    let asked = client.request(subject, encode_request(&request.client_id, request.persistent));
    let why = match tokio::time::timeout(config.takeover_timeout, asked).await {
        Ok(Ok(answer)) => match decode_answer(answer.payload, Instant::now(), unix_ms()) {
            Ok(moved) => {
                if moved.is_some() {
                    stats.sessions_moved_in.fetch_add(1, Ordering::Relaxed);
                }
                debug!(
                    client = request.client_id,
                    owner,
                    handed_over = moved.is_some(),
                    "cluster: previous owner answered the take-over"
                );
                return Ok((moved, epoch));
            }
            Err(e) => format!("unreadable answer: {e}"),
        },
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer within cluster.takeover_timeout".into(),
    };
    stats.takeovers_unanswered.fetch_add(1, Ordering::Relaxed);
    let subscriptions: Vec<_> = previous.subs.iter().filter_map(RecordSub::options).collect();
    if request.persistent && previous.persistent && !subscriptions.is_empty() {
        info!(
            client = request.client_id,
            owner,
            why,
            subscriptions = subscriptions.len(),
            "cluster: the previous owner of the client id did not hand its session over; resuming from the record's subscriptions (its queued messages are lost)"
        );
        return Ok((
            Some(MovedSession {
                subscriptions,
                deliveries: Vec::new(),
            }),
            epoch,
        ));
    }
    info!(
        client = request.client_id,
        owner, why, "cluster: the previous owner of the client id did not hand its session over; resuming without it"
    );
    Ok((None, epoch))
}

/// Writes persistent sessions' subscriptions into their records, in order, as long
/// as this node owns them (a record another node owns now is left alone).
pub(crate) async fn subscriptions_writer(
    shared: Arc<Shared>,
    config: ClusterConfig,
    store: watch::Receiver<Option<kv::Store>>,
    mut rx: mpsc::Receiver<SubsWrite>,
) {
    let stats = &shared.stats;
    while let Some(write) = rx.recv().await {
        let Some(kv) = store.borrow().clone() else {
            stats.session_kv_errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let written = tokio::time::timeout(config.claim_timeout, write_subs(&shared, &config, &kv, &write)).await;
        if let Err(why) = written.unwrap_or_else(|_| Err("timed out".into())) {
            stats.session_kv_errors.fetch_add(1, Ordering::Relaxed);
            debug!(
                client = write.client_id(),
                why, "cluster: subscriptions not written to the session record"
            );
        }
    }
}

async fn write_subs(shared: &Arc<Shared>, config: &ClusterConfig, kv: &kv::Store, write: &SubsWrite) -> Result<(), String> {
    let stats = &shared.stats;
    let key = client_key(write.client_id());
    for _ in 0..config.claim_attempts.max(1) {
        let entry = kv.entry(key.clone()).await.map_err(|e| e.to_string())?;
        stats.session_kv_reads.fetch_add(1, Ordering::Relaxed);
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(());
        };
        let Ok(mut record) = Record::decode(&entry.value) else {
            return Ok(());
        };
        if record.owner != shared.origin.name {
            // Fencing: another node owns the client id now and this one missed the
            // take-over (cut off meanwhile): the local connection and session go. Not
            // at once: the new owner's take-over request may be on its way, and it
            // should find the session to move.
            if let Some(handoff) = shared.ownership.handoff.get().cloned() {
                let (client_id, owner, wait) = (write.client_id().to_owned(), record.owner.clone(), config.takeover_timeout);
                let shared = shared.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(wait + Duration::from_secs(1)).await;
                    if handoff.hand_off(&client_id).is_some() {
                        shared.stats.fenced.fetch_add(1, Ordering::Relaxed);
                        info!(client = client_id, owner, "cluster: session owned by another node now; closed here");
                    }
                });
            }
            return Ok(());
        }
        match write {
            SubsWrite::Subs { subs, .. } => record.subs.clone_from(subs),
            SubsWrite::Ended { epoch, .. } if *epoch == record.epoch => record.will = None,
            // A later claim of this node's own: its will stays.
            SubsWrite::Ended { .. } => return Ok(()),
        }
        match kv.update(&key, record.encode(), entry.revision).await {
            Ok(_) => {
                stats.session_kv_writes.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                stats.session_kv_conflicts.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("the record changed on every attempt".into())
}

/// Answers take-over requests on this node's control subject: the local connection is
/// closed, its session forgotten here and sent back.
pub(crate) async fn control(client: async_nats::Client, shared: Arc<Shared>) {
    let subject = shared.subjects.takeover(&shared.origin.name);
    let mut sub = match client.subscribe(subject.clone()).await {
        Ok(sub) => sub,
        Err(e) => {
            warn!(error = %e, subject, "cluster: cannot subscribe to take-over requests; other nodes cannot take sessions from this one");
            return;
        }
    };
    while let Some(m) = sub.next().await {
        let (client_id, hand_over) = match decode_request(&m.payload) {
            Ok(r) => r,
            Err(e) => {
                debug!(error = %e, "cluster: unreadable take-over request dropped");
                shared.stats.bad_messages.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        shared.stats.takeovers_received.fetch_add(1, Ordering::Relaxed);
        let ownership = &shared.ownership;
        ownership.revoke(&client_id);
        let session = ownership.handoff.get().and_then(|h| h.hand_off(&client_id));
        info!(
            client = client_id,
            handed_over = session.is_some() && hand_over,
            "cluster: client id taken by another node"
        );
        let Some(reply) = m.reply else { continue };
        let max = client.server_info().max_payload;
        let (answer, left_out) = encode_answer(
            session.as_ref().filter(|_| hand_over),
            &shared.origin,
            Instant::now(),
            unix_ms(),
            max.saturating_sub(1024),
        );
        if left_out > 0 {
            shared.stats.handoff_dropped.fetch_add(left_out as u64, Ordering::Relaxed);
            warn!(
                client = client_id,
                left_out, "cluster: handed-over session too large for one NATS message; messages left out"
            );
        }
        if let Err(e) = client.publish(reply, answer).await {
            warn!(client = client_id, error = %e, "cluster: take-over answer not sent");
        }
    }
}
