//! The command line, and its checks.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::payload::HEADER_LEN;

/// Most connections one load process opens.
pub(crate) const MAX_CLIENTS: usize = 200_000;

/// A load generator for MQTT and STOMP brokers on this machine (Ferry, Mosquitto,
/// RabbitMQ…), over ws://, wss://, tcp:// and TLS.
#[derive(Debug, Clone, Parser)]
#[command(name = "ferry-bench", version, about, long_about = None)]
pub(crate) struct Args {
    /// What to run.
    #[arg(value_enum)]
    pub scenario: Scenario,

    /// The protocol spoken (for `cross`: the publishers' side of the first half).
    #[arg(long, value_enum, default_value_t = Protocol::Mqtt)]
    pub protocol: Protocol,

    /// Broker URL: ws://, wss://, tcp://, mqtt://, mqtts://, stomp://, stomps://; loopback hosts only.
    #[arg(long, default_value = "ws://127.0.0.1:8083/")]
    pub url: String,

    /// `cross` only: the URL for the other protocol (default: `--url` when it is ws://
    /// or wss://, which serve both).
    #[arg(long)]
    pub cross_url: Option<String>,

    /// fanout, fanin, pairs and cross: the subscribers connect to this URL instead
    /// (another node of a Ferry cluster), the publishers to `--url` (and
    /// `--cross-url`); several URLs, comma-separated, are taken in turn (subscribers
    /// spread over nodes). For two protocols each must serve both (ws:// or wss://).
    #[arg(long)]
    pub sub_url: Option<String>,

    /// MQTT protocol version.
    #[arg(long, value_enum, default_value_t = MqttVersion::V311)]
    pub mqtt_version: MqttVersion,

    /// MQTT QoS of publications and subscriptions.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,

    /// STOMP subscription ack mode.
    #[arg(long, value_enum, default_value_t = AckMode::Auto)]
    pub ack: AckMode,

    /// MQTT publishers set the retain flag: every publication replaces its topic's
    /// retained message (with storage on, a journal record each, and a QoS 1/2 ack that
    /// waits for the disk).
    #[arg(long)]
    pub retain: bool,

    /// MQTT subscribers keep persistent sessions (clean session 0; MQTT 5: session
    /// expiry one hour): with storage on, every QoS 1/2 delivery to them is journaled
    /// and the publisher's ack waits for the disk.
    #[arg(long)]
    pub persistent: bool,

    /// STOMP publishers ask for a RECEIPT per SEND (their in-flight window counts
    /// unreceipted SENDs). Default: on unless `--ack auto`.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub receipts: Option<bool>,

    /// Payload size in bytes (at least the 44-byte header).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,

    /// Fill the payload after its header with JSON readings (a dashboard's feed, which
    /// compresses as such text does) instead of one repeated padding byte.
    #[arg(long)]
    pub json_body: bool,

    /// WebSocket: offer permessage-deflate (RFC 7692) and inflate the compressed
    /// messages the broker sends (what the client sends goes uncompressed). The broker
    /// must accept the offer.
    #[arg(long)]
    pub deflate: bool,

    /// Clients: subscribers for fanout, publishers for fanin, pairs for pairs and cross,
    /// connections for conns, healthy subscribers for slow (plus the stalled one).
    #[arg(long, default_value_t = 100)]
    pub clients: usize,

    /// Total publish rate of this process in messages/s, shared by its publishers.
    #[arg(long, conflicts_with = "max")]
    pub rate: Option<f64>,

    /// Publish as fast as the in-flight window allows (the default when no --rate).
    #[arg(long)]
    pub max: bool,

    /// In-flight window per publisher: unacknowledged QoS 1/2 PUBLISHes or unreceipted
    /// SENDs; for QoS 0 and no receipts, messages not yet seen by this process's own
    /// subscribers (0: no window, write as fast as the socket takes it).
    #[arg(long, default_value_t = 64)]
    pub inflight: usize,

    /// How long to measure (after the warm-up): `10`, `10s`, `500ms`, `2m`; `slow`
    /// splits it into two phases of equal length.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Warm-up before measuring; its messages count for loss, not for rates or latency.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Longest wait at the end for messages still in flight.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub drain: Duration,

    /// Upper bound on warm-up + duration (a safety stop).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub max_duration: Duration,

    /// Which side this process plays, so subscribers can be spread over several load
    /// processes: start the `sub` ones first (they print `ready` on stderr), then `pub`.
    #[arg(long, value_enum, default_value_t = Role::All)]
    pub role: Role,

    /// Added to client and publisher numbers (topics, publisher ids), so that several
    /// load processes of one run do not collide.
    #[arg(long, default_value_t = 0)]
    pub id_offset: u32,

    /// `--role sub`: longest wait for the first message.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub start_timeout: Duration,

    /// The broker's pid: its CPU use is reported, for `conns` its RSS per connection, for
    /// `slow` its RSS through both phases.
    #[arg(long)]
    pub broker_pid: Option<u32>,

    /// Worker threads (default: the CPUs this process may run on, see `taskset`).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Connections being set up at once.
    #[arg(long, default_value_t = 100)]
    pub connect_concurrency: usize,

    /// Longest wait for one connection to be set up (TCP, TLS, upgrade, CONNECT, SUBSCRIBE).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Spread source addresses over 127.0.0.2–127.0.0.254 (auto: above 5,000 clients).
    #[arg(long, value_enum, default_value_t = Spread::Auto)]
    pub spread_sources: Spread,

    /// TLS: trust the certificates in this PEM file.
    #[arg(long)]
    pub ca: Option<PathBuf>,

    /// TLS: accept any server certificate.
    #[arg(long)]
    pub insecure: bool,

    /// Print the result as one JSON line on stdout (the summary goes to stderr).
    #[arg(long)]
    pub json: bool,

    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,

    /// Topic prefix (MQTT syntax; STOMP destinations are derived from it).
    #[arg(long, default_value = "bench")]
    pub topic_prefix: String,
}

/// The scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scenario {
    /// One publisher, N subscribers on its topic.
    Fanout,
    /// N publishers on their own topics, one wildcard subscriber.
    Fanin,
    /// N publisher/subscriber pairs, one topic each.
    Pairs,
    /// N idle subscribed connections: set-up time, failures, broker RSS per connection.
    Conns,
    /// N pairs across protocols: MQTT publishers to STOMP subscribers and back.
    Cross,
    /// Fan-out to N subscribers, then one more that never reads: the others' rate
    /// before and after, and the broker's RSS meanwhile.
    Slow,
}

impl Scenario {
    /// The name used on the command line and in results.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::Fanout => "fanout",
            Scenario::Fanin => "fanin",
            Scenario::Pairs => "pairs",
            Scenario::Conns => "conns",
            Scenario::Cross => "cross",
            Scenario::Slow => "slow",
        }
    }
}

/// The wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub(crate) enum Protocol {
    /// MQTT 3.1.1 or 5.0.
    Mqtt,
    /// STOMP 1.2.
    Stomp,
}

impl Protocol {
    /// The other one.
    pub(crate) fn other(self) -> Protocol {
        match self {
            Protocol::Mqtt => Protocol::Stomp,
            Protocol::Stomp => Protocol::Mqtt,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Mqtt => "mqtt",
            Protocol::Stomp => "stomp",
        })
    }
}

/// MQTT versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum MqttVersion {
    /// MQTT 3.1.1.
    #[value(name = "3.1.1")]
    V311,
    /// MQTT 5.0.
    #[value(name = "5")]
    V5,
}

/// STOMP ack modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum AckMode {
    /// No ACK frames.
    Auto,
    /// Cumulative ACK (one per batch read).
    Client,
    /// One ACK per message.
    ClientIndividual,
}

impl AckMode {
    /// The value of the SUBSCRIBE `ack` header.
    pub(crate) fn header(self) -> &'static str {
        match self {
            AckMode::Auto => "auto",
            AckMode::Client => "client",
            AckMode::ClientIndividual => "client-individual",
        }
    }
}

/// Which side of a flow scenario this process plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Role {
    /// Publishers only.
    Pub,
    /// Subscribers only.
    Sub,
    /// Both.
    All,
}

impl Role {
    /// Whether this process publishes.
    pub(crate) fn publishes(self) -> bool {
        matches!(self, Role::Pub | Role::All)
    }

    /// Whether this process subscribes.
    pub(crate) fn subscribes(self) -> bool {
        matches!(self, Role::Sub | Role::All)
    }

    /// The name used in results.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Pub => "pub",
            Role::Sub => "sub",
            Role::All => "all",
        }
    }
}

/// Source address spreading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Spread {
    /// Above 5,000 clients, when the target is IPv4.
    Auto,
    /// Always (IPv4 targets).
    Always,
    /// Never: the kernel picks 127.0.0.1.
    Never,
}

/// Why the command line is refused after parsing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum ArgsError {
    /// Payload too small for the header.
    #[error("--payload {0} is below the {HEADER_LEN}-byte header")]
    PayloadTooSmall(usize),
    /// Zero or too many clients.
    #[error("--clients must be between 1 and {MAX_CLIENTS}")]
    Clients,
    /// A rate that is not a positive number.
    #[error("--rate must be a positive number of messages per second")]
    Rate,
    /// Warm-up plus duration past the cap.
    #[error("--warmup + --duration ({0:?}) exceeds --max-duration ({1:?})")]
    TooLong(Duration, Duration),
    /// Zero duration.
    #[error("--duration must be positive")]
    ZeroDuration,
    /// Zero concurrency.
    #[error("--connect-concurrency must be at least 1")]
    Concurrency,
    /// `conns` has no publishers.
    #[error("conns has no publishers: use --role all or sub")]
    ConnsRole,
    /// `cross` needs both sides in one process.
    #[error("cross runs both protocols in one process: use --role all")]
    CrossRole,
    /// `slow` compares phases that one process times.
    #[error("slow runs its publisher and subscribers in one process: use --role all")]
    SlowRole,
    /// A STOMP-only flag with MQTT or the reverse.
    #[error("{0}")]
    Mismatch(&'static str),
}

impl Args {
    /// Checks what clap cannot.
    pub(crate) fn validate(&self) -> Result<(), ArgsError> {
        if self.payload < HEADER_LEN {
            return Err(ArgsError::PayloadTooSmall(self.payload));
        }
        if self.clients == 0 || self.clients > MAX_CLIENTS {
            return Err(ArgsError::Clients);
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(ArgsError::Rate);
            }
        }
        if self.duration.is_zero() {
            return Err(ArgsError::ZeroDuration);
        }
        let total = self.warmup + self.duration;
        if total > self.max_duration {
            return Err(ArgsError::TooLong(total, self.max_duration));
        }
        if self.connect_concurrency == 0 {
            return Err(ArgsError::Concurrency);
        }
        match self.scenario {
            Scenario::Conns if self.role == Role::Pub => return Err(ArgsError::ConnsRole),
            Scenario::Cross if self.role != Role::All => return Err(ArgsError::CrossRole),
            Scenario::Slow if self.role != Role::All => return Err(ArgsError::SlowRole),
            _ => {}
        }
        if self.scenario != Scenario::Cross && self.protocol == Protocol::Mqtt && self.ack != AckMode::Auto {
            return Err(ArgsError::Mismatch("--ack is a STOMP option; MQTT uses --qos"));
        }
        if self.scenario != Scenario::Cross && self.protocol == Protocol::Stomp && self.qos != 0 {
            return Err(ArgsError::Mismatch("--qos is an MQTT option; STOMP uses --ack and --receipts"));
        }
        Ok(())
    }

    /// Whether STOMP publishers ask for receipts.
    pub(crate) fn stomp_receipts(&self) -> bool {
        self.receipts.unwrap_or(self.ack != AckMode::Auto)
    }

    /// The worker threads to run.
    pub(crate) fn worker_threads(&self) -> usize {
        self.threads.unwrap_or_else(crate::sys::cpus).max(1)
    }
}

/// Parses `10`, `2.5`, `10s`, `500ms`, `2m` (a bare number is seconds).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 10s, 500ms or 2m"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        other => return Err(format!("unknown unit `{other}` in `{text}`: use ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Args {
        Args::try_parse_from(std::iter::once("ferry-bench").chain(line.split_whitespace())).unwrap()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn defaults() {
        let a = args("fanout");
        assert_eq!((a.protocol, a.qos, a.payload, a.clients), (Protocol::Mqtt, 0, 64, 100));
        assert_eq!(
            (a.duration, a.role, a.rate, a.max),
            (Duration::from_secs(10), Role::All, None, false)
        );
        assert!(a.validate().is_ok());
        assert!(!a.stomp_receipts());
    }

    #[test]
    fn checks() {
        assert_eq!(args("fanout --payload 10").validate(), Err(ArgsError::PayloadTooSmall(10)));
        assert_eq!(args("fanout --clients 0").validate(), Err(ArgsError::Clients));
        assert_eq!(args("fanout --rate 0").validate(), Err(ArgsError::Rate));
        assert_eq!(args("fanout --duration 0").validate(), Err(ArgsError::ZeroDuration));
        assert!(matches!(args("fanout --duration 20m").validate(), Err(ArgsError::TooLong(..))));
        assert_eq!(args("conns --role pub").validate(), Err(ArgsError::ConnsRole));
        assert_eq!(args("cross --role sub").validate(), Err(ArgsError::CrossRole));
        assert_eq!(args("slow --role pub").validate(), Err(ArgsError::SlowRole));
        assert!(args("slow --qos 1 --rate 1000").validate().is_ok());
        assert!(matches!(args("fanout --ack client").validate(), Err(ArgsError::Mismatch(_))));
        assert!(matches!(
            args("fanout --protocol stomp --qos 1").validate(),
            Err(ArgsError::Mismatch(_))
        ));
        assert!(args("fanout --protocol stomp --ack client-individual").stomp_receipts());
        assert!(!args("fanout --protocol stomp --ack client --receipts false").stomp_receipts());
        assert!(Args::try_parse_from(["ferry-bench", "fanout", "--qos", "3"]).is_err());
        assert!(Args::try_parse_from(["ferry-bench", "fanout", "--rate", "5", "--max"]).is_err());
    }
}
