//! A STOMP test client speaking raw frames over TCP or WebSocket, reading the broker's
//! frames with ferry-stomp's decoder.

use std::time::Duration;

use bytes::BytesMut;
use ferry_stomp::codec::{Command, Decoded, Decoder, Frame, Limits, Version};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::process::Broker;

/// How long a read waits for the broker before the test fails.
const WAIT: Duration = Duration::from_secs(5);

/// The connection under a [`Stomp`] client.
enum Link {
    Tcp(TcpStream),
    Ws(Box<WebSocketStream<MaybeTlsStream<TcpStream>>>),
}

/// A STOMP client speaking raw frames.
pub struct Stomp {
    link: Link,
    /// The decoder of the broker's frames (its version follows the CONNECTED frame).
    pub decoder: Decoder,
    buf: BytesMut,
    /// Over WebSocket: whether each message received was binary.
    pub binary: Vec<bool>,
    /// Heart-beats skipped while waiting for a frame.
    pub heart_beats: usize,
}

impl Stomp {
    /// A client over TCP to the broker's `stomp` listener.
    pub async fn tcp(b: &Broker) -> Stomp {
        Self::over(Link::Tcp(TcpStream::connect(b.addr("stomp")).await.unwrap()))
    }

    /// A WebSocket offering `protocols`; returns the client and the one chosen.
    pub async fn ws(b: &Broker, protocols: &str) -> (Stomp, Option<String>) {
        let mut request = format!("ws://{}/stomp", b.addr("ws")).into_client_request().unwrap();
        if !protocols.is_empty() {
            request.headers_mut().insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
        }
        let (ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        let chosen = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap().to_owned());
        (Self::over(Link::Ws(Box::new(ws))), chosen)
    }

    fn over(link: Link) -> Stomp {
        Stomp {
            link,
            decoder: Decoder::with_version(Limits::default(), Version::V1_2),
            buf: BytesMut::new(),
            binary: Vec::new(),
            heart_beats: 0,
        }
    }

    /// Write `raw` as it is (over WebSocket: one text message).
    pub async fn send(&mut self, raw: impl AsRef<[u8]>) {
        let raw = raw.as_ref();
        match &mut self.link {
            Link::Tcp(s) => s.write_all(raw).await.unwrap(),
            Link::Ws(ws) => {
                let text = String::from_utf8(raw.to_vec()).expect("text frames in tests");
                ws.send(WsMessage::text(text)).await.unwrap()
            }
        }
    }

    /// `raw` cut into pieces of `chunk` bytes, each written on its own: one WebSocket
    /// message per piece (binary ones with `binary`), as a bridge that forwards a TCP
    /// client's bytes as they arrive writes them; over TCP, one write per piece.
    pub async fn send_split(&mut self, raw: impl AsRef<[u8]>, chunk: usize, binary: bool) {
        for piece in raw.as_ref().chunks(chunk) {
            match &mut self.link {
                Link::Tcp(s) => {
                    s.write_all(piece).await.unwrap();
                    s.flush().await.unwrap();
                }
                Link::Ws(ws) if binary => ws.send(WsMessage::binary(piece.to_vec())).await.unwrap(),
                Link::Ws(ws) => {
                    let text = String::from_utf8(piece.to_vec()).expect("ASCII frames in tests");
                    ws.send(WsMessage::text(text)).await.unwrap()
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Every frame that arrives within `window`, heart-beats skipped.
    pub async fn frames_within(&mut self, window: Duration) -> Vec<Frame> {
        let mut frames = Vec::new();
        let deadline = tokio::time::Instant::now() + window;
        while let Ok(Some(item)) = tokio::time::timeout_at(deadline, self.item()).await {
            if let Decoded::Frame(f) = item {
                frames.push(f);
            }
        }
        frames
    }

    /// More bytes from the broker; false at the end of the connection.
    async fn read_more(&mut self) -> bool {
        match &mut self.link {
            Link::Tcp(s) => {
                self.buf.reserve(16 * 1024);
                matches!(s.read_buf(&mut self.buf).await, Ok(n) if n > 0)
            }
            Link::Ws(ws) => loop {
                match ws.next().await {
                    Some(Ok(WsMessage::Text(t))) => {
                        self.binary.push(false);
                        self.buf.extend_from_slice(t.as_bytes());
                        return true;
                    }
                    Some(Ok(WsMessage::Binary(b))) => {
                        self.binary.push(true);
                        self.buf.extend_from_slice(&b);
                        return true;
                    }
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return false,
                    Some(Ok(_)) => continue,
                }
            },
        }
    }

    /// The next frame or heart-beat; `None` once the broker closed.
    pub async fn item(&mut self) -> Option<Decoded> {
        loop {
            if let Some(item) = self.decoder.decode(&mut self.buf).expect("the broker writes valid frames") {
                return Some(item);
            }
            if !tokio::time::timeout(WAIT, self.read_more())
                .await
                .expect("the broker answers in time")
            {
                return None;
            }
        }
    }

    /// The next frame, skipping heart-beats.
    pub async fn frame(&mut self) -> Frame {
        loop {
            match self.item().await {
                Some(Decoded::Frame(f)) => return f,
                Some(Decoded::HeartBeat) => self.heart_beats += 1,
                None => panic!("connection closed while waiting for a frame"),
            }
        }
    }

    /// The next frame, skipping heart-beats; `None` once the broker closed.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            match self.item().await {
                Some(Decoded::Frame(f)) => return Some(f),
                Some(Decoded::HeartBeat) => self.heart_beats += 1,
                None => return None,
            }
        }
    }

    /// Frames until the broker closes the connection.
    pub async fn until_closed(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(item) = self.item().await {
            if let Decoded::Frame(f) = item {
                frames.push(f);
            }
        }
        frames
    }

    /// Nothing but heart-beats arrives for a while.
    pub async fn quiet(&mut self) {
        let got = tokio::time::timeout(Duration::from_millis(300), self.frame()).await;
        assert!(got.is_err(), "unexpected frame {got:?}");
    }

    /// CONNECT offering the versions `accept`; asserts CONNECTED and follows its version.
    pub async fn connect(&mut self, accept: &str) -> Frame {
        self.send(format!("CONNECT\naccept-version:{accept}\nhost:ferry\n\n\0")).await;
        let f = self.frame().await;
        assert_eq!(f.command, Command::Connected, "{f:?}");
        if let Some(v) = f.header("version").and_then(Version::from_token) {
            self.decoder.set_version(v);
        }
        f
    }

    /// Send `raw` with `receipt:ID` appended to its headers and wait for the RECEIPT.
    pub async fn with_receipt(&mut self, command_and_headers: &str, body: &str, id: &str) {
        self.send(format!("{command_and_headers}\nreceipt:{id}\n\n{body}\0")).await;
        let f = self.frame().await;
        assert_eq!(f.command, Command::Receipt, "{f:?}");
        assert_eq!(f.header("receipt-id"), Some(id));
    }
}
