//! The broker's settings: built-in defaults, then the TOML file, then `FERRY_*`
//! environment variables, through the `config` crate. Unknown keys and bad values are
//! refused with the key's name.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use ferry_admin::{AdminSettings, HttpApiSettings};
use ferry_auth::{AuthSettings, LimitSettings};
use ferry_mqtt::MqttConfig;
use ferry_stomp::StompConfig;
use ferry_transport::config::{HttpConfig, Listeners, TlsConfig, WebSocketConfig};
use ferry_transport::TransportConfig;
use serde::{Deserialize, Serialize};

/// Prefix of the environment variables that override settings.
pub(crate) const ENV_PREFIX: &str = "FERRY";

/// Every setting of the broker; `conf/ferry.toml` documents each key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Settings {
    /// `[log]`
    pub log: LogSettings,
    /// `[runtime]`
    pub runtime: RuntimeSettings,
    /// `[shutdown]`
    pub shutdown: ShutdownSettings,
    /// `[listeners.*]`
    pub listeners: Listeners,
    /// `[tls]`
    pub tls: TlsConfig,
    /// `[http]`
    pub http: HttpConfig,
    /// `[websocket]`
    pub websocket: WebSocketConfig,
    /// `[mqtt]`
    pub mqtt: MqttConfig,
    /// `[stomp]`
    pub stomp: StompConfig,
    /// `[auth]`: authentication and ACL.
    pub auth: AuthSettings,
    /// `[limits]`: connections, rates, retained messages.
    pub limits: LimitSettings,
    /// `[admin]`: the admin API, dashboard and `$SYS`.
    pub admin: AdminSettings,
    /// `[http_api]`: HTTP publish and Server-Sent Events on the public listeners.
    pub http_api: HttpApiSettings,
    /// `[storage]`: what survives a restart, and where.
    pub storage: StorageSettings,
    /// `[cluster]`: the NATS link to other Ferry nodes (unset `nats_url`: alone).
    pub cluster: ferry_cluster::ClusterConfig,
    /// Deprecated keys the configuration used (old name, new name), moved to their new
    /// names at load; logged once logging is up.
    #[serde(skip)]
    pub deprecated_keys: Vec<(&'static str, &'static str)>,
}

/// When a record counts as durable (`storage.sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SyncSetting {
    /// After `write()` and `fdatasync`: survives kill -9 and power loss.
    #[default]
    Fsync,
    /// After `write()`: survives kill -9, not a power loss.
    Os,
}

/// `[storage]`: the write-ahead log that keeps retained messages across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct StorageSettings {
    /// Off: everything in memory, forgotten on restart.
    pub enabled: bool,
    /// The data directory (relative to the working directory), created 0700.
    pub dir: std::path::PathBuf,
    /// `fsync` or `os`.
    pub sync: SyncSetting,
    /// Size of each preallocated segment file, in bytes.
    pub segment_bytes: u64,
    /// The most bytes the store may use on disk; reaching it refuses what needs the
    /// disk as a full disk does.
    pub max_disk_bytes: u64,
    /// Log bytes written since the last snapshot beyond which a snapshot is taken.
    pub snapshot_after_bytes: u64,
    /// How often the broker checks whether a snapshot is due.
    #[serde(with = "humantime_serde")]
    pub snapshot_check_interval: Duration,
}

impl Default for StorageSettings {
    fn default() -> Self {
        let store = ferry_store::StoreConfig::new("data");
        Self {
            enabled: true,
            dir: store.dir,
            sync: SyncSetting::Fsync,
            segment_bytes: store.segment_bytes,
            max_disk_bytes: store.max_disk_bytes,
            snapshot_after_bytes: store.snapshot_after_bytes,
            snapshot_check_interval: Duration::from_secs(10),
        }
    }
}

impl StorageSettings {
    /// The store's configuration.
    pub(crate) fn store_config(&self) -> ferry_store::StoreConfig {
        let mut c = ferry_store::StoreConfig::new(&self.dir);
        c.sync = match self.sync {
            SyncSetting::Fsync => ferry_store::SyncMode::Fsync,
            SyncSetting::Os => ferry_store::SyncMode::Os,
        };
        c.segment_bytes = self.segment_bytes;
        c.max_disk_bytes = self.max_disk_bytes;
        c.snapshot_after_bytes = self.snapshot_after_bytes;
        c
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

/// `[log]`: what is logged and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LogSettings {
    /// A level (`error`, `warn`, `info`, `debug`, `trace`) or a tracing filter such as
    /// `info,ferry_transport=debug`.
    pub level: String,
    /// `plain` or `json`.
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Plain,
        }
    }
}

/// `[runtime]`: the async runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RuntimeSettings {
    /// Worker threads; 0 means one per CPU core.
    pub worker_threads: usize,
}

/// `[shutdown]`: what SIGINT/SIGTERM do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ShutdownSettings {
    /// How long connections get to close after the close frames are sent.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self {
            grace_period: Duration::from_secs(10),
        }
    }
}

impl Settings {
    /// Load the defaults, then `file` if given, then the environment.
    pub(crate) fn load(file: Option<&Path>) -> anyhow::Result<Settings> {
        Self::load_from(file, std::env::vars())
    }

    /// [`Settings::load`] with the environment given explicitly (for tests).
    pub(crate) fn load_from(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> anyhow::Result<Settings> {
        let defaults = config::Config::try_from(&Settings::default()).context("internal error: defaults do not serialise")?;
        let mut builder = config::Config::builder().add_source(defaults);
        if let Some(path) = file {
            if !path.exists() {
                bail!("configuration file {} does not exist", path.display());
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        let env: config::Map<String, String> = env.into_iter().filter(|(k, _)| k.starts_with("FERRY_")).collect();
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("http.allowed_origins")
                .with_list_parse_key("auth.jwt.algorithms")
                .with_list_parse_key("admin.admin_keys")
                .source(Some(env)),
        );
        let merged = builder.build().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        let mut settings: Settings = merged
            .try_deserialize()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        settings.deprecated_keys = settings.stomp.take_deprecated();
        settings.validate()?;
        Ok(settings)
    }

    /// Checks serde cannot express.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        if self.http.max_request_head_size < 8192 {
            bail!(
                "invalid configuration: http.max_request_head_size must be at least 8192 (is {})",
                self.http.max_request_head_size
            );
        }
        if self.websocket.max_message_size == 0 {
            bail!("invalid configuration: websocket.max_message_size must be at least 1");
        }
        if !self.websocket.ping_interval.is_zero() && self.websocket.ping_timeout.is_zero() {
            bail!("invalid configuration: websocket.ping_timeout must be above 0s when websocket.ping_interval is");
        }
        if !self.websocket.echo_path.is_empty() && !self.websocket.echo_path.starts_with('/') {
            bail!(
                "invalid configuration: websocket.echo_path must start with '/' (is {:?})",
                self.websocket.echo_path
            );
        }
        if !(self.stomp.heart_beat_grace >= 1.0 && self.stomp.heart_beat_grace.is_finite()) {
            bail!(
                "invalid configuration: stomp.heart_beat_grace must be a number of at least 1 (is {})",
                self.stomp.heart_beat_grace
            );
        }
        let rates = [
            ("limits.connection_rate", self.limits.connection_rate),
            ("limits.messages_per_second", self.limits.messages_per_second),
        ];
        for (key, rate) in rates {
            if !(rate >= 0.0 && rate.is_finite()) {
                bail!("invalid configuration: {key} must be a number of at least 0 (is {rate})");
            }
        }
        if self.limits.ipv6_prefix_len > 128 {
            bail!(
                "invalid configuration: limits.ipv6_prefix_len must be at most 128 (is {})",
                self.limits.ipv6_prefix_len
            );
        }
        if self.admin.max_samples == 0 || self.admin.max_page_size == 0 {
            bail!("invalid configuration: admin.max_samples and admin.max_page_size must be at least 1");
        }
        if self.http_api.sse_queue == 0 || self.http_api.sse_heartbeat.is_zero() {
            bail!("invalid configuration: http_api.sse_queue and http_api.sse_heartbeat must be above 0");
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            bail!(
                "invalid configuration: log.level {:?} is not a level or tracing filter",
                self.log.level
            );
        }
        Ok(())
    }

    /// The transport's part.
    pub(crate) fn transport(&self) -> TransportConfig {
        TransportConfig {
            listeners: self.listeners.clone(),
            tls: self.tls.clone(),
            http: self.http.clone(),
            websocket: self.websocket.clone(),
        }
    }

    /// The effective settings as TOML, for `ferry check-config`.
    pub(crate) fn to_toml(&self) -> anyhow::Result<String> {
        toml::to_string_pretty(self).context("cannot print the configuration")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn conf_file() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../conf/ferry.toml")
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn write(toml: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.toml");
        std::fs::write(&path, toml).unwrap();
        (dir, path)
    }

    #[test]
    fn shipped_file_states_exactly_the_defaults() {
        let from_file = Settings::load_from(Some(&conf_file()), env(&[])).unwrap();
        assert_eq!(from_file, Settings::default());
    }

    #[test]
    fn no_file_runs_on_defaults() {
        assert_eq!(Settings::load_from(None, env(&[])).unwrap(), Settings::default());
    }

    #[test]
    fn deprecated_stomp_queue_limit_names_still_load_and_are_named() {
        let (_d, path) = write("[stomp]\nmax_pending_per_subscription = 7\n");
        let s = Settings::load_from(Some(&path), env(&[("FERRY_STOMP__MAX_PENDING_BYTES_PER_SUBSCRIPTION", "99")])).unwrap();
        assert_eq!(
            (s.stomp.max_queued_per_subscription, s.stomp.max_queued_bytes_per_subscription),
            (7, 99)
        );
        assert_eq!(
            s.deprecated_keys,
            [
                ("stomp.max_pending_per_subscription", "stomp.max_queued_per_subscription"),
                (
                    "stomp.max_pending_bytes_per_subscription",
                    "stomp.max_queued_bytes_per_subscription"
                ),
            ]
        );
        assert!(!s.to_toml().unwrap().contains("max_pending_per"), "only the new names are printed");
    }

    #[test]
    fn cluster_settings_from_file_and_environment() {
        assert_eq!(
            Settings::load_from(None, env(&[])).unwrap().cluster.nats_url,
            None,
            "alone by default"
        );
        let (_d, path) = write("[cluster]\nnode_name = \"ferry-1\"\nrouting = \"broadcast\"\n");
        let s = Settings::load_from(Some(&path), env(&[("FERRY_CLUSTER__NATS_URL", "nats://127.0.0.1:4222")])).unwrap();
        assert_eq!(s.cluster.nats_url.as_deref(), Some("nats://127.0.0.1:4222"));
        assert_eq!(s.cluster.node_name.as_deref(), Some("ferry-1"));
        assert_eq!(s.cluster.routing, ferry_cluster::Routing::Broadcast);
        assert_eq!(s.cluster.retained_bucket, "ferry_retained");
    }

    #[test]
    fn environment_overrides_file() {
        let (_d, path) = write("[websocket]\nmax_message_size = 10\n[listeners.ws]\nbind = \"127.0.0.1:9000\"\n");
        let s = Settings::load_from(
            Some(&path),
            env(&[
                ("FERRY_WEBSOCKET__MAX_MESSAGE_SIZE", "20"),
                ("FERRY_LISTENERS__MQTT__ENABLED", "false"),
                ("FERRY_HTTP__ALLOWED_ORIGINS", "https://a.example,https://b.example"),
                ("FERRY_SHUTDOWN__GRACE_PERIOD", "3s"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.websocket.max_message_size, 20);
        assert_eq!(s.listeners.ws.bind.to_string(), "127.0.0.1:9000");
        assert!(s.listeners.ws.enabled, "a partial table keeps the other defaults");
        assert!(!s.listeners.mqtt.enabled);
        assert_eq!(s.http.allowed_origins, ["https://a.example", "https://b.example"]);
        assert_eq!(s.shutdown.grace_period, Duration::from_secs(3));
    }

    #[test]
    fn auth_settings_from_file_and_environment() {
        let (_d, path) = write("[auth]\nallow_anonymous = false\npassword_file = \"users.txt\"\n[auth.jwt]\nsecret = \"s\"\n");
        let s = Settings::load_from(
            Some(&path),
            env(&[
                ("FERRY_AUTH__JWT__ALGORITHMS", "HS256,HS384"),
                ("FERRY_LIMITS__MAX_CONNECTIONS", "7"),
                ("FERRY_AUTH__CERT_USERNAME", "cn"),
            ]),
        )
        .unwrap();
        assert_eq!(s.auth.allow_anonymous, ferry_auth::config::AnonymousPolicy::Deny);
        assert_eq!(s.auth.password_file.as_deref(), Some(Path::new("users.txt")));
        assert_eq!(s.auth.jwt.algorithms, ["HS256", "HS384"]);
        assert_eq!(s.auth.cert_username, ferry_auth::config::CertUsername::CommonName);
        assert_eq!(s.limits.max_connections, 7);
        let s = Settings::load_from(None, env(&[("FERRY_AUTH__ALLOW_ANONYMOUS", "true")])).unwrap();
        assert_eq!(s.auth.allow_anonymous, ferry_auth::config::AnonymousPolicy::Allow);
    }

    #[test]
    fn admin_and_http_api_settings_from_the_environment() {
        let s = Settings::load_from(
            None,
            env(&[
                ("FERRY_LISTENERS__ADMIN__BIND", "127.0.0.1:19000"),
                ("FERRY_ADMIN__ADMIN_KEYS", "ops,root"),
                ("FERRY_ADMIN__SYS_INTERVAL", "0s"),
                ("FERRY_HTTP_API__SSE_QUEUE", "5"),
                ("FERRY_HTTP_API__ENABLED", "false"),
            ]),
        )
        .unwrap();
        assert_eq!(s.listeners.admin.bind.to_string(), "127.0.0.1:19000");
        assert_eq!(s.admin.admin_keys, ["ops", "root"]);
        assert!(s.admin.sys_interval.is_zero());
        assert_eq!(s.http_api.sse_queue, 5);
        assert!(!s.http_api.enabled);
        let err = Settings::load_from(None, env(&[("FERRY_HTTP_API__SSE_QUEUE", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("http_api.sse_queue"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let (_d, path) = write("[websocket]\nmax_mesage_size = 10\n");
        let err = Settings::load_from(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(err.contains("max_mesage_size"), "{err}");
        let err = Settings::load_from(None, env(&[("FERRY_NOPE", "1")])).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        for (toml, key) in [
            ("[websocket]\nmax_message_size = \"big\"\n", "max_message_size"),
            ("[listeners.ws]\nbind = \"nowhere\"\n", "bind"),
            ("[shutdown]\ngrace_period = \"soon\"\n", "grace_period"),
            ("[log]\nformat = \"xml\"\n", "format"),
            ("[http]\nmax_request_head_size = 100\n", "http.max_request_head_size"),
            ("[websocket]\necho_path = \"echo\"\n", "websocket.echo_path"),
            ("[stomp]\nheart_beat_grace = 0.5\n", "stomp.heart_beat_grace"),
            ("[limits]\nconnection_rate = -1.0\n", "limits.connection_rate"),
            ("[limits]\nipv6_prefix_len = 129\n", "limits.ipv6_prefix_len"),
            ("[auth]\nallow_anonymous = \"maybe\"\n", "allow_anonymous"),
            ("[auth]\ncert_username = \"dn\"\n", "cert_username"),
        ] {
            let (_d, path) = write(toml);
            let err = Settings::load_from(Some(&path), env(&[])).unwrap_err().to_string();
            assert!(err.contains(key), "{toml}: {err}");
        }
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = Settings::load_from(Some(Path::new("/nonexistent/ferry.toml")), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn effective_configuration_round_trips() {
        let text = Settings::default().to_toml().unwrap();
        let (_d, path) = write(&text);
        assert_eq!(Settings::load_from(Some(&path), env(&[])).unwrap(), Settings::default());
    }
}
