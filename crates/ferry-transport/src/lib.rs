//! Ferry's transport: the listeners (TCP, TLS, HTTP + WebSocket), the WebSocket
//! handshake and sessions, and the registry that hands each connection to a protocol
//! adapter.
//!
//! The transport knows sockets and frames; adapters know their protocol. A connection
//! is one reader task (the only code that reads the socket) and one loop that drives
//! the adapter's sans-IO [`ferry_core::Session`] and writes its output in one batch per
//! wake-up.

mod admission;
pub mod assembler;
pub mod config;
mod connection;
pub mod credentials;
pub mod echo;
pub mod error;
pub mod frame_reader;
pub mod handshake;
mod http;
mod linger;
mod live;
pub mod metrics;
pub mod origin;
pub mod outbuf;
pub mod proxy;
pub mod registry;
pub mod routes;
mod server;
pub mod tls;

pub use config::TransportConfig;
pub use error::TransportError;
pub use metrics::Metrics;
pub use registry::Registry;
pub use routes::{BodyError, BodyStream, HandlerFuture, HttpRequest, HttpResponse, HttpRouter, HttpRoutes, ResponseBody};
pub use server::{Server, ServerParts};
