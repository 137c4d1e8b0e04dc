//! [`Authenticator`]: the password file, JWT, client certificates and anonymous access
//! behind one call, plus the ACL, all reloadable at once.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::RwLock;
use thiserror::Error;

use crate::acl::{Acl, AclError, Action, Decision, Explanation};
use crate::config::{AnonymousPolicy, AuthSettings, CertUsername};
use crate::identity::{AuthFailure, AuthMethod, BadCredentials, Credentials, Identity, NotAuthorized};
use crate::jwt::{looks_like_token, JwtConfigError, JwtVerifier};
use crate::password::{CheckFailure, PasswordFile, PasswordFileError};
use ferry_core::ClientCert;

/// Why the auth files cannot be (re)loaded.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The password file could not be read (the error names it).
    #[error(transparent)]
    Passwords(#[from] PasswordFileError),
    /// A line of the password file is wrong.
    #[error("{}: {error}", path.display())]
    PasswordLine {
        /// The file.
        path: PathBuf,
        /// What is wrong with it (not a `source`: the message already says it).
        error: PasswordFileError,
    },
    /// The ACL file (named: a line error alone does not say which file).
    #[error("{}: {error}", path.display())]
    Acl {
        /// The file.
        path: PathBuf,
        /// What is wrong with it (not a `source`: the message already says it).
        error: AclError,
    },
    /// The JWT key or settings.
    #[error(transparent)]
    Jwt(#[from] JwtConfigError),
}

/// The pieces of an [`Authenticator`] built in memory (tests, embedding).
#[derive(Debug, Clone, Default)]
pub struct AuthParts {
    /// Anonymous access.
    pub anonymous: AnonymousPolicy,
    /// The password file, if any.
    pub passwords: Option<PasswordFile>,
    /// The ACL, if any (none: everything allowed, token grants aside).
    pub acl: Option<Acl>,
    /// The JWT verifier, if JWT is on.
    pub jwt: Option<JwtVerifier>,
    /// Whether the client certificate names the user.
    pub cert_username: CertUsername,
    /// Whether a token's expiry closes the connection ([`Identity::expires_at`]).
    pub close_on_token_expiry: bool,
}

/// What is loaded, for the log line after a (re)load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Users in the password file (0 without one).
    pub users: usize,
    /// Rules in the ACL file; `None` without one.
    pub acl_rules: Option<usize>,
    /// Whether JWT is on.
    pub jwt: bool,
    /// Whether anonymous clients may connect.
    pub anonymous: bool,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} users, ", self.users)?;
        match self.acl_rules {
            Some(n) => write!(f, "{n} ACL rules, ")?,
            None => write!(f, "no ACL, ")?,
        }
        write!(
            f,
            "JWT {}, anonymous {}",
            if self.jwt { "on" } else { "off" },
            if self.anonymous { "allowed" } else { "refused" }
        )
    }
}

/// One consistent set of everything loaded.
#[derive(Debug)]
struct State {
    anonymous: bool,
    passwords: Option<PasswordFile>,
    acl: Acl,
    has_acl: bool,
    jwt: Option<JwtVerifier>,
    cert_username: CertUsername,
    close_on_token_expiry: bool,
}

impl State {
    fn new(parts: AuthParts) -> Self {
        let anonymous = match parts.anonymous {
            AnonymousPolicy::Allow => true,
            AnonymousPolicy::Deny => false,
            AnonymousPolicy::Auto => {
                parts.passwords.as_ref().is_none_or(PasswordFile::is_empty)
                    && parts.jwt.is_none()
                    && parts.cert_username == CertUsername::Off
            }
        };
        Self {
            anonymous,
            passwords: parts.passwords,
            has_acl: parts.acl.is_some(),
            acl: parts.acl.unwrap_or_else(Acl::allow_all),
            jwt: parts.jwt,
            cert_username: parts.cert_username,
            close_on_token_expiry: parts.close_on_token_expiry,
        }
    }

    fn load(settings: &AuthSettings) -> Result<Self, LoadError> {
        let passwords = settings
            .password_file
            .as_deref()
            .map(|path| {
                PasswordFile::load(path).map_err(|e| match e {
                    PasswordFileError::Io { .. } => LoadError::Passwords(e),
                    error => LoadError::PasswordLine {
                        path: path.to_owned(),
                        error,
                    },
                })
            })
            .transpose()?;
        let acl = settings
            .acl_file
            .as_deref()
            .map(|path| {
                Acl::load(path).map_err(|error| LoadError::Acl {
                    path: path.to_owned(),
                    error,
                })
            })
            .transpose()?;
        let jwt = JwtVerifier::from_settings(&settings.jwt)?;
        Ok(Self::new(AuthParts {
            anonymous: settings.allow_anonymous,
            passwords,
            acl,
            jwt,
            cert_username: settings.cert_username,
            close_on_token_expiry: settings.jwt.close_on_expiry,
        }))
    }

    fn summary(&self) -> Summary {
        Summary {
            users: self.passwords.as_ref().map_or(0, PasswordFile::len),
            acl_rules: self.has_acl.then(|| self.acl.rule_count()),
            jwt: self.jwt.is_some(),
            anonymous: self.anonymous,
        }
    }
}

/// Authenticates clients and authorizes what they do. Shared by every connection
/// (`&self` everywhere; wrap it in an `Arc`); [`Authenticator::reload`] swaps in freshly
/// read files without disturbing calls in progress.
///
/// [`Authenticator::authenticate`] may check an argon2id hash: tens of milliseconds of
/// CPU, so call it from a blocking thread (`tokio::task::spawn_blocking`).
#[derive(Debug)]
pub struct Authenticator {
    settings: Option<AuthSettings>,
    state: RwLock<Arc<State>>,
    /// Whether the loaded state has an ACL file, kept beside it so that the per-message
    /// check of a broker without one takes no lock.
    has_acl: AtomicBool,
}

impl Authenticator {
    /// Loads what `settings` name (password file, ACL file, JWT key).
    pub fn from_settings(settings: &AuthSettings) -> Result<Self, LoadError> {
        let state = State::load(settings)?;
        Ok(Self {
            has_acl: AtomicBool::new(state.has_acl),
            state: RwLock::new(Arc::new(state)),
            settings: Some(settings.clone()),
        })
    }

    /// Builds one in memory; [`Authenticator::reload`] then has nothing to re-read.
    pub fn from_parts(parts: AuthParts) -> Self {
        let state = State::new(parts);
        Self {
            settings: None,
            has_acl: AtomicBool::new(state.has_acl),
            state: RwLock::new(Arc::new(state)),
        }
    }

    /// Re-reads the files (on SIGHUP, or when they change). If any is invalid, the old
    /// state stays in force and the error is returned. Connections keep their
    /// [`Identity`]; the new rules apply to their next operation.
    pub fn reload(&self) -> Result<Summary, LoadError> {
        let Some(settings) = &self.settings else {
            return Ok(self.summary());
        };
        let state = State::load(settings)?;
        let summary = state.summary();
        let mut current = self.state.write();
        self.has_acl.store(state.has_acl, Ordering::Release);
        *current = Arc::new(state);
        Ok(summary)
    }

    /// The files to watch for changes: the password file, the ACL file and the JWT key file
    /// that are configured.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let Some(s) = &self.settings else {
            return Vec::new();
        };
        [&s.password_file, &s.acl_file, &s.jwt.secret_file, &s.jwt.public_key_file]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// What is loaded.
    pub fn summary(&self) -> Summary {
        self.state().summary()
    }

    fn state(&self) -> Arc<State> {
        Arc::clone(&self.state.read())
    }

    /// Authenticates a connecting client at wall-clock time `now`. In order:
    ///
    /// 1. with `cert_username` on, a client certificate with a CN (or SAN) is the user; other
    ///    credentials are ignored;
    /// 2. a bearer token (WebSocket upgrade) must verify;
    /// 3. with JWT on, a password that looks like a JWT must verify as one;
    /// 4. a user name with a password is checked against the password file (a user name
    ///    without a password, or a password without a user name, is refused when there is
    ///    a password file);
    /// 5. otherwise the client is anonymous, if that is allowed: with neither a password
    ///    file nor JWT (as in Mosquitto without a password file) a user name and password
    ///    that nothing can check are ignored.
    ///
    /// With a token, a user name given beside it (MQTT 3.1.1 needs one to send a password)
    /// must be the token's subject, or empty. Wrong credentials are never turned into
    /// anonymous access.
    pub fn authenticate(&self, credentials: &Credentials<'_>, now: SystemTime) -> Result<Identity, AuthFailure> {
        let state = self.state();
        let bad = |reason| Err(AuthFailure::BadCredentials(reason));
        let client_id = credentials.client_id;
        let username = credentials.username.filter(|u| !u.is_empty());

        if let Some(name) = credentials.tls.and_then(|tls| cert_name(tls, state.cert_username)) {
            return Ok(Identity::user(name, client_id, AuthMethod::Certificate));
        }
        if let Some(token) = credentials.bearer {
            return match &state.jwt {
                Some(jwt) => token_identity(&state, jwt, token, username, client_id, now),
                None => bad(BadCredentials::TokenNotAccepted),
            };
        }
        let password = credentials.password;
        if let (Some(jwt), Some(token)) = (&state.jwt, password.and_then(|p| std::str::from_utf8(p).ok())) {
            if looks_like_token(token) {
                return token_identity(&state, jwt, token, username, client_id, now);
            }
        }
        let has_passwords = state.passwords.is_some();
        match (username, password, &state.passwords) {
            (Some(user), Some(password), Some(passwords)) => match passwords.check(user, password) {
                Ok(()) => Ok(Identity::user(user, client_id, AuthMethod::Password)),
                Err(CheckFailure::UnknownUser) => bad(BadCredentials::UnknownUser),
                Err(CheckFailure::WrongPassword) => bad(BadCredentials::WrongPassword),
            },
            (Some(_), None, _) if has_passwords => bad(BadCredentials::MissingPassword),
            (None, Some(_), _) if has_passwords || state.jwt.is_some() => bad(BadCredentials::MissingUsername),
            // With JWT on, a password must be a token or be checkable.
            (Some(_), Some(_), None) if state.jwt.is_some() => bad(BadCredentials::NoPasswordFile),
            // Nothing here can check what was sent (as Mosquitto without a password file):
            // an anonymous client; the unproven name is not kept.
            _ if state.anonymous => Ok(Identity::anonymous(client_id)),
            (None, None, _) => Err(AuthFailure::NotAuthorized(NotAuthorized::AnonymousNotAllowed)),
            (Some(_), Some(_), None) => bad(BadCredentials::NoPasswordFile),
            (Some(_), None, _) => bad(BadCredentials::MissingPassword),
            (None, Some(_), _) => bad(BadCredentials::MissingUsername),
        }
    }

    /// Whether `identity` may `action` the MQTT topic or filter `topic_or_filter` (see
    /// [`Acl::check`]).
    pub fn authorize(&self, identity: &Identity, action: Action, topic_or_filter: &str) -> Decision {
        // No ACL file and no token grants: everything is allowed (the callers pass
        // topics and filters they have validated), without a lock on the message path.
        if identity.grants.is_none() && !self.has_acl.load(Ordering::Acquire) {
            return Decision::Allow;
        }
        self.state().acl.check(identity, action, topic_or_filter)
    }

    /// [`Authenticator::authorize`] with the reason, for logs.
    pub fn explain(&self, identity: &Identity, action: Action, topic_or_filter: &str) -> Explanation {
        self.state().acl.explain(identity, action, topic_or_filter)
    }

    /// Whether `identity` may send to (`Publish`) or consume from (`Subscribe`) the STOMP
    /// queue `name` (see [`Acl::check_queue`]).
    pub fn authorize_queue(&self, identity: &Identity, action: Action, name: &str) -> Decision {
        self.state().acl.check_queue(identity, action, name)
    }

    /// Whether each delivery must be checked too (see [`Acl::needs_delivery_check`]).
    pub fn needs_delivery_check(&self) -> bool {
        self.has_acl.load(Ordering::Acquire) && self.state().acl.needs_delivery_check()
    }
}

/// The user name a client certificate gives, if configured and present.
fn cert_name(tls: &ClientCert, mode: CertUsername) -> Option<&str> {
    let name = match mode {
        CertUsername::Off => None,
        CertUsername::CommonName => tls.common_name.as_deref(),
        CertUsername::SubjectAltName => tls.subject_alt_names.first().map(String::as_str),
    };
    name.filter(|n| !n.is_empty())
}

fn token_identity(
    state: &State,
    jwt: &JwtVerifier,
    token: &str,
    username: Option<&str>,
    client_id: &str,
    now: SystemTime,
) -> Result<Identity, AuthFailure> {
    let claims = jwt
        .verify(token, now)
        .map_err(|e| AuthFailure::BadCredentials(BadCredentials::InvalidToken(e)))?;
    if username.is_some_and(|u| u != claims.subject) {
        return Err(AuthFailure::BadCredentials(BadCredentials::UsernameMismatch));
    }
    let mut identity = Identity::user(&claims.subject, client_id, AuthMethod::Token);
    identity.roles = claims.roles;
    identity.grants = claims.grants;
    identity.expires_at = if state.close_on_token_expiry { claims.expires_at } else { None };
    Ok(identity)
}

#[cfg(test)]
mod tests;
