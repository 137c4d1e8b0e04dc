//! The dashboard: static HTML, CSS and JavaScript embedded in the binary, no framework
//! and nothing fetched from elsewhere. It polls the admin API of the same listener.

use std::sync::Arc;

use ferry_transport::{HandlerFuture, HttpRequest, HttpResponse, HttpRoutes};
use hyper::header::{HeaderValue, CACHE_CONTROL};
use hyper::{Method, StatusCode};

use crate::keys::Role;
use crate::Admin;

const INDEX: &str = include_str!("assets/index.html");
const APP: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// `/` on the admin listener.
pub(crate) struct DashboardRoutes {
    pub(crate) admin: Arc<Admin>,
}

impl HttpRoutes for DashboardRoutes {
    fn name(&self) -> &'static str {
        "dashboard"
    }

    fn prefixes(&self) -> &[&'static str] {
        &["/"]
    }

    fn handle(&self, request: HttpRequest) -> HandlerFuture {
        let admin = self.admin.clone();
        Box::pin(async move {
            if request.method != Method::GET && request.method != Method::HEAD {
                return HttpResponse::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            }
            let (kind, body) = match request.path.as_str() {
                "/" | "/index.html" => ("text/html; charset=utf-8", INDEX),
                "/app.js" => ("text/javascript; charset=utf-8", APP),
                "/style.css" => ("text/css; charset=utf-8", STYLE),
                _ => return HttpResponse::text(StatusCode::NOT_FOUND, "not found\n"),
            };
            // The page asks for the key up front, so that the browser sends it with every
            // API call after.
            if let Err(resp) = crate::api::authorize(&admin, &request, Role::Viewer).await {
                return resp;
            }
            let mut r = HttpResponse::new(StatusCode::OK, kind, body);
            r.headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r.headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
            r.headers.insert(
                "content-security-policy",
                HeaderValue::from_static(
                    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'; script-src 'self'",
                ),
            );
            r
        })
    }
}
