//! Ferry's MQTT adapter.
//!
//! * [`codec`]: bytes ⇄ packets for MQTT 3.1, 3.1.1 and 5.0, in both directions; the
//!   only place in Ferry that knows the MQTT wire format.
//!
//! * [`session`]: one connection's sans-IO state machine (CONNECT, QoS 0/1/2 both
//!   ways, subscriptions, retained messages, wills, keep-alive, MQTT 5 properties).
//! * [`shared`], [`session_state`]: state shared by all connections, and what a session keeps
//!   between connections.
//! * [`adapter`]: what the transport registers; [`config`]: the `[mqtt]` settings.

#![forbid(unsafe_code)]

pub mod adapter;
pub mod codec;
pub mod config;
mod convert;
pub mod session;
pub mod session_state;
pub mod shared;

pub use adapter::MqttAdapter;
pub use config::MqttConfig;
pub use shared::MqttShared;
