//! Ferry's STOMP adapter: STOMP 1.0, 1.1 and 1.2 over WebSocket and TCP, on the broker
//! core shared with MQTT.
//!
//! * [`codec`]: STOMP frames decoded from a byte stream and encoded back, client and
//!   server frames alike, with the spec's header escaping, `content-length` bodies,
//!   heart-beats and size limits; the only place in Ferry that knows the wire format.
//! * [`session`]: one connection's sans-IO state machine (CONNECT and version
//!   negotiation, heart-beats, SEND, SUBSCRIBE with the three ack modes, ACK/NACK,
//!   transactions, receipts, ERROR-then-close).
//! * [`destination`]: `/topic/`, `/queue/`, `/temp-queue/` and the mapping of routing
//!   keys onto the core's MQTT-syntax topic tree; [`convert`]: headers ⇄ MQTT 5
//!   properties; [`queue`]: point-to-point queues, which the core does not have.
//! * [`adapter`]: what the transport registers; [`shared`]: state shared by all
//!   connections; [`config`]: the `[stomp]` settings; [`error`]: why a session ends
//!   with an ERROR frame.
//!
//! It is sans-IO: it never touches a socket, a clock or a task; the transport hands it
//! bytes and the current time and writes what it returns.
//!
//! ```
//! use bytes::BytesMut;
//! use ferry_stomp::codec::{encode, Command, Decoded, Decoder, Frame, Limits, Version};
//!
//! let mut decoder = Decoder::new(Limits::default());
//! let mut input = BytesMut::from(&b"CONNECT\naccept-version:1.2\nhost:ferry\n\n\0\n"[..]);
//! let Ok(Some(Decoded::Frame(connect))) = decoder.decode(&mut input) else { unreachable!() };
//! let version = Version::negotiate(connect.header("accept-version")).unwrap_or(Version::V1_0);
//! decoder.set_version(version);
//! assert_eq!(decoder.decode(&mut input), Ok(Some(Decoded::HeartBeat)));
//!
//! let mut output = BytesMut::new();
//! let connected = Frame::new(Command::Connected).with_header("version", version.as_str());
//! encode(&connected, version, &mut output).unwrap();
//! assert_eq!(&output[..], b"CONNECTED\nversion:1.2\n\n\0");
//! ```

pub mod adapter;
pub mod codec;
pub mod config;
pub mod convert;
pub mod destination;
pub mod error;
/// The point-to-point queues `/queue/NAME` maps onto: the core's.
pub use ferry_core::queue;
pub mod session;
pub mod shared;

pub use adapter::StompAdapter;
pub use codec::{Command, Decoded, Decoder, EncodeError, Frame, Headers, Limits, StompError, Version};
pub use config::StompConfig;
pub use error::ProtocolError;
pub use session::StompConnection;
pub use shared::StompShared;
