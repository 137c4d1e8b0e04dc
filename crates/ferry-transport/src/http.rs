//! The HTTP side of the WebSocket and admin listeners (hyper 1.x): WebSocket upgrades on
//! any path of a public listener, the routes of the [`HttpRouter`](crate::routes::HttpRouter)
//! (`/healthz`, `/metrics`, and whatever the binary registers), 404 for everything else.
//!
//! On an upgrade from a trusted proxy the client's address comes from `X-Forwarded-For`
//! and is admitted then (see the server's `accept`); a bearer token (`Authorization:
//! Bearer`, or the `access_token` query parameter) is verified before answering 101. The
//! request's path and query are never logged: the query may hold a token.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, CONNECTION, CONTENT_TYPE, HOST, RETRY_AFTER, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION,
    WWW_AUTHENTICATE,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info};

use crate::admission::{self, Admission};
use crate::connection::{serve, Start};
use crate::credentials;
use crate::proxy;
use crate::registry::Negotiated;
use crate::routes::{Body, BodyError, HttpRequest};
use crate::server::{Secure, Shared};
use crate::ws::deflate;
use crate::ws::handshake::{self, Accepted, HandshakePolicy};
use ferry_core::{Carrier, ConnectionInfo, ConnectionMonitor, Wakeup};

/// Now in milliseconds since the Unix epoch, for a connection's `connected_at`.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One HTTP connection, as its requests see it.
struct HttpConn {
    /// The socket's peer (or the PROXY header's client).
    peer: SocketAddr,
    listener: &'static str,
    secure: Secure,
    /// The connection's admission, handed to the WebSocket task on upgrade.
    admission: Mutex<Option<Admission>>,
}

impl HttpConn {
    /// Keeps `admission` with the HTTP connection after a refused upgrade.
    fn give_back(&self, admission: Admission) {
        if let Ok(mut slot) = self.admission.lock() {
            *slot = Some(admission);
        }
    }
}

/// Serve HTTP/1.1 on one accepted connection until it closes or is upgraded.
pub(crate) async fn serve_http<S>(
    io: S,
    peer: SocketAddr,
    listener: &'static str,
    secure: Secure,
    admission: Admission,
    shared: Arc<Shared>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let http = &shared.config.http;
    let conn = Arc::new(HttpConn {
        peer,
        listener,
        secure,
        admission: Mutex::new(Some(admission)),
    });
    let service = {
        let shared = shared.clone();
        service_fn(move |req| {
            let shared = shared.clone();
            let conn = conn.clone();
            async move { Ok::<_, Infallible>(route(req, &conn, shared).await) }
        })
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(http.handshake_timeout)
        .max_buf_size(http.max_request_head_size)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                let reason = if e.is_timeout() { "request head timeout" } else if e.is_parse_too_large() { "request head too large" } else { "bad HTTP" };
                if e.is_timeout() || e.is_parse() || e.is_parse_too_large() {
                    shared.metrics.refused(if e.is_timeout() { "http_timeout" } else { "http_malformed" });
                    info!(%peer, listener, error = %e, "HTTP connection dropped: {reason}");
                } else {
                    debug!(%peer, listener, error = %e, "HTTP connection ended");
                }
            }
        }
        _ = shared.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), conn).await;
        }
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Body::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// Why a request's `Host` header is unacceptable, if it is: RFC 9112 §3.2 (and RFC 6455
/// §4.2.1 for the upgrade) wants exactly one in an HTTP/1.1 request and at most one in
/// any other.
fn host_problem(req: &Request<Incoming>) -> Option<&'static str> {
    match (req.headers().get_all(HOST).iter().count(), req.version()) {
        (0, hyper::Version::HTTP_11) => Some("an HTTP/1.1 request needs a Host header"),
        (0 | 1, _) => None,
        _ => Some("more than one Host header"),
    }
}

async fn route(mut req: Request<Incoming>, conn: &HttpConn, shared: Arc<Shared>) -> Response<Body> {
    if let Some(problem) = host_problem(&req) {
        info!(peer = %conn.peer, listener = conn.listener, reason = problem, "HTTP request refused");
        shared.metrics.refused("http_host");
        let mut resp = text(StatusCode::BAD_REQUEST, format!("bad request: {problem}\n"));
        // The request cannot be trusted to frame the next one: close after answering.
        resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        return resp;
    }
    let upgrades = conn.listener != "admin";
    if upgrades && handshake::is_websocket_attempt(req.headers()) {
        return upgrade(&mut req, conn, shared);
    }
    let Some(routes) = shared.routes.find(conn.listener, req.uri().path()) else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    shared.metrics.http_request(routes.name());
    let peer = client_address(req.headers(), conn, &shared);
    let origin = req.headers().get(hyper::header::ORIGIN).and_then(|v| v.to_str().ok());
    let origin_allowed = shared.origins.allows(origin);
    let (parts, body) = req.into_parts();
    let limit = routes.max_body();
    let declared = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = if declared.is_some_and(|n| n > limit as u64) {
        Err(BodyError::TooLarge { limit })
    } else {
        match http_body_util::Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(BodyError::TooLarge { limit }),
            Err(_) => Err(BodyError::Unreadable),
        }
    };
    if matches!(body, Err(BodyError::TooLarge { .. })) {
        shared.metrics.refused("http_body_too_large");
    }
    let request = HttpRequest {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
        peer,
        listener: conn.listener,
        tls: conn.secure.is_tls(),
        origin_allowed,
    };
    let answer = routes.handle(request).await;
    let mut resp = Response::new(Body::from(answer.body));
    *resp.status_mut() = answer.status;
    *resp.headers_mut() = answer.headers;
    if declared.is_some_and(|n| n > limit as u64) {
        // The unread body cannot be skipped: close after answering.
        resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// The client's address: from `X-Forwarded-For` when the request came from a trusted
/// proxy and names one (its port is then unknown: 0), else the connection's.
fn client_address(headers: &hyper::HeaderMap, conn: &HttpConn, shared: &Shared) -> SocketAddr {
    let trusted = &shared.config.listeners.trusted_proxies;
    if !shared.trusts(conn.peer.ip()) {
        return conn.peer;
    }
    match proxy::forwarded_for(headers, trusted) {
        Some(ip) => {
            debug!(peer = %ip, via = %conn.peer, listener = conn.listener, "client address from X-Forwarded-For");
            SocketAddr::new(ip, 0)
        }
        None => conn.peer,
    }
}

/// The compression settings of `listener`'s WebSockets (its own context-takeover choice
/// over the global one), or `None` when compression is off.
fn compression_for(listener: &str, shared: &Shared) -> Option<deflate::CompressionConfig> {
    let global = &shared.config.websocket.compression;
    if !global.enabled {
        return None;
    }
    let l = &shared.config.listeners;
    let own = match listener {
        "ws" => l.ws.deflate_context_takeover,
        "wss" => l.wss.deflate_context_takeover,
        _ => None,
    };
    let mut compression = global.clone();
    compression.context_takeover = own.unwrap_or(global.context_takeover);
    Some(compression)
}

fn upgrade(req: &mut Request<Incoming>, conn: &HttpConn, shared: Arc<Shared>) -> Response<Body> {
    let listener = conn.listener;
    let tls = conn.secure.is_tls();
    let peer = client_address(req.headers(), conn, &shared);
    let policy = HandshakePolicy {
        registry: &shared.registry,
        origins: &shared.origins,
        echo_path: Some(shared.config.websocket.echo_path.as_str()).filter(|p| !p.is_empty()),
    };
    let accepted = match handshake::check(req.method(), req.version(), req.uri().path(), req.headers(), &policy) {
        Ok(accepted) => accepted,
        Err(refusal) => {
            info!(%peer, listener, status = refusal.status.as_u16(), reason = %refusal.reason, "WebSocket handshake refused");
            shared.metrics.refused(refusal.label);
            let mut resp = text(refusal.status, format!("{}\n", refusal.reason));
            if refusal.advertise_version {
                resp.headers_mut().insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            }
            return resp;
        }
    };
    let (start, subprotocol) = match accepted {
        Accepted::Echo => (Start::Open(shared.echo.clone()), None),
        Accepted::Adapter(Negotiated::Chosen { adapter, name }) => (Start::Open(adapter), Some(name)),
        Accepted::Adapter(_) => (Start::Sniff, None),
    };
    // Admission, for connections from a trusted proxy deferred until the client's address
    // is known (the slot is empty only after an earlier upgrade, which hyper prevents).
    let mut admission = conn.admission.lock().ok().and_then(|mut a| a.take()).unwrap_or_default();
    let mut wait = std::time::Duration::ZERO;
    if admission.gate.is_none() {
        match admission::admit(&shared.gate, peer.ip()) {
            Ok((guard, paced)) => {
                admission.gate = Some(guard);
                wait = paced;
            }
            Err(denied) => {
                conn.give_back(admission);
                shared.refusals.refused(&shared.metrics, listener, peer, denied.label());
                let status = StatusCode::from_u16(denied.http_status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                let mut resp = text(status, "too many connections\n");
                resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
                return resp;
            }
        }
    }
    let mut credentials = conn.secure.credentials().cloned();
    let token = if shared.gate.accepts_tokens() {
        credentials::bearer_token(req.headers(), req.uri().query())
    } else {
        None
    };
    if let Some(token) = token {
        // The gatekeeper logs a refusal (address and reason, never the token).
        if let Err(failure) = shared.gate.verify_bearer(peer, &token) {
            conn.give_back(admission);
            shared.metrics.refused("bearer");
            let status = StatusCode::from_u16(failure.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
            let body = if status == StatusCode::UNAUTHORIZED {
                "invalid bearer token\n"
            } else {
                "not authorized\n"
            };
            let mut resp = text(status, body);
            if status == StatusCode::UNAUTHORIZED {
                resp.headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
            }
            return resp;
        }
        let mut both = credentials.as_deref().cloned().unwrap_or_default();
        both.bearer = Some(token);
        credentials = Some(Arc::new(both));
    }
    let (resp, upgraded) = match fastwebsockets::upgrade::upgrade(&mut *req) {
        Ok(pair) => pair,
        Err(e) => {
            // Unreachable after `check`, which tests the same headers; refuse anyway.
            shared.metrics.refused("key");
            return text(StatusCode::BAD_REQUEST, format!("{e}\n"));
        }
    };
    let mut resp = resp.map(|_| Body::full(Bytes::new()));
    if let Some(name) = subprotocol {
        resp.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(name));
    }
    // permessage-deflate (RFC 7692): the first acceptable offer, under this listener's
    // context-takeover choice; fastwebsockets looks at no extension, so the answer is ours.
    let deflate = compression_for(conn.listener, &shared).and_then(|compression| {
        deflate::negotiate(
            req.headers().get_all(SEC_WEBSOCKET_EXTENSIONS),
            &compression,
            &shared.deflate_budget,
        )
    });
    if let Some(negotiated) = &deflate {
        resp.headers_mut().insert(SEC_WEBSOCKET_EXTENSIONS, negotiated.response.clone());
    }
    let info = ConnectionInfo {
        id: shared.next_connection_id(),
        peer,
        listener,
        tls,
        carrier: Carrier::WebSocket,
        subprotocol,
        wakeup: Wakeup::new(),
        credentials,
        monitor: ConnectionMonitor::new(unix_ms()),
    };
    let timeout = shared.config.http.handshake_timeout;
    let task_shared = shared.clone();
    shared.tracker.spawn(async move {
        match tokio::time::timeout(timeout, upgraded).await {
            // The connection gets a task of its own, and this one ends: a task's memory is
            // its future's, and this future would keep the upgrade's state and timer
            // beside the connection's for as long as the connection lives.
            Ok(Ok(ws)) => {
                // Paced by the connection rate (behind a trusted proxy, admission happens
                // here): the upgraded connection waits, unread, until the rate allows it.
                tokio::time::sleep(wait).await;
                let tracker = task_shared.tracker.clone();
                tracker.spawn(serve(ws.into_inner(), info, start, admission, deflate, task_shared));
            }
            Ok(Err(e)) => debug!(%peer, error = %e, "upgrade failed"),
            Err(_) => {
                task_shared.metrics.refused("upgrade_timeout");
                info!(%peer, "upgrade did not complete in time");
            }
        }
    });
    resp
}
