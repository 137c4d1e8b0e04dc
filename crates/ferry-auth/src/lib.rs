//! Ferry's authentication, authorization and connection limits, shared by every protocol
//! and transport. Sans-IO: no sockets, no clock (time is passed in), no task; files are
//! read only by the explicit loaders (`load`, `from_settings`, [`Authenticator::reload`])
//! and written only for `ferry passwd` ([`PasswordFile::save`] and its helpers).
//!
//! * [`password`]: the argon2id password file and what `ferry passwd` does with it.
//! * [`acl`]: the ACL file, checked for publishes and subscriptions (MQTT topics and
//!   filters; STOMP destinations after their mapping) and STOMP queues.
//! * [`jwt`]: JWT bearer tokens.
//! * [`limits`]: token buckets, per-address connection rates, failed-authentication
//!   slowdown, connection counts.
//! * [`config`]: the `[auth]` and `[limits]` settings.
//! * [`Authenticator`]: all of the above behind `authenticate` and `authorize`, reloadable.
//! * [`Gatekeeper`]: what the transport and the adapters ask at run time (admit a
//!   connection, check a CONNECT off the connection's task, ACL checks, rate buckets),
//!   with the counters behind the security metrics.
//! * [`ConnectCheck`]: one CONNECT waiting for its verdict, its delay and its deadline.
//! * [`ClientPolicy`]: one connected client's identity, token expiry, message rate,
//!   subscription quota and ACL, with the refusals counted.
//! * [`CoreParts`]: the broker-wide router and gatekeeper every adapter is built from.

pub mod acl;
mod authenticator;
mod client_policy;
pub mod config;
mod connect_check;
mod core_parts;
mod fs;
mod gate;
mod identity;
pub mod jwt;
pub mod limits;
pub mod password;

pub use acl::{Acl, Action, Decision};
pub use authenticator::{AuthParts, Authenticator, LoadError, Summary};
pub use client_policy::ClientPolicy;
pub use config::{AuthSettings, LimitSettings};
pub use connect_check::{CheckState, ConnectCheck};
pub use core_parts::CoreParts;
pub use gate::{Admitted, ConnectAttempt, Gatekeeper, Offload, PendingVerdict, Refusal, RunInline, SecurityStats, Verdict, WallClock};
pub use identity::{AuthFailure, AuthMethod, BadCredentials, Credentials, Identity, NotAuthorized, STOMP_ACCESS_REFUSED};
pub use jwt::{JwtVerifier, TokenClaims, TokenError};
pub use password::PasswordFile;
