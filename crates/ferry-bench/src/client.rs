//! A protocol session on an open connection, whatever the protocol: opening it
//! (CONNECT, SUBSCRIBE), then a sending side ([`Tx`]: publications) and a receiving
//! side ([`Rx`]: messages, confirmations, replies) that run in separate tasks.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::cli::{AckMode, MqttVersion, Protocol};
use crate::mqtt::{MqttRx, MqttTx};
use crate::stomp::{StompRx, StompTx};
use crate::transport::{Conn, TransportError};

/// Why a session could not be opened or went wrong.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    /// The connection failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The broker closed the connection.
    #[error("the broker closed the connection")]
    Closed,
    /// The broker refused (CONNACK or SUBACK failure, STOMP ERROR frame).
    #[error("refused by the broker: {0}")]
    Refused(String),
    /// The broker sent something that makes no sense here.
    #[error("unexpected from the broker: {0}")]
    Unexpected(String),
    /// Bytes that do not decode.
    #[error("cannot decode what the broker sent: {0}")]
    Decode(String),
    /// A packet that could not be encoded (a bad topic, say).
    #[error("cannot encode: {0}")]
    Encode(String),
    /// Set-up took too long.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// How sessions of one side of a scenario are opened.
#[derive(Debug, Clone)]
pub(crate) struct SessionSpec {
    /// MQTT or STOMP.
    pub protocol: Protocol,
    /// MQTT version.
    pub mqtt_version: MqttVersion,
    /// MQTT QoS of publications and subscriptions.
    pub qos: u8,
    /// STOMP subscription ack mode.
    pub ack: AckMode,
    /// STOMP: ask for a RECEIPT per SEND.
    pub receipts: bool,
    /// MQTT: publish with the retain flag.
    pub retain: bool,
    /// MQTT: subscribers keep persistent sessions.
    pub persistent: bool,
}

impl SessionSpec {
    /// Whether the broker confirms each publication (QoS 1/2, STOMP receipts), so the
    /// publisher's window is the protocol's.
    pub(crate) fn confirms(&self) -> bool {
        match self.protocol {
            Protocol::Mqtt => self.qos > 0,
            Protocol::Stomp => self.receipts,
        }
    }

    /// The WebSocket subprotocol offered.
    pub(crate) fn subprotocol(&self) -> &'static str {
        match self.protocol {
            Protocol::Mqtt => "mqtt",
            Protocol::Stomp => "v12.stomp",
        }
    }
}

/// The sending side of a session.
pub(crate) enum Tx {
    /// MQTT.
    Mqtt(MqttTx),
    /// STOMP.
    Stomp(StompTx),
}

/// The receiving side of a session.
pub(crate) enum Rx {
    /// MQTT.
    Mqtt(MqttRx),
    /// STOMP.
    Stomp(StompRx),
}

/// Opens a session on `conn` (CONNECT and its answer) and, when `subscribe_to` is set,
/// subscribes to that filter (MQTT syntax) and waits for the confirmation. `publish_to`
/// is the topic (MQTT syntax) [`Tx::publish`] sends to. `buf` is the connection's read
/// buffer: bytes read past the last answer stay in it for [`Rx::input`].
pub(crate) async fn open(
    conn: &mut Conn,
    buf: &mut BytesMut,
    spec: &SessionSpec,
    client_id: &str,
    subscribe_to: Option<&str>,
    publish_to: &str,
) -> Result<(Tx, Rx), ClientError> {
    match spec.protocol {
        Protocol::Mqtt => {
            let (tx, rx) = crate::mqtt::open(conn, buf, spec, client_id, subscribe_to, publish_to).await?;
            Ok((Tx::Mqtt(tx), Rx::Mqtt(rx)))
        }
        Protocol::Stomp => {
            let (tx, rx) = crate::stomp::open(conn, buf, spec, subscribe_to, publish_to).await?;
            Ok((Tx::Stomp(tx), Rx::Stomp(rx)))
        }
    }
}

impl Tx {
    /// Appends one publication of `payload`, framed, to `out`. Returns whether the
    /// broker will confirm it.
    pub(crate) fn publish(&mut self, payload: Bytes, out: &mut BytesMut) -> Result<bool, ClientError> {
        match self {
            Tx::Mqtt(tx) => tx.publish(payload, out),
            Tx::Stomp(tx) => tx.publish(payload, out),
        }
    }

    /// Appends a graceful goodbye (DISCONNECT), framed, to `out`.
    pub(crate) fn disconnect(&mut self, out: &mut BytesMut) {
        match self {
            Tx::Mqtt(tx) => tx.disconnect(out),
            Tx::Stomp(tx) => tx.disconnect(out),
        }
    }
}

impl Rx {
    /// Takes every complete packet off the front of `buf`: each message's payload goes
    /// to `on_message`, replies the protocol requires (PUBACK, PUBREC, PUBREL, PUBCOMP,
    /// ACK) are framed into `replies`. Returns how many of our publications the broker
    /// confirmed.
    pub(crate) fn input(
        &mut self,
        buf: &mut BytesMut,
        replies: &mut BytesMut,
        on_message: &mut dyn FnMut(&[u8]),
    ) -> Result<u64, ClientError> {
        match self {
            Rx::Mqtt(rx) => rx.input(buf, replies, on_message),
            Rx::Stomp(rx) => rx.input(buf, replies, on_message),
        }
    }
}

/// Reads more bytes into `buf` during set-up; a closed connection is an error.
pub(crate) async fn read_more(conn: &mut Conn, buf: &mut BytesMut) -> Result<(), ClientError> {
    match conn.reader.read(buf, &conn.outbox).await? {
        0 => Err(ClientError::Closed),
        _ => Ok(()),
    }
}

/// Writes framed set-up bytes (and whatever the outbox holds, such as a pong).
pub(crate) async fn write_now(conn: &mut Conn, bytes: &[u8]) -> Result<(), ClientError> {
    let mut out = BytesMut::new();
    conn.outbox.take_into(&mut out);
    out.extend_from_slice(bytes);
    conn.writer.write_all(&out).await.map_err(TransportError::Io)?;
    Ok(())
}

/// The STOMP destination for an MQTT-syntax topic or filter, as Ferry maps them:
/// `a/b/c` → `/topic/a.b.c`, `+` → `*`, `#` stays.
pub(crate) fn stomp_destination(topic: &str) -> String {
    let mut d = String::with_capacity(topic.len() + 7);
    d.push_str("/topic/");
    for c in topic.chars() {
        d.push(match c {
            '/' => '.',
            '+' => '*',
            c => c,
        });
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_follow_ferrys_mapping() {
        assert_eq!(stomp_destination("bench/fanout"), "/topic/bench.fanout");
        assert_eq!(stomp_destination("bench/fanin/+"), "/topic/bench.fanin.*");
        assert_eq!(stomp_destination("bench/#"), "/topic/bench.#");
    }
}
