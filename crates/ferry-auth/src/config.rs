//! The `[auth]` and `[limits]` settings, as they appear in `conf/ferry.toml`. Every field
//! has a default; unknown keys are refused.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Whether clients without credentials may connect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum AnonymousPolicy {
    /// `"auto"`: allowed only while nothing could authenticate anyone — no password file
    /// (or one without users), no JWT key and no certificate user names.
    #[default]
    Auto,
    /// `true`: always allowed.
    Allow,
    /// `false`: never allowed.
    Deny,
}

/// Whether the client certificate of a TLS connection names the user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CertUsername {
    /// `"off"`: the certificate is not a user name.
    #[default]
    #[serde(rename = "off")]
    Off,
    /// `"cn"`: the subject's common name is the user name.
    #[serde(rename = "cn")]
    CommonName,
    /// `"san"`: the first subject alternative name is the user name.
    #[serde(rename = "san")]
    SubjectAltName,
}

/// `[auth]`: who may connect, and what they may do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Anonymous clients (no user name, no token, no certificate user name): `"auto"`,
    /// `true` or `false`. `"auto"` allows them only while nothing could authenticate anyone.
    pub allow_anonymous: AnonymousPolicy,
    /// The password file (`user:argon2id-hash` lines, managed with `ferry passwd`); unset:
    /// no passwords.
    pub password_file: Option<PathBuf>,
    /// The ACL file; unset: every authenticated client may publish and subscribe anywhere
    /// (token grants still apply).
    pub acl_file: Option<PathBuf>,
    /// Take the user name from the client certificate (mTLS): `"off"`, `"cn"` or `"san"`.
    pub cert_username: CertUsername,
    /// Reload the password and ACL files when they change on disk (SIGHUP always does).
    pub watch_files: bool,
    /// How often to look for changes when `watch_files` is on.
    #[serde(with = "humantime_serde")]
    pub watch_interval: Duration,
    /// Password checks (argon2id: ~20 MiB and tens of ms each) run at once at most; more
    /// wait their turn. 0: one per CPU core.
    pub password_check_threads: usize,
    /// JWT bearer tokens.
    pub jwt: JwtSettings,
    /// Slowing down addresses that keep failing to authenticate.
    pub failed_auth: FailedAuthSettings,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            allow_anonymous: AnonymousPolicy::Auto,
            password_file: None,
            acl_file: None,
            cert_username: CertUsername::Off,
            watch_files: false,
            watch_interval: Duration::from_secs(5),
            password_check_threads: 0,
            jwt: JwtSettings::default(),
            failed_auth: FailedAuthSettings::default(),
        }
    }
}

/// `[auth.jwt]`: JWT bearer tokens. On when a key is set (`secret`, `secret_file` or
/// `public_key_file`, exactly one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtSettings {
    /// Accepted `alg`s, all of the key's kind: `HS256`/`HS384`/`HS512` with a secret,
    /// `RS*`/`PS*` with an RSA key, `ES256`/`ES384` with an EC key, `EdDSA`. Empty: `HS256`
    /// with a secret, `RS256` or `ES256` as the public key's kind says.
    pub algorithms: Vec<String>,
    /// The HMAC secret, at least 32 bytes (prefer `secret_file` or the environment).
    pub secret: Option<String>,
    /// A file holding the HMAC secret (a trailing newline is ignored).
    pub secret_file: Option<PathBuf>,
    /// A PEM file with the public key (RSA, EC or Ed25519) tokens are signed for.
    pub public_key_file: Option<PathBuf>,
    /// Required `iss`, if set.
    pub issuer: Option<String>,
    /// Required `aud` (one of them, if the token lists several), if set.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// Refuse tokens without `exp`.
    pub require_exp: bool,
    /// The claim that holds the user name.
    pub username_claim: String,
    /// Close a connection when its token expires.
    pub close_on_expiry: bool,
}

impl Default for JwtSettings {
    fn default() -> Self {
        Self {
            algorithms: Vec::new(),
            secret: None,
            secret_file: None,
            public_key_file: None,
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(30),
            require_exp: true,
            username_claim: "sub".to_owned(),
            close_on_expiry: true,
        }
    }
}

impl JwtSettings {
    /// Whether JWT authentication is on (a key is set).
    pub fn enabled(&self) -> bool {
        self.secret.is_some() || self.secret_file.is_some() || self.public_key_file.is_some()
    }
}

/// `[auth.failed_auth]`: after `max_failures` failed authentications from one address within
/// `window`, each further attempt from it waits `delay`, doubling with each failure up to
/// `max_delay`. A success clears the address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailedAuthSettings {
    /// Failures tolerated without delay; 0 turns the slowdown off.
    pub max_failures: u32,
    /// How long failures are remembered, from the first one.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// The first delay.
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
    /// The longest delay.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// Addresses remembered at most (the least recently seen are forgotten first).
    pub max_tracked_addresses: usize,
}

impl Default for FailedAuthSettings {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window: Duration::from_secs(60),
            delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            max_tracked_addresses: 100_000,
        }
    }
}

/// `[limits]`: connections, per source address and in all. 0 means no limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Open connections in all.
    pub max_connections: usize,
    /// Open connections from one source address.
    pub max_connections_per_address: usize,
    /// New connections per second from one source address (token bucket rate); 0: no limit.
    pub connection_rate: f64,
    /// New connections one source address may open in a burst (token bucket size).
    pub connection_burst: u32,
    /// How long a connection that comes faster than `connection_rate` may be held
    /// (accepted, not yet read) until the rate allows it; one that would wait longer is
    /// refused. 0: refuse at once.
    #[serde(with = "humantime_serde")]
    pub connection_max_wait: Duration,
    /// Source addresses whose connection rate is tracked at most; idle ones are forgotten
    /// first, then the least recently seen.
    pub max_tracked_addresses: usize,
    /// IPv6 sources are grouped by this prefix length (one /64 is usually one client).
    pub ipv6_prefix_len: u8,
    /// Messages (MQTT PUBLISH, STOMP SEND) one connection may send per second, on average;
    /// 0: no limit. Beyond it the connection is closed: MQTT 5 DISCONNECT 0x96 (message
    /// rate too high), MQTT 3.1.1 closed, STOMP ERROR.
    pub messages_per_second: f64,
    /// Messages one connection may send in a burst above `messages_per_second`.
    pub message_burst: u32,
    /// Bytes one connection may send per second, on average; 0: no limit. Beyond it the
    /// broker stops reading from the connection until the rate allows (throttled reads,
    /// as TCP back-pressure: nothing is refused).
    pub bytes_per_second: u64,
    /// Bytes one connection may send in a burst above `bytes_per_second`.
    pub byte_burst: u32,
    /// Retained messages kept at most; a new retained topic beyond it is delivered live
    /// but not retained (counted). 0: no limit.
    pub max_retained_messages: usize,
    /// Total payload bytes of retained messages kept at most; same rule. 0: no limit.
    pub max_retained_bytes: u64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            max_connections: 100_000,
            max_connections_per_address: 10_000,
            connection_rate: 1_000.0,
            connection_burst: 2_000,
            connection_max_wait: Duration::from_secs(30),
            max_tracked_addresses: 100_000,
            ipv6_prefix_len: 64,
            messages_per_second: 0.0,
            message_burst: 1_000,
            bytes_per_second: 0,
            byte_burst: 1024 * 1024,
            max_retained_messages: 1_000_000,
            max_retained_bytes: 1024 * 1024 * 1024,
        }
    }
}

impl Serialize for AnonymousPolicy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => serializer.serialize_str("auto"),
            Self::Allow => serializer.serialize_bool(true),
            Self::Deny => serializer.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for AnonymousPolicy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PolicyVisitor;

        impl Visitor<'_> for PolicyVisitor {
            type Value = AnonymousPolicy;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or \"auto\"")
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(if v { AnonymousPolicy::Allow } else { AnonymousPolicy::Deny })
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "auto" => Ok(AnonymousPolicy::Auto),
                    "true" => Ok(AnonymousPolicy::Allow),
                    "false" => Ok(AnonymousPolicy::Deny),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }

        deserializer.deserialize_any(PolicyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        auth: AuthSettings,
        #[serde(default)]
        limits: LimitSettings,
    }

    #[test]
    fn empty_file_gives_the_defaults_and_defaults_round_trip() {
        let file: File = toml::from_str("").unwrap();
        assert_eq!(file.auth, AuthSettings::default());
        assert_eq!(file.limits, LimitSettings::default());
        assert!(!file.auth.jwt.enabled());
        let text = toml::to_string(&file).unwrap();
        assert_eq!(toml::from_str::<File>(&text).unwrap(), file);
    }

    /// The `[auth]` and `[limits]` sections of `conf/ferry.toml` (the one documented list
    /// of keys, which the crate README points to) parse and show the defaults.
    #[test]
    fn the_shipped_configuration_shows_the_defaults() {
        let conf: toml::Table = toml::from_str(include_str!("../../../conf/ferry.toml")).unwrap();
        let ours: toml::Table = conf.into_iter().filter(|(k, _)| k == "auth" || k == "limits").collect();
        let file: File = ours.try_into().unwrap();
        assert_eq!(file.auth, AuthSettings::default());
        assert_eq!(file.limits, LimitSettings::default());
    }

    #[test]
    fn values_parse() {
        let file: File = toml::from_str(
            r#"
            [auth]
            allow_anonymous = false
            password_file = "/etc/ferry/passwd"
            acl_file = "/etc/ferry/acl"
            cert_username = "cn"
            [auth.jwt]
            algorithms = ["ES256"]
            public_key_file = "jwt.pem"
            leeway = "5s"
            [auth.failed_auth]
            delay = "250ms"
            [limits]
            connection_rate = 2.5
            "#,
        )
        .unwrap();
        assert_eq!(file.auth.allow_anonymous, AnonymousPolicy::Deny);
        assert_eq!(file.auth.cert_username, CertUsername::CommonName);
        assert_eq!(file.auth.jwt.leeway, Duration::from_secs(5));
        assert!(file.auth.jwt.enabled());
        assert_eq!(file.auth.failed_auth.delay, Duration::from_millis(250));
        assert_eq!(file.limits.connection_rate, 2.5);
        for (text, policy) in [
            ("true", AnonymousPolicy::Allow),
            ("\"auto\"", AnonymousPolicy::Auto),
            ("\"false\"", AnonymousPolicy::Deny),
        ] {
            let file: File = toml::from_str(&format!("[auth]\nallow_anonymous = {text}")).unwrap();
            assert_eq!(file.auth.allow_anonymous, policy);
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let err = toml::from_str::<File>("[auth]\npasword_file = \"x\"").unwrap_err().to_string();
        assert!(err.contains("pasword_file"), "{err}");
        let err = toml::from_str::<File>("[auth.jwt]\nleway = \"1s\"").unwrap_err().to_string();
        assert!(err.contains("leway"), "{err}");
        let err = toml::from_str::<File>("[auth]\nallow_anonymous = \"maybe\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("auto"), "{err}");
        assert!(toml::from_str::<File>("[auth]\ncert_username = \"subject\"").is_err());
    }
}
