//! Ferry's cluster link: Ferry nodes meet on NATS.
//!
//! Each node keeps routing and matching in its own core; NATS carries what crosses
//! nodes, and a JetStream key-value bucket holds what they share. This crate knows the
//! core's router seam ([`ferry_core::ClusterLink`]) and no protocol.
//!
//! * [`subject`]: topic ↔ subject (and KV key) encoding, sans-IO.
//! * [`envelope`]: the bytes a message crosses NATS in, sans-IO.
//! * [`dedup`]: the per-origin window that drops the second copy of a message that
//!   overlapping subscriptions bring, sans-IO.
//! * [`link`]: the I/O: one NATS connection per node (`no_echo`, named after the
//!   node), the subscriptions that follow local interest, the retained bucket and its
//!   mirror.
//! * [`sessions`]: session ownership records and the take-over's bytes, sans-IO; the
//!   claims (compare-and-set in the sessions bucket) and take-over requests run in the
//!   link's tasks (module `ownership`); heartbeats in the nodes bucket, and a dead
//!   node's wills published once by the node that wins their records (module
//!   `liveness`).
//!
//! Guarantee across nodes (tier T0): at most once. A message published while NATS is
//! unreachable, or dropped by a full queue, does not reach the other nodes; within a
//! node QoS 1/2 stay at least once as without a cluster.

pub mod config;
pub mod dedup;
pub mod envelope;
pub mod link;
mod liveness;
mod ownership;
pub mod sessions;
pub mod subject;

pub use config::{ClusterConfig, Routing};
pub use link::{Cluster, ClusterError, ClusterStats, LinkTasks};
