//! CONNECT and STOMP: the version from `accept-version` (1.0 when absent, ERROR when
//! none is common), heart-beats negotiated, `host`/`login`/`passcode` kept for the
//! authentication layer (every client is accepted for now), and the CONNECTED frame
//! with `version`, `server`, `session` and `heart-beat`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::Instant;

use ferry_core::{next_session_id, Output};
use tracing::debug;

use super::heartbeat::{self, HeartBeat};
use super::transaction::Transactions;
use super::{Connected, Credentials, Phase, StompSession, Writer};
use crate::codec::{Command, Frame, Version};
use crate::error::ProtocolError;

/// The `server` header: `Ferry/<version>`.
pub const SERVER: &str = concat!("Ferry/", env!("CARGO_PKG_VERSION"));

impl StompSession {
    pub(super) fn on_connect(&mut self, frame: &Frame, _now: Instant, w: &mut Writer, out: &mut Output) -> Result<(), ProtocolError> {
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
        let credentials = Credentials {
            host: frame.header("host").map(str::to_owned),
            login: frame.header("login").map(str::to_owned),
            passcode: frame.header("passcode").map(str::to_owned),
        };
        let name = self.broker.session_name(self.info.id);
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
        self.broker.stats.connects.fetch_add(1, Ordering::Relaxed);
        debug!(
            conn = self.info.id,
            session = %name,
            %version,
            host = credentials.host.as_deref().unwrap_or(""),
            login = credentials.login.as_deref().unwrap_or(""),
            ?heart_beat,
            "STOMP client connected"
        );
        self.phase = Phase::Connected(Box::new(Connected {
            version,
            name,
            credentials,
            heart_beat,
            publisher: next_session_id(),
            subs: BTreeMap::new(),
            unacked: BTreeMap::new(),
            next_seq: 1,
            pump_start: 0,
            transactions: Transactions::default(),
            temp: HashMap::new(),
        }));
        Ok(())
    }
}
