//! PUBLISH (3.1.1 §3.3, 5.0 §3.3) and its acknowledgements PUBACK, PUBREC, PUBREL and
//! PUBCOMP (§3.4 to §3.7).

use bytes::{BufMut, Bytes, BytesMut};

use super::decoder::Role;
use super::error::{DecodeError, EncodeError};
use super::frame;
use super::packet::{Ack, PacketType, Publish, QoS, Version};
use super::properties::{self, Properties, Site};
use super::reason::ReasonCode;
use super::validate;
use super::wire::{self, Reader};

/// Decodes a PUBLISH from its header flags and body. The payload is a slice of `body`.
pub(super) fn decode_publish(flags: u8, body: Bytes, version: Version, sender: Role) -> Result<Publish, DecodeError> {
    let (dup, qos, retain) = frame::publish_flags(flags)?;
    let mut r = Reader::new(body);
    let topic = r.string()?;
    let pkid = match qos {
        QoS::AtMostOnce => 0,
        _ => nonzero_pkid(r.u16()?, PacketType::Publish)?,
    };
    let properties = if version.is_v5() {
        let props = Properties::read(&mut r)?;
        properties::check(&props, Site::Publish, Some(sender))?;
        props
    } else {
        Properties::new()
    };
    validate::publish_topic(&topic, version, properties.topic_alias().is_some())?;
    Ok(Publish {
        dup,
        qos,
        retain,
        topic,
        pkid,
        properties,
        payload: r.rest(),
    })
}

fn nonzero_pkid(pkid: u16, packet: PacketType) -> Result<u16, DecodeError> {
    if pkid == 0 {
        Err(DecodeError::PacketIdZero(packet))
    } else {
        Ok(pkid)
    }
}

/// The first byte of a PUBLISH.
pub(super) fn publish_byte1(p: &Publish) -> u8 {
    0x30 | (u8::from(p.dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain)
}

/// Checks a PUBLISH for encoding as `version`; returns its remaining length.
pub(super) fn publish_len(p: &Publish, version: Version) -> Result<usize, EncodeError> {
    if p.qos != QoS::AtMostOnce && p.pkid == 0 {
        return Err(DecodeError::PacketIdZero(PacketType::Publish).into());
    }
    if p.dup && p.qos == QoS::AtMostOnce {
        return Err(DecodeError::DupWithQoS0.into());
    }
    let mut len = wire::string_len(&p.topic)?;
    if p.qos != QoS::AtMostOnce {
        len += 2;
    }
    if version.is_v5() {
        properties::check(&p.properties, Site::Publish, None)?;
        validate::publish_topic(&p.topic, version, p.properties.topic_alias().is_some())?;
        len += p.properties.wire_len_prefixed()?;
    } else {
        validate::publish_topic(&p.topic, version, false)?;
    }
    Ok(len + p.payload.len())
}

/// Writes a PUBLISH body checked by [`publish_len`].
pub(super) fn write_publish(p: &Publish, version: Version, out: &mut BytesMut) {
    wire::put_binary(out, p.topic.as_bytes());
    if p.qos != QoS::AtMostOnce {
        out.put_u16(p.pkid);
    }
    if version.is_v5() {
        p.properties.write(out);
    }
    out.put_slice(&p.payload);
}

fn ack_site(packet: PacketType) -> Site {
    match packet {
        PacketType::PubAck => Site::PubAck,
        PacketType::PubRec => Site::PubRec,
        PacketType::PubRel => Site::PubRel,
        _ => Site::PubComp,
    }
}

/// Decodes a PUBACK, PUBREC, PUBREL or PUBCOMP body. In 5.0 the reason code may be
/// left out when it is Success and there are no properties (remaining length 2), and
/// the property length when there are none (remaining length 3).
pub(super) fn decode_ack(packet: PacketType, body: Bytes, version: Version, sender: Role) -> Result<Ack, DecodeError> {
    let mut r = Reader::new(body);
    let pkid = nonzero_pkid(r.u16()?, packet)?;
    if !version.is_v5() {
        r.finish()?;
        return Ok(Ack::new(pkid));
    }
    let reason = if r.is_empty() { ReasonCode::SUCCESS } else { ReasonCode(r.u8()?) };
    if !reason.is_valid_for(packet) {
        return Err(DecodeError::InvalidReasonCode { packet, code: reason });
    }
    let properties = if r.is_empty() {
        Properties::new()
    } else {
        let props = Properties::read(&mut r)?;
        properties::check(&props, ack_site(packet), Some(sender))?;
        props
    };
    r.finish()?;
    Ok(Ack { pkid, reason, properties })
}

/// Checks an acknowledgement for encoding as `version`; returns its remaining length.
/// 3.x writes only the packet identifier.
pub(super) fn ack_len(packet: PacketType, a: &Ack, version: Version) -> Result<usize, EncodeError> {
    nonzero_pkid(a.pkid, packet)?;
    if !version.is_v5() {
        return Ok(2);
    }
    if !a.reason.is_valid_for(packet) {
        return Err(DecodeError::InvalidReasonCode { packet, code: a.reason }.into());
    }
    properties::check(&a.properties, ack_site(packet), None)?;
    Ok(match (a.reason, a.properties.is_empty()) {
        (ReasonCode::SUCCESS, true) => 2,
        (_, true) => 3,
        (_, false) => 3 + a.properties.wire_len_prefixed()?,
    })
}

/// Writes an acknowledgement body checked by [`ack_len`], in its shortest form.
pub(super) fn write_ack(a: &Ack, version: Version, out: &mut BytesMut) {
    out.put_u16(a.pkid);
    if !version.is_v5() || (a.reason == ReasonCode::SUCCESS && a.properties.is_empty()) {
        return;
    }
    out.put_u8(a.reason.0);
    if !a.properties.is_empty() {
        a.properties.write(out);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{encode, Decoder, Packet, Property};
    use super::*;

    const MAX: usize = 1 << 20;

    fn server(version: Version) -> Decoder {
        Decoder::server_with_version(version, MAX)
    }

    fn decode(version: Version, bytes: &[u8]) -> Result<Packet, DecodeError> {
        let mut buf = BytesMut::from(bytes);
        let packet = server(version).decode(&mut buf)?.expect("a whole packet");
        assert!(buf.is_empty(), "the whole packet was consumed");
        Ok(packet)
    }

    fn encoded(packet: &Packet, version: Version) -> Vec<u8> {
        let mut out = BytesMut::new();
        let n = encode(packet, version, &mut out).unwrap();
        assert_eq!(n, out.len());
        out.to_vec()
    }

    /// 3.1.1 §3.3.2.3 Figure 3.11: topic "a/b", packet identifier 10, then a payload.
    const V311_QOS1: &[u8] = &[0x32, 0x0B, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, 0xF1, 0xF2, 0xF3, 0xF4];

    #[test]
    fn v3_publish_from_the_spec() {
        let Packet::Publish(p) = decode(Version::V3_1_1, V311_QOS1).unwrap() else {
            panic!()
        };
        assert_eq!(
            (p.dup, p.qos, p.retain, &p.topic[..], p.pkid),
            (false, QoS::AtLeastOnce, false, "a/b", 10)
        );
        assert_eq!(&p.payload[..], [0xF1, 0xF2, 0xF3, 0xF4]);
        assert_eq!(encoded(&Packet::Publish(p), Version::V3_1_1), V311_QOS1);
    }

    #[test]
    fn payload_is_a_slice_of_the_read_buffer() {
        let mut buf = BytesMut::from(V311_QOS1);
        let start = buf.as_ptr() as usize;
        let Some(Packet::Publish(p)) = server(Version::V3_1_1).decode(&mut buf).unwrap() else {
            panic!()
        };
        assert_eq!(p.payload.as_ptr() as usize, start + 9, "no copy");
        assert_eq!(p.topic.as_ptr() as usize, start + 4, "no copy");
    }

    #[test]
    fn v5_publish_from_the_spec() {
        // 5.0 §3.3.2.3 Figure 3-9: topic "a/b", packet identifier 10, property length 0.
        let bytes = [0x32, 0x0A, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, 0x00, b'h', b'i'];
        let Packet::Publish(p) = decode(Version::V5, &bytes).unwrap() else {
            panic!()
        };
        assert!(p.properties.is_empty());
        assert_eq!(&p.payload[..], b"hi");
        assert_eq!(encoded(&Packet::Publish(p), Version::V5), bytes);
    }

    /// A QoS 2, retained, DUP PUBLISH to "a/b" with packet identifier 0x1234 and the
    /// properties Payload Format Indicator 1, Message Expiry Interval 60, Content Type
    /// "text/plain", Response Topic "r", Correlation Data 0x01 0x02, User Property
    /// ("k", "v") and Topic Alias 5, then the payload "hello".
    const V5_PROPS: &[u8] = &[
        0x3D, 0x34, // PUBLISH, DUP, QoS 2, RETAIN; remaining length 52
        0x00, 0x03, b'a', b'/', b'b', // topic
        0x12, 0x34, // packet identifier
        0x27, // property length 39
        0x01, 0x01, // payload format indicator: UTF-8
        0x02, 0x00, 0x00, 0x00, 0x3C, // message expiry interval: 60 s
        0x03, 0x00, 0x0A, b't', b'e', b'x', b't', b'/', b'p', b'l', b'a', b'i', b'n', // content type
        0x08, 0x00, 0x01, b'r', // response topic
        0x09, 0x00, 0x02, 0x01, 0x02, // correlation data
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property
        0x23, 0x00, 0x05, // topic alias
        b'h', b'e', b'l', b'l', b'o', // payload
    ];

    #[test]
    fn v5_publish_with_properties() {
        let Packet::Publish(p) = decode(Version::V5, V5_PROPS).unwrap() else {
            panic!()
        };
        assert_eq!((p.dup, p.qos, p.retain, p.pkid), (true, QoS::ExactlyOnce, true, 0x1234));
        let props = &p.properties;
        assert_eq!(props.payload_format_indicator(), Some(1));
        assert_eq!(props.message_expiry_interval(), Some(60));
        assert_eq!(props.content_type().as_deref(), Some("text/plain"));
        assert_eq!(props.response_topic().as_deref(), Some("r"));
        assert_eq!(props.correlation_data().as_deref(), Some(&[1, 2][..]));
        assert_eq!(
            props.user_properties().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            ["k=v"]
        );
        assert_eq!(props.topic_alias(), Some(5));
        assert_eq!(&p.payload[..], b"hello");
        // Re-encoded byte for byte: same properties, same order.
        assert_eq!(encoded(&Packet::Publish(p.clone()), Version::V5), V5_PROPS);
        // Forwarding: drop the alias, the rest goes out unchanged.
        let mut fwd = p;
        fwd.properties.retain(|q| !matches!(q, Property::TopicAlias(_)));
        assert_eq!(fwd.properties.len(), 6);
    }

    #[test]
    fn qos_3_is_malformed() {
        assert_eq!(
            decode(Version::V3_1_1, &[0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01]),
            Err(DecodeError::InvalidQoS)
        );
    }

    #[test]
    fn dup_on_qos_0_is_malformed() {
        assert_eq!(
            decode(Version::V3_1_1, &[0x38, 0x03, 0x00, 0x01, b'a']),
            Err(DecodeError::DupWithQoS0)
        );
    }

    #[test]
    fn qos_1_with_packet_id_0_is_refused() {
        assert_eq!(
            decode(Version::V3_1_1, &[0x32, 0x05, 0x00, 0x01, b'a', 0x00, 0x00]),
            Err(DecodeError::PacketIdZero(PacketType::Publish))
        );
        let mut p = Publish::new("a", QoS::AtLeastOnce, Bytes::new());
        assert!(encode(&Packet::Publish(p.clone()), Version::V5, &mut BytesMut::new()).is_err());
        p.pkid = 1;
        assert!(encode(&Packet::Publish(p), Version::V5, &mut BytesMut::new()).is_ok());
    }

    #[test]
    fn wildcards_in_the_topic_name_are_malformed() {
        assert_eq!(
            decode(Version::V3_1_1, &[0x30, 0x05, 0x00, 0x03, b'a', b'/', b'+']),
            Err(DecodeError::WildcardInTopicName)
        );
        assert_eq!(
            decode(Version::V5, &[0x30, 0x04, 0x00, 0x01, b'#', 0x00]),
            Err(DecodeError::WildcardInTopicName)
        );
        let p = Publish::new("a/#", QoS::AtMostOnce, Bytes::new());
        assert_eq!(
            encode(&Packet::Publish(p), Version::V3_1_1, &mut BytesMut::new()),
            Err(EncodeError::Invalid(DecodeError::WildcardInTopicName))
        );
    }

    #[test]
    fn empty_topic_needs_a_v5_alias() {
        assert_eq!(decode(Version::V3_1_1, &[0x30, 0x02, 0x00, 0x00]), Err(DecodeError::EmptyTopicName));
        assert_eq!(
            decode(Version::V5, &[0x30, 0x03, 0x00, 0x00, 0x00]),
            Err(DecodeError::EmptyTopicName)
        );
        let Packet::Publish(p) = decode(Version::V5, &[0x30, 0x06, 0x00, 0x00, 0x03, 0x23, 0x00, 0x01]).unwrap() else {
            panic!()
        };
        assert_eq!((p.topic.len(), p.properties.topic_alias()), (0, Some(1)));
    }

    #[test]
    fn topic_must_be_utf8_without_nul() {
        assert_eq!(
            decode(Version::V3_1_1, &[0x30, 0x04, 0x00, 0x02, b'a', 0x00]),
            Err(DecodeError::NullCharacter)
        );
        assert_eq!(
            decode(Version::V3_1_1, &[0x30, 0x04, 0x00, 0x02, 0xC3, 0x28]),
            Err(DecodeError::InvalidUtf8)
        );
    }

    #[test]
    fn truncated_publish() {
        // Topic length runs past the packet; packet identifier missing.
        assert_eq!(
            decode(Version::V3_1_1, &[0x30, 0x03, 0x00, 0x05, b'a']),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decode(Version::V3_1_1, &[0x32, 0x04, 0x00, 0x01, b'a', 0x00]),
            Err(DecodeError::Truncated)
        );
        // 5.0: no room for the property length.
        assert_eq!(decode(Version::V5, &[0x30, 0x03, 0x00, 0x01, b'a']), Err(DecodeError::Truncated));
    }

    #[test]
    fn subscription_identifier_from_a_client_is_refused() {
        let bytes = [0x30, 0x06, 0x00, 0x01, b'a', 0x02, 0x0B, 0x01];
        assert!(matches!(decode(Version::V5, &bytes), Err(DecodeError::PropertyNotAllowed { .. })));
        let mut client = Decoder::client(Version::V5, MAX);
        let Some(Packet::Publish(p)) = client.decode(&mut BytesMut::from(&bytes[..])).unwrap() else {
            panic!()
        };
        assert_eq!(p.properties.subscription_identifiers().collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn properties_after_a_subscription_identifier_are_not_payload() {
        // Fuzz finding (oracle disagreement): mqttbytes counts each Subscription
        // Identifier one byte too long and reads the Payload Format Indicator after two
        // of them as the start of the payload.
        let mut bytes = vec![0x31, 0x25, 0x00, 0x12];
        bytes.extend_from_slice(b"sensors/room1/temp");
        bytes.extend_from_slice(&[
            0x0C, 0x0B, 0x07, 0x0B, 0xAC, 0x02, 0x26, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0, 0, 0, 0,
        ]);
        let mut client = Decoder::client(Version::V5, MAX);
        let Some(Packet::Publish(p)) = client.decode(&mut BytesMut::from(&bytes[..])).unwrap() else {
            panic!()
        };
        assert_eq!(p.properties.subscription_identifiers().collect::<Vec<_>>(), [7, 300]);
        assert_eq!(p.properties.payload_format_indicator(), Some(0));
        assert_eq!(&p.payload[..], [0, 0, 0, 0]);
        let Ok(mqttbytes::v5::Packet::Publish(theirs)) = mqttbytes::v5::read(&mut BytesMut::from(&bytes[..]), usize::MAX) else {
            panic!()
        };
        assert_eq!(&theirs.payload[..], [0x01, 0, 0, 0, 0, 0], "mqttbytes still misreads it");
        assert!(
            super::super::oracle::check(&bytes, Version::V5, &Packet::Publish(p)).is_ok(),
            "the oracle skips it"
        );
        // Second finding, same bug: six Subscription Identifiers in a row, the last two
        // of which mqttbytes takes for payload.
        let mut bytes = vec![0x30, 0x25, 0x00, 0x12];
        bytes.extend_from_slice(b"sensors/room1/temp");
        bytes.extend_from_slice(&[0x0C]);
        bytes.extend_from_slice(&[0x0B; 16]);
        let Some(Packet::Publish(p)) = client.decode(&mut BytesMut::from(&bytes[..])).unwrap() else {
            panic!()
        };
        assert_eq!(p.properties.subscription_identifiers().collect::<Vec<_>>(), [11; 6]);
        assert_eq!(&p.payload[..], [0x0B; 4]);
        let Ok(mqttbytes::v5::Packet::Publish(theirs)) = mqttbytes::v5::read(&mut BytesMut::from(&bytes[..]), usize::MAX) else {
            panic!()
        };
        assert_eq!(
            theirs.properties.map(|q| q.subscription_identifiers.len()),
            Some(4),
            "mqttbytes still misreads it"
        );
        let ours = Packet::Publish(p);
        assert!(
            super::super::oracle::check(&bytes, Version::V5, &ours).is_ok(),
            "the oracle skips it"
        );
    }

    #[test]
    fn properties_not_allowed_in_publish() {
        // Session Expiry Interval.
        let bytes = [0x30, 0x09, 0x00, 0x01, b'a', 0x05, 0x11, 0, 0, 0, 1];
        assert!(matches!(decode(Version::V5, &bytes), Err(DecodeError::PropertyNotAllowed { .. })));
    }

    #[test]
    fn acks_from_the_specs() {
        // 3.1.1 §3.4-3.7: two bytes of packet identifier.
        for (byte1, make) in [
            (0x40u8, Packet::PubAck as fn(Ack) -> Packet),
            (0x50, Packet::PubRec),
            (0x62, Packet::PubRel),
            (0x70, Packet::PubComp),
        ] {
            let bytes = [byte1, 0x02, 0x00, 0x0A];
            for version in [Version::V3_1_1, Version::V5] {
                assert_eq!(decode(version, &bytes), Ok(make(Ack::new(10))));
                assert_eq!(encoded(&make(Ack::new(10)), version), bytes);
            }
        }
    }

    #[test]
    fn v5_ack_forms() {
        // Reason code only (remaining length 3).
        let Packet::PubAck(a) = decode(Version::V5, &[0x40, 0x03, 0x00, 0x01, 0x10]).unwrap() else {
            panic!()
        };
        assert_eq!(a.reason, ReasonCode::NO_MATCHING_SUBSCRIBERS);
        assert_eq!(encoded(&Packet::PubAck(a), Version::V5), [0x40, 0x03, 0x00, 0x01, 0x10]);
        // Success written out with an empty property list is the same as the short form.
        assert_eq!(
            decode(Version::V5, &[0x40, 0x04, 0x00, 0x01, 0x00, 0x00]),
            Ok(Packet::PubAck(Ack::new(1)))
        );
        // Reason string.
        let bytes = [0x50, 0x08, 0x00, 0x01, 0x80, 0x04, 0x1F, 0x00, 0x01, b'x'];
        let Packet::PubRec(a) = decode(Version::V5, &bytes).unwrap() else {
            panic!()
        };
        assert_eq!(a.properties.reason_string().as_deref(), Some("x"));
        assert_eq!(encoded(&Packet::PubRec(a), Version::V5), bytes);
    }

    #[test]
    fn ack_reason_codes_are_checked() {
        assert!(matches!(
            decode(Version::V5, &[0x62, 0x03, 0x00, 0x01, 0x10]),
            Err(DecodeError::InvalidReasonCode { .. })
        ));
        assert!(matches!(
            decode(Version::V5, &[0x40, 0x03, 0x00, 0x01, 0x92]),
            Err(DecodeError::InvalidReasonCode { .. })
        ));
        assert!(decode(Version::V5, &[0x70, 0x03, 0x00, 0x01, 0x92]).is_ok());
    }

    #[test]
    fn v3_acks_are_exactly_two_bytes() {
        assert_eq!(
            decode(Version::V3_1_1, &[0x40, 0x03, 0x00, 0x01, 0x00]),
            Err(DecodeError::TrailingBytes(1))
        );
        assert_eq!(decode(Version::V3_1_1, &[0x40, 0x01, 0x00]), Err(DecodeError::Truncated));
        assert_eq!(decode(Version::V3_1_1, &[0x40, 0x00]), Err(DecodeError::Truncated));
    }

    #[test]
    fn acks_of_packet_id_0_are_refused() {
        assert_eq!(
            decode(Version::V3_1_1, &[0x40, 0x02, 0x00, 0x00]),
            Err(DecodeError::PacketIdZero(PacketType::PubAck))
        );
        assert!(encode(&Packet::PubComp(Ack::new(0)), Version::V5, &mut BytesMut::new()).is_err());
    }

    #[test]
    fn v3_acks_drop_reason_and_properties_when_encoded() {
        let a = Ack {
            pkid: 7,
            reason: ReasonCode::NOT_AUTHORIZED,
            properties: Properties::new(),
        };
        assert_eq!(encoded(&Packet::PubAck(a), Version::V3_1_1), [0x40, 0x02, 0x00, 0x07]);
    }
}
