//! The packets, one version-independent type per MQTT control packet.
//!
//! A value here means the same thing whatever version it came from or goes to: reason
//! codes are MQTT 5.0's (a 3.x CONNACK return code or SUBACK failure is mapped onto its
//! 5.0 equivalent when decoded and back when encoded), and [`Properties`] are simply
//! empty for 3.x. Strings are [`ByteString`]s and payloads [`Bytes`]: both are slices of
//! the buffer the packet was decoded from, so decoding copies no text and no payload,
//! and cloning a packet copies neither.

use std::fmt;

use bytes::Bytes;
use bytestring::ByteString;

pub use ferry_core::QoS;

use super::properties::Properties;
use super::reason::ReasonCode;

/// An MQTT protocol version, as settled by the CONNECT packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// MQTT 3.1: protocol name `MQIsdp`, level 3. Handled with 3.1.1's semantics plus
    /// 3.1's client identifier rule (1 to 23 bytes).
    V3_1,
    /// MQTT 3.1.1: protocol name `MQTT`, level 4.
    V3_1_1,
    /// MQTT 5.0: protocol name `MQTT`, level 5.
    V5,
}

impl Version {
    /// The protocol name written in CONNECT.
    pub fn protocol_name(self) -> &'static str {
        match self {
            Version::V3_1 => "MQIsdp",
            Version::V3_1_1 | Version::V5 => "MQTT",
        }
    }

    /// The protocol level written in CONNECT.
    pub fn level(self) -> u8 {
        match self {
            Version::V3_1 => 3,
            Version::V3_1_1 => 4,
            Version::V5 => 5,
        }
    }

    /// Whether this is MQTT 5.0 (properties, reason codes, AUTH).
    pub fn is_v5(self) -> bool {
        self == Version::V5
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V3_1 => "MQTT 3.1",
            Version::V3_1_1 => "MQTT 3.1.1",
            Version::V5 => "MQTT 5.0",
        })
    }
}

/// The QoS for the two QoS bits of a header or option byte, `None` for the invalid 3.
pub(crate) fn qos_from_bits(bits: u8) -> Option<QoS> {
    QoS::from_u8(bits & 0b11)
}

/// The 16 values of a fixed header's packet type nibble that MQTT defines (0 is reserved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// 1: client request to connect.
    Connect = 1,
    /// 2: connect acknowledgement.
    ConnAck = 2,
    /// 3: publish message.
    Publish = 3,
    /// 4: QoS 1 publish acknowledgement.
    PubAck = 4,
    /// 5: QoS 2 publish received.
    PubRec = 5,
    /// 6: QoS 2 publish release.
    PubRel = 6,
    /// 7: QoS 2 publish complete.
    PubComp = 7,
    /// 8: subscribe request.
    Subscribe = 8,
    /// 9: subscribe acknowledgement.
    SubAck = 9,
    /// 10: unsubscribe request.
    Unsubscribe = 10,
    /// 11: unsubscribe acknowledgement.
    UnsubAck = 11,
    /// 12: ping request.
    PingReq = 12,
    /// 13: ping response.
    PingResp = 13,
    /// 14: disconnect notification.
    Disconnect = 14,
    /// 15: authentication exchange (5.0 only; reserved in 3.x).
    Auth = 15,
}

impl PacketType {
    /// The packet type for a fixed header's high nibble; `None` for the reserved 0.
    pub fn from_nibble(nibble: u8) -> Option<PacketType> {
        use PacketType::*;
        Some(match nibble {
            1 => Connect,
            2 => ConnAck,
            3 => Publish,
            4 => PubAck,
            5 => PubRec,
            6 => PubRel,
            7 => PubComp,
            8 => Subscribe,
            9 => SubAck,
            10 => Unsubscribe,
            11 => UnsubAck,
            12 => PingReq,
            13 => PingResp,
            14 => Disconnect,
            15 => Auth,
            _ => return None,
        })
    }

    /// The flags nibble every packet of this type must carry (MQTT 3.1.1 §2.2.2, 5.0
    /// §2.1.3); `None` for PUBLISH, whose flags are DUP, QoS and RETAIN.
    pub fn required_flags(self) -> Option<u8> {
        match self {
            PacketType::Publish => None,
            PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => Some(0b0010),
            _ => Some(0),
        }
    }

    /// Whether a client sends this packet to a server.
    pub fn sent_by_client(self) -> bool {
        !matches!(
            self,
            PacketType::ConnAck | PacketType::SubAck | PacketType::UnsubAck | PacketType::PingResp
        )
    }

    /// Whether a server sends this packet to a client.
    pub fn sent_by_server(self) -> bool {
        !matches!(
            self,
            PacketType::Connect | PacketType::Subscribe | PacketType::Unsubscribe | PacketType::PingReq
        )
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PacketType::Connect => "CONNECT",
            PacketType::ConnAck => "CONNACK",
            PacketType::Publish => "PUBLISH",
            PacketType::PubAck => "PUBACK",
            PacketType::PubRec => "PUBREC",
            PacketType::PubRel => "PUBREL",
            PacketType::PubComp => "PUBCOMP",
            PacketType::Subscribe => "SUBSCRIBE",
            PacketType::SubAck => "SUBACK",
            PacketType::Unsubscribe => "UNSUBSCRIBE",
            PacketType::UnsubAck => "UNSUBACK",
            PacketType::PingReq => "PINGREQ",
            PacketType::PingResp => "PINGRESP",
            PacketType::Disconnect => "DISCONNECT",
            PacketType::Auth => "AUTH",
        })
    }
}

/// What to do with retained messages when a subscription is made (5.0 §3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe (3.x behaviour).
    #[default]
    SendAtSubscribe = 0,
    /// 1: send them only if the subscription did not already exist.
    SendAtNewSubscribe = 1,
    /// 2: do not send them.
    DoNotSend = 2,
}

/// One decoded MQTT control packet, whatever its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT, client → server.
    Connect(Connect),
    /// CONNACK, server → client.
    ConnAck(ConnAck),
    /// PUBLISH, both ways.
    Publish(Publish),
    /// PUBACK, both ways.
    PubAck(Ack),
    /// PUBREC, both ways.
    PubRec(Ack),
    /// PUBREL, both ways.
    PubRel(Ack),
    /// PUBCOMP, both ways.
    PubComp(Ack),
    /// SUBSCRIBE, client → server.
    Subscribe(Subscribe),
    /// SUBACK, server → client.
    SubAck(SubAck),
    /// UNSUBSCRIBE, client → server.
    Unsubscribe(Unsubscribe),
    /// UNSUBACK, server → client.
    UnsubAck(UnsubAck),
    /// PINGREQ, client → server.
    PingReq,
    /// PINGRESP, server → client.
    PingResp,
    /// DISCONNECT: client → server in 3.x, both ways in 5.0.
    Disconnect(Disconnect),
    /// AUTH, both ways, 5.0 only.
    Auth(Auth),
}

impl Packet {
    /// This packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }
}

/// CONNECT (3.1.1 §3.1, 5.0 §3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The version the client speaks (from the protocol name and level).
    pub version: Version,
    /// Clean Session (3.x) / Clean Start (5.0).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 turns the mechanism off.
    pub keep_alive: u16,
    /// The client identifier; may be empty (the server then assigns one, or refuses).
    pub client_id: ByteString,
    /// The will message, if the Will Flag is set.
    pub will: Option<Will>,
    /// The user name, if the User Name Flag is set.
    pub username: Option<ByteString>,
    /// The password (binary data), if the Password Flag is set.
    pub password: Option<Bytes>,
    /// CONNECT properties (5.0).
    pub properties: Properties,
}

impl Connect {
    /// A clean-start CONNECT for `client_id` with a 60 s keep alive and nothing else.
    pub fn new(version: Version, client_id: impl Into<ByteString>) -> Connect {
        Connect {
            version,
            clean_start: true,
            keep_alive: 60,
            client_id: client_id.into(),
            will: None,
            username: None,
            password: None,
            properties: Properties::new(),
        }
    }
}

/// The will message of a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Where it is published.
    pub topic: ByteString,
    /// Its payload.
    pub payload: Bytes,
    /// Its QoS.
    pub qos: QoS,
    /// Whether it is retained.
    pub retain: bool,
    /// Will properties (5.0).
    pub properties: Properties,
}

/// CONNACK (3.1.1 §3.2, 5.0 §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// Session Present (always written as 0 for 3.1, where the bit is reserved).
    pub session_present: bool,
    /// The 5.0 reason code; a 3.x return code is mapped to and from it
    /// ([`ReasonCode::to_v3_connack`]).
    pub code: ReasonCode,
    /// CONNACK properties (5.0).
    pub properties: Properties,
}

impl ConnAck {
    /// A successful CONNACK.
    pub fn accepted(session_present: bool) -> ConnAck {
        ConnAck {
            session_present,
            code: ReasonCode::SUCCESS,
            properties: Properties::new(),
        }
    }

    /// A refusal with `code`.
    pub fn refused(code: ReasonCode) -> ConnAck {
        ConnAck {
            session_present: false,
            code,
            properties: Properties::new(),
        }
    }
}

/// PUBLISH (3.1.1 §3.3, 5.0 §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Redelivery flag (never set with QoS 0).
    pub dup: bool,
    /// Delivery QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// Topic name; empty only in 5.0 when a Topic Alias property stands for it.
    pub topic: ByteString,
    /// Packet identifier: non-zero for QoS 1 and 2, 0 (and not written) for QoS 0.
    pub pkid: u16,
    /// PUBLISH properties (5.0), in the order received.
    pub properties: Properties,
    /// The application message, never copied.
    pub payload: Bytes,
}

impl Publish {
    /// A PUBLISH with no flags, no packet identifier and no properties; set `pkid`
    /// before encoding it with QoS 1 or 2.
    pub fn new(topic: impl Into<ByteString>, qos: QoS, payload: impl Into<Bytes>) -> Publish {
        Publish {
            dup: false,
            qos,
            retain: false,
            topic: topic.into(),
            pkid: 0,
            properties: Properties::new(),
            payload: payload.into(),
        }
    }
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP: a packet identifier, a reason code and
/// properties (the last two 5.0 only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The packet identifier acknowledged.
    pub pkid: u16,
    /// The reason code (5.0); [`ReasonCode::SUCCESS`] for 3.x.
    pub reason: ReasonCode,
    /// Properties (5.0).
    pub properties: Properties,
}

impl Ack {
    /// A successful acknowledgement of `pkid`.
    pub fn new(pkid: u16) -> Ack {
        Ack {
            pkid,
            reason: ReasonCode::SUCCESS,
            properties: Properties::new(),
        }
    }
}

/// One topic filter of a SUBSCRIBE with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The topic filter, possibly a shared subscription (`$share/GROUP/FILTER`).
    pub filter: ByteString,
    /// Maximum QoS requested.
    pub qos: QoS,
    /// No Local (5.0): do not send the client its own publications.
    pub no_local: bool,
    /// Retain As Published (5.0): keep the RETAIN flag when forwarding.
    pub retain_as_published: bool,
    /// Retain Handling (5.0).
    pub retain_handling: RetainHandling,
}

impl Subscription {
    /// A subscription to `filter` at `qos` with the default (3.x) options.
    pub fn new(filter: impl Into<ByteString>, qos: QoS) -> Subscription {
        Subscription {
            filter: filter.into(),
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::SendAtSubscribe,
        }
    }
}

/// SUBSCRIBE (3.1.1 §3.8, 5.0 §3.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet identifier, non-zero.
    pub pkid: u16,
    /// The filters, at least one.
    pub subscriptions: Vec<Subscription>,
    /// SUBSCRIBE properties (5.0): at most one Subscription Identifier, user properties.
    pub properties: Properties,
}

/// SUBACK (3.1.1 §3.9, 5.0 §3.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// The SUBSCRIBE's packet identifier.
    pub pkid: u16,
    /// One code per filter: the granted QoS (0x00..=0x02) or a failure (0x80 and up;
    /// 3.x has only 0x80).
    pub codes: Vec<ReasonCode>,
    /// SUBACK properties (5.0).
    pub properties: Properties,
}

/// UNSUBSCRIBE (3.1.1 §3.10, 5.0 §3.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet identifier, non-zero.
    pub pkid: u16,
    /// The filters, at least one.
    pub filters: Vec<ByteString>,
    /// UNSUBSCRIBE properties (5.0): user properties only.
    pub properties: Properties,
}

/// UNSUBACK (3.1.1 §3.11, 5.0 §3.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// The UNSUBSCRIBE's packet identifier.
    pub pkid: u16,
    /// One reason code per filter (5.0); empty for 3.x, which has none.
    pub codes: Vec<ReasonCode>,
    /// UNSUBACK properties (5.0).
    pub properties: Properties,
}

/// DISCONNECT (3.1.1 §3.14, 5.0 §3.14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// The reason code (5.0); [`ReasonCode::SUCCESS`] (normal disconnection) for 3.x.
    pub reason: ReasonCode,
    /// DISCONNECT properties (5.0).
    pub properties: Properties,
}

impl Disconnect {
    /// A DISCONNECT with `reason` and no properties.
    pub fn new(reason: ReasonCode) -> Disconnect {
        Disconnect {
            reason,
            properties: Properties::new(),
        }
    }
}

/// AUTH (5.0 §3.15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// 0x00 success, 0x18 continue authentication, 0x19 re-authenticate.
    pub reason: ReasonCode,
    /// AUTH properties: Authentication Method (required unless the packet is empty),
    /// Authentication Data, Reason String, user properties.
    pub properties: Properties,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_types_round_trip_through_the_nibble() {
        assert_eq!(PacketType::from_nibble(0), None);
        for n in 1..=15u8 {
            let t = PacketType::from_nibble(n).unwrap();
            assert_eq!(t as u8, n);
        }
        assert_eq!(PacketType::Subscribe.required_flags(), Some(0b0010));
        assert_eq!(PacketType::Publish.required_flags(), None);
        assert_eq!(PacketType::Connect.required_flags(), Some(0));
    }

    #[test]
    fn v3_connack_codes_map_both_ways() {
        for code in 0..=5u8 {
            let rc = ReasonCode::from_v3_connack(code).unwrap();
            assert_eq!(rc.to_v3_connack(), code);
        }
        assert_eq!(ReasonCode::from_v3_connack(6), None);
        assert_eq!(ReasonCode::BANNED.to_v3_connack(), 5);
        assert_eq!(ReasonCode::QUOTA_EXCEEDED.to_v3_connack(), 3);
    }

    #[test]
    fn reason_codes_are_checked_per_packet() {
        assert!(ReasonCode::NO_MATCHING_SUBSCRIBERS.is_valid_for(PacketType::PubAck));
        assert!(!ReasonCode::NO_MATCHING_SUBSCRIBERS.is_valid_for(PacketType::PubRel));
        assert!(ReasonCode::PACKET_IDENTIFIER_NOT_FOUND.is_valid_for(PacketType::PubComp));
        assert!(ReasonCode::GRANTED_QOS_2.is_valid_for(PacketType::SubAck));
        assert!(!ReasonCode(0x03).is_valid_for(PacketType::SubAck));
        assert!(ReasonCode::DISCONNECT_WITH_WILL.is_valid_for(PacketType::Disconnect));
        assert!(!ReasonCode(0x8C).is_valid_for(PacketType::Disconnect));
        assert!(ReasonCode::REAUTHENTICATE.is_valid_for(PacketType::Auth));
        assert!(!ReasonCode::SUCCESS.is_valid_for(PacketType::Publish));
    }
}
