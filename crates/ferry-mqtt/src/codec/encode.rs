//! The encoder: any packet, for any version, into a `BytesMut`.
//!
//! A packet is checked and measured first, then written straight into the output with
//! its payload copied once; on error nothing is written (mqttbytes 0.6 leaves half a
//! packet in the buffer when it refuses a QoS 1 PUBLISH with packet identifier 0, and
//! silently truncates strings over 65,535 bytes to their length modulo 65,536).

use bytes::{BufMut, Bytes, BytesMut};

use super::connect;
use super::control;
use super::error::EncodeError;
use super::packet::{Packet, PacketType, Version};
use super::publish;
use super::subscribe;
use super::wire::{self, MAX_VARINT};

/// Checks `packet` for `version` and returns its first byte and remaining length.
fn measure(packet: &Packet, version: Version) -> Result<(u8, usize), EncodeError> {
    let ty = packet.packet_type();
    let byte1 = match packet {
        Packet::Publish(p) => publish::publish_byte1(p),
        _ => ((ty as u8) << 4) | ty.required_flags().unwrap_or(0),
    };
    let len = match packet {
        Packet::Connect(c) => connect::connect_len(c, version)?,
        Packet::ConnAck(c) => connect::connack_len(c, version)?,
        Packet::Publish(p) => publish::publish_len(p, version)?,
        Packet::PubAck(a) => publish::ack_len(PacketType::PubAck, a, version)?,
        Packet::PubRec(a) => publish::ack_len(PacketType::PubRec, a, version)?,
        Packet::PubRel(a) => publish::ack_len(PacketType::PubRel, a, version)?,
        Packet::PubComp(a) => publish::ack_len(PacketType::PubComp, a, version)?,
        Packet::Subscribe(s) => subscribe::subscribe_len(s, version)?,
        Packet::SubAck(s) => subscribe::suback_len(s, version)?,
        Packet::Unsubscribe(u) => subscribe::unsubscribe_len(u, version)?,
        Packet::UnsubAck(u) => subscribe::unsuback_len(u, version)?,
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(d) => control::disconnect_len(d, version)?,
        Packet::Auth(a) => control::auth_len(a, version)?,
    };
    if len > MAX_VARINT {
        return Err(EncodeError::PacketTooLarge(len));
    }
    Ok((byte1, len))
}

/// The size `packet` takes encoded for `version`, fixed header included: what 5.0's
/// Maximum Packet Size is compared with.
pub fn encoded_len(packet: &Packet, version: Version) -> Result<usize, EncodeError> {
    let (_, len) = measure(packet, version)?;
    Ok(1 + wire::varint_len(len) + len)
}

/// Appends `packet`, encoded for `version`, to `out`; returns the number of bytes
/// written. Fields that `version` lacks are not written: properties and reason codes
/// under 3.x (a 5.0 CONNACK or SUBACK failure code becomes its 3.x equivalent). On
/// error `out` is left as it was.
pub fn encode(packet: &Packet, version: Version, out: &mut BytesMut) -> Result<usize, EncodeError> {
    let (byte1, len) = measure(packet, version)?;
    let total = 1 + wire::varint_len(len) + len;
    out.reserve(total);
    let start = out.len();
    out.put_u8(byte1);
    wire::put_varint(out, len);
    match packet {
        Packet::Connect(c) => connect::write_connect(c, version, out),
        Packet::ConnAck(c) => connect::write_connack(c, version, out),
        Packet::Publish(p) => publish::write_publish(p, version, out),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => publish::write_ack(a, version, out),
        Packet::Subscribe(s) => subscribe::write_subscribe(s, version, out),
        Packet::SubAck(s) => subscribe::write_suback(s, version, out),
        Packet::Unsubscribe(u) => subscribe::write_unsubscribe(u, version, out),
        Packet::UnsubAck(u) => subscribe::write_unsuback(u, version, out),
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => control::write_disconnect(d, version, out),
        Packet::Auth(a) => control::write_auth(a, out),
    }
    debug_assert_eq!(
        out.len() - start,
        total,
        "{} measured and written differently",
        packet.packet_type()
    );
    Ok(out.len() - start)
}

/// [`encode`] into a buffer of its own.
pub fn encode_to_bytes(packet: &Packet, version: Version) -> Result<Bytes, EncodeError> {
    let mut out = BytesMut::new();
    encode(packet, version, &mut out)?;
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::super::{
        Ack, Auth, ConnAck, Connect, DecodeError, Decoder, Disconnect, Properties, Property, Publish, QoS, ReasonCode, RetainHandling,
        Role, SubAck, Subscribe, Subscription, UnsubAck, Unsubscribe, Will,
    };
    use super::*;

    /// One packet of every type with every field set, valid for `version`.
    fn every_packet(version: Version) -> Vec<(Role, Packet)> {
        let v5 = version.is_v5();
        let props = |list: Vec<Property>| if v5 { list.into_iter().collect() } else { Properties::new() };
        let user = || Property::UserProperty("k".into(), "v".into());
        let mut connect = Connect::new(version, "client-1");
        connect.clean_start = false;
        connect.keep_alive = 30;
        connect.username = Some("user".into());
        connect.password = Some(Bytes::from_static(b"secret"));
        connect.properties = props(vec![
            Property::SessionExpiryInterval(60),
            Property::ReceiveMaximum(10),
            Property::MaximumPacketSize(1 << 20),
            Property::TopicAliasMaximum(5),
            Property::RequestResponseInformation(1),
            Property::RequestProblemInformation(0),
            user(),
            Property::AuthenticationMethod("m".into()),
            Property::AuthenticationData(Bytes::from_static(b"d")),
        ]);
        connect.will = Some(Will {
            topic: "will/topic".into(),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: props(vec![
                Property::WillDelayInterval(5),
                Property::PayloadFormatIndicator(1),
                Property::MessageExpiryInterval(9),
                Property::ContentType("text/plain".into()),
                Property::ResponseTopic("re/ply".into()),
                Property::CorrelationData(Bytes::from_static(b"c")),
                user(),
            ]),
        });
        // 3.1 has no Session Present.
        let mut connack = ConnAck::accepted(version != Version::V3_1);
        connack.properties = props(vec![
            Property::SessionExpiryInterval(1),
            Property::ReceiveMaximum(2),
            Property::MaximumQoS(1),
            Property::RetainAvailable(0),
            Property::MaximumPacketSize(3),
            Property::AssignedClientIdentifier("auto-1".into()),
            Property::TopicAliasMaximum(4),
            Property::ReasonString("why".into()),
            user(),
            Property::WildcardSubscriptionAvailable(1),
            Property::SubscriptionIdentifierAvailable(1),
            Property::SharedSubscriptionAvailable(0),
            Property::ServerKeepAlive(20),
            Property::ResponseInformation("info".into()),
            Property::ServerReference("other".into()),
            Property::AuthenticationMethod("m".into()),
            Property::AuthenticationData(Bytes::from_static(b"d")),
        ]);
        let publish = |sender: Role| {
            let mut p = Publish::new("a/b", QoS::AtLeastOnce, Bytes::from_static(b"payload"));
            p.pkid = 7;
            p.dup = true;
            p.retain = true;
            let mut list = vec![
                Property::PayloadFormatIndicator(0),
                Property::MessageExpiryInterval(30),
                Property::TopicAlias(3),
                Property::ResponseTopic("r".into()),
                Property::CorrelationData(Bytes::from_static(b"x")),
                user(),
                Property::ContentType("ct".into()),
            ];
            if sender == Role::Server {
                list.push(Property::SubscriptionIdentifier(268_435_455));
                list.push(Property::SubscriptionIdentifier(1));
            }
            p.properties = props(list);
            p
        };
        let ack = |reason: ReasonCode| Ack {
            pkid: 9,
            reason: if v5 { reason } else { ReasonCode::SUCCESS },
            properties: props(vec![Property::ReasonString("r".into()), user()]),
        };
        let subscribe = Subscribe {
            pkid: 11,
            subscriptions: vec![
                Subscription::new("a/+/c", QoS::AtMostOnce),
                Subscription {
                    filter: "$share/g/#".into(),
                    qos: QoS::ExactlyOnce,
                    no_local: false,
                    retain_as_published: v5,
                    retain_handling: if v5 {
                        RetainHandling::DoNotSend
                    } else {
                        RetainHandling::SendAtSubscribe
                    },
                },
                Subscription {
                    filter: "x".into(),
                    qos: QoS::AtLeastOnce,
                    no_local: v5,
                    retain_as_published: false,
                    retain_handling: if v5 {
                        RetainHandling::SendAtNewSubscribe
                    } else {
                        RetainHandling::SendAtSubscribe
                    },
                },
            ],
            properties: props(vec![Property::SubscriptionIdentifier(42), user()]),
        };
        let suback = SubAck {
            pkid: 11,
            codes: vec![
                ReasonCode::SUCCESS,
                ReasonCode::GRANTED_QOS_2,
                ReasonCode::GRANTED_QOS_1,
                ReasonCode::UNSPECIFIED_ERROR,
            ],
            properties: props(vec![Property::ReasonString("r".into()), user()]),
        };
        let unsubscribe = Unsubscribe {
            pkid: 12,
            filters: vec!["a/#".into(), "+".into()],
            properties: props(vec![user()]),
        };
        let unsuback = UnsubAck {
            pkid: 12,
            codes: if v5 {
                vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
            } else {
                vec![]
            },
            properties: props(vec![Property::ReasonString("r".into()), user()]),
        };
        let disconnect = |sender: Role| Disconnect {
            reason: if v5 {
                ReasonCode::DISCONNECT_WITH_WILL
            } else {
                ReasonCode::SUCCESS
            },
            properties: props(if sender == Role::Client {
                vec![Property::SessionExpiryInterval(0), Property::ReasonString("r".into()), user()]
            } else {
                vec![Property::ServerReference("s".into()), Property::ReasonString("r".into()), user()]
            }),
        };
        let mut packets = vec![
            (Role::Client, Packet::Connect(connect)),
            (Role::Server, Packet::ConnAck(connack)),
            (Role::Client, Packet::Publish(publish(Role::Client))),
            (Role::Server, Packet::Publish(publish(Role::Server))),
            (Role::Client, Packet::PubAck(ack(ReasonCode::NO_MATCHING_SUBSCRIBERS))),
            (Role::Server, Packet::PubRec(ack(ReasonCode::QUOTA_EXCEEDED))),
            (Role::Client, Packet::PubRel(ack(ReasonCode::PACKET_IDENTIFIER_NOT_FOUND))),
            (Role::Server, Packet::PubComp(ack(ReasonCode::SUCCESS))),
            (Role::Client, Packet::Subscribe(subscribe)),
            (Role::Server, Packet::SubAck(suback)),
            (Role::Client, Packet::Unsubscribe(unsubscribe)),
            (Role::Server, Packet::UnsubAck(unsuback)),
            (Role::Client, Packet::PingReq),
            (Role::Server, Packet::PingResp),
            (Role::Client, Packet::Disconnect(disconnect(Role::Client))),
            (Role::Server, Packet::Disconnect(disconnect(Role::Server))),
        ];
        if v5 {
            let auth = Auth {
                reason: ReasonCode::CONTINUE_AUTHENTICATION,
                properties: props(vec![
                    Property::AuthenticationMethod("SCRAM-SHA-1".into()),
                    Property::AuthenticationData(Bytes::from_static(b"n,,n=user")),
                    Property::ReasonString("r".into()),
                    user(),
                ]),
            };
            packets.push((Role::Client, Packet::Auth(auth.clone())));
            packets.push((Role::Server, Packet::Auth(auth)));
        }
        packets
    }

    /// A decoder for what `sender` sends.
    fn decoder_for(sender: Role, packet: &Packet, version: Version) -> Decoder {
        match (sender, packet) {
            (Role::Client, Packet::Connect(_)) => Decoder::server(1 << 20),
            (Role::Client, _) => Decoder::server_with_version(version, 1 << 20),
            (Role::Server, _) => Decoder::client(version, 1 << 20),
        }
    }

    #[test]
    fn every_packet_round_trips_in_every_version() {
        for version in [Version::V3_1, Version::V3_1_1, Version::V5] {
            for (sender, packet) in every_packet(version) {
                let mut buf = BytesMut::new();
                let n = encode(&packet, version, &mut buf).unwrap_or_else(|e| panic!("{version} {packet:?}: {e}"));
                assert_eq!(n, buf.len());
                assert_eq!(encoded_len(&packet, version), Ok(n));
                let bytes = buf.clone();
                let mut dec = decoder_for(sender, &packet, version);
                let back = dec.decode(&mut buf).unwrap_or_else(|e| panic!("{version} {packet:?}: {e}"));
                assert_eq!(back.as_ref(), Some(&packet), "{version}");
                assert!(buf.is_empty());
                assert_eq!(dec.version(), Some(version));
                assert_eq!(encode_to_bytes(&packet, version).unwrap(), bytes);
            }
        }
    }

    #[test]
    fn mqttbytes_reads_what_we_write() {
        // An independent reader agrees on every packet type it implements correctly.
        for version in [Version::V3_1_1, Version::V5] {
            for (_, packet) in every_packet(version) {
                let bytes = encode_to_bytes(&packet, version).unwrap();
                if let Err(e) = super::super::oracle::check(&bytes, version, &packet) {
                    panic!("{version} {}: {e}", packet.packet_type());
                }
            }
        }
    }

    #[test]
    fn nothing_is_written_on_error() {
        let mut out = BytesMut::from(&b"keep"[..]);
        let bad = Packet::Publish(Publish::new("a/+", QoS::AtMostOnce, Bytes::new()));
        assert!(encode(&bad, Version::V3_1_1, &mut out).is_err());
        let zero = Packet::Publish(Publish::new("a", QoS::AtLeastOnce, Bytes::new()));
        assert_eq!(
            encode(&zero, Version::V5, &mut out),
            Err(EncodeError::Invalid(DecodeError::PacketIdZero(PacketType::Publish)))
        );
        assert_eq!(&out[..], b"keep");
    }

    #[test]
    fn overlong_fields_are_refused_not_truncated() {
        let long = "x".repeat(65_536);
        let p = Packet::Publish(Publish::new(long.as_str(), QoS::AtMostOnce, Bytes::new()));
        assert_eq!(
            encode(&p, Version::V3_1_1, &mut BytesMut::new()),
            Err(EncodeError::FieldTooLong(65_536))
        );
        let mut c = Connect::new(Version::V5, "c");
        c.password = Some(Bytes::from(vec![0; 70_000]));
        assert_eq!(
            encode(&Packet::Connect(c), Version::V5, &mut BytesMut::new()),
            Err(EncodeError::FieldTooLong(70_000))
        );
    }

    #[test]
    fn packets_over_the_protocol_limit_are_refused() {
        let p = Packet::Publish(Publish::new("a", QoS::AtMostOnce, Bytes::from(vec![0; MAX_VARINT])));
        assert_eq!(
            encode(&p, Version::V3_1_1, &mut BytesMut::new()),
            Err(EncodeError::PacketTooLarge(MAX_VARINT + 3))
        );
        let p = Packet::Publish(Publish::new("a", QoS::AtMostOnce, Bytes::from(vec![0; MAX_VARINT - 3])));
        assert_eq!(encoded_len(&p, Version::V3_1_1), Ok(1 + 4 + MAX_VARINT));
    }

    #[test]
    fn a_connect_is_encoded_in_its_own_version() {
        let c = Packet::Connect(Connect::new(Version::V5, "c"));
        assert_eq!(
            encode(&c, Version::V3_1_1, &mut BytesMut::new()),
            Err(EncodeError::VersionMismatch {
                connect: Version::V5,
                requested: Version::V3_1_1
            })
        );
    }

    #[test]
    fn v3_drops_what_it_cannot_say() {
        let mut p = Publish::new("a", QoS::AtMostOnce, Bytes::from_static(b"x"));
        p.properties.push(Property::UserProperty("k".into(), "v".into()));
        assert_eq!(
            &encode_to_bytes(&Packet::Publish(p), Version::V3_1_1).unwrap()[..],
            [0x30, 0x04, 0x00, 0x01, b'a', b'x']
        );
        let d = Packet::Disconnect(Disconnect::new(ReasonCode::SERVER_SHUTTING_DOWN));
        assert_eq!(&encode_to_bytes(&d, Version::V3_1_1).unwrap()[..], [0xE0, 0x00]);
    }
}
