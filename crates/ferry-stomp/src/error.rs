//! Why a session ends with an ERROR frame. Every variant is fatal to the connection
//! (STOMP 1.2 §"ERROR": the server closes after it): the frame's `message` header is
//! [`ProtocolError::summary`], its body the error's one-line `Display`, and the
//! WebSocket close code [`ProtocolError::close_request`].

use std::time::Duration;

use ferry_auth::STOMP_ACCESS_REFUSED;
use ferry_core::CloseRequest;
use thiserror::Error;

use crate::codec::{Command, StompError};
use crate::destination::DestinationError;
use crate::queue::QueueError;

/// A protocol error or a refused request that ends the session.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// The codec could not read the frame (bad escape, unknown command, over a limit…).
    #[error(transparent)]
    Frame(#[from] StompError),
    /// A frame other than CONNECT/STOMP came first.
    #[error("{command} received before CONNECT: a STOMP session starts with CONNECT or STOMP")]
    NotConnected {
        /// The frame's command.
        command: Command,
    },
    /// `accept-version` lists no version this server speaks.
    #[error("no common protocol version: the client accepts {offered:?}, this server speaks 1.0, 1.1 and 1.2")]
    NoCommonVersion {
        /// The client's `accept-version`.
        offered: String,
    },
    /// CONNECT or STOMP on a session that is connected already.
    #[error("{command} received on a session that is already connected")]
    AlreadyConnected {
        /// The frame's command.
        command: Command,
    },
    /// A frame only servers send.
    #[error("{command} is a server frame; clients cannot send it")]
    ServerCommand {
        /// The frame's command.
        command: Command,
    },
    /// A required header is absent.
    #[error("{command} frame is missing the required header {header:?}")]
    MissingHeader {
        /// The frame's command.
        command: Command,
        /// The header's name.
        header: &'static str,
    },
    /// A header's value cannot be used.
    #[error("header {header}:{value:?} is not valid: {why}")]
    InvalidHeader {
        /// The header's name.
        header: &'static str,
        /// Its value.
        value: String,
        /// What is expected.
        why: &'static str,
    },
    /// The destination is not one the broker serves.
    #[error(transparent)]
    Destination(#[from] DestinationError),
    /// SUBSCRIBE with an id that is in use.
    #[error("subscription id {id:?} is already in use on this connection")]
    DuplicateSubscription {
        /// The id.
        id: String,
    },
    /// ACK, NACK or UNSUBSCRIBE naming a subscription that does not exist.
    #[error("no subscription with id {id:?} on this connection")]
    UnknownSubscription {
        /// The id.
        id: String,
    },
    /// ACK or NACK naming a message id this connection was never sent.
    #[error("message id {id:?} was never sent on this connection")]
    UnknownMessage {
        /// The id.
        id: String,
    },
    /// One subscription (or temporary queue) more than the limit.
    #[error("more than {limit} subscriptions and temporary queues on one connection")]
    TooManySubscriptions {
        /// The limit in force.
        limit: usize,
    },
    /// BEGIN with the id of an open transaction.
    #[error("transaction {id:?} is already open")]
    TransactionExists {
        /// The id.
        id: String,
    },
    /// COMMIT, ABORT or a transactional frame naming no open transaction.
    #[error("no open transaction {id:?}")]
    UnknownTransaction {
        /// The id.
        id: String,
    },
    /// The frames held in open transactions pass the limit.
    #[error("open transactions hold more than {limit} bytes on this connection")]
    TransactionTooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// SUBSCRIBE to another connection's temporary queue.
    #[error("cannot subscribe to {destination:?}: a reply queue belongs to the connection that made it; send replies to it")]
    SubscribeToReplyQueue {
        /// The destination.
        destination: String,
    },
    /// A queue refused the message or could not be created.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// No CONNECT in time.
    #[error("no CONNECT frame within {0:?} of opening the connection")]
    ConnectTimeout(Duration),
    /// A client that promised heart-beats went silent.
    #[error("nothing received from the client for {0:?} (heart-beat interval times the grace factor)")]
    HeartBeatTimeout(Duration),
    /// The CONNECT's credentials are wrong (never says which, nor echoes them).
    #[error("bad credentials")]
    BadCredentials,
    /// The client may not connect (no credentials, and anonymous access is off).
    #[error("not authorized")]
    NotAuthorized,
    /// The ACL refuses this destination to the client.
    #[error("not authorized to {action} {destination}")]
    Forbidden {
        /// `send to` or `subscribe to`.
        action: &'static str,
        /// The destination as the client wrote it.
        destination: String,
    },
    /// The token the client authenticated with has expired.
    #[error("token expired")]
    TokenExpired,
    /// The client sends more messages than `limits.messages_per_second` allows.
    #[error("more SEND frames than limits.messages_per_second and limits.message_burst allow")]
    MessageRateExceeded,
    /// More bytes arrived after a CONNECT, while its credentials were being checked, than
    /// may be buffered.
    #[error("more than {limit} octets received while the CONNECT was being checked")]
    TooMuchBeforeConnected {
        /// The limit in force (`max_body_unauthenticated`).
        limit: usize,
    },
}

impl ProtocolError {
    /// The short text of the ERROR frame's `message` header.
    pub fn summary(&self) -> &'static str {
        match self {
            ProtocolError::Frame(e) => e.summary(),
            ProtocolError::NotConnected { .. } => "not connected",
            ProtocolError::NoCommonVersion { .. } => "supported protocol versions are 1.0,1.1,1.2",
            ProtocolError::AlreadyConnected { .. } => "already connected",
            ProtocolError::ServerCommand { .. } => "unexpected frame",
            ProtocolError::MissingHeader { .. } => "missing required header",
            ProtocolError::InvalidHeader { .. } => "invalid header",
            ProtocolError::Destination(_) => "invalid destination",
            ProtocolError::DuplicateSubscription { .. } => "duplicate subscription id",
            ProtocolError::UnknownSubscription { .. } => "unknown subscription",
            ProtocolError::UnknownMessage { .. } => "unknown message id",
            ProtocolError::TooManySubscriptions { .. } => "too many subscriptions",
            ProtocolError::TransactionExists { .. } => "transaction already open",
            ProtocolError::UnknownTransaction { .. } => "unknown transaction",
            ProtocolError::TransactionTooLarge { .. } => "transaction too large",
            ProtocolError::SubscribeToReplyQueue { .. } => "invalid destination",
            ProtocolError::Queue(QueueError::Storage(_)) => "storage unavailable",
            ProtocolError::Queue(_) => "queue refused the message",
            ProtocolError::ConnectTimeout(_) => "connect timeout",
            ProtocolError::HeartBeatTimeout(_) => "heart-beat timeout",
            ProtocolError::BadCredentials
            | ProtocolError::NotAuthorized
            | ProtocolError::Forbidden { .. }
            | ProtocolError::TokenExpired => STOMP_ACCESS_REFUSED,
            ProtocolError::MessageRateExceeded => "message rate too high",
            ProtocolError::TooMuchBeforeConnected { .. } => "frame too large",
        }
    }

    /// How the WebSocket closes after the ERROR frame: 1009 for a frame over a size
    /// limit, 1008 for other limits and timeouts, 1002 for protocol violations.
    pub fn close_request(&self) -> CloseRequest {
        let reason = self.summary();
        match self {
            ProtocolError::Frame(e) if e.is_limit() => CloseRequest::too_big(reason),
            ProtocolError::TooMuchBeforeConnected { .. } => CloseRequest::too_big(reason),
            ProtocolError::BadCredentials
            | ProtocolError::NotAuthorized
            | ProtocolError::Forbidden { .. }
            | ProtocolError::TokenExpired
            | ProtocolError::MessageRateExceeded
            | ProtocolError::TooManySubscriptions { .. }
            | ProtocolError::TransactionTooLarge { .. }
            | ProtocolError::Queue(_)
            | ProtocolError::ConnectTimeout(_)
            | ProtocolError::HeartBeatTimeout(_) => CloseRequest::policy(reason),
            _ => CloseRequest::protocol_error(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_errors_keep_their_text_and_limits_close_with_1009() {
        let e = ProtocolError::from(StompError::BodyTooLarge { limit: 5 });
        assert_eq!(e.to_string(), "frame body exceeds the limit of 5 octets");
        assert_eq!(e.summary(), "frame too large");
        assert_eq!(e.close_request().code, 1009);
        let e = ProtocolError::MissingHeader {
            command: Command::Send,
            header: "destination",
        };
        assert_eq!(e.to_string(), "SEND frame is missing the required header \"destination\"");
        assert_eq!(e.close_request().code, 1002);
        assert_eq!(ProtocolError::TooManySubscriptions { limit: 1 }.close_request().code, 1008);
        let e = ProtocolError::Forbidden {
            action: "send to",
            destination: "/topic/a".into(),
        };
        assert_eq!(
            (e.summary(), e.to_string().as_str()),
            ("access refused", "not authorized to send to /topic/a")
        );
        assert_eq!(e.close_request().code, 1008);
        assert_eq!(ProtocolError::BadCredentials.summary(), "access refused");
        assert_eq!(ProtocolError::MessageRateExceeded.summary(), "message rate too high");
    }
}
