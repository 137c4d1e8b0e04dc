//! MQTT 5.0 properties (§2.2.2), kept whole and in order.
//!
//! [`Properties`] is the list of properties exactly as received, so a PUBLISH can be
//! forwarded with its user properties, content type, correlation data… unchanged (and
//! re-encoded byte for byte), and the broker strips or adds only what it must (Topic
//! Alias, Subscription Identifiers) with [`Properties::retain`] / [`Properties::push`].
//! An empty list allocates nothing, so 3.x packets pay nothing for it.
//!
//! Decoding checks the syntax (identifiers, lengths, types, UTF-8); [`check`] then
//! checks the rules of §2.2.2.2 and of each property's definition: which properties a
//! packet may carry, which may appear only once, and the values that are a Protocol
//! Error. The encoder runs the same [`check`], so Ferry never sends what it would refuse.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::decoder::Role;
use super::error::{DecodeError, EncodeError};
use super::wire::{self, Reader, MAX_VARINT};

/// The property identifiers of 5.0 §2.2.2.2, Table 2-4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PropertyId {
    /// 0x01, Byte: PUBLISH, will.
    PayloadFormatIndicator = 0x01,
    /// 0x02, Four Byte Integer: PUBLISH, will.
    MessageExpiryInterval = 0x02,
    /// 0x03, UTF-8 String: PUBLISH, will.
    ContentType = 0x03,
    /// 0x08, UTF-8 String: PUBLISH, will.
    ResponseTopic = 0x08,
    /// 0x09, Binary Data: PUBLISH, will.
    CorrelationData = 0x09,
    /// 0x0B, Variable Byte Integer: PUBLISH (server to client), SUBSCRIBE.
    SubscriptionIdentifier = 0x0B,
    /// 0x11, Four Byte Integer: CONNECT, CONNACK, DISCONNECT.
    SessionExpiryInterval = 0x11,
    /// 0x12, UTF-8 String: CONNACK.
    AssignedClientIdentifier = 0x12,
    /// 0x13, Two Byte Integer: CONNACK.
    ServerKeepAlive = 0x13,
    /// 0x15, UTF-8 String: CONNECT, CONNACK, AUTH.
    AuthenticationMethod = 0x15,
    /// 0x16, Binary Data: CONNECT, CONNACK, AUTH.
    AuthenticationData = 0x16,
    /// 0x17, Byte: CONNECT.
    RequestProblemInformation = 0x17,
    /// 0x18, Four Byte Integer: will.
    WillDelayInterval = 0x18,
    /// 0x19, Byte: CONNECT.
    RequestResponseInformation = 0x19,
    /// 0x1A, UTF-8 String: CONNACK.
    ResponseInformation = 0x1A,
    /// 0x1C, UTF-8 String: CONNACK, DISCONNECT.
    ServerReference = 0x1C,
    /// 0x1F, UTF-8 String: CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK,
    /// DISCONNECT, AUTH.
    ReasonString = 0x1F,
    /// 0x21, Two Byte Integer: CONNECT, CONNACK.
    ReceiveMaximum = 0x21,
    /// 0x22, Two Byte Integer: CONNECT, CONNACK.
    TopicAliasMaximum = 0x22,
    /// 0x23, Two Byte Integer: PUBLISH.
    TopicAlias = 0x23,
    /// 0x24, Byte: CONNACK.
    MaximumQoS = 0x24,
    /// 0x25, Byte: CONNACK.
    RetainAvailable = 0x25,
    /// 0x26, UTF-8 String Pair: every packet with properties, and the will.
    UserProperty = 0x26,
    /// 0x27, Four Byte Integer: CONNECT, CONNACK.
    MaximumPacketSize = 0x27,
    /// 0x28, Byte: CONNACK.
    WildcardSubscriptionAvailable = 0x28,
    /// 0x29, Byte: CONNACK.
    SubscriptionIdentifierAvailable = 0x29,
    /// 0x2A, Byte: CONNACK.
    SharedSubscriptionAvailable = 0x2A,
}

impl PropertyId {
    /// The property for an identifier, `None` for one 5.0 does not define.
    pub fn from_id(id: usize) -> Option<PropertyId> {
        use PropertyId::*;
        Some(match id {
            0x01 => PayloadFormatIndicator,
            0x02 => MessageExpiryInterval,
            0x03 => ContentType,
            0x08 => ResponseTopic,
            0x09 => CorrelationData,
            0x0B => SubscriptionIdentifier,
            0x11 => SessionExpiryInterval,
            0x12 => AssignedClientIdentifier,
            0x13 => ServerKeepAlive,
            0x15 => AuthenticationMethod,
            0x16 => AuthenticationData,
            0x17 => RequestProblemInformation,
            0x18 => WillDelayInterval,
            0x19 => RequestResponseInformation,
            0x1A => ResponseInformation,
            0x1C => ServerReference,
            0x1F => ReasonString,
            0x21 => ReceiveMaximum,
            0x22 => TopicAliasMaximum,
            0x23 => TopicAlias,
            0x24 => MaximumQoS,
            0x25 => RetainAvailable,
            0x26 => UserProperty,
            0x27 => MaximumPacketSize,
            0x28 => WildcardSubscriptionAvailable,
            0x29 => SubscriptionIdentifierAvailable,
            0x2A => SharedSubscriptionAvailable,
            _ => return None,
        })
    }

    /// Whether 5.0 §2.2.2.2 allows this property in `site`.
    pub fn allowed_in(self, site: Site) -> bool {
        use PropertyId::*;
        use Site::*;
        match self {
            PayloadFormatIndicator | MessageExpiryInterval | ContentType | ResponseTopic | CorrelationData => {
                matches!(site, Publish | Will)
            }
            SubscriptionIdentifier => matches!(site, Publish | Subscribe),
            SessionExpiryInterval => matches!(site, Connect | ConnAck | Disconnect),
            AssignedClientIdentifier | ServerKeepAlive | ResponseInformation | MaximumQoS | RetainAvailable => site == ConnAck,
            WildcardSubscriptionAvailable | SubscriptionIdentifierAvailable | SharedSubscriptionAvailable => site == ConnAck,
            AuthenticationMethod | AuthenticationData => matches!(site, Connect | ConnAck | Auth),
            RequestProblemInformation | RequestResponseInformation => site == Connect,
            WillDelayInterval => site == Will,
            ServerReference => matches!(site, ConnAck | Disconnect),
            ReasonString => matches!(
                site,
                ConnAck | PubAck | PubRec | PubRel | PubComp | SubAck | UnsubAck | Disconnect | Auth
            ),
            ReceiveMaximum | TopicAliasMaximum | MaximumPacketSize => matches!(site, Connect | ConnAck),
            TopicAlias => site == Publish,
            UserProperty => true,
        }
    }

    /// Whether the property may appear more than once in `site`: User Property always,
    /// Subscription Identifier in PUBLISH (one per matching subscription).
    pub fn repeatable_in(self, site: Site) -> bool {
        match self {
            PropertyId::UserProperty => true,
            PropertyId::SubscriptionIdentifier => site == Site::Publish,
            _ => false,
        }
    }
}

/// Where a property list sits: a packet's variable header, or a CONNECT's will.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Site {
    /// CONNECT properties.
    Connect,
    /// Will properties, in the CONNECT payload.
    Will,
    /// CONNACK.
    ConnAck,
    /// PUBLISH.
    Publish,
    /// PUBACK.
    PubAck,
    /// PUBREC.
    PubRec,
    /// PUBREL.
    PubRel,
    /// PUBCOMP.
    PubComp,
    /// SUBSCRIBE.
    Subscribe,
    /// SUBACK.
    SubAck,
    /// UNSUBSCRIBE.
    Unsubscribe,
    /// UNSUBACK.
    UnsubAck,
    /// DISCONNECT.
    Disconnect,
    /// AUTH.
    Auth,
}

impl Site {
    /// The name used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Site::Connect => "CONNECT",
            Site::Will => "the will properties",
            Site::ConnAck => "CONNACK",
            Site::Publish => "PUBLISH",
            Site::PubAck => "PUBACK",
            Site::PubRec => "PUBREC",
            Site::PubRel => "PUBREL",
            Site::PubComp => "PUBCOMP",
            Site::Subscribe => "SUBSCRIBE",
            Site::SubAck => "SUBACK",
            Site::Unsubscribe => "UNSUBSCRIBE",
            Site::UnsubAck => "UNSUBACK",
            Site::Disconnect => "DISCONNECT",
            Site::Auth => "AUTH",
        }
    }
}

/// One property with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Property {
    /// 0 unspecified bytes, 1 UTF-8 text.
    PayloadFormatIndicator(u8),
    /// Lifetime of the message in seconds.
    MessageExpiryInterval(u32),
    /// MIME type of the payload.
    ContentType(ByteString),
    /// Topic name for a response.
    ResponseTopic(ByteString),
    /// Request/response correlation data.
    CorrelationData(Bytes),
    /// Identifier of a subscription (1..=268,435,455).
    SubscriptionIdentifier(u32),
    /// Session lifetime after disconnection, in seconds.
    SessionExpiryInterval(u32),
    /// Client identifier the server assigned.
    AssignedClientIdentifier(ByteString),
    /// Keep alive imposed by the server.
    ServerKeepAlive(u16),
    /// Name of the extended authentication method.
    AuthenticationMethod(ByteString),
    /// Extended authentication data.
    AuthenticationData(Bytes),
    /// Whether the client wants reason strings and user properties on failures.
    RequestProblemInformation(u8),
    /// Delay before the will is published, in seconds.
    WillDelayInterval(u32),
    /// Whether the client wants Response Information in the CONNACK.
    RequestResponseInformation(u8),
    /// Basis for response topics.
    ResponseInformation(ByteString),
    /// Another server for the client to use.
    ServerReference(ByteString),
    /// Human-readable diagnostic.
    ReasonString(ByteString),
    /// Maximum number of unacknowledged QoS 1 and 2 PUBLISHes the sender accepts.
    ReceiveMaximum(u16),
    /// Highest topic alias the sender accepts.
    TopicAliasMaximum(u16),
    /// Alias standing for the topic name.
    TopicAlias(u16),
    /// Highest QoS the server supports (0 or 1; absent means 2).
    MaximumQoS(u8),
    /// Whether the server supports retained messages.
    RetainAvailable(u8),
    /// An application name/value pair; order is kept.
    UserProperty(ByteString, ByteString),
    /// Largest packet the sender accepts.
    MaximumPacketSize(u32),
    /// Whether the server supports wildcard subscriptions.
    WildcardSubscriptionAvailable(u8),
    /// Whether the server supports subscription identifiers.
    SubscriptionIdentifierAvailable(u8),
    /// Whether the server supports shared subscriptions.
    SharedSubscriptionAvailable(u8),
}

impl Property {
    /// This property's identifier.
    pub fn id(&self) -> PropertyId {
        use Property as P;
        use PropertyId as I;
        match self {
            P::PayloadFormatIndicator(_) => I::PayloadFormatIndicator,
            P::MessageExpiryInterval(_) => I::MessageExpiryInterval,
            P::ContentType(_) => I::ContentType,
            P::ResponseTopic(_) => I::ResponseTopic,
            P::CorrelationData(_) => I::CorrelationData,
            P::SubscriptionIdentifier(_) => I::SubscriptionIdentifier,
            P::SessionExpiryInterval(_) => I::SessionExpiryInterval,
            P::AssignedClientIdentifier(_) => I::AssignedClientIdentifier,
            P::ServerKeepAlive(_) => I::ServerKeepAlive,
            P::AuthenticationMethod(_) => I::AuthenticationMethod,
            P::AuthenticationData(_) => I::AuthenticationData,
            P::RequestProblemInformation(_) => I::RequestProblemInformation,
            P::WillDelayInterval(_) => I::WillDelayInterval,
            P::RequestResponseInformation(_) => I::RequestResponseInformation,
            P::ResponseInformation(_) => I::ResponseInformation,
            P::ServerReference(_) => I::ServerReference,
            P::ReasonString(_) => I::ReasonString,
            P::ReceiveMaximum(_) => I::ReceiveMaximum,
            P::TopicAliasMaximum(_) => I::TopicAliasMaximum,
            P::TopicAlias(_) => I::TopicAlias,
            P::MaximumQoS(_) => I::MaximumQoS,
            P::RetainAvailable(_) => I::RetainAvailable,
            P::UserProperty(..) => I::UserProperty,
            P::MaximumPacketSize(_) => I::MaximumPacketSize,
            P::WildcardSubscriptionAvailable(_) => I::WildcardSubscriptionAvailable,
            P::SubscriptionIdentifierAvailable(_) => I::SubscriptionIdentifierAvailable,
            P::SharedSubscriptionAvailable(_) => I::SharedSubscriptionAvailable,
        }
    }

    /// Reads the value of property `id` (the identifier already read).
    fn read(id: PropertyId, r: &mut Reader) -> Result<Property, DecodeError> {
        use Property as P;
        use PropertyId as I;
        Ok(match id {
            I::PayloadFormatIndicator => P::PayloadFormatIndicator(r.u8()?),
            I::MessageExpiryInterval => P::MessageExpiryInterval(r.u32()?),
            I::ContentType => P::ContentType(r.string()?),
            I::ResponseTopic => P::ResponseTopic(r.string()?),
            I::CorrelationData => P::CorrelationData(r.binary()?),
            // `varint` never exceeds MAX_VARINT, which fits a u32.
            I::SubscriptionIdentifier => P::SubscriptionIdentifier(r.varint()? as u32),
            I::SessionExpiryInterval => P::SessionExpiryInterval(r.u32()?),
            I::AssignedClientIdentifier => P::AssignedClientIdentifier(r.string()?),
            I::ServerKeepAlive => P::ServerKeepAlive(r.u16()?),
            I::AuthenticationMethod => P::AuthenticationMethod(r.string()?),
            I::AuthenticationData => P::AuthenticationData(r.binary()?),
            I::RequestProblemInformation => P::RequestProblemInformation(r.u8()?),
            I::WillDelayInterval => P::WillDelayInterval(r.u32()?),
            I::RequestResponseInformation => P::RequestResponseInformation(r.u8()?),
            I::ResponseInformation => P::ResponseInformation(r.string()?),
            I::ServerReference => P::ServerReference(r.string()?),
            I::ReasonString => P::ReasonString(r.string()?),
            I::ReceiveMaximum => P::ReceiveMaximum(r.u16()?),
            I::TopicAliasMaximum => P::TopicAliasMaximum(r.u16()?),
            I::TopicAlias => P::TopicAlias(r.u16()?),
            I::MaximumQoS => P::MaximumQoS(r.u8()?),
            I::RetainAvailable => P::RetainAvailable(r.u8()?),
            I::UserProperty => {
                let key = r.string()?;
                P::UserProperty(key, r.string()?)
            }
            I::MaximumPacketSize => P::MaximumPacketSize(r.u32()?),
            I::WildcardSubscriptionAvailable => P::WildcardSubscriptionAvailable(r.u8()?),
            I::SubscriptionIdentifierAvailable => P::SubscriptionIdentifierAvailable(r.u8()?),
            I::SharedSubscriptionAvailable => P::SharedSubscriptionAvailable(r.u8()?),
        })
    }

    /// The encoded size (identifier and value), checking field lengths.
    pub(crate) fn wire_len(&self) -> Result<usize, EncodeError> {
        use Property as P;
        let value = match self {
            P::PayloadFormatIndicator(_)
            | P::RequestProblemInformation(_)
            | P::RequestResponseInformation(_)
            | P::MaximumQoS(_)
            | P::RetainAvailable(_)
            | P::WildcardSubscriptionAvailable(_)
            | P::SubscriptionIdentifierAvailable(_)
            | P::SharedSubscriptionAvailable(_) => 1,
            P::ServerKeepAlive(_) | P::ReceiveMaximum(_) | P::TopicAliasMaximum(_) | P::TopicAlias(_) => 2,
            P::MessageExpiryInterval(_) | P::SessionExpiryInterval(_) | P::WillDelayInterval(_) | P::MaximumPacketSize(_) => 4,
            P::SubscriptionIdentifier(id) => {
                if *id == 0 || *id as usize > MAX_VARINT {
                    return Err(EncodeError::SubscriptionIdOutOfRange(*id));
                }
                wire::varint_len(*id as usize)
            }
            P::ContentType(s)
            | P::ResponseTopic(s)
            | P::AssignedClientIdentifier(s)
            | P::AuthenticationMethod(s)
            | P::ResponseInformation(s)
            | P::ServerReference(s)
            | P::ReasonString(s) => wire::string_len(s)?,
            P::CorrelationData(b) | P::AuthenticationData(b) => wire::binary_len(b)?,
            P::UserProperty(k, v) => wire::string_len(k)? + wire::string_len(v)?,
        };
        Ok(1 + value)
    }

    /// Writes identifier and value (after [`Property::wire_len`] succeeded).
    fn write(&self, out: &mut BytesMut) {
        use Property as P;
        out.put_u8(self.id() as u8);
        match self {
            P::PayloadFormatIndicator(v)
            | P::RequestProblemInformation(v)
            | P::RequestResponseInformation(v)
            | P::MaximumQoS(v)
            | P::RetainAvailable(v)
            | P::WildcardSubscriptionAvailable(v)
            | P::SubscriptionIdentifierAvailable(v)
            | P::SharedSubscriptionAvailable(v) => out.put_u8(*v),
            P::ServerKeepAlive(v) | P::ReceiveMaximum(v) | P::TopicAliasMaximum(v) | P::TopicAlias(v) => out.put_u16(*v),
            P::MessageExpiryInterval(v) | P::SessionExpiryInterval(v) | P::WillDelayInterval(v) | P::MaximumPacketSize(v) => {
                out.put_u32(*v)
            }
            P::SubscriptionIdentifier(id) => wire::put_varint(out, *id as usize),
            P::ContentType(s)
            | P::ResponseTopic(s)
            | P::AssignedClientIdentifier(s)
            | P::AuthenticationMethod(s)
            | P::ResponseInformation(s)
            | P::ServerReference(s)
            | P::ReasonString(s) => wire::put_binary(out, s.as_bytes()),
            P::CorrelationData(b) | P::AuthenticationData(b) => wire::put_binary(out, b),
            P::UserProperty(k, v) => {
                wire::put_binary(out, k.as_bytes());
                wire::put_binary(out, v.as_bytes());
            }
        }
    }
}

/// The properties of one packet (or will), in wire order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    list: Vec<Property>,
}

/// Generates a getter for a property that appears at most once.
macro_rules! getter {
    ($(#[$doc:meta])* $name:ident, $variant:ident, $ty:ty) => {
        $(#[$doc])*
        pub fn $name(&self) -> Option<$ty> {
            self.list.iter().find_map(|p| match p {
                Property::$variant(v) => Some(v.clone()),
                _ => None,
            })
        }
    };
}

impl Properties {
    /// No properties.
    pub fn new() -> Properties {
        Properties { list: Vec::new() }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// All of them, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Property> {
        self.list.iter()
    }

    /// Appends one.
    pub fn push(&mut self, property: Property) {
        self.list.push(property);
    }

    /// Builder form of [`Properties::push`].
    pub fn with(mut self, property: Property) -> Properties {
        self.list.push(property);
        self
    }

    /// Keeps only the properties for which `keep` is true (to strip a Topic Alias or
    /// Subscription Identifiers before forwarding).
    pub fn retain(&mut self, keep: impl FnMut(&Property) -> bool) {
        self.list.retain(keep);
    }

    /// The first property with identifier `id`.
    pub fn get(&self, id: PropertyId) -> Option<&Property> {
        self.list.iter().find(|p| p.id() == id)
    }

    /// User properties, in order.
    pub fn user_properties(&self) -> impl Iterator<Item = (&ByteString, &ByteString)> {
        self.list.iter().filter_map(|p| match p {
            Property::UserProperty(k, v) => Some((k, v)),
            _ => None,
        })
    }

    /// Subscription identifiers, in order.
    pub fn subscription_identifiers(&self) -> impl Iterator<Item = u32> + '_ {
        self.list.iter().filter_map(|p| match p {
            Property::SubscriptionIdentifier(id) => Some(*id),
            _ => None,
        })
    }

    getter!(
        /// Payload Format Indicator.
        payload_format_indicator, PayloadFormatIndicator, u8
    );
    getter!(
        /// Message Expiry Interval, seconds.
        message_expiry_interval, MessageExpiryInterval, u32
    );
    getter!(
        /// Content Type.
        content_type, ContentType, ByteString
    );
    getter!(
        /// Response Topic.
        response_topic, ResponseTopic, ByteString
    );
    getter!(
        /// Correlation Data.
        correlation_data, CorrelationData, Bytes
    );
    getter!(
        /// Session Expiry Interval, seconds.
        session_expiry_interval, SessionExpiryInterval, u32
    );
    getter!(
        /// Assigned Client Identifier.
        assigned_client_identifier, AssignedClientIdentifier, ByteString
    );
    getter!(
        /// Server Keep Alive, seconds.
        server_keep_alive, ServerKeepAlive, u16
    );
    getter!(
        /// Authentication Method.
        authentication_method, AuthenticationMethod, ByteString
    );
    getter!(
        /// Authentication Data.
        authentication_data, AuthenticationData, Bytes
    );
    getter!(
        /// Request Problem Information.
        request_problem_information, RequestProblemInformation, u8
    );
    getter!(
        /// Will Delay Interval, seconds.
        will_delay_interval, WillDelayInterval, u32
    );
    getter!(
        /// Request Response Information.
        request_response_information, RequestResponseInformation, u8
    );
    getter!(
        /// Response Information.
        response_information, ResponseInformation, ByteString
    );
    getter!(
        /// Server Reference.
        server_reference, ServerReference, ByteString
    );
    getter!(
        /// Reason String.
        reason_string, ReasonString, ByteString
    );
    getter!(
        /// Receive Maximum.
        receive_maximum, ReceiveMaximum, u16
    );
    getter!(
        /// Topic Alias Maximum.
        topic_alias_maximum, TopicAliasMaximum, u16
    );
    getter!(
        /// Topic Alias.
        topic_alias, TopicAlias, u16
    );
    getter!(
        /// Maximum QoS.
        maximum_qos, MaximumQoS, u8
    );
    getter!(
        /// Retain Available.
        retain_available, RetainAvailable, u8
    );
    getter!(
        /// Maximum Packet Size.
        maximum_packet_size, MaximumPacketSize, u32
    );
    getter!(
        /// Wildcard Subscription Available.
        wildcard_subscription_available, WildcardSubscriptionAvailable, u8
    );
    getter!(
        /// Subscription Identifier Available.
        subscription_identifier_available, SubscriptionIdentifierAvailable, u8
    );
    getter!(
        /// Shared Subscription Available.
        shared_subscription_available, SharedSubscriptionAvailable, u8
    );

    /// Reads a property length and the properties it covers, checking syntax only
    /// (see [`check`] for the rules).
    pub(crate) fn read(r: &mut Reader) -> Result<Properties, DecodeError> {
        let len = r.varint()?;
        let mut block = Reader::new(r.take(len)?);
        let mut list = Vec::new();
        while !block.is_empty() {
            // The identifier is a Variable Byte Integer (5.0 §2.2.2.2).
            let raw = block.varint()?;
            let id = PropertyId::from_id(raw).ok_or(DecodeError::UnknownProperty(raw as u32))?;
            list.push(Property::read(id, &mut block)?);
        }
        Ok(Properties { list })
    }

    /// The size of the property list without its length prefix, checking field lengths.
    pub(crate) fn wire_len(&self) -> Result<usize, EncodeError> {
        self.list.iter().try_fold(0usize, |sum, p| Ok(sum + p.wire_len()?))
    }

    /// The size of the property list with its length prefix.
    pub(crate) fn wire_len_prefixed(&self) -> Result<usize, EncodeError> {
        let len = self.wire_len()?;
        if len > MAX_VARINT {
            return Err(EncodeError::PacketTooLarge(len));
        }
        Ok(wire::varint_len(len) + len)
    }

    /// Writes the length prefix and the properties (after [`Properties::wire_len`] succeeded).
    pub(crate) fn write(&self, out: &mut BytesMut) {
        let len = self.list.iter().map(|p| p.wire_len().unwrap_or(0)).sum();
        wire::put_varint(out, len);
        for p in &self.list {
            p.write(out);
        }
    }
}

impl FromIterator<Property> for Properties {
    fn from_iter<T: IntoIterator<Item = Property>>(iter: T) -> Self {
        Properties {
            list: iter.into_iter().collect(),
        }
    }
}

impl<'a> IntoIterator for &'a Properties {
    type Item = &'a Property;
    type IntoIter = std::slice::Iter<'a, Property>;

    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

/// Checks `props` against the rules for `site`: allowed identifiers, duplicates, and
/// values that are a Protocol Error. `sender` is who sent the packet when known (the
/// decoder knows; the encoder, which serves both sides, passes `None`), for the rules
/// that depend on the direction.
pub(crate) fn check(props: &Properties, site: Site, sender: Option<Role>) -> Result<(), DecodeError> {
    let mut seen = 0u64;
    for p in props {
        let id = p.id();
        if !id.allowed_in(site) {
            return Err(DecodeError::PropertyNotAllowed { id, packet: site.name() });
        }
        // 5.0 [MQTT-3.3.4-6]: a PUBLISH from a client carries no Subscription Identifier;
        // [MQTT-3.14.2-2]: a DISCONNECT from a server carries no Session Expiry Interval.
        let wrong_way = matches!(
            (id, site, sender),
            (PropertyId::SubscriptionIdentifier, Site::Publish, Some(Role::Client))
                | (PropertyId::SessionExpiryInterval, Site::Disconnect, Some(Role::Server))
        );
        if wrong_way {
            return Err(DecodeError::PropertyNotAllowed { id, packet: site.name() });
        }
        let bit = 1u64 << (id as u8);
        if seen & bit != 0 && !id.repeatable_in(site) {
            return Err(DecodeError::DuplicateProperty(id));
        }
        seen |= bit;
        check_value(p)?;
    }
    let has = |id: PropertyId| seen & (1u64 << (id as u8)) != 0;
    if has(PropertyId::AuthenticationData) && !has(PropertyId::AuthenticationMethod) {
        return Err(DecodeError::AuthDataWithoutMethod);
    }
    Ok(())
}

/// The value rules of the individual property definitions (5.0 §3.x.2.x).
fn check_value(p: &Property) -> Result<(), DecodeError> {
    use Property as P;
    let ok = match p {
        P::PayloadFormatIndicator(v)
        | P::RequestProblemInformation(v)
        | P::RequestResponseInformation(v)
        | P::MaximumQoS(v)
        | P::RetainAvailable(v)
        | P::WildcardSubscriptionAvailable(v)
        | P::SubscriptionIdentifierAvailable(v)
        | P::SharedSubscriptionAvailable(v) => *v <= 1,
        P::ReceiveMaximum(v) => *v != 0,
        P::MaximumPacketSize(v) => *v != 0,
        P::SubscriptionIdentifier(v) => *v != 0 && *v as usize <= MAX_VARINT,
        P::TopicAlias(0) => return Err(DecodeError::TopicAliasZero),
        // 5.0 [MQTT-3.3.2-14]: a Response Topic is a topic name, without wildcards.
        P::ResponseTopic(topic) => return super::validate::topic_name(topic),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(DecodeError::InvalidPropertyValue(p.id()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &'static [u8]) -> Result<Properties, DecodeError> {
        let mut r = Reader::new(Bytes::from_static(bytes));
        let props = Properties::read(&mut r)?;
        r.finish()?;
        Ok(props)
    }

    fn encode(props: &Properties) -> Vec<u8> {
        props.wire_len().unwrap();
        let mut out = BytesMut::new();
        props.write(&mut out);
        out.to_vec()
    }

    #[test]
    fn connect_example_from_the_5_0_spec() {
        // 5.0 §3.1.2.12, Figure 3-6: Property Length 5, Session Expiry Interval 10.
        let props = read(&[0x05, 0x11, 0x00, 0x00, 0x00, 0x0A]).unwrap();
        assert_eq!(props.session_expiry_interval(), Some(10));
        check(&props, Site::Connect, Some(Role::Client)).unwrap();
        assert_eq!(encode(&props), [0x05, 0x11, 0x00, 0x00, 0x00, 0x0A]);
    }

    #[test]
    fn order_and_repeats_survive_a_round_trip() {
        let props = Properties::new()
            .with(Property::UserProperty("b".into(), "2".into()))
            .with(Property::ContentType("text/plain".into()))
            .with(Property::UserProperty("a".into(), "1".into()))
            .with(Property::SubscriptionIdentifier(16_384))
            .with(Property::SubscriptionIdentifier(1))
            .with(Property::CorrelationData(Bytes::from_static(&[0, 0xFF])));
        let bytes = encode(&props);
        let mut r = Reader::new(Bytes::from(bytes));
        let back = Properties::read(&mut r).unwrap();
        assert_eq!(back, props);
        check(&back, Site::Publish, Some(Role::Server)).unwrap();
        let users: Vec<_> = back.user_properties().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(users, [("b".to_owned(), "2".to_owned()), ("a".to_owned(), "1".to_owned())]);
        assert_eq!(back.subscription_identifiers().collect::<Vec<_>>(), [16_384, 1]);
    }

    #[test]
    fn property_strings_are_utf8_without_nul() {
        // User property key "a\0", reason string 0xFF, content type with a surrogate.
        assert_eq!(read(&[0x07, 0x26, 0, 2, b'a', 0, 0, 0]), Err(DecodeError::NullCharacter));
        assert_eq!(read(&[0x04, 0x1F, 0, 1, 0xFF]), Err(DecodeError::InvalidUtf8));
        assert_eq!(read(&[0x06, 0x03, 0, 3, 0xED, 0xBF, 0xBF]), Err(DecodeError::InvalidUtf8));
        // Binary data may hold anything.
        assert!(read(&[0x05, 0x09, 0, 2, 0, 0xFF]).is_ok());
    }

    #[test]
    fn unknown_identifiers_are_malformed() {
        assert_eq!(read(&[0x02, 0x04, 0x00]), Err(DecodeError::UnknownProperty(0x04)));
        // A multi-byte identifier is not a defined one either.
        assert_eq!(read(&[0x02, 0x81, 0x01]), Err(DecodeError::UnknownProperty(0x81)));
    }

    #[test]
    fn a_property_overrunning_the_property_length_is_truncated() {
        // mqttbytes reads past the declared property length into the payload.
        assert_eq!(read(&[0x02, 0x02, 0x00, 0x00, 0x00, 0x10]), Err(DecodeError::Truncated));
        assert_eq!(read(&[0x05, 0x11]), Err(DecodeError::Truncated));
    }

    #[test]
    fn properties_not_allowed_in_the_packet_are_refused() {
        let props = read(&[0x03, 0x23, 0x00, 0x01]).unwrap();
        assert_eq!(
            check(&props, Site::Connect, None),
            Err(DecodeError::PropertyNotAllowed {
                id: PropertyId::TopicAlias,
                packet: "CONNECT"
            })
        );
        let will_delay = read(&[0x05, 0x18, 0, 0, 0, 1]).unwrap();
        assert!(check(&will_delay, Site::Will, None).is_ok());
        assert!(check(&will_delay, Site::Publish, None).is_err());
    }

    #[test]
    fn subscription_identifiers_from_clients_are_refused() {
        let props = read(&[0x02, 0x0B, 0x01]).unwrap();
        assert!(check(&props, Site::Publish, Some(Role::Server)).is_ok());
        assert!(matches!(
            check(&props, Site::Publish, Some(Role::Client)),
            Err(DecodeError::PropertyNotAllowed { .. })
        ));
        // In SUBSCRIBE only once.
        let twice = read(&[0x04, 0x0B, 0x01, 0x0B, 0x02]).unwrap();
        assert!(check(&twice, Site::Publish, Some(Role::Server)).is_ok());
        assert_eq!(
            check(&twice, Site::Subscribe, None),
            Err(DecodeError::DuplicateProperty(PropertyId::SubscriptionIdentifier))
        );
    }

    #[test]
    fn session_expiry_from_a_server_disconnect_is_refused() {
        let props = read(&[0x05, 0x11, 0, 0, 0, 1]).unwrap();
        assert!(check(&props, Site::Disconnect, Some(Role::Client)).is_ok());
        assert!(check(&props, Site::Disconnect, Some(Role::Server)).is_err());
    }

    #[test]
    fn duplicates_are_a_protocol_error() {
        let props = read(&[0x06, 0x23, 0x00, 0x01, 0x23, 0x00, 0x02]).unwrap();
        assert_eq!(
            check(&props, Site::Publish, None),
            Err(DecodeError::DuplicateProperty(PropertyId::TopicAlias))
        );
        let users = read(&[0x0B, 0x26, 0, 1, b'k', 0, 0, 0x26, 0, 0, 0, 0]).unwrap();
        assert!(check(&users, Site::Publish, None).is_ok());
    }

    #[test]
    fn forbidden_values_are_refused() {
        let cases: &[(&'static [u8], Site, DecodeError)] = &[
            (
                &[0x02, 0x01, 0x02],
                Site::Publish,
                DecodeError::InvalidPropertyValue(PropertyId::PayloadFormatIndicator),
            ),
            (
                &[0x03, 0x21, 0x00, 0x00],
                Site::Connect,
                DecodeError::InvalidPropertyValue(PropertyId::ReceiveMaximum),
            ),
            (
                &[0x05, 0x27, 0, 0, 0, 0],
                Site::Connect,
                DecodeError::InvalidPropertyValue(PropertyId::MaximumPacketSize),
            ),
            (
                &[0x02, 0x17, 0x02],
                Site::Connect,
                DecodeError::InvalidPropertyValue(PropertyId::RequestProblemInformation),
            ),
            (
                &[0x02, 0x19, 0x02],
                Site::Connect,
                DecodeError::InvalidPropertyValue(PropertyId::RequestResponseInformation),
            ),
            (
                &[0x02, 0x24, 0x02],
                Site::ConnAck,
                DecodeError::InvalidPropertyValue(PropertyId::MaximumQoS),
            ),
            (
                &[0x02, 0x25, 0x02],
                Site::ConnAck,
                DecodeError::InvalidPropertyValue(PropertyId::RetainAvailable),
            ),
            (
                &[0x02, 0x28, 0x02],
                Site::ConnAck,
                DecodeError::InvalidPropertyValue(PropertyId::WildcardSubscriptionAvailable),
            ),
            (
                &[0x02, 0x29, 0x02],
                Site::ConnAck,
                DecodeError::InvalidPropertyValue(PropertyId::SubscriptionIdentifierAvailable),
            ),
            (
                &[0x02, 0x2A, 0x02],
                Site::ConnAck,
                DecodeError::InvalidPropertyValue(PropertyId::SharedSubscriptionAvailable),
            ),
            (
                &[0x02, 0x0B, 0x00],
                Site::Subscribe,
                DecodeError::InvalidPropertyValue(PropertyId::SubscriptionIdentifier),
            ),
            (&[0x03, 0x23, 0x00, 0x00], Site::Publish, DecodeError::TopicAliasZero),
            (&[0x04, 0x08, 0x00, 0x01, b'#'], Site::Publish, DecodeError::WildcardInTopicName),
            (&[0x03, 0x16, 0x00, 0x00], Site::Connect, DecodeError::AuthDataWithoutMethod),
        ];
        for (bytes, site, err) in cases {
            let props = read(bytes).unwrap();
            assert_eq!(check(&props, *site, None).as_ref(), Err(err), "{bytes:02x?}");
        }
    }

    #[test]
    fn encoding_checks_lengths_and_identifier_ranges() {
        let long = ByteString::from("x".repeat(65_536));
        assert_eq!(
            Properties::new().with(Property::ReasonString(long)).wire_len(),
            Err(EncodeError::FieldTooLong(65_536))
        );
        let too_big = Properties::new().with(Property::SubscriptionIdentifier(268_435_456));
        assert_eq!(too_big.wire_len(), Err(EncodeError::SubscriptionIdOutOfRange(268_435_456)));
        assert_eq!(Properties::new().wire_len_prefixed(), Ok(1));
    }
}
