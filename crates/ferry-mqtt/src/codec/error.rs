//! Why a packet could not be decoded or encoded.
//!
//! Every rule of MQTT 3.1.1 and 5.0 that the decoder enforces has its own
//! [`DecodeError`] variant, so a log line names the rule that was broken. What to do about
//! one is the state machine's call; [`DecodeError::reason_code`] gives the 5.0 reason code
//! for the DISCONNECT (or CONNACK) to send before closing: 0x81 Malformed Packet, 0x82
//! Protocol Error, 0x94 Topic Alias invalid, 0x95 Packet too large, 0x84 Unsupported
//! Protocol Version, 0x85 Client Identifier not valid. Under 3.x a malformed packet or
//! protocol violation just closes the connection (3.1.1 §4.8); only the two CONNECT
//! refusals have a CONNACK return code (see `Decoder::refusal`).

use ferry_core::topic::{SharedFilterError, TopicError};
use thiserror::Error;

use super::packet::{PacketType, Version};
use super::properties::PropertyId;
use super::reason::ReasonCode;

/// A packet broke a rule of the protocol; the connection that sent it must close.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    // --- Framing (fixed header) ---
    /// The remaining length (or another Variable Byte Integer) runs over four bytes
    /// (3.1.1 §2.2.3, 5.0 §1.5.5).
    #[error("variable byte integer longer than 4 bytes")]
    VarintTooLong,
    /// A Variable Byte Integer not in its shortest form, such as `0x80 0x00` for 0
    /// (5.0 [MQTT-1.5.5-1]; enforced for 3.x too).
    #[error("variable byte integer not in its shortest form")]
    VarintNotMinimal,
    /// The whole packet would exceed the configured maximum; detected from the fixed
    /// header, before the packet is buffered.
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge {
        /// Fixed header plus remaining length, in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Packet type 0, or 15 (AUTH) outside MQTT 5.0.
    #[error("reserved packet type {0}")]
    ReservedPacketType(u8),
    /// The fixed header's flag nibble is not the one the packet type requires
    /// (SUBSCRIBE, UNSUBSCRIBE and PUBREL 0b0010, the others 0).
    #[error("invalid fixed header flags {flags:#06b} on {packet}")]
    InvalidFlags {
        /// The packet type.
        packet: PacketType,
        /// The flags received.
        flags: u8,
    },
    /// A QoS of 3 (PUBLISH header, will QoS or subscription options).
    #[error("QoS 3 is not a valid QoS")]
    InvalidQoS,
    /// A QoS 0 PUBLISH with the DUP flag set (3.1.1 [MQTT-3.3.1-2], 5.0 [MQTT-3.3.1-2]).
    #[error("DUP flag set on a QoS 0 PUBLISH")]
    DupWithQoS0,

    // --- Structure ---
    /// A field runs past the end of the packet (the remaining length is too short for
    /// what the packet declares).
    #[error("packet truncated: a field runs past the end of the packet")]
    Truncated,
    /// Bytes are left over after the last field of a packet that has no free-form payload.
    #[error("{0} unexpected bytes at the end of the packet")]
    TrailingBytes(usize),
    /// A string that is not well-formed UTF-8 (3.1.1 §1.5.3, 5.0 §1.5.4).
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A string that contains U+0000 (3.1.1 [MQTT-1.5.3-2], 5.0 [MQTT-1.5.4-2]).
    #[error("string contains the null character U+0000")]
    NullCharacter,
    /// A packet identifier of 0 where a non-zero one is required (3.1.1 [MQTT-2.3.1-1]).
    #[error("packet identifier 0 in {0}")]
    PacketIdZero(PacketType),
    /// A reason code the packet type does not define.
    #[error("reason code {code} is not valid in {packet}")]
    InvalidReasonCode {
        /// The packet type.
        packet: PacketType,
        /// The code received.
        code: ReasonCode,
    },

    // --- Topics ---
    /// A topic name (PUBLISH, will, Response Topic) holding `+` or `#`
    /// (3.1.1 [MQTT-3.3.2-2], 5.0 [MQTT-3.3.2-2]).
    #[error("wildcard in a topic name")]
    WildcardInTopicName,
    /// An empty topic name: malformed in 3.x; in 5.0 allowed only with a Topic Alias
    /// (5.0 §3.3.2.1: otherwise a Protocol Error).
    #[error("empty topic name")]
    EmptyTopicName,
    /// A topic filter that breaks the syntax of 3.1.1 §4.7 / 5.0 §4.7 (`sport+`,
    /// `a/#/b`, empty) or of a shared subscription (5.0 §4.8.2).
    #[error("invalid topic filter: {0}")]
    InvalidTopicFilter(SharedFilterError),
    /// A SUBSCRIBE without any topic filter (3.1.1 [MQTT-3.8.3-3], 5.0 [MQTT-3.8.3-2]).
    #[error("SUBSCRIBE without any topic filter")]
    NoSubscriptions,
    /// An UNSUBSCRIBE without any topic filter (3.1.1 [MQTT-3.10.3-2], 5.0 [MQTT-3.10.3-2]).
    #[error("UNSUBSCRIBE without any topic filter")]
    NoUnsubscriptions,
    /// A SUBACK or UNSUBACK (5.0) with no reason code in its payload.
    #[error("{0} without any reason code")]
    NoReasonCodes(PacketType),
    /// Reserved bits set in a subscription options byte (3.1.1 [MQTT-3.8.3-4] bits 2-7,
    /// 5.0 [MQTT-3.8.3-5] bits 6-7).
    #[error("reserved bits set in subscription options {0:#010b}")]
    SubscriptionOptionsReserved(u8),
    /// Retain Handling 3 (5.0 §3.8.3.1: a Protocol Error).
    #[error("retain handling 3 is not valid")]
    InvalidRetainHandling,
    /// No Local on a shared subscription (5.0 [MQTT-3.8.3-4]: a Protocol Error).
    #[error("No Local set on a shared subscription")]
    NoLocalOnSharedSubscription,

    // --- CONNECT / CONNACK ---
    /// A protocol name other than `MQTT` and `MQIsdp`: not MQTT, close without CONNACK
    /// (3.1.1 [MQTT-3.1.2-1]).
    #[error("unknown protocol name")]
    UnknownProtocolName,
    /// A known protocol name with a level Ferry does not speak (`MQTT` 3, `MQIsdp` 4,
    /// `MQTT` 6, …): answer CONNACK 0x01 (3.x) or 0x84 (5.0) and close
    /// (3.1.1 [MQTT-3.1.2-2]).
    #[error("unsupported protocol level {level}")]
    UnsupportedProtocolVersion {
        /// The level received.
        level: u8,
    },
    /// The first packet of a connection is not a CONNECT (3.1.1 [MQTT-3.1.0-1]).
    #[error("first packet is {0}, not CONNECT")]
    FirstPacketNotConnect(PacketType),
    /// The reserved bit 0 of the CONNECT flags is set (3.1.1 [MQTT-3.1.2-3]).
    #[error("reserved CONNECT flag set")]
    ConnectReservedFlag,
    /// Will QoS or Will Retain set while the Will Flag is 0 (3.1.1 [MQTT-3.1.2-11],
    /// [MQTT-3.1.2-13], [MQTT-3.1.2-15]).
    #[error("will QoS or will retain set without the will flag")]
    WillFlagsWithoutWill,
    /// Password Flag without User Name Flag (3.1.1 [MQTT-3.1.2-22]; allowed in 5.0).
    #[error("password without a user name")]
    PasswordWithoutUsername,
    /// A client identifier the protocol version forbids: MQTT 3.1 allows 1 to 23 bytes;
    /// 3.1.1 refuses an empty one without Clean Session ([MQTT-3.1.3-8]). Answer CONNACK
    /// 0x02 (3.x) / 0x85 (5.0).
    #[error("client identifier rejected: {0}")]
    ClientIdRejected(&'static str),
    /// Reserved bits set in the CONNACK acknowledge flags (3.1.1 §3.2.2.1).
    #[error("reserved CONNACK flags set")]
    ConnAckReservedFlags,
    /// Session Present set in a refusing CONNACK (3.1.1 [MQTT-3.2.2-4], 5.0 [MQTT-3.2.2-6]).
    #[error("session present set in a refusing CONNACK")]
    SessionPresentOnRefusal,
    /// A CONNACK 3.x return code above 5.
    #[error("reserved CONNACK return code {0}")]
    InvalidReturnCode(u8),

    // --- Properties (5.0 §2.2.2) ---
    /// A property identifier 5.0 does not define: a Malformed Packet.
    #[error("unknown property identifier {0:#04x}")]
    UnknownProperty(u32),
    /// A property not valid in this packet (5.0 §2.2.2.2: a Malformed Packet), or not in
    /// this direction (a Subscription Identifier from a client, [MQTT-3.3.4-6]).
    #[error("property {id:?} is not allowed in {packet}")]
    PropertyNotAllowed {
        /// The property.
        id: PropertyId,
        /// Where it was found (WILL stands for the will properties).
        packet: &'static str,
    },
    /// A property that may appear once appeared twice: a Protocol Error.
    #[error("property {0:?} appears more than once")]
    DuplicateProperty(PropertyId),
    /// A property value the specification forbids (Receive Maximum 0, Maximum QoS 2,
    /// a flag byte other than 0 or 1, Subscription Identifier 0, …): a Protocol Error.
    #[error("invalid value for property {0:?}")]
    InvalidPropertyValue(PropertyId),
    /// A Topic Alias of 0 (5.0 [MQTT-3.3.2-8]).
    #[error("topic alias 0")]
    TopicAliasZero,
    /// Authentication Data without an Authentication Method (5.0 §3.1.2.11.10).
    #[error("authentication data without an authentication method")]
    AuthDataWithoutMethod,
    /// An AUTH packet with a body but no Authentication Method (5.0 §3.15.2.2.2).
    #[error("AUTH without an authentication method")]
    AuthWithoutMethod,

    // --- State and direction ---
    /// A packet the peer may not send here: a server-to-client packet from a client (or
    /// the reverse), or a second CONNECT ([MQTT-3.1.0-2]).
    #[error("unexpected {0}")]
    UnexpectedPacket(PacketType),
}

impl DecodeError {
    /// The MQTT 5.0 reason code for the DISCONNECT (or CONNACK) that reports this error.
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            UnsupportedProtocolVersion { .. } => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            ClientIdRejected(_) => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            TopicAliasZero => ReasonCode::TOPIC_ALIAS_INVALID,
            EmptyTopicName
            | NoSubscriptions
            | NoUnsubscriptions
            | InvalidRetainHandling
            | NoLocalOnSharedSubscription
            | FirstPacketNotConnect(_)
            | DuplicateProperty(_)
            | InvalidPropertyValue(_)
            | AuthDataWithoutMethod
            | AuthWithoutMethod
            | PacketIdZero(_)
            | UnexpectedPacket(_) => ReasonCode::PROTOCOL_ERROR,
            VarintTooLong
            | VarintNotMinimal
            | ReservedPacketType(_)
            | InvalidFlags { .. }
            | InvalidQoS
            | DupWithQoS0
            | Truncated
            | TrailingBytes(_)
            | InvalidUtf8
            | NullCharacter
            | InvalidReasonCode { .. }
            | WildcardInTopicName
            | InvalidTopicFilter(_)
            | NoReasonCodes(_)
            | SubscriptionOptionsReserved(_)
            | UnknownProtocolName
            | ConnectReservedFlag
            | WillFlagsWithoutWill
            | PasswordWithoutUsername
            | ConnAckReservedFlags
            | SessionPresentOnRefusal
            | InvalidReturnCode(_)
            | UnknownProperty(_)
            | PropertyNotAllowed { .. } => ReasonCode::MALFORMED_PACKET,
        }
    }

    /// The CONNACK refusal a CONNECT that failed with this error gets, when the version
    /// it was sent with is `version`: `None` when the connection must just close.
    /// (See `Decoder::refusal`, which knows whether the error came from a CONNECT.)
    pub(super) fn connack_refusal(&self, version: Option<Version>) -> Option<(Version, ReasonCode)> {
        match (self, version) {
            // 5.0 §3.1.2.2: a server MAY answer 0x84 in a 5.0 CONNACK to a level it does
            // not speak; a newer client understands that form, an older one the 3.x one.
            (DecodeError::UnsupportedProtocolVersion { level }, _) => {
                let v = if *level > 5 { Version::V5 } else { Version::V3_1_1 };
                Some((v, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION))
            }
            (DecodeError::UnknownProtocolName | DecodeError::FirstPacketNotConnect(_), _) => None,
            // 5.0 §4.13.1: on a malformed CONNECT the server MAY send a CONNACK with the reason.
            (e, Some(Version::V5)) => Some((Version::V5, e.reason_code())),
            (DecodeError::ClientIdRejected(_), Some(v)) => Some((v, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID)),
            _ => None,
        }
    }
}

impl From<TopicError> for DecodeError {
    fn from(e: TopicError) -> Self {
        match e {
            TopicError::Empty => DecodeError::EmptyTopicName,
            TopicError::NullCharacter => DecodeError::NullCharacter,
            TopicError::WildcardInName { .. } => DecodeError::WildcardInTopicName,
            // Too long cannot come off the wire (a 16-bit length); the filter errors are
            // reported by `validate::topic_filter`, not through this conversion.
            other => DecodeError::InvalidTopicFilter(SharedFilterError::Filter(other)),
        }
    }
}

/// A packet cannot be encoded: it would be malformed, or refused by its receiver.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// A string or binary field longer than the 65,535 bytes its 16-bit length allows.
    #[error("field of {0} bytes is longer than 65535")]
    FieldTooLong(usize),
    /// The remaining length would exceed 268,435,455 bytes.
    #[error("packet body of {0} bytes exceeds the MQTT maximum of 268435455")]
    PacketTooLarge(usize),
    /// The packet does not exist in this version (AUTH in 3.x).
    #[error("{packet} does not exist in {version}")]
    NotInVersion {
        /// The packet type.
        packet: PacketType,
        /// The version asked for.
        version: Version,
    },
    /// A CONNECT encoded for another version than its own `version` field.
    #[error("CONNECT for {connect} cannot be encoded as {requested}")]
    VersionMismatch {
        /// The CONNECT's version.
        connect: Version,
        /// The version asked for.
        requested: Version,
    },
    /// A Subscription Identifier outside 1..=268,435,455.
    #[error("subscription identifier {0} is out of range")]
    SubscriptionIdOutOfRange(u32),
    /// The packet breaks a rule its receiver enforces.
    #[error("invalid packet: {0}")]
    Invalid(#[from] DecodeError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_5_0_reason_codes() {
        assert_eq!(DecodeError::VarintTooLong.reason_code(), ReasonCode::MALFORMED_PACKET);
        assert_eq!(
            DecodeError::DuplicateProperty(PropertyId::TopicAlias).reason_code(),
            ReasonCode::PROTOCOL_ERROR
        );
        assert_eq!(
            DecodeError::PacketTooLarge { size: 10, max: 5 }.reason_code(),
            ReasonCode::PACKET_TOO_LARGE
        );
        assert_eq!(DecodeError::TopicAliasZero.reason_code(), ReasonCode::TOPIC_ALIAS_INVALID);
    }

    #[test]
    fn connect_refusals_follow_the_version() {
        let unsupported = DecodeError::UnsupportedProtocolVersion { level: 3 };
        assert_eq!(
            unsupported.connack_refusal(None),
            Some((Version::V3_1_1, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION))
        );
        let future = DecodeError::UnsupportedProtocolVersion { level: 6 };
        assert_eq!(
            future.connack_refusal(None),
            Some((Version::V5, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION))
        );
        assert_eq!(DecodeError::UnknownProtocolName.connack_refusal(None), None);
        assert_eq!(DecodeError::Truncated.connack_refusal(Some(Version::V3_1_1)), None);
        assert_eq!(
            DecodeError::Truncated.connack_refusal(Some(Version::V5)),
            Some((Version::V5, ReasonCode::MALFORMED_PACKET))
        );
        let id = DecodeError::ClientIdRejected("too long");
        assert_eq!(
            id.connack_refusal(Some(Version::V3_1)),
            Some((Version::V3_1, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID))
        );
    }
}
