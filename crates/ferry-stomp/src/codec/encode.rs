//! The encoder: [`Frame`]s to bytes, for either side of a connection.
//!
//! What it writes:
//!
//! * the command and headers with LF line ends (valid in every version);
//! * header names and values escaped as the version and command require (none in 1.0
//!   and in `CONNECT`/`STOMP`/`CONNECTED`), refusing with [`EncodeError`] what cannot be
//!   written so that it reads back the same (a header injection, otherwise);
//! * its own `content-length`, as the last header, on every `SEND`, `MESSAGE` and
//!   `ERROR` frame and on any frame with a non-empty body, so binary bodies (NULs and
//!   all) are safe. `content-length` headers in the frame are ignored: the length
//!   written is always the body's;
//! * the body, then the NUL.
//!
//! A body is never copied by [`encode_parts`] or by [`encode_head`] (which writes
//! everything before the body), so one message's body can be shared by every
//! subscriber while each gets its own head.

use bytes::{BufMut, Bytes, BytesMut};

use super::decode::CONTENT_LENGTH;
use super::error::EncodeError;
use super::escape::{check_header, escape_into, Escaping};
use super::frame::{Command, Frame};
use super::version::Version;

/// The octet that ends every frame.
pub const FRAME_END: &[u8] = b"\0";

/// What a heart-beat is on the wire: one EOL. LF is valid in every version.
pub const HEARTBEAT: &[u8] = b"\n";

/// What the encoder reads of a frame: a [`Frame`], or a [`FrameRef`] whose headers are
/// borrowed (the broker's MESSAGE frames, built without an allocation per header).
pub trait Encodable {
    /// The command line.
    fn command(&self) -> Command;
    /// The headers in wire order; a `content-length` among them is ignored.
    fn header_pairs(&self) -> impl Iterator<Item = (&str, &str)> + Clone;
    /// The body.
    fn body(&self) -> &Bytes;
}

impl Encodable for Frame {
    fn command(&self) -> Command {
        self.command
    }

    fn header_pairs(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.headers.iter()
    }

    fn body(&self) -> &Bytes {
        &self.body
    }
}

/// A frame whose headers are borrowed: encodes exactly as the [`Frame`] with the same
/// command, headers and body.
#[derive(Debug, Clone, Copy)]
pub struct FrameRef<'a> {
    /// The command line.
    pub command: Command,
    /// The headers, in wire order.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body.
    pub body: &'a Bytes,
}

impl Encodable for FrameRef<'_> {
    fn command(&self) -> Command {
        self.command
    }

    fn header_pairs(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.headers.iter().copied()
    }

    fn body(&self) -> &Bytes {
        self.body
    }
}

/// Append `frame`, encoded for a session speaking `version`, to `dst`.
/// On error nothing is appended.
pub fn encode(frame: &impl Encodable, version: Version, dst: &mut BytesMut) -> Result<(), EncodeError> {
    let body = frame.body();
    write_head(frame, version, dst, body.len() + FRAME_END.len())?;
    dst.put_slice(body);
    dst.put_slice(FRAME_END);
    Ok(())
}

/// Append everything of `frame` that comes before its body (command, headers with the
/// `content-length` of `frame.body`, blank line) to `dst`. The caller then writes
/// `frame.body` and [`FRAME_END`]. On error nothing is appended.
pub fn encode_head(frame: &impl Encodable, version: Version, dst: &mut BytesMut) -> Result<(), EncodeError> {
    write_head(frame, version, dst, 0)
}

/// [`encode_head`], making room for `then` more bytes in the same reservation.
fn write_head(frame: &impl Encodable, version: Version, dst: &mut BytesMut, then: usize) -> Result<(), EncodeError> {
    let command = frame.command();
    let escaping = Escaping::for_frame(Some(version), command);
    let mut size = command.as_str().len() + 2;
    for (name, value) in own_headers(frame) {
        check_header(name, value, escaping)?;
        size += name.len() + value.len() + 2;
    }
    let mut digits = itoa::Buffer::new();
    let content_length = writes_content_length(frame).then(|| digits.format(frame.body().len()));
    if let Some(length) = content_length {
        size += CONTENT_LENGTH.len() + length.len() + 2;
    }
    dst.reserve(size + then);
    dst.put_slice(command.as_str().as_bytes());
    dst.put_u8(b'\n');
    for (name, value) in own_headers(frame) {
        escape_into(name, escaping, dst);
        dst.put_u8(b':');
        escape_into(value, escaping, dst);
        dst.put_u8(b'\n');
    }
    if let Some(length) = content_length {
        dst.put_slice(CONTENT_LENGTH.as_bytes());
        dst.put_u8(b':');
        dst.put_slice(length.as_bytes());
        dst.put_u8(b'\n');
    }
    dst.put_u8(b'\n');
    Ok(())
}

/// `frame` as three pieces for a vectored write: head, body (shared with `frame`, not
/// copied) and the NUL. Concatenated they equal what [`encode`] writes.
pub fn encode_parts(frame: &impl Encodable, version: Version) -> Result<[Bytes; 3], EncodeError> {
    let mut head = BytesMut::new();
    encode_head(frame, version, &mut head)?;
    Ok([head.freeze(), frame.body().clone(), Bytes::from_static(FRAME_END)])
}

/// Append one heart-beat (an EOL) to `dst`.
pub fn encode_heartbeat(dst: &mut BytesMut) {
    dst.put_slice(HEARTBEAT);
}

/// The frame's headers the encoder writes as given: all but `content-length`.
fn own_headers(frame: &impl Encodable) -> impl Iterator<Item = (&str, &str)> + Clone {
    frame.header_pairs().filter(|(name, _)| *name != CONTENT_LENGTH)
}

/// Whether the encoder writes a `content-length` for `frame`.
pub(crate) fn writes_content_length(frame: &impl Encodable) -> bool {
    frame.command().may_have_body() || !frame.body().is_empty()
}

#[cfg(test)]
mod tests {
    use super::super::frame::Command;
    use super::*;

    fn wire(frame: &Frame, version: Version) -> Vec<u8> {
        let mut dst = BytesMut::new();
        encode(frame, version, &mut dst).unwrap();
        dst.to_vec()
    }

    #[test]
    fn spec_connect_and_connected() {
        let connect = Frame::new(Command::Connect)
            .with_header("accept-version", "1.2")
            .with_header("host", "stomp.github.org");
        assert_eq!(
            wire(&connect, Version::V1_2),
            b"CONNECT\naccept-version:1.2\nhost:stomp.github.org\n\n\0"
        );
        let connected = Frame::new(Command::Connected).with_header("version", "1.2");
        assert_eq!(wire(&connected, Version::V1_2), b"CONNECTED\nversion:1.2\n\n\0");
    }

    #[test]
    fn spec_frames_without_body() {
        let v = Version::V1_2;
        let subscribe = Frame::new(Command::Subscribe)
            .with_header("id", "0")
            .with_header("destination", "/queue/foo")
            .with_header("ack", "client");
        assert_eq!(wire(&subscribe, v), b"SUBSCRIBE\nid:0\ndestination:/queue/foo\nack:client\n\n\0");
        let ack = Frame::new(Command::Ack)
            .with_header("id", "12345")
            .with_header("transaction", "tx1");
        assert_eq!(wire(&ack, v), b"ACK\nid:12345\ntransaction:tx1\n\n\0");
        let receipt = Frame::new(Command::Receipt).with_header("receipt-id", "message-12345");
        assert_eq!(wire(&receipt, v), b"RECEIPT\nreceipt-id:message-12345\n\n\0");
    }

    #[test]
    fn spec_send_and_message_get_a_content_length() {
        let send = Frame::new(Command::Send)
            .with_header("destination", "/queue/a")
            .with_header("content-type", "text/plain")
            .with_body("hello queue a\n");
        assert_eq!(
            wire(&send, Version::V1_2),
            b"SEND\ndestination:/queue/a\ncontent-type:text/plain\ncontent-length:14\n\nhello queue a\n\0"
        );
        let message = Frame::new(Command::Message)
            .with_header("subscription", "0")
            .with_header("message-id", "007")
            .with_header("destination", "/queue/a")
            .with_header("content-type", "text/plain")
            .with_body("hello queue a");
        assert_eq!(
            wire(&message, Version::V1_2),
            &b"MESSAGE\nsubscription:0\nmessage-id:007\ndestination:/queue/a\ncontent-type:text/plain\ncontent-length:13\n\nhello queue a\0"[..]
        );
        let empty = Frame::new(Command::Error).with_header("message", "bye");
        assert_eq!(wire(&empty, Version::V1_0), b"ERROR\nmessage:bye\ncontent-length:0\n\n\0");
    }

    #[test]
    fn spec_error_with_body() {
        let body = "The message:\n-----\nMESSAGE\ndestined:/queue/a\nreceipt:message-12345\n\nHello queue a!\n-----\nDid not contain a destination header, which is REQUIRED\nfor message propagation.\n";
        let error = Frame::new(Command::Error)
            .with_header("receipt-id", "message-12345")
            .with_header("content-type", "text/plain")
            .with_header("content-length", "171")
            .with_header("message", " malformed frame received")
            .with_body(body);
        let expected = format!(
            "ERROR\nreceipt-id:message-12345\ncontent-type:text/plain\nmessage: malformed frame received\ncontent-length:170\n\n{body}\0"
        );
        assert_eq!(
            wire(&error, Version::V1_2),
            expected.as_bytes(),
            "the frame's content-length is replaced by the true one"
        );
    }

    #[test]
    fn binary_bodies_and_stray_content_lengths() {
        let f = Frame::new(Command::Send)
            .with_header("content-length", "1")
            .with_header("content-length", "2")
            .with_body(&b"\0\xff\0"[..]);
        assert_eq!(wire(&f, Version::V1_1), b"SEND\ncontent-length:3\n\n\0\xff\0\0");
        let f = Frame::new(Command::Receipt).with_body("x");
        assert_eq!(
            wire(&f, Version::V1_2),
            b"RECEIPT\ncontent-length:1\n\nx\0",
            "any body gets a length"
        );
    }

    #[test]
    fn escapes_by_version_and_command() {
        let f = Frame::new(Command::Message).with_header("a:b", "c:d\ne\\f\rg");
        assert_eq!(
            wire(&f, Version::V1_2),
            b"MESSAGE\na\\cb:c\\cd\\ne\\\\f\\rg\ncontent-length:0\n\n\0"
        );
        assert_eq!(wire(&f, Version::V1_1), b"MESSAGE\na\\cb:c\\cd\\ne\\\\f\rg\ncontent-length:0\n\n\0");
        let f = Frame::new(Command::Connect).with_header("host", "a:b\\c");
        assert_eq!(wire(&f, Version::V1_2), b"CONNECT\nhost:a:b\\c\n\n\0", "CONNECT is never escaped");
        let f = Frame::new(Command::Send).with_header("k", "a:b\\c");
        assert_eq!(wire(&f, Version::V1_0), b"SEND\nk:a:b\\c\ncontent-length:0\n\n\0");
    }

    #[test]
    fn refuses_header_injection() {
        let mut dst = BytesMut::from(&b"kept"[..]);
        let f = Frame::new(Command::Message).with_header("destination", "/a\n\nevil\0");
        assert!(matches!(
            encode(&f, Version::V1_0, &mut dst),
            Err(EncodeError::Unrepresentable { .. })
        ));
        let f = Frame::new(Command::Connected).with_header("a:b", "c");
        assert!(encode(&f, Version::V1_2, &mut dst).is_err());
        let f = Frame::new(Command::Send).with_header("", "c");
        assert_eq!(encode(&f, Version::V1_2, &mut dst), Err(EncodeError::EmptyHeaderName));
        let f = Frame::new(Command::Send).with_header("k", "v\r");
        assert!(encode(&f, Version::V1_1, &mut dst).is_err());
        assert_eq!(&dst[..], b"kept", "nothing written on error");
    }

    #[test]
    fn parts_share_the_body() {
        let body = Bytes::from(vec![7u8; 1000]);
        let f = Frame::new(Command::Message)
            .with_header("subscription", "s")
            .with_body(body.clone());
        let [head, shared, end] = encode_parts(&f, Version::V1_2).unwrap();
        assert_eq!(shared.as_ptr(), body.as_ptr(), "not copied");
        assert_eq!([&head[..], &shared[..], &end[..]].concat(), wire(&f, Version::V1_2));
    }

    #[test]
    fn heart_beat_is_one_eol() {
        let mut dst = BytesMut::new();
        encode_heartbeat(&mut dst);
        assert_eq!(&dst[..], b"\n");
    }

    #[test]
    fn a_borrowed_frame_encodes_as_the_owned_one() {
        let headers = [
            ("destination", "/topic/a.b"),
            ("message-id", "s-7"),
            ("content-length", "999"),
            ("x-custom", "a b"),
        ];
        let body = Bytes::from_static(b"h\0i");
        let mut owned = Frame::new(Command::Message);
        for (name, value) in headers {
            owned.headers.push(name, value);
        }
        owned.body = body.clone();
        let borrowed = FrameRef {
            command: Command::Message,
            headers: &headers,
            body: &body,
        };
        for version in [Version::V1_0, Version::V1_1, Version::V1_2] {
            let mut dst = BytesMut::new();
            encode(&borrowed, version, &mut dst).unwrap();
            assert_eq!(dst.to_vec(), wire(&owned, version), "{version:?}");
            let parts = encode_parts(&borrowed, version).unwrap();
            assert_eq!(parts.concat(), wire(&owned, version));
        }
    }
}
