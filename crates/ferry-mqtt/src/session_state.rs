//! What an MQTT session keeps between connections (clean session 0 / session expiry):
//! its subscriptions, the QoS 1/2 messages sent and not yet acknowledged, and the
//! QoS 2 packet ids received and not yet released. Lives in the core's session
//! registry, so a reconnecting client finds it again.

use std::collections::{BTreeMap, HashSet, VecDeque};

use foldhash::fast::RandomState;

use ferry_core::{CompactMap, Delivery, SessionKey, SubscribeOptions, Subscription};

/// Where an outgoing QoS 1/2 message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// PUBLISH sent (QoS 1: awaiting PUBACK; QoS 2: awaiting PUBREC).
    Published,
    /// QoS 2: PUBREL sent, awaiting PUBCOMP.
    Released,
}

/// One outgoing message in flight.
#[derive(Debug, Clone)]
pub struct InFlight {
    /// What was sent.
    pub delivery: Delivery,
    /// How far its handshake got.
    pub stage: Stage,
}

/// A session's persistent state.
#[derive(Debug, Default)]
pub struct SessionState {
    /// Subscriptions by filter string as the client sent it.
    pub subscriptions: CompactMap<String, (Subscription, SubscribeOptions), RandomState>,
    /// Outgoing QoS 1/2 messages by packet id, oldest first (resent in order on reconnect).
    pub inflight: BTreeMap<u16, InFlight>,
    /// Order in which in-flight packet ids were sent.
    pub order: VecDeque<u16>,
    /// Incoming QoS 2 packet ids answered with PUBREC, awaiting PUBREL.
    pub incoming_qos2: HashSet<u16, RandomState>,
    /// The last packet id used.
    pub last_pkid: u16,
    /// The session's key in the journal, when it is persistent and storage is on: its
    /// changes are journaled (see `ferry_core::Journal`).
    pub durable: Option<SessionKey>,
}

impl SessionState {
    /// A free packet id for a new outgoing message (1..=65535, never 0, never in use).
    pub fn next_pkid(&mut self) -> Option<u16> {
        if self.inflight.len() >= usize::from(u16::MAX) {
            return None;
        }
        loop {
            self.last_pkid = self.last_pkid.checked_add(1).unwrap_or(1);
            if !self.inflight.contains_key(&self.last_pkid) {
                return Some(self.last_pkid);
            }
        }
    }

    /// Record a message sent with `pkid`.
    pub fn send(&mut self, pkid: u16, delivery: Delivery) {
        self.inflight.insert(
            pkid,
            InFlight {
                delivery,
                stage: Stage::Published,
            },
        );
        self.order.push_back(pkid);
    }

    /// Forget `pkid` (acknowledged); returns what it was.
    pub fn complete(&mut self, pkid: u16) -> Option<InFlight> {
        let done = self.inflight.remove(&pkid)?;
        if let Some(i) = self.order.iter().position(|p| *p == pkid) {
            self.order.remove(i);
        }
        Some(done)
    }

    /// In-flight messages in the order they were first sent.
    pub fn in_order(&self) -> impl Iterator<Item = (u16, &InFlight)> {
        self.order.iter().filter_map(|p| self.inflight.get(p).map(|f| (*p, f)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_ids_skip_zero_and_ids_in_use() {
        let mut p = SessionState {
            last_pkid: u16::MAX - 1,
            ..Default::default()
        };
        assert_eq!(p.next_pkid(), Some(u16::MAX));
        assert_eq!(p.next_pkid(), Some(1));
        p.inflight.insert(
            2,
            InFlight {
                delivery: dummy(),
                stage: Stage::Published,
            },
        );
        assert_eq!(p.next_pkid(), Some(3));
    }

    fn dummy() -> Delivery {
        use ferry_core::{Message, QoS, TopicName};
        let m = Message::new(
            TopicName::new("t").unwrap_or_else(|_| unreachable!()),
            bytes::Bytes::new(),
            QoS::AtLeastOnce,
            false,
        );
        Delivery {
            message: std::sync::Arc::new(m),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: vec![],
        }
    }

    #[test]
    fn completion_keeps_the_send_order_of_the_rest() {
        let mut p = SessionState::default();
        for _ in 0..3 {
            let id = p.next_pkid().unwrap_or(0);
            p.send(id, dummy());
        }
        assert!(p.complete(2).is_some());
        assert!(p.complete(2).is_none());
        assert_eq!(p.in_order().map(|(id, _)| id).collect::<Vec<_>>(), [1, 3]);
    }
}
