//! The fixed header (3.1.1 §2.2, 5.0 §2.1): packet type, flags and remaining length.
//!
//! Everything here is decided from the first two to five bytes, before the rest of the
//! packet is buffered: an unknown type, wrong flags or a remaining length over the limit
//! fail as soon as the header is in.

use super::error::DecodeError;
use super::packet::{qos_from_bits, PacketType, QoS};
use super::wire;

/// A parsed fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FixedHeader {
    /// The packet type.
    pub packet_type: PacketType,
    /// The low nibble of the first byte.
    pub flags: u8,
    /// Bytes taken by the fixed header (2 to 5).
    pub header_len: usize,
    /// The remaining length: variable header plus payload.
    pub remaining_len: usize,
}

impl FixedHeader {
    /// The whole packet's size.
    pub(super) fn frame_len(&self) -> usize {
        self.header_len + self.remaining_len
    }
}

/// The packet type of a first byte, with its flags checked (3.1.1 §2.2.2, 5.0 §2.1.3).
/// AUTH (15) exists only when `v5` is true.
pub(super) fn packet_type(byte1: u8, v5: bool) -> Result<PacketType, DecodeError> {
    let nibble = byte1 >> 4;
    let flags = byte1 & 0x0F;
    let packet = match PacketType::from_nibble(nibble) {
        Some(PacketType::Auth) if !v5 => return Err(DecodeError::ReservedPacketType(nibble)),
        Some(t) => t,
        None => return Err(DecodeError::ReservedPacketType(nibble)),
    };
    match packet.required_flags() {
        Some(required) if required != flags => Err(DecodeError::InvalidFlags { packet, flags }),
        Some(_) => Ok(packet),
        None => {
            publish_flags(flags)?;
            Ok(packet)
        }
    }
}

/// DUP, QoS and RETAIN of a PUBLISH: QoS 3 and DUP on QoS 0 are malformed.
pub(super) fn publish_flags(flags: u8) -> Result<(bool, QoS, bool), DecodeError> {
    let qos = qos_from_bits(flags >> 1).ok_or(DecodeError::InvalidQoS)?;
    let dup = flags & 0b1000 != 0;
    if dup && qos == QoS::AtMostOnce {
        return Err(DecodeError::DupWithQoS0);
    }
    Ok((dup, qos, flags & 0b0001 != 0))
}

/// Parses the fixed header at the start of `buf`: `Ok(None)` when `buf` ends inside it.
pub(super) fn parse(buf: &[u8], v5: bool) -> Result<Option<FixedHeader>, DecodeError> {
    let Some(&byte1) = buf.first() else {
        return Ok(None);
    };
    let packet_type = packet_type(byte1, v5)?;
    let Some((remaining_len, len_len)) = wire::parse_varint(&buf[1..])? else {
        return Ok(None);
    };
    Ok(Some(FixedHeader {
        packet_type,
        flags: byte1 & 0x0F,
        header_len: 1 + len_len,
        remaining_len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_of_every_remaining_length_width() {
        // The remaining lengths of 3.1.1 §2.2.3 / 5.0 §1.5.5 behind a PUBLISH byte.
        let cases: &[(&[u8], usize)] = &[
            (&[0x30, 0x00], 0),
            (&[0x30, 0x7F], 127),
            (&[0x30, 0x80, 0x01], 128),
            (&[0x30, 0xFF, 0x7F], 16_383),
            (&[0x30, 0x80, 0x80, 0x01], 16_384),
            (&[0x30, 0xFF, 0xFF, 0x7F], 2_097_151),
            (&[0x30, 0x80, 0x80, 0x80, 0x01], 2_097_152),
            (&[0x30, 0xFF, 0xFF, 0xFF, 0x7F], 268_435_455),
        ];
        for &(bytes, len) in cases {
            let h = parse(bytes, false).unwrap().unwrap();
            assert_eq!(h.remaining_len, len);
            assert_eq!(h.header_len, bytes.len());
            assert_eq!(h.frame_len(), bytes.len() + len);
            assert_eq!(parse(&bytes[..bytes.len() - 1], false), Ok(None));
        }
    }

    #[test]
    fn a_fifth_remaining_length_byte_is_malformed() {
        assert_eq!(parse(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], false), Err(DecodeError::VarintTooLong));
        // Known after the fourth byte already.
        assert_eq!(parse(&[0x30, 0x80, 0x80, 0x80, 0x80], false), Err(DecodeError::VarintTooLong));
    }

    #[test]
    fn reserved_types_are_malformed() {
        assert_eq!(parse(&[0x00, 0x00], false), Err(DecodeError::ReservedPacketType(0)));
        assert_eq!(parse(&[0xF0, 0x00], false), Err(DecodeError::ReservedPacketType(15)));
        assert_eq!(parse(&[0xF0, 0x00], true).unwrap().unwrap().packet_type, PacketType::Auth);
        // Known from the first byte alone.
        assert_eq!(parse(&[0x00], false), Err(DecodeError::ReservedPacketType(0)));
    }

    #[test]
    fn reserved_flags_must_match() {
        // 3.1.1 Table 2.2: SUBSCRIBE, UNSUBSCRIBE and PUBREL carry 0b0010, the others 0.
        assert!(parse(&[0x82, 0x00], false).is_ok());
        assert!(parse(&[0xA2, 0x00], false).is_ok());
        assert!(parse(&[0x62, 0x00], false).is_ok());
        for (byte, packet) in [
            (0x80, PacketType::Subscribe),
            (0xA0, PacketType::Unsubscribe),
            (0x60, PacketType::PubRel),
            (0x11, PacketType::Connect),
            (0x42, PacketType::PubAck),
            (0xC1, PacketType::PingReq),
            (0xE8, PacketType::Disconnect),
        ] {
            assert_eq!(
                parse(&[byte, 0x00], true),
                Err(DecodeError::InvalidFlags {
                    packet,
                    flags: byte & 0x0F
                }),
                "{byte:#04x}"
            );
        }
    }

    #[test]
    fn publish_flags_are_checked() {
        assert_eq!(publish_flags(0b1101), Ok((true, QoS::ExactlyOnce, true)));
        assert_eq!(publish_flags(0b0110), Err(DecodeError::InvalidQoS));
        assert_eq!(publish_flags(0b1000), Err(DecodeError::DupWithQoS0));
        assert_eq!(parse(&[0x36, 0x00], false), Err(DecodeError::InvalidQoS));
    }
}
