//! Starting and stopping the transport: binds the listeners, runs their accept loops
//! (admission: the listener's and the gatekeeper's limits, the PROXY protocol from
//! trusted proxies), tracks every connection task for a graceful shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry_auth::Gatekeeper;
use ferry_core::{Adapter, Carrier, ConnectionInfo, TransportCredentials, Wakeup};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::admission::{self, Admission, Denied, ListenerLimit, RefusalLog};
use crate::config::{is_trusted, ListenerConfig, TransportConfig};
use crate::connection::{serve, Start};
use crate::credentials;
use crate::echo::EchoAdapter;
use crate::error::TransportError;
use crate::http::serve_http;
use crate::linger::{LingerPolicy, Lingering};
use crate::live::LiveConnections;
use crate::metrics::Metrics;
use crate::origin::OriginPolicy;
use crate::proxy;
use crate::registry::Registry;
use crate::routes::HttpRouter;
use crate::tls;
use crate::ws::deflate::negotiate::ContextBudget;
use ferry_core::Connections;

/// State every connection task shares.
pub(crate) struct Shared {
    pub(crate) config: TransportConfig,
    pub(crate) registry: Registry,
    pub(crate) origins: OriginPolicy,
    pub(crate) echo: Arc<dyn Adapter>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) gate: Arc<Gatekeeper>,
    pub(crate) refusals: RefusalLog,
    pub(crate) shutdown: CancellationToken,
    /// The open connections, rung when shutdown begins.
    pub(crate) live: LiveConnections,
    pub(crate) tracker: TaskTracker,
    /// How connections the broker ends are drained before they close.
    pub(crate) linger: Arc<LingerPolicy>,
    /// The dedicated deflate contexts (context takeover) all connections share.
    pub(crate) deflate_budget: Arc<ContextBudget>,
    /// The HTTP routes of the HTTP listeners.
    pub(crate) routes: HttpRouter,
    next_id: AtomicU64,
}

impl Shared {
    pub(crate) fn next_connection_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether `peer` is one of `listeners.trusted_proxies`.
    pub(crate) fn trusts(&self, peer: std::net::IpAddr) -> bool {
        is_trusted(&self.config.listeners.trusted_proxies, peer)
    }
}

/// Whether a connection travels inside TLS, with what its client certificate says.
#[derive(Debug, Clone)]
pub(crate) enum Secure {
    /// Plain TCP.
    No,
    /// TLS; the client certificate's identity if a verified one was presented.
    Yes(Option<Arc<TransportCredentials>>),
}

impl Secure {
    /// Whether the connection is TLS.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Self::Yes(_))
    }

    /// The client certificate's identity, if any.
    pub(crate) fn credentials(&self) -> Option<&Arc<TransportCredentials>> {
        match self {
            Self::Yes(c) => c.as_ref(),
            Self::No => None,
        }
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

/// One running listener, shared by its accept loop and its connections.
struct Listener {
    name: &'static str,
    tls: Option<TlsAcceptor>,
    service: Service,
    limit: Option<Arc<ListenerLimit>>,
    proxy_protocol: bool,
}

/// Everything [`Server::start`] starts from ([`ServerParts::new`] fills in defaults).
pub struct ServerParts {
    /// The transport's configuration.
    pub config: TransportConfig,
    /// The protocol adapters.
    pub registry: Registry,
    /// The transport's metrics (served by a [`MetricsRoutes`](crate::routes::MetricsRoutes)
    /// when the binary registers one).
    pub metrics: Arc<Metrics>,
    /// Admission, bearer tokens, byte rates.
    pub gate: Arc<Gatekeeper>,
    /// The HTTP routes.
    pub routes: HttpRouter,
    /// Where every open connection is listed.
    pub connections: Arc<Connections>,
}

/// A running transport.
pub struct Server {
    shared: Arc<Shared>,
    bound: Vec<(&'static str, SocketAddr)>,
}

impl ServerParts {
    /// The parts a transport needs at least: its configuration and the protocol
    /// adapters; everyone admitted within the default limits ([`Gatekeeper::open`]),
    /// fresh metrics served at `GET /metrics`, a fresh list of connections. Override
    /// fields with struct update syntax: `ServerParts { gate, ..ServerParts::new(c, r) }`.
    pub fn new(config: TransportConfig, registry: Registry) -> Self {
        let metrics = Arc::new(Metrics::default());
        Self {
            config,
            registry,
            routes: HttpRouter::with_defaults(metrics.clone()),
            metrics,
            gate: Arc::new(Gatekeeper::open()),
            connections: Arc::new(Connections::new()),
        }
    }
}

impl Server {
    /// Bind every listener the configuration enables and that has something to serve,
    /// and start accepting. Fails, naming the cause, if an address cannot be bound or
    /// the TLS material is unusable. The `gate` admits each new connection (its
    /// connection counts and rates), verifies bearer tokens on WebSocket upgrades, and
    /// meters each connection's byte rate; the HTTP routes the binary registered are
    /// served (the `admin` listener runs only when some route serves it), and every
    /// open connection is listed in `connections`.
    pub async fn start(parts: ServerParts) -> Result<Server, TransportError> {
        let ServerParts {
            config,
            registry,
            metrics,
            gate,
            routes,
            connections,
        } = parts;
        let http_tls = tls::acceptor(&config.tls, &[b"http/1.1"])?;
        let stream_tls = tls::acceptor(&config.tls, &[])?;
        let linger = Arc::new(LingerPolicy {
            timeout: config.listeners.linger_timeout,
            max_bytes: config.listeners.linger_max_bytes,
            metrics: metrics.clone(),
        });
        let shared = Arc::new(Shared {
            origins: OriginPolicy::new(&config.http.allowed_origins, config.http.allow_missing_origin),
            registry,
            echo: Arc::new(EchoAdapter),
            deflate_budget: ContextBudget::new(config.websocket.compression.max_takeover_contexts),
            metrics,
            linger,
            gate,
            refusals: RefusalLog::default(),
            shutdown: CancellationToken::new(),
            live: LiveConnections::new(connections),
            routes,
            tracker: TaskTracker::new(),
            next_id: AtomicU64::new(1),
            config,
        });
        let l = &shared.config.listeners;
        let mqtt = shared.registry.by_name("mqtt");
        let stomp = shared.registry.by_name("stomp");
        let admin = shared.routes.serves("admin").then_some(Service::Http);
        let plans: [(&'static str, &ListenerConfig, Option<Service>, bool); 7] = [
            ("ws", &l.ws, Some(Service::Http), false),
            ("admin", &l.admin, admin, false),
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
            if listener.proxy_protocol && shared.config.listeners.trusted_proxies.is_empty() {
                warn!(
                    listener = name,
                    "proxy_protocol is on but listeners.trusted_proxies is empty: every connection will be refused"
                );
            }
            info!(
                listener = name,
                %addr,
                tls = secure,
                max_connections = listener.max_connections,
                proxy_protocol = listener.proxy_protocol,
                "listening"
            );
            bound.push((name, addr));
            let listener = Arc::new(Listener {
                name,
                tls: acceptor,
                service,
                limit: ListenerLimit::new(listener.max_connections),
                proxy_protocol: listener.proxy_protocol,
            });
            shared.tracker.spawn(accept_loop(socket, listener, shared.clone()));
        }
        Ok(Server { shared, bound })
    }

    /// The listeners that run, with the addresses they bound.
    pub fn local_addrs(&self) -> &[(&'static str, SocketAddr)] {
        &self.bound
    }

    /// A token cancelled when shutdown begins. It is for watching: cancelling it
    /// yourself stops the listeners but does not close the connections; call
    /// [`Server::shutdown`] for that.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }

    /// Stop accepting, ask every connection to close (WebSocket close 1001), and wait up
    /// to `grace` for them. Returns true if every connection closed in time.
    pub async fn shutdown(self, grace: Duration) -> bool {
        self.shared.shutdown.cancel();
        self.shared.live.stop_all();
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

async fn accept_loop(socket: TcpListener, listener: Arc<Listener>, shared: Arc<Shared>) {
    let name = listener.name;
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            accepted = socket.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                accept(stream, peer, &listener, &shared);
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

/// Admits one accepted connection and starts its task, or refuses it at once.
///
/// The gatekeeper admits by the client's address. Behind the PROXY protocol that address
/// is only known from the header, so admission waits for it (in the connection's task).
/// On an HTTP listener, a connection from a trusted proxy is admitted at the WebSocket
/// upgrade, by the address `X-Forwarded-For` names, so that a proxy's many clients are not
/// counted as one address.
fn accept(stream: TcpStream, peer: SocketAddr, listener: &Arc<Listener>, shared: &Arc<Shared>) {
    if listener.proxy_protocol && !shared.trusts(peer.ip()) {
        shared.refusals.refused(&shared.metrics, listener.name, peer, "proxy_untrusted");
        return;
    }
    let slot = match admission::listener_slot(listener.limit.as_ref(), &shared.gate) {
        Ok(slot) => slot,
        Err(denied) => return refuse(stream, peer, listener, denied, shared),
    };
    if listener.proxy_protocol {
        shared
            .tracker
            .spawn(handle_proxied(stream, peer, slot, listener.clone(), shared.clone()));
        return;
    }
    match admit(peer, slot, listener, shared) {
        Ok((admission, wait)) if wait.is_zero() => spawn_connection(stream, peer, admission, listener, shared),
        // Faster than `limits.connection_rate`: held, accepted and unread, until the rate
        // allows it (a small task of its own while it waits), instead of refused.
        Ok((admission, wait)) => {
            debug!(%peer, listener = listener.name, ?wait, "connection paced");
            let (listener, task_shared) = (listener.clone(), shared.clone());
            shared.tracker.spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(wait) => spawn_connection(stream, peer, admission, &listener, &task_shared),
                    // Shutdown does not wait for connections that were never served.
                    () = task_shared.shutdown.cancelled() => {}
                }
            });
        }
        Err(denied) => refuse(stream, peer, listener, denied, shared),
    }
}

/// The gatekeeper's admission of `peer`, unless it waits for the upgrade (see [`accept`]),
/// with how long the connection is to wait before it is served.
fn admit(
    peer: SocketAddr,
    slot: Option<admission::ListenerSlot>,
    listener: &Listener,
    shared: &Shared,
) -> Result<(Admission, Duration), Denied> {
    let deferred = matches!(listener.service, Service::Http) && shared.trusts(peer.ip());
    // The admin listener is not counted against the broker's connection limits: an
    // operator can still get in when the broker is full.
    let (gate, wait) = if deferred || listener.name == "admin" {
        (None, Duration::ZERO)
    } else {
        let (guard, wait) = admission::admit(&shared.gate, peer.ip())?;
        (Some(guard), wait)
    };
    Ok((Admission { listener: slot, gate }, wait))
}

/// Closes a refused connection at once; a plain HTTP listener first gets a `503` written
/// if the socket takes it without waiting (best effort: the request is never read).
fn refuse(stream: TcpStream, peer: SocketAddr, listener: &Listener, denied: Denied, shared: &Shared) {
    shared.refusals.refused(&shared.metrics, listener.name, peer, denied.label());
    if listener.tls.is_none() && matches!(listener.service, Service::Http) {
        let status = if denied.http_status() == 429 {
            "429 Too Many Requests"
        } else {
            "503 Service Unavailable"
        };
        let body = "too many connections\n";
        let resp = format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.try_write(resp.as_bytes());
    }
}

/// Reads the PROXY header (bounded by `listeners.proxy_protocol_timeout`), admits the
/// client it names, and serves the connection.
async fn handle_proxied(
    mut stream: TcpStream,
    via: SocketAddr,
    slot: Option<admission::ListenerSlot>,
    listener: Arc<Listener>,
    shared: Arc<Shared>,
) {
    let timeout = shared.config.listeners.proxy_protocol_timeout;
    let peer = match tokio::time::timeout(timeout, proxy::read_header(&mut stream)).await {
        Ok(Ok(client)) => client.unwrap_or(via),
        Ok(Err(e)) => {
            shared.metrics.refused("proxy_header");
            info!(peer = %via, listener = listener.name, error = %e, "PROXY protocol header refused");
            return;
        }
        Err(_) => {
            shared.metrics.refused("proxy_timeout");
            info!(peer = %via, listener = listener.name, "PROXY protocol header timed out");
            return;
        }
    };
    debug!(%peer, %via, listener = listener.name, "PROXY protocol header read");
    let admission = match admit(peer, slot, &listener, &shared) {
        Ok((admission, wait)) => {
            tokio::time::sleep(wait).await;
            admission
        }
        Err(denied) => return refuse(stream, peer, &listener, denied, &shared),
    };
    let stream = Lingering::new(stream, shared.linger.clone());
    match (&listener.tls, &listener.service) {
        (Some(acceptor), _) => {
            handle_tls(stream, peer, admission, acceptor.clone(), listener.clone(), shared).await;
        }
        (None, Service::Http) => serve_http(stream, peer, listener.name, Secure::No, admission, shared).await,
        (None, Service::Protocol(adapter)) => {
            let info = stream_info(peer, listener.name, Secure::No, &shared);
            serve(stream, info, Start::Open(adapter.clone()), admission, None, shared).await;
        }
    }
}

/// Start the task that serves one accepted connection. Each kind of connection gets a
/// future of its own, so a plain MQTT connection's task is not as large as a TLS
/// handshake's or an HTTP connection's (a task's memory is its future's size).
fn spawn_connection(stream: TcpStream, peer: SocketAddr, admission: Admission, listener: &Arc<Listener>, shared: &Arc<Shared>) {
    let stream = Lingering::new(stream, shared.linger.clone());
    let tracker = &shared.tracker;
    let name = listener.name;
    match (&listener.tls, &listener.service) {
        (Some(acceptor), _) => {
            tracker.spawn(handle_tls(
                stream,
                peer,
                admission,
                acceptor.clone(),
                listener.clone(),
                shared.clone(),
            ));
        }
        (None, Service::Http) => {
            tracker.spawn(serve_http(stream, peer, name, Secure::No, admission, shared.clone()));
        }
        (None, Service::Protocol(adapter)) => {
            let info = stream_info(peer, name, Secure::No, shared);
            tracker.spawn(serve(stream, info, Start::Open(adapter.clone()), admission, None, shared.clone()));
        }
    }
}

fn stream_info(peer: SocketAddr, listener: &'static str, secure: Secure, shared: &Shared) -> ConnectionInfo {
    ConnectionInfo {
        id: shared.next_connection_id(),
        peer,
        listener,
        tls: secure.is_tls(),
        carrier: Carrier::Stream,
        subprotocol: None,
        wakeup: Wakeup::new(),
        credentials: secure.credentials().cloned(),
        monitor: ferry_core::ConnectionMonitor::new(crate::http::unix_ms()),
    }
}

/// The identity in the verified client certificate of a TLS connection, if it sent one.
fn tls_credentials<S>(
    stream: &tokio_rustls::server::TlsStream<S>,
    peer: SocketAddr,
    listener: &'static str,
) -> Option<Arc<TransportCredentials>> {
    let leaf = stream.get_ref().1.peer_certificates()?.first()?;
    match credentials::client_cert(leaf) {
        Some(cert) => {
            debug!(%peer, listener, cn = cert.common_name.as_deref().unwrap_or(""), "client certificate");
            Some(Arc::new(TransportCredentials {
                bearer: None,
                client_cert: Some(cert),
            }))
        }
        None => {
            warn!(%peer, listener, "verified client certificate could not be parsed: identity ignored");
            None
        }
    }
}

async fn handle_tls(
    stream: Lingering,
    peer: SocketAddr,
    admission: Admission,
    acceptor: TlsAcceptor,
    listener: Arc<Listener>,
    shared: Arc<Shared>,
) {
    let name = listener.name;
    let timeout = shared.config.tls.handshake_timeout;
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let credentials = tls_credentials(&stream, peer, name);
            match &listener.service {
                Service::Http => serve_http(stream, peer, name, Secure::Yes(credentials), admission, shared).await,
                Service::Protocol(adapter) => {
                    let info = stream_info(peer, name, Secure::Yes(credentials), &shared);
                    serve(stream, info, Start::Open(adapter.clone()), admission, None, shared).await
                }
            }
        }
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
