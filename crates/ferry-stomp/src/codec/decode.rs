//! The streaming decoder: bytes in, [`Decoded`] frames and heart-beats out. Sans-IO.
//!
//! Grammar (STOMP 1.2 §"Augmented BNF"):
//!
//! ```text
//! frame  = command EOL *( header EOL ) EOL *OCTET NULL *( EOL )
//! EOL    = [CR] LF
//! header = header-name ":" header-value
//! ```
//!
//! The decoder reads one line at a time and keeps what it has parsed of the current
//! frame (command, headers so far, where its last search for a line end stopped), so a
//! frame split across chunks at any octet costs no re-parsing: every octet is examined
//! a bounded number of times, whatever the chunking. Complete lines are handed to the
//! small `nom` parsers below; the line and NUL searches use nom's memchr-backed
//! [`FindSubstring`].
//!
//! A bare EOL between frames (including the optional EOLs after a frame's NUL) is a
//! heart-beat (STOMP 1.2 §"Heart-beating") and is reported as [`Decoded::HeartBeat`].

use std::mem;

use bytes::{Buf, BytesMut};
use nom::branch::alt;
use nom::bytes::complete::{tag, take_till};
use nom::character::complete::digit1;
use nom::combinator::{all_consuming, rest, value};
use nom::sequence::separated_pair;
use nom::{FindSubstring, IResult, Parser};

use super::error::{snippet, StompError};
use super::escape::{unescape, Escaping, UnescapeError};
use super::frame::{Command, Frame, Headers};
use super::limits::Limits;
use super::version::Version;

/// The name of the header that sets the body's length.
pub const CONTENT_LENGTH: &str = "content-length";

/// One item read from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A complete frame.
    Frame(Frame),
    /// A bare EOL (LF or CRLF) between frames: proof of life, nothing else.
    HeartBeat,
}

/// Decodes one connection's inbound STOMP stream.
///
/// Hand [`Decoder::decode`] the same buffer every time, with new bytes appended at its
/// end; it consumes what it has parsed (so the buffer shrinks even when it returns
/// `Ok(None)`) and keeps the partial frame's state itself. Frame bodies are split off
/// the buffer without copying.
///
/// Header escaping depends on the negotiated version ([`Decoder::set_version`]); until
/// one is set, no frame is unescaped, which is right for the `CONNECT`/`STOMP` (or, on
/// a client, `CONNECTED`) frame that starts every session.
///
/// Errors are fatal: once `decode` fails it returns the same error on every later call.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    version: Option<Version>,
    state: State,
    /// Octets at the start of the buffer already searched for the current line's LF
    /// (or the body's NUL) without finding it.
    scanned: usize,
    failed: Option<StompError>,
}

#[derive(Debug)]
enum State {
    /// Between frames.
    Idle,
    /// Inside the command line.
    Command,
    /// Inside the header lines.
    Headers(Head),
    /// Past the blank line.
    Body(Head),
}

/// What has been parsed of the current frame.
#[derive(Debug)]
struct Head {
    command: Command,
    escaping: Escaping,
    headers: Headers,
    /// From the first `content-length` header, if any (first wins; a bad first one
    /// is an error, so `None` means none was seen).
    content_length: Option<usize>,
}

/// A line longer than its limit.
struct TooLong;

impl Decoder {
    /// A decoder enforcing `limits`, with no version negotiated yet.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            version: None,
            state: State::Idle,
            scanned: 0,
            failed: None,
        }
    }

    /// A decoder for a stream whose version is already settled (a client after
    /// `CONNECTED`, a test, the load generator).
    pub fn with_version(limits: Limits, version: Version) -> Self {
        let mut decoder = Self::new(limits);
        decoder.version = Some(version);
        decoder
    }

    /// Set the negotiated version: frames whose command line is read from now on are
    /// unescaped by its rules. Call it after `CONNECT`/`CONNECTED` has been handled.
    pub fn set_version(&mut self, version: Version) {
        self.version = Some(version);
    }

    /// The negotiated version, if one was set.
    pub fn version(&self) -> Option<Version> {
        self.version
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Enforce `limits` from the next frame on (the broker raises them once a client has
    /// authenticated). Call it between frames.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// True while part of a frame has been consumed but the frame is not complete: at
    /// end of stream, the peer cut a frame short.
    pub fn in_frame(&self) -> bool {
        !matches!(self.state, State::Idle)
    }

    /// Decode the next item from `buf`: `Ok(None)` means more bytes are needed.
    /// Call it again after each `Some`, as `buf` may hold several items.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, StompError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = self.step(buf);
        if let Err(error) = &result {
            self.failed = Some(error.clone());
            self.state = State::Idle;
        }
        result
    }

    fn step(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, StompError> {
        loop {
            // Taken out while it is worked on; an error leaves the decoder idle (and failed).
            match mem::replace(&mut self.state, State::Idle) {
                State::Idle => match (buf.first(), buf.get(1)) {
                    (None, _) | (Some(b'\r'), None) => return Ok(None),
                    (Some(b'\n'), _) => {
                        buf.advance(1);
                        return Ok(Some(Decoded::HeartBeat));
                    }
                    (Some(b'\r'), Some(b'\n')) => {
                        buf.advance(2);
                        return Ok(Some(Decoded::HeartBeat));
                    }
                    _ => self.state = State::Command,
                },
                State::Command => {
                    let limit = self.limits.max_command_line;
                    let Some((end, consumed)) =
                        find_line(buf, &mut self.scanned, limit).map_err(|TooLong| StompError::CommandLineTooLong { limit })?
                    else {
                        self.state = State::Command;
                        return Ok(None);
                    };
                    let command = parse_command(&buf[..end])?;
                    buf.advance(consumed);
                    self.scanned = 0;
                    self.state = State::Headers(Head {
                        command,
                        escaping: Escaping::for_frame(self.version, command),
                        headers: Headers::new(),
                        content_length: None,
                    });
                }
                State::Headers(mut head) => {
                    let line_no = head.headers.len() + 1;
                    let limit = self.limits.max_header_line;
                    let Some((end, consumed)) = find_line(buf, &mut self.scanned, limit)
                        .map_err(|TooLong| StompError::HeaderLineTooLong { line: line_no, limit })?
                    else {
                        self.state = State::Headers(head);
                        return Ok(None);
                    };
                    if end == 0 {
                        self.state = State::Body(head);
                    } else {
                        if head.headers.len() >= self.limits.max_headers {
                            return Err(StompError::TooManyHeaders {
                                limit: self.limits.max_headers,
                            });
                        }
                        let (name, value) = parse_header(&buf[..end], head.escaping, line_no)?;
                        if name == CONTENT_LENGTH && head.content_length.is_none() {
                            head.content_length = Some(parse_content_length(&value, self.limits.max_body)?);
                        }
                        head.headers.push(name, value);
                        self.state = State::Headers(head);
                    }
                    buf.advance(consumed);
                    self.scanned = 0;
                }
                State::Body(head) => {
                    let Some(length) = body_length(buf, head.content_length, &mut self.scanned, self.limits.max_body)? else {
                        self.state = State::Body(head);
                        return Ok(None);
                    };
                    let body = buf.split_to(length).freeze();
                    buf.advance(1);
                    self.scanned = 0;
                    return Ok(Some(Decoded::Frame(Frame {
                        command: head.command,
                        headers: head.headers,
                        body,
                    })));
                }
            }
        }
    }
}

impl Default for Decoder {
    /// A decoder with the default [`Limits`] and no version negotiated yet.
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

/// Find the end of the line at the start of `buf`, searching on from `*scanned`.
/// Returns the line's length without its EOL and with it, `None` when no LF has arrived
/// yet (recording how far the search went), or [`TooLong`] once the line, EOL aside,
/// is known to exceed `max` octets.
fn find_line(buf: &[u8], scanned: &mut usize, max: usize) -> Result<Option<(usize, usize)>, TooLong> {
    // A line of `max` octets plus CR LF fits in `max + 2`; no LF there means too long.
    let window = buf.len().min(max.saturating_add(2));
    let from = (*scanned).min(window);
    match (&buf[from..window]).find_substring("\n") {
        Some(offset) => {
            let lf = from + offset;
            let end = if lf > 0 && buf[lf - 1] == b'\r' { lf - 1 } else { lf };
            if end > max {
                return Err(TooLong);
            }
            Ok(Some((end, lf + 1)))
        }
        None if window == max.saturating_add(2) => Err(TooLong),
        None => {
            *scanned = buf.len();
            Ok(None)
        }
    }
}

/// How long the body at the start of `buf` is, once it and its NUL have all arrived.
fn body_length(buf: &[u8], content_length: Option<usize>, scanned: &mut usize, max_body: usize) -> Result<Option<usize>, StompError> {
    if let Some(length) = content_length {
        return match buf.get(length) {
            None => Ok(None),
            Some(0) => Ok(Some(length)),
            Some(_) => Err(StompError::MissingNul { length }),
        };
    }
    // Without content-length the body ends at the first NUL, at most `max_body` in.
    let window = buf.len().min(max_body.saturating_add(1));
    let from = (*scanned).min(window);
    match (&buf[from..window]).find_substring(&b"\0"[..]) {
        Some(offset) => Ok(Some(from + offset)),
        None if buf.len() > max_body => Err(StompError::BodyTooLarge { limit: max_body }),
        None => {
            *scanned = buf.len();
            Ok(None)
        }
    }
}

/// `command` on a line of its own (EOL already removed).
fn command(line: &[u8]) -> IResult<&[u8], Command> {
    // CONNECTED before CONNECT: `alt` keeps the first branch that matches.
    all_consuming(alt((
        value(Command::Connected, tag("CONNECTED")),
        value(Command::Connect, tag("CONNECT")),
        value(Command::Stomp, tag("STOMP")),
        value(Command::Send, tag("SEND")),
        value(Command::Subscribe, tag("SUBSCRIBE")),
        value(Command::Unsubscribe, tag("UNSUBSCRIBE")),
        value(Command::Ack, tag("ACK")),
        value(Command::Nack, tag("NACK")),
        value(Command::Begin, tag("BEGIN")),
        value(Command::Commit, tag("COMMIT")),
        value(Command::Abort, tag("ABORT")),
        value(Command::Disconnect, tag("DISCONNECT")),
        value(Command::Message, tag("MESSAGE")),
        value(Command::Receipt, tag("RECEIPT")),
        value(Command::Error, tag("ERROR")),
    )))
    .parse(line)
}

/// `header-name ":" header-value`, split at the first colon; the value may hold more
/// colons (unescaped frames have no other way to carry them).
fn header(line: &[u8]) -> IResult<&[u8], (&[u8], &[u8])> {
    separated_pair(take_till(|b| b == b':'), tag(":"), rest).parse(line)
}

/// `1*DIGIT`: a non-negative decimal integer, nothing else (no sign, no blanks).
fn decimal(text: &str) -> IResult<&str, &str> {
    all_consuming(digit1).parse(text)
}

fn parse_command(line: &[u8]) -> Result<Command, StompError> {
    command(line)
        .map(|(_, c)| c)
        .map_err(|_| StompError::UnknownCommand { command: snippet(line) })
}

fn parse_header(line: &[u8], escaping: Escaping, line_no: usize) -> Result<(String, String), StompError> {
    let Ok((_, (name, value))) = header(line) else {
        return Err(StompError::MissingColon {
            line: line_no,
            text: snippet(line),
        });
    };
    if name.is_empty() {
        return Err(StompError::EmptyHeaderName { line: line_no });
    }
    let text = |raw| std::str::from_utf8(raw).map_err(|_| StompError::InvalidUtf8 { line: line_no });
    let unescaped = |raw| {
        unescape(raw, escaping).map(|s| s.into_owned()).map_err(|e| match e {
            UnescapeError::Undefined(escape) => StompError::UndefinedEscape {
                line: line_no,
                escape,
                version: escaping.version(),
            },
            UnescapeError::Incomplete => StompError::IncompleteEscape { line: line_no },
        })
    };
    let (name, value) = (text(name)?, text(value)?);
    Ok((unescaped(name)?, unescaped(value)?))
}

fn parse_content_length(value: &str, max_body: usize) -> Result<usize, StompError> {
    if decimal(value).is_err() {
        return Err(StompError::InvalidContentLength {
            value: snippet(value.as_bytes()),
        });
    }
    // All digits: the only way to fail is to overflow, which is over any limit too.
    let declared = value.parse::<u64>().unwrap_or(u64::MAX);
    match usize::try_from(declared) {
        Ok(length) if length <= max_body => Ok(length),
        _ => Err(StompError::ContentLengthTooLarge { declared, limit: max_body }),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    /// Every item `input` decodes to, fed in one chunk, and the error that stopped it.
    fn decode_all(decoder: &mut Decoder, input: &[u8]) -> (Vec<Decoded>, Option<StompError>) {
        let mut buf = BytesMut::from(input);
        let mut items = Vec::new();
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => return (items, None),
                Err(e) => return (items, Some(e)),
            }
        }
    }

    fn one_frame(version: Option<Version>, input: &[u8]) -> Frame {
        let mut d = Decoder::new(Limits::default());
        if let Some(v) = version {
            d.set_version(v);
        }
        let (items, err) = decode_all(&mut d, input);
        assert_eq!(err, None);
        assert_eq!(items.len(), 1, "{items:?}");
        assert!(!d.in_frame());
        match items.into_iter().next() {
            Some(Decoded::Frame(f)) => f,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    fn error(version: Option<Version>, limits: Limits, input: &[u8]) -> StompError {
        let mut d = Decoder::new(limits);
        if let Some(v) = version {
            d.set_version(v);
        }
        let (_, err) = decode_all(&mut d, input);
        err.expect("an error")
    }

    fn headers(f: &Frame) -> Vec<(&str, &str)> {
        f.headers.iter().collect()
    }

    // --- The examples of the STOMP 1.2 specification, byte for byte. ---

    #[test]
    fn spec_connect() {
        let f = one_frame(None, b"CONNECT\naccept-version:1.2\nhost:stomp.github.org\n\n\0");
        assert_eq!(f.command, Command::Connect);
        assert_eq!(headers(&f), [("accept-version", "1.2"), ("host", "stomp.github.org")]);
        assert!(f.body.is_empty());
    }

    #[test]
    fn spec_stomp_and_connected() {
        let f = one_frame(None, b"STOMP\naccept-version:1.0,1.1,2.0\nhost:stomp.github.org\n\n\0");
        assert_eq!(f.command, Command::Stomp);
        assert_eq!(f.header("accept-version"), Some("1.0,1.1,2.0"));
        let f = one_frame(None, b"CONNECTED\nversion:1.2\n\n\0");
        assert_eq!(f.command, Command::Connected);
        assert_eq!(headers(&f), [("version", "1.2")]);
    }

    #[test]
    fn spec_send() {
        let f = one_frame(
            Some(Version::V1_2),
            b"SEND\ndestination:/queue/a\ncontent-type:text/plain\n\nhello queue a\n\0",
        );
        assert_eq!(f.command, Command::Send);
        assert_eq!(headers(&f), [("destination", "/queue/a"), ("content-type", "text/plain")]);
        assert_eq!(&f.body[..], b"hello queue a\n");
    }

    #[test]
    fn spec_subscribe_unsubscribe_ack_and_transactions() {
        let v = Some(Version::V1_2);
        let f = one_frame(v, b"SUBSCRIBE\nid:0\ndestination:/queue/foo\nack:client\n\n\0");
        assert_eq!(f.command, Command::Subscribe);
        assert_eq!(headers(&f), [("id", "0"), ("destination", "/queue/foo"), ("ack", "client")]);
        assert_eq!(one_frame(v, b"UNSUBSCRIBE\nid:0\n\n\0").header("id"), Some("0"));
        let f = one_frame(v, b"ACK\nid:12345\ntransaction:tx1\n\n\0");
        assert_eq!(
            (f.command, headers(&f)),
            (Command::Ack, vec![("id", "12345"), ("transaction", "tx1")])
        );
        for (wire, command) in [
            (&b"BEGIN\ntransaction:tx1\n\n\0"[..], Command::Begin),
            (b"COMMIT\ntransaction:tx1\n\n\0", Command::Commit),
            (b"ABORT\ntransaction:tx1\n\n\0", Command::Abort),
        ] {
            let f = one_frame(v, wire);
            assert_eq!((f.command, f.header("transaction")), (command, Some("tx1")));
        }
    }

    #[test]
    fn spec_message_receipt_disconnect() {
        let v = Some(Version::V1_2);
        let f = one_frame(
            v,
            b"MESSAGE\nsubscription:0\nmessage-id:007\ndestination:/queue/a\ncontent-type:text/plain\n\nhello queue a\0",
        );
        assert_eq!(f.command, Command::Message);
        assert_eq!(f.header("message-id"), Some("007"));
        assert_eq!(&f.body[..], b"hello queue a");
        // The spec prints these two without the blank line the BNF requires; here with it.
        let f = one_frame(v, b"RECEIPT\nreceipt-id:77\n\n\0");
        assert_eq!((f.command, f.header("receipt-id")), (Command::Receipt, Some("77")));
        let f = one_frame(v, b"DISCONNECT\nreceipt:77\n\n\0");
        assert_eq!((f.command, f.header("receipt")), (Command::Disconnect, Some("77")));
    }

    const ERROR_BODY: &[u8] = b"The message:\n-----\nMESSAGE\ndestined:/queue/a\nreceipt:message-12345\n\nHello queue a!\n-----\nDid not contain a destination header, which is REQUIRED\nfor message propagation.\n";

    #[test]
    fn spec_error_with_content_length_and_body() {
        assert_eq!(ERROR_BODY.len(), 170);
        let mut wire =
            b"ERROR\nreceipt-id:message-12345\ncontent-type:text/plain\ncontent-length:170\nmessage: malformed frame received\n\n".to_vec();
        wire.extend_from_slice(ERROR_BODY);
        wire.push(0);
        let f = one_frame(Some(Version::V1_2), &wire);
        assert_eq!(f.command, Command::Error);
        assert_eq!(
            f.header("message"),
            Some(" malformed frame received"),
            "1.2: values are never trimmed"
        );
        assert_eq!(f.header(CONTENT_LENGTH), Some("170"));
        assert_eq!(&f.body[..], ERROR_BODY);
    }

    #[test]
    fn spec_error_as_printed_is_one_octet_short() {
        // The spec prints `content-length:171` over a 170-octet body: the NUL is then
        // read as the body's last octet and a second NUL is required after it.
        let mut wire = b"ERROR\ncontent-length:171\n\n".to_vec();
        wire.extend_from_slice(ERROR_BODY);
        wire.push(0);
        let mut d = Decoder::default();
        let (items, err) = decode_all(&mut d, &wire);
        assert_eq!((items.len(), err), (0, None));
        assert!(d.in_frame(), "waiting for the terminator");
        wire.push(b'\n');
        assert_eq!(error(None, Limits::default(), &wire), StompError::MissingNul { length: 171 });
    }

    #[test]
    fn spec_repeated_header_first_wins() {
        let f = one_frame(Some(Version::V1_2), b"MESSAGE\nfoo:World\nfoo:Hello\n\n\0");
        assert_eq!(f.header("foo"), Some("World"));
        assert_eq!(f.headers.len(), 2, "the history is kept");
    }

    // --- Line ends, heart-beats, streaming. ---

    #[test]
    fn crlf_line_ends() {
        let f = one_frame(Some(Version::V1_2), b"SEND\r\ndestination:/queue/a\r\nreceipt:r\r\n\r\nhi\0");
        assert_eq!(f.command, Command::Send);
        assert_eq!(headers(&f), [("destination", "/queue/a"), ("receipt", "r")]);
        assert_eq!(&f.body[..], b"hi");
        // Only the CR right before the LF is part of the EOL.
        let f = one_frame(Some(Version::V1_0), b"SEND\na:x\ry\r\r\n\n\0");
        assert_eq!(f.header("a"), Some("x\ry\r"));
    }

    #[test]
    fn heart_beats_between_frames() {
        let mut d = Decoder::default();
        let (items, err) = decode_all(&mut d, b"\n\r\nSEND\n\n\0\n\nRECEIPT\nreceipt-id:1\n\n\0\r\n");
        assert_eq!(err, None);
        let kinds: Vec<_> = items.iter().map(|i| matches!(i, Decoded::HeartBeat)).collect();
        assert_eq!(kinds, [true, true, false, true, true, false, true]);
    }

    #[test]
    fn a_lone_cr_waits_for_its_lf() {
        let mut d = Decoder::default();
        let mut buf = BytesMut::from(&b"\r"[..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"\n");
        assert_eq!(d.decode(&mut buf), Ok(Some(Decoded::HeartBeat)));
        assert!(buf.is_empty());
    }

    #[test]
    fn several_frames_in_one_buffer() {
        let mut d = Decoder::with_version(Limits::default(), Version::V1_2);
        let input = b"SEND\ndestination:/a\n\none\0SEND\ndestination:/b\ncontent-length:3\n\ntwo\0SEND\ndestination:/c\n\n\0";
        let (items, err) = decode_all(&mut d, input);
        assert_eq!(err, None);
        let bodies: Vec<_> = items
            .iter()
            .map(|i| match i {
                Decoded::Frame(f) => (f.header("destination"), f.body.clone()),
                Decoded::HeartBeat => (None, Bytes::new()),
            })
            .collect();
        assert_eq!(
            bodies,
            [
                (Some("/a"), Bytes::from_static(b"one")),
                (Some("/b"), Bytes::from_static(b"two")),
                (Some("/c"), Bytes::new()),
            ]
        );
    }

    #[test]
    fn a_frame_fed_one_octet_at_a_time() {
        let input = b"\nMESSAGE\r\nsubscription:0\r\ncontent-length:5\r\n\r\na\0b\0c\0\nSEND\ndestination:/q\n\nxyz\0";
        let mut d = Decoder::with_version(Limits::default(), Version::V1_2);
        let mut buf = BytesMut::new();
        let mut items = Vec::new();
        for &b in input.iter() {
            buf.extend_from_slice(&[b]);
            while let Some(item) = d.decode(&mut buf).unwrap() {
                items.push(item);
            }
        }
        let (whole, err) = decode_all(&mut Decoder::with_version(Limits::default(), Version::V1_2), input);
        assert_eq!(err, None);
        assert_eq!(items, whole);
        assert_eq!(items.len(), 4);
        let Decoded::Frame(message) = &items[1] else { panic!("{items:?}") };
        assert_eq!(&message.body[..], b"a\0b\0c");
    }

    #[test]
    fn the_search_resumes_where_it_stopped() {
        let mut d = Decoder::default();
        let mut buf = BytesMut::from(&b"SEND\nname:"[..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert_eq!(&buf[..], b"name:", "the command line is consumed");
        assert_eq!(d.scanned, 5);
        buf.extend_from_slice(b"value\n\nbody");
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert_eq!((&buf[..], d.scanned), (&b"body"[..], 4));
    }

    #[test]
    fn nul_inside_a_body_with_content_length() {
        let f = one_frame(Some(Version::V1_2), b"SEND\ndestination:/q\ncontent-length:4\n\n\0\x01\0\x02\0");
        assert_eq!(&f.body[..], b"\0\x01\0\x02");
        let f = one_frame(Some(Version::V1_2), b"SEND\ncontent-length:0\n\n\0");
        assert!(f.body.is_empty());
    }

    #[test]
    fn the_first_content_length_wins() {
        let f = one_frame(Some(Version::V1_2), b"SEND\ncontent-length:2\ncontent-length:oops\n\nab\0");
        assert_eq!(&f.body[..], b"ab");
    }

    #[test]
    fn the_body_is_not_copied() {
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(b"SEND\ncontent-length:3\n\nabc\0");
        let start = buf.as_ptr() as usize;
        let Ok(Some(Decoded::Frame(f))) = Decoder::default().decode(&mut buf) else {
            panic!()
        };
        assert_eq!(f.body.as_ptr() as usize, start + 23, "the body is a slice of the input");
    }

    // --- Escapes. ---

    #[test]
    fn escapes_by_version() {
        let wire = with_header("MESSAGE", r"k\cey:a\cb\nc\\d");
        let f = one_frame(Some(Version::V1_2), &wire);
        assert_eq!(headers(&f), [("k:ey", "a:b\nc\\d")]);
        let f = one_frame(Some(Version::V1_1), &wire);
        assert_eq!(headers(&f), [("k:ey", "a:b\nc\\d")]);
        let f = one_frame(Some(Version::V1_0), &wire);
        assert_eq!(headers(&f), [(r"k\cey", r"a\cb\nc\\d")]);
        let f = one_frame(None, &wire);
        assert_eq!(headers(&f), [(r"k\cey", r"a\cb\nc\\d")], "nothing is unescaped before negotiation");
        let f = one_frame(Some(Version::V1_2), &with_header("SEND", r"k:a\rb"));
        assert_eq!(f.header("k"), Some("a\rb"));
    }

    #[test]
    fn handshake_frames_are_never_unescaped() {
        for command in ["CONNECT", "STOMP", "CONNECTED"] {
            let wire = format!("{command}\nlogin:a\\tb\npasscode:x:y\n\n\0");
            let f = one_frame(Some(Version::V1_2), wire.as_bytes());
            assert_eq!(headers(&f), [("login", r"a\tb"), ("passcode", "x:y")], "{command}");
        }
    }

    #[test]
    fn a_colon_in_a_value_is_kept() {
        let f = one_frame(Some(Version::V1_2), b"SEND\ndestination:/queue/a:b\n\n\0");
        assert_eq!(f.header("destination"), Some("/queue/a:b"));
    }

    #[test]
    fn values_are_not_trimmed() {
        let f = one_frame(Some(Version::V1_2), b"SEND\n key : value \n\n\0");
        assert_eq!(headers(&f), [(" key ", " value ")]);
        let f = one_frame(Some(Version::V1_2), b"SEND\nempty:\n\n\0");
        assert_eq!(f.header("empty"), Some(""));
    }

    // --- Every error. ---

    #[test]
    fn unknown_commands() {
        let l = Limits::default();
        for wire in [
            &b"send\n\n\0"[..],
            b"SEND \n\n\0",
            b"GET / HTTP/1.1\r\n",
            b"\rSEND\n\n\0",
            b"\xff\n",
        ] {
            assert!(matches!(error(None, l, wire), StompError::UnknownCommand { .. }), "{wire:?}");
        }
        assert_eq!(
            error(None, l, b"PUBLISH\n"),
            StompError::UnknownCommand { command: "PUBLISH".into() }
        );
    }

    #[test]
    fn bad_header_lines() {
        let v = Some(Version::V1_2);
        let l = Limits::default();
        assert_eq!(
            error(v, l, b"SEND\na:1\nno colon\n\n\0"),
            StompError::MissingColon {
                line: 2,
                text: "no colon".into()
            }
        );
        assert_eq!(error(v, l, b"SEND\n:value\n\n\0"), StompError::EmptyHeaderName { line: 1 });
        assert_eq!(error(v, l, b"SEND\nk:\xff\n\n\0"), StompError::InvalidUtf8 { line: 1 });
        assert_eq!(error(v, l, b"SEND\n\xc3:v\n\n\0"), StompError::InvalidUtf8 { line: 1 });
        assert_eq!(error(None, l, b"CONNECT\nk:\xc0\x80\n\n\0"), StompError::InvalidUtf8 { line: 1 });
    }

    #[test]
    fn bad_escapes() {
        let l = Limits::default();
        assert_eq!(
            error(Some(Version::V1_2), l, b"SEND\nk:a\\tb\n\n\0"),
            StompError::UndefinedEscape {
                line: 1,
                escape: 't',
                version: Version::V1_2
            }
        );
        assert_eq!(
            error(Some(Version::V1_1), l, b"SEND\nk:a\\r\n\n\0"),
            StompError::UndefinedEscape {
                line: 1,
                escape: 'r',
                version: Version::V1_1
            }
        );
        assert_eq!(
            error(Some(Version::V1_2), l, b"SEND\nx:1\nk\\:v\n\n\0"),
            StompError::IncompleteEscape { line: 2 }
        );
        assert_eq!(
            error(Some(Version::V1_2), l, b"SEND\nk:v\\\n\n\0"),
            StompError::IncompleteEscape { line: 1 }
        );
    }

    #[test]
    fn bad_content_lengths() {
        let v = Some(Version::V1_2);
        let l = Limits::default();
        for bad in ["-1", "+1", " 1", "1 ", "", "0x10", "1.0", "٣"] {
            let wire = format!("SEND\ncontent-length:{bad}\n\n\0");
            assert_eq!(
                error(v, l, wire.as_bytes()),
                StompError::InvalidContentLength { value: bad.into() },
                "{bad:?}"
            );
        }
        assert_eq!(
            error(v, l, b"SEND\ncontent-length:99999999999999999999999\n\n"),
            StompError::ContentLengthTooLarge {
                declared: u64::MAX,
                limit: l.max_body
            }
        );
        assert_eq!(
            error(v, l, b"SEND\ncontent-length:3\n\nabcd\0"),
            StompError::MissingNul { length: 3 }
        );
    }

    #[test]
    fn content_length_over_the_limit_fails_before_the_body() {
        let l = Limits {
            max_body: 10,
            ..Limits::default()
        };
        // Only the head has arrived: the error comes at once, nothing is buffered.
        assert_eq!(
            error(None, l, b"SEND\ncontent-length:11\n"),
            StompError::ContentLengthTooLarge { declared: 11, limit: 10 }
        );
        let f = {
            let mut d = Decoder::new(l);
            decode_all(&mut d, b"SEND\ncontent-length:10\n\n0123456789\0").0
        };
        assert_eq!(f.len(), 1, "exactly at the limit is fine");
    }

    #[test]
    fn body_without_content_length_over_the_limit() {
        let l = Limits {
            max_body: 4,
            ..Limits::default()
        };
        let mut d = Decoder::new(l);
        let mut buf = BytesMut::from(&b"SEND\n\nabcd"[..]);
        assert_eq!(d.decode(&mut buf), Ok(None), "4 octets and no NUL yet: may still end");
        buf.extend_from_slice(b"e");
        assert_eq!(d.decode(&mut buf), Err(StompError::BodyTooLarge { limit: 4 }));
        assert_eq!(error(None, l, b"SEND\n\nabcde\0"), StompError::BodyTooLarge { limit: 4 });
        assert_eq!(decode_all(&mut Decoder::new(l), b"SEND\n\nabcd\0").0.len(), 1);
    }

    #[test]
    fn too_many_headers() {
        let l = Limits {
            max_headers: 2,
            ..Limits::default()
        };
        assert_eq!(decode_all(&mut Decoder::new(l), b"SEND\na:1\nb:2\n\n\0").0.len(), 1);
        assert_eq!(error(None, l, b"SEND\na:1\nb:2\nc:3\n"), StompError::TooManyHeaders { limit: 2 });
    }

    #[test]
    fn header_line_too_long() {
        let l = Limits {
            max_header_line: 5,
            ..Limits::default()
        };
        assert_eq!(
            decode_all(&mut Decoder::new(l), b"SEND\nab:cd\r\n\n\0").0.len(),
            1,
            "the EOL does not count"
        );
        assert_eq!(
            error(None, l, b"SEND\nab:cde\n"),
            StompError::HeaderLineTooLong { line: 1, limit: 5 }
        );
        // Detected before the line ends: 7 octets with no LF cannot be a 5-octet line.
        let mut d = Decoder::new(l);
        let mut buf = BytesMut::from(&b"SEND\nab:cd\r"[..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"x");
        assert_eq!(d.decode(&mut buf), Err(StompError::HeaderLineTooLong { line: 1, limit: 5 }));
    }

    #[test]
    fn command_line_too_long() {
        let l = Limits {
            max_command_line: 4,
            ..Limits::default()
        };
        assert_eq!(decode_all(&mut Decoder::new(l), b"SEND\r\n\n\0").0.len(), 1);
        assert_eq!(error(None, l, b"ABORT\n"), StompError::CommandLineTooLong { limit: 4 });
        assert_eq!(error(None, l, b"XXXXXXXXXXXX"), StompError::CommandLineTooLong { limit: 4 });
        assert_eq!(
            error(None, Limits::default(), &[b'A'; 100]),
            StompError::CommandLineTooLong { limit: 64 }
        );
    }

    #[test]
    fn errors_are_sticky() {
        let mut d = Decoder::default();
        let mut buf = BytesMut::from(&b"NOPE\n"[..]);
        let first = d.decode(&mut buf);
        assert!(first.is_err());
        let mut fresh = BytesMut::from(&b"SEND\n\n\0"[..]);
        assert_eq!(d.decode(&mut fresh), first);
    }

    #[test]
    fn set_version_applies_to_the_next_frame() {
        let mut d = Decoder::default();
        let mut buf = BytesMut::from(&b"CONNECT\naccept-version:1.2\n\n\0SEND\nk:a\\cb\n\n\0"[..]);
        let Ok(Some(Decoded::Frame(connect))) = d.decode(&mut buf) else {
            panic!()
        };
        assert_eq!(Version::negotiate(connect.header("accept-version")), Some(Version::V1_2));
        d.set_version(Version::V1_2);
        assert_eq!(d.version(), Some(Version::V1_2));
        let Ok(Some(Decoded::Frame(send))) = d.decode(&mut buf) else {
            panic!()
        };
        assert_eq!(send.header("k"), Some("a:b"));
    }

    #[test]
    fn nom_parsers() {
        for c in Command::ALL {
            assert_eq!(command(c.as_str().as_bytes()).map(|(_, c)| c), Ok(c));
        }
        assert!(command(b"CONNECTEDX").is_err());
        assert_eq!(header(b"a:b:c").map(|(_, h)| h), Ok((&b"a"[..], &b"b:c"[..])));
        assert_eq!(header(b":").map(|(_, h)| h), Ok((&b""[..], &b""[..])));
        assert!(header(b"abc").is_err());
        assert!(decimal("0012").is_ok());
        assert!(decimal("12a").is_err());
    }

    /// `command`, one header line as written (escapes and all), a blank line, NUL.
    fn with_header(command: &str, header_line: &str) -> Vec<u8> {
        format!("{command}\n{header_line}\n\n\0").into_bytes()
    }
}
