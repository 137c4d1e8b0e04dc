//! HTTP messaging on the public listeners: `POST /api/v1/publish` (EMQX's body) and
//! `GET /api/v1/events?topic=FILTER…` (Server-Sent Events), with the gatekeeper's
//! authentication and ACL as for every MQTT or STOMP client.
//!
//! An event stream is one QoS 0 subscriber: a bounded [`Outbox`] of its own
//! (`http_api.sse_queue`; what does not fit is dropped and counted), rung through a
//! [`Wakeup`] and drained by the HTTP connection's task as it polls the response body.
//! The payload is shared with every other subscriber; only the event's text is made
//! per stream.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use ferry_auth::{AuthFailure, ConnectAttempt, Identity};
use ferry_core::{
    next_subscriber_id, Delivery, Journal, Lsn, Outbox, OutboxLimits, QoS, StorageUnavailable, SubscribeOptions, Subscriber, SubscriberId,
    Subscription, TopicFilter, TransportCredentials, Wakeup,
};
use ferry_transport::{BodyError, BodyStream, HandlerFuture, HttpRequest, HttpResponse, HttpRoutes};
use hyper::header::{HeaderValue, CACHE_CONTROL};
use hyper::{Method, StatusCode};
use serde_json::json;
use tracing::{debug, info};

use crate::json::{self, error, ok, BadPublish};
use crate::Admin;

/// `POST /api/v1/publish` and `GET /api/v1/events` on the public listeners.
pub(crate) struct MessagingRoutes {
    pub(crate) admin: Arc<Admin>,
}

impl HttpRoutes for MessagingRoutes {
    fn name(&self) -> &'static str {
        "messaging"
    }

    fn prefixes(&self) -> &[&'static str] {
        &["/api/v1/publish", "/api/v1/events"]
    }

    fn max_body(&self) -> usize {
        self.admin.http_api.max_body
    }

    fn handle(&self, request: HttpRequest) -> HandlerFuture {
        let admin = self.admin.clone();
        Box::pin(async move {
            if !admin.http_api.enabled {
                return HttpResponse::text(StatusCode::NOT_FOUND, "not found\n");
            }
            // A browser page of an allowed origin may read the answers (CORS), as it may
            // open a WebSocket.
            let cors = request
                .header("origin")
                .filter(|_| request.origin_allowed)
                .and_then(|o| HeaderValue::from_str(o).ok());
            let mut resp = match (request.path.as_str(), &request.method) {
                (_, &Method::OPTIONS) => preflight(),
                ("/api/v1/publish", &Method::POST) => public_publish(admin, request).await,
                ("/api/v1/events", &Method::GET) => events(admin, request).await,
                ("/api/v1/publish", _) => error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "use POST"),
                _ => error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "use GET"),
            };
            if let Some(origin) = cors {
                resp.headers.insert(hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
                resp.headers
                    .insert(hyper::header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
                resp.headers.insert(hyper::header::VARY, HeaderValue::from_static("origin"));
            }
            resp
        })
    }
}

/// The answer to a CORS preflight.
fn preflight() -> HttpResponse {
    let mut r = HttpResponse::new(StatusCode::NO_CONTENT, json::JSON, "");
    r.headers.insert(
        hyper::header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    r.headers.insert(
        hyper::header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, last-event-id"),
    );
    r.headers
        .insert(hyper::header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    r
}

/// Publishes a JSON publish body as `publisher` (the ACL was checked by the caller).
/// A retained message is answered once it is durable (storage on), as an MQTT PUBACK
/// would be.
pub(crate) async fn publish(admin: &Admin, body: &[u8], identity: Option<&Identity>, now: Instant) -> HttpResponse {
    let message = match json::publish_message(body, admin.http_api.max_payload, now) {
        Ok(m) => m,
        Err(BadPublish::Invalid(why)) => {
            admin.stats.http_publish_refused.fetch_add(1, Ordering::Relaxed);
            return error(StatusCode::BAD_REQUEST, "bad_request", why);
        }
        Err(BadPublish::TooLarge(limit)) => {
            admin.stats.http_publish_refused.fetch_add(1, Ordering::Relaxed);
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the payload is larger than {limit} bytes (http_api.max_payload)"),
            );
        }
    };
    if let Some(identity) = identity {
        if !admin.gate.may_publish(identity, message.topic.as_str()) {
            admin.stats.http_publish_refused.fetch_add(1, Ordering::Relaxed);
            return error(
                StatusCode::FORBIDDEN,
                "not_authorized",
                format!("not allowed to publish to {:?}", message.topic.as_str()),
            );
        }
    }
    let id = admin.next_id();
    let published = match admin.router.publish_durable(Arc::new(message), now) {
        Ok(p) => p,
        Err(e) => {
            admin.stats.http_publish_refused.fetch_add(1, Ordering::Relaxed);
            return error(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", e.to_string());
        }
    };
    if let (Some(lsn), Some(journal)) = (published.durable_at, admin.router.journal()) {
        if let Err(e) = until_durable(journal.as_ref(), lsn).await {
            admin.stats.http_publish_refused.fetch_add(1, Ordering::Relaxed);
            return error(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", e.to_string());
        }
    }
    admin.stats.http_publishes.fetch_add(1, Ordering::Relaxed);
    if published.deliveries > 0 {
        ok(StatusCode::OK, &json!({"id": id.to_string()}))
    } else {
        ok(
            StatusCode::ACCEPTED,
            &json!({"id": id.to_string(), "reason_code": 16, "message": "no_matching_subscribers"}),
        )
    }
}

/// Waits until the journal has `lsn` on disk, or says why it never will.
async fn until_durable(journal: &dyn Journal, lsn: Lsn) -> Result<(), StorageUnavailable> {
    let wakeup = Wakeup::new();
    loop {
        if journal.durable_lsn() >= lsn {
            return Ok(());
        }
        journal.health()?;
        journal.when_durable(lsn, wakeup.clone());
        wakeup.woken().await;
    }
}

/// The credentials of a request: HTTP Basic user and password, or a bearer token (the
/// `Authorization` header or the `access_token` query parameter).
fn attempt(req: &HttpRequest, client_id: String) -> ConnectAttempt {
    let mut username = None;
    let mut password = None;
    if let Some(h) = req.header("authorization") {
        if let Some((scheme, value)) = h.trim().split_once(' ') {
            if scheme.eq_ignore_ascii_case("basic") {
                if let Some((u, p)) = crate::keys::split_credentials(h) {
                    username = Some(u);
                    password = Some(p.into_bytes());
                }
                let _ = value;
            }
        }
    }
    let bearer = ferry_transport::credentials::bearer_token(&req.headers, req.query.as_deref());
    ConnectAttempt {
        peer: req.peer,
        protocol: "http",
        client_id,
        username,
        password,
        transport: bearer.map(|b| {
            Arc::new(TransportCredentials {
                bearer: Some(b),
                client_cert: None,
            })
        }),
    }
}

/// Authenticates a request with the gatekeeper; the answer to send instead on failure.
async fn authenticate(admin: &Arc<Admin>, req: &HttpRequest, client_id: String) -> Result<Identity, HttpResponse> {
    let wakeup = Wakeup::new();
    let attempt = attempt(req, client_id);
    let anonymous = attempt.username.is_none() && attempt.transport.is_none();
    let pending = admin.gate.check(attempt, Instant::now(), wakeup.clone());
    let deadline = tokio::time::Instant::now() + admin.http_api.auth_timeout;
    let verdict = loop {
        if let Some(v) = pending.take() {
            break v;
        }
        if tokio::time::timeout_at(deadline, wakeup.woken()).await.is_err() {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "auth_timeout",
                "the credentials could not be checked in time",
            ));
        }
    };
    if !verdict.delay.is_zero() {
        tokio::time::sleep(verdict.delay).await;
    }
    match verdict.result {
        Ok(identity) => Ok(identity),
        Err(AuthFailure::BadCredentials(e)) => Err(json::unauthorized("Basic realm=\"Ferry\", charset=\"UTF-8\"", &e.to_string())),
        // No credentials where some are needed: ask for them.
        Err(AuthFailure::NotAuthorized(e)) if anonymous => {
            Err(json::unauthorized("Basic realm=\"Ferry\", charset=\"UTF-8\"", &e.to_string()))
        }
        Err(AuthFailure::NotAuthorized(e)) => Err(error(StatusCode::FORBIDDEN, "not_authorized", e.to_string())),
    }
}

/// Whether the client at `peer` may publish once more (`limits.messages_per_second`,
/// per address).
fn take_token(admin: &Admin, peer: SocketAddr, now: Instant) -> bool {
    let mut buckets = admin.buckets.lock();
    if !buckets.contains_key(&peer.ip()) {
        let Some(bucket) = admin.gate.message_bucket(now) else {
            return true;
        };
        if buckets.len() >= 10_000 {
            buckets.clear();
        }
        buckets.insert(peer.ip(), bucket);
    }
    buckets.get_mut(&peer.ip()).is_none_or(|b| b.try_take(now, 1))
}

async fn public_publish(admin: Arc<Admin>, req: HttpRequest) -> HttpResponse {
    let body = match &req.body {
        Ok(b) => b.clone(),
        Err(BodyError::TooLarge { limit }) => {
            admin.stats.http_publish_refused.fetch_add(1, Ordering::Relaxed);
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than {limit} bytes (http_api.max_body)"),
            );
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
    };
    let identity = match authenticate(&admin, &req, format!("http-{}", admin.next_id())).await {
        Ok(i) => i,
        Err(r) => {
            admin.stats.http_publish_refused.fetch_add(1, Ordering::Relaxed);
            return r;
        }
    };
    let now = Instant::now();
    if !take_token(&admin, req.peer, now) {
        admin.stats.http_publish_refused.fetch_add(1, Ordering::Relaxed);
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "more publishes than limits.messages_per_second allows",
        );
        r.headers.insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    }
    publish(&admin, &body, Some(&identity), now).await
}

async fn events(admin: Arc<Admin>, req: HttpRequest) -> HttpResponse {
    if !req.origin_allowed {
        return error(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "this Origin is not in http.allowed_origins",
        );
    }
    let mut filters = Vec::new();
    for (k, v) in req.query_pairs() {
        if k != "topic" {
            continue;
        }
        match TopicFilter::new(&v) {
            Ok(f) => filters.push(f),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_filter",
                    format!("topic {v:?} is not a topic filter: {e}"),
                )
            }
        }
    }
    if filters.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "name at least one topic filter: ?topic=FILTER",
        );
    }
    if filters.len() > admin.http_api.max_stream_topics {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!(
                "at most {} topic filters per stream (http_api.max_stream_topics)",
                admin.http_api.max_stream_topics
            ),
        );
    }
    let label = format!("sse-{}", admin.next_id());
    let identity = match authenticate(&admin, &req, label.clone()).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    for f in &filters {
        if !admin.gate.may_subscribe(&identity, f.as_str()) {
            return error(
                StatusCode::FORBIDDEN,
                "not_authorized",
                format!("not allowed to subscribe to {:?}", f.as_str()),
            );
        }
    }
    if admin.stats.sse_streams.load(Ordering::Relaxed) >= admin.http_api.max_streams as u64 {
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            "http_api.max_streams event streams are open",
        );
        r.headers.insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("5"));
        return r;
    }
    let stream = EventStream::open(admin.clone(), filters, identity, Arc::from(label.as_str()), Instant::now());
    info!(peer = %req.peer, stream = %label, "event stream opened");
    let mut r = HttpResponse::stream(StatusCode::OK, "text/event-stream", Box::pin(stream));
    r.headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r.headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

/// Events written per poll at most, so one busy stream does not hog its task.
const BATCH: usize = 64;

/// One event stream: a QoS 0 subscriber of its own, drained as hyper polls the body.
struct EventStream {
    admin: Arc<Admin>,
    session: SubscriberId,
    subscriptions: Vec<Subscription>,
    outbox: Arc<Outbox>,
    wakeup: Wakeup,
    identity: Identity,
    check: bool,
    heartbeat: Pin<Box<tokio::time::Sleep>>,
    every: Duration,
    started: bool,
    batch: Vec<Delivery>,
}

impl EventStream {
    fn open(admin: Arc<Admin>, filters: Vec<TopicFilter>, identity: Identity, label: Arc<str>, now: Instant) -> Self {
        let limit = admin.http_api.sse_queue.max(1);
        let outbox = Arc::new(Outbox::new(OutboxLimits {
            max_qos0: limit,
            max_qos12: limit,
            max_bytes: 0,
        }));
        let wakeup = Wakeup::new();
        let session = next_subscriber_id();
        // Retained messages first, then live ones.
        for f in &filters {
            for d in admin.router.retained_deliveries(f, QoS::AtMostOnce, &[], now) {
                outbox.push(d);
            }
        }
        let subscriptions: Vec<Subscription> = filters.into_iter().map(Subscription::Plain).collect();
        for s in &subscriptions {
            admin.router.subscribe_as(
                s,
                Subscriber {
                    durable: None,
                    id: session,
                    outbox: outbox.clone(),
                    options: SubscribeOptions::default(),
                },
                Some(label.clone()),
            );
        }
        outbox.attach(wakeup.clone());
        admin.stats.sse_streams.fetch_add(1, Ordering::Relaxed);
        admin.stats.sse_opened.fetch_add(1, Ordering::Relaxed);
        let every = admin.http_api.sse_heartbeat.max(Duration::from_millis(100));
        let check = admin.gate.needs_delivery_check(&identity);
        Self {
            admin,
            session,
            subscriptions,
            outbox,
            wakeup,
            identity,
            check,
            heartbeat: Box::pin(tokio::time::sleep(every)),
            every,
            started: false,
            batch: Vec::with_capacity(BATCH),
        }
    }

    /// The events of what the outbox holds now, if any.
    fn drain(&mut self, now: Instant) -> Option<Bytes> {
        let mut buf = BytesMut::new();
        loop {
            self.batch.clear();
            if self.outbox.pop_into(BATCH, &mut self.batch) == 0 {
                break;
            }
            for d in self.batch.drain(..) {
                if d.message.is_expired(now) {
                    continue;
                }
                if self.check && !self.admin.gate.may_receive(&self.identity, d.message.topic.as_str()) {
                    continue;
                }
                // A live QoS 0 message without expiry reads the same in every stream:
                // encoded once, shared (as MQTT shares its PUBLISH frames).
                let data = if !d.retain && d.qos == QoS::AtMostOnce && d.message.expiry.is_none() {
                    d.message.encoded(ferry_core::SSE_JSON_SLOT, |m| {
                        Bytes::from(json::message(m, false, QoS::AtMostOnce, now).to_string())
                    })
                } else {
                    Bytes::from(json::message(&d.message, d.retain, d.qos, now).to_string())
                };
                buf.put_slice(b"event: message\nid: ");
                buf.put_slice(self.admin.next_id().to_string().as_bytes());
                buf.put_slice(b"\ndata: ");
                buf.put_slice(&data);
                buf.put_slice(b"\n\n");
                self.admin.stats.sse_events.fetch_add(1, Ordering::Relaxed);
            }
            if buf.len() >= 64 * 1024 {
                break;
            }
        }
        (!buf.is_empty()).then(|| buf.freeze())
    }
}

impl BodyStream for EventStream {
    fn poll_chunk(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = self.get_mut();
        if !this.started {
            this.started = true;
            return Poll::Ready(Some(Bytes::from_static(b": ferry event stream\nretry: 3000\n\n")));
        }
        loop {
            if let Some(chunk) = this.drain(Instant::now()) {
                let every = this.every;
                this.heartbeat.as_mut().reset(tokio::time::Instant::now() + every);
                return Poll::Ready(Some(chunk));
            }
            if this.wakeup.poll_woken(cx).is_ready() {
                continue;
            }
            if this.heartbeat.as_mut().poll(cx).is_ready() {
                let every = this.every;
                this.heartbeat.as_mut().reset(tokio::time::Instant::now() + every);
                return Poll::Ready(Some(Bytes::from_static(b": heartbeat\n\n")));
            }
            return Poll::Pending;
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        for s in &self.subscriptions {
            self.admin.router.unsubscribe(s, self.session);
        }
        self.outbox.detach();
        let dropped = self.outbox.stats.dropped_qos0.load(Ordering::Relaxed);
        self.admin.stats.sse_dropped.fetch_add(dropped, Ordering::Relaxed);
        self.admin.stats.sse_streams.fetch_sub(1, Ordering::Relaxed);
        debug!(dropped, "event stream closed");
    }
}
