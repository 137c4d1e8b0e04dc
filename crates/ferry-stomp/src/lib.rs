//! Ferry's STOMP adapter.
//!
//! Today this crate holds the STOMP codec ([`codec`]): STOMP 1.0, 1.1 and 1.2 frames
//! decoded from a byte stream and encoded back, client and server frames alike, with
//! the spec's header escaping, `content-length` bodies, heart-beats and size limits.
//! It is sans-IO: it never touches a socket, a clock or a task; the transport hands it
//! bytes and writes what it returns.
//!
//! The per-connection state machine (the adapter proper: CONNECT/CONNECTED and version
//! negotiation, heart-beat timers, subscriptions, acks, receipts, ERROR-then-close, the
//! mapping onto `ferry-core`) will be added to this crate later, on top of the codec.
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

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;

pub use codec::{Command, Decoded, Decoder, EncodeError, Frame, Headers, Limits, StompError, Version};
