//! The STOMP frame as data: its [`Command`], its ordered [`Headers`] and its body.
//!
//! Header names and values here are always the *decoded* text (escapes already
//! resolved); escaping is the business of the decoder and the encoder only.

use std::fmt;

use bytes::Bytes;

/// A STOMP command: the first line of a frame (STOMP 1.2 §"Augmented BNF").
///
/// Commands are case-sensitive; client and server commands live in one enum because
/// the codec decodes and encodes both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Client: open a session (every version).
    Connect,
    /// Client: open a session; the 1.2 synonym of `CONNECT` that sniffers can tell from HTTP.
    Stomp,
    /// Server: the session is open.
    Connected,
    /// Client: publish a message to a destination.
    Send,
    /// Client: subscribe to a destination.
    Subscribe,
    /// Client: end a subscription.
    Unsubscribe,
    /// Client: acknowledge a message.
    Ack,
    /// Client: refuse a message (1.1+).
    Nack,
    /// Client: start a transaction.
    Begin,
    /// Client: commit a transaction.
    Commit,
    /// Client: roll back a transaction.
    Abort,
    /// Client: end the session gracefully.
    Disconnect,
    /// Server: a message delivered to a subscription.
    Message,
    /// Server: acknowledgement of a client frame that asked for a receipt.
    Receipt,
    /// Server: something went wrong; the connection closes after it.
    Error,
}

impl Command {
    /// Every command, client commands first.
    pub const ALL: [Command; 15] = [
        Command::Connect,
        Command::Stomp,
        Command::Send,
        Command::Subscribe,
        Command::Unsubscribe,
        Command::Ack,
        Command::Nack,
        Command::Begin,
        Command::Commit,
        Command::Abort,
        Command::Disconnect,
        Command::Connected,
        Command::Message,
        Command::Receipt,
        Command::Error,
    ];

    /// The command as it appears on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Connected => "CONNECTED",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
            Command::Message => "MESSAGE",
            Command::Receipt => "RECEIPT",
            Command::Error => "ERROR",
        }
    }

    /// The command spelled exactly `bytes` (case-sensitive), if any.
    pub fn from_bytes(bytes: &[u8]) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.as_str().as_bytes() == bytes)
    }

    /// True for the commands a client sends (STOMP 1.2 `client-command`).
    pub const fn is_client(self) -> bool {
        !self.is_server()
    }

    /// True for the commands a server sends (STOMP 1.2 `server-command`).
    pub const fn is_server(self) -> bool {
        matches!(self, Command::Connected | Command::Message | Command::Receipt | Command::Error)
    }

    /// True for `CONNECT`, `STOMP` and `CONNECTED`: the frames exchanged before the version
    /// is settled, whose headers are never escaped (STOMP 1.2 §"Value Encoding").
    pub const fn is_handshake(self) -> bool {
        matches!(self, Command::Connect | Command::Stomp | Command::Connected)
    }

    /// True for `SEND`, `MESSAGE` and `ERROR`, the only frames that may carry a body
    /// (STOMP 1.2 §"Body"). The encoder always gives these a `content-length`.
    pub const fn may_have_body(self) -> bool {
        matches!(self, Command::Send | Command::Message | Command::Error)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A frame's headers, in wire order, repetitions kept.
///
/// STOMP 1.2 §"Repeated Header Entries": when a name repeats, the first entry is the
/// value; later ones are history. [`Headers::get`] therefore returns the first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// No headers.
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// No headers, room for `capacity`.
    pub fn with_capacity(capacity: usize) -> Self {
        Self(Vec::with_capacity(capacity))
    }

    /// The value of the first header called `name` (names are case-sensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every value of the headers called `name`, in wire order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// True when at least one header is called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Append a header after the existing ones (it does not replace an earlier one with
    /// the same name; see [`Headers::set`]).
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// Give `name` the value `value`: the first header called `name` is changed in place
    /// and later repetitions are removed; without one, the header is appended.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.0.iter().position(|(n, _)| n == name) {
            Some(first) => {
                self.0[first].1 = value;
                let mut index = 0;
                self.0.retain(|(n, _)| {
                    let keep = index <= first || n != name;
                    index += 1;
                    keep
                });
            }
            None => self.push(name, value),
        }
    }

    /// Remove every header called `name`; returns how many were removed.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.0.len();
        self.0.retain(|(n, _)| n != name);
        before - self.0.len()
    }

    /// The headers as `(name, value)` pairs, in wire order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + Clone {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// How many header entries there are, repetitions included.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries as a slice.
    pub fn as_slice(&self) -> &[(String, String)] {
        &self.0
    }

    /// The entries, taken out.
    pub fn into_vec(self) -> Vec<(String, String)> {
        self.0
    }
}

impl From<Vec<(String, String)>> for Headers {
    fn from(entries: Vec<(String, String)>) -> Self {
        Self(entries)
    }
}

impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        Self(iter.into_iter().map(|(n, v)| (n.into(), v.into())).collect())
    }
}

impl IntoIterator for Headers {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// One STOMP frame: command, headers, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The command line.
    pub command: Command,
    /// The headers, decoded, in wire order. A decoded frame keeps the `content-length`
    /// header the peer sent; the encoder ignores any given here and writes its own.
    pub headers: Headers,
    /// The body; on decode, a slice of the input buffer (no copy).
    pub body: Bytes,
}

impl Frame {
    /// A frame with no headers and an empty body.
    pub fn new(command: Command) -> Self {
        Self {
            command,
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// Builder: append a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(name, value);
        self
    }

    /// Builder: set the body.
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_round_trips_through_its_name() {
        for c in Command::ALL {
            assert_eq!(Command::from_bytes(c.as_str().as_bytes()), Some(c));
            assert_eq!(c.to_string(), c.as_str());
            assert_ne!(c.is_client(), c.is_server());
        }
        assert_eq!(Command::from_bytes(b"send"), None, "commands are case-sensitive");
        assert_eq!(Command::from_bytes(b"SEND "), None);
        assert_eq!(Command::from_bytes(b""), None);
        assert_eq!(Command::ALL.iter().filter(|c| c.is_server()).count(), 4);
    }

    #[test]
    fn first_repeated_header_wins() {
        // STOMP 1.2 §"Repeated Header Entries": `foo:World` then `foo:Hello` → World.
        let h: Headers = [("foo", "World"), ("foo", "Hello")].into_iter().collect();
        assert_eq!(h.get("foo"), Some("World"));
        assert_eq!(h.get_all("foo").collect::<Vec<_>>(), ["World", "Hello"]);
        assert_eq!(h.get("Foo"), None, "names are case-sensitive");
    }

    #[test]
    fn set_replaces_the_first_and_drops_the_history() {
        let mut h: Headers = [("a", "1"), ("b", "2"), ("a", "3")].into_iter().collect();
        h.set("a", "x");
        assert_eq!(h.iter().collect::<Vec<_>>(), [("a", "x"), ("b", "2")]);
        h.set("c", "y");
        assert_eq!(h.iter().last(), Some(("c", "y")));
        assert_eq!(h.remove("b"), 1);
        assert_eq!(h.len(), 2);
        assert!(!h.contains("b"));
    }

    #[test]
    fn builder_sets_headers_and_body() {
        let f = Frame::new(Command::Send).with_header("destination", "/queue/a").with_body("hi");
        assert_eq!(f.header("destination"), Some("/queue/a"));
        assert_eq!(&f.body[..], b"hi");
    }
}
