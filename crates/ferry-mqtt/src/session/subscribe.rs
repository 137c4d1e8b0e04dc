//! SUBSCRIBE and UNSUBSCRIBE: filters validated (shared subscriptions on MQTT 5),
//! subscriptions recorded in the router and the persistent session, retained messages
//! sent as retain handling says, SUBACK / UNSUBACK with a code per filter.

use std::time::Instant;

use ferry_core::{Delivery, Output, SubscribeOptions, Subscriber, Subscription, TopicFilter};

use super::{MqttConnection, Phase, Writer};
use crate::codec::{Packet, ReasonCode, RetainHandling, SubAck, Subscribe, UnsubAck, Unsubscribe};

impl MqttConnection {
    pub(super) fn on_subscribe(&mut self, s: Subscribe, now: Instant, w: &mut Writer, out: &mut Output) {
        let Phase::Connected(c) = &self.phase else { return };
        let version = c.version;
        let v5 = version.is_v5();
        let sub_id = s.properties.subscription_identifiers().next();
        let mut codes = Vec::with_capacity(s.subscriptions.len());
        let mut retained: Vec<Delivery> = Vec::new();
        let mut durable_at = None;
        for request in &s.subscriptions {
            let parsed = if v5 {
                Subscription::parse(&request.filter).ok()
            } else {
                TopicFilter::new(&request.filter).ok().map(Subscription::Plain)
            };
            let Some(subscription) = parsed.filter(|s| s.filter().levels().count() <= self.broker.config.max_topic_levels) else {
                codes.push(if v5 {
                    ReasonCode::TOPIC_FILTER_INVALID
                } else {
                    ReasonCode::UNSPECIFIED_ERROR
                });
                continue;
            };
            // The ACL sees the filter without a `$share/GROUP/` prefix.
            if !c.policy.may_subscribe(subscription.filter().as_str()) {
                codes.push(if v5 {
                    ReasonCode::NOT_AUTHORIZED
                } else {
                    ReasonCode::UNSPECIFIED_ERROR
                });
                continue;
            }
            let shared = matches!(subscription, Subscription::Shared(_));
            if shared && request.no_local {
                // MQTT 5 §3.8.3.1: no-local on a shared subscription is a protocol error.
                return self.violation(ReasonCode::PROTOCOL_ERROR, "no local on a shared subscription", w, out);
            }
            let options = SubscribeOptions {
                qos: request.qos,
                no_local: request.no_local,
                retain_as_published: request.retain_as_published,
                id: sub_id,
            };
            let mut state = c.slot.state.lock();
            let existed = state.subscriptions.contains_key(&*request.filter);
            if !existed
                && !c
                    .policy
                    .may_add_subscription(state.subscriptions.len(), self.broker.config.max_subscriptions)
            {
                codes.push(if v5 {
                    ReasonCode::QUOTA_EXCEEDED
                } else {
                    ReasonCode::UNSPECIFIED_ERROR
                });
                continue;
            }
            let durable = state.durable;
            // A persistent session's subscription is journaled; the SUBACK waits for it.
            if let (Some(journal), Some(key)) = (self.broker.router.journal(), durable) {
                match journal.subscribed(key, &request.filter, &subscription, &options) {
                    Ok(lsn) => durable_at = durable_at.max(Some(lsn)),
                    Err(_) => {
                        codes.push(ReasonCode::UNSPECIFIED_ERROR);
                        continue;
                    }
                }
            }
            state
                .subscriptions
                .insert(request.filter.to_string(), (subscription.clone(), options));
            drop(state);
            self.broker.router.subscribe_as(
                &subscription,
                Subscriber {
                    durable,
                    id: c.slot.id,
                    outbox: c.slot.outbox.clone(),
                    options,
                },
                Some(c.client_id.clone()),
            );
            codes.push(ReasonCode::granted(request.qos));
            let send_retained = match request.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendAtNewSubscribe => !existed,
                RetainHandling::DoNotSend => false,
            };
            // Retained messages are not sent to shared subscriptions (MQTT 5 §4.8.2).
            if send_retained && !shared {
                let ids: Vec<u32> = sub_id.into_iter().collect();
                retained.extend(
                    self.broker
                        .router
                        .retained_deliveries(subscription.filter(), request.qos, &ids, now),
                );
            }
        }
        let ack = Packet::SubAck(SubAck {
            pkid: s.pkid,
            codes,
            properties: Default::default(),
        });
        self.acknowledge(ack, durable_at, w);
        let Phase::Connected(c) = &self.phase else { return };
        if !c.session_expiry.is_zero() {
            self.broker.share_subscriptions(&c.slot);
        }
        if !retained.is_empty() {
            // Behind the SUBACK, through the outbox so the in-flight window applies.
            for d in retained {
                c.slot.outbox.push(d);
            }
            self.pump(now, w, out);
        }
    }

    pub(super) fn on_unsubscribe(&mut self, u: Unsubscribe, w: &mut Writer) {
        let Phase::Connected(c) = &self.phase else { return };
        let mut codes = Vec::with_capacity(u.filters.len());
        let mut durable_at = None;
        for filter in &u.filters {
            let (removed, durable) = {
                let mut state = c.slot.state.lock();
                (state.subscriptions.remove(&**filter), state.durable)
            };
            match removed {
                Some((subscription, _)) => {
                    self.broker.router.unsubscribe(&subscription, c.slot.id);
                    if let (Some(journal), Some(key)) = (self.broker.router.journal(), durable) {
                        // If the journal failed, the UNSUBACK goes all the same: the
                        // subscription is gone now; a restart could bring it back, which
                        // costs unwanted messages, never lost ones.
                        if let Ok(lsn) = journal.unsubscribed(key, filter) {
                            durable_at = durable_at.max(Some(lsn));
                        }
                    }
                    codes.push(ReasonCode::SUCCESS);
                }
                None => codes.push(ReasonCode::NO_SUBSCRIPTION_EXISTED),
            }
        }
        if !c.session_expiry.is_zero() {
            self.broker.share_subscriptions(&c.slot);
        }
        let ack = Packet::UnsubAck(UnsubAck {
            pkid: u.pkid,
            codes,
            properties: Default::default(),
        });
        self.acknowledge(ack, durable_at, w);
    }
}
