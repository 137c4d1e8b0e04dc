//! The STOMP codec: the one place in Ferry that turns STOMP bytes into frames and
//! frames into bytes, for both sides of a connection (the broker, the tests and the
//! load generator share it).
//!
//! * [`frame`](Frame): the data — [`Command`], [`Headers`] (ordered, first wins),
//!   [`Frame`] with a [`bytes::Bytes`] body.
//! * [`Decoder`]: streaming and sans-IO; bytes in, [`Decoded`] frames and heart-beats
//!   out; enforces [`Limits`]; fails with a [`StompError`].
//! * [`encode`], [`encode_head`], [`encode_parts`], [`encode_heartbeat`]: frames out,
//!   escaped for the [`Version`] in force, always with a true `content-length` on
//!   frames that carry a body.
//! * [`fuzz_decode`]: the entry point for the fuzz target.
//!
//! Header escaping (STOMP 1.1/1.2) is resolved here and nowhere else: a [`Frame`]
//! always holds decoded text.

mod decode;
mod encode;
mod error;
mod escape;
mod frame;
mod fuzz;
mod limits;
mod version;

#[cfg(test)]
mod proptests;

pub use decode::{Decoded, Decoder, CONTENT_LENGTH};
pub use encode::{encode, encode_head, encode_heartbeat, encode_parts, Encodable, FrameRef, FRAME_END, HEARTBEAT};
pub use error::{EncodeError, StompError};
pub(crate) use escape::{check_header, Escaping};
pub use frame::{Command, Frame, Headers};
pub use fuzz::fuzz_decode;
pub use limits::Limits;
pub use version::Version;
