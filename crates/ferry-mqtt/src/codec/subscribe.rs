//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK (3.1.1 §3.8 to §3.11, 5.0 §3.8 to §3.11).
//!
//! mqttbytes 0.6 has two bugs here that this module does not share: its 3.1.1
//! UNSUBSCRIBE parser keeps its own count of the payload bytes with unchecked
//! subtractions instead of reading to the end of the packet, and its 5.0 UNSUBSCRIBE
//! parser prints every packet identifier to stderr (a leftover `dbg!`). It also accepts
//! `sport+`, an empty SUBSCRIBE and reserved option bits.

use bytes::{BufMut, Bytes, BytesMut};

use super::decoder::Role;
use super::error::{DecodeError, EncodeError};
use super::packet::{qos_from_bits, PacketType, RetainHandling, SubAck, Subscribe, Subscription, UnsubAck, Unsubscribe, Version};
use super::properties::{self, Properties, Site};
use super::reason::ReasonCode;
use super::validate;
use super::wire::{self, Reader};

fn read_pkid(r: &mut Reader, packet: PacketType) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(DecodeError::PacketIdZero(packet)),
        pkid => Ok(pkid),
    }
}

fn read_properties(r: &mut Reader, version: Version, site: Site, sender: Role) -> Result<Properties, DecodeError> {
    if !version.is_v5() {
        return Ok(Properties::new());
    }
    let props = Properties::read(r)?;
    properties::check(&props, site, Some(sender))?;
    Ok(props)
}

fn props_len(props: &Properties, version: Version, site: Site) -> Result<usize, EncodeError> {
    if !version.is_v5() {
        return Ok(0);
    }
    properties::check(props, site, None)?;
    props.wire_len_prefixed()
}

/// Decodes the options byte of one subscription.
fn read_options(options: u8, version: Version, filter: bytestring::ByteString) -> Result<Subscription, DecodeError> {
    let reserved = if version.is_v5() { 0b1100_0000 } else { 0b1111_1100 };
    if options & reserved != 0 {
        return Err(DecodeError::SubscriptionOptionsReserved(options));
    }
    let qos = qos_from_bits(options).ok_or(DecodeError::InvalidQoS)?;
    let retain_handling = match (options >> 4) & 0b11 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendAtNewSubscribe,
        2 => RetainHandling::DoNotSend,
        _ => return Err(DecodeError::InvalidRetainHandling),
    };
    let sub = Subscription {
        filter,
        qos,
        no_local: options & 0b0100 != 0,
        retain_as_published: options & 0b1000 != 0,
        retain_handling,
    };
    check_subscription(&sub, version)?;
    Ok(sub)
}

/// The filter syntax, and No Local on a shared subscription (5.0 [MQTT-3.8.3-4]).
fn check_subscription(sub: &Subscription, version: Version) -> Result<(), DecodeError> {
    validate::topic_filter(&sub.filter)?;
    if version.is_v5() && sub.no_local && validate::is_shared(&sub.filter) {
        return Err(DecodeError::NoLocalOnSharedSubscription);
    }
    Ok(())
}

fn options_byte(sub: &Subscription, version: Version) -> u8 {
    let mut options = sub.qos as u8;
    if version.is_v5() {
        options |= (u8::from(sub.no_local) << 2) | (u8::from(sub.retain_as_published) << 3) | ((sub.retain_handling as u8) << 4);
    }
    options
}

/// Decodes a SUBSCRIBE body.
pub(super) fn decode_subscribe(body: Bytes, version: Version, sender: Role) -> Result<Subscribe, DecodeError> {
    let mut r = Reader::new(body);
    let pkid = read_pkid(&mut r, PacketType::Subscribe)?;
    let properties = read_properties(&mut r, version, Site::Subscribe, sender)?;
    let mut subscriptions = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        let options = r.u8()?;
        subscriptions.push(read_options(options, version, filter)?);
    }
    if subscriptions.is_empty() {
        return Err(DecodeError::NoSubscriptions);
    }
    Ok(Subscribe {
        pkid,
        subscriptions,
        properties,
    })
}

/// Checks a SUBSCRIBE for encoding as `version`; returns its remaining length. 3.x
/// writes only the QoS of each subscription's options.
pub(super) fn subscribe_len(s: &Subscribe, version: Version) -> Result<usize, EncodeError> {
    if s.pkid == 0 {
        return Err(DecodeError::PacketIdZero(PacketType::Subscribe).into());
    }
    if s.subscriptions.is_empty() {
        return Err(DecodeError::NoSubscriptions.into());
    }
    let mut len = 2 + props_len(&s.properties, version, Site::Subscribe)?;
    for sub in &s.subscriptions {
        check_subscription(sub, version)?;
        len += wire::string_len(&sub.filter)? + 1;
    }
    Ok(len)
}

/// Writes a SUBSCRIBE body checked by [`subscribe_len`].
pub(super) fn write_subscribe(s: &Subscribe, version: Version, out: &mut BytesMut) {
    out.put_u16(s.pkid);
    if version.is_v5() {
        s.properties.write(out);
    }
    for sub in &s.subscriptions {
        wire::put_binary(out, sub.filter.as_bytes());
        out.put_u8(options_byte(sub, version));
    }
}

/// Decodes a SUBACK body; a 3.x Failure (0x80) becomes [`ReasonCode::UNSPECIFIED_ERROR`].
pub(super) fn decode_suback(body: Bytes, version: Version, sender: Role) -> Result<SubAck, DecodeError> {
    let mut r = Reader::new(body);
    let pkid = read_pkid(&mut r, PacketType::SubAck)?;
    let properties = read_properties(&mut r, version, Site::SubAck, sender)?;
    let codes = read_codes(&mut r, PacketType::SubAck, |c| match version {
        Version::V5 => c.is_valid_for(PacketType::SubAck),
        _ => matches!(c.0, 0x00..=0x02 | 0x80),
    })?;
    Ok(SubAck { pkid, codes, properties })
}

fn read_codes(r: &mut Reader, packet: PacketType, valid: impl Fn(ReasonCode) -> bool) -> Result<Vec<ReasonCode>, DecodeError> {
    let mut codes = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        let code = ReasonCode(r.u8()?);
        if !valid(code) {
            return Err(DecodeError::InvalidReasonCode { packet, code });
        }
        codes.push(code);
    }
    if codes.is_empty() {
        return Err(DecodeError::NoReasonCodes(packet));
    }
    Ok(codes)
}

fn check_codes(codes: &[ReasonCode], packet: PacketType) -> Result<(), EncodeError> {
    if codes.is_empty() {
        return Err(DecodeError::NoReasonCodes(packet).into());
    }
    match codes.iter().find(|c| !c.is_valid_for(packet)) {
        Some(&code) => Err(DecodeError::InvalidReasonCode { packet, code }.into()),
        None => Ok(()),
    }
}

/// Checks a SUBACK for encoding as `version`; returns its remaining length.
pub(super) fn suback_len(s: &SubAck, version: Version) -> Result<usize, EncodeError> {
    if s.pkid == 0 {
        return Err(DecodeError::PacketIdZero(PacketType::SubAck).into());
    }
    check_codes(&s.codes, PacketType::SubAck)?;
    Ok(2 + props_len(&s.properties, version, Site::SubAck)? + s.codes.len())
}

/// Writes a SUBACK body checked by [`suback_len`]. 3.x has one failure code, 0x80:
/// every 5.0 failure is written as that.
pub(super) fn write_suback(s: &SubAck, version: Version, out: &mut BytesMut) {
    out.put_u16(s.pkid);
    if version.is_v5() {
        s.properties.write(out);
        out.extend(s.codes.iter().map(|c| c.0));
    } else {
        out.extend(s.codes.iter().map(|c| if c.is_error() { 0x80 } else { c.0 }));
    }
}

/// Decodes an UNSUBSCRIBE body.
pub(super) fn decode_unsubscribe(body: Bytes, version: Version, sender: Role) -> Result<Unsubscribe, DecodeError> {
    let mut r = Reader::new(body);
    let pkid = read_pkid(&mut r, PacketType::Unsubscribe)?;
    let properties = read_properties(&mut r, version, Site::Unsubscribe, sender)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        validate::topic_filter(&filter)?;
        filters.push(filter);
    }
    if filters.is_empty() {
        return Err(DecodeError::NoUnsubscriptions);
    }
    Ok(Unsubscribe { pkid, filters, properties })
}

/// Checks an UNSUBSCRIBE for encoding as `version`; returns its remaining length.
pub(super) fn unsubscribe_len(u: &Unsubscribe, version: Version) -> Result<usize, EncodeError> {
    if u.pkid == 0 {
        return Err(DecodeError::PacketIdZero(PacketType::Unsubscribe).into());
    }
    if u.filters.is_empty() {
        return Err(DecodeError::NoUnsubscriptions.into());
    }
    let mut len = 2 + props_len(&u.properties, version, Site::Unsubscribe)?;
    for filter in &u.filters {
        validate::topic_filter(filter)?;
        len += wire::string_len(filter)?;
    }
    Ok(len)
}

/// Writes an UNSUBSCRIBE body checked by [`unsubscribe_len`].
pub(super) fn write_unsubscribe(u: &Unsubscribe, version: Version, out: &mut BytesMut) {
    out.put_u16(u.pkid);
    if version.is_v5() {
        u.properties.write(out);
    }
    for filter in &u.filters {
        wire::put_binary(out, filter.as_bytes());
    }
}

/// Decodes an UNSUBACK body: just the packet identifier in 3.x.
pub(super) fn decode_unsuback(body: Bytes, version: Version, sender: Role) -> Result<UnsubAck, DecodeError> {
    let mut r = Reader::new(body);
    let pkid = read_pkid(&mut r, PacketType::UnsubAck)?;
    if !version.is_v5() {
        r.finish()?;
        return Ok(UnsubAck {
            pkid,
            codes: Vec::new(),
            properties: Properties::new(),
        });
    }
    let properties = read_properties(&mut r, version, Site::UnsubAck, sender)?;
    let codes = read_codes(&mut r, PacketType::UnsubAck, |c| c.is_valid_for(PacketType::UnsubAck))?;
    Ok(UnsubAck { pkid, codes, properties })
}

/// Checks an UNSUBACK for encoding as `version`; returns its remaining length.
pub(super) fn unsuback_len(u: &UnsubAck, version: Version) -> Result<usize, EncodeError> {
    if u.pkid == 0 {
        return Err(DecodeError::PacketIdZero(PacketType::UnsubAck).into());
    }
    if !version.is_v5() {
        return Ok(2);
    }
    check_codes(&u.codes, PacketType::UnsubAck)?;
    Ok(2 + props_len(&u.properties, version, Site::UnsubAck)? + u.codes.len())
}

/// Writes an UNSUBACK body checked by [`unsuback_len`].
pub(super) fn write_unsuback(u: &UnsubAck, version: Version, out: &mut BytesMut) {
    out.put_u16(u.pkid);
    if version.is_v5() {
        u.properties.write(out);
        out.extend(u.codes.iter().map(|c| c.0));
    }
}

#[cfg(test)]
mod tests {
    use super::super::{encode, Packet, Property, QoS};
    use super::*;

    use super::super::test_support::decode_as;

    fn decode(version: Version, bytes: &[u8]) -> Result<Packet, DecodeError> {
        decode_as(Role::Server, version, bytes)
    }

    fn encoded(packet: &Packet, version: Version) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(packet, version, &mut out).unwrap();
        out.to_vec()
    }

    /// 3.1.1 §3.8.2 Figure 3.21 and §3.8.3 Figure 3.22: packet identifier 10, "a/b" at
    /// QoS 1 and "c/d" at QoS 2.
    const V311_SUBSCRIBE: &[u8] = &[
        0x82, 0x0E, 0x00, 0x0A, 0x00, 0x03, b'a', b'/', b'b', 0x01, 0x00, 0x03, b'c', b'/', b'd', 0x02,
    ];

    #[test]
    fn v3_subscribe_from_the_spec() {
        let Packet::Subscribe(s) = decode(Version::V3_1_1, V311_SUBSCRIBE).unwrap() else {
            panic!()
        };
        assert_eq!(s.pkid, 10);
        assert_eq!(
            s.subscriptions,
            [
                Subscription::new("a/b", QoS::AtLeastOnce),
                Subscription::new("c/d", QoS::ExactlyOnce)
            ]
        );
        assert_eq!(encoded(&Packet::Subscribe(s), Version::V3_1_1), V311_SUBSCRIBE);
    }

    #[test]
    fn v5_subscribe_with_options_and_identifier() {
        // 5.0 §3.8.3 Figure 3-21's filters, with property Subscription Identifier 7 and
        // options No Local, Retain As Published and Retain Handling 2 on "c/d".
        let bytes = [
            0x82, 0x11, 0x00, 0x0A, 0x02, 0x0B, 0x07, 0x00, 0x03, b'a', b'/', b'b', 0x01, 0x00, 0x03, b'c', b'/', b'd', 0x2E,
        ];
        let Packet::Subscribe(s) = decode(Version::V5, &bytes).unwrap() else {
            panic!()
        };
        assert_eq!(s.properties.subscription_identifiers().collect::<Vec<_>>(), [7]);
        let cd = &s.subscriptions[1];
        assert_eq!(
            (cd.qos, cd.no_local, cd.retain_as_published, cd.retain_handling),
            (QoS::ExactlyOnce, true, true, RetainHandling::DoNotSend)
        );
        assert_eq!(encoded(&Packet::Subscribe(s), Version::V5), bytes);
    }

    #[test]
    fn subscribe_without_filters_is_refused() {
        assert_eq!(
            decode(Version::V3_1_1, &[0x82, 0x02, 0x00, 0x01]),
            Err(DecodeError::NoSubscriptions)
        );
        assert_eq!(
            decode(Version::V5, &[0x82, 0x03, 0x00, 0x01, 0x00]),
            Err(DecodeError::NoSubscriptions)
        );
        let empty = Subscribe {
            pkid: 1,
            subscriptions: vec![],
            properties: Properties::new(),
        };
        assert!(encode(&Packet::Subscribe(empty), Version::V3_1_1, &mut BytesMut::new()).is_err());
    }

    #[test]
    fn subscribe_filter_syntax_is_checked() {
        // "sport+" (mqttbytes accepts it) and "a/#/b".
        let bytes = [0x82, 0x0B, 0x00, 0x01, 0x00, 0x06, b's', b'p', b'o', b'r', b't', b'+', 0x00];
        assert!(matches!(decode(Version::V3_1_1, &bytes), Err(DecodeError::InvalidTopicFilter(_))));
        let bytes = [0x82, 0x0A, 0x00, 0x01, 0x00, 0x05, b'a', b'/', b'#', b'/', b'b', 0x00];
        assert!(matches!(decode(Version::V3_1_1, &bytes), Err(DecodeError::InvalidTopicFilter(_))));
        // Empty filter.
        assert!(matches!(
            decode(Version::V3_1_1, &[0x82, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00]),
            Err(DecodeError::InvalidTopicFilter(_))
        ));
    }

    #[test]
    fn subscribe_packet_id_0_is_refused() {
        let bytes = [0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b'a', 0x00];
        assert_eq!(
            decode(Version::V3_1_1, &bytes),
            Err(DecodeError::PacketIdZero(PacketType::Subscribe))
        );
    }

    #[test]
    fn subscription_options_reserved_bits() {
        // 3.1.1: bits 2-7 reserved.
        let bytes = [0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x04];
        assert_eq!(decode(Version::V3_1_1, &bytes), Err(DecodeError::SubscriptionOptionsReserved(0x04)));
        assert!(decode(Version::V5, &[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x04]).is_ok());
        // 5.0: bits 6-7 reserved.
        let bytes = [0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x40];
        assert_eq!(decode(Version::V5, &bytes), Err(DecodeError::SubscriptionOptionsReserved(0x40)));
    }

    #[test]
    fn subscription_qos_3_and_retain_handling_3() {
        assert_eq!(
            decode(Version::V3_1_1, &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x03]),
            Err(DecodeError::InvalidQoS)
        );
        assert_eq!(
            decode(Version::V5, &[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x30]),
            Err(DecodeError::InvalidRetainHandling)
        );
    }

    #[test]
    fn no_local_on_a_shared_subscription() {
        let mut bytes = vec![0x82, 0x0F, 0x00, 0x01, 0x00, 0x00, 0x09];
        bytes.extend_from_slice(b"$share/g/");
        bytes.extend_from_slice(&[0x04]);
        // "$share/g/" has an empty filter: that is caught first.
        assert!(matches!(decode(Version::V5, &bytes), Err(DecodeError::InvalidTopicFilter(_))));
        let mut bytes = vec![0x82, 0x10, 0x00, 0x01, 0x00, 0x00, 0x0A];
        bytes.extend_from_slice(b"$share/g/a");
        bytes.push(0x04);
        assert_eq!(decode(Version::V5, &bytes), Err(DecodeError::NoLocalOnSharedSubscription));
        *bytes.last_mut().unwrap() = 0x00;
        assert!(decode(Version::V5, &bytes).is_ok());
    }

    #[test]
    fn suback_from_the_spec() {
        // 3.1.1 §3.9.3 Figure 3.26: granted QoS 0, granted QoS 2, failure.
        let bytes = [0x90, 0x05, 0x00, 0x0A, 0x00, 0x02, 0x80];
        let Packet::SubAck(s) = decode_as(Role::Client, Version::V3_1_1, &bytes).unwrap() else {
            panic!()
        };
        assert_eq!(
            s.codes,
            [ReasonCode::SUCCESS, ReasonCode::GRANTED_QOS_2, ReasonCode::UNSPECIFIED_ERROR]
        );
        assert_eq!(encoded(&Packet::SubAck(s), Version::V3_1_1), bytes);
        // A 5.0 failure code goes out as 3.x's single failure code.
        let s = SubAck {
            pkid: 1,
            codes: vec![ReasonCode::NOT_AUTHORIZED],
            properties: Properties::new(),
        };
        assert_eq!(encoded(&Packet::SubAck(s.clone()), Version::V3_1_1), [0x90, 0x03, 0x00, 0x01, 0x80]);
        assert_eq!(encoded(&Packet::SubAck(s), Version::V5), [0x90, 0x04, 0x00, 0x01, 0x00, 0x87]);
    }

    #[test]
    fn suback_codes_are_checked() {
        assert!(matches!(
            decode_as(Role::Client, Version::V3_1_1, &[0x90, 0x03, 0x00, 0x01, 0x87]),
            Err(DecodeError::InvalidReasonCode { .. })
        ));
        assert!(decode_as(Role::Client, Version::V5, &[0x90, 0x04, 0x00, 0x01, 0x00, 0x87]).is_ok());
        assert!(matches!(
            decode_as(Role::Client, Version::V5, &[0x90, 0x04, 0x00, 0x01, 0x00, 0x03]),
            Err(DecodeError::InvalidReasonCode { .. })
        ));
        assert_eq!(
            decode_as(Role::Client, Version::V3_1_1, &[0x90, 0x02, 0x00, 0x01]),
            Err(DecodeError::NoReasonCodes(PacketType::SubAck))
        );
    }

    /// 3.1.1 §3.10.3 Figure 3.30: packet identifier 10, "a/b" and "c/d".
    const V311_UNSUBSCRIBE: &[u8] = &[0xA2, 0x0C, 0x00, 0x0A, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x03, b'c', b'/', b'd'];

    #[test]
    fn unsubscribe_from_the_spec() {
        let Packet::Unsubscribe(u) = decode(Version::V3_1_1, V311_UNSUBSCRIBE).unwrap() else {
            panic!()
        };
        assert_eq!(
            (u.pkid, u.filters.iter().map(|f| f.to_string()).collect::<Vec<_>>()),
            (10, vec!["a/b".into(), "c/d".into()])
        );
        assert_eq!(encoded(&Packet::Unsubscribe(u.clone()), Version::V3_1_1), V311_UNSUBSCRIBE);
        // 5.0 §3.10.3 Figure 3-29: the same filters after a property length of 0.
        let v5 = encoded(&Packet::Unsubscribe(u), Version::V5);
        assert_eq!(
            v5,
            [0xA2, 0x0D, 0x00, 0x0A, 0x00, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x03, b'c', b'/', b'd']
        );
        assert!(decode(Version::V5, &v5).is_ok());
    }

    #[test]
    fn unsubscribe_without_filters_is_refused() {
        assert_eq!(
            decode(Version::V3_1_1, &[0xA2, 0x02, 0x00, 0x01]),
            Err(DecodeError::NoUnsubscriptions)
        );
        assert_eq!(
            decode(Version::V5, &[0xA2, 0x03, 0x00, 0x01, 0x00]),
            Err(DecodeError::NoUnsubscriptions)
        );
    }

    #[test]
    fn hostile_unsubscribe_regressions() {
        // mqttbytes' 3.1.1 parser tracks remaining payload bytes with an unchecked
        // subtraction: a string running past the end, a lone length byte, odd sizes.
        for bytes in [
            &[0xA2, 0x03, 0x00, 0x01, 0x00][..],
            &[0xA2, 0x05, 0x00, 0x01, 0x00, 0x05, b'a'],
            &[0xA2, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00],
            &[0xA2, 0x01, 0x00],
        ] {
            assert!(decode(Version::V3_1_1, bytes).is_err(), "{bytes:02x?}");
        }
        // Filters are filters.
        assert!(matches!(
            decode(Version::V3_1_1, &[0xA2, 0x06, 0x00, 0x01, 0x00, 0x02, b'a', b'+']),
            Err(DecodeError::InvalidTopicFilter(_))
        ));
    }

    #[test]
    fn unsuback_forms() {
        // 3.1.1 §3.11: just the packet identifier.
        let Packet::UnsubAck(u) = decode_as(Role::Client, Version::V3_1_1, &[0xB0, 0x02, 0x00, 0x0A]).unwrap() else {
            panic!()
        };
        assert_eq!((u.pkid, u.codes.len()), (10, 0));
        assert_eq!(encoded(&Packet::UnsubAck(u), Version::V3_1_1), [0xB0, 0x02, 0x00, 0x0A]);
        assert_eq!(
            decode_as(Role::Client, Version::V3_1_1, &[0xB0, 0x03, 0x00, 0x0A, 0x00]),
            Err(DecodeError::TrailingBytes(1))
        );
        // 5.0: properties and one code per filter.
        let bytes = [0xB0, 0x05, 0x00, 0x0A, 0x00, 0x00, 0x11];
        let Packet::UnsubAck(u) = decode_as(Role::Client, Version::V5, &bytes).unwrap() else {
            panic!()
        };
        assert_eq!(u.codes, [ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]);
        assert_eq!(encoded(&Packet::UnsubAck(u), Version::V5), bytes);
        assert_eq!(
            decode_as(Role::Client, Version::V5, &[0xB0, 0x03, 0x00, 0x0A, 0x00]),
            Err(DecodeError::NoReasonCodes(PacketType::UnsubAck))
        );
    }

    #[test]
    fn unsubscribe_properties_are_user_properties_only() {
        let bytes = [0xA2, 0x08, 0x00, 0x01, 0x02, 0x0B, 0x01, 0x00, 0x01, b'a'];
        assert!(matches!(decode(Version::V5, &bytes), Err(DecodeError::PropertyNotAllowed { .. })));
        let u = Unsubscribe {
            pkid: 1,
            filters: vec!["a".into()],
            properties: Properties::new().with(Property::UserProperty("k".into(), "v".into())),
        };
        let bytes = encoded(&Packet::Unsubscribe(u.clone()), Version::V5);
        assert_eq!(decode(Version::V5, &bytes), Ok(Packet::Unsubscribe(u)));
    }
}
