//! Ferry's broker core: everything that is neither a protocol nor a socket.
//!
//! For now this crate holds the contract between the transport and the protocol
//! adapters ([`adapter`]): a sans-IO interface in which a session takes bytes and the
//! current time in and hands bytes, timers and a close request back. The topic tree,
//! router, sessions and retained store join it with the MQTT adapter.
//!
//! This crate never touches a socket, never reads the clock (time is passed in) and
//! never spawns a task.

pub mod adapter;

pub use adapter::{
    Adapter, Carrier, CloseRequest, ConnectionInfo, Input, MessageKind, Outgoing, Output, Session, Sniff, Subprotocol, Wakeup,
};
