//! The decoder's size limits (STOMP 1.2 §"Size Limits"): what a peer may make the
//! decoder buffer. The broker maps its configuration keys onto [`Limits`].

/// Upper bounds the decoder enforces while it reads, before it buffers past them.
///
/// Every length is in octets and excludes the line's EOL (LF or CRLF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest command line. The longest command, `UNSUBSCRIBE`, has 11 octets.
    pub max_command_line: usize,
    /// Most header entries in one frame, repetitions included.
    pub max_headers: usize,
    /// Longest header line (`name:value` as sent, escapes not yet resolved).
    pub max_header_line: usize,
    /// Largest body. A `content-length` above it fails as soon as the header is read;
    /// without `content-length`, the body fails once this many octets pass with no NUL.
    pub max_body: usize,
}

impl Limits {
    /// Default [`Limits::max_command_line`].
    pub const DEFAULT_MAX_COMMAND_LINE: usize = 64;
    /// Default [`Limits::max_headers`].
    pub const DEFAULT_MAX_HEADERS: usize = 64;
    /// Default [`Limits::max_header_line`]: 8 KiB.
    pub const DEFAULT_MAX_HEADER_LINE: usize = 8 * 1024;
    /// Default [`Limits::max_body`]: 1 MiB.
    pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_command_line: Self::DEFAULT_MAX_COMMAND_LINE,
            max_headers: Self::DEFAULT_MAX_HEADERS,
            max_header_line: Self::DEFAULT_MAX_HEADER_LINE,
            max_body: Self::DEFAULT_MAX_BODY,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fit_every_command() {
        let l = Limits::default();
        assert!(l.max_command_line >= "UNSUBSCRIBE".len());
        assert_eq!(l.max_body, 1 << 20);
        assert_eq!(l.max_headers, 64);
        assert_eq!(l.max_header_line, 8192);
    }
}
