//! The admin API, `/api/v1/...` on the admin listener: thin handlers over the core's
//! read-only data functions, JSON in and out, errors as `{"error", "message"}`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use ferry_core::monitor::ConnectionSummary;
use ferry_core::{Connections, TopicFilter, TopicName};
use ferry_transport::{BodyError, HandlerFuture, HttpRequest, HttpResponse, HttpRoutes};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use tracing::info;

use crate::json::{self, error, ok};
use crate::keys::{KeyFailure, Role};
use crate::Admin;

/// The OpenAPI 3 description of this API.
pub(crate) const OPENAPI: &str = include_str!("assets/openapi.json");

/// `/api/v1/` on the admin listener.
pub(crate) struct AdminRoutes {
    pub(crate) admin: Arc<Admin>,
}

impl HttpRoutes for AdminRoutes {
    fn name(&self) -> &'static str {
        "admin"
    }

    fn prefixes(&self) -> &[&'static str] {
        &["/api/v1/", "/api/v1"]
    }

    fn max_body(&self) -> usize {
        self.admin.settings.max_body
    }

    fn handle(&self, request: HttpRequest) -> HandlerFuture {
        let admin = self.admin.clone();
        Box::pin(async move { handle(admin, request).await })
    }
}

/// Checks the request's key for `need`; the answer to send instead when it fails.
pub(crate) async fn authorize(admin: &Arc<Admin>, req: &HttpRequest, need: Role) -> Result<Role, HttpResponse> {
    let keys = admin.keys();
    let header = req.header("authorization").map(str::to_owned);
    let checked = if keys.is_remembered(header.as_deref()) {
        keys.check(header.as_deref())
    } else {
        // argon2id: tens of milliseconds of CPU, off the async threads.
        let keys = keys.clone();
        tokio::task::spawn_blocking(move || keys.check(header.as_deref()))
            .await
            .unwrap_or(Err(KeyFailure::Wrong))
    };
    match checked {
        Ok(role) if role >= need => Ok(role),
        Ok(_) => {
            admin.stats.auth_refused.fetch_add(1, Ordering::Relaxed);
            Err(error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this API key has the viewer role: kicking, deleting and publishing need the admin role",
            ))
        }
        Err(failure) => {
            admin.stats.auth_refused.fetch_add(1, Ordering::Relaxed);
            let why = match failure {
                KeyFailure::Missing => "an API key is needed: HTTP Basic NAME:SECRET or Authorization: Bearer NAME:SECRET",
                KeyFailure::Wrong => "unknown API key or wrong secret",
            };
            Err(json::unauthorized("Basic realm=\"Ferry admin\", charset=\"UTF-8\"", why))
        }
    }
}

/// `page` and `limit` of a list request.
struct Page {
    page: usize,
    limit: usize,
}

impl Page {
    fn of(admin: &Admin, q: &[(String, String)]) -> Result<Page, HttpResponse> {
        let get = |k: &str, default: usize| -> Result<usize, HttpResponse> {
            match q.iter().find(|(n, _)| n == k) {
                None => Ok(default),
                Some((_, v)) => v.parse::<usize>().ok().filter(|&n| n >= 1).ok_or_else(|| {
                    error(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        format!("{k} must be a whole number of at least 1, not {v:?}"),
                    )
                }),
            }
        };
        let max = admin.settings.max_page_size.max(1);
        let limit = get("limit", 100.min(max))?;
        if limit > max {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("limit must be at most {max} (admin.max_page_size)"),
            ));
        }
        Ok(Page {
            page: get("page", 1)?,
            limit,
        })
    }

    /// One page of `items`: only the page's items are turned into JSON.
    fn answer<T>(&self, items: impl ExactSizeIterator<Item = T>, json: impl Fn(T) -> Value) -> HttpResponse {
        let count = items.len();
        let start = (self.page - 1).saturating_mul(self.limit);
        let data: Vec<Value> = items.skip(start).take(self.limit).map(json).collect();
        let hasnext = start.saturating_add(self.limit) < count;
        ok(
            StatusCode::OK,
            &json!({"data": data, "meta": {"page": self.page, "limit": self.limit, "count": count, "hasnext": hasnext}}),
        )
    }
}

fn query(q: &[(String, String)], key: &str) -> Option<String> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).filter(|v| !v.is_empty())
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

/// A connection as the API shows it.
pub(crate) fn client_json(c: &ConnectionSummary) -> Value {
    json!({
        "id": c.id,
        "clientid": c.client_id.as_deref(),
        "protocol": if c.protocol.is_empty() { "pending" } else { c.protocol },
        "version": c.version,
        "transport": c.transport,
        "listener": c.listener,
        "peer": c.peer.to_string(),
        "username": c.user.as_deref(),
        "connected_at": c.connected_at_ms,
        "messages_in": c.messages_in,
        "messages_out": c.messages_out,
        "bytes_in": c.bytes_in,
        "bytes_out": c.bytes_out,
    })
}

fn method_not_allowed(allowed: &str) -> HttpResponse {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this path answers {allowed}"),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(allowed) {
        r.headers.insert(hyper::header::ALLOW, v);
    }
    r
}

async fn handle(admin: Arc<Admin>, req: HttpRequest) -> HttpResponse {
    let path = req.path.trim_end_matches('/').to_owned();
    let rest = path.strip_prefix("/api/v1").unwrap_or("");
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let (head, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let writes = matches!(req.method, Method::DELETE | Method::POST | Method::PUT);
    let need = if writes { Role::Admin } else { Role::Viewer };
    if head == "openapi.json" {
        return HttpResponse::new(StatusCode::OK, json::JSON, OPENAPI);
    }
    let role = match authorize(&admin, &req, need).await {
        Ok(role) => role,
        Err(resp) => return resp,
    };
    let q = req.query_pairs();
    let now = Instant::now();
    match (head, tail, &req.method) {
        ("", "", &Method::GET) => ok(
            StatusCode::OK,
            &json!({"name": "ferry", "version": env!("CARGO_PKG_VERSION"), "openapi": "/api/v1/openapi.json"}),
        ),
        ("whoami", "", &Method::GET) => ok(StatusCode::OK, &json!({"role": role.as_str(), "keys": admin.keys().required()})),
        ("stats", "", &Method::GET) => {
            let s = admin.snapshot(now);
            let sys: serde_json::Map<String, Value> = admin.sys_values(&s).into_iter().map(|(k, v)| (k, json!(v))).collect();
            let mut v = serde_json::to_value(&s).unwrap_or_else(|_| json!({}));
            if let Some(o) = v.as_object_mut() {
                o.insert("sys".into(), Value::Object(sys));
                o.insert("sse_dropped".into(), json!(admin.stats.sse_dropped.load(Ordering::Relaxed)));
                o.insert("kicks".into(), json!(admin.stats.kicks.load(Ordering::Relaxed)));
            }
            ok(StatusCode::OK, &v)
        }
        ("samples", "", &Method::GET) => ok(
            StatusCode::OK,
            &json!({"interval_ms": u64::try_from(admin.settings.sample_interval.as_millis()).unwrap_or(u64::MAX), "data": admin.samples()}),
        ),
        ("listeners", "", &Method::GET) => {
            let counts = admin.connections.summaries();
            let items: Vec<Value> = admin
                .listeners
                .read()
                .iter()
                .map(|l| {
                    let n = counts.iter().filter(|c| c.listener == l.name).count();
                    json!({"name": l.name, "address": l.address.to_string(), "port": l.address.port(), "protocol": l.protocol, "tls": l.tls, "connections": n})
                })
                .collect();
            ok(StatusCode::OK, &json!({"data": items}))
        }
        ("sessions", "", &Method::GET) => {
            let page = match Page::of(&admin, &q) {
                Ok(p) => p,
                Err(r) => return r,
            };
            let items = admin.sources.sessions().into_iter();
            page.answer(
                items,
                |s| json!({"clientid": &*s.client_id, "connected": s.connection.is_some(), "connection": s.connection, "queued": s.queued}),
            )
        }
        ("clients", "", &Method::GET) => clients(&admin, &q),
        ("clients", "", _) => method_not_allowed("GET"),
        ("clients", id, &Method::GET) => {
            let id = decode(id);
            match admin.connections.find(&id) {
                Some(info) => {
                    let c = ConnectionSummary::of(&info);
                    let mut v = client_json(&c);
                    let subs: Vec<Value> = match &c.client_id {
                        Some(cid) => admin
                            .router
                            .subscriptions()
                            .into_iter()
                            .filter(|s| s.client_id.as_deref() == Some(&**cid))
                            .map(|s| json!({"topic": s.filter, "qos": s.qos, "group": s.group.as_deref()}))
                            .collect(),
                        None => Vec::new(),
                    };
                    if let Some(o) = v.as_object_mut() {
                        o.insert("subscriptions".into(), Value::Array(subs));
                    }
                    ok(StatusCode::OK, &v)
                }
                None => error(StatusCode::NOT_FOUND, "client_not_found", format!("no connected client {id:?}")),
            }
        }
        ("clients", id, &Method::DELETE) => {
            let id = decode(id);
            match admin.connections.find(&id) {
                Some(info) => {
                    Connections::kick(&info);
                    admin.stats.kicks.fetch_add(1, Ordering::Relaxed);
                    info!(conn = info.id, client = %id, "client kicked through the admin API");
                    HttpResponse::new(StatusCode::NO_CONTENT, json::JSON, "")
                }
                None => error(StatusCode::NOT_FOUND, "client_not_found", format!("no connected client {id:?}")),
            }
        }
        ("clients", _, _) => method_not_allowed("GET, DELETE"),
        ("subscriptions", "", &Method::GET) => {
            let page = match Page::of(&admin, &q) {
                Ok(p) => p,
                Err(r) => return r,
            };
            let client = query(&q, "client").or_else(|| query(&q, "clientid"));
            let topic = query(&q, "topic");
            let items = admin
                .router
                .subscriptions()
                .into_iter()
                .filter(|s| client.as_deref().is_none_or(|c| s.client_id.as_deref() == Some(c)))
                .filter(|s| topic.as_deref().is_none_or(|t| s.filter == t))
                .collect::<Vec<_>>();
            page.answer(
                items.into_iter(),
                |s| json!({"topic": s.filter, "clientid": s.client_id.as_deref(), "qos": s.qos, "group": s.group.as_deref()}),
            )
        }
        ("retained", "", m) if *m == Method::GET || *m == Method::DELETE => retained_many(&admin, &req, &q, now),
        ("retained", "", _) => method_not_allowed("GET, DELETE"),
        ("retained", topic, m) => {
            let topic = decode(topic);
            let Ok(name) = TopicName::new(&topic) else {
                return error(StatusCode::BAD_REQUEST, "bad_topic", format!("{topic:?} is not a topic name"));
            };
            match *m {
                Method::GET => match admin.router.retained_get(&name).filter(|m| !m.is_expired(now)) {
                    Some(m) => ok(StatusCode::OK, &json::message(&m, true, m.qos, now)),
                    None => error(StatusCode::NOT_FOUND, "not_found", format!("no retained message on {topic:?}")),
                },
                Method::DELETE => match admin.router.retained_remove(&name) {
                    Ok(true) => HttpResponse::new(StatusCode::NO_CONTENT, json::JSON, ""),
                    Ok(false) => error(StatusCode::NOT_FOUND, "not_found", format!("no retained message on {topic:?}")),
                    Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", e.to_string()),
                },
                _ => method_not_allowed("GET, DELETE"),
            }
        }
        ("publish", "", &Method::POST) => {
            let body = match &req.body {
                Ok(b) => b.clone(),
                Err(BodyError::TooLarge { limit }) => {
                    admin.stats.http_publish_refused.fetch_add(1, Ordering::Relaxed);
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        format!("the body is larger than {limit} bytes (admin.max_body)"),
                    );
                }
                Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
            };
            crate::messaging::publish(&admin, &body, None, now).await
        }
        ("publish", _, _) => method_not_allowed("POST"),
        ("stats" | "whoami" | "samples" | "listeners" | "sessions" | "subscriptions", "", _) => method_not_allowed("GET"),
        _ => error(StatusCode::NOT_FOUND, "not_found", format!("no such API path: {}", req.path)),
    }
}

fn clients(admin: &Admin, q: &[(String, String)]) -> HttpResponse {
    let page = match Page::of(admin, q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let protocol = query(q, "protocol");
    let transport = query(q, "transport");
    let user = query(q, "user").or_else(|| query(q, "username"));
    let like = query(q, "like");
    let items = admin
        .connections
        .summaries()
        .into_iter()
        .filter(|c| {
            protocol
                .as_deref()
                .is_none_or(|p| c.protocol == p || (p == "pending" && c.protocol.is_empty()))
        })
        .filter(|c| transport.as_deref().is_none_or(|t| c.transport == t))
        .filter(|c| user.as_deref().is_none_or(|u| c.user.as_deref() == Some(u)))
        .filter(|c| {
            like.as_deref()
                .is_none_or(|l| c.client_id.as_deref().is_some_and(|id| id.contains(l)))
        })
        .collect::<Vec<ConnectionSummary>>();
    page.answer(items.iter(), client_json)
}

fn retained_many(admin: &Admin, req: &HttpRequest, q: &[(String, String)], now: Instant) -> HttpResponse {
    let deleting = req.method == Method::DELETE;
    let filter = match query(q, "match") {
        Some(f) => f,
        None if deleting => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "DELETE /api/v1/retained needs ?match=FILTER (# for every topic outside $SYS)",
            )
        }
        None => "#".to_owned(),
    };
    let Ok(filter) = TopicFilter::new(&filter) else {
        return error(StatusCode::BAD_REQUEST, "bad_filter", format!("{filter:?} is not a topic filter"));
    };
    let list = admin.router.retained_list(&filter, now);
    if deleting {
        let mut deleted = 0;
        for r in &list {
            if let Ok(t) = TopicName::new(&r.topic) {
                match admin.router.retained_remove(&t) {
                    Ok(removed) => deleted += usize::from(removed),
                    Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", e.to_string()),
                }
            }
        }
        info!(filter = filter.as_str(), deleted, "retained messages cleared through the admin API");
        return ok(StatusCode::OK, &json!({"deleted": deleted}));
    }
    let page = match Page::of(admin, q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    page.answer(list.iter(), |r| json::message(&r.message, true, r.message.qos, now))
}
