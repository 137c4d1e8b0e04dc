//! The codec's errors. Every decode error is fatal to the connection (STOMP has no way
//! to resynchronise a stream): the broker answers with an ERROR frame whose `message`
//! header is [`StompError::summary`] and whose body is the error's `Display` text, then
//! closes. Display texts are one line, with peer-supplied text quoted and escaped, so
//! they can go into a header or a log line as they are.

use thiserror::Error;

use super::version::Version;

/// Why the decoder refused the bytes it was given.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StompError {
    /// The command line is not one of the 15 STOMP commands (case-sensitive).
    #[error("unknown command {command:?}")]
    UnknownCommand {
        /// The offending line, lossily decoded and cut to a few dozen characters.
        command: String,
    },
    /// The command line is longer than [`Limits::max_command_line`](super::Limits).
    #[error("command line longer than {limit} octets")]
    CommandLineTooLong {
        /// The limit in force.
        limit: usize,
    },
    /// A header line is longer than [`Limits::max_header_line`](super::Limits).
    #[error("header line {line} is longer than {limit} octets")]
    HeaderLineTooLong {
        /// 1-based number of the header line in its frame.
        line: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The frame has more headers than [`Limits::max_headers`](super::Limits).
    #[error("frame has more than {limit} headers")]
    TooManyHeaders {
        /// The limit in force.
        limit: usize,
    },
    /// A header line has no `:` between name and value.
    #[error("header line {line} has no ':' between name and value: {text:?}")]
    MissingColon {
        /// 1-based number of the header line in its frame.
        line: usize,
        /// The line, lossily decoded and cut to a few dozen characters.
        text: String,
    },
    /// A header line starts with `:` (the BNF requires a name of at least one octet).
    #[error("header line {line} has an empty header name")]
    EmptyHeaderName {
        /// 1-based number of the header line in its frame.
        line: usize,
    },
    /// A backslash is followed by a character the negotiated version does not define as
    /// an escape (STOMP 1.1/1.2 §"Value Encoding": a fatal protocol error).
    #[error("header line {line} uses the undefined escape sequence {:?} (STOMP {version} defines {})", format!("\\{escape}"), defined_escapes(*version))]
    UndefinedEscape {
        /// 1-based number of the header line in its frame.
        line: usize,
        /// The character after the backslash.
        escape: char,
        /// The version whose escapes apply.
        version: Version,
    },
    /// A header name or value ends with a lone backslash.
    #[error("header line {line} has a backslash with nothing to escape at the end of a header name or value")]
    IncompleteEscape {
        /// 1-based number of the header line in its frame.
        line: usize,
    },
    /// A header name or value is not UTF-8 (STOMP 1.2 §"Value Encoding").
    #[error("header line {line} is not valid UTF-8")]
    InvalidUtf8 {
        /// 1-based number of the header line in its frame.
        line: usize,
    },
    /// The `content-length` value is not a non-negative decimal integer.
    #[error("content-length {value:?} is not a non-negative integer")]
    InvalidContentLength {
        /// The value as sent, cut to a few dozen characters.
        value: String,
    },
    /// The `content-length` exceeds [`Limits::max_body`](super::Limits); refused before
    /// any of the body is buffered.
    #[error("content-length {declared} exceeds the body limit of {limit} octets")]
    ContentLengthTooLarge {
        /// The declared length (saturated at `u64::MAX` when it does not fit).
        declared: u64,
        /// The limit in force.
        limit: usize,
    },
    /// A body without `content-length` ran past [`Limits::max_body`](super::Limits)
    /// without a NUL octet.
    #[error("frame body exceeds the limit of {limit} octets")]
    BodyTooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// The octet after a `content-length` body is not the NUL that must end the frame.
    #[error("frame body of content-length {length} is not followed by a NUL octet")]
    MissingNul {
        /// The declared body length.
        length: usize,
    },
}

impl StompError {
    /// A short, fixed text for the `message` header of the ERROR frame the broker sends.
    pub fn summary(&self) -> &'static str {
        if self.is_limit() {
            "frame too large"
        } else {
            "malformed frame received"
        }
    }

    /// True when a configured [`Limits`](super::Limits) bound was exceeded (rather than
    /// the frame being malformed), so the broker can count it as a limit hit.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            StompError::CommandLineTooLong { .. }
                | StompError::HeaderLineTooLong { .. }
                | StompError::TooManyHeaders { .. }
                | StompError::ContentLengthTooLarge { .. }
                | StompError::BodyTooLarge { .. }
        )
    }
}

fn defined_escapes(version: Version) -> &'static str {
    match version {
        Version::V1_0 => "none",
        Version::V1_1 => r"\n \c \\",
        Version::V1_2 => r"\r \n \c \\",
    }
}

/// At most this many characters of peer-supplied text go into an error.
const SNIPPET_CHARS: usize = 40;

/// `bytes` as text for an error message: lossy UTF-8, cut to [`SNIPPET_CHARS`].
pub(crate) fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text.chars().take(SNIPPET_CHARS).collect();
    if text.chars().nth(SNIPPET_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// Why the encoder refused a frame. Nothing is written when it does.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// A header has an empty name: the line would read as the end of the headers.
    #[error("a header has an empty name")]
    EmptyHeaderName,
    /// A header name or value holds an octet that this frame cannot carry: a LF, or a
    /// `:` in a name, where escaping is off (STOMP 1.0, or CONNECT/STOMP/CONNECTED); a
    /// CR ending the line where `\r` is not an escape (it would be read as part of a
    /// CRLF).
    #[error("header {name:?} cannot be written in this frame: {reason}")]
    Unrepresentable {
        /// The header's name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_single_lines_with_quoted_peer_text() {
        let e = StompError::MissingColon {
            line: 2,
            text: snippet(b"bad\nline"),
        };
        assert_eq!(e.to_string(), r#"header line 2 has no ':' between name and value: "bad\nline""#);
        let e = StompError::UndefinedEscape {
            line: 1,
            escape: 't',
            version: Version::V1_2,
        };
        assert_eq!(
            e.to_string(),
            r#"header line 1 uses the undefined escape sequence "\\t" (STOMP 1.2 defines \r \n \c \\)"#
        );
        assert_eq!(e.summary(), "malformed frame received");
        let e = StompError::ContentLengthTooLarge { declared: 10, limit: 5 };
        assert_eq!(e.to_string(), "content-length 10 exceeds the body limit of 5 octets");
        assert!(e.is_limit());
        assert_eq!(e.summary(), "frame too large");
    }

    #[test]
    fn snippets_are_cut() {
        let long = [b'x'; 100];
        let s = snippet(&long);
        assert_eq!(s.chars().count(), SNIPPET_CHARS + 1);
        assert!(s.ends_with('…'));
        assert_eq!(snippet(&[0xff, b'a']), "\u{fffd}a");
    }
}
