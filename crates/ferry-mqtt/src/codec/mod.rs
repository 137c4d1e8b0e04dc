//! The MQTT codec: bytes ⇄ packets for MQTT 3.1, 3.1.1 and 5.0, in both directions.
//!
//! Shared by the broker's state machine, the tests and `ferry-bench`: one codec, never a
//! copy. Sans-IO: [`Decoder::decode`] takes packets off the front of a stream buffer
//! (`Ok(None)` means "incomplete, read more"), [`encode`] appends one to an output
//! buffer. Nothing here reads a socket or the clock.
//!
//! ```text
//! Decoder::server(max) / server_with_version(v, max) / client(v, max)
//! Decoder::decode(&mut self, &mut BytesMut) -> Result<Option<Packet>, DecodeError>
//! Decoder::version(&self) -> Option<Version>          // settled by the CONNECT
//! Decoder::refusal(&self, &DecodeError) -> Option<(Version, ConnAck)>
//! encode(&Packet, Version, &mut BytesMut) -> Result<usize, EncodeError>
//! encode_to_bytes(&Packet, Version) -> Result<Bytes, EncodeError>
//! encoded_len(&Packet, Version) -> Result<usize, EncodeError>
//! DecodeError::reason_code(&self) -> ReasonCode      // 0x81, 0x82, 0x94, 0x95, …
//! ReasonCode::named(self) -> Named                   // "0x93 Receive Maximum exceeded", for logs
//! ```
//!
//! # Representation
//!
//! [`Packet`] is an enum of this module's own types, the same for every version, not a
//! re-export of mqttbytes' `v4::Packet`/`v5::Packet`:
//!
//! * The broker handles one kind of packet whatever the client speaks: properties are
//!   just empty under 3.x, reason codes are always 5.0's (3.x CONNACK return codes and
//!   SUBACK failures are mapped when decoded and mapped back when encoded), and a
//!   [`Publish`] received from a 5.0 client can be encoded for a 3.1.1 subscriber as is.
//! * Nothing is copied: topics and other strings are [`ByteString`]s and payloads
//!   [`bytes::Bytes`], all slices of the buffer the packet was read from; cloning a
//!   packet for another subscriber copies no text and no payload. (The flip side: a
//!   payload kept for long, like a retained message, keeps its read buffer alive; copy
//!   it if that matters.)
//! * 5.0 properties are kept whole, in wire order ([`Properties`]), so a PUBLISH is
//!   forwarded with its user properties, content type, correlation data… unchanged, and
//!   re-encodes byte for byte.
//! * MQTT 3.1 and the 5.0 AUTH packet, which mqttbytes lacks, are just more values.
//! * No mqttbytes type leaks into the rest of Ferry.
//!
//! # mqttbytes
//!
//! mqttbytes 0.6 was the first choice for this codec. Reading its source showed more than
//! the two known bugs, several of which refuse or misread *valid* packets, which no
//! amount of validation in front of it can fix:
//!
//! * 3.1.1 CONNECT: the password is Binary Data, mqttbytes reads a UTF-8 string and
//!   refuses a binary one; an empty user name without password becomes "no login".
//! * 5.0 DISCONNECT: the plain `E0 00` every client sends is refused ("payload
//!   required"), and `E0 01 rc` gets `InsufficientBytes` although complete: a reader
//!   that trusts it waits for bytes that never come. The same `InsufficientBytes` comes
//!   out of a 5.0 CONNACK without property length.
//! * 5.0 UNSUBSCRIBE: a leftover `dbg!` prints every packet identifier to stderr.
//! * 3.1.1 UNSUBSCRIBE: payload bytes counted with unchecked subtractions from the
//!   header's remaining length instead of reading to the end of the buffer. `v4::read`
//!   always passes a buffer that matches the header, so it is not reachable from there
//!   (a fuzz run of mqttbytes alone found no panic), but any other caller of
//!   `Unsubscribe::read` gets an overflow panic in debug builds and a wrapped count in
//!   release builds.
//! * Properties: a Subscription Identifier is counted one byte too long, so in a 5.0
//!   PUBLISH the properties after one are taken for payload (found by the fuzzer); a
//!   property may overrun the declared property length into the payload; duplicates
//!   silently overwrite; which properties a packet may carry is not checked.
//! * `sport+` accepted as a filter; wildcards accepted in topic names; QoS 0 with DUP,
//!   reserved flag bits, reserved CONNECT/SUBSCRIBE option bits, non-empty PINGREQ/
//!   DISCONNECT bodies, extra bytes after 3.1.1 acks, packet identifier 0 in acks and
//!   SUBSCRIBE all accepted; the size limit applies to the remaining length only.
//! * Encoding: strings over 65,535 bytes are written with their length truncated
//!   modulo 65,536; a QoS 1 PUBLISH with packet identifier 0 is refused after half of
//!   it was written to the buffer; a 5.0 CONNACK without properties lacks its property
//!   length; binary passwords cannot be expressed.
//! * No MQTT 3.1, no AUTH.
//!
//! So this module parses and writes the wire format itself (`wire`, `frame`, then one
//! file per packet family) and keeps mqttbytes as a second opinion only: `oracle`
//! (built for tests and with the `oracle` feature) decodes every packet this codec
//! accepts with mqttbytes as well and
//! compares, in the unit tests and in the fuzz targets (feature `oracle`). No mqttbytes
//! call is made on untrusted input in Ferry, so no `catch_unwind` is needed anywhere.
//!
//! # What is checked
//!
//! Everything MQTT 3.1.1 and 5.0 call malformed or a protocol error that a codec can
//! see, each with its own [`DecodeError`] variant: remaining length over four bytes or
//! not minimal; packet size over the configured maximum, from the fixed header before
//! the packet is buffered; reserved packet types and fixed header flags; QoS 3; DUP on
//! QoS 0; fields running past the packet and bytes left after it; UTF-8 and U+0000 in
//! every string; wildcards in topic names; empty topic names (unless a 5.0 Topic Alias
//! stands for them); topic filter and shared subscription syntax; SUBSCRIBE and
//! UNSUBSCRIBE without filters; packet identifier 0; reserved CONNECT flags, will flags
//! without will, password without user name (3.x); subscription option bits, Retain
//! Handling 3, No Local on a shared subscription; reason codes per packet; CONNACK
//! flags; 5.0 properties: unknown, not allowed in the packet or direction, duplicated,
//! or with a forbidden value; AUTH without method; packets in the wrong direction, a
//! first packet that is not CONNECT and a second CONNECT. Protocol name and level
//! settle the version; an unknown level gets a CONNACK refusal ([`Decoder::refusal`]).
//! The encoder runs the same checks on what it is given, so Ferry never sends what it
//! would itself refuse.

mod connect;
mod control;
mod decoder;
mod encode;
mod error;
mod frame;
mod packet;
mod properties;
mod publish;
mod reason;
mod subscribe;
#[cfg(test)]
mod test_support;
pub mod validate;
mod wire;

#[cfg(any(test, feature = "oracle"))]
pub mod oracle;

pub use bytestring::ByteString;
pub use decoder::{Decoder, Role};
pub use encode::{encode, encode_to_bytes, encoded_len};
pub use error::{DecodeError, EncodeError};
pub use packet::{
    Ack, Auth, ConnAck, Connect, Disconnect, Packet, PacketType, Publish, QoS, RetainHandling, SubAck, Subscribe, Subscription, UnsubAck,
    Unsubscribe, Version, Will,
};
pub use properties::{Properties, Property, PropertyId, Site, WireType};
pub use reason::{Named, ReasonCode};
pub use wire::{MAX_FIELD, MAX_VARINT};
