//! MESSAGE frames to the client: each subscription's messages (redelivered ones first,
//! then its outbox or queue) as far as its window allows, with `destination`,
//! `message-id`, `subscription`, `ack` (1.2, when the subscription acknowledges),
//! `redelivered`, `content-type`, the application's headers and the body shared, not
//! copied, with every other subscriber (`content-length` is always written).
//!
//! When the gatekeeper says deliveries need checking (an ACL that can take away part of
//! an allowed subscription, or token grants), each topic message is checked with
//! `may_receive` and a refused one is dropped (counted) before it takes a place in the
//! window, so client-ack subscriptions never wait for an ACK that cannot come. Otherwise
//! the check costs nothing per message.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use ferry_core::{Delivery, Output};

use super::subscribe::{Pending, PendingMessage, Source};
use super::{Connected, Ctx, Writer};
use crate::codec::{Command, FrameRef};
use crate::convert::{self, MessageHead};
use crate::destination;
use crate::queue::Entry;

/// Messages taken from one source per round.
const BATCH: usize = 64;
/// MESSAGE frames written per call; past it the session rings itself to go on after
/// the transport has written what it has.
const MAX_PER_CALL: usize = 1024;

/// One message to send.
enum Item {
    Topic { delivery: Delivery, redelivered: bool },
    Queue(Entry),
}

impl Connected {
    /// Send what waits for every subscription, within their windows.
    pub(super) fn pump(&mut self, ctx: &Ctx<'_>, w: &mut Writer, out: &mut Output) {
        let mut ids: Vec<String> = self.subs.keys().cloned().collect();
        // Start one further each call, so that a busy subscription cannot keep the
        // ones after it waiting behind the per-call budget.
        if !ids.is_empty() {
            let start = self.pump_start % ids.len();
            ids.rotate_left(start);
            self.pump_start = self.pump_start.wrapping_add(1);
        }
        let check = self.policy.needs_delivery_check();
        let mut sent = 0;
        for id in ids {
            sent += self.pump_one(ctx, &id, MAX_PER_CALL.saturating_sub(sent), check, w, out);
            if sent >= MAX_PER_CALL {
                ctx.info.wakeup.wake();
                return;
            }
        }
    }

    /// Send up to `budget` messages of subscription `id`; returns how many were sent.
    /// With `check`, topic messages the ACL refuses to this client are dropped.
    fn pump_one(&mut self, ctx: &Ctx<'_>, id: &str, budget: usize, check: bool, w: &mut Writer, out: &mut Output) -> usize {
        let mut sent = 0;
        let mut batch: Vec<Item> = Vec::with_capacity(BATCH);
        while sent < budget {
            let Some(sub) = self.subs.get_mut(id) else { break };
            let n = sub.room().min(BATCH).min(budget - sent);
            if n == 0 {
                break;
            }
            match &mut sub.source {
                Source::Topic { outbox, redeliver, .. } => {
                    while batch.len() < n {
                        let Some(delivery) = redeliver.pop_front() else { break };
                        batch.push(Item::Topic {
                            delivery,
                            redelivered: true,
                        });
                    }
                    if batch.len() < n {
                        let mut fresh = Vec::new();
                        outbox.pop_into(n - batch.len(), &mut fresh);
                        batch.extend(fresh.into_iter().map(|delivery| Item::Topic {
                            delivery,
                            redelivered: false,
                        }));
                    }
                    if check && !batch.is_empty() {
                        let policy = &self.policy;
                        let before = batch.len();
                        batch.retain(|item| match item {
                            Item::Topic { delivery, .. } => policy.may_receive(delivery.message.topic.as_str()),
                            Item::Queue(_) => true,
                        });
                        if batch.is_empty() && before > 0 {
                            // All withheld: look at what comes next.
                            continue;
                        }
                    }
                }
                Source::Queue { queue, consumer, .. } => {
                    // The queue keeps the window: it assigns no more than the
                    // consumer's prefetch allows.
                    let mut entries = Vec::new();
                    queue.take(*consumer, &mut entries);
                    batch.extend(entries.into_iter().map(Item::Queue));
                }
            }
            if batch.is_empty() {
                break;
            }
            for item in batch.drain(..) {
                if self.send_message(ctx, id, item, w, out) {
                    sent += 1;
                }
            }
        }
        ferry_core::monitor::ConnectionCounters::add(&ctx.info.monitor.counters.messages_out, sent);
        sent
    }

    /// Write one MESSAGE for subscription `id`; false when the message had expired.
    fn send_message(&mut self, ctx: &Ctx<'_>, id: &str, item: Item, w: &mut Writer, out: &mut Output) -> bool {
        let Some(sub) = self.subs.get_mut(id) else { return false };
        if let Item::Topic { delivery, .. } = &item {
            if delivery.message.is_expired(ctx.now) {
                return false;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.message_id.clear();
        let _ = write!(self.message_id, "{}-{seq}", self.name);
        let message_id = &self.message_id;
        let needs_ack = sub.ack.acknowledges();
        let version = self.version;
        match &item {
            Item::Topic { delivery, redelivered } => {
                let m = &delivery.message;
                let dest = match &self.last_destination {
                    Some((topic, dest)) if *topic == m.topic => dest,
                    _ => {
                        &self
                            .last_destination
                            .insert((m.topic.clone(), destination::topic_destination(&m.topic)))
                            .1
                    }
                };
                let app = convert::topic_headers(m);
                let head = MessageHead {
                    destination: dest,
                    message_id,
                    subscription: id,
                    needs_ack,
                    redelivered: *redelivered,
                };
                let app = app.iter().map(|(k, v)| (*k, v.as_str()));
                let headers = convert::message_headers(&head, version, m.properties.content_type.as_deref(), app);
                w.frame(&message(&headers, &m.payload), version, out);
            }
            Item::Queue(entry) => {
                let m = &entry.message;
                let head = MessageHead {
                    destination: &sub.destination,
                    message_id,
                    subscription: id,
                    needs_ack,
                    redelivered: entry.redelivered,
                };
                let app = m.properties.user_properties.iter().map(|(k, v)| (k.as_str(), v.as_str()));
                let headers = convert::message_headers(&head, version, m.properties.content_type.as_deref(), app);
                w.frame(&message(&headers, &m.payload), version, out);
            }
        }
        ctx.broker.stats.messages_out.fetch_add(1, Ordering::Relaxed);
        if needs_ack {
            sub.unacked += 1;
            let what = match item {
                Item::Topic { delivery, .. } => PendingMessage::Topic(delivery),
                Item::Queue(entry) => PendingMessage::Queue(entry.id),
            };
            self.unacked.insert(seq, Pending { sub: id.to_owned(), what });
        }
        true
    }
}

/// A MESSAGE frame over borrowed headers and body.
fn message<'a>(headers: &'a [(&'a str, &'a str)], body: &'a Bytes) -> FrameRef<'a> {
    FrameRef {
        command: Command::Message,
        headers,
        body,
    }
}
