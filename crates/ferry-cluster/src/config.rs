//! `[cluster]`: whether this node is in a cluster, and how it reaches NATS.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a node asks NATS for the messages of other nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Routing {
    /// One NATS subscription per distinct filter local sessions hold: a node receives
    /// only what some session on it can match.
    #[default]
    Interest,
    /// One subscription to every message: simpler, more traffic (a debugging aid).
    Broadcast,
}

/// `[cluster]` settings. With `nats_url` unset the node is alone, as without a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The NATS server(s), comma separated (`nats://127.0.0.1:4222`); unset: no cluster.
    pub nats_url: Option<String>,
    /// This node's name in the cluster, unique among the nodes; unset: the host name
    /// and the WebSocket port.
    pub node_name: Option<String>,
    /// NATS user name (with `password`).
    pub user: Option<String>,
    /// NATS password.
    pub password: Option<String>,
    /// NATS token.
    pub token: Option<String>,
    /// A NATS credentials file (JWT and NKey seed).
    pub creds_file: Option<PathBuf>,
    /// CA certificate(s) (PEM) to verify the NATS server with; setting it requires TLS.
    pub tls_ca_file: Option<PathBuf>,
    /// `interest` or `broadcast`.
    pub routing: Routing,
    /// The first token of every subject Ferry uses, to share a NATS account.
    pub subject_prefix: String,
    /// The JetStream key-value bucket of the retained messages.
    pub retained_bucket: String,
    /// Replicas of the retained bucket (1 with a single nats-server, 3 in a NATS cluster).
    pub retained_replicas: usize,
    /// Messages waiting to go to NATS; past it new ones are dropped and counted.
    pub forward_queue: usize,
    /// The JetStream key-value bucket of session ownership (which node owns which
    /// client id).
    pub sessions_bucket: String,
    /// Replicas of the sessions bucket.
    pub sessions_replicas: usize,
    /// How long a node waits for the previous owner of a client id to answer a
    /// take-over (hand over the session) before resuming without it.
    #[serde(with = "humantime_serde")]
    pub takeover_timeout: Duration,
    /// How long claiming a client id may take in all (bucket reads and writes, the
    /// take-over); past it the CONNECT is refused with "server unavailable".
    #[serde(with = "humantime_serde")]
    pub claim_timeout: Duration,
    /// Compare-and-set attempts on a client id's record before the CONNECT is refused
    /// (another node wrote it meanwhile each time).
    pub claim_attempts: u32,
    /// Claims waiting for the link; past it new CONNECTs are refused (persistent
    /// sessions) or proceed locally (clean ones), counted.
    pub claim_queue: usize,
    /// The JetStream key-value bucket of node heartbeats (liveness).
    pub nodes_bucket: String,
    /// How often a node writes its heartbeat.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// A node whose heartbeat is older than this is dead: another node publishes the
    /// wills of its connected clients.
    #[serde(with = "humantime_serde")]
    pub node_timeout: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nats_url: None,
            node_name: None,
            user: None,
            password: None,
            token: None,
            creds_file: None,
            tls_ca_file: None,
            routing: Routing::Interest,
            subject_prefix: "ferry".into(),
            retained_bucket: "ferry_retained".into(),
            retained_replicas: 1,
            forward_queue: 65_536,
            sessions_bucket: "ferry_sessions".into(),
            sessions_replicas: 1,
            takeover_timeout: Duration::from_secs(2),
            claim_timeout: Duration::from_secs(5),
            claim_attempts: 5,
            claim_queue: 4_096,
            nodes_bucket: "ferry_nodes".into(),
            heartbeat_interval: Duration::from_secs(1),
            node_timeout: Duration::from_secs(3),
        }
    }
}
