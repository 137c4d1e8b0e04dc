//! PINGREQ, PINGRESP, DISCONNECT and AUTH (3.1.1 §3.12 to §3.14, 5.0 §3.12 to §3.15).
//!
//! mqttbytes 0.6 gets the short 5.0 forms wrong: it refuses the plain `E0 00`
//! DISCONNECT every 5.0 client sends ("payload required"), answers "need more bytes" to
//! a complete `E0 01 rc` (which would stall a reader waiting for bytes that never come),
//! and has no AUTH packet at all.

use bytes::{BufMut, Bytes, BytesMut};

use super::decoder::Role;
use super::error::{DecodeError, EncodeError};
use super::packet::{Auth, Disconnect, PacketType, Version};
use super::properties::{self, Properties, Site};
use super::reason::ReasonCode;
use super::wire::Reader;

/// PINGREQ and PINGRESP have no body.
pub(super) fn decode_empty(body: Bytes) -> Result<(), DecodeError> {
    Reader::new(body).finish()
}

/// Reads the optional reason code and properties that DISCONNECT and AUTH share: a
/// remaining length of 0 means Success and no properties, 1 means no properties.
fn read_reason_and_properties(body: Bytes, packet: PacketType, site: Site, sender: Role) -> Result<(ReasonCode, Properties), DecodeError> {
    let mut r = Reader::new(body);
    if r.is_empty() {
        return Ok((ReasonCode::SUCCESS, Properties::new()));
    }
    let code = ReasonCode(r.u8()?);
    if !code.is_valid_for(packet) {
        return Err(DecodeError::InvalidReasonCode { packet, code });
    }
    if r.is_empty() {
        return Ok((code, Properties::new()));
    }
    let props = Properties::read(&mut r)?;
    properties::check(&props, site, Some(sender))?;
    r.finish()?;
    Ok((code, props))
}

/// The remaining length of the shortest form of a reason code and properties.
fn reason_and_properties_len(reason: ReasonCode, props: &Properties) -> Result<usize, EncodeError> {
    Ok(match (reason, props.is_empty()) {
        (ReasonCode::SUCCESS, true) => 0,
        (_, true) => 1,
        (_, false) => 1 + props.wire_len_prefixed()?,
    })
}

fn write_reason_and_properties(reason: ReasonCode, props: &Properties, out: &mut BytesMut) {
    if reason == ReasonCode::SUCCESS && props.is_empty() {
        return;
    }
    out.put_u8(reason.0);
    if !props.is_empty() {
        props.write(out);
    }
}

/// Decodes a DISCONNECT body (empty in 3.x).
pub(super) fn decode_disconnect(body: Bytes, version: Version, sender: Role) -> Result<Disconnect, DecodeError> {
    if !version.is_v5() {
        decode_empty(body)?;
        return Ok(Disconnect::new(ReasonCode::SUCCESS));
    }
    let (reason, properties) = read_reason_and_properties(body, PacketType::Disconnect, Site::Disconnect, sender)?;
    Ok(Disconnect { reason, properties })
}

/// Checks a DISCONNECT for encoding as `version`; returns its remaining length. 3.x
/// writes neither reason code nor properties.
pub(super) fn disconnect_len(d: &Disconnect, version: Version) -> Result<usize, EncodeError> {
    if !version.is_v5() {
        return Ok(0);
    }
    if !d.reason.is_valid_for(PacketType::Disconnect) {
        return Err(DecodeError::InvalidReasonCode {
            packet: PacketType::Disconnect,
            code: d.reason,
        }
        .into());
    }
    properties::check(&d.properties, Site::Disconnect, None)?;
    reason_and_properties_len(d.reason, &d.properties)
}

/// Writes a DISCONNECT body checked by [`disconnect_len`].
pub(super) fn write_disconnect(d: &Disconnect, version: Version, out: &mut BytesMut) {
    if version.is_v5() {
        write_reason_and_properties(d.reason, &d.properties, out);
    }
}

/// Decodes an AUTH body (5.0 only: the fixed header refuses type 15 in 3.x). A body
/// without an Authentication Method is a Protocol Error (§3.15.2.2.2); the empty AUTH
/// (Success, no properties) the specification allows has none.
pub(super) fn decode_auth(body: Bytes, sender: Role) -> Result<Auth, DecodeError> {
    let empty = body.is_empty();
    let (reason, properties) = read_reason_and_properties(body, PacketType::Auth, Site::Auth, sender)?;
    if !empty && properties.authentication_method().is_none() {
        return Err(DecodeError::AuthWithoutMethod);
    }
    Ok(Auth { reason, properties })
}

/// Checks an AUTH for encoding as `version`; returns its remaining length.
pub(super) fn auth_len(a: &Auth, version: Version) -> Result<usize, EncodeError> {
    if !version.is_v5() {
        return Err(EncodeError::NotInVersion {
            packet: PacketType::Auth,
            version,
        });
    }
    if !a.reason.is_valid_for(PacketType::Auth) {
        return Err(DecodeError::InvalidReasonCode {
            packet: PacketType::Auth,
            code: a.reason,
        }
        .into());
    }
    properties::check(&a.properties, Site::Auth, None)?;
    let len = reason_and_properties_len(a.reason, &a.properties)?;
    if len > 0 && a.properties.authentication_method().is_none() {
        return Err(DecodeError::AuthWithoutMethod.into());
    }
    Ok(len)
}

/// Writes an AUTH body checked by [`auth_len`].
pub(super) fn write_auth(a: &Auth, out: &mut BytesMut) {
    write_reason_and_properties(a.reason, &a.properties, out);
}

#[cfg(test)]
mod tests {
    use super::super::{encode, Packet, Property};
    use super::*;

    use super::super::test_support::decode_as;

    fn encoded(packet: &Packet, version: Version) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(packet, version, &mut out).unwrap();
        out.to_vec()
    }

    #[test]
    fn pings_from_the_spec() {
        // 3.1.1 §3.12.1, §3.13.1.
        assert_eq!(decode_as(Role::Server, Version::V3_1_1, &[0xC0, 0x00]), Ok(Packet::PingReq));
        assert_eq!(decode_as(Role::Client, Version::V5, &[0xD0, 0x00]), Ok(Packet::PingResp));
        assert_eq!(encoded(&Packet::PingReq, Version::V3_1_1), [0xC0, 0x00]);
        assert_eq!(encoded(&Packet::PingResp, Version::V5), [0xD0, 0x00]);
        // mqttbytes ignores a body here.
        assert_eq!(
            decode_as(Role::Server, Version::V3_1_1, &[0xC0, 0x01, 0x00]),
            Err(DecodeError::TrailingBytes(1))
        );
    }

    #[test]
    fn disconnect_forms() {
        // 3.1.1 §3.14.1: E0 00, nothing else.
        let normal = Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS));
        assert_eq!(decode_as(Role::Server, Version::V3_1_1, &[0xE0, 0x00]), Ok(normal.clone()));
        assert_eq!(
            decode_as(Role::Server, Version::V3_1_1, &[0xE0, 0x01, 0x00]),
            Err(DecodeError::TrailingBytes(1))
        );
        // 5.0 §3.14.2.1: remaining length 0 is a normal disconnection (which mqttbytes refuses)...
        assert_eq!(decode_as(Role::Server, Version::V5, &[0xE0, 0x00]), Ok(normal.clone()));
        assert_eq!(encoded(&normal, Version::V5), [0xE0, 0x00]);
        // ...1 is a reason code without properties (on which mqttbytes asks for more bytes)...
        let will = Packet::Disconnect(Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL));
        assert_eq!(decode_as(Role::Server, Version::V5, &[0xE0, 0x01, 0x04]), Ok(will.clone()));
        assert_eq!(encoded(&will, Version::V5), [0xE0, 0x01, 0x04]);
        // ...and more is reason code and properties.
        let bytes = [0xE0, 0x07, 0x8B, 0x05, 0x1F, 0x00, 0x02, b'b', b'y'];
        let Packet::Disconnect(d) = decode_as(Role::Client, Version::V5, &bytes).unwrap() else {
            panic!()
        };
        assert_eq!(
            (d.reason, d.properties.reason_string().as_deref()),
            (ReasonCode::SERVER_SHUTTING_DOWN, Some("by"))
        );
        assert_eq!(encoded(&Packet::Disconnect(d), Version::V5), bytes);
    }

    #[test]
    fn disconnect_reason_codes_and_properties_are_checked() {
        assert!(matches!(
            decode_as(Role::Server, Version::V5, &[0xE0, 0x01, 0x05]),
            Err(DecodeError::InvalidReasonCode { .. })
        ));
        // Session Expiry Interval: from a client fine, from a server not ([MQTT-3.14.2-2]).
        let bytes = [0xE0, 0x07, 0x00, 0x05, 0x11, 0x00, 0x00, 0x00, 0x0A];
        assert!(decode_as(Role::Server, Version::V5, &bytes).is_ok());
        assert!(matches!(
            decode_as(Role::Client, Version::V5, &bytes),
            Err(DecodeError::PropertyNotAllowed { .. })
        ));
        // Topic Alias is not a DISCONNECT property.
        let bytes = [0xE0, 0x05, 0x00, 0x03, 0x23, 0x00, 0x01];
        assert!(matches!(
            decode_as(Role::Server, Version::V5, &bytes),
            Err(DecodeError::PropertyNotAllowed { .. })
        ));
        // A property length running past the packet.
        assert_eq!(
            decode_as(Role::Server, Version::V5, &[0xE0, 0x02, 0x00, 0x05]),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn auth_forms() {
        // Remaining length 0: success.
        let ok = Packet::Auth(Auth {
            reason: ReasonCode::SUCCESS,
            properties: Properties::new(),
        });
        assert_eq!(decode_as(Role::Server, Version::V5, &[0xF0, 0x00]), Ok(ok.clone()));
        assert_eq!(encoded(&ok, Version::V5), [0xF0, 0x00]);
        // Continue authentication with method "SCRAM" and data 0x01.
        let bytes = [
            0xF0, 0x0E, 0x18, 0x0C, 0x15, 0x00, 0x05, b'S', b'C', b'R', b'A', b'M', 0x16, 0x00, 0x01, 0x01,
        ];
        let Packet::Auth(a) = decode_as(Role::Server, Version::V5, &bytes).unwrap() else {
            panic!()
        };
        assert_eq!(a.reason, ReasonCode::CONTINUE_AUTHENTICATION);
        assert_eq!(a.properties.authentication_method().as_deref(), Some("SCRAM"));
        assert_eq!(encoded(&Packet::Auth(a), Version::V5), bytes);
    }

    #[test]
    fn auth_rules() {
        // No method.
        assert_eq!(
            decode_as(Role::Server, Version::V5, &[0xF0, 0x01, 0x18]),
            Err(DecodeError::AuthWithoutMethod)
        );
        assert_eq!(
            decode_as(Role::Server, Version::V5, &[0xF0, 0x02, 0x18, 0x00]),
            Err(DecodeError::AuthWithoutMethod)
        );
        // Reason code outside 0x00, 0x18, 0x19.
        assert!(matches!(
            decode_as(Role::Server, Version::V5, &[0xF0, 0x01, 0x87]),
            Err(DecodeError::InvalidReasonCode { .. })
        ));
        // Data without method.
        assert_eq!(
            decode_as(Role::Server, Version::V5, &[0xF0, 0x05, 0x18, 0x03, 0x16, 0x00, 0x00]),
            Err(DecodeError::AuthDataWithoutMethod)
        );
        // Type 15 does not exist before 5.0.
        assert_eq!(
            decode_as(Role::Server, Version::V3_1_1, &[0xF0, 0x00]),
            Err(DecodeError::ReservedPacketType(15))
        );
        let a = Auth {
            reason: ReasonCode::REAUTHENTICATE,
            properties: Properties::new().with(Property::AuthenticationMethod("m".into())),
        };
        assert_eq!(
            encode(&Packet::Auth(a.clone()), Version::V3_1_1, &mut BytesMut::new()),
            Err(EncodeError::NotInVersion {
                packet: PacketType::Auth,
                version: Version::V3_1_1
            })
        );
        assert!(encode(&Packet::Auth(a), Version::V5, &mut BytesMut::new()).is_ok());
        let no_method = Auth {
            reason: ReasonCode::REAUTHENTICATE,
            properties: Properties::new(),
        };
        assert!(encode(&Packet::Auth(no_method), Version::V5, &mut BytesMut::new()).is_err());
    }
}
