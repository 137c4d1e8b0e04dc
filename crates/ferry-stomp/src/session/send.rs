//! SEND: the destination checked, the message built once, then routed — through the
//! core's topic tree for `/topic/` (at QoS 1, so MQTT subscribers get what they asked
//! for, up to QoS 1), into a queue for `/queue/`, `/temp-queue/` and `/reply-queue/`.
//! Inside a transaction the prepared message waits for COMMIT.
//!
//! A `/queue/` is durable when the broker has storage: the message is journaled when it
//! is put into the queue (at COMMIT inside a transaction), and the connection's next
//! RECEIPT waits until it is on disk (see `Connected::written`). When the journal
//! cannot take it the SEND is refused with an ERROR, never acknowledged. Temporary and
//! reply queues are not durable.
//!
//! Each SEND frame (in a transaction or not) takes a token from the connection's
//! `limits.messages_per_second` bucket; none left: ERROR "message rate too high", close.
//! A `/topic/` SEND is checked by the ACL as a publish to the mapped MQTT topic, a
//! `/queue/` SEND by the queue rules; refused: ERROR "access refused", close.
//!
//! A `reply-to:/temp-queue/NAME` header makes the temporary queue NAME of this
//! connection (consumed implicitly unless the client subscribes to it) and is rewritten
//! to `reply-to:/reply-queue/TOKEN`, the name others send replies to.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use ferry_auth::Action;
use ferry_core::{Lsn, Message, QoS, TopicName};
use tracing::debug;

use super::transaction::TxOp;
use super::{Connected, Ctx};
use crate::codec::Frame;
use crate::convert;
use crate::destination::{self, Destination, REPLY_QUEUE, TEMP_QUEUE};
use crate::error::ProtocolError;

/// Where a SEND goes.
#[derive(Debug)]
enum Target {
    Topic,
    Queue(String),
    /// A temporary queue, by reply token (this connection's, or another's via
    /// `/reply-queue/`).
    Temp(String),
    Reply(String),
}

/// A SEND checked and ready to apply.
#[derive(Debug)]
pub(super) struct PreparedSend {
    target: Target,
    /// The mapped topic of a `/topic/` SEND; the destination of a queue's (see
    /// [`destination::queue_topic`]).
    topic: TopicName,
    body: Bytes,
    content_type: Option<String>,
    headers: Vec<(String, String)>,
}

impl PreparedSend {
    /// Roughly what it costs to hold in a transaction.
    pub(super) fn weight(&self) -> usize {
        self.body.len() + self.headers.iter().map(|(k, v)| k.len() + v.len() + 2).sum::<usize>() + 64
    }
}

impl Connected {
    pub(super) fn on_send(&mut self, ctx: &Ctx<'_>, frame: Frame) -> Result<(), ProtocolError> {
        if !self.policy.take_message(ctx.now) {
            return Err(ProtocolError::MessageRateExceeded);
        }
        let transaction = frame.header("transaction").map(str::to_owned);
        if let Some(tx) = &transaction {
            self.transactions.check_open(tx)?;
        }
        let prepared = self.prepare_send(ctx, frame)?;
        match transaction {
            Some(tx) => self
                .transactions
                .add(&tx, TxOp::Send(prepared), ctx.broker.config.max_transaction_bytes),
            None => self.apply_send(ctx, prepared),
        }
    }

    fn prepare_send(&mut self, ctx: &Ctx<'_>, frame: Frame) -> Result<PreparedSend, ProtocolError> {
        let destination = frame.header("destination").ok_or(ProtocolError::MissingHeader {
            command: frame.command,
            header: "destination",
        })?;
        let forbidden = || ProtocolError::Forbidden {
            action: "send to",
            destination: destination.to_owned(),
        };
        let (target, topic) = match Destination::parse(destination)? {
            Destination::Topic(key) => {
                let topic = destination::topic_name(&key)?;
                if !self.policy.may_publish(topic.as_str()) {
                    return Err(forbidden());
                }
                (Target::Topic, topic)
            }
            Destination::Queue(name) => {
                if !self.policy.may_use_queue(Action::Publish, &name) {
                    return Err(forbidden());
                }
                (Target::Queue(name), destination::queue_topic(destination)?)
            }
            Destination::TempQueue(name) => (Target::Temp(self.temp_token(ctx, &name)?), destination::queue_topic(destination)?),
            Destination::ReplyQueue(token) => (Target::Reply(token), destination::queue_topic(destination)?),
        };
        let mut headers = convert::app_headers(&frame);
        if let Some((_, value)) = headers.iter_mut().find(|(k, _)| k == "reply-to") {
            if let Some(name) = value.strip_prefix(TEMP_QUEUE).filter(|n| !n.is_empty()).map(str::to_owned) {
                let token = self.temp_token(ctx, &name)?;
                self.subscribe_implicitly(ctx, &name, &token);
                *value = format!("{REPLY_QUEUE}{token}");
            }
        }
        Ok(PreparedSend {
            target,
            topic,
            content_type: frame.header("content-type").map(str::to_owned),
            body: frame.body,
            headers,
        })
    }

    /// Route a prepared SEND now.
    pub(super) fn apply_send(&mut self, ctx: &Ctx<'_>, p: PreparedSend) -> Result<(), ProtocolError> {
        ctx.broker.stats.sends.fetch_add(1, Ordering::Relaxed);
        let PreparedSend {
            target,
            topic,
            body,
            content_type,
            headers,
        } = p;
        let queued = |topic, body, content_type, headers| Arc::new(convert::queue_message(topic, body, content_type, headers));
        match target {
            Target::Topic => {
                let properties = convert::properties_in(content_type.as_deref(), headers);
                let message = Message::new(topic, body, QoS::AtLeastOnce, false)
                    .with_properties(properties)
                    .with_publisher(self.publisher);
                // A message queued for a persistent MQTT session (or a retained change)
                // is journaled: the connection's next RECEIPT waits for it.
                let published = ctx
                    .broker
                    .router
                    .publish_durable(Arc::new(message), ctx.now)
                    .map_err(|e| ProtocolError::Queue(crate::queue::QueueError::Storage(e)))?;
                if let Some(lsn) = published.durable_at {
                    self.wrote(lsn);
                }
                ferry_core::monitor::ConnectionCounters::bump(&ctx.info.monitor.counters.messages_in);
            }
            Target::Queue(name) => {
                if let Some(lsn) = ctx.broker.queues.send(&name, queued(topic, body, content_type, headers))? {
                    self.wrote(lsn);
                }
            }
            Target::Temp(token) => {
                ctx.broker
                    .queues
                    .temp_queue(&token)
                    .push(queued(topic, body, content_type, headers))?;
            }
            Target::Reply(token) => {
                if !ctx.broker.queues.reply(&token, queued(topic, body, content_type, headers))? {
                    debug!(
                        conn = ctx.info.id,
                        token, "reply to a temporary queue whose connection is gone: dropped"
                    );
                }
            }
        }
        Ok(())
    }

    /// This connection's frames made the journal record at `lsn`: its next RECEIPT
    /// waits for it.
    fn wrote(&mut self, lsn: Lsn) {
        self.written = self.written.max(lsn);
    }
}
