//! Liveness and a dead node's wills: every node writes a heartbeat into the nodes
//! bucket and follows the others'; one not heard of for `cluster.node_timeout` is
//! dead. Every live node then goes through the session records naming it and takes
//! each that holds a will by compare-and-set (owner `orphan:<node>`): the winner alone
//! publishes the will, after its delay.
//!
//! nats-server 2.9 leaves no marker when a heartbeat ages out of the bucket, so death
//! is judged by staleness as this node saw it, and only while this node has been
//! connected for a whole `node_timeout` (a node cut off itself sees everyone as stale).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use bytes::Bytes;
use ferry_core::Router;
use futures_util::StreamExt;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::config::ClusterConfig;
use crate::link::{open_bucket, unix_ms, Shared};
use crate::sessions::{client_key, Record};
use crate::subject::decode_level;

/// Writes this node's heartbeat, follows the others', and reaps the dead.
pub(crate) async fn liveness(
    client: async_nats::Client,
    shared: Arc<Shared>,
    router: Arc<Router>,
    config: ClusterConfig,
    mut connected: watch::Receiver<u64>,
    sessions: watch::Receiver<Option<kv::Store>>,
) {
    let own = client_key(&shared.origin.name);
    let interval = config.heartbeat_interval.max(Duration::from_millis(10));
    loop {
        if connected.wait_for(|n| *n > 0).await.is_err() {
            return;
        }
        connected.mark_unchanged();
        let max_age = config.node_timeout.max(interval) * 2;
        let nodes = match open_bucket(
            &client,
            &config.nodes_bucket,
            config.sessions_replicas,
            "Ferry's node heartbeats",
            max_age,
        )
        .await
        {
            Ok(nodes) => nodes,
            Err(e) => {
                warn!(error = %e, bucket = config.nodes_bucket, "cluster: nodes bucket not available; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut watch = match nodes.watch_all().await {
            Ok(w) => w,
            Err(e) => {
                warn!(error = %e, "cluster: cannot watch the nodes bucket; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let since = Instant::now();
        let mut seen: HashMap<String, Instant> = HashMap::new();
        let mut tick = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let beat = Bytes::from(shared.origin.instance.to_string());
                    if let Err(e) = nodes.put(&own, beat).await {
                        debug!(error = %e, "cluster: heartbeat not written");
                    }
                    let now = Instant::now();
                    if shared.down.lock().is_some() || now.duration_since(since) < config.node_timeout {
                        // Cut off, or just back: what this node did not see says nothing.
                        seen.values_mut().for_each(|at| *at = now);
                        continue;
                    }
                    let dead: Vec<String> = seen
                        .iter()
                        .filter(|(_, at)| now.duration_since(**at) > config.node_timeout)
                        .map(|(n, _)| n.clone())
                        .collect();
                    for node in dead {
                        seen.remove(&node);
                        shared.stats.nodes_dead.fetch_add(1, Ordering::Relaxed);
                        info!(node, "cluster: node not heard of for cluster.node_timeout: dead; publishing its clients' wills");
                        let store = sessions.borrow().clone();
                        if let Some(kv) = store {
                            tokio::spawn(reap(shared.clone(), router.clone(), kv, node));
                        }
                    }
                }
                entry = watch.next() => {
                    match entry {
                        Some(Ok(e)) if e.operation == kv::Operation::Put && e.key != own => {
                            if let Ok(node) = decode_level(&e.key) {
                                seen.insert(node, Instant::now());
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    }
                }
                changed = connected.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

/// Takes the records of `dead` that hold a will (compare-and-set, so one node wins
/// each) and publishes each will won after its delay.
async fn reap(shared: Arc<Shared>, router: Arc<Router>, kv: kv::Store, dead: String) {
    let stats = &shared.stats;
    let mut keys = match kv.keys().await {
        Ok(keys) => keys,
        Err(e) => {
            warn!(error = %e, node = dead, "cluster: cannot list the session records; the dead node's wills are not published");
            return;
        }
    };
    while let Some(key) = keys.next().await {
        let Ok(key) = key else { break };
        let Ok(Some(entry)) = kv.entry(key.clone()).await else { continue };
        stats.session_kv_reads.fetch_add(1, Ordering::Relaxed);
        if entry.operation != kv::Operation::Put {
            continue;
        }
        let Ok(mut record) = Record::decode(&entry.value) else { continue };
        if record.owner != dead {
            continue;
        }
        let Some(will) = record.will.take() else { continue };
        record.owner = format!("orphan:{dead}");
        record.epoch += 1;
        if kv.update(&key, record.encode(), entry.revision).await.is_err() {
            // Another node took it (or the bucket failed): not this node's will.
            stats.session_kv_conflicts.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        stats.session_kv_writes.fetch_add(1, Ordering::Relaxed);
        let (router, shared) = (router.clone(), shared.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(will.delay_s)).await;
            match will.message(Instant::now(), unix_ms()) {
                Some(message) => {
                    shared.stats.wills_published.fetch_add(1, Ordering::Relaxed);
                    info!(topic = will.topic, "cluster: a dead node's client's will published");
                    router.publish(Arc::new(message), Instant::now());
                }
                None => debug!(topic = will.topic, "cluster: a dead node's will was unreadable or expired"),
            }
        });
    }
}
