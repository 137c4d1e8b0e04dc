//! STOMP protocol versions and the `accept-version` negotiation of STOMP 1.2
//! §"Protocol Negotiation".

use std::fmt;

/// A STOMP protocol version. Ordered: `V1_0 < V1_1 < V1_2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// STOMP 1.0: LF line ends, no header escaping.
    V1_0,
    /// STOMP 1.1: header escapes `\n`, `\c`, `\\`; heart-beats.
    V1_1,
    /// STOMP 1.2: CRLF line ends allowed, the `\r` escape added.
    V1_2,
}

impl Version {
    /// Every version, oldest first.
    pub const ALL: [Version; 3] = [Version::V1_0, Version::V1_1, Version::V1_2];

    /// The version as written in `accept-version` and `version` headers (`1.2`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }

    /// The version named by one token of an `accept-version` list (exact match).
    pub fn from_token(token: &str) -> Option<Version> {
        Version::ALL.into_iter().find(|v| v.as_str() == token)
    }

    /// The version a server picks from a CONNECT frame's `accept-version` header: the
    /// highest listed one this codec supports. A missing header means the client only
    /// speaks 1.0. `None` means no version in common: the server answers with an ERROR
    /// frame (carrying a `version` header listing the supported ones) and closes.
    ///
    /// Tokens are separated by commas; blanks around a token are tolerated, unknown
    /// tokens (`2.0`) are skipped.
    pub fn negotiate(accept_version: Option<&str>) -> Option<Version> {
        match accept_version {
            None => Some(Version::V1_0),
            Some(list) => list.split(',').filter_map(|t| Version::from_token(t.trim())).max(),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        // STOMP 1.2 §"Protocol Negotiation": `accept-version:1.0,1.1,2.0` → 1.1.
        assert_eq!(Version::negotiate(Some("1.0,1.1,2.0")), Some(Version::V1_1));
        assert_eq!(Version::negotiate(Some("1.2,1.0")), Some(Version::V1_2));
        assert_eq!(Version::negotiate(Some("1.0, 1.1")), Some(Version::V1_1));
        assert_eq!(Version::negotiate(None), Some(Version::V1_0), "missing header means 1.0");
        assert_eq!(Version::negotiate(Some("2.0,2.1")), None);
        assert_eq!(Version::negotiate(Some("")), None);
    }

    #[test]
    fn versions_print_as_their_tokens() {
        for v in Version::ALL {
            assert_eq!(Version::from_token(&v.to_string()), Some(v));
        }
        assert!(Version::V1_0 < Version::V1_2);
    }
}
