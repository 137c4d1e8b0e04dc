//! Header escaping (STOMP 1.1 and 1.2 §"Value Encoding").
//!
//! | version | escapes |
//! |---|---|
//! | 1.0 | none |
//! | 1.1 | `\n` → LF, `\c` → `:`, `\\` → `\` |
//! | 1.2 | the same, plus `\r` → CR |
//!
//! Any other backslash sequence is a fatal protocol error. `CONNECT`, `STOMP` and
//! `CONNECTED` frames are never escaped, whatever the version: they are exchanged
//! before the version is known (the spec names `CONNECT` and `CONNECTED`; `STOMP` is
//! the same frame as `CONNECT` and is treated alike).

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};

use super::error::EncodeError;
use super::frame::Command;
use super::version::Version;

/// How one frame's header names and values are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Escaping {
    /// Taken literally: STOMP 1.0, the handshake frames, and anything decoded before a
    /// version was negotiated.
    Off,
    /// STOMP 1.1: `\n`, `\c`, `\\`.
    V1_1,
    /// STOMP 1.2: `\r`, `\n`, `\c`, `\\`.
    V1_2,
}

impl Escaping {
    /// The escaping of a `command` frame once `version` is in force (`None`: not yet
    /// negotiated, so no escaping).
    pub(crate) fn for_frame(version: Option<Version>, command: Command) -> Self {
        if command.is_handshake() {
            return Escaping::Off;
        }
        match version {
            None | Some(Version::V1_0) => Escaping::Off,
            Some(Version::V1_1) => Escaping::V1_1,
            Some(Version::V1_2) => Escaping::V1_2,
        }
    }

    /// The version whose rules these are, for error messages.
    pub(crate) fn version(self) -> Version {
        match self {
            Escaping::Off => Version::V1_0,
            Escaping::V1_1 => Version::V1_1,
            Escaping::V1_2 => Version::V1_2,
        }
    }
}

/// Why an escaped header name or value could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnescapeError {
    /// A backslash followed by this character, which is not a defined escape.
    Undefined(char),
    /// A backslash at the very end.
    Incomplete,
}

/// Resolve the escapes of one header name or value as sent on the wire.
pub(crate) fn unescape(raw: &str, escaping: Escaping) -> Result<Cow<'_, str>, UnescapeError> {
    if escaping == Escaping::Off || !raw.contains('\\') {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let decoded = match chars.next() {
            None => return Err(UnescapeError::Incomplete),
            Some('n') => '\n',
            Some('c') => ':',
            Some('\\') => '\\',
            Some('r') if escaping == Escaping::V1_2 => '\r',
            Some(other) => return Err(UnescapeError::Undefined(other)),
        };
        out.push(decoded);
    }
    Ok(Cow::Owned(out))
}

/// Write one header name or value with the escapes of `escaping` applied.
/// Call [`check_header`] first: this does not check that the result can be read back.
pub(crate) fn escape_into(text: &str, escaping: Escaping, dst: &mut BytesMut) {
    if escaping == Escaping::Off || !text.bytes().any(needs_escape) {
        dst.put_slice(text.as_bytes());
        return;
    }
    for &b in text.as_bytes() {
        match b {
            b'\n' => dst.put_slice(br"\n"),
            b':' => dst.put_slice(br"\c"),
            b'\\' => dst.put_slice(br"\\"),
            b'\r' if escaping == Escaping::V1_2 => dst.put_slice(br"\r"),
            _ => dst.put_u8(b),
        }
    }
}

fn needs_escape(b: u8) -> bool {
    matches!(b, b'\n' | b':' | b'\\' | b'\r')
}

/// Whether `name: value` can be written under `escaping` so that the decoder reads back
/// exactly `name` and `value`.
pub(crate) fn check_header(name: &str, value: &str, escaping: Escaping) -> Result<(), EncodeError> {
    let refuse = |reason| {
        Err(EncodeError::Unrepresentable {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return Err(EncodeError::EmptyHeaderName);
    }
    if escaping == Escaping::Off {
        if name.contains(':') {
            return refuse("a ':' in the name needs escaping, which this frame does not allow");
        }
        if name.contains('\n') || value.contains('\n') {
            return refuse("a line feed needs escaping, which this frame does not allow");
        }
    }
    if escaping != Escaping::V1_2 && value.ends_with('\r') {
        return refuse("a carriage return at the end of the value would be read as part of the line end");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str, escaping: Escaping) -> String {
        let mut dst = BytesMut::new();
        escape_into(text, escaping, &mut dst);
        String::from_utf8(dst.to_vec()).unwrap()
    }

    #[test]
    fn escaping_depends_on_version_and_command() {
        assert_eq!(Escaping::for_frame(None, Command::Send), Escaping::Off);
        assert_eq!(Escaping::for_frame(Some(Version::V1_0), Command::Send), Escaping::Off);
        assert_eq!(Escaping::for_frame(Some(Version::V1_1), Command::Message), Escaping::V1_1);
        assert_eq!(Escaping::for_frame(Some(Version::V1_2), Command::Error), Escaping::V1_2);
        for c in [Command::Connect, Command::Stomp, Command::Connected] {
            assert_eq!(Escaping::for_frame(Some(Version::V1_2), c), Escaping::Off, "{c}");
        }
    }

    #[test]
    fn decodes_the_defined_escapes() {
        assert_eq!(unescape(r"a\cb\nc\\d\re", Escaping::V1_2).unwrap(), "a:b\nc\\d\re");
        assert_eq!(unescape(r"a\cb\nc\\d", Escaping::V1_1).unwrap(), "a:b\nc\\d");
        assert_eq!(
            unescape(r"a\cb", Escaping::Off).unwrap(),
            r"a\cb",
            "1.0 takes backslashes literally"
        );
        assert!(matches!(unescape("plain", Escaping::V1_2).unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn undefined_escapes_are_errors() {
        assert_eq!(unescape(r"a\tb", Escaping::V1_2), Err(UnescapeError::Undefined('t')));
        assert_eq!(
            unescape(r"a\r", Escaping::V1_1),
            Err(UnescapeError::Undefined('r')),
            r"\r is 1.2 only"
        );
        assert_eq!(unescape(r"a\", Escaping::V1_2), Err(UnescapeError::Incomplete));
        assert_eq!(unescape(r"\é", Escaping::V1_1), Err(UnescapeError::Undefined('é')));
    }

    #[test]
    fn encodes_the_reverse() {
        assert_eq!(escaped("a:b\nc\\d\re", Escaping::V1_2), r"a\cb\nc\\d\re");
        assert_eq!(escaped("a:b\nc\\d\re", Escaping::V1_1), "a\\cb\\nc\\\\d\re");
        assert_eq!(escaped("a:b", Escaping::Off), "a:b");
        for text in ["", "x", "a:b\nc\\d\re:", "\\\\n"] {
            assert_eq!(unescape(&escaped(text, Escaping::V1_2), Escaping::V1_2).unwrap(), text);
        }
    }

    #[test]
    fn refuses_what_cannot_be_read_back() {
        assert_eq!(check_header("", "v", Escaping::V1_2), Err(EncodeError::EmptyHeaderName));
        assert!(check_header("a:b", "v", Escaping::Off).is_err());
        assert!(check_header("a", "x\ny", Escaping::Off).is_err());
        assert!(check_header("a", "x\r", Escaping::V1_1).is_err());
        assert!(check_header("a", "x\r", Escaping::Off).is_err());
        assert!(check_header("a:b", "x\ny\r", Escaping::V1_2).is_ok());
        assert!(
            check_header("a", "x:y\rz", Escaping::Off).is_ok(),
            "a ':' in a value is fine unescaped"
        );
    }
}
