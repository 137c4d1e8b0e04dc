//! Ferry's broker core: everything that is neither a protocol nor a socket.
//!
//! * [`adapter`]: the contract between the transport and the protocol adapters, a
//!   sans-IO interface in which a session takes bytes and the current time in and hands
//!   bytes, timers and a close request back, and is woken when the core queues work.
//! * [`topic`], [`tree`]: validated topic names and filters (MQTT syntax is the core's
//!   canonical one) and the subscription trie that matches a topic without scanning.
//! * [`message`], [`outbox`], [`router`]: a published message shared by every
//!   subscriber, each session's bounded queue, and the router between them.
//! * [`monitor`]: read-only views for operators (connections, subscriptions, retained
//!   messages) as plain structs, and the registry of open connections.
//! * [`compact_map`]: the small map used where most maps hold an entry or a few.
//! * [`retained`]: an object-safe store the router calls synchronously inside
//!   `Router::publish`; [`journal`]: the persistence seam, where the router writes the
//!   retained changes that must survive and adapters learn when to acknowledge;
//!   [`sessions`]: the live session registry, not yet journaled (ARCHITECTURE.md,
//!   "Storage"); [`cluster`]: the seam to other nodes, told of local interest and of
//!   local publications, with entries on the router for what other nodes send.
//!
//! Lock order: session registry → a session's owner → its outbox; router tree → a shared
//! group's members. An adapter may hold a session slot's `state` while it calls the
//! router (`MqttShared::drop_session`): state → router tree. No lock is held while another
//! component is called back. Every lock and its order: LOCKS.md.
//!
//! This crate never touches a socket, never reads the clock (time is passed in) and
//! never spawns a task.

pub mod adapter;
pub mod cluster;
pub mod coalesce;
pub mod compact_map;
pub mod journal;
pub mod message;
pub mod monitor;
pub mod outbox;
pub mod queue;
pub mod retained;
pub mod router;
pub mod sessions;
pub mod stats;
#[cfg(test)]
mod test_support;
pub mod topic;
pub mod tree;

pub use adapter::{
    Adapter, Carrier, ClientCert, CloseCode, CloseRequest, Connection, ConnectionInfo, Input, MessageKind, Outgoing, Output, Sniff,
    Subprotocol, TransportCredentials, Wakeup,
};
pub use cluster::{ClaimOutcome, ClaimTicket, ClusterLink, MovedSession, SessionHandoff, SessionOwnership};
pub use coalesce::Coalescer;
pub use compact_map::CompactMap;
pub use journal::{
    HeldAcks, Journal, Lsn, Published, RestoredDelivery, RestoredQueue, RestoredQueueEntry, RestoredSession, RestoredWill, SessionKey,
    StorageUnavailable,
};
pub use message::{next_subscriber_id, Expiry, Message, Properties, QoS, SubscriberId, SSE_JSON_SLOT};
pub use monitor::{ClientDetails, ConnectionMonitor, ConnectionSummary, Connections, SubscriptionSummary};
pub use outbox::{Delivery, Outbox, OutboxLimits, Pushed};
pub use retained::{MemoryRetained, RetainedFull, RetainedStore, Weighed};
pub use router::{Router, SubscribeOptions, Subscriber};
pub use sessions::{Claim, Owner, SessionRegistry, SessionSlot, SessionStore};
pub use stats::{Metric, MetricKind};
pub use topic::{SharedFilter, SharedFilterError, Subscription, TopicError, TopicFilter, TopicName};
pub use tree::SubscriptionTree;
