//! The STOMP adapter as the transport sees it: the subprotocols it serves over
//! WebSocket, how its first bytes look, and a new [`StompConnection`] per connection.

use std::sync::Arc;
use std::time::Instant;

use ferry_auth::Gatekeeper;
use ferry_core::{Adapter, Connection, ConnectionInfo, MessageKind, Router, Sniff, Subprotocol};

use crate::config::StompConfig;
use crate::session::StompConnection;
use crate::shared::StompShared;

/// WebSocket subprotocol names for STOMP (the README's WebSocket section). stompjs offers the three
/// versioned ones: the highest wins; the version itself is then settled by
/// `accept-version` in CONNECT.
pub const SUBPROTOCOLS: &[Subprotocol] = &[
    Subprotocol {
        name: "v12.stomp",
        rank: 3,
    },
    Subprotocol {
        name: "v11.stomp",
        rank: 2,
    },
    Subprotocol {
        name: "v10.stomp",
        rank: 1,
    },
    Subprotocol { name: "stomp", rank: 0 },
];

/// The STOMP protocol, registered once with the transport.
pub struct StompAdapter {
    broker: Arc<StompShared>,
}

impl StompAdapter {
    /// The adapter, routing through the broker-wide `router`, with every client let in
    /// ([`Gatekeeper::open`]: tests and tools).
    pub fn new(router: Arc<Router>, config: StompConfig) -> Self {
        Self::with_gatekeeper(router, config, Arc::new(Gatekeeper::open()))
    }

    /// The adapter, routing through the broker-wide `router` and asking the broker's
    /// `gate` who may connect (CONNECT `login`/`passcode`, or the transport's bearer
    /// token or client certificate), what they may send to and subscribe to, and how
    /// fast they may send.
    pub fn with_gatekeeper(router: Arc<Router>, config: StompConfig, gate: Arc<Gatekeeper>) -> Self {
        Self {
            broker: Arc::new(StompShared::with_gatekeeper(router, config, gate)),
        }
    }

    /// The shared state, for metrics.
    pub fn broker(&self) -> Arc<StompShared> {
        self.broker.clone()
    }
}

/// Whether `first_bytes` start a STOMP session: optional heart-beat EOLs, then a
/// `CONNECT` or `STOMP` command line.
pub fn sniff(first_bytes: &[u8]) -> Sniff {
    let start = first_bytes.iter().position(|&b| b != b'\n' && b != b'\r');
    let Some(start) = start else {
        return Sniff::NeedMore;
    };
    let rest = &first_bytes[start..];
    let mut need_more = false;
    for command in [&b"CONNECT"[..], b"STOMP"] {
        if rest.len() <= command.len() {
            if command.starts_with(rest) {
                need_more = true;
            }
            continue;
        }
        if rest.starts_with(command) {
            match rest[command.len()] {
                b'\n' => return Sniff::Match,
                b'\r' => match rest.get(command.len() + 1) {
                    Some(b'\n') => return Sniff::Match,
                    Some(_) => {}
                    None => need_more = true,
                },
                _ => {}
            }
        }
    }
    if need_more {
        Sniff::NeedMore
    } else {
        Sniff::NoMatch
    }
}

impl Adapter for StompAdapter {
    fn name(&self) -> &'static str {
        "stomp"
    }

    fn subprotocols(&self) -> &'static [Subprotocol] {
        SUBPROTOCOLS
    }

    /// Text, as RabbitMQ's web-stomp and stompjs expect. A frame whose body is not
    /// UTF-8 goes out as a binary message instead (a text message must be UTF-8, and
    /// stompjs reads both kinds byte for byte).
    fn message_kind(&self) -> MessageKind {
        MessageKind::Text
    }

    fn sniff(&self, first_bytes: &[u8]) -> Sniff {
        sniff(first_bytes)
    }

    fn open(&self, info: &Arc<ConnectionInfo>, now: Instant) -> Box<dyn Connection> {
        Box::new(StompConnection::new(self.broker.clone(), info.clone(), now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_and_stomp_are_recognised_after_optional_eols() {
        for yes in [
            &b"CONNECT\n"[..],
            b"STOMP\n",
            b"CONNECT\r\n",
            b"\n\r\nCONNECT\naccept-version:1.2\n",
        ] {
            assert_eq!(sniff(yes), Sniff::Match, "{:?}", String::from_utf8_lossy(yes));
        }
        for more in [&b""[..], b"\n", b"C", b"CONN", b"CONNECT", b"STO", b"\r\nSTOMP", b"CONNECT\r"] {
            assert_eq!(sniff(more), Sniff::NeedMore, "{:?}", String::from_utf8_lossy(more));
        }
        for no in [
            &b"\x10\x0c"[..],
            b"GET / HTTP/1.1",
            b"CONNECTED\n",
            b"STOMPY",
            b"SEND\n",
            b"connect\n",
            b"CONNECT\rX",
        ] {
            assert_eq!(sniff(no), Sniff::NoMatch, "{:?}", String::from_utf8_lossy(no));
        }
    }

    #[test]
    fn the_highest_versioned_subprotocol_ranks_first() {
        let rank = |n: &str| SUBPROTOCOLS.iter().find(|s| s.name == n).map(|s| s.rank);
        assert!(rank("v12.stomp") > rank("v11.stomp"));
        assert!(rank("v11.stomp") > rank("v10.stomp"));
        assert!(rank("v10.stomp") > rank("stomp"));
    }
}
