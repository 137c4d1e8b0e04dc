//! Helpers shared by the codec's unit tests.

use bytes::BytesMut;

use super::{DecodeError, Decoder, Packet, Role, Version};

/// A generous packet size limit for tests.
pub(super) const MAX: usize = 1 << 20;

/// Decode exactly one whole packet from `bytes` as `role` speaking `version`.
pub(super) fn decode_as(role: Role, version: Version, bytes: &[u8]) -> Result<Packet, DecodeError> {
    let mut dec = match role {
        Role::Server => Decoder::server_with_version(version, MAX),
        Role::Client => Decoder::client(version, MAX),
    };
    let mut buf = BytesMut::from(bytes);
    let packet = dec.decode(&mut buf)?.expect("a whole packet");
    assert!(buf.is_empty());
    Ok(packet)
}
