//! permessage-deflate (RFC 7692): compressed WebSocket messages.
//!
//! - [`negotiate`](mod@negotiate): the `Sec-WebSocket-Extensions` offers, the answer, and the global
//!   budget of dedicated contexts;
//! - [`codec`]: per-message deflate and inflate over flate2 (zlib-rs), with the shared
//!   per-thread contexts and the inflated-size cap;
//! - [`frame`]: RSV1 on the frames read, the header of the frames written, and a
//!   compressed message's end (inflate, then UTF-8);
//! - [`config`], the `[websocket.compression]` section.
//!
//! How the pieces plug into the frame reader, the assembler, the output buffer and the
//! handshake is in `README.md` beside this file.

pub mod codec;
pub mod config;
pub mod frame;
pub mod negotiate;

pub use codec::{DeflateError, InflateError, MessageDeflater, MessageInflater};
pub use config::CompressionConfig;
pub use negotiate::{negotiate, Agreed, ContextBudget, ContextGuard, Declined, Negotiated, Offer};
