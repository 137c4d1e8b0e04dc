//! The cluster seam: what the router tells a link to other nodes (ferry-cluster fills
//! it with NATS), and nothing about how the link talks to them.
//!
//! The router calls a [`ClusterLink`] synchronously, some calls under its tree lock:
//! every method must return at once (hand work to the link's own task through a
//! non-blocking channel, count what it drops) and must never call back into the
//! router. Messages that come from another node enter through
//! [`Router::deliver_remote`](crate::Router::deliver_remote) and
//! [`Router::retained_apply`](crate::Router::retained_apply), which never call the
//! link again: nothing is forwarded twice.

use std::sync::Arc;
use std::time::Instant;

use crate::message::Message;
use crate::topic::{TopicFilter, TopicName};

/// A link from this node's router to the other nodes of a cluster.
pub trait ClusterLink: Send + Sync {
    /// The first local subscription on `filter` appeared (a session's own, or the first
    /// member of a shared group; persistent sessions keep theirs while offline). Called
    /// under the router's tree lock, so calls for one filter come in order.
    fn interest_added(&self, filter: &TopicFilter);

    /// The last local subscription on `filter` went. Called under the tree lock.
    fn interest_removed(&self, filter: &TopicFilter);

    /// A message published on this node was routed locally (and, if retained, kept);
    /// send it to the other nodes. Not called for the broker's own (`$SYS`) messages.
    fn published(&self, message: &Arc<Message>, now: Instant);

    /// An operator removed `topic`'s retained message on this node (admin API).
    fn retained_removed(&self, topic: &TopicName);
}
