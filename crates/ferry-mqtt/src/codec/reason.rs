//! MQTT 5.0 reason codes (§2.4, Table 2-6), declared once in the `reason_codes!` table:
//! value, constant, name in the specification and the packets that may carry it. The
//! table expands to the [`ReasonCode`] constants, the per-packet validity check and the
//! names logs print ("0x93 Receive Maximum exceeded").

use std::fmt;

use super::packet::{PacketType, QoS};

/// An MQTT 5.0 reason code (§2.4). 3.x return codes travel as their 5.0 equivalent.
///
/// A plain byte, so that a code the specification does not define can still be carried
/// (to report it in [`DecodeError::InvalidReasonCode`](super::DecodeError::InvalidReasonCode)).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReasonCode(pub u8);

/// One row of Table 2-6.
struct Row {
    /// The code.
    code: u8,
    /// Its name in the specification.
    name: &'static str,
    /// The packets that may carry it, one bit per [`PacketType`] value.
    packets: u16,
}

/// Expands the reason code table: one row per line of 5.0 §2.4 Table 2-6,
///
/// ```text
/// value CONSTANT "Name in the spec" [PACKET TYPES];
/// ```
///
/// into a [`ReasonCode`] constant per row and the table `ROWS` that
/// [`ReasonCode::is_valid_for`], [`ReasonCode::name`] and [`ReasonCode::name_in`] read.
/// Table 2-6 gives 0x00 three names (Success, Normal disconnection, Granted QoS 0), one
/// row each. The model is quinn-proto's `errors!` for QUIC transport error codes.
macro_rules! reason_codes {
    ($(
        $(#[$doc:meta])*
        $code:literal $constant:ident $name:literal [$($packet:ident)*];
    )*) => {
        impl ReasonCode {
            $(
                #[doc = concat!(stringify!($code), ": ", $name, ", in ", stringify!($($packet)*), ".")]
                $(#[$doc])*
                pub const $constant: ReasonCode = ReasonCode($code);
            )*
        }

        /// Table 2-6, row by row.
        const ROWS: &[Row] = &[
            $(Row { code: $code, name: $name, packets: 0 $(| 1 << PacketType::$packet as u16)* },)*
        ];
    };
}

reason_codes! {
    0x00 SUCCESS "Success" [ConnAck PubAck PubRec PubRel PubComp UnsubAck Auth];
    0x00 NORMAL_DISCONNECTION "Normal disconnection" [Disconnect];
    0x00 GRANTED_QOS_0 "Granted QoS 0" [SubAck];
    0x01 GRANTED_QOS_1 "Granted QoS 1" [SubAck];
    0x02 GRANTED_QOS_2 "Granted QoS 2" [SubAck];
    0x04 DISCONNECT_WITH_WILL "Disconnect with Will Message" [Disconnect];
    0x10 NO_MATCHING_SUBSCRIBERS "No matching subscribers" [PubAck PubRec];
    0x11 NO_SUBSCRIPTION_EXISTED "No subscription existed" [UnsubAck];
    0x18 CONTINUE_AUTHENTICATION "Continue authentication" [Auth];
    0x19 REAUTHENTICATE "Re-authenticate" [Auth];
    /// Also 3.x's SUBACK Failure.
    0x80 UNSPECIFIED_ERROR "Unspecified error" [ConnAck PubAck PubRec SubAck UnsubAck Disconnect];
    0x81 MALFORMED_PACKET "Malformed Packet" [ConnAck Disconnect];
    0x82 PROTOCOL_ERROR "Protocol Error" [ConnAck Disconnect];
    0x83 IMPLEMENTATION_SPECIFIC_ERROR "Implementation specific error" [ConnAck PubAck PubRec SubAck UnsubAck Disconnect];
    /// 3.x CONNACK 0x01.
    0x84 UNSUPPORTED_PROTOCOL_VERSION "Unsupported Protocol Version" [ConnAck];
    /// 3.x CONNACK 0x02.
    0x85 CLIENT_IDENTIFIER_NOT_VALID "Client Identifier not valid" [ConnAck];
    /// 3.x CONNACK 0x04.
    0x86 BAD_USER_NAME_OR_PASSWORD "Bad User Name or Password" [ConnAck];
    /// 3.x CONNACK 0x05.
    0x87 NOT_AUTHORIZED "Not authorized" [ConnAck PubAck PubRec SubAck UnsubAck Disconnect];
    /// 3.x CONNACK 0x03.
    0x88 SERVER_UNAVAILABLE "Server unavailable" [ConnAck];
    0x89 SERVER_BUSY "Server busy" [ConnAck Disconnect];
    0x8A BANNED "Banned" [ConnAck];
    0x8B SERVER_SHUTTING_DOWN "Server shutting down" [Disconnect];
    /// Table 2-6 lists DISCONNECT too, but the DISCONNECT table (§3.14.2.1) does not.
    0x8C BAD_AUTHENTICATION_METHOD "Bad authentication method" [ConnAck];
    0x8D KEEP_ALIVE_TIMEOUT "Keep Alive timeout" [Disconnect];
    0x8E SESSION_TAKEN_OVER "Session taken over" [Disconnect];
    0x8F TOPIC_FILTER_INVALID "Topic Filter invalid" [SubAck UnsubAck Disconnect];
    0x90 TOPIC_NAME_INVALID "Topic Name invalid" [ConnAck PubAck PubRec Disconnect];
    0x91 PACKET_IDENTIFIER_IN_USE "Packet Identifier in use" [PubAck PubRec SubAck UnsubAck];
    0x92 PACKET_IDENTIFIER_NOT_FOUND "Packet Identifier not found" [PubRel PubComp];
    0x93 RECEIVE_MAXIMUM_EXCEEDED "Receive Maximum exceeded" [Disconnect];
    0x94 TOPIC_ALIAS_INVALID "Topic Alias invalid" [Disconnect];
    0x95 PACKET_TOO_LARGE "Packet too large" [ConnAck Disconnect];
    0x96 MESSAGE_RATE_TOO_HIGH "Message rate too high" [Disconnect];
    0x97 QUOTA_EXCEEDED "Quota exceeded" [ConnAck PubAck PubRec SubAck Disconnect];
    0x98 ADMINISTRATIVE_ACTION "Administrative action" [Disconnect];
    0x99 PAYLOAD_FORMAT_INVALID "Payload format invalid" [ConnAck PubAck PubRec Disconnect];
    0x9A RETAIN_NOT_SUPPORTED "Retain not supported" [ConnAck Disconnect];
    0x9B QOS_NOT_SUPPORTED "QoS not supported" [ConnAck Disconnect];
    0x9C USE_ANOTHER_SERVER "Use another server" [ConnAck Disconnect];
    0x9D SERVER_MOVED "Server moved" [ConnAck Disconnect];
    0x9E SHARED_SUBSCRIPTIONS_NOT_SUPPORTED "Shared Subscriptions not supported" [SubAck Disconnect];
    0x9F CONNECTION_RATE_EXCEEDED "Connection rate exceeded" [ConnAck Disconnect];
    0xA0 MAXIMUM_CONNECT_TIME "Maximum connect time" [Disconnect];
    0xA1 SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED "Subscription Identifiers not supported" [SubAck Disconnect];
    0xA2 WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED "Wildcard Subscriptions not supported" [SubAck Disconnect];
}

/// For each of the 256 byte values, the packets that may carry it (the union of its
/// rows), so that [`ReasonCode::is_valid_for`] is one load and one test.
static VALID_IN: [u16; 256] = {
    let mut valid = [0u16; 256];
    let mut i = 0;
    while i < ROWS.len() {
        valid[ROWS[i].code as usize] |= ROWS[i].packets;
        i += 1;
    }
    valid
};

/// The 3.x CONNACK return codes (3.1.1 §3.2.2.3, Table 3.1), by value, as 5.0 codes.
const V3_CONNACK: [ReasonCode; 6] = [
    ReasonCode::SUCCESS,
    ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
    ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
    ReasonCode::SERVER_UNAVAILABLE,
    ReasonCode::BAD_USER_NAME_OR_PASSWORD,
    ReasonCode::NOT_AUTHORIZED,
];

impl ReasonCode {
    /// Whether the code reports a failure (0x80 and above).
    pub fn is_error(self) -> bool {
        self.0 >= 0x80
    }

    /// The granted QoS of a SUBACK success code.
    pub fn granted(qos: QoS) -> ReasonCode {
        ReasonCode(qos as u8)
    }

    /// Whether this code may appear in a packet of type `packet` (5.0 §2.4 and each
    /// packet's reason code table). For SUBACK this covers each entry of the list.
    pub fn is_valid_for(self, packet: PacketType) -> bool {
        VALID_IN[usize::from(self.0)] & (1 << packet as u16) != 0
    }

    /// The code's name in Table 2-6 ("Receive Maximum exceeded"); for 0x00, which has
    /// three, "Success". `None` for a value 5.0 does not define.
    pub fn name(self) -> Option<&'static str> {
        ROWS.iter().find(|row| row.code == self.0).map(|row| row.name)
    }

    /// The code's name as a packet of type `packet` means it: 0x00 is "Normal
    /// disconnection" in DISCONNECT and "Granted QoS 0" in SUBACK. Falls back to
    /// [`ReasonCode::name`] when the code is not valid in `packet`.
    pub fn name_in(self, packet: PacketType) -> Option<&'static str> {
        let bit = 1 << packet as u16;
        ROWS.iter()
            .find(|row| row.code == self.0 && row.packets & bit != 0)
            .map(|row| row.name)
            .or_else(|| self.name())
    }

    /// The code with its name, for logs: `0x93 Receive Maximum exceeded` (the
    /// [`Display`](fmt::Display) form, `0x93`, is what error messages and reason strings
    /// carry, and stays as it is).
    pub fn named(self) -> Named {
        Named(self)
    }

    /// The MQTT 3.x CONNACK return code (3.1.1 §3.2.2.3) that best renders this 5.0
    /// code: 0x84 → 1, 0x85 → 2, 0x86 and 0x8C → 4, 0x87 and 0x8A → 5, any other
    /// failure → 3 (server unavailable).
    pub fn to_v3_connack(self) -> u8 {
        match self {
            ReasonCode::BAD_AUTHENTICATION_METHOD => 4,
            ReasonCode::BANNED => 5,
            // The position in a six-entry table fits a u8.
            _ => V3_CONNACK.iter().position(|&c| c == self).unwrap_or(3) as u8,
        }
    }

    /// The 5.0 code for a 3.x CONNACK return code, `None` for the reserved 6..=255.
    pub fn from_v3_connack(code: u8) -> Option<ReasonCode> {
        V3_CONNACK.get(usize::from(code)).copied()
    }
}

/// A [`ReasonCode`] shown with its name ([`ReasonCode::named`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Named(ReasonCode);

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.name() {
            Some(name) => write!(f, "{:#04x} {name}", self.0 .0),
            None => write!(f, "{:#04x}", self.0 .0),
        }
    }
}

impl fmt::Debug for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Debug for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReasonCode({})", self.named())
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#04x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKET_TYPES: [PacketType; 15] = [
        PacketType::Connect,
        PacketType::ConnAck,
        PacketType::Publish,
        PacketType::PubAck,
        PacketType::PubRec,
        PacketType::PubRel,
        PacketType::PubComp,
        PacketType::Subscribe,
        PacketType::SubAck,
        PacketType::Unsubscribe,
        PacketType::UnsubAck,
        PacketType::PingReq,
        PacketType::PingResp,
        PacketType::Disconnect,
        PacketType::Auth,
    ];

    /// The codes of each packet's own reason code table (5.0 §3.2.2.2, §3.4.2.1,
    /// §3.5.2.1, §3.6.2.1, §3.7.2.1, §3.9.3, §3.11.3, §3.14.2.1, §3.15.2.1), as the
    /// specification prints them.
    fn packet_tables(packet: PacketType) -> &'static [u8] {
        match packet {
            PacketType::ConnAck => &[
                0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C,
                0x9D, 0x9F,
            ],
            PacketType::PubAck | PacketType::PubRec => &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99],
            PacketType::PubRel | PacketType::PubComp => &[0x00, 0x92],
            PacketType::SubAck => &[0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2],
            PacketType::UnsubAck => &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91],
            PacketType::Disconnect => &[
                0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
                0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
            ],
            PacketType::Auth => &[0x00, 0x18, 0x19],
            _ => &[],
        }
    }

    #[test]
    fn validity_matches_each_packet_s_reason_code_table() {
        for packet in PACKET_TYPES {
            for code in 0..=255u8 {
                let expected = packet_tables(packet).contains(&code);
                assert_eq!(ReasonCode(code).is_valid_for(packet), expected, "{code:#04x} in {packet}");
            }
        }
    }

    #[test]
    fn the_table_matches_table_2_6_of_the_5_0_spec() {
        // 43 values in 45 rows: 0x00 has three names.
        assert_eq!(ROWS.len(), 45);
        let defined: Vec<u8> = (0..=255u8).filter(|&c| ReasonCode(c).name().is_some()).collect();
        assert_eq!(
            defined,
            [
                0x00, 0x01, 0x02, 0x04, 0x10, 0x11, 0x18, 0x19, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8B,
                0x8C, 0x8D, 0x8E, 0x8F, 0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F,
                0xA0, 0xA1, 0xA2
            ]
        );
        // Rows in value order, and one row per (code, packet): no packet gets two names.
        for pair in ROWS.windows(2) {
            assert!(pair[0].code <= pair[1].code);
            if pair[0].code == pair[1].code {
                assert_eq!(pair[0].packets & pair[1].packets, 0);
            }
        }
        // Every row names at least one packet.
        assert!(ROWS.iter().all(|row| row.packets != 0));
        assert_eq!(ReasonCode::KEEP_ALIVE_TIMEOUT.name(), Some("Keep Alive timeout"));
        assert_eq!(ReasonCode::REAUTHENTICATE.name(), Some("Re-authenticate"));
        assert_eq!(ReasonCode::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED.0, 0xA1);
        assert_eq!(ReasonCode(0x03).name(), None);
    }

    #[test]
    fn names_for_logs() {
        assert_eq!(
            ReasonCode::RECEIVE_MAXIMUM_EXCEEDED.named().to_string(),
            "0x93 Receive Maximum exceeded"
        );
        assert_eq!(ReasonCode::SUCCESS.named().to_string(), "0x00 Success");
        assert_eq!(ReasonCode(0xFF).named().to_string(), "0xff");
        assert_eq!(
            format!("{:?}", ReasonCode::KEEP_ALIVE_TIMEOUT),
            "ReasonCode(0x8d Keep Alive timeout)"
        );
        // Display stays the bare value: error messages and reason strings carry it.
        assert_eq!(ReasonCode::KEEP_ALIVE_TIMEOUT.to_string(), "0x8d");
        // 0x00 by packet.
        assert_eq!(ReasonCode(0).name_in(PacketType::Disconnect), Some("Normal disconnection"));
        assert_eq!(ReasonCode(0).name_in(PacketType::SubAck), Some("Granted QoS 0"));
        assert_eq!(ReasonCode(0).name_in(PacketType::PubAck), Some("Success"));
        assert_eq!(ReasonCode::NORMAL_DISCONNECTION, ReasonCode::SUCCESS);
        assert_eq!(ReasonCode::GRANTED_QOS_0, ReasonCode::granted(QoS::AtMostOnce));
        // Not valid there: the plain name.
        assert_eq!(ReasonCode::BANNED.name_in(PacketType::Disconnect), Some("Banned"));
    }

    #[test]
    fn v3_connack_return_codes() {
        // 3.1.1 §3.2.2.3, Table 3.1, both ways.
        let table = [(0, 0x00), (1, 0x84), (2, 0x85), (3, 0x88), (4, 0x86), (5, 0x87)];
        for (v3, v5) in table {
            assert_eq!(ReasonCode::from_v3_connack(v3), Some(ReasonCode(v5)));
            assert_eq!(ReasonCode(v5).to_v3_connack(), v3);
        }
        assert!((6..=255).all(|c| ReasonCode::from_v3_connack(c).is_none()));
        // The nearest 3.x code for the 5.0 codes 3.x lacks.
        assert_eq!(ReasonCode::BAD_AUTHENTICATION_METHOD.to_v3_connack(), 4);
        assert_eq!(ReasonCode::BANNED.to_v3_connack(), 5);
        for code in (0x80..=0xFF).filter(|c| ![0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C].contains(c)) {
            assert_eq!(ReasonCode(code).to_v3_connack(), 3, "{code:#04x}");
        }
    }
}
