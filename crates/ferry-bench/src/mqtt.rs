//! MQTT client sessions on Ferry's own codec (`ferry_mqtt::codec`): CONNECT, SUBSCRIBE,
//! PUBLISH at QoS 0/1/2 and the acknowledgements both ways.

use bytes::{Bytes, BytesMut};
use ferry_mqtt::codec::{
    encode, Ack, ByteString, Connect, Decoder, Disconnect, Packet, Properties, Publish, QoS, ReasonCode, Subscribe, Subscription, Version,
};

use crate::cli::MqttVersion;
use crate::client::{read_more, write_now, ClientError, SessionSpec};
use crate::outbox::Framing;
use crate::transport::Conn;

/// Largest packet accepted from the broker.
const MAX_PACKET: usize = 16 << 20;

/// The codec's version for the command-line one.
pub(crate) fn version(v: MqttVersion) -> Version {
    match v {
        MqttVersion::V311 => Version::V3_1_1,
        MqttVersion::V5 => Version::V5,
    }
}

/// Sends CONNECT (clean session unless `spec.persistent` for a subscriber, no keep-alive, so idle connections stay silent),
/// waits for CONNACK, then subscribes to `subscribe_to` if given. Bytes read past the
/// last answer stay in `buf`.
pub(crate) async fn open(
    conn: &mut Conn,
    buf: &mut BytesMut,
    spec: &SessionSpec,
    client_id: &str,
    subscribe_to: Option<&str>,
    publish_to: &str,
) -> Result<(MqttTx, MqttRx), ClientError> {
    let version = version(spec.mqtt_version);
    let qos = QoS::from_u8(spec.qos).ok_or_else(|| ClientError::Encode(format!("QoS {}", spec.qos)))?;
    let framing = conn.outbox.framing();
    let mut scratch = BytesMut::new();
    let mut connect = Connect::new(version, client_id);
    connect.keep_alive = 0;
    if spec.persistent && subscribe_to.is_some() {
        connect.clean_start = false;
        if version == Version::V5 {
            connect.properties.push(ferry_mqtt::codec::Property::SessionExpiryInterval(3600));
        }
    }
    let mut out = BytesMut::new();
    push(&Packet::Connect(connect), version, framing, &mut scratch, &mut out)?;
    write_now(conn, &out).await?;
    let mut decoder = Decoder::client(version, MAX_PACKET);
    match next_packet(conn, &mut decoder, buf).await? {
        Packet::ConnAck(ack) if ack.code == ReasonCode::SUCCESS => {}
        Packet::ConnAck(ack) => return Err(ClientError::Refused(format!("CONNACK {:#04x}", ack.code.0))),
        other => return Err(ClientError::Unexpected(format!("{} before CONNACK", other.packet_type()))),
    }
    if let Some(filter) = subscribe_to {
        let subscribe = Subscribe {
            pkid: 1,
            subscriptions: vec![Subscription::new(filter, qos)],
            properties: Properties::new(),
        };
        out.clear();
        push(&Packet::Subscribe(subscribe), version, framing, &mut scratch, &mut out)?;
        write_now(conn, &out).await?;
        loop {
            match next_packet(conn, &mut decoder, buf).await? {
                Packet::SubAck(ack) if ack.pkid == 1 => match ack.codes.first() {
                    Some(code) if code.0 < 0x80 => break,
                    Some(code) => return Err(ClientError::Refused(format!("SUBACK {:#04x} for {filter}", code.0))),
                    None => return Err(ClientError::Unexpected("SUBACK without codes".into())),
                },
                // A retained message may come first; it is not ours to count.
                Packet::Publish(_) => {}
                other => return Err(ClientError::Unexpected(format!("{} before SUBACK", other.packet_type()))),
            }
        }
    }
    let tx = MqttTx {
        version,
        topic: ByteString::from(publish_to),
        qos,
        retain: spec.retain,
        next_pkid: 0,
        framing,
        scratch: BytesMut::new(),
    };
    let rx = MqttRx {
        decoder,
        version,
        framing,
        scratch,
    };
    Ok((tx, rx))
}

async fn next_packet(conn: &mut Conn, decoder: &mut Decoder, buf: &mut BytesMut) -> Result<Packet, ClientError> {
    loop {
        if let Some(packet) = decoder.decode(buf).map_err(|e| ClientError::Decode(e.to_string()))? {
            return Ok(packet);
        }
        read_more(conn, buf).await?;
    }
}

/// Encodes `packet` into `scratch`, then frames it onto `out`.
fn push(packet: &Packet, version: Version, framing: Framing, scratch: &mut BytesMut, out: &mut BytesMut) -> Result<(), ClientError> {
    scratch.clear();
    encode(packet, version, scratch).map_err(|e| ClientError::Encode(e.to_string()))?;
    framing.push(out, scratch);
    scratch.clear();
    Ok(())
}

/// The publishing side of an MQTT session.
pub(crate) struct MqttTx {
    version: Version,
    topic: ByteString,
    qos: QoS,
    retain: bool,
    next_pkid: u16,
    framing: Framing,
    scratch: BytesMut,
}

impl MqttTx {
    /// Appends a PUBLISH of `payload` to `out`; true when the broker will confirm it.
    /// Packet identifiers cycle through 1..=65535: with a window below 65,535 an
    /// identifier is never reused while still in flight.
    pub(crate) fn publish(&mut self, payload: Bytes, out: &mut BytesMut) -> Result<bool, ClientError> {
        let mut publish = Publish::new(self.topic.clone(), self.qos, payload);
        publish.retain = self.retain;
        let confirmed = self.qos != QoS::AtMostOnce;
        if confirmed {
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            publish.pkid = self.next_pkid;
        }
        push(&Packet::Publish(publish), self.version, self.framing, &mut self.scratch, out)?;
        Ok(confirmed)
    }

    /// Appends a DISCONNECT to `out`.
    pub(crate) fn disconnect(&mut self, out: &mut BytesMut) {
        let packet = Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS));
        // A plain DISCONNECT always encodes.
        let _ = push(&packet, self.version, self.framing, &mut self.scratch, out);
    }
}

/// The receiving side of an MQTT session.
pub(crate) struct MqttRx {
    decoder: Decoder,
    version: Version,
    framing: Framing,
    scratch: BytesMut,
}

impl MqttRx {
    /// See [`crate::client::Rx::input`].
    pub(crate) fn input(
        &mut self,
        buf: &mut BytesMut,
        replies: &mut BytesMut,
        on_message: &mut dyn FnMut(&[u8]),
    ) -> Result<u64, ClientError> {
        let mut confirmed = 0;
        while let Some(packet) = self.decoder.decode(buf).map_err(|e| ClientError::Decode(e.to_string()))? {
            let reply = match packet {
                Packet::Publish(p) => {
                    on_message(&p.payload);
                    match p.qos {
                        QoS::AtMostOnce => None,
                        QoS::AtLeastOnce => Some(Packet::PubAck(Ack::new(p.pkid))),
                        QoS::ExactlyOnce => Some(Packet::PubRec(Ack::new(p.pkid))),
                    }
                }
                Packet::PubAck(_) | Packet::PubComp(_) => {
                    confirmed += 1;
                    None
                }
                // A failed PUBREC ends the exchange.
                Packet::PubRec(ack) if ack.reason.0 >= 0x80 => {
                    confirmed += 1;
                    None
                }
                Packet::PubRec(ack) => Some(Packet::PubRel(Ack::new(ack.pkid))),
                Packet::PubRel(ack) => Some(Packet::PubComp(Ack::new(ack.pkid))),
                Packet::PingResp | Packet::SubAck(_) | Packet::UnsubAck(_) => None,
                Packet::Disconnect(d) => return Err(ClientError::Refused(format!("DISCONNECT {:#04x}", d.reason.0))),
                other => return Err(ClientError::Unexpected(other.packet_type().to_string())),
            };
            if let Some(reply) = reply {
                push(&reply, self.version, self.framing, &mut self.scratch, replies)?;
            }
        }
        Ok(confirmed)
    }
}
