//! Lingering close: when the broker ends a connection, the peer must read the last bytes
//! (an MQTT 5 DISCONNECT with its reason, a STOMP ERROR frame, a WebSocket close frame,
//! an HTTP error), even if it is still sending. Closing a socket with unread input makes
//! the kernel send a reset, and a reset makes the peer's kernel drop what it had received
//! but its application had not read yet: the refusal is lost.
//!
//! So every accepted TCP stream is wrapped in a [`Lingering`] stream. When it is dropped
//! and the peer has not closed its side (no end of stream was read), a small task takes
//! the socket over: it shuts down the write side (the peer reads what was written, then
//! the end of the stream), reads and discards what the peer still sends until the peer
//! closes, `listeners.linger_timeout` passes or `listeners.linger_max_bytes` were read,
//! and only then closes the socket. The connection's own task, its session and its state
//! are gone by then: the drain costs one small task and a socket, for a bounded time.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::metrics::Metrics;

/// Bytes read per call while draining.
const DRAIN_CHUNK: usize = 2048;

/// How a connection lingers: the bounds from `[listeners]`, and where it is counted.
#[derive(Clone)]
pub(crate) struct LingerPolicy {
    /// How long to drain at most (`listeners.linger_timeout`); zero: no lingering.
    pub(crate) timeout: Duration,
    /// How many bytes to discard at most (`listeners.linger_max_bytes`).
    pub(crate) max_bytes: usize,
    /// Where lingering closes are counted.
    pub(crate) metrics: Arc<Metrics>,
}

/// An accepted TCP stream that drains before it closes, unless the peer closed first.
pub(crate) struct Lingering {
    /// The socket; taken by the drain task on drop.
    stream: Option<TcpStream>,
    /// Whether an end of stream was read: the peer closed, nothing to drain.
    peer_closed: bool,
    policy: Arc<LingerPolicy>,
}

impl Lingering {
    /// Wraps an accepted stream.
    pub(crate) fn new(stream: TcpStream, policy: Arc<LingerPolicy>) -> Self {
        Self {
            stream: Some(stream),
            peer_closed: false,
            policy,
        }
    }

    fn stream(&mut self) -> io::Result<&mut TcpStream> {
        self.stream.as_mut().ok_or_else(|| io::ErrorKind::NotConnected.into())
    }
}

impl AsyncRead for Lingering {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let wanted = buf.remaining() > 0;
        let stream = match this.stream() {
            Ok(stream) => stream,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let result = Pin::new(stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &result {
            if wanted && buf.filled().len() == before {
                this.peer_closed = true;
            }
        }
        result
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(stream) => Pin::new(stream).poll_write(cx, data),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => Pin::new(stream).poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => Pin::new(stream).poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        if self.peer_closed || self.policy.timeout.is_zero() {
            return;
        }
        let Some(stream) = self.stream.take() else { return };
        // Outside a runtime (a test dropping a stream late) the socket simply closes.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain(stream, self.policy.clone()));
        }
    }
}

/// Shut down the write side, then read and discard until the peer closes or a bound
/// is reached; the socket closes when this returns.
async fn drain(mut stream: TcpStream, policy: Arc<LingerPolicy>) {
    // Already shut down by the connection (the usual case): the second one is harmless.
    let _ = stream.shutdown().await;
    let deadline = tokio::time::Instant::now() + policy.timeout;
    let mut chunk = [0u8; DRAIN_CHUNK];
    let mut discarded = 0usize;
    let cut = loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => break false,
            Ok(Ok(n)) => {
                discarded += n;
                if discarded >= policy.max_bytes {
                    break true;
                }
            }
            Err(_) => break true,
        }
    };
    policy.metrics.lingered(discarded, cut);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (server, client)
    }

    fn policy(timeout: Duration) -> Arc<LingerPolicy> {
        Arc::new(LingerPolicy {
            timeout,
            max_bytes: 1 << 20,
            metrics: Arc::new(Metrics::default()),
        })
    }

    /// The server writes its last words and closes while the client is still sending:
    /// without lingering the unread input makes a reset that can destroy the last words
    /// before the client reads them; with it the client reads them, then the end.
    #[tokio::test]
    async fn last_words_reach_a_peer_that_keeps_sending() {
        let (server, mut client) = pair().await;
        let policy = policy(Duration::from_secs(2));
        let mut server = Lingering::new(server, policy.clone());
        // The client sends before and after the server's close.
        client.write_all(&[b'x'; 10_000]).await.unwrap();
        server.write_all(b"refused\n").await.unwrap();
        server.shutdown().await.unwrap();
        drop(server);
        for _ in 0..20 {
            client.write_all(&[b'y'; 1000]).await.unwrap();
        }
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut got))
            .await
            .expect("the end of the stream arrives")
            .expect("no reset");
        assert_eq!(got, b"refused\n");
        drop(client);
        // The drain task sees the client close and counts what it discarded.
        for _ in 0..100 {
            if policy.metrics.render().contains("ferry_lingering_closes_total 1") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let text = policy.metrics.render();
        assert!(text.contains("ferry_lingering_closes_total 1"), "{text}");
        assert!(text.contains("ferry_linger_discarded_bytes_total 30000"), "{text}");
    }

    #[tokio::test]
    async fn a_peer_that_closed_first_is_not_drained() {
        let (server, client) = pair().await;
        let policy = policy(Duration::from_secs(2));
        let mut server = Lingering::new(server, policy.clone());
        drop(client);
        let mut buf = [0u8; 8];
        assert_eq!(server.read(&mut buf).await.unwrap(), 0);
        drop(server);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(policy.metrics.render().contains("ferry_lingering_closes_total 0"));
    }

    #[tokio::test]
    async fn a_silent_peer_is_drained_no_longer_than_the_timeout() {
        let (server, mut client) = pair().await;
        let policy = policy(Duration::from_millis(100));
        drop(Lingering::new(server, policy.clone()));
        let mut got = Vec::new();
        // The client reads the end of the stream at once (write side shut down)...
        tokio::time::timeout(Duration::from_secs(2), client.read_to_end(&mut got))
            .await
            .expect("end of stream")
            .expect("no reset");
        // ... and the drain gives up after its timeout, counted as cut.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(policy.metrics.render().contains("ferry_linger_cut_total 1"));
    }
}
