//! API keys of the admin listener: a password file of `NAME:HASH` lines (argon2id, made
//! with `ferry passwd`), each key a `viewer` or an `admin`.
//!
//! A key is presented as HTTP Basic `NAME:SECRET` or `Authorization: Bearer NAME:SECRET`.
//! Checking an argon2id hash takes tens of milliseconds, and the dashboard polls every
//! few seconds, so a verified header is remembered by a keyed 64-bit fingerprint (never
//! the secret itself) until the file is reloaded; the set is bounded.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::path::Path;

use base64::Engine;
use ferry_auth::PasswordFile;
use parking_lot::Mutex;

use crate::error::AdminError;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read only.
    Viewer,
    /// Read, kick, delete, publish.
    Admin,
}

impl Role {
    /// The role's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }
}

/// Remembered fingerprints at most (cleared when full).
const MAX_REMEMBERED: usize = 256;

/// The keys, or none (a loopback listener without a key file: everyone is an admin).
pub struct ApiKeys {
    file: Option<PasswordFile>,
    admins: Vec<String>,
    remembered: Mutex<HashMap<u64, Role>>,
    hasher: RandomState,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("keys", &self.file.as_ref().map_or(0, PasswordFile::len))
            .field("admins", &self.admins)
            .finish()
    }
}

/// Why a request's credentials were not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFailure {
    /// None sent, or not in the expected form.
    Missing,
    /// Unknown key or wrong secret.
    Wrong,
}

impl ApiKeys {
    /// No keys: every request is an admin's (only allowed on a loopback listener).
    pub fn open() -> Self {
        Self {
            file: None,
            admins: Vec::new(),
            remembered: Mutex::new(HashMap::new()),
            hasher: RandomState::new(),
        }
    }

    /// The keys of `path`; `admins` names the keys with the admin role.
    pub fn load(path: &Path, admins: &[String]) -> Result<Self, AdminError> {
        let file = PasswordFile::load(path).map_err(|e| AdminError::Keys(format!("{}: {e}", path.display())))?;
        if file.is_empty() {
            return Err(AdminError::Keys(format!("{}: no key in the file", path.display())));
        }
        Ok(Self {
            file: Some(file),
            admins: admins.to_vec(),
            ..Self::open()
        })
    }

    /// Whether keys are required.
    pub fn required(&self) -> bool {
        self.file.is_some()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.file.as_ref().map_or(0, PasswordFile::len)
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The role of the key an `Authorization` header presents. Slow (argon2id) the first
    /// time a header is seen: call it off the async threads.
    pub fn check(&self, authorization: Option<&str>) -> Result<Role, KeyFailure> {
        let Some(file) = &self.file else {
            return Ok(Role::Admin);
        };
        let header = authorization.ok_or(KeyFailure::Missing)?;
        let fingerprint = self.hasher.hash_one(header);
        if let Some(role) = self.remembered.lock().get(&fingerprint) {
            return Ok(*role);
        }
        let (name, secret) = split_credentials(header).ok_or(KeyFailure::Missing)?;
        if !file.verify(&name, secret.as_bytes()) {
            return Err(KeyFailure::Wrong);
        }
        let role = if self.admins.contains(&name) { Role::Admin } else { Role::Viewer };
        let mut remembered = self.remembered.lock();
        if remembered.len() >= MAX_REMEMBERED {
            remembered.clear();
        }
        remembered.insert(fingerprint, role);
        Ok(role)
    }

    /// Whether a header was verified before (so [`ApiKeys::check`] is fast for it).
    pub fn is_remembered(&self, authorization: Option<&str>) -> bool {
        self.file.is_none() || authorization.is_some_and(|h| self.remembered.lock().contains_key(&self.hasher.hash_one(h)))
    }
}

/// `NAME` and `SECRET` from `Basic base64(NAME:SECRET)` or `Bearer NAME:SECRET`.
pub fn split_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, value) = header.trim().split_once(' ')?;
    let pair = if scheme.eq_ignore_ascii_case("basic") {
        let bytes = base64::engine::general_purpose::STANDARD.decode(value.trim()).ok()?;
        String::from_utf8(bytes).ok()?
    } else if scheme.eq_ignore_ascii_case("bearer") {
        value.trim().to_owned()
    } else {
        return None;
    };
    let (name, secret) = pair.split_once(':')?;
    Some((name.to_owned(), secret.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_and_bearer_forms_split() {
        let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("ops:s3cret:x"));
        assert_eq!(split_credentials(&basic), Some(("ops".into(), "s3cret:x".into())));
        assert_eq!(split_credentials("Bearer ops:abc"), Some(("ops".into(), "abc".into())));
        assert_eq!(split_credentials("Bearer nocolon"), None);
        assert_eq!(split_credentials("Digest x"), None);
    }

    #[test]
    fn roles_come_from_the_admin_list_and_wrong_secrets_fail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let params = ferry_auth::password::HashParams::new(8, 1, 1).unwrap();
        ferry_auth::password::add_or_update_user(&path, "ops", b"one", &params).unwrap();
        ferry_auth::password::add_or_update_user(&path, "eyes", b"two", &params).unwrap();
        let keys = ApiKeys::load(&path, &["ops".to_owned()]).unwrap();
        assert_eq!(keys.check(Some("Bearer ops:one")), Ok(Role::Admin));
        assert_eq!(keys.check(Some("Bearer eyes:two")), Ok(Role::Viewer));
        assert!(keys.is_remembered(Some("Bearer eyes:two")));
        assert_eq!(keys.check(Some("Bearer eyes:one")), Err(KeyFailure::Wrong));
        assert_eq!(keys.check(None), Err(KeyFailure::Missing));
        assert_eq!(ApiKeys::open().check(None), Ok(Role::Admin));
    }
}
