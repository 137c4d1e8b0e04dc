//! Ferry's test kit (dev-only): the broker process harness ([`process`]), raw HTTP and
//! WebSocket helpers ([`http`]), raw MQTT bytes ([`mqtt`]), a STOMP client ([`stomp`]), a
//! test PKI ([`pki`]), a real nats-server for the cluster tests ([`nats`]) and authentication fixtures ([`gatekeeper`]); and an in-memory
//! broker ([`memory`]): both adapters on one router with a virtual clock, in quinn's
//! `Pair` style, for cross-protocol semantics without sockets.
//!
//! A `[dev-dependencies]` entry only: never a normal dependency of a shipped crate.
//! Everything here panics on failure, as a test wants.

pub mod gatekeeper;
pub mod http;
pub mod memory;
pub mod mqtt;
pub mod nats;
pub mod pki;
pub mod process;
pub mod stomp;

/// What the end-to-end tests use most: the broker harness and the HTTP/WebSocket helpers.
pub mod prelude {
    pub use crate::http::*;
    pub use crate::process::*;
}
