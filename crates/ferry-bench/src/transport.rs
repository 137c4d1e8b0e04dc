//! Connections to the broker: TCP (from a chosen loopback source address), TLS, and
//! the WebSocket upgrade, split into a [`Reader`] and a [`Writer`].
//!
//! WebSocket: fastwebsockets' client, the library the broker itself uses. The upgrade is
//! its `handshake::client` on hyper; then the stream is split: reading goes through
//! fastwebsockets' frame parser (which reads in large chunks and parses any number of
//! frames from its buffer without a system call each), while writing bypasses
//! `WebSocketWrite` so that many frames, masked and headed by fastwebsockets' own
//! `Frame`, leave in one `write` (see [`crate::outbox::Framing`]). tokio-tungstenite was
//! the alternative; it allocates a `Message` per frame and writes (or flushes) per
//! message through its `Sink`, which costs a client that must outrun the broker.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocketRead};
use ferry_transport::ws::deflate::MessageInflater;
use ferry_transport::ws::frame_reader::FrameReader;
use http_body_util::Empty;
use hyper::header::{
    CONNECTION, HOST, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::Request;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;

use crate::outbox::{Framing, Outbox};
use crate::url::Target;

type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Largest WebSocket message accepted from the broker.
const MAX_WS_MESSAGE: usize = 16 << 20;

/// Why a connection failed or ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    /// The TCP connection could not be made.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// Where to.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The source address could not be bound.
    #[error("bind source address {addr}: {source}")]
    Bind {
        /// Which.
        addr: IpAddr,
        /// Why.
        source: io::Error,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
    /// The WebSocket upgrade failed or was refused.
    #[error("WebSocket upgrade: {0}")]
    Upgrade(String),
    /// A WebSocket protocol error from the broker's side.
    #[error("WebSocket: {0}")]
    WebSocket(String),
    /// A read or write failed.
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
}

/// Everything needed to open connections to one broker URL.
#[derive(Clone)]
pub(crate) struct Connector {
    target: Arc<Target>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    subprotocol: &'static str,
    framing: Framing,
    sources: Vec<IpAddr>,
    /// Offer permessage-deflate on WebSocket connections.
    deflate: bool,
}

impl Connector {
    /// A connector for `target`. `subprotocol` is offered in the WebSocket upgrade and
    /// `framing` says how packets go into WebSocket messages; `tls` is required for TLS
    /// URLs; `spread` binds each connection to one of 127.0.0.2–127.0.0.254 in turn
    /// (IPv4 targets only).
    pub(crate) fn new(
        target: Arc<Target>,
        tls: Option<Arc<ClientConfig>>,
        subprotocol: &'static str,
        framing: Framing,
        spread: bool,
    ) -> Result<Connector, String> {
        let tls = match (target.transport.is_tls(), tls) {
            (false, _) => None,
            (true, None) => return Err(format!("{} needs a TLS configuration", target.url)),
            (true, Some(config)) => Some((TlsConnector::from(config), crate::tls::server_name(&target.host)?)),
        };
        let framing = if target.transport.is_websocket() {
            framing
        } else {
            Framing::Stream
        };
        let sources = if spread && target.addr.is_ipv4() {
            (2..=254).map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))).collect()
        } else {
            Vec::new()
        };
        Ok(Connector {
            target,
            tls,
            subprotocol,
            framing,
            sources,
            deflate: false,
        })
    }

    /// The same, offering permessage-deflate (RFC 7692) on WebSocket connections and
    /// inflating what the broker sends compressed.
    pub(crate) fn with_deflate(self, deflate: bool) -> Self {
        Self { deflate, ..self }
    }

    /// The URL this connector serves.
    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// Opens connection number `index` (which picks its source address), with the
    /// socket options of `small` if given.
    pub(crate) async fn connect(&self, index: usize, small: Option<SmallWindow>) -> Result<Conn, TransportError> {
        let source = (!self.sources.is_empty()).then(|| self.sources[index % self.sources.len()]);
        let tcp = tcp_connect(self.target.addr, source, small).await?;
        let stream: Box<dyn Stream> = match &self.tls {
            None => Box::new(tcp),
            Some((connector, name)) => Box::new(connector.connect(name.clone(), tcp).await.map_err(TransportError::Tls)?),
        };
        let outbox = Arc::new(Outbox::new(self.framing));
        if !self.target.transport.is_websocket() {
            let (r, w) = tokio::io::split(stream);
            return Ok(Conn {
                reader: Reader::Stream(Box::new(r)),
                writer: Writer(Box::new(w)),
                outbox,
            });
        }
        let io = self.upgrade(stream).await?;
        let (r, w) = tokio::io::split(io);
        if self.deflate {
            return Ok(Conn {
                reader: Reader::WsDeflate(Box::new(DeflateReader::new(Box::new(r)))),
                writer: Writer(Box::new(w)),
                outbox,
            });
        }
        let (mut ws, _unused) = fastwebsockets::after_handshake_split(Box::new(r) as BoxRead, tokio::io::sink(), Role::Client);
        ws.set_max_message_size(MAX_WS_MESSAGE);
        Ok(Conn {
            reader: Reader::Ws(Box::new(ws)),
            writer: Writer(Box::new(w)),
            outbox,
        })
    }

    /// The HTTP upgrade; returns the raw upgraded stream.
    async fn upgrade(&self, stream: Box<dyn Stream>) -> Result<Box<dyn Stream>, TransportError> {
        let t = &self.target;
        let host = match t.addr {
            SocketAddr::V6(_) if !t.host.eq_ignore_ascii_case("localhost") => format!("[{}]:{}", t.host, t.addr.port()),
            _ => format!("{}:{}", t.host, t.addr.port()),
        };
        let mut request = Request::builder();
        if self.deflate {
            request = request.header(SEC_WEBSOCKET_EXTENSIONS, "permessage-deflate");
        }
        let request = request
            .method("GET")
            .uri(t.path.as_str())
            .header(HOST, host)
            .header(UPGRADE, "websocket")
            .header(CONNECTION, "upgrade")
            .header(SEC_WEBSOCKET_KEY, fastwebsockets::handshake::generate_key())
            .header(SEC_WEBSOCKET_VERSION, "13")
            .header(SEC_WEBSOCKET_PROTOCOL, self.subprotocol)
            .body(Empty::<Bytes>::new())
            .map_err(|e| TransportError::Upgrade(e.to_string()))?;
        let (ws, response) = fastwebsockets::handshake::client(&SpawnExecutor, request, stream)
            .await
            .map_err(|e| TransportError::Upgrade(e.to_string()))?;
        if self.deflate
            && !response
                .headers()
                .get(SEC_WEBSOCKET_EXTENSIONS)
                .is_some_and(|v| v.as_bytes().starts_with(b"permessage-deflate"))
        {
            return Err(TransportError::Upgrade(
                "the broker did not accept permessage-deflate (is [websocket.compression] enabled?)".into(),
            ));
        }
        if let Some(chosen) = response.headers().get(SEC_WEBSOCKET_PROTOCOL) {
            if chosen.as_bytes() != self.subprotocol.as_bytes() {
                return Err(TransportError::Upgrade(format!(
                    "offered subprotocol {}, the broker chose {:?}",
                    self.subprotocol, chosen
                )));
            }
        }
        Ok(Box::new(ws.into_inner()))
    }
}

/// A byte stream (TCP or TLS over TCP) as one object.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// Socket options for a connection meant to stop reading, so that the broker's side
/// backs up after a few KiB instead of megabytes. Both are set before connecting.
///
/// * `SO_RCVBUF` fixed at `recv_buffer` bytes: the kernel no longer grows it, and the
///   window this side advertises (and its scale, in the SYN) stays that small.
/// * `TCP_MAXSEG` at `mss` bytes, announced in the SYN: Linux sizes a sender's buffer
///   from the peer's segment size (about twice ten segments), and loopback's 64 KiB
///   segments would give the broker's side of the socket megabytes of kernel buffer to
///   fill before the broker itself holds anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SmallWindow {
    /// Receive buffer, bytes (Linux doubles it for its bookkeeping).
    pub recv_buffer: u32,
    /// Largest segment the broker may send, bytes.
    pub mss: u32,
}

async fn tcp_connect(addr: SocketAddr, source: Option<IpAddr>, small: Option<SmallWindow>) -> Result<TcpStream, TransportError> {
    let connect_err = |source| TransportError::Connect { addr, source };
    let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(connect_err)?;
    if let Some(small) = small {
        socket.set_recv_buffer_size(small.recv_buffer).map_err(connect_err)?;
        socket2::SockRef::from(&socket).set_tcp_mss(small.mss).map_err(connect_err)?;
    }
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|source| TransportError::Bind { addr: ip, source })?;
    }
    let stream = socket.connect(addr).await.map_err(connect_err)?;
    stream.set_nodelay(true).map_err(connect_err)?;
    Ok(stream)
}

/// hyper's connection task runs on the current tokio runtime.
struct SpawnExecutor;

impl<Fut> hyper::rt::Executor<Fut> for SpawnExecutor
where
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    fn execute(&self, fut: Fut) {
        tokio::spawn(fut);
    }
}

/// An open connection: its two halves and its outbox.
pub(crate) struct Conn {
    /// Protocol bytes in.
    pub reader: Reader,
    /// Framed bytes out.
    pub writer: Writer,
    /// Replies and control frames waiting for the writer.
    pub outbox: Arc<Outbox>,
}

/// The receiving half: yields protocol bytes, WebSocket framing removed.
pub(crate) enum Reader {
    /// TCP or TLS.
    Stream(BoxRead),
    /// WebSocket (pongs and close replies go to the outbox).
    Ws(Box<WebSocketRead<BoxRead>>),
    /// WebSocket with permessage-deflate: frames cut and compressed messages inflated
    /// with the broker's own sans-IO pieces (fastwebsockets' reader refuses RSV1).
    WsDeflate(Box<DeflateReader>),
}

/// Reads a WebSocket whose server sends compressed messages.
pub(crate) struct DeflateReader {
    io: BoxRead,
    buf: BytesMut,
    frames: FrameReader,
    inflater: MessageInflater,
    /// A fragmented message so far: whether it is compressed, and its bytes.
    partial: Option<(bool, BytesMut)>,
}

impl DeflateReader {
    fn new(io: BoxRead) -> Self {
        Self {
            io,
            buf: BytesMut::with_capacity(16 * 1024),
            frames: FrameReader::new(MAX_WS_MESSAGE).with_deflate(),
            inflater: MessageInflater::shared(),
            partial: None,
        }
    }

    /// Appends the next message's bytes to `out` (inflated when compressed); 0 when the
    /// broker closed.
    async fn read(&mut self, out: &mut BytesMut, outbox: &Outbox) -> Result<usize, TransportError> {
        loop {
            let frame = match self.frames.next_frame(&mut self.buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    if self.buf.capacity() - self.buf.len() < 4096 {
                        self.buf.reserve(16 * 1024);
                    }
                    if self.io.read_buf(&mut self.buf).await? == 0 {
                        return Ok(0);
                    }
                    continue;
                }
                Err(v) => return Err(TransportError::WebSocket(v.reason.to_string())),
            };
            let (compressed, message) = match frame.opcode {
                OpCode::Close => return Ok(0),
                OpCode::Ping => {
                    outbox.push_control(Frame::pong(Payload::Owned(frame.payload.to_vec())));
                    continue;
                }
                OpCode::Pong => continue,
                OpCode::Text | OpCode::Binary if frame.fin => (frame.compressed, frame.payload),
                OpCode::Text | OpCode::Binary => {
                    self.partial = Some((frame.compressed, BytesMut::from(&frame.payload[..])));
                    continue;
                }
                OpCode::Continuation => {
                    let Some((compressed, mut data)) = self.partial.take() else {
                        return Err(TransportError::WebSocket("continuation without a message".into()));
                    };
                    data.extend_from_slice(&frame.payload);
                    if !frame.fin {
                        self.partial = Some((compressed, data));
                        continue;
                    }
                    (compressed, data.freeze())
                }
            };
            let message = if compressed {
                self.inflater
                    .inflate(&message, MAX_WS_MESSAGE)
                    .map_err(|e| TransportError::WebSocket(e.to_string()))?
            } else {
                message
            };
            if message.is_empty() {
                continue;
            }
            out.extend_from_slice(&message);
            return Ok(message.len());
        }
    }
}

impl Reader {
    /// Appends the next bytes received to `buf` and returns how many; 0 when the broker
    /// closed the connection. Not cancel-safe for WebSocket: only drop it to abandon the
    /// connection.
    pub(crate) async fn read(&mut self, buf: &mut BytesMut, outbox: &Outbox) -> Result<usize, TransportError> {
        match self {
            Reader::Stream(r) => {
                if buf.capacity() - buf.len() < 4096 {
                    buf.reserve(16 * 1024);
                }
                Ok(r.read_buf(buf).await?)
            }
            Reader::WsDeflate(ws) => ws.read(buf, outbox).await,
            Reader::Ws(ws) => loop {
                let mut send = |frame| {
                    outbox.push_control(frame);
                    std::future::ready(Ok::<(), io::Error>(()))
                };
                let frame = match ws.read_frame(&mut send).await {
                    Ok(frame) => frame,
                    Err(fastwebsockets::WebSocketError::UnexpectedEOF) => return Ok(0),
                    Err(fastwebsockets::WebSocketError::IoError(e)) => return Err(TransportError::Io(e)),
                    Err(e) => return Err(TransportError::WebSocket(e.to_string())),
                };
                match frame.opcode {
                    OpCode::Binary | OpCode::Text | OpCode::Continuation if !frame.payload.is_empty() => {
                        buf.extend_from_slice(&frame.payload);
                        return Ok(frame.payload.len());
                    }
                    OpCode::Close => return Ok(0),
                    _ => continue,
                }
            },
        }
    }
}

/// The sending half.
pub(crate) struct Writer(BoxWrite);

impl Writer {
    /// Writes all of `bytes` (already framed).
    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes).await
    }

    /// Shuts the sending side down (TCP FIN, TLS close_notify).
    pub(crate) async fn shutdown(&mut self) -> io::Result<()> {
        self.0.shutdown().await
    }
}

/// Sends everything pushed to `outbox` until the connection fails or `stop` fires;
/// then sends what is left and shuts the writing side down.
pub(crate) async fn drain_outbox(mut writer: Writer, outbox: Arc<Outbox>, stop: tokio_util::sync::CancellationToken) -> io::Result<()> {
    let mut out = BytesMut::new();
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = outbox.notified() => {}
        }
        if outbox.take_into(&mut out) {
            writer.write_all(&out).await?;
            out.clear();
        }
    }
    if outbox.take_into(&mut out) {
        writer.write_all(&out).await?;
    }
    let _ = writer.shutdown().await;
    Ok(())
}
