//! CONNECT and STOMP: the version from `accept-version` (1.0 when absent, ERROR when
//! none is common), heart-beats negotiated, then the credentials checked by the
//! broker's [`Gatekeeper`](ferry_auth::Gatekeeper) (`login`/`passcode`, or what the
//! transport collected: a bearer token, a client certificate), and the CONNECTED frame
//! with `version`, `server`, `session` and `heart-beat`.
//!
//! A password check may run off the connection's task: the session then waits in
//! [`Phase::Authenticating`], buffering (not decoding) what else arrives, up to
//! `max_body_unauthenticated` octets. The verdict arrives by the connection's
//! [`Wakeup`](ferry_core::Wakeup) (taken in `on_wake`); an address that keeps failing is
//! answered only after the verdict's delay (`poll_timeout`/`on_timeout`). A refusal is an
//! ERROR `message:access refused` (the body says "bad credentials" or "not authorized",
//! never the secret), then close, as RabbitMQ does.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::Instant;

use ferry_auth::{AuthFailure, CheckState, ConnectAttempt, ConnectCheck, Identity};
use ferry_core::{next_subscriber_id, CompactMap, Output};
use tracing::debug;

use super::heartbeat::{self, HeartBeat};
use super::transaction::Transactions;
use super::{ConnectHeaders, Connected, Phase, StompConnection, Writer};
use crate::codec::{Command, Frame, Version};
use crate::error::ProtocolError;

/// The `server` header: `Ferry/<version>`.
pub(super) const SERVER: &str = concat!("Ferry/", env!("CARGO_PKG_VERSION"));

/// A CONNECT whose credentials the gatekeeper is checking.
pub(super) struct Authenticating {
    version: Version,
    heart_beat: HeartBeat,
    connect_headers: ConnectHeaders,
    /// The `session` header to send.
    name: String,
    /// The gatekeeper's verdict, its delay and the connect deadline.
    pub(super) check: ConnectCheck,
}

impl StompConnection {
    pub(super) fn on_connect(&mut self, frame: &Frame, now: Instant, w: &mut Writer, out: &mut Output) -> Result<(), ProtocolError> {
        let offered = frame.header("accept-version");
        let version = Version::negotiate(offered).ok_or_else(|| ProtocolError::NoCommonVersion {
            offered: offered.unwrap_or_default().to_owned(),
        })?;
        let config = &self.broker.config;
        let heart_beat = if version >= Version::V1_1 {
            let value = frame.header("heart-beat");
            let client = heartbeat::parse(value).ok_or_else(|| ProtocolError::InvalidHeader {
                header: "heart-beat",
                value: value.unwrap_or_default().to_owned(),
                why: "expected two non-negative integers, \"cx,cy\"",
            })?;
            heartbeat::negotiate(client, config.heart_beat_send, config.heart_beat_receive, config.heart_beat_grace)
        } else {
            HeartBeat::default()
        };
        let connect_headers = ConnectHeaders {
            host: frame.header("host").map(str::to_owned),
            login: frame.header("login").map(str::to_owned),
        };
        let name = self.broker.session_name(self.info.id);
        let client_id = frame.header("client-id").filter(|c| !c.is_empty()).unwrap_or(&name).to_owned();
        let deadline = match self.phase {
            Phase::AwaitingConnect { deadline } => deadline,
            _ => None,
        };
        let attempt = ConnectAttempt {
            peer: self.info.peer,
            protocol: "stomp",
            client_id,
            username: connect_headers.login.clone(),
            password: frame.header("passcode").map(|p| p.as_bytes().to_vec()),
            transport: self.info.credentials.clone(),
        };
        let check = self.broker.gate.begin_check(attempt, now, self.info.wakeup.clone(), deadline);
        self.phase = Phase::Authenticating(Box::new(Authenticating {
            version,
            heart_beat,
            connect_headers,
            name,
            check,
        }));
        // Most verdicts are in at once (no password file, a token, anonymous access).
        self.advance_auth(now, w, out);
        Ok(())
    }

    /// While authenticating: answer the CONNECT if the verdict is in and its delay has
    /// passed (CONNECTED, or ERROR and close).
    pub(super) fn advance_auth(&mut self, now: Instant, w: &mut Writer, out: &mut Output) {
        // A timeout is answered by `on_timeout`.
        let verdict = match &mut self.phase {
            Phase::Authenticating(a) => match a.check.poll(now) {
                CheckState::Ready(verdict) => verdict,
                CheckState::Waiting | CheckState::TimedOut => return,
            },
            _ => return,
        };
        let phase = std::mem::replace(&mut self.phase, Phase::AwaitingConnect { deadline: None });
        let Phase::Authenticating(a) = phase else {
            self.phase = phase;
            return;
        };
        let a = *a;
        match verdict.result {
            Ok(identity) => self.connected(a, identity, now, w, out),
            Err(failure) => {
                let error = match failure {
                    AuthFailure::BadCredentials(_) => ProtocolError::BadCredentials,
                    AuthFailure::NotAuthorized(_) => ProtocolError::NotAuthorized,
                };
                self.fail(&error, None, w, out);
            }
        }
    }

    /// The client is authenticated as `identity`: CONNECTED, and the full limits.
    fn connected(&mut self, a: Authenticating, identity: Identity, now: Instant, w: &mut Writer, out: &mut Output) {
        let Authenticating {
            version,
            heart_beat,
            connect_headers,
            name,
            ..
        } = a;
        let config = &self.broker.config;
        let gate = &self.broker.gate;
        let mut connected = Frame::new(Command::Connected)
            .with_header("version", version.as_str())
            .with_header("server", SERVER)
            .with_header("session", name.as_str());
        if version >= Version::V1_1 {
            connected
                .headers
                .push("heart-beat", heartbeat::header(config.heart_beat_send, config.heart_beat_receive));
        }
        w.frame(&connected, version, out);
        self.decoder.set_version(version);
        self.decoder.set_limits(config.limits());
        self.broker.stats.connects.fetch_add(1, Ordering::Relaxed);
        debug!(
            conn = self.info.id,
            session = %name,
            %version,
            host = connect_headers.host.as_deref().unwrap_or(""),
            login = connect_headers.login.as_deref().unwrap_or(""),
            user = identity.username.as_deref().unwrap_or(""),
            method = ?identity.method,
            ?heart_beat,
            "STOMP client connected"
        );
        self.info.monitor.set_client(ferry_core::ClientDetails {
            protocol: "stomp",
            version: version.as_str(),
            client_id: std::sync::Arc::from(name.as_str()),
            user: identity.username.as_deref().map(std::sync::Arc::from),
        });
        self.phase = Phase::Connected(Box::new(Connected {
            version,
            name,
            connect_headers,
            policy: gate.client_policy(identity, now),
            heart_beat,
            publisher: next_subscriber_id(),
            subs: CompactMap::new(),
            unacked: BTreeMap::new(),
            next_seq: 1,
            pump_start: 0,
            transactions: Transactions::default(),
            temp: HashMap::new(),
            last_destination: None,
            message_id: String::new(),
            written: 0,
            held: Default::default(),
        }));
    }
}
