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
//!
//! Each property is declared once, in the `properties!` table below (identifier, name,
//! value type, wire type, where it is allowed, where it may repeat, its getter); the
//! table expands to [`PropertyId`], [`Property`], the decoder, the encoder, the
//! allowed-in and repeat rules and the getters of [`Properties`].

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::decoder::Role;
use super::error::{DecodeError, EncodeError};
use super::wire::{self, Reader, MAX_VARINT};

/// The data types of 5.0 §1.5 a property value is written in (the Type column of
/// §2.2.2.2, Table 2-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireType {
    /// One byte (§1.5.1).
    Byte,
    /// A big-endian 16-bit integer (§1.5.2).
    TwoByteInteger,
    /// A big-endian 32-bit integer (§1.5.3).
    FourByteInteger,
    /// A Variable Byte Integer, one to four bytes (§1.5.5).
    VariableByteInteger,
    /// A UTF-8 Encoded String with a two-byte length (§1.5.4).
    Utf8String,
    /// A UTF-8 String Pair: name, then value (§1.5.7).
    Utf8StringPair,
    /// Binary Data with a two-byte length (§1.5.6).
    BinaryData,
}

impl WireType {
    /// The name Table 2-4 uses.
    pub fn name(self) -> &'static str {
        match self {
            WireType::Byte => "Byte",
            WireType::TwoByteInteger => "Two Byte Integer",
            WireType::FourByteInteger => "Four Byte Integer",
            WireType::VariableByteInteger => "Variable Byte Integer",
            WireType::Utf8String => "UTF-8 Encoded String",
            WireType::Utf8StringPair => "UTF-8 String Pair",
            WireType::BinaryData => "Binary Data",
        }
    }
}

/// How a value of each [`WireType`] is read, measured and written: the `properties!`
/// table calls this with each row's wire type. `pat` binds a [`Property`]'s value to
/// `$a` (and a pair's value string to `$b`); `len` also pins the Rust type each wire
/// type is held in, so a row whose value type and wire type disagree does not compile.
#[rustfmt::skip]
macro_rules! value {
    (pat Utf8StringPair, $name:ident, $a:ident, $b:ident) => { Property::$name($a, $b) };
    (pat $wire:ident, $name:ident, $a:ident, $b:ident) => { Property::$name($a) };

    (read Byte, $name:ident, $r:ident) => { Property::$name($r.u8()?) };
    (len Byte, $a:ident, $b:ident) => {{ let _: &u8 = $a; 1 }};
    (write Byte, $out:ident, $a:ident, $b:ident) => { $out.put_u8(*$a) };

    (read TwoByteInteger, $name:ident, $r:ident) => { Property::$name($r.u16()?) };
    (len TwoByteInteger, $a:ident, $b:ident) => {{ let _: &u16 = $a; 2 }};
    (write TwoByteInteger, $out:ident, $a:ident, $b:ident) => { $out.put_u16(*$a) };

    (read FourByteInteger, $name:ident, $r:ident) => { Property::$name($r.u32()?) };
    (len FourByteInteger, $a:ident, $b:ident) => {{ let _: &u32 = $a; 4 }};
    (write FourByteInteger, $out:ident, $a:ident, $b:ident) => { $out.put_u32(*$a) };

    // `varint` never exceeds MAX_VARINT, which fits a u32.
    (read VariableByteInteger, $name:ident, $r:ident) => { Property::$name($r.varint()? as u32) };
    // The one Variable Byte Integer property is the Subscription Identifier, 1 to
    // MAX_VARINT (5.0 §3.3.2.3.8); the table test checks that it stays the only one.
    (len VariableByteInteger, $a:ident, $b:ident) => {{
        let id: u32 = *$a;
        if id == 0 || id as usize > MAX_VARINT {
            return Err(EncodeError::SubscriptionIdOutOfRange(id));
        }
        wire::varint_len(id as usize)
    }};
    (write VariableByteInteger, $out:ident, $a:ident, $b:ident) => { wire::put_varint($out, *$a as usize) };

    (read Utf8String, $name:ident, $r:ident) => { Property::$name($r.string()?) };
    (len Utf8String, $a:ident, $b:ident) => {{ let s: &ByteString = $a; wire::string_len(s)? }};
    (write Utf8String, $out:ident, $a:ident, $b:ident) => { wire::put_binary($out, $a.as_bytes()) };

    (read BinaryData, $name:ident, $r:ident) => { Property::$name($r.binary()?) };
    (len BinaryData, $a:ident, $b:ident) => {{ let data: &Bytes = $a; wire::binary_len(data)? }};
    (write BinaryData, $out:ident, $a:ident, $b:ident) => { wire::put_binary($out, $a) };

    (read Utf8StringPair, $name:ident, $r:ident) => {{ let key = $r.string()?; Property::$name(key, $r.string()?) }};
    (len Utf8StringPair, $a:ident, $b:ident) => {{
        let (key, value): (&ByteString, &ByteString) = ($a, $b);
        wire::string_len(key)? + wire::string_len(value)?
    }};
    (write Utf8StringPair, $out:ident, $a:ident, $b:ident) => {{
        wire::put_binary($out, $a.as_bytes());
        wire::put_binary($out, $b.as_bytes());
    }};
}

/// Whether `$site` is in the set of [`Site`]s a table row lists: `every`, or sites joined
/// by `|` (none for the empty set). A `matches!` per row, so that the compiler can fold
/// the site, which a packet's check knows before its loop, into each row's test.
macro_rules! site_in {
    ($site:ident, every) => { true };
    ($site:ident, ) => { false };
    ($site:ident, $($s:ident)|+) => { matches!($site, $(Site::$s)|+) };
}

/// Expands the property table: one row per property, in identifier order,
///
/// ```text
/// /// doc of the Property variant
/// id Variant(value type): WireType "Name in the spec" in [allowed sites] repeat [sites] get getter;
/// ```
///
/// into [`PropertyId`] (with `from_id`, `name`, `wire_type`, `allowed_in`,
/// `repeatable_in` and `ALL`), [`Property`] (with `id`, its reader, `wire_len` and its
/// writer), and a getter on [`Properties`] for each row that names one. The model is
/// quinn-proto's `apply_params!` for QUIC transport parameters.
macro_rules! properties {
    ($(
        $(#[$doc:meta])*
        $id:literal $name:ident($ty:ty $(, $ty2:ty)?): $wire:ident $spec:literal
            in [$($allowed:tt)*] repeat [$($repeat:tt)*] $(get $getter:ident)?;
    )*) => {
        /// The property identifiers of 5.0 §2.2.2.2, Table 2-4.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum PropertyId {
            $(
                #[doc = concat!(stringify!($id), " ", $spec, ", ", stringify!($wire), ": ", stringify!($($allowed)*), ".")]
                $name = $id,
            )*
        }

        impl PropertyId {
            /// Every property 5.0 defines, in identifier order.
            pub const ALL: &'static [PropertyId] = &[$(PropertyId::$name),*];

            /// The property for an identifier, `None` for one 5.0 does not define.
            pub fn from_id(id: usize) -> Option<PropertyId> {
                match id {
                    $($id => Some(PropertyId::$name),)*
                    _ => None,
                }
            }

            /// The property's name in the specification ("Receive Maximum").
            pub fn name(self) -> &'static str {
                match self {
                    $(PropertyId::$name => $spec,)*
                }
            }

            /// How the property's value is written.
            pub fn wire_type(self) -> WireType {
                match self {
                    $(PropertyId::$name => WireType::$wire,)*
                }
            }

            /// Whether 5.0 §2.2.2.2 allows this property in `site`.
            #[inline]
            pub fn allowed_in(self, site: Site) -> bool {
                match self {
                    $(PropertyId::$name => site_in!(site, $($allowed)*),)*
                }
            }

            /// Whether the property may appear more than once in `site`: User Property always,
            /// Subscription Identifier in PUBLISH (one per matching subscription).
            pub fn repeatable_in(self, site: Site) -> bool {
                // Guards, not a value per row: the rows that never repeat fold away, leaving
                // the compiler the two tests a hand-written match would have.
                match self {
                    $(PropertyId::$name if site_in!(site, $($repeat)*) => true,)*
                    _ => false,
                }
            }
        }

        /// One property with its value.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Property {
            $(
                $(#[$doc])*
                $name($ty $(, $ty2)?),
            )*
        }

        impl Property {
            /// This property's identifier.
            pub fn id(&self) -> PropertyId {
                match self {
                    $(Property::$name(..) => PropertyId::$name,)*
                }
            }

            /// Reads the value of property `id` (the identifier already read).
            fn read(id: PropertyId, r: &mut Reader) -> Result<Property, DecodeError> {
                Ok(match id {
                    $(PropertyId::$name => value!(read $wire, $name, r),)*
                })
            }

            /// The encoded size (identifier and value), checking field lengths.
            pub(crate) fn wire_len(&self) -> Result<usize, EncodeError> {
                // Every identifier is below 0x80: a one-byte Variable Byte Integer.
                Ok(1 + match self {
                    $(value!(pat $wire, $name, a, b) => value!(len $wire, a, b),)*
                })
            }

            /// Writes identifier and value (after [`Property::wire_len`] succeeded).
            fn write(&self, out: &mut BytesMut) {
                match self {
                    $(value!(pat $wire, $name, a, b) => {
                        out.put_u8($id);
                        value!(write $wire, out, a, b)
                    })*
                }
            }
        }

        impl Properties {
            $($(
                #[doc = concat!("The ", $spec, " (", stringify!($id), "), the first if there are several; ")]
                #[doc = concat!("see [`Property::", stringify!($name), "`].")]
                pub fn $getter(&self) -> Option<$ty> {
                    self.list.iter().find_map(|p| match p {
                        Property::$name(v) => Some(v.clone()),
                        _ => None,
                    })
                }
            )?)*
        }
    };
}

properties! {
    /// 0 unspecified bytes, 1 UTF-8 text.
    0x01 PayloadFormatIndicator(u8): Byte "Payload Format Indicator" in [Publish | Will] repeat [] get payload_format_indicator;
    /// Lifetime of the message in seconds.
    0x02 MessageExpiryInterval(u32): FourByteInteger "Message Expiry Interval" in [Publish | Will] repeat [] get message_expiry_interval;
    /// MIME type of the payload.
    0x03 ContentType(ByteString): Utf8String "Content Type" in [Publish | Will] repeat [] get content_type;
    /// Topic name for a response.
    0x08 ResponseTopic(ByteString): Utf8String "Response Topic" in [Publish | Will] repeat [] get response_topic;
    /// Request/response correlation data.
    0x09 CorrelationData(Bytes): BinaryData "Correlation Data" in [Publish | Will] repeat [] get correlation_data;
    /// Identifier of a subscription (1..=268,435,455). Only a server sends it in PUBLISH,
    /// once per matching subscription ([`Properties::subscription_identifiers`]).
    0x0B SubscriptionIdentifier(u32): VariableByteInteger "Subscription Identifier" in [Publish | Subscribe] repeat [Publish];
    /// Session lifetime after disconnection, in seconds.
    0x11 SessionExpiryInterval(u32): FourByteInteger "Session Expiry Interval"
        in [Connect | ConnAck | Disconnect] repeat [] get session_expiry_interval;
    /// Client identifier the server assigned.
    0x12 AssignedClientIdentifier(ByteString): Utf8String "Assigned Client Identifier"
        in [ConnAck] repeat [] get assigned_client_identifier;
    /// Keep alive imposed by the server, in seconds.
    0x13 ServerKeepAlive(u16): TwoByteInteger "Server Keep Alive" in [ConnAck] repeat [] get server_keep_alive;
    /// Name of the extended authentication method.
    0x15 AuthenticationMethod(ByteString): Utf8String "Authentication Method"
        in [Connect | ConnAck | Auth] repeat [] get authentication_method;
    /// Extended authentication data.
    0x16 AuthenticationData(Bytes): BinaryData "Authentication Data" in [Connect | ConnAck | Auth] repeat [] get authentication_data;
    /// Whether the client wants reason strings and user properties on failures.
    0x17 RequestProblemInformation(u8): Byte "Request Problem Information" in [Connect] repeat [] get request_problem_information;
    /// Delay before the will is published, in seconds.
    0x18 WillDelayInterval(u32): FourByteInteger "Will Delay Interval" in [Will] repeat [] get will_delay_interval;
    /// Whether the client wants Response Information in the CONNACK.
    0x19 RequestResponseInformation(u8): Byte "Request Response Information" in [Connect] repeat [] get request_response_information;
    /// Basis for response topics.
    0x1A ResponseInformation(ByteString): Utf8String "Response Information" in [ConnAck] repeat [] get response_information;
    /// Another server for the client to use.
    0x1C ServerReference(ByteString): Utf8String "Server Reference" in [ConnAck | Disconnect] repeat [] get server_reference;
    /// Human-readable diagnostic.
    0x1F ReasonString(ByteString): Utf8String "Reason String"
        in [ConnAck | PubAck | PubRec | PubRel | PubComp | SubAck | UnsubAck | Disconnect | Auth] repeat [] get reason_string;
    /// Maximum number of unacknowledged QoS 1 and 2 PUBLISHes the sender accepts.
    0x21 ReceiveMaximum(u16): TwoByteInteger "Receive Maximum" in [Connect | ConnAck] repeat [] get receive_maximum;
    /// Highest topic alias the sender accepts.
    0x22 TopicAliasMaximum(u16): TwoByteInteger "Topic Alias Maximum" in [Connect | ConnAck] repeat [] get topic_alias_maximum;
    /// Alias standing for the topic name.
    0x23 TopicAlias(u16): TwoByteInteger "Topic Alias" in [Publish] repeat [] get topic_alias;
    /// Highest QoS the server supports (0 or 1; absent means 2).
    0x24 MaximumQoS(u8): Byte "Maximum QoS" in [ConnAck] repeat [] get maximum_qos;
    /// Whether the server supports retained messages.
    0x25 RetainAvailable(u8): Byte "Retain Available" in [ConnAck] repeat [] get retain_available;
    /// An application name/value pair; order is kept ([`Properties::user_properties`]).
    0x26 UserProperty(ByteString, ByteString): Utf8StringPair "User Property" in [every] repeat [every];
    /// Largest packet the sender accepts.
    0x27 MaximumPacketSize(u32): FourByteInteger "Maximum Packet Size" in [Connect | ConnAck] repeat [] get maximum_packet_size;
    /// Whether the server supports wildcard subscriptions.
    0x28 WildcardSubscriptionAvailable(u8): Byte "Wildcard Subscription Available"
        in [ConnAck] repeat [] get wildcard_subscription_available;
    /// Whether the server supports subscription identifiers.
    0x29 SubscriptionIdentifierAvailable(u8): Byte "Subscription Identifier Available"
        in [ConnAck] repeat [] get subscription_identifier_available;
    /// Whether the server supports shared subscriptions.
    0x2A SharedSubscriptionAvailable(u8): Byte "Shared Subscription Available"
        in [ConnAck] repeat [] get shared_subscription_available;
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
    /// Every site, in declaration order.
    pub const ALL: [Site; 14] = [
        Site::Connect,
        Site::Will,
        Site::ConnAck,
        Site::Publish,
        Site::PubAck,
        Site::PubRec,
        Site::PubRel,
        Site::PubComp,
        Site::Subscribe,
        Site::SubAck,
        Site::Unsubscribe,
        Site::UnsubAck,
        Site::Disconnect,
        Site::Auth,
    ];

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

/// The properties of one packet (or will), in wire order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    list: Vec<Property>,
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

    /// 5.0 §2.2.2.2, Table 2-4, as the specification prints it: identifier, name, type,
    /// and the packets (and will properties) the property may be in.
    const TABLE_2_4: &[(u8, &str, WireType, &[Site])] = {
        use Site::*;
        use WireType::*;
        &[
            (0x01, "Payload Format Indicator", Byte, &[Publish, Will]),
            (0x02, "Message Expiry Interval", FourByteInteger, &[Publish, Will]),
            (0x03, "Content Type", Utf8String, &[Publish, Will]),
            (0x08, "Response Topic", Utf8String, &[Publish, Will]),
            (0x09, "Correlation Data", BinaryData, &[Publish, Will]),
            (0x0B, "Subscription Identifier", VariableByteInteger, &[Publish, Subscribe]),
            (0x11, "Session Expiry Interval", FourByteInteger, &[Connect, ConnAck, Disconnect]),
            (0x12, "Assigned Client Identifier", Utf8String, &[ConnAck]),
            (0x13, "Server Keep Alive", TwoByteInteger, &[ConnAck]),
            (0x15, "Authentication Method", Utf8String, &[Connect, ConnAck, Auth]),
            (0x16, "Authentication Data", BinaryData, &[Connect, ConnAck, Auth]),
            (0x17, "Request Problem Information", Byte, &[Connect]),
            (0x18, "Will Delay Interval", FourByteInteger, &[Will]),
            (0x19, "Request Response Information", Byte, &[Connect]),
            (0x1A, "Response Information", Utf8String, &[ConnAck]),
            (0x1C, "Server Reference", Utf8String, &[ConnAck, Disconnect]),
            (
                0x1F,
                "Reason String",
                Utf8String,
                &[ConnAck, PubAck, PubRec, PubRel, PubComp, SubAck, UnsubAck, Disconnect, Auth],
            ),
            (0x21, "Receive Maximum", TwoByteInteger, &[Connect, ConnAck]),
            (0x22, "Topic Alias Maximum", TwoByteInteger, &[Connect, ConnAck]),
            (0x23, "Topic Alias", TwoByteInteger, &[Publish]),
            (0x24, "Maximum QoS", Byte, &[ConnAck]),
            (0x25, "Retain Available", Byte, &[ConnAck]),
            (
                0x26,
                "User Property",
                Utf8StringPair,
                &[
                    Connect,
                    ConnAck,
                    Publish,
                    Will,
                    PubAck,
                    PubRec,
                    PubRel,
                    PubComp,
                    Subscribe,
                    SubAck,
                    Unsubscribe,
                    UnsubAck,
                    Disconnect,
                    Auth,
                ],
            ),
            (0x27, "Maximum Packet Size", FourByteInteger, &[Connect, ConnAck]),
            (0x28, "Wildcard Subscription Available", Byte, &[ConnAck]),
            (0x29, "Subscription Identifier Available", Byte, &[ConnAck]),
            (0x2A, "Shared Subscription Available", Byte, &[ConnAck]),
        ]
    };

    #[test]
    fn the_table_matches_table_2_4_of_the_5_0_spec() {
        assert_eq!(TABLE_2_4.len(), 27);
        assert_eq!(PropertyId::ALL.len(), 27);
        for (&id, &(code, name, wire, sites)) in PropertyId::ALL.iter().zip(TABLE_2_4) {
            assert_eq!(id as u8, code, "{name}");
            assert_eq!(id.name(), name, "{code:#04x}");
            assert_eq!(id.wire_type(), wire, "{name}");
            assert_eq!(PropertyId::from_id(code.into()), Some(id), "{name}");
            for site in Site::ALL {
                assert_eq!(id.allowed_in(site), sites.contains(&site), "{name} in {}", site.name());
            }
        }
        // Each identifier once, and no other identifier: everything below 0x80 that the
        // table does not list is unknown, and so is every multi-byte identifier.
        for raw in 0..0x4000usize {
            let listed = TABLE_2_4.iter().filter(|row| usize::from(row.0) == raw).count();
            assert!(listed <= 1);
            assert_eq!(PropertyId::from_id(raw).is_some(), listed == 1, "{raw:#x}");
        }
        // The encoder's range check for Variable Byte Integers is the Subscription
        // Identifier's (1..=MAX_VARINT): it must stay the only one of that type.
        let varints: Vec<_> = PropertyId::ALL
            .iter()
            .filter(|id| id.wire_type() == WireType::VariableByteInteger)
            .collect();
        assert_eq!(varints, [&PropertyId::SubscriptionIdentifier]);
    }

    #[test]
    fn only_user_properties_and_a_publish_s_subscription_identifiers_repeat() {
        // 5.0 §3.1.2.11.8 and the other User Property clauses: "allowed to appear multiple
        // times"; §3.3.2.3.8: one Subscription Identifier per matching subscription in a
        // PUBLISH; §3.8.2.1.2: one in a SUBSCRIBE. Every other property: "more than once
        // is a Protocol Error".
        for &id in PropertyId::ALL {
            for site in Site::ALL {
                let expected = id == PropertyId::UserProperty || (id == PropertyId::SubscriptionIdentifier && site == Site::Publish);
                assert_eq!(id.repeatable_in(site), expected, "{} in {}", id.name(), site.name());
            }
        }
    }

    /// One value of every property and its encoding (identifier, then value), in
    /// identifier order.
    fn every_property() -> Vec<(Property, &'static [u8])> {
        use Property as P;
        vec![
            (P::PayloadFormatIndicator(1), &[0x01, 0x01]),
            (P::MessageExpiryInterval(0x0102_0304), &[0x02, 0x01, 0x02, 0x03, 0x04]),
            (P::ContentType("a/b".into()), &[0x03, 0x00, 0x03, b'a', b'/', b'b']),
            (P::ResponseTopic("r".into()), &[0x08, 0x00, 0x01, b'r']),
            (
                P::CorrelationData(Bytes::from_static(&[0x00, 0xFF])),
                &[0x09, 0x00, 0x02, 0x00, 0xFF],
            ),
            // 16,384 is the first three-byte Variable Byte Integer (5.0 §1.5.5, Table 1-1).
            (P::SubscriptionIdentifier(16_384), &[0x0B, 0x80, 0x80, 0x01]),
            (P::SessionExpiryInterval(u32::MAX), &[0x11, 0xFF, 0xFF, 0xFF, 0xFF]),
            (P::AssignedClientIdentifier("c".into()), &[0x12, 0x00, 0x01, b'c']),
            (P::ServerKeepAlive(0x0102), &[0x13, 0x01, 0x02]),
            (P::AuthenticationMethod("m".into()), &[0x15, 0x00, 0x01, b'm']),
            (P::AuthenticationData(Bytes::from_static(&[0x07])), &[0x16, 0x00, 0x01, 0x07]),
            (P::RequestProblemInformation(0), &[0x17, 0x00]),
            (P::WillDelayInterval(10), &[0x18, 0x00, 0x00, 0x00, 0x0A]),
            (P::RequestResponseInformation(1), &[0x19, 0x01]),
            (P::ResponseInformation("i".into()), &[0x1A, 0x00, 0x01, b'i']),
            (P::ServerReference("s".into()), &[0x1C, 0x00, 0x01, b's']),
            (P::ReasonString("".into()), &[0x1F, 0x00, 0x00]),
            (P::ReceiveMaximum(u16::MAX), &[0x21, 0xFF, 0xFF]),
            (P::TopicAliasMaximum(10), &[0x22, 0x00, 0x0A]),
            (P::TopicAlias(1), &[0x23, 0x00, 0x01]),
            (P::MaximumQoS(1), &[0x24, 0x01]),
            (P::RetainAvailable(0), &[0x25, 0x00]),
            (P::UserProperty("k".into(), "v".into()), &[0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v']),
            (P::MaximumPacketSize(1 << 20), &[0x27, 0x00, 0x10, 0x00, 0x00]),
            (P::WildcardSubscriptionAvailable(1), &[0x28, 0x01]),
            (P::SubscriptionIdentifierAvailable(0), &[0x29, 0x00]),
            (P::SharedSubscriptionAvailable(1), &[0x2A, 0x01]),
        ]
    }

    #[test]
    fn every_property_encodes_byte_for_byte() {
        let all = every_property();
        let ids: Vec<_> = all.iter().map(|(p, _)| p.id()).collect();
        assert_eq!(ids, PropertyId::ALL);
        for (property, bytes) in &all {
            assert_eq!(property.wire_len(), Ok(bytes.len()), "{property:?}");
            let mut out = BytesMut::new();
            property.write(&mut out);
            assert_eq!(&out[..], *bytes, "{property:?}");
            let mut r = Reader::new(Bytes::copy_from_slice(&bytes[1..]));
            let id = PropertyId::from_id(bytes[0].into()).unwrap();
            assert_eq!(Property::read(id, &mut r).as_ref(), Ok(property));
            r.finish().unwrap();
        }
        // All 27 in one list: the length prefix (97, one byte), then each in order.
        let props: Properties = all.iter().map(|(p, _)| p.clone()).collect();
        let body: Vec<u8> = all.iter().flat_map(|(_, b)| b.iter().copied()).collect();
        assert_eq!(body.len(), 97);
        assert_eq!(props.wire_len_prefixed(), Ok(98));
        assert_eq!(encode(&props), [&[97u8][..], &body].concat());
        let mut r = Reader::new(Bytes::from([&[97u8][..], &body].concat()));
        assert_eq!(Properties::read(&mut r), Ok(props));
    }

    #[test]
    fn getters_return_the_first_value() {
        let mut props: Properties = every_property().into_iter().map(|(p, _)| p).collect();
        props.push(Property::TopicAlias(2));
        assert_eq!(props.payload_format_indicator(), Some(1));
        assert_eq!(props.message_expiry_interval(), Some(0x0102_0304));
        assert_eq!(props.content_type().as_deref(), Some("a/b"));
        assert_eq!(props.response_topic().as_deref(), Some("r"));
        assert_eq!(props.correlation_data().as_deref(), Some(&[0x00, 0xFF][..]));
        assert_eq!(props.session_expiry_interval(), Some(u32::MAX));
        assert_eq!(props.assigned_client_identifier().as_deref(), Some("c"));
        assert_eq!(props.server_keep_alive(), Some(0x0102));
        assert_eq!(props.authentication_method().as_deref(), Some("m"));
        assert_eq!(props.authentication_data().as_deref(), Some(&[0x07][..]));
        assert_eq!(props.request_problem_information(), Some(0));
        assert_eq!(props.will_delay_interval(), Some(10));
        assert_eq!(props.request_response_information(), Some(1));
        assert_eq!(props.response_information().as_deref(), Some("i"));
        assert_eq!(props.server_reference().as_deref(), Some("s"));
        assert_eq!(props.reason_string().as_deref(), Some(""));
        assert_eq!(props.receive_maximum(), Some(u16::MAX));
        assert_eq!(props.topic_alias_maximum(), Some(10));
        assert_eq!(props.topic_alias(), Some(1));
        assert_eq!(props.maximum_qos(), Some(1));
        assert_eq!(props.retain_available(), Some(0));
        assert_eq!(props.maximum_packet_size(), Some(1 << 20));
        assert_eq!(props.wildcard_subscription_available(), Some(1));
        assert_eq!(props.subscription_identifier_available(), Some(0));
        assert_eq!(props.shared_subscription_available(), Some(1));
        assert_eq!(Properties::new().topic_alias(), None);
    }
}
