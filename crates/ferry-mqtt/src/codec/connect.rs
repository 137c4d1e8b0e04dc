//! CONNECT and CONNACK, the protocol version detection, and the MQTT 3.1 shim.
//!
//! The version comes from the CONNECT's protocol name and level: `MQTT` 4 is 3.1.1,
//! `MQTT` 5 is 5.0, `MQIsdp` 3 is 3.1. An MQTT 3.1 CONNECT differs from a 3.1.1 one only
//! in that name and level, so the shim is small: 3.1 is decoded and encoded as 3.1.1,
//! with 3.1's own rules on top:
//!
//! * the client identifier must be 1 to 23 bytes (3.1 §3.1: else CONNACK 2, identifier
//!   rejected);
//! * a User Name or Password Flag with nothing left to read is taken as absent (some
//!   3.1 clients set the flags without the fields; Mosquitto accepts them the same way);
//! * the CONNACK's first byte is reserved (no Session Present): always written as 0.

use bytes::{BufMut, Bytes, BytesMut};

use super::decoder::Role;
use super::error::{DecodeError, EncodeError};
use super::packet::{qos_from_bits, ConnAck, Connect, Version, Will};
use super::properties::{self, Properties, Site};
use super::reason::ReasonCode;
use super::validate;
use super::wire::{self, Reader};

const CLEAN_START: u8 = 0x02;
const WILL: u8 = 0x04;
const WILL_RETAIN: u8 = 0x20;
const PASSWORD: u8 = 0x40;
const USERNAME: u8 = 0x80;

/// Reads the protocol name and level at the start of a CONNECT body.
fn read_version(r: &mut Reader) -> Result<Version, DecodeError> {
    let name = r.binary()?;
    let level = r.u8()?;
    match (&name[..], level) {
        (b"MQTT", 4) => Ok(Version::V3_1_1),
        (b"MQTT", 5) => Ok(Version::V5),
        (b"MQIsdp", 3) => Ok(Version::V3_1),
        (b"MQTT" | b"MQIsdp", level) => Err(DecodeError::UnsupportedProtocolVersion { level }),
        _ => Err(DecodeError::UnknownProtocolName),
    }
}

/// The protocol version a CONNECT body (after the fixed header) asks for.
pub(super) fn detect(body: &Bytes) -> Result<Version, DecodeError> {
    read_version(&mut Reader::new(body.clone()))
}

/// Decodes a CONNECT body.
pub(super) fn decode_connect(body: Bytes) -> Result<Connect, DecodeError> {
    let mut r = Reader::new(body);
    let version = read_version(&mut r)?;
    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        return Err(DecodeError::ConnectReservedFlag);
    }
    let will_qos_bits = (flags >> 3) & 0b11;
    if flags & WILL == 0 && (will_qos_bits != 0 || flags & WILL_RETAIN != 0) {
        return Err(DecodeError::WillFlagsWithoutWill);
    }
    let will_qos = qos_from_bits(will_qos_bits).ok_or(DecodeError::InvalidQoS)?;
    if !version.is_v5() && flags & PASSWORD != 0 && flags & USERNAME == 0 {
        return Err(DecodeError::PasswordWithoutUsername);
    }
    let clean_start = flags & CLEAN_START != 0;
    let keep_alive = r.u16()?;
    let properties = read_properties(&mut r, version, Site::Connect)?;
    let client_id = r.string()?;
    let will = if flags & WILL != 0 {
        let properties = read_properties(&mut r, version, Site::Will)?;
        let topic = r.string()?;
        validate::topic_name(&topic)?;
        let payload = r.binary()?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: flags & WILL_RETAIN != 0,
            properties,
        })
    } else {
        None
    };
    // The 3.1 shim: flags set without the fields they announce.
    let lenient = version == Version::V3_1;
    let username = match flags & USERNAME != 0 {
        true if lenient && r.is_empty() => None,
        true => Some(r.string()?),
        false => None,
    };
    let password = match flags & PASSWORD != 0 {
        true if lenient && r.is_empty() => None,
        true => Some(r.binary()?),
        false => None,
    };
    r.finish()?;
    // Last: a refusal with a CONNACK code only for an otherwise well-formed CONNECT.
    validate::client_id(&client_id, version, clean_start)?;
    Ok(Connect {
        version,
        clean_start,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

fn read_properties(r: &mut Reader, version: Version, site: Site) -> Result<Properties, DecodeError> {
    if !version.is_v5() {
        return Ok(Properties::new());
    }
    let props = Properties::read(r)?;
    properties::check(&props, site, Some(Role::Client))?;
    Ok(props)
}

/// Checks a CONNECT for encoding as `version`; returns its remaining length.
pub(super) fn connect_len(c: &Connect, version: Version) -> Result<usize, EncodeError> {
    if c.version != version {
        return Err(EncodeError::VersionMismatch {
            connect: c.version,
            requested: version,
        });
    }
    if !version.is_v5() && c.password.is_some() && c.username.is_none() {
        return Err(DecodeError::PasswordWithoutUsername.into());
    }
    let mut len = 2 + version.protocol_name().len() + 1 + 1 + 2;
    len += props_len(&c.properties, version, Site::Connect)?;
    len += wire::string_len(&c.client_id)?;
    if let Some(will) = &c.will {
        validate::topic_name(&will.topic)?;
        len += props_len(&will.properties, version, Site::Will)?;
        len += wire::string_len(&will.topic)? + wire::binary_len(&will.payload)?;
    }
    if let Some(username) = &c.username {
        len += wire::string_len(username)?;
    }
    if let Some(password) = &c.password {
        len += wire::binary_len(password)?;
    }
    Ok(len)
}

fn props_len(props: &Properties, version: Version, site: Site) -> Result<usize, EncodeError> {
    if !version.is_v5() {
        return Ok(0);
    }
    properties::check(props, site, None)?;
    props.wire_len_prefixed()
}

/// Writes a CONNECT body checked by [`connect_len`].
pub(super) fn write_connect(c: &Connect, version: Version, out: &mut BytesMut) {
    wire::put_binary(out, version.protocol_name().as_bytes());
    out.put_u8(version.level());
    let mut flags = 0;
    if c.clean_start {
        flags |= CLEAN_START;
    }
    if let Some(will) = &c.will {
        flags |= WILL | ((will.qos as u8) << 3);
        if will.retain {
            flags |= WILL_RETAIN;
        }
    }
    if c.username.is_some() {
        flags |= USERNAME;
    }
    if c.password.is_some() {
        flags |= PASSWORD;
    }
    out.put_u8(flags);
    out.put_u16(c.keep_alive);
    if version.is_v5() {
        c.properties.write(out);
    }
    wire::put_binary(out, c.client_id.as_bytes());
    if let Some(will) = &c.will {
        if version.is_v5() {
            will.properties.write(out);
        }
        wire::put_binary(out, will.topic.as_bytes());
        wire::put_binary(out, &will.payload);
    }
    if let Some(username) = &c.username {
        wire::put_binary(out, username.as_bytes());
    }
    if let Some(password) = &c.password {
        wire::put_binary(out, password);
    }
}

/// Decodes a CONNACK body.
pub(super) fn decode_connack(body: Bytes, version: Version) -> Result<ConnAck, DecodeError> {
    let mut r = Reader::new(body);
    let flags = r.u8()?;
    let raw = r.u8()?;
    // 3.1 reserves the whole first byte; 3.1.1 and 5.0 all but Session Present.
    let reserved = if version == Version::V3_1 { 0xFF } else { 0xFE };
    if flags & reserved != 0 {
        return Err(DecodeError::ConnAckReservedFlags);
    }
    let (code, properties) = if version.is_v5() {
        let code = ReasonCode(raw);
        if !code.is_valid_for(super::packet::PacketType::ConnAck) {
            return Err(DecodeError::InvalidReasonCode {
                packet: super::packet::PacketType::ConnAck,
                code,
            });
        }
        let props = Properties::read(&mut r)?;
        properties::check(&props, Site::ConnAck, Some(Role::Server))?;
        (code, props)
    } else {
        (
            ReasonCode::from_v3_connack(raw).ok_or(DecodeError::InvalidReturnCode(raw))?,
            Properties::new(),
        )
    };
    r.finish()?;
    let session_present = flags & 0x01 != 0;
    if session_present && code.is_error() {
        return Err(DecodeError::SessionPresentOnRefusal);
    }
    Ok(ConnAck {
        session_present,
        code,
        properties,
    })
}

/// Checks a CONNACK for encoding as `version`; returns its remaining length.
pub(super) fn connack_len(c: &ConnAck, version: Version) -> Result<usize, EncodeError> {
    let packet = super::packet::PacketType::ConnAck;
    if !c.code.is_valid_for(packet) {
        return Err(DecodeError::InvalidReasonCode { packet, code: c.code }.into());
    }
    if c.session_present && c.code.is_error() {
        return Err(DecodeError::SessionPresentOnRefusal.into());
    }
    Ok(2 + props_len(&c.properties, version, Site::ConnAck)?)
}

/// Writes a CONNACK body checked by [`connack_len`].
pub(super) fn write_connack(c: &ConnAck, version: Version, out: &mut BytesMut) {
    out.put_u8(u8::from(c.session_present && version != Version::V3_1));
    if version.is_v5() {
        out.put_u8(c.code.0);
        c.properties.write(out);
    } else {
        out.put_u8(c.code.to_v3_connack());
    }
}

#[cfg(test)]
mod tests {
    use super::super::{encode, Decoder, Packet, QoS};
    use super::*;

    const MAX: usize = 1 << 20;

    fn decode(bytes: &[u8]) -> Result<Packet, DecodeError> {
        let mut buf = BytesMut::from(bytes);
        let packet = Decoder::server(MAX).decode(&mut buf)?.expect("a whole packet");
        assert!(buf.is_empty());
        Ok(packet)
    }

    fn connect(bytes: &[u8]) -> Result<Connect, DecodeError> {
        match decode(bytes)? {
            Packet::Connect(c) => Ok(c),
            other => panic!("not a CONNECT: {other:?}"),
        }
    }

    fn reencode(c: &Connect) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(&Packet::Connect(c.clone()), c.version, &mut out).unwrap();
        out.to_vec()
    }

    /// 3.1.1 §3.1.2.10 Figure 3.6's variable header (name MQTT, level 4, flags 0xCE:
    /// user name, password, will QoS 1, will, clean session; keep alive 10) with a
    /// payload: client "test", will "/a" "offline", user "rumq", password "mq".
    const V311: &[u8] = &[
        0x10, 39, //
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0xCE, 0x00, 0x0A, //
        0x00, 0x04, b't', b'e', b's', b't', //
        0x00, 0x02, b'/', b'a', //
        0x00, 0x07, b'o', b'f', b'f', b'l', b'i', b'n', b'e', //
        0x00, 0x04, b'r', b'u', b'm', b'q', //
        0x00, 0x02, b'm', b'q',
    ];

    #[test]
    fn v3_1_1_connect_from_the_spec() {
        let c = connect(V311).unwrap();
        assert_eq!(c.version, Version::V3_1_1);
        assert!(c.clean_start);
        assert_eq!(c.keep_alive, 10);
        assert_eq!(c.client_id, "test");
        let will = c.will.as_ref().unwrap();
        assert_eq!(
            (&will.topic[..], &will.payload[..], will.qos, will.retain),
            ("/a", &b"offline"[..], QoS::AtLeastOnce, false)
        );
        assert_eq!(c.username.as_deref(), Some("rumq"));
        assert_eq!(c.password.as_deref(), Some(&b"mq"[..]));
        assert_eq!(reencode(&c), V311);
    }

    #[test]
    fn v5_connect_from_the_spec() {
        // 5.0 §3.1.2.12 Figure 3-6: MQTT, level 5, flags 0xCE, keep alive 10,
        // properties: Session Expiry Interval 10. Payload: client "c1", will props
        // empty, will "w" "x", user "u", password "p".
        let bytes = [
            0x10, 33, //
            0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0xCE, 0x00, 0x0A, //
            0x05, 0x11, 0x00, 0x00, 0x00, 0x0A, //
            0x00, 0x02, b'c', b'1', //
            0x00, 0x00, 0x01, b'w', 0x00, 0x01, b'x', //
            0x00, 0x01, b'u', 0x00, 0x01, b'p',
        ];
        let c = connect(&bytes).unwrap();
        assert_eq!(c.version, Version::V5);
        assert_eq!(c.properties.session_expiry_interval(), Some(10));
        assert_eq!(c.will.as_ref().map(|w| w.topic.to_string()), Some("w".to_owned()));
        assert_eq!(reencode(&c), bytes);
    }

    #[test]
    fn v3_1_connect_from_the_3_1_spec() {
        // MQTT 3.1 §3.1: protocol name MQIsdp, version 3, flags 0xCE, keep alive 10.
        let bytes = [
            0x10, 0x1C, //
            0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, 0xCE, 0x00, 0x0A, //
            0x00, 0x02, b'c', b'1', //
            0x00, 0x01, b'w', 0x00, 0x01, b'x', //
            0x00, 0x01, b'u', 0x00, 0x01, b'p',
        ];
        let c = connect(&bytes).unwrap();
        assert_eq!(c.version, Version::V3_1);
        assert_eq!(c.client_id, "c1");
        assert_eq!(reencode(&c), bytes);
    }

    #[test]
    fn v3_1_client_ids_are_1_to_23_bytes() {
        let with_id = |id: &str| {
            let mut b = vec![
                0x10,
                (12 + 2 + id.len()) as u8,
                0,
                6,
                b'M',
                b'Q',
                b'I',
                b's',
                b'd',
                b'p',
                3,
                0x02,
                0,
                10,
            ];
            b.extend_from_slice(&(id.len() as u16).to_be_bytes());
            b.extend_from_slice(id.as_bytes());
            b
        };
        assert!(connect(&with_id(&"a".repeat(23))).is_ok());
        assert!(matches!(connect(&with_id(&"a".repeat(24))), Err(DecodeError::ClientIdRejected(_))));
        assert!(matches!(connect(&with_id("")), Err(DecodeError::ClientIdRejected(_))));
    }

    #[test]
    fn v3_1_tolerates_flags_without_credentials() {
        // User name and password flags set (0xC2), neither field present.
        let bytes = [0x10, 16, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0xC2, 0, 10, 0, 2, b'c', b'1'];
        let c = connect(&bytes).unwrap();
        assert_eq!((c.username, c.password), (None, None));
        // 3.1.1 does not.
        let bytes = [0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 10, 0, 2, b'c', b'1'];
        assert_eq!(connect(&bytes), Err(DecodeError::Truncated));
    }

    #[test]
    fn binary_passwords_are_accepted() {
        // mqttbytes reads the password as a UTF-8 string and refuses this packet.
        let bytes = [
            0x10, 20, 0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 10, 0, 1, b'c', 0, 1, b'u', 0, 2, 0xFF, 0x00,
        ];
        let c = connect(&bytes).unwrap();
        assert_eq!(c.password.as_deref(), Some(&[0xFF, 0x00][..]));
        assert_eq!(reencode(&c), bytes);
    }

    #[test]
    fn empty_user_name_is_kept() {
        // mqttbytes turns an empty user name without password into "no login".
        let bytes = [0x10, 15, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x82, 0, 10, 0, 1, b'c', 0, 0];
        let c = connect(&bytes).unwrap();
        assert_eq!(c.username.as_deref(), Some(""));
        assert_eq!(reencode(&c), bytes);
    }

    #[test]
    fn unknown_protocols_and_levels() {
        let with = |name: &[u8], level: u8| {
            let mut b = vec![0x10, (2 + name.len() + 4 + 3) as u8, 0, name.len() as u8];
            b.extend_from_slice(name);
            b.extend_from_slice(&[level, 0x02, 0, 10, 0, 1, b'c']);
            b
        };
        assert_eq!(
            connect(&with(b"MQTT", 3)),
            Err(DecodeError::UnsupportedProtocolVersion { level: 3 })
        );
        assert_eq!(
            connect(&with(b"MQTT", 6)),
            Err(DecodeError::UnsupportedProtocolVersion { level: 6 })
        );
        assert_eq!(
            connect(&with(b"MQIsdp", 4)),
            Err(DecodeError::UnsupportedProtocolVersion { level: 4 })
        );
        assert_eq!(connect(&with(b"MQTX", 4)), Err(DecodeError::UnknownProtocolName));
        assert_eq!(connect(&with(b"mqtt", 4)), Err(DecodeError::UnknownProtocolName));
    }

    #[test]
    fn reserved_connect_flag_is_malformed() {
        let bytes = [0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x03, 0, 10, 0, 1, b'c'];
        assert_eq!(connect(&bytes), Err(DecodeError::ConnectReservedFlag));
    }

    #[test]
    fn will_qos_and_retain_need_the_will_flag() {
        for flags in [0x0A, 0x12, 0x22] {
            let bytes = [0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, flags, 0, 10, 0, 1, b'c'];
            assert_eq!(connect(&bytes), Err(DecodeError::WillFlagsWithoutWill), "{flags:#04x}");
        }
    }

    #[test]
    fn will_qos_3_is_malformed() {
        let bytes = [0x10, 18, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x1E, 0, 10, 0, 1, b'c', 0, 1, b'w', 0, 0];
        assert_eq!(connect(&bytes), Err(DecodeError::InvalidQoS));
    }

    #[test]
    fn will_topic_is_a_topic_name() {
        let bytes = [0x10, 18, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x06, 0, 10, 0, 1, b'c', 0, 1, b'#', 0, 0];
        assert_eq!(connect(&bytes), Err(DecodeError::WildcardInTopicName));
        let bytes = [0x10, 17, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x06, 0, 10, 0, 1, b'c', 0, 0, 0, 0];
        assert_eq!(connect(&bytes), Err(DecodeError::EmptyTopicName));
    }

    #[test]
    fn password_without_user_name() {
        let bytes = [0x10, 16, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x42, 0, 10, 0, 1, b'c', 0, 1, b'p'];
        assert_eq!(connect(&bytes), Err(DecodeError::PasswordWithoutUsername));
        // Allowed in 5.0.
        let bytes = [0x10, 17, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x42, 0, 10, 0, 0, 1, b'c', 0, 1, b'p'];
        assert_eq!(connect(&bytes).unwrap().password.as_deref(), Some(&b"p"[..]));
    }

    #[test]
    fn empty_client_id_needs_clean_session_in_3_1_1() {
        let bytes = [0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x00, 0, 10, 0, 0];
        assert!(matches!(connect(&bytes), Err(DecodeError::ClientIdRejected(_))));
        let bytes = [0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 10, 0, 0];
        assert!(connect(&bytes).is_ok());
    }

    #[test]
    fn client_id_must_be_utf8_without_nul() {
        let bytes = [0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 10, 0, 1, 0x00];
        assert_eq!(connect(&bytes), Err(DecodeError::NullCharacter));
        let bytes = [0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 10, 0, 1, 0xC3];
        assert_eq!(connect(&bytes), Err(DecodeError::InvalidUtf8));
    }

    #[test]
    fn trailing_bytes_after_the_payload() {
        let bytes = [0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 10, 0, 1, b'c', 0xFF];
        assert_eq!(connect(&bytes), Err(DecodeError::TrailingBytes(1)));
    }

    #[test]
    fn truncated_connects() {
        // Every cut of the spec example that keeps a consistent remaining length.
        for cut in 2..V311.len() {
            let mut b = V311[..cut].to_vec();
            b[1] = (cut - 2) as u8;
            assert!(connect(&b).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn v5_connect_properties_are_checked() {
        // Topic Alias in CONNECT: not allowed.
        let bytes = [0x10, 16, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 10, 3, 0x23, 0, 1, 0, 0];
        assert!(matches!(connect(&bytes), Err(DecodeError::PropertyNotAllowed { .. })));
        // Will Delay Interval in CONNECT (instead of the will): not allowed.
        let bytes = [0x10, 18, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 10, 5, 0x18, 0, 0, 0, 1, 0, 0];
        assert!(matches!(connect(&bytes), Err(DecodeError::PropertyNotAllowed { .. })));
        // Will Delay Interval in the will properties: fine.
        let bytes = [
            0x10, 24, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x06, 0, 10, 0, 0, 0, 5, 0x18, 0, 0, 0, 1, 0, 1, b'w', 0, 0,
        ];
        let c = connect(&bytes).unwrap();
        assert_eq!(c.will.unwrap().properties.will_delay_interval(), Some(1));
    }

    #[test]
    fn connack_v3_examples() {
        let mut dec = Decoder::client(Version::V3_1_1, MAX);
        let mut buf = BytesMut::from(&[0x20, 0x02, 0x01, 0x00, 0x20, 0x02, 0x00, 0x05][..]);
        assert_eq!(dec.decode(&mut buf), Ok(Some(Packet::ConnAck(ConnAck::accepted(true)))));
        assert_eq!(
            dec.decode(&mut buf),
            Ok(Some(Packet::ConnAck(ConnAck::refused(ReasonCode::NOT_AUTHORIZED))))
        );
        for bad in [[0x20, 0x02, 0x02, 0x00], [0x20, 0x02, 0x00, 0x06], [0x20, 0x02, 0x01, 0x05]] {
            assert!(dec.decode(&mut BytesMut::from(&bad[..])).is_err(), "{bad:02x?}");
        }
        let mut out = BytesMut::new();
        encode(
            &Packet::ConnAck(ConnAck::refused(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION)),
            Version::V3_1_1,
            &mut out,
        )
        .unwrap();
        assert_eq!(&out[..], [0x20, 0x02, 0x00, 0x01]);
    }

    #[test]
    fn connack_v3_1_never_sets_the_reserved_byte() {
        let mut out = BytesMut::new();
        encode(&Packet::ConnAck(ConnAck::accepted(true)), Version::V3_1, &mut out).unwrap();
        assert_eq!(&out[..], [0x20, 0x02, 0x00, 0x00]);
        let mut dec = Decoder::client(Version::V3_1, MAX);
        assert_eq!(
            dec.decode(&mut BytesMut::from(&[0x20, 0x02, 0x01, 0x00][..])),
            Err(DecodeError::ConnAckReservedFlags)
        );
    }

    #[test]
    fn connack_v5_with_properties() {
        let mut dec = Decoder::client(Version::V5, MAX);
        // Success, Receive Maximum 10, Assigned Client Identifier "id".
        let bytes = [0x20, 0x0B, 0x00, 0x00, 0x08, 0x21, 0x00, 0x0A, 0x12, 0x00, 0x02, b'i', b'd'];
        let Some(Packet::ConnAck(c)) = dec.decode(&mut BytesMut::from(&bytes[..])).unwrap() else {
            panic!()
        };
        assert_eq!(c.properties.receive_maximum(), Some(10));
        assert_eq!(c.properties.assigned_client_identifier().as_deref(), Some("id"));
        let mut out = BytesMut::new();
        encode(&Packet::ConnAck(c), Version::V5, &mut out).unwrap();
        assert_eq!(&out[..], bytes);
        // 5.0 requires the property length: mqttbytes omits it when there are none.
        let mut out = BytesMut::new();
        encode(&Packet::ConnAck(ConnAck::accepted(false)), Version::V5, &mut out).unwrap();
        assert_eq!(&out[..], [0x20, 0x03, 0x00, 0x00, 0x00]);
        assert_eq!(
            dec.decode(&mut BytesMut::from(&[0x20, 0x02, 0x00, 0x00][..])),
            Err(DecodeError::Truncated)
        );
        // A 3.x return code is not a 5.0 reason code.
        assert!(matches!(
            dec.decode(&mut BytesMut::from(&[0x20, 0x03, 0x00, 0x01, 0x00][..])),
            Err(DecodeError::InvalidReasonCode { .. })
        ));
    }
}
