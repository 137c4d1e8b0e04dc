//! The MQTT adapter as the transport sees it: the subprotocols it serves over
//! WebSocket, how its first bytes look, and a new [`MqttConnection`] per connection.

use std::sync::Arc;
use std::time::Instant;

use ferry_auth::Gatekeeper;
use ferry_core::{Adapter, Connection, ConnectionInfo, MessageKind, Router, Sniff, Subprotocol};

use crate::config::MqttConfig;
use crate::session::MqttConnection;
use crate::shared::MqttShared;

/// WebSocket subprotocol names for MQTT (the README's WebSocket section): `mqtt` for 3.1.1 and 5.0,
/// `mqttv3.1` as MQTT.js offers it for protocol level 3, and EMQX's aliases. The
/// client's order decides.
pub const SUBPROTOCOLS: &[Subprotocol] = &[
    Subprotocol { name: "mqtt", rank: 0 },
    Subprotocol { name: "mqttv3.1", rank: 0 },
    Subprotocol { name: "mqtt-v3", rank: 0 },
    Subprotocol {
        name: "mqtt-v3.1.1",
        rank: 0,
    },
    Subprotocol { name: "mqtt-v5", rank: 0 },
];

/// The MQTT protocol, registered once with the transport.
pub struct MqttAdapter {
    broker: Arc<MqttShared>,
}

impl MqttAdapter {
    /// The adapter, routing through the broker-wide `router`; everyone may connect and do
    /// anything ([`Gatekeeper::open`]).
    pub fn new(router: Arc<Router>, config: MqttConfig) -> Self {
        Self::with_gatekeeper(router, config, Arc::new(Gatekeeper::open()))
    }

    /// The adapter, routing through the broker-wide `router`, with clients authenticated,
    /// authorized and rate-limited by `gate`.
    pub fn with_gatekeeper(router: Arc<Router>, config: MqttConfig, gate: Arc<Gatekeeper>) -> Self {
        Self {
            broker: Arc::new(MqttShared::with_gatekeeper(router, config, gate)),
        }
    }

    /// The shared state, for periodic [`MqttShared::tick`] calls and metrics.
    pub fn broker(&self) -> Arc<MqttShared> {
        self.broker.clone()
    }
}

impl Adapter for MqttAdapter {
    fn name(&self) -> &'static str {
        "mqtt"
    }

    fn subprotocols(&self) -> &'static [Subprotocol] {
        SUBPROTOCOLS
    }

    fn message_kind(&self) -> MessageKind {
        MessageKind::Binary
    }

    /// An MQTT connection starts with a CONNECT packet: first byte 0x10.
    fn sniff(&self, first_bytes: &[u8]) -> Sniff {
        match first_bytes.first() {
            None => Sniff::NeedMore,
            Some(0x10) => Sniff::Match,
            Some(_) => Sniff::NoMatch,
        }
    }

    fn open(&self, info: &Arc<ConnectionInfo>, now: Instant) -> Box<dyn Connection> {
        Box::new(MqttConnection::new(self.broker.clone(), info.clone(), now))
    }
}
