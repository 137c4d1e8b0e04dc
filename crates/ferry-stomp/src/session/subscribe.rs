//! SUBSCRIBE and UNSUBSCRIBE.
//!
//! A `/topic/` subscription is a subscription of its own in the core's router (its own
//! identity and bounded outbox), so two subscriptions of one connection that match the
//! same message each get their MESSAGE, as STOMP says. `ack:auto` subscribes at QoS 0
//! (a message is done once sent), `client` and `client-individual` at QoS 1 (kept until
//! ACK, sent again after NACK). Retained messages matching the filter are delivered
//! first. A `/queue/` or `/temp-queue/` subscription is a consumer of that queue.
//!
//! Each subscription holds at most `prefetch-count` (default and maximum from the
//! configuration; 0 asks for the maximum) unacknowledged messages; more wait in its
//! outbox or queue.
//!
//! A `/topic/` SUBSCRIBE is checked by the ACL as an MQTT subscribe to the mapped filter,
//! a `/queue/` one by the queue rules (read access); refused: ERROR "access refused",
//! close. Going past `max_subscriptions` is counted in the gatekeeper's
//! `subscription_quota_exceeded`.

use std::collections::VecDeque;
use std::sync::Arc;

use ferry_auth::Action;
use ferry_core::{next_subscriber_id, Delivery, Outbox, OutboxLimits, QoS, SubscribeOptions, Subscriber, SubscriberId, Subscription};
use tracing::debug;

use super::{Connected, Ctx};
use crate::codec::{Command, Frame, Version};
use crate::destination::{self, Destination, TEMP_QUEUE};
use crate::error::ProtocolError;
use crate::queue::{Acking, ConsumerId, Queue};
use crate::shared::StompShared;

/// A subscription's acknowledgement mode (`ack` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AckMode {
    /// Messages are acknowledged by being sent.
    Auto,
    /// ACK is cumulative: it acknowledges the message and every earlier one of the
    /// subscription.
    Client,
    /// ACK acknowledges that message only.
    ClientIndividual,
}

impl AckMode {
    fn parse(value: Option<&str>) -> Result<AckMode, ProtocolError> {
        match value {
            None | Some("auto") => Ok(AckMode::Auto),
            Some("client") => Ok(AckMode::Client),
            Some("client-individual") => Ok(AckMode::ClientIndividual),
            Some(other) => Err(ProtocolError::InvalidHeader {
                header: "ack",
                value: other.to_owned(),
                why: "expected auto, client or client-individual",
            }),
        }
    }

    /// Whether the client acknowledges messages of this mode.
    pub(super) fn acknowledges(self) -> bool {
        self != AckMode::Auto
    }
}

/// Where a subscription's messages come from.
pub(super) enum Source {
    /// The topic tree, through the router.
    Topic {
        subscription: Subscription,
        identity: SubscriberId,
        outbox: Arc<Outbox>,
        /// NACKed messages, sent again before anything new.
        redeliver: VecDeque<Delivery>,
    },
    /// A named or temporary queue.
    Queue {
        queue: Arc<Queue>,
        consumer: ConsumerId,
        /// A temporary queue of this connection (not removed on unsubscribe).
        temp: bool,
    },
}

/// One subscription.
pub(super) struct Sub {
    /// The `destination` its MESSAGE frames carry for queue messages.
    pub destination: String,
    pub ack: AckMode,
    /// Most unacknowledged messages (at least 1).
    pub prefetch: usize,
    /// Messages sent and not yet acknowledged.
    pub unacked: usize,
    pub source: Source,
    /// Made by the broker for a `reply-to:/temp-queue/…` with no explicit SUBSCRIBE.
    pub implicit: bool,
}

impl Sub {
    /// How many more messages the window allows.
    pub(super) fn room(&self) -> usize {
        if !self.ack.acknowledges() {
            usize::MAX
        } else {
            self.prefetch.saturating_sub(self.unacked)
        }
    }
}

/// A message sent and not yet acknowledged.
pub(super) struct Pending {
    /// The subscription's id.
    pub sub: String,
    pub what: PendingMessage,
}

/// What a pending message was.
pub(super) enum PendingMessage {
    /// A topic message, sent again after NACK.
    Topic(Delivery),
    /// A queue entry, held by the queue until ACK.
    Queue(u64),
}

fn required<'f>(frame: &'f Frame, header: &'static str) -> Result<&'f str, ProtocolError> {
    frame.header(header).ok_or(ProtocolError::MissingHeader {
        command: frame.command,
        header,
    })
}

impl Connected {
    fn check_room(&self, ctx: &Ctx<'_>) -> Result<(), ProtocolError> {
        let limit = ctx.broker.config.max_subscriptions;
        if !self.policy.may_add_subscription(self.subs.len() + self.temp.len(), limit) {
            return Err(ProtocolError::TooManySubscriptions { limit });
        }
        Ok(())
    }

    /// The reply token of this connection's temporary queue `name`, made if needed.
    pub(super) fn temp_token(&mut self, ctx: &Ctx<'_>, name: &str) -> Result<String, ProtocolError> {
        if let Some(token) = self.temp.get(name) {
            return Ok(token.clone());
        }
        self.check_room(ctx)?;
        let token = format!("{}.{name}", self.name);
        ctx.broker.queues.temp_queue(&token);
        self.temp.insert(name.to_owned(), token.clone());
        Ok(token)
    }

    pub(super) fn on_subscribe(&mut self, ctx: &Ctx<'_>, frame: &Frame) -> Result<(), ProtocolError> {
        let destination = required(frame, "destination")?;
        // STOMP 1.0 made `id` optional: the destination then names the subscription.
        let id = match (frame.header("id"), self.version) {
            (Some(id), _) => id,
            (None, Version::V1_0) => destination,
            (None, _) => {
                return Err(ProtocolError::MissingHeader {
                    command: Command::Subscribe,
                    header: "id",
                })
            }
        };
        let ack = AckMode::parse(frame.header("ack"))?;
        let requested = match frame.header("prefetch-count") {
            None => None,
            Some(v) => Some(v.parse::<usize>().map_err(|_| ProtocolError::InvalidHeader {
                header: "prefetch-count",
                value: v.to_owned(),
                why: "expected a non-negative integer",
            })?),
        };
        let prefetch = ctx.broker.config.prefetch(requested);
        let parsed = Destination::parse(destination)?;
        if let Destination::TempQueue(name) = &parsed {
            // An explicit subscription replaces the one made for a reply-to.
            let implicit_id = format!("{TEMP_QUEUE}{name}");
            if self.subs.get(&implicit_id).is_some_and(|s| s.implicit) {
                self.unsubscribe(ctx.broker, &implicit_id);
            }
        }
        if self.subs.contains_key(id) {
            return Err(ProtocolError::DuplicateSubscription { id: id.to_owned() });
        }
        self.check_room(ctx)?;
        let acking = if ack.acknowledges() { Acking::Client } else { Acking::Auto };
        let wakeup = ctx.info.wakeup.clone();
        let forbidden = || ProtocolError::Forbidden {
            action: "subscribe to",
            destination: destination.to_owned(),
        };
        let source = match parsed {
            Destination::Topic(key) => {
                let filter = destination::topic_filter(&key)?;
                if !self.policy.may_subscribe(filter.as_str()) {
                    return Err(forbidden());
                }
                let limit = ctx.broker.config.max_queued_per_subscription;
                let outbox = Arc::new(Outbox::new(OutboxLimits {
                    max_qos0: limit,
                    max_qos12: limit,
                    max_bytes: ctx.broker.config.max_queued_bytes_per_subscription,
                }));
                let qos = if ack.acknowledges() { QoS::AtLeastOnce } else { QoS::AtMostOnce };
                let identity = next_subscriber_id();
                for d in ctx.broker.router.retained_deliveries(&filter, qos, &[], ctx.now) {
                    outbox.push(d);
                }
                let subscription = Subscription::Plain(filter);
                ctx.broker.router.subscribe_as(
                    &subscription,
                    Subscriber {
                        durable: None,
                        id: identity,
                        outbox: outbox.clone(),
                        options: SubscribeOptions { qos, ..Default::default() },
                    },
                    Some(Arc::from(self.name.as_str())),
                );
                outbox.attach(wakeup);
                Source::Topic {
                    subscription,
                    identity,
                    outbox,
                    redeliver: VecDeque::new(),
                }
            }
            Destination::Queue(name) => {
                if !self.policy.may_use_queue(Action::Subscribe, &name) {
                    return Err(forbidden());
                }
                let (queue, consumer) = ctx.broker.queues.subscribe(&name, prefetch, acking, wakeup)?;
                Source::Queue {
                    queue,
                    consumer,
                    temp: false,
                }
            }
            Destination::TempQueue(name) => {
                let token = self.temp_token(ctx, &name)?;
                let queue = ctx.broker.queues.temp_queue(&token);
                let consumer = queue.add_consumer(prefetch, acking, wakeup);
                Source::Queue {
                    queue,
                    consumer,
                    temp: true,
                }
            }
            Destination::ReplyQueue(_) => {
                return Err(ProtocolError::SubscribeToReplyQueue {
                    destination: destination.to_owned(),
                })
            }
        };
        debug!(conn = ctx.info.id, session = %self.name, id, destination, ?ack, prefetch, "STOMP subscribe");
        self.subs.insert(
            id.to_owned(),
            Sub {
                destination: destination.to_owned(),
                ack,
                prefetch,
                unacked: 0,
                source,
                implicit: false,
            },
        );
        Ok(())
    }

    /// Consume this connection's temporary queue `name` without an explicit SUBSCRIBE
    /// (a `reply-to` named it): messages arrive with `subscription:/temp-queue/NAME`,
    /// acknowledged automatically, as RabbitMQ does.
    pub(super) fn subscribe_implicitly(&mut self, ctx: &Ctx<'_>, name: &str, token: &str) {
        let id = format!("{TEMP_QUEUE}{name}");
        let already = self
            .subs
            .values()
            .any(|s| matches!(&s.source, Source::Queue { queue, temp: true, .. } if queue.name() == token));
        if already || self.subs.contains_key(&id) {
            return;
        }
        let queue = ctx.broker.queues.temp_queue(token);
        let prefetch = ctx.broker.config.prefetch(None);
        let consumer = queue.add_consumer(prefetch, Acking::Auto, ctx.info.wakeup.clone());
        self.subs.insert(
            id.clone(),
            Sub {
                destination: id,
                ack: AckMode::Auto,
                prefetch,
                unacked: 0,
                source: Source::Queue {
                    queue,
                    consumer,
                    temp: true,
                },
                implicit: true,
            },
        );
    }

    pub(super) fn on_unsubscribe(&mut self, ctx: &Ctx<'_>, frame: &Frame) -> Result<(), ProtocolError> {
        let id = match (frame.header("id"), self.version) {
            (Some(id), _) => id.to_owned(),
            // STOMP 1.0: by destination.
            (None, Version::V1_0) => {
                let destination = required(frame, "destination")?;
                self.subs
                    .iter()
                    .find(|(_, s)| s.destination == destination)
                    .map(|(id, _)| id.clone())
                    .unwrap_or_else(|| destination.to_owned())
            }
            (None, _) => {
                return Err(ProtocolError::MissingHeader {
                    command: Command::Unsubscribe,
                    header: "id",
                })
            }
        };
        if !self.subs.contains_key(&id) {
            return Err(ProtocolError::UnknownSubscription { id });
        }
        self.unsubscribe(ctx.broker, &id);
        debug!(conn = ctx.info.id, session = %self.name, id, "STOMP unsubscribe");
        Ok(())
    }

    /// End subscription `id`: out of the router, or off its queue (which gets back what
    /// was not acknowledged, marked redelivered).
    pub(super) fn unsubscribe(&mut self, broker: &StompShared, id: &str) {
        let Some(sub) = self.subs.remove(id) else { return };
        self.unacked.retain(|_, p| p.sub != id);
        match sub.source {
            Source::Topic {
                subscription,
                identity,
                outbox,
                ..
            } => {
                broker.router.unsubscribe(&subscription, identity);
                outbox.detach();
            }
            Source::Queue { queue, consumer, temp } => {
                if temp {
                    queue.remove_consumer(consumer);
                } else {
                    broker.queues.unsubscribe(&queue, consumer);
                }
            }
        }
    }

    /// The connection is gone: every subscription ends, temporary queues go away, open
    /// transactions are aborted.
    pub(super) fn release(&mut self, broker: &StompShared) {
        let ids: Vec<String> = self.subs.keys().cloned().collect();
        for id in ids {
            self.unsubscribe(broker, &id);
        }
        for token in self.temp.values() {
            broker.queues.remove_temp(token);
        }
        self.temp.clear();
        self.transactions.clear();
    }
}
