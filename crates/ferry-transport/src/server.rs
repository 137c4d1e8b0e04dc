//! Starting and stopping the transport: binds the listeners, runs their accept loops,
//! tracks every connection task for a graceful shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry_core::{Adapter, Carrier, ConnectionInfo, Wakeup};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::{ListenerConfig, TransportConfig};
use crate::connection::{serve_stream, Start};
use crate::echo::EchoAdapter;
use crate::error::TransportError;
use crate::http::serve_http;
use crate::metrics::Metrics;
use crate::origin::OriginPolicy;
use crate::registry::Registry;
use crate::tls;

/// State every connection task shares.
pub(crate) struct Shared {
    pub(crate) config: TransportConfig,
    pub(crate) registry: Registry,
    pub(crate) origins: OriginPolicy,
    pub(crate) echo: Arc<dyn Adapter>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    next_id: AtomicU64,
}

impl Shared {
    pub(crate) fn next_connection_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// What a listener serves.
#[derive(Clone)]
enum Service {
    /// HTTP and WebSocket.
    Http,
    /// One protocol straight over the stream.
    Protocol(Arc<dyn Adapter>),
}

/// A running transport.
pub struct Server {
    shared: Arc<Shared>,
    bound: Vec<(&'static str, SocketAddr)>,
}

impl Server {
    /// Bind every listener the configuration enables and that has something to serve,
    /// and start accepting. Fails, naming the cause, if an address cannot be bound or
    /// the TLS material is unusable.
    pub async fn start(config: TransportConfig, registry: Registry) -> Result<Server, TransportError> {
        Self::start_with_metrics(config, registry, Metrics::default()).await
    }

    /// [`Server::start`], serving `metrics` (with the collectors registered on it) at
    /// `GET /metrics`.
    pub async fn start_with_metrics(config: TransportConfig, registry: Registry, metrics: Metrics) -> Result<Server, TransportError> {
        let http_tls = tls::acceptor(&config.tls, &[b"http/1.1"])?;
        let stream_tls = tls::acceptor(&config.tls, &[])?;
        let shared = Arc::new(Shared {
            origins: OriginPolicy::new(&config.http.allowed_origins, config.http.allow_missing_origin),
            registry,
            echo: Arc::new(EchoAdapter),
            metrics: Arc::new(metrics),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            next_id: AtomicU64::new(1),
            config,
        });
        let l = &shared.config.listeners;
        let mqtt = shared.registry.by_name("mqtt");
        let stomp = shared.registry.by_name("stomp");
        let plans: [(&'static str, &ListenerConfig, Option<Service>, bool); 6] = [
            ("ws", &l.ws, Some(Service::Http), false),
            ("wss", &l.wss, Some(Service::Http), true),
            ("mqtt", &l.mqtt, mqtt.clone().map(Service::Protocol), false),
            ("mqtts", &l.mqtts, mqtt.map(Service::Protocol), true),
            ("stomp", &l.stomp, stomp.clone().map(Service::Protocol), false),
            ("stomps", &l.stomps, stomp.map(Service::Protocol), true),
        ];
        let mut bound = Vec::new();
        for (name, listener, service, secure) in plans {
            if !listener.enabled {
                continue;
            }
            let Some(service) = service else {
                info!(listener = name, "not started: no adapter serves this protocol yet");
                continue;
            };
            let acceptor = match (secure, &service) {
                (false, _) => None,
                (true, Service::Http) => http_tls.clone(),
                (true, Service::Protocol(_)) => stream_tls.clone(),
            };
            if secure && acceptor.is_none() {
                info!(listener = name, "not started: no TLS certificate configured (tls.cert_file)");
                continue;
            }
            let socket = bind(listener.bind, l.backlog).map_err(|source| TransportError::Bind {
                listener: name,
                addr: listener.bind,
                source,
            })?;
            let addr = socket.local_addr().map_err(|source| TransportError::Bind {
                listener: name,
                addr: listener.bind,
                source,
            })?;
            info!(listener = name, %addr, tls = secure, "listening");
            bound.push((name, addr));
            shared.tracker.spawn(accept_loop(socket, name, acceptor, service, shared.clone()));
        }
        Ok(Server { shared, bound })
    }

    /// The listeners that run, with the addresses they bound.
    pub fn local_addrs(&self) -> &[(&'static str, SocketAddr)] {
        &self.bound
    }

    /// A token cancelled when shutdown begins.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }

    /// Stop accepting, ask every connection to close (WebSocket close 1001), and wait up
    /// to `grace` for them. Returns true if every connection closed in time.
    pub async fn shutdown(self, grace: Duration) -> bool {
        self.shared.shutdown.cancel();
        self.shared.tracker.close();
        tokio::time::timeout(grace, self.shared.tracker.wait()).await.is_ok()
    }
}

/// A listening socket with `backlog` pending connections allowed.
fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

async fn accept_loop(socket: TcpListener, name: &'static str, tls: Option<TlsAcceptor>, service: Service, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            accepted = socket.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                spawn_connection(stream, peer, name, tls.as_ref(), &service, &shared);
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(listener = name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    info!(listener = name, "stopped accepting");
}

/// Start the task that serves one accepted connection. Each kind of connection gets a
/// future of its own, so a plain MQTT connection's task is not as large as a TLS
/// handshake's or an HTTP connection's (a task's memory is its future's size).
fn spawn_connection(
    stream: TcpStream,
    peer: SocketAddr,
    name: &'static str,
    tls: Option<&TlsAcceptor>,
    service: &Service,
    shared: &Arc<Shared>,
) {
    let tracker = &shared.tracker;
    match (tls, service) {
        (Some(acceptor), _) => {
            tracker.spawn(handle_tls(stream, peer, name, acceptor.clone(), service.clone(), shared.clone()));
        }
        (None, Service::Http) => {
            tracker.spawn(serve_http(stream, peer, name, false, shared.clone()));
        }
        (None, Service::Protocol(adapter)) => {
            let info = stream_info(peer, name, false, shared);
            tracker.spawn(serve_stream(stream, info, Start::Open(adapter.clone()), shared.clone()));
        }
    }
}

fn stream_info(peer: SocketAddr, listener: &'static str, tls: bool, shared: &Shared) -> ConnectionInfo {
    ConnectionInfo {
        id: shared.next_connection_id(),
        peer,
        listener,
        tls,
        carrier: Carrier::Stream,
        subprotocol: None,
        wakeup: Wakeup::new(),
        credentials: None,
    }
}

async fn handle_tls(stream: TcpStream, peer: SocketAddr, name: &'static str, acceptor: TlsAcceptor, service: Service, shared: Arc<Shared>) {
    let timeout = shared.config.tls.handshake_timeout;
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => match service {
            Service::Http => serve_http(stream, peer, name, true, shared).await,
            Service::Protocol(adapter) => {
                let info = stream_info(peer, name, true, &shared);
                serve_stream(stream, info, Start::Open(adapter), shared).await
            }
        },
        Ok(Err(e)) => {
            shared.metrics.refused("tls_handshake");
            info!(%peer, listener = name, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            shared.metrics.refused("tls_timeout");
            info!(%peer, listener = name, "TLS handshake timed out");
        }
    }
}
