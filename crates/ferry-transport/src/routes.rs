//! The HTTP seam: the routes an HTTP listener serves besides the WebSocket upgrade.
//!
//! The binary fills an [`HttpRouter`] the way it fills the adapter
//! [`Registry`](crate::Registry): each [`HttpRoutes`] claims path prefixes on a group of
//! listeners (`ws` for the public `ws`/`wss` listeners, `admin` for the admin listener)
//! and answers requests that the transport has already read and bounded. The transport
//! keeps what every route needs: the `Host` check, the WebSocket upgrade (public
//! listeners only), the client's address, the origin check's verdict, the body's size
//! cap. A route answers with a whole body or a [`BodyStream`] (Server-Sent Events).
//!
//! `/healthz` ([`HealthRoutes`]) and `/metrics` ([`MetricsRoutes`]) are two such routes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{HeaderMap, Method, StatusCode};

use crate::metrics::Metrics;

/// Why a request's body is not there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Longer than the route's [`HttpRoutes::max_body`]; what was sent is discarded.
    #[error("request body larger than {limit} bytes")]
    TooLarge {
        /// The route's limit.
        limit: usize,
    },
    /// The body could not be read (the client went away, bad chunked encoding).
    #[error("request body could not be read")]
    Unreadable,
}

/// One request as a route sees it: the head, and the body read in full (at most the
/// route's [`HttpRoutes::max_body`]).
#[derive(Debug)]
pub struct HttpRequest {
    /// The method.
    pub method: Method,
    /// The path, percent-encoded as sent.
    pub path: String,
    /// The query string without `?`, if any. It may hold a token: never log it.
    pub query: Option<String>,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, or why it is missing.
    pub body: Result<Bytes, BodyError>,
    /// The client's address (`X-Forwarded-For` from a trusted proxy, else the peer's).
    pub peer: SocketAddr,
    /// The listener's name (`ws`, `wss`, `admin`).
    pub listener: &'static str,
    /// Whether the request came over TLS.
    pub tls: bool,
    /// Whether `http.allowed_origins` lets this request's `Origin` in, as it would a
    /// WebSocket handshake's.
    pub origin_allowed: bool,
}

impl HttpRequest {
    /// The value of header `name` as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The query's `key=value` pairs, decoded (`application/x-www-form-urlencoded`).
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query
            .as_deref()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default()
    }
}

/// A response body produced piece by piece (Server-Sent Events): polled by the
/// connection's task, so that a stream needs no task of its own. `None` ends the body.
pub trait BodyStream: Send + 'static {
    /// The next piece, when there is one.
    fn poll_chunk(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>>;
}

/// A response's body.
pub enum ResponseBody {
    /// All of it.
    Full(Bytes),
    /// A stream.
    Stream(Pin<Box<dyn BodyStream>>),
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Full(b) => f.debug_tuple("Full").field(&b.len()).finish(),
            Self::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// A route's answer.
#[derive(Debug)]
pub struct HttpResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers (`content-length` is the transport's business).
    pub headers: HeaderMap,
    /// The body.
    pub body: ResponseBody,
}

impl HttpResponse {
    /// A response with `body` of `content_type`.
    pub fn new(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        Self {
            status,
            headers,
            body: ResponseBody::Full(body.into()),
        }
    }

    /// A `text/plain` response.
    pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body)
    }

    /// A streamed response of `content_type`.
    pub fn stream(status: StatusCode, content_type: &'static str, body: Pin<Box<dyn BodyStream>>) -> Self {
        let mut r = Self::new(status, content_type, Bytes::new());
        r.body = ResponseBody::Stream(body);
        r
    }
}

/// What [`HttpRoutes::handle`] returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = HttpResponse> + Send>>;

/// A group of HTTP routes, registered on a group of listeners.
pub trait HttpRoutes: Send + Sync + 'static {
    /// A short name for logs and metrics (`health`, `metrics`, `admin`, `messaging`).
    fn name(&self) -> &'static str;

    /// The paths served: `/healthz` serves that path exactly; a prefix ending in `/`
    /// (`/api/v1/`) serves every path under it; `/` serves every path no other route
    /// claims. The longest match wins.
    fn prefixes(&self) -> &[&'static str];

    /// The largest request body read for this route; a longer one is refused before it
    /// reaches [`HttpRoutes::handle`] as [`BodyError::TooLarge`].
    fn max_body(&self) -> usize {
        0
    }

    /// Answers one request. Runs on the HTTP connection's task: do no blocking work here.
    fn handle(&self, request: HttpRequest) -> HandlerFuture;
}

/// The HTTP routes of every listener group: `ws` (the public `ws` and `wss` listeners)
/// and `admin`.
#[derive(Default, Clone)]
pub struct HttpRouter {
    groups: HashMap<&'static str, Vec<Arc<dyn HttpRoutes>>>,
}

impl std::fmt::Debug for HttpRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for (group, routes) in &self.groups {
            m.entry(group, &routes.iter().map(|r| r.name()).collect::<Vec<_>>());
        }
        m.finish()
    }
}

impl HttpRouter {
    /// No routes.
    pub fn new() -> Self {
        Self::default()
    }

    /// `/healthz` and `/metrics` on the public listeners (what the transport serves when
    /// the binary registers nothing).
    pub fn with_defaults(metrics: Arc<Metrics>) -> Self {
        let mut r = Self::new();
        r.add("ws", Arc::new(HealthRoutes::default()));
        r.add("ws", Arc::new(MetricsRoutes::new(metrics)));
        r
    }

    /// Serves `routes` on the listeners of `group` (`ws` or `admin`).
    pub fn add(&mut self, group: &'static str, routes: Arc<dyn HttpRoutes>) {
        self.groups.entry(group).or_default().push(routes);
    }

    /// The group a listener belongs to.
    pub fn group_of(listener: &str) -> &'static str {
        match listener {
            "admin" => "admin",
            _ => "ws",
        }
    }

    /// The routes that serve `path` on `listener`, by longest prefix.
    pub fn find(&self, listener: &str, path: &str) -> Option<Arc<dyn HttpRoutes>> {
        let routes = self.groups.get(Self::group_of(listener))?;
        let mut best: Option<(usize, &Arc<dyn HttpRoutes>)> = None;
        for r in routes {
            for p in r.prefixes() {
                let hit = if p.ends_with('/') { path.starts_with(p) } else { path == *p };
                if hit && best.is_none_or(|(len, _)| p.len() > len) {
                    best = Some((p.len(), r));
                }
            }
        }
        best.map(|(_, r)| r.clone())
    }

    /// Whether any route is registered for `group`.
    pub fn serves(&self, group: &str) -> bool {
        self.groups.get(group).is_some_and(|g| !g.is_empty())
    }
}

/// What `/healthz` asks before answering: `Err(reason)` makes it answer 503 with it.
pub type HealthCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// `GET`/`HEAD /healthz`: `ok` while the broker runs and every check passes; 503 with
/// the reasons when one fails (storage poisoned, say).
#[derive(Clone, Default)]
pub struct HealthRoutes {
    checks: Vec<HealthCheck>,
    warnings: Vec<HealthCheck>,
}

impl std::fmt::Debug for HealthRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthRoutes")
            .field("checks", &self.checks.len())
            .field("warnings", &self.warnings.len())
            .finish()
    }
}

impl HealthRoutes {
    /// `/healthz` that also asks `check`.
    pub fn with_check(mut self, check: HealthCheck) -> Self {
        self.checks.push(check);
        self
    }

    /// `/healthz` that also asks `check`, whose failure makes the answer
    /// `200 degraded: <reason>` instead of `ok`: the node still serves (a cluster link
    /// that is down, say), but not all of what it should.
    pub fn with_warning(mut self, check: HealthCheck) -> Self {
        self.warnings.push(check);
        self
    }
}

impl HttpRoutes for HealthRoutes {
    fn name(&self) -> &'static str {
        "health"
    }

    fn prefixes(&self) -> &[&'static str] {
        &["/healthz"]
    }

    fn handle(&self, request: HttpRequest) -> HandlerFuture {
        let resp = match request.method {
            Method::GET | Method::HEAD => {
                let failed: Vec<String> = self.checks.iter().filter_map(|c| c().err()).collect();
                let warned: Vec<String> = self.warnings.iter().filter_map(|c| c().err()).collect();
                if failed.is_empty() && warned.is_empty() {
                    HttpResponse::text(StatusCode::OK, "ok\n")
                } else if failed.is_empty() {
                    HttpResponse::text(StatusCode::OK, format!("degraded: {}\n", warned.join("; ")))
                } else {
                    HttpResponse::text(StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy: {}\n", failed.join("; ")))
                }
            }
            _ => HttpResponse::text(StatusCode::NOT_FOUND, "not found\n"),
        };
        Box::pin(std::future::ready(resp))
    }
}

/// `GET /metrics`: the Prometheus text format.
pub struct MetricsRoutes {
    metrics: Arc<Metrics>,
}

impl MetricsRoutes {
    /// Serves `metrics` (with the collectors registered on it).
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl HttpRoutes for MetricsRoutes {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn prefixes(&self) -> &[&'static str] {
        &["/metrics"]
    }

    fn handle(&self, request: HttpRequest) -> HandlerFuture {
        let resp = if request.method == Method::GET {
            HttpResponse::new(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", self.metrics.render())
        } else {
            HttpResponse::text(StatusCode::NOT_FOUND, "not found\n")
        };
        Box::pin(std::future::ready(resp))
    }
}

/// The hyper body of every response the HTTP listeners write.
pub(crate) enum Body {
    Full(Option<Bytes>),
    Stream(Pin<Box<dyn BodyStream>>),
}

impl Body {
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        let b = bytes.into();
        Self::Full((!b.is_empty()).then_some(b))
    }
}

impl From<ResponseBody> for Body {
    fn from(b: ResponseBody) -> Self {
        match b {
            ResponseBody::Full(b) => Body::full(b),
            ResponseBody::Stream(s) => Body::Stream(s),
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(hyper::body::Frame::data(b)))),
            Body::Stream(s) => s.as_mut().poll_chunk(cx).map(|c| c.map(|b| Ok(hyper::body::Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Body::Full(b) => hyper::body::SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Stream(_) => hyper::body::SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn healthz_is_503_on_a_failed_check_and_200_degraded_on_a_warning() {
        let get = || HttpRequest {
            method: Method::GET,
            path: "/healthz".into(),
            query: None,
            headers: HeaderMap::new(),
            body: Ok(Bytes::new()),
            peer: SocketAddr::from(([127, 0, 0, 1], 1)),
            listener: "ws",
            tls: false,
            origin_allowed: true,
        };
        let answer = |h: HealthRoutes| async move {
            let r = h.handle(get()).await;
            let ResponseBody::Full(body) = r.body else { panic!("a full body") };
            (r.status.as_u16(), String::from_utf8(body.to_vec()).unwrap())
        };
        let down: HealthCheck = Arc::new(|| Err("cluster: NATS unreachable".into()));
        let fine: HealthCheck = Arc::new(|| Ok(()));
        let broken: HealthCheck = Arc::new(|| Err("storage poisoned".into()));
        assert_eq!(
            answer(HealthRoutes::default().with_warning(fine.clone())).await,
            (200, "ok\n".into())
        );
        assert_eq!(
            answer(HealthRoutes::default().with_warning(down.clone())).await,
            (200, "degraded: cluster: NATS unreachable\n".into())
        );
        assert_eq!(
            answer(HealthRoutes::default().with_warning(down).with_check(broken)).await,
            (503, "unhealthy: storage poisoned\n".into())
        );
    }

    #[test]
    fn longest_prefix_wins_and_groups_are_apart() {
        let mut r = HttpRouter::with_defaults(Arc::new(Metrics::default()));
        struct Fallback;
        impl HttpRoutes for Fallback {
            fn name(&self) -> &'static str {
                "fallback"
            }
            fn prefixes(&self) -> &[&'static str] {
                &["/"]
            }
            fn handle(&self, _: HttpRequest) -> HandlerFuture {
                Box::pin(std::future::ready(HttpResponse::text(StatusCode::OK, "")))
            }
        }
        r.add("admin", Arc::new(Fallback));
        r.add("admin", Arc::new(HealthRoutes::default()));
        assert_eq!(r.find("ws", "/healthz").map(|r| r.name()), Some("health"));
        assert_eq!(r.find("wss", "/metrics").map(|r| r.name()), Some("metrics"));
        assert!(r.find("ws", "/healthz/x").is_none());
        assert!(r.find("ws", "/").is_none());
        assert_eq!(r.find("admin", "/healthz").map(|r| r.name()), Some("health"));
        assert_eq!(r.find("admin", "/clients").map(|r| r.name()), Some("fallback"));
        assert!(r.find("admin", "/metrics").is_some_and(|r| r.name() == "fallback"));
    }
}
