//! Ferry's transport: the listeners (TCP, TLS, HTTP + WebSocket), the WebSocket
//! handshake and sessions, and the registry that hands each connection to a protocol
//! adapter.
//!
//! The transport knows sockets and frames; adapters know their protocol. A connection
//! is one task: its loop ([`connection`]'s driver) reads the socket with reads that are
//! cancel-safe inside one `select!`, cuts WebSocket frames out of what it read with the
//! sans-IO [`ws`] pieces, drives the adapter's sans-IO [`ferry_core::Connection`], and writes
//! its output in one batch per wake-up. No reader task, no channel. See ARCHITECTURE.md.

mod admission;
pub mod config;
mod connection;
pub mod credentials;
mod echo;
mod error;
mod http;
mod linger;
mod live;
mod metrics;
mod origin;
mod outbuf;
mod proxy;
mod registry;
pub mod routes;
mod server;
mod tls;
pub mod ws;

pub use config::TransportConfig;
pub use error::TransportError;
pub use metrics::Metrics;
pub use registry::Registry;
pub use routes::{BodyError, BodyStream, HandlerFuture, HttpRequest, HttpResponse, HttpRouter, HttpRoutes, ResponseBody};
pub use server::{Server, ServerParts};
