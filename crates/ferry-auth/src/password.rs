//! The password file, in the spirit of Mosquitto's: one `user:hash` per line, `#` comments,
//! hashes in the PHC string format of argon2id
//! (`$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH`).
//!
//! Parsing, checking and editing work on strings; the file is read only by
//! [`PasswordFile::load`] and written only by [`PasswordFile::save`] (atomically, mode
//! 0600). [`add_or_update_user`] and [`remove_user`] are what `ferry passwd FILE USER` and
//! `ferry passwd -D FILE USER` do once the binary has the password.
//!
//! Checking a password runs argon2id with the parameters stored in the hash: tens of
//! milliseconds of CPU with the default parameters, so call it from a blocking thread.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use argon2::password_hash::phc::Output;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use thiserror::Error;

/// The PHC algorithm identifier every hash in the file must carry.
pub const ALGORITHM: &str = "argon2id";

/// Why a password file, a user name or a password hash is refused.
#[derive(Debug, Error)]
pub enum PasswordFileError {
    /// The file could not be read or written.
    #[error("password file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A line is not `user:hash`.
    #[error("password file line {line}: expected `user:hash`")]
    MissingColon {
        /// One-based line number.
        line: usize,
    },
    /// A line names a user that is not a valid user name.
    #[error("password file line {line}: {source}")]
    BadUsername {
        /// One-based line number.
        line: usize,
        /// What is wrong with the name.
        source: UsernameError,
    },
    /// A line holds something other than an argon2id PHC string (the hash itself is not
    /// repeated in the message).
    #[error("password file line {line}: the hash is not an argon2id PHC string ({reason})")]
    BadHash {
        /// One-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The same user appears twice.
    #[error("password file line {line}: user {user:?} already appears on line {first}")]
    DuplicateUser {
        /// One-based line number of the repetition.
        line: usize,
        /// The first line naming the user.
        first: usize,
        /// The user.
        user: String,
    },
    /// A user name given to [`PasswordFile::set`] is not valid.
    #[error(transparent)]
    Username(#[from] UsernameError),
    /// Hashing a new password failed (bad parameters, or no system randomness for the salt).
    #[error("cannot hash the password: {0}")]
    Hashing(String),
}

/// Why a string cannot be a user name in the password file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UsernameError {
    /// The name is empty.
    #[error("the user name is empty")]
    Empty,
    /// The name holds `:`, which separates it from the hash.
    #[error("the user name contains ':'")]
    Colon,
    /// The name holds a control character (a newline would split the line).
    #[error("the user name contains a control character")]
    ControlCharacter,
    /// The name starts with `#`, which would make the line a comment.
    #[error("the user name starts with '#'")]
    LeadingHash,
    /// The name starts or ends with white space, which a reader would not see.
    #[error("the user name starts or ends with white space")]
    SurroundingWhitespace,
}

/// Checks that `name` can be written to (and read back from) a password file: not empty,
/// no `:`, no control character (newline, NUL, …), no leading `#`, no white space at
/// either end.
pub fn validate_username(name: &str) -> Result<(), UsernameError> {
    if name.is_empty() {
        return Err(UsernameError::Empty);
    }
    if name.contains(':') {
        return Err(UsernameError::Colon);
    }
    if name.chars().any(char::is_control) {
        return Err(UsernameError::ControlCharacter);
    }
    if name.starts_with('#') {
        return Err(UsernameError::LeadingHash);
    }
    if name.trim() != name {
        return Err(UsernameError::SurroundingWhitespace);
    }
    Ok(())
}

/// The argon2id cost parameters used to hash new passwords. [`HashParams::default`] is the
/// `argon2` crate's default (19 MiB, 2 passes, 1 lane: OWASP's recommendation); tests use
/// lighter ones through [`HashParams::new`]. Checking a password always uses the
/// parameters stored in its hash, whatever these are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashParams(argon2::Params);

impl HashParams {
    /// Parameters with `memory_kib` KiB of memory, `passes` passes and `lanes` lanes.
    pub fn new(memory_kib: u32, passes: u32, lanes: u32) -> Result<Self, PasswordFileError> {
        argon2::Params::new(memory_kib, passes, lanes, None)
            .map(Self)
            .map_err(|e| PasswordFileError::Hashing(e.to_string()))
    }
}

impl Default for HashParams {
    fn default() -> Self {
        Self(argon2::Params::DEFAULT)
    }
}

/// Hashes `password` with argon2id, `params` and a fresh random salt from the operating
/// system; returns the PHC string.
pub fn hash_password(password: &[u8], params: &HashParams) -> Result<String, PasswordFileError> {
    let hasher = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params.0.clone());
    hasher
        .hash_password(password)
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordFileError::Hashing(e.to_string()))
}

/// Parses and checks one stored hash: a PHC string of argon2id with parameters, salt and
/// output that argon2 accepts.
fn parse_hash(text: &str) -> Result<PasswordHash, String> {
    let hash = PasswordHash::new(text).map_err(|e| e.to_string())?;
    if hash.algorithm.as_str() != ALGORITHM {
        return Err(format!("algorithm {:?}, expected {ALGORITHM:?}", hash.algorithm.as_str()));
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err("no salt or no hash".to_owned());
    }
    if let Some(version) = hash.version {
        argon2::Version::try_from(version).map_err(|e| e.to_string())?;
    }
    argon2::Params::try_from(&hash).map_err(|e| e.to_string())?;
    Ok(hash)
}

/// Whether `password` is the one `hash` was made from (argon2's comparison of the outputs
/// is constant-time).
fn verify_hash(hash: &PasswordHash, password: &[u8]) -> bool {
    Argon2::default().verify_password(password, hash).is_ok()
}

/// One line of the file, kept so that [`PasswordFile::to_string`] gives comments back.
#[derive(Debug, Clone)]
enum Line {
    /// A comment or a blank line, verbatim.
    Other(String),
    /// A user: the name, the hash as written, and the hash parsed.
    User {
        name: String,
        text: String,
        hash: Box<PasswordHash>,
    },
}

/// Why [`PasswordFile::check`] refused a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckFailure {
    /// No such user in the file.
    UnknownUser,
    /// The user exists; the password is not theirs.
    WrongPassword,
}

/// A parsed password file.
#[derive(Debug, Clone, Default)]
pub struct PasswordFile {
    lines: Vec<Line>,
    /// User name → index in `lines`.
    index: HashMap<String, usize>,
    /// A hash no password matches, with the cost of a real user's, checked for unknown
    /// users so that timing does not tell who exists.
    dummy: Option<Box<PasswordHash>>,
}

impl PasswordFile {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the text of a password file. Blank lines and lines whose first non-blank
    /// character is `#` are comments; every other line is `user:hash` (a trailing `\r` and
    /// white space after the hash are ignored).
    pub fn parse(text: &str) -> Result<Self, PasswordFileError> {
        let mut file = Self::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                file.lines.push(Line::Other(raw.to_owned()));
                continue;
            }
            let (name, hash_text) = raw.split_once(':').ok_or(PasswordFileError::MissingColon { line })?;
            validate_username(name).map_err(|source| PasswordFileError::BadUsername { line, source })?;
            let hash_text = hash_text.trim();
            let hash = parse_hash(hash_text).map_err(|reason| PasswordFileError::BadHash { line, reason })?;
            if let Some(&first) = file.index.get(name) {
                return Err(PasswordFileError::DuplicateUser {
                    line,
                    first: first + 1,
                    user: name.to_owned(),
                });
            }
            file.index.insert(name.to_owned(), file.lines.len());
            file.lines.push(Line::User {
                name: name.to_owned(),
                text: hash_text.to_owned(),
                hash: Box::new(hash),
            });
        }
        file.refresh_dummy();
        Ok(file)
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Self, PasswordFileError> {
        let text = crate::fs::read_text(path).map_err(|source| PasswordFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Writes the file to `path` atomically (temporary file + rename), mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), PasswordFileError> {
        crate::fs::write_atomically(path, &self.to_string()).map_err(|source| PasswordFileError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the file has no user.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether `user` is in the file.
    pub fn contains(&self, user: &str) -> bool {
        self.index.contains_key(user)
    }

    /// The users, in file order.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().filter_map(|line| match line {
            Line::User { name, .. } => Some(name.as_str()),
            Line::Other(_) => None,
        })
    }

    /// Whether `password` is `user`'s. Takes about as long for an unknown user as for a
    /// known one (a dummy hash with a real user's parameters is checked), and the
    /// comparison is constant-time. CPU-heavy: see the module documentation.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        self.check(user, password).is_ok()
    }

    /// Like [`PasswordFile::verify`], saying why a password is refused (for the log, not
    /// for the client).
    pub fn check(&self, user: &str, password: &[u8]) -> Result<(), CheckFailure> {
        match self.index.get(user).and_then(|&i| self.lines.get(i)) {
            Some(Line::User { hash, .. }) => {
                if verify_hash(hash, password) {
                    Ok(())
                } else {
                    Err(CheckFailure::WrongPassword)
                }
            }
            _ => {
                if let Some(dummy) = &self.dummy {
                    let _ = verify_hash(dummy, password);
                }
                Err(CheckFailure::UnknownUser)
            }
        }
    }

    /// Adds `user` with `password`, or replaces their password, hashing it with the
    /// default (secure) parameters.
    pub fn set(&mut self, user: &str, password: &[u8]) -> Result<(), PasswordFileError> {
        self.set_with(user, password, &HashParams::default())
    }

    /// Adds `user` with `password`, or replaces their password, hashing it with `params`.
    pub fn set_with(&mut self, user: &str, password: &[u8], params: &HashParams) -> Result<(), PasswordFileError> {
        validate_username(user)?;
        let text = hash_password(password, params)?;
        let hash = parse_hash(&text).map_err(PasswordFileError::Hashing)?;
        let entry = Line::User {
            name: user.to_owned(),
            text,
            hash: Box::new(hash),
        };
        match self.index.get(user).copied().and_then(|i| self.lines.get_mut(i)) {
            Some(slot) => *slot = entry,
            None => {
                self.index.insert(user.to_owned(), self.lines.len());
                self.lines.push(entry);
            }
        }
        self.refresh_dummy();
        Ok(())
    }

    /// Removes `user`; `false` if they were not in the file.
    pub fn remove(&mut self, user: &str) -> bool {
        let Some(i) = self.index.remove(user) else {
            return false;
        };
        self.lines.remove(i);
        for index in self.index.values_mut() {
            if *index > i {
                *index -= 1;
            }
        }
        self.refresh_dummy();
        true
    }

    /// Recomputes the dummy hash from the first user's parameters.
    fn refresh_dummy(&mut self) {
        self.dummy = self.lines.iter().find_map(|line| match line {
            Line::User { hash, .. } => {
                let mut dummy = hash.clone();
                let len = hash.hash.as_ref().map_or(32, Output::len);
                dummy.hash = Output::new(&vec![0u8; len]).ok();
                Some(dummy)
            }
            Line::Other(_) => None,
        });
    }
}

impl fmt::Display for PasswordFile {
    /// The file's text: comments as they were, one `user:hash` line per user.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            match line {
                Line::Other(text) => writeln!(f, "{text}")?,
                Line::User { name, text, .. } => writeln!(f, "{name}:{text}")?,
            }
        }
        Ok(())
    }
}

/// `ferry passwd FILE USER`: adds `user` to the password file at `path`, or changes their
/// password, creating the file if it does not exist; written atomically, mode 0600.
pub fn add_or_update_user(path: &Path, user: &str, password: &[u8], params: &HashParams) -> Result<(), PasswordFileError> {
    let io = |source| PasswordFileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = match crate::fs::read_text_if_exists(path).map_err(io)? {
        Some(text) => PasswordFile::parse(&text)?,
        None => PasswordFile::new(),
    };
    file.set_with(user, password, params)?;
    file.save(path)
}

/// `ferry passwd -D FILE USER`: removes `user` from the password file at `path`; `false`
/// (and the file untouched) if they were not in it.
pub fn remove_user(path: &Path, user: &str) -> Result<bool, PasswordFileError> {
    let mut file = PasswordFile::load(path)?;
    if !file.remove(user) {
        return Ok(false);
    }
    file.save(path)?;
    Ok(true)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Light parameters: argon2 with the defaults takes seconds in a debug build.
    pub(crate) fn fast() -> HashParams {
        HashParams::new(64, 1, 1).unwrap()
    }

    /// A password file with `users` (name, password), hashed with [`fast`] parameters.
    pub(crate) fn file_with(users: &[(&str, &str)]) -> PasswordFile {
        let mut file = PasswordFile::new();
        for (user, password) in users {
            file.set_with(user, password.as_bytes(), &fast()).unwrap();
        }
        file
    }

    #[test]
    fn set_verify_and_round_trip() {
        let mut file = file_with(&[("alice", "wonderland"), ("bob", "builder")]);
        assert!(file.verify("alice", b"wonderland"));
        assert!(!file.verify("alice", b"Wonderland"));
        assert!(!file.verify("alice", b""));
        assert_eq!(file.check("carol", b"x"), Err(CheckFailure::UnknownUser));
        assert_eq!(file.check("bob", b"x"), Err(CheckFailure::WrongPassword));

        let text = file.to_string();
        assert!(text.lines().all(|l| l.contains(":$argon2id$v=19$m=64,t=1,p=1$")), "{text}");
        let parsed = PasswordFile::parse(&text).unwrap();
        assert!(parsed.verify("bob", b"builder"));
        assert_eq!(parsed.users().collect::<Vec<_>>(), ["alice", "bob"]);

        // Changing a password keeps the user's place and drops the old password.
        file.set_with("alice", b"looking-glass", &fast()).unwrap();
        assert!(file.verify("alice", b"looking-glass") && !file.verify("alice", b"wonderland"));
        assert_eq!(file.users().collect::<Vec<_>>(), ["alice", "bob"]);
        assert!(file.remove("alice"));
        assert!(!file.remove("alice"));
        assert!(!file.contains("alice") && file.verify("bob", b"builder"));
        assert_eq!(file.len(), 1);
    }

    #[test]
    fn any_argon2id_phc_string_is_accepted_and_comments_are_kept() {
        // The argon2 reference test vector's parameters (m=65536, t=2, p=4) are accepted
        // without being run; a default-parameter hash made elsewhere would be too.
        let text = "# users\n\nalice:$argon2id$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG\r\n  # indented comment\nbob:$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG  \n";
        let file = PasswordFile::parse(text).unwrap();
        assert_eq!(file.len(), 2);
        assert!(file.contains("alice") && file.contains("bob"));
        let out = file.to_string();
        assert!(out.starts_with("# users\n\nalice:$argon2id$v=19$m=65536,t=2,p=4$"), "{out}");
        assert!(out.contains("\n  # indented comment\n"), "{out}");
        assert!(!out.contains('\r'));
    }

    #[test]
    fn bad_lines_are_refused_with_their_number_and_without_the_hash() {
        let good = "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";
        let cases = [
            ("alice\n".to_owned(), "line 1: expected `user:hash`"),
            (format!("# c\n:{good}\n"), "line 2: the user name is empty"),
            (format!(" alice:{good}\n"), "white space"),
            ("alice:plaintext\n".to_owned(), "line 1: the hash is not an argon2id PHC string"),
            (
                "alice:$argon2i$v=19$m=64,t=1,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG\n".to_owned(),
                "expected \"argon2id\"",
            ),
            ("alice:$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ\n".to_owned(), "no salt or no hash"),
            (
                "alice:$argon2id$v=19$m=1,t=1,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG\n".to_owned(),
                "line 1",
            ),
            (
                format!("alice:{good}\nalice:{good}\n"),
                "line 2: user \"alice\" already appears on line 1",
            ),
        ];
        for (text, expected) in cases {
            let err = PasswordFile::parse(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
            assert!(!err.contains("RdescudvJCsgt3ub"), "the hash leaked: {err}");
        }
    }

    #[test]
    fn usernames_are_validated() {
        assert_eq!(validate_username(""), Err(UsernameError::Empty));
        assert_eq!(validate_username("a:b"), Err(UsernameError::Colon));
        assert_eq!(validate_username("a\nb"), Err(UsernameError::ControlCharacter));
        assert_eq!(validate_username("a\0"), Err(UsernameError::ControlCharacter));
        assert_eq!(validate_username("#a"), Err(UsernameError::LeadingHash));
        assert_eq!(validate_username("a "), Err(UsernameError::SurroundingWhitespace));
        assert_eq!(validate_username("jöhn.doe@example.com a#b"), Ok(()));
        let mut file = PasswordFile::new();
        assert!(matches!(
            file.set_with("a:b", b"x", &fast()),
            Err(PasswordFileError::Username(UsernameError::Colon))
        ));
        assert!(file.is_empty());
    }

    #[test]
    fn unknown_users_cost_a_real_verification() {
        // Heavier parameters make the difference between "hash checked" and "nothing
        // done" large enough to see without flakiness.
        let params = HashParams::new(1024, 1, 1).unwrap();
        let mut file = PasswordFile::new();
        file.set_with("alice", b"secret", &params).unwrap();
        let time = |user: &str| {
            let start = std::time::Instant::now();
            for _ in 0..3 {
                assert!(!file.verify(user, b"guess"));
            }
            start.elapsed()
        };
        let known = time("alice");
        let unknown = time("mallory");
        assert!(unknown * 3 > known, "unknown {unknown:?} vs known {known:?}");
        // No user at all: nothing to hide, nothing checked.
        assert!(!PasswordFile::new().verify("alice", b"secret"));
    }

    #[test]
    fn cli_building_blocks_edit_the_file_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        add_or_update_user(&path, "alice", b"one", &fast()).unwrap();
        add_or_update_user(&path, "bob", b"two", &fast()).unwrap();
        add_or_update_user(&path, "alice", b"three", &fast()).unwrap();
        let file = PasswordFile::load(&path).unwrap();
        assert!(file.verify("alice", b"three") && file.verify("bob", b"two"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(remove_user(&path, "alice").unwrap());
        assert!(!remove_user(&path, "alice").unwrap());
        assert_eq!(PasswordFile::load(&path).unwrap().users().collect::<Vec<_>>(), ["bob"]);
        let err = PasswordFile::load(&dir.path().join("absent")).unwrap_err().to_string();
        assert!(err.contains("absent"), "{err}");
        assert!(remove_user(&dir.path().join("absent"), "bob").is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, failure_persistence: None, ..Default::default() })]

        /// Any text: a parsed file or an error, never a panic.
        #[test]
        fn parsing_never_panics(text in "([a#: \\n\\r$=,]|argon2id|v=19|m=64|t=1|p=1|c29tZXNhbHQ){0,24}") {
            if let Ok(file) = PasswordFile::parse(&text) {
                proptest::prop_assert!(PasswordFile::parse(&file.to_string()).is_ok());
            }
        }
    }

    #[test]
    fn default_params_are_argon2s_defaults() {
        assert_eq!(HashParams::default().0, argon2::Params::DEFAULT);
        assert!(HashParams::new(1, 1, 1).is_err());
    }
}
