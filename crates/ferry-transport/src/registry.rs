//! Which adapter serves a connection: WebSocket subprotocol negotiation and
//! first-bytes sniffing.

use std::sync::Arc;

use ferry_core::{Adapter, Sniff};

/// The adapters the broker serves, in registration order.
#[derive(Clone, Default)]
pub struct Registry {
    adapters: Vec<Arc<dyn Adapter>>,
}

/// The outcome of negotiating the client's `Sec-WebSocket-Protocol` offer.
#[derive(Clone)]
pub enum Negotiated {
    /// An adapter serves one of the offered names; echo `name` in the 101 response.
    Chosen {
        /// The adapter that runs the session.
        adapter: Arc<dyn Adapter>,
        /// The offered name to echo, exactly as the client sent it.
        name: &'static str,
    },
    /// The client offered nothing: pick the adapter from the first bytes.
    Sniff,
    /// The client offered names, none of them served.
    Refused,
}

/// The outcome of sniffing a connection's first bytes.
#[derive(Clone)]
pub enum Sniffed {
    /// This adapter speaks the protocol these bytes start.
    Adapter(Arc<dyn Adapter>),
    /// Too few bytes to tell; read more.
    NeedMore,
    /// No adapter recognises these bytes.
    Unknown,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add an adapter; earlier ones win ties in sniffing.
    pub fn register(&mut self, adapter: Arc<dyn Adapter>) {
        self.adapters.push(adapter);
    }

    /// The adapter with this protocol name, if registered.
    pub fn by_name(&self, name: &str) -> Option<Arc<dyn Adapter>> {
        self.adapters.iter().find(|a| a.name() == name).cloned()
    }

    /// Every subprotocol name served, for refusals that list them.
    pub fn served_names(&self) -> Vec<&'static str> {
        self.adapters.iter().flat_map(|a| a.subprotocols().iter().map(|s| s.name)).collect()
    }

    /// Settle the subprotocol for `offers` (the client's tokens, in its order).
    ///
    /// The first offered token that some adapter serves picks the adapter; among the
    /// offered tokens that adapter serves, the one it ranks highest is echoed (equal
    /// ranks keep the client's order). So `mqtt` clients get their first choice and a
    /// STOMP client offering `v10.stomp, v11.stomp, v12.stomp` gets `v12.stomp`.
    pub fn negotiate<'a>(&self, offers: impl IntoIterator<Item = &'a str> + Clone) -> Negotiated {
        let mut any_offer = false;
        for offer in offers.clone() {
            any_offer = true;
            let Some(adapter) = self.serving(offer) else {
                continue;
            };
            let mut best: Option<(u8, &'static str)> = None;
            for candidate in offers.clone() {
                if let Some(sp) = adapter.subprotocols().iter().find(|s| s.name == candidate) {
                    if best.is_none_or(|(rank, _)| sp.rank > rank) {
                        best = Some((sp.rank, sp.name));
                    }
                }
            }
            if let Some((_, name)) = best {
                return Negotiated::Chosen {
                    adapter: adapter.clone(),
                    name,
                };
            }
        }
        if any_offer {
            Negotiated::Refused
        } else {
            Negotiated::Sniff
        }
    }

    /// Which adapter the first bytes of a connection belong to.
    pub fn sniff(&self, first_bytes: &[u8]) -> Sniffed {
        let mut need_more = false;
        for adapter in &self.adapters {
            match adapter.sniff(first_bytes) {
                Sniff::Match => return Sniffed::Adapter(adapter.clone()),
                Sniff::NeedMore => need_more = true,
                Sniff::NoMatch => {}
            }
        }
        if need_more {
            Sniffed::NeedMore
        } else {
            Sniffed::Unknown
        }
    }

    fn serving(&self, name: &str) -> Option<&Arc<dyn Adapter>> {
        self.adapters.iter().find(|a| a.subprotocols().iter().any(|s| s.name == name))
    }
}

/// Split `Sec-WebSocket-Protocol` header values into tokens, in order.
pub fn parse_offers<'a>(values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    values.flat_map(|v| v.split(',')).map(str::trim).filter(|t| !t.is_empty()).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ferry_core::{Connection, ConnectionInfo, MessageKind, Subprotocol};

    /// A stand-in adapter with real protocol names, for negotiation tests.
    pub(crate) struct Named {
        pub name: &'static str,
        pub subprotocols: &'static [Subprotocol],
        pub prefix: &'static [u8],
    }

    impl Adapter for Named {
        fn name(&self) -> &'static str {
            self.name
        }
        fn subprotocols(&self) -> &'static [Subprotocol] {
            self.subprotocols
        }
        fn message_kind(&self) -> MessageKind {
            MessageKind::Binary
        }
        fn sniff(&self, first: &[u8]) -> Sniff {
            let n = first.len().min(self.prefix.len());
            if first[..n] != self.prefix[..n] {
                Sniff::NoMatch
            } else if n < self.prefix.len() {
                Sniff::NeedMore
            } else {
                Sniff::Match
            }
        }
        fn open(&self, _: &std::sync::Arc<ConnectionInfo>, _: std::time::Instant) -> Box<dyn Connection> {
            unimplemented!("negotiation tests open no session")
        }
    }

    const MQTT: &[Subprotocol] = ferry_mqtt::adapter::SUBPROTOCOLS;
    const STOMP: &[Subprotocol] = ferry_stomp::adapter::SUBPROTOCOLS;

    pub(crate) fn registry() -> Registry {
        let mut r = Registry::new();
        r.register(Arc::new(Named {
            name: "mqtt",
            subprotocols: MQTT,
            prefix: b"\x10",
        }));
        r.register(Arc::new(Named {
            name: "stomp",
            subprotocols: STOMP,
            prefix: b"CONNECT",
        }));
        r
    }

    fn chosen(offers: &[&str]) -> Option<(&'static str, &'static str)> {
        match registry().negotiate(offers.iter().copied()) {
            Negotiated::Chosen { adapter, name } => Some((adapter.name(), name)),
            _ => None,
        }
    }

    #[test]
    fn mqtt_keeps_the_clients_order() {
        assert_eq!(chosen(&["mqtt"]), Some(("mqtt", "mqtt")));
        assert_eq!(chosen(&["mqttv3.1"]), Some(("mqtt", "mqttv3.1")));
        assert_eq!(chosen(&["mqtt-v5", "mqtt"]), Some(("mqtt", "mqtt-v5")));
        assert_eq!(chosen(&["foo", "mqtt"]), Some(("mqtt", "mqtt")));
    }

    #[test]
    fn stomp_gets_the_highest_version_offered() {
        assert_eq!(chosen(&["v10.stomp", "v11.stomp", "v12.stomp"]), Some(("stomp", "v12.stomp")));
        assert_eq!(chosen(&["stomp", "v11.stomp"]), Some(("stomp", "v11.stomp")));
        assert_eq!(chosen(&["v10.stomp"]), Some(("stomp", "v10.stomp")));
    }

    #[test]
    fn first_servable_offer_picks_the_adapter() {
        assert_eq!(chosen(&["v12.stomp", "mqtt"]), Some(("stomp", "v12.stomp")));
        assert_eq!(chosen(&["mqtt", "v12.stomp"]), Some(("mqtt", "mqtt")));
    }

    #[test]
    fn names_are_case_sensitive_and_unknown_ones_refused() {
        assert!(matches!(registry().negotiate(["foo"]), Negotiated::Refused));
        assert!(matches!(registry().negotiate(["MQTT"]), Negotiated::Refused));
        assert!(matches!(registry().negotiate([] as [&str; 0]), Negotiated::Sniff));
    }

    #[test]
    fn offers_split_across_headers_and_commas() {
        let offers = parse_offers(["v10.stomp, v11.stomp", " v12.stomp ", ","].into_iter());
        assert_eq!(offers, ["v10.stomp", "v11.stomp", "v12.stomp"]);
    }

    #[test]
    fn sniffing_needs_enough_bytes() {
        let r = registry();
        assert!(matches!(r.sniff(b"\x10\x0c"), Sniffed::Adapter(a) if a.name() == "mqtt"));
        assert!(matches!(r.sniff(b"CONN"), Sniffed::NeedMore));
        assert!(matches!(r.sniff(b"CONNECT\n"), Sniffed::Adapter(a) if a.name() == "stomp"));
        assert!(matches!(r.sniff(b"GET / HTTP/1.1"), Sniffed::Unknown));
        assert_eq!(r.served_names().len(), 9);
    }
}
