//! The WebSocket pieces, each sans-IO: the [`handshake`] check of an upgrade request,
//! the [`frame_reader`] that cuts frames out of the bytes read, the [`assembler`] that
//! checks them and joins fragments into messages, the [`link`] that keeps the
//! connection's ping and close handshake with their deadlines, the WebSocket half of the
//! output buffer ([`out`]: frame heads, close frames), and [`deflate`]
//! (permessage-deflate, RFC 7692). The connection's driver does the I/O around them.

pub mod assembler;
pub mod deflate;
pub mod frame_reader;
pub mod handshake;
pub(crate) mod link;
pub mod out;
