//! A second opinion: mqttbytes 0.6 decodes the same bytes, and the two results must
//! agree. Used by the unit tests and, with the `oracle` feature, by the fuzz targets, so
//! that every packet this codec accepts is checked against an independent parser.
//!
//! mqttbytes is only ever handed packets this codec has already accepted, and is not
//! asked about what it gets wrong on valid input (see the module docs of `codec`):
//! MQTT 3.1, AUTH, 5.0 DISCONNECTs shorter than two bytes, 5.0 UNSUBSCRIBE (it prints
//! to stderr), CONNECTs with a binary password (it wants UTF-8) and 5.0 PUBLISHes whose
//! properties it misreads because it counts a Subscription Identifier one byte too
//! long. It also stores properties per kind rather than in wire order, so both sides
//! are compared with their properties sorted by identifier (stable: user properties
//! keep their order).

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use mqttbytes::{v4, v5};

use super::packet::{
    Ack, ConnAck, Connect, Disconnect, Packet, QoS, RetainHandling, SubAck, Subscribe, Subscription, UnsubAck, Unsubscribe, Version, Will,
};
use super::properties::{Properties, Property};
use super::reason::ReasonCode;

/// Decodes `frame` (one whole packet that this codec decoded as `ours` for `version`)
/// with mqttbytes and compares the results. `Ok` when they agree or when mqttbytes
/// cannot be trusted with this packet; `Err` describes a disagreement.
pub fn check(frame: &[u8], version: Version, ours: &Packet) -> Result<(), String> {
    if skip(frame, version, ours) {
        return Ok(());
    }
    let mut buf = BytesMut::from(frame);
    let theirs = match version {
        Version::V5 => v5::read(&mut buf, usize::MAX).map(from_v5),
        _ => v4::read(&mut buf, usize::MAX).map(from_v4),
    };
    let theirs = theirs.map_err(|e| format!("mqttbytes refused a packet we accept: {e:?}"))?;
    let ours = normalize(ours.clone());
    if theirs != ours {
        return Err(format!("disagreement:\n ours:   {ours:?}\n theirs: {theirs:?}"));
    }
    if !buf.is_empty() {
        return Err(format!("mqttbytes left {} bytes", buf.len()));
    }
    Ok(())
}

/// The packets mqttbytes is known to get wrong.
fn skip(frame: &[u8], version: Version, ours: &Packet) -> bool {
    match (version, ours) {
        (Version::V3_1, _) | (_, Packet::Auth(_)) => true,
        (Version::V5, Packet::Disconnect(_)) => frame.len() < 4,
        (Version::V5, Packet::Unsubscribe(_)) => true,
        (Version::V5, Packet::Publish(p)) => miscounts_subscription_identifiers(&p.properties),
        (_, Packet::Connect(c)) => c.password.as_ref().is_some_and(|p| std::str::from_utf8(p).is_err()),
        _ => false,
    }
}

/// mqttbytes counts every Subscription Identifier one byte too long and stops reading
/// properties when its count reaches the property length: whatever properties remain
/// then are taken for payload.
fn miscounts_subscription_identifiers(props: &Properties) -> bool {
    let sizes: Vec<(usize, bool)> = props
        .iter()
        .map(|p| {
            (
                p.wire_len().unwrap_or(0),
                p.id() == super::properties::PropertyId::SubscriptionIdentifier,
            )
        })
        .collect();
    let total: usize = sizes.iter().map(|(len, _)| len).sum();
    let mut counted = 0;
    for (len, is_id) in sizes {
        if counted >= total {
            return true;
        }
        counted += len + usize::from(is_id);
    }
    false
}

fn s(value: String) -> ByteString {
    ByteString::from(value)
}

fn qos(q: mqttbytes::QoS) -> QoS {
    match q {
        mqttbytes::QoS::AtMostOnce => QoS::AtMostOnce,
        mqttbytes::QoS::AtLeastOnce => QoS::AtLeastOnce,
        mqttbytes::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

/// Our representation's view of an optional login: an empty user name or password is
/// the same as none (mqttbytes cannot tell them apart).
fn login(username: Option<ByteString>, password: Option<Bytes>) -> (Option<ByteString>, Option<Bytes>) {
    (username.filter(|u| !u.is_empty()), password.filter(|p| !p.is_empty()))
}

/// Sorts properties by identifier, keeping the order of equal ones.
fn sorted(props: Properties) -> Properties {
    let mut list: Vec<Property> = props.iter().cloned().collect();
    list.sort_by_key(|p| p.id() as u8);
    list.into_iter().collect()
}

fn normalize(packet: Packet) -> Packet {
    match packet {
        Packet::Connect(mut c) => {
            (c.username, c.password) = login(c.username.take(), c.password.take());
            c.properties = sorted(c.properties);
            if let Some(w) = c.will.as_mut() {
                w.properties = sorted(std::mem::take(&mut w.properties));
            }
            Packet::Connect(c)
        }
        Packet::ConnAck(mut c) => {
            c.properties = sorted(c.properties);
            Packet::ConnAck(c)
        }
        Packet::Publish(mut p) => {
            p.properties = sorted(p.properties);
            Packet::Publish(p)
        }
        Packet::PubAck(a) => Packet::PubAck(sorted_ack(a)),
        Packet::PubRec(a) => Packet::PubRec(sorted_ack(a)),
        Packet::PubRel(a) => Packet::PubRel(sorted_ack(a)),
        Packet::PubComp(a) => Packet::PubComp(sorted_ack(a)),
        Packet::Subscribe(mut s) => {
            s.properties = sorted(s.properties);
            Packet::Subscribe(s)
        }
        Packet::SubAck(mut s) => {
            s.properties = sorted(s.properties);
            Packet::SubAck(s)
        }
        Packet::UnsubAck(mut u) => {
            u.properties = sorted(u.properties);
            Packet::UnsubAck(u)
        }
        Packet::Disconnect(mut d) => {
            d.properties = sorted(d.properties);
            Packet::Disconnect(d)
        }
        other => other,
    }
}

fn sorted_ack(mut a: Ack) -> Ack {
    a.properties = sorted(a.properties);
    a
}

fn from_v4(p: v4::Packet) -> Packet {
    match p {
        v4::Packet::Connect(c) => {
            let (username, password) = match c.login {
                Some(l) => login(Some(s(l.username)), Some(Bytes::from(l.password))),
                None => (None, None),
            };
            Packet::Connect(Connect {
                version: Version::V3_1_1,
                clean_start: c.clean_session,
                keep_alive: c.keep_alive,
                client_id: s(c.client_id),
                will: c.last_will.map(|w| Will {
                    topic: s(w.topic),
                    payload: w.message,
                    qos: qos(w.qos),
                    retain: w.retain,
                    properties: Properties::new(),
                }),
                username,
                password,
                properties: Properties::new(),
            })
        }
        v4::Packet::ConnAck(c) => Packet::ConnAck(ConnAck {
            session_present: c.session_present,
            code: ReasonCode::from_v3_connack(c.code as u8).unwrap_or(ReasonCode(0xFF)),
            properties: Properties::new(),
        }),
        v4::Packet::Publish(p) => Packet::Publish(super::packet::Publish {
            dup: p.dup,
            qos: qos(p.qos),
            retain: p.retain,
            topic: s(p.topic),
            pkid: p.pkid,
            properties: Properties::new(),
            payload: p.payload,
        }),
        v4::Packet::PubAck(a) => Packet::PubAck(Ack::new(a.pkid)),
        v4::Packet::PubRec(a) => Packet::PubRec(Ack::new(a.pkid)),
        v4::Packet::PubRel(a) => Packet::PubRel(Ack::new(a.pkid)),
        v4::Packet::PubComp(a) => Packet::PubComp(Ack::new(a.pkid)),
        v4::Packet::Subscribe(sub) => Packet::Subscribe(Subscribe {
            pkid: sub.pkid,
            subscriptions: sub.filters.into_iter().map(|f| Subscription::new(s(f.path), qos(f.qos))).collect(),
            properties: Properties::new(),
        }),
        v4::Packet::SubAck(a) => Packet::SubAck(SubAck {
            pkid: a.pkid,
            codes: a
                .return_codes
                .into_iter()
                .map(|c| match c {
                    v4::SubscribeReasonCode::Success(q) => ReasonCode::granted(qos(q)),
                    v4::SubscribeReasonCode::Failure => ReasonCode::UNSPECIFIED_ERROR,
                })
                .collect(),
            properties: Properties::new(),
        }),
        v4::Packet::Unsubscribe(u) => Packet::Unsubscribe(Unsubscribe {
            pkid: u.pkid,
            filters: u.topics.into_iter().map(s).collect(),
            properties: Properties::new(),
        }),
        v4::Packet::UnsubAck(u) => Packet::UnsubAck(UnsubAck {
            pkid: u.pkid,
            codes: Vec::new(),
            properties: Properties::new(),
        }),
        v4::Packet::PingReq => Packet::PingReq,
        v4::Packet::PingResp => Packet::PingResp,
        v4::Packet::Disconnect => Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS)),
    }
}

/// Builds a sorted property list from optional values, in identifier order.
struct Builder(Vec<Property>);

impl Builder {
    fn new() -> Self {
        Builder(Vec::new())
    }

    fn opt<T>(mut self, value: Option<T>, make: impl FnOnce(T) -> Property) -> Self {
        if let Some(v) = value {
            self.0.push(make(v));
        }
        self
    }

    fn users(mut self, users: Vec<(String, String)>) -> Self {
        self.0.extend(users.into_iter().map(|(k, v)| Property::UserProperty(s(k), s(v))));
        self
    }

    fn done(self) -> Properties {
        sorted(self.0.into_iter().collect())
    }
}

fn reason_and_users(reason: Option<String>, users: Vec<(String, String)>) -> Properties {
    Builder::new().opt(reason.map(s), Property::ReasonString).users(users).done()
}

fn from_v5(p: v5::Packet) -> Packet {
    match p {
        v5::Packet::Connect(c) => {
            let (username, password) = match c.login {
                Some(l) => login(Some(s(l.username)), Some(Bytes::from(l.password))),
                None => (None, None),
            };
            let properties = match c.properties {
                Some(p) => Builder::new()
                    .opt(p.session_expiry_interval, Property::SessionExpiryInterval)
                    .opt(p.receive_maximum, Property::ReceiveMaximum)
                    .opt(p.max_packet_size, Property::MaximumPacketSize)
                    .opt(p.topic_alias_max, Property::TopicAliasMaximum)
                    .opt(p.request_response_info, Property::RequestResponseInformation)
                    .opt(p.request_problem_info, Property::RequestProblemInformation)
                    .users(p.user_properties)
                    .opt(p.authentication_method.map(s), Property::AuthenticationMethod)
                    .opt(p.authentication_data, Property::AuthenticationData)
                    .done(),
                None => Properties::new(),
            };
            let will = c.last_will.map(|w| Will {
                topic: s(w.topic),
                payload: w.message,
                qos: qos(w.qos),
                retain: w.retain,
                properties: match w.properties {
                    Some(p) => Builder::new()
                        .opt(p.delay_interval, Property::WillDelayInterval)
                        .opt(p.payload_format_indicator, Property::PayloadFormatIndicator)
                        .opt(p.message_expiry_interval, Property::MessageExpiryInterval)
                        .opt(p.content_type.map(s), Property::ContentType)
                        .opt(p.response_topic.map(s), Property::ResponseTopic)
                        .opt(p.correlation_data, Property::CorrelationData)
                        .users(p.user_properties)
                        .done(),
                    None => Properties::new(),
                },
            });
            Packet::Connect(Connect {
                version: Version::V5,
                clean_start: c.clean_session,
                keep_alive: c.keep_alive,
                client_id: s(c.client_id),
                will,
                username,
                password,
                properties,
            })
        }
        v5::Packet::ConnAck(c) => Packet::ConnAck(ConnAck {
            session_present: c.session_present,
            code: ReasonCode(c.code as u8),
            properties: match c.properties {
                Some(p) => Builder::new()
                    .opt(p.session_expiry_interval, Property::SessionExpiryInterval)
                    .opt(p.receive_max, Property::ReceiveMaximum)
                    .opt(p.max_qos, Property::MaximumQoS)
                    .opt(p.retain_available, Property::RetainAvailable)
                    .opt(p.max_packet_size, Property::MaximumPacketSize)
                    .opt(p.assigned_client_identifier.map(s), Property::AssignedClientIdentifier)
                    .opt(p.topic_alias_max, Property::TopicAliasMaximum)
                    .opt(p.reason_string.map(s), Property::ReasonString)
                    .users(p.user_properties)
                    .opt(p.wildcard_subscription_available, Property::WildcardSubscriptionAvailable)
                    .opt(p.subscription_identifiers_available, Property::SubscriptionIdentifierAvailable)
                    .opt(p.shared_subscription_available, Property::SharedSubscriptionAvailable)
                    .opt(p.server_keep_alive, Property::ServerKeepAlive)
                    .opt(p.response_information.map(s), Property::ResponseInformation)
                    .opt(p.server_reference.map(s), Property::ServerReference)
                    .opt(p.authentication_method.map(s), Property::AuthenticationMethod)
                    .opt(p.authentication_data, Property::AuthenticationData)
                    .done(),
                None => Properties::new(),
            },
        }),
        v5::Packet::Publish(p) => {
            let properties = match p.properties {
                Some(q) => {
                    let mut b = Builder::new()
                        .opt(q.payload_format_indicator, Property::PayloadFormatIndicator)
                        .opt(q.message_expiry_interval, Property::MessageExpiryInterval)
                        .opt(q.topic_alias, Property::TopicAlias)
                        .opt(q.response_topic.map(s), Property::ResponseTopic)
                        .opt(q.correlation_data, Property::CorrelationData)
                        .users(q.user_properties)
                        .opt(q.content_type.map(s), Property::ContentType);
                    b.0.extend(
                        q.subscription_identifiers
                            .into_iter()
                            .map(|id| Property::SubscriptionIdentifier(id as u32)),
                    );
                    b.done()
                }
                None => Properties::new(),
            };
            Packet::Publish(super::packet::Publish {
                dup: p.dup,
                qos: qos(p.qos),
                retain: p.retain,
                topic: s(p.topic),
                pkid: p.pkid,
                properties,
                payload: p.payload,
            })
        }
        v5::Packet::PubAck(a) => Packet::PubAck(Ack {
            pkid: a.pkid,
            reason: ReasonCode(a.reason as u8),
            properties: a
                .properties
                .map(|p| reason_and_users(p.reason_string, p.user_properties))
                .unwrap_or_default(),
        }),
        v5::Packet::PubRec(a) => Packet::PubRec(Ack {
            pkid: a.pkid,
            reason: ReasonCode(a.reason as u8),
            properties: a
                .properties
                .map(|p| reason_and_users(p.reason_string, p.user_properties))
                .unwrap_or_default(),
        }),
        v5::Packet::PubRel(a) => Packet::PubRel(Ack {
            pkid: a.pkid,
            reason: ReasonCode(a.reason as u8),
            properties: a
                .properties
                .map(|p| reason_and_users(p.reason_string, p.user_properties))
                .unwrap_or_default(),
        }),
        v5::Packet::PubComp(a) => Packet::PubComp(Ack {
            pkid: a.pkid,
            reason: ReasonCode(a.reason as u8),
            properties: a
                .properties
                .map(|p| reason_and_users(p.reason_string, p.user_properties))
                .unwrap_or_default(),
        }),
        v5::Packet::Subscribe(sub) => Packet::Subscribe(Subscribe {
            pkid: sub.pkid,
            subscriptions: sub
                .filters
                .into_iter()
                .map(|f| Subscription {
                    filter: s(f.path),
                    qos: qos(f.qos),
                    no_local: f.nolocal,
                    retain_as_published: f.preserve_retain,
                    retain_handling: match f.retain_forward_rule {
                        v5::RetainForwardRule::OnEverySubscribe => RetainHandling::SendAtSubscribe,
                        v5::RetainForwardRule::OnNewSubscribe => RetainHandling::SendAtNewSubscribe,
                        v5::RetainForwardRule::Never => RetainHandling::DoNotSend,
                    },
                })
                .collect(),
            properties: sub
                .properties
                .map(|p| {
                    Builder::new()
                        .opt(p.id.map(|id| id as u32), Property::SubscriptionIdentifier)
                        .users(p.user_properties)
                        .done()
                })
                .unwrap_or_default(),
        }),
        v5::Packet::SubAck(a) => Packet::SubAck(SubAck {
            pkid: a.pkid,
            codes: a.return_codes.into_iter().map(|c| ReasonCode(c as u8)).collect(),
            properties: a
                .properties
                .map(|p| reason_and_users(p.reason_string, p.user_properties))
                .unwrap_or_default(),
        }),
        v5::Packet::Unsubscribe(u) => Packet::Unsubscribe(Unsubscribe {
            pkid: u.pkid,
            filters: u.filters.into_iter().map(s).collect(),
            properties: u
                .properties
                .map(|p| Builder::new().users(p.user_properties).done())
                .unwrap_or_default(),
        }),
        v5::Packet::UnsubAck(u) => Packet::UnsubAck(UnsubAck {
            pkid: u.pkid,
            codes: u.reasons.into_iter().map(|c| ReasonCode(c as u8)).collect(),
            properties: u
                .properties
                .map(|p| reason_and_users(p.reason_string, p.user_properties))
                .unwrap_or_default(),
        }),
        v5::Packet::PingReq => Packet::PingReq,
        v5::Packet::PingResp => Packet::PingResp,
        v5::Packet::Disconnect(d) => Packet::Disconnect(Disconnect {
            reason: ReasonCode(d.reason_code as u8),
            properties: d
                .properties
                .map(|p| {
                    Builder::new()
                        .opt(p.session_expiry_interval, Property::SessionExpiryInterval)
                        .opt(p.reason_string.map(s), Property::ReasonString)
                        .users(p.user_properties)
                        .opt(p.server_reference.map(s), Property::ServerReference)
                        .done()
                })
                .unwrap_or_default(),
        }),
    }
}
