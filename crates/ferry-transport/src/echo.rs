//! The echo service: sends every WebSocket message back as it came, text as text and
//! binary as binary. It exists for conformance runs (Autobahn) only, is off unless
//! `websocket.echo_path` is set, and runs through the same transport code as MQTT and
//! STOMP so that those runs test what users get.

use std::time::Instant;

use ferry_core::{Adapter, Connection, ConnectionInfo, Input, MessageKind, Output, Sniff, Subprotocol};

/// The echo adapter.
#[derive(Debug, Default)]
pub struct EchoAdapter;

struct EchoConnection;

impl Adapter for EchoAdapter {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn subprotocols(&self) -> &'static [Subprotocol] {
        &[]
    }

    fn message_kind(&self) -> MessageKind {
        MessageKind::Binary
    }

    fn sniff(&self, _first_bytes: &[u8]) -> Sniff {
        Sniff::NoMatch
    }

    fn open(&self, _info: &std::sync::Arc<ConnectionInfo>, _now: Instant) -> Box<dyn Connection> {
        Box::new(EchoConnection)
    }
}

impl Connection for EchoConnection {
    fn on_input(&mut self, input: Input, _now: Instant, out: &mut Output) {
        match input {
            // The payload is unmasked already; the transport frames it anew.
            Input::Message(kind, data) => out.send(kind, data),
            Input::Stream(data) => out.send(MessageKind::Binary, data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn echoes_each_message_with_its_kind() {
        let info = std::sync::Arc::new(ConnectionInfo {
            id: 1,
            peer: "127.0.0.1:1".parse().unwrap(),
            listener: "ws",
            tls: false,
            carrier: ferry_core::Carrier::WebSocket,
            subprotocol: None,
            wakeup: ferry_core::Wakeup::new(),
            credentials: None,
            monitor: Default::default(),
        });
        let mut s = EchoAdapter.open(&info, Instant::now());
        let mut out = Output::default();
        s.on_input(
            Input::Message(MessageKind::Text, Bytes::from_static(b"hi")),
            Instant::now(),
            &mut out,
        );
        s.on_input(
            Input::Message(MessageKind::Binary, Bytes::from_static(b"\0")),
            Instant::now(),
            &mut out,
        );
        assert_eq!(out.writes.len(), 2);
        assert_eq!(out.writes[0].kind, MessageKind::Text);
        assert_eq!(out.writes[1].kind, MessageKind::Binary);
        assert!(out.close.is_none());
    }
}
