//! What a client presents ([`Credentials`]), who it turns out to be ([`Identity`]), and why
//! it may be refused ([`AuthFailure`]).

use std::time::{Duration, SystemTime};

use thiserror::Error;

use crate::acl::TokenGrants;
use crate::jwt::TokenError;

use ferry_core::ClientCert;

/// What a client presents when it connects. The password is never logged, kept or put in
/// an error.
#[derive(Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// The client id (MQTT), or the connection's id where the protocol has none (STOMP).
    pub client_id: &'a str,
    /// MQTT CONNECT user name, STOMP `login`. Empty counts as absent.
    pub username: Option<&'a str>,
    /// MQTT CONNECT password, STOMP `passcode`: a password, or a JWT when JWT is on and it
    /// looks like one.
    pub password: Option<&'a [u8]>,
    /// A bearer token from the WebSocket upgrade: the `Authorization: Bearer` header or the
    /// `access_token` query parameter.
    pub bearer: Option<&'a str>,
    /// The verified client certificate of a TLS connection.
    pub tls: Option<&'a ClientCert>,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.map(|_| "<redacted>"))
            .field("bearer", &self.bearer.map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .finish()
    }
}

/// How a client was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// No credentials, anonymous access allowed.
    Anonymous,
    /// A user name and password from the password file.
    Password,
    /// A JWT (bearer, password or passcode).
    Token,
    /// The client certificate's CN or SAN.
    Certificate,
}

/// Who a client is, once authenticated: what the ACL is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user name; `None` for an anonymous client.
    pub username: Option<String>,
    /// The client id (for `%c` in ACL patterns).
    pub client_id: String,
    /// Roles from the token's `roles` claim. Roles the ACL file gives the user (`roles`
    /// lines) are looked up at each check, so that a reload applies to them at once.
    pub roles: Vec<String>,
    /// ACL grants from the token's `acl` claim, if any.
    pub grants: Option<TokenGrants>,
    /// When the connection must be closed because its token expires (only when
    /// `auth.jwt.close_on_expiry` is on).
    pub expires_at: Option<SystemTime>,
    /// How the client was authenticated.
    pub method: AuthMethod,
}

impl Identity {
    /// An anonymous client.
    pub fn anonymous(client_id: &str) -> Self {
        Self {
            username: None,
            client_id: client_id.to_owned(),
            roles: Vec::new(),
            grants: None,
            expires_at: None,
            method: AuthMethod::Anonymous,
        }
    }

    /// A client known as `username`, authenticated by `method`.
    pub fn user(username: &str, client_id: &str, method: AuthMethod) -> Self {
        Self {
            username: Some(username.to_owned()),
            method,
            ..Self::anonymous(client_id)
        }
    }

    /// How long until the connection must be closed for its token's expiry, from `now`
    /// (zero when already past); `None` when it need not be.
    pub fn expires_in(&self, now: SystemTime) -> Option<Duration> {
        self.expires_at.map(|at| at.duration_since(now).unwrap_or(Duration::ZERO))
    }
}

/// Why a client is refused at connect time. Never holds a password or a token.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthFailure {
    /// The credentials are wrong: MQTT 3.1.1 CONNACK 0x04, MQTT 5 0x86, STOMP `access
    /// refused`, HTTP 401 for a bad bearer token.
    #[error("bad credentials: {0}")]
    BadCredentials(BadCredentials),
    /// The client may not connect: MQTT 3.1.1 CONNACK 0x05, MQTT 5 0x87, STOMP `access
    /// refused`.
    #[error("not authorized: {0}")]
    NotAuthorized(NotAuthorized),
}

/// What is wrong with the credentials (for the log; the client is told only "bad user name
/// or password").
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BadCredentials {
    /// The user is not in the password file.
    #[error("unknown user")]
    UnknownUser,
    /// The password is not the user's.
    #[error("wrong password")]
    WrongPassword,
    /// A user name without a password.
    #[error("no password")]
    MissingPassword,
    /// A password that is not a token, without a user name.
    #[error("a password without a user name")]
    MissingUsername,
    /// A user name and password, but no password file to check them against.
    #[error("no password file to check the password against")]
    NoPasswordFile,
    /// A bearer token, but JWT authentication is off.
    #[error("a bearer token, but JWT authentication is off")]
    TokenNotAccepted,
    /// The token was refused.
    #[error("token refused: {0}")]
    InvalidToken(TokenError),
    /// The user name given beside the token is not the token's subject.
    #[error("the user name is not the token's subject")]
    UsernameMismatch,
}

/// Why a client that may have proven nothing wrong is still refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NotAuthorized {
    /// No credentials, and anonymous access is off.
    #[error("anonymous access is off")]
    AnonymousNotAllowed,
}

/// The text of a STOMP ERROR frame's `message` header for a refused connection.
pub const STOMP_ACCESS_REFUSED: &str = "access refused";

impl AuthFailure {
    /// The MQTT 3.1.1 CONNACK return code: 0x04 bad user name or password, 0x05 not
    /// authorized.
    pub fn mqtt_v3_return_code(&self) -> u8 {
        match self {
            Self::BadCredentials(_) => 0x04,
            Self::NotAuthorized(_) => 0x05,
        }
    }

    /// The MQTT 5 CONNACK reason code: 0x86 bad user name or password, 0x87 not authorized.
    pub fn mqtt_v5_reason_code(&self) -> u8 {
        match self {
            Self::BadCredentials(_) => 0x86,
            Self::NotAuthorized(_) => 0x87,
        }
    }

    /// The STOMP ERROR `message` header: [`STOMP_ACCESS_REFUSED`] in every case.
    pub fn stomp_message(&self) -> &'static str {
        STOMP_ACCESS_REFUSED
    }

    /// The HTTP status for refusing a WebSocket upgrade: 401 for bad credentials (a bad
    /// bearer token), 403 otherwise.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::BadCredentials(_) => 401,
            Self::NotAuthorized(_) => 403,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_per_protocol() {
        let bad = AuthFailure::BadCredentials(BadCredentials::WrongPassword);
        let denied = AuthFailure::NotAuthorized(NotAuthorized::AnonymousNotAllowed);
        assert_eq!(
            (bad.mqtt_v3_return_code(), bad.mqtt_v5_reason_code(), bad.http_status()),
            (4, 0x86, 401)
        );
        assert_eq!(
            (denied.mqtt_v3_return_code(), denied.mqtt_v5_reason_code(), denied.http_status()),
            (5, 0x87, 403)
        );
        assert_eq!(bad.stomp_message(), "access refused");
        assert_eq!(bad.to_string(), "bad credentials: wrong password");
    }

    #[test]
    fn credentials_debug_hides_secrets() {
        let c = Credentials {
            client_id: "c",
            username: Some("alice"),
            password: Some(b"hunter2"),
            bearer: Some("eyJsecret"),
            tls: None,
        };
        let text = format!("{c:?}");
        assert!(
            text.contains("alice") && !text.contains("hunter2") && !text.contains("eyJsecret"),
            "{text}"
        );
    }

    #[test]
    fn expiry_countdown() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut id = Identity::user("a", "c", AuthMethod::Token);
        assert_eq!(id.expires_in(now), None);
        id.expires_at = Some(now + Duration::from_secs(5));
        assert_eq!(id.expires_in(now), Some(Duration::from_secs(5)));
        assert_eq!(id.expires_in(now + Duration::from_secs(9)), Some(Duration::ZERO));
    }
}
