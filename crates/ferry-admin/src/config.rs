//! `[admin]` and `[http_api]`, as they appear in `conf/ferry.toml`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[admin]`: the admin API, the dashboard and `$SYS` (the listener itself is
/// `[listeners.admin]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// A password file of API keys (`NAME:HASH` lines, made with `ferry passwd`). Needed
    /// when `[listeners.admin]` binds anything but a loopback address; without it the
    /// broker refuses to start there. Keys are sent as HTTP Basic `NAME:SECRET` or
    /// `Authorization: Bearer NAME:SECRET`.
    pub api_keys_file: Option<PathBuf>,
    /// The keys with the `admin` role (kick, delete, publish); every other key in the
    /// file is a `viewer` (read only).
    pub admin_keys: Vec<String>,
    /// How often the `$SYS/broker/...` topics are published (retained, QoS 0, only the
    /// values that changed). `0s` turns `$SYS` off.
    #[serde(with = "humantime_serde")]
    pub sys_interval: Duration,
    /// How often the dashboard's rate charts take a sample.
    #[serde(with = "humantime_serde")]
    pub sample_interval: Duration,
    /// Samples kept in memory for the charts (a ring buffer).
    pub max_samples: usize,
    /// The most items one page of a list answers (`limit=`).
    pub max_page_size: usize,
    /// The largest request body the admin API reads, in bytes (a publish's JSON).
    pub max_body: usize,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            api_keys_file: None,
            admin_keys: Vec::new(),
            sys_interval: Duration::from_secs(10),
            sample_interval: Duration::from_secs(1),
            max_samples: 600,
            max_page_size: 10_000,
            max_body: 1024 * 1024,
        }
    }
}

/// `[http_api]`: publish and Server-Sent Events on the public HTTP listeners (`ws`,
/// `wss`), with the same authentication and ACL as every client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpApiSettings {
    /// `false` turns `POST /api/v1/publish` and `GET /api/v1/events` off (404).
    pub enabled: bool,
    /// The largest `POST /api/v1/publish` body in bytes; larger gets 413.
    pub max_body: usize,
    /// The largest decoded payload in bytes; larger gets 413.
    pub max_payload: usize,
    /// Messages waiting for one event stream; more are dropped (and counted), as for a
    /// QoS 0 subscriber.
    pub sse_queue: usize,
    /// A comment line is sent on an idle event stream this often, to keep proxies from
    /// closing it.
    #[serde(with = "humantime_serde")]
    pub sse_heartbeat: Duration,
    /// Event streams open at once at most; more get 503.
    pub max_streams: usize,
    /// Topic filters one event stream may name at most.
    pub max_stream_topics: usize,
    /// How long an HTTP request may wait for its credentials to be checked.
    #[serde(with = "humantime_serde")]
    pub auth_timeout: Duration,
}

impl Default for HttpApiSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_body: 1024 * 1024,
            max_payload: 256 * 1024,
            sse_queue: 1000,
            sse_heartbeat: Duration::from_secs(15),
            max_streams: 10_000,
            max_stream_topics: 32,
            auth_timeout: Duration::from_secs(5),
        }
    }
}
