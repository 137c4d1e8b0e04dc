//! The server side of the WebSocket opening handshake (RFC 6455 §4.2.1), as a pure
//! function from a request head to a decision. The HTTP layer turns a [`Refusal`] into
//! a response and a [`Accepted`] into the 101 answer.

use base64::Engine;
use hyper::header::{HeaderMap, HeaderName, CONNECTION, ORIGIN, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE};
use hyper::{Method, StatusCode, Version};

use crate::origin::OriginPolicy;
use crate::registry::{parse_offers, Negotiated, Registry};

/// Why a handshake was refused, and how to say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status to answer with.
    pub status: StatusCode,
    /// A one-line reason, sent as the body and logged.
    pub reason: String,
    /// Whether to add `Sec-WebSocket-Version: 13` (on 426).
    pub advertise_version: bool,
    /// A short label for the refusal metric.
    pub label: &'static str,
}

impl Refusal {
    fn bad(label: &'static str, reason: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            reason: reason.into(),
            advertise_version: false,
            label,
        }
    }
}

/// Which service a well-formed handshake asked for.
#[derive(Clone)]
pub enum Accepted {
    /// The conformance echo service (its own path; no subprotocol echoed).
    Echo,
    /// An adapter picked by subprotocol; `name` goes back in `Sec-WebSocket-Protocol`.
    Adapter(Negotiated),
}

/// True when the request tries to be a WebSocket handshake at all (it names an upgrade
/// or carries a WebSocket header), so that malformed attempts get a 400, not a 404.
pub fn is_websocket_attempt(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE) || headers.contains_key(SEC_WEBSOCKET_KEY) || headers.contains_key(SEC_WEBSOCKET_VERSION)
}

/// What the handshake checks consult besides the request.
pub struct HandshakePolicy<'a> {
    /// The adapters, for subprotocol negotiation.
    pub registry: &'a Registry,
    /// The `Origin` allow-list.
    pub origins: &'a OriginPolicy,
    /// Path of the echo service, if on.
    pub echo_path: Option<&'a str>,
}

/// Check a handshake request head, in the order RFC 6455 §4.2.1 lists the fields.
pub fn check(
    method: &Method,
    version: Version,
    path: &str,
    headers: &HeaderMap,
    policy: &HandshakePolicy<'_>,
) -> Result<Accepted, Refusal> {
    if method != Method::GET {
        return Err(Refusal::bad(
            "method",
            format!("a WebSocket handshake must be a GET request, not {method}"),
        ));
    }
    if version < Version::HTTP_11 {
        return Err(Refusal::bad("http_version", "a WebSocket handshake needs HTTP/1.1"));
    }
    if !has_token(headers, UPGRADE, "websocket") {
        return Err(Refusal::bad("upgrade", "missing or invalid Upgrade header: expected \"websocket\""));
    }
    if !has_token(headers, CONNECTION, "upgrade") {
        return Err(Refusal::bad(
            "connection",
            "missing or invalid Connection header: expected \"Upgrade\"",
        ));
    }
    let key = single(headers, SEC_WEBSOCKET_KEY).ok_or_else(|| Refusal::bad("key", "missing or repeated Sec-WebSocket-Key header"))?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(key.trim()).ok();
    if decoded.is_none_or(|k| k.len() != 16) {
        return Err(Refusal::bad("key", "invalid Sec-WebSocket-Key: expected 16 bytes in base64"));
    }
    if single(headers, SEC_WEBSOCKET_VERSION).map(str::trim) != Some("13") {
        return Err(Refusal {
            status: StatusCode::UPGRADE_REQUIRED,
            reason: "unsupported Sec-WebSocket-Version: this server speaks version 13".into(),
            advertise_version: true,
            label: "version",
        });
    }
    let origin = headers.get(ORIGIN).map(|v| v.to_str().unwrap_or("<not text>"));
    if !policy.origins.allows(origin) {
        return Err(Refusal {
            status: StatusCode::FORBIDDEN,
            reason: format!("origin not allowed: {}", origin.unwrap_or("<none>")),
            advertise_version: false,
            label: "origin",
        });
    }
    if policy.echo_path == Some(path) {
        return Ok(Accepted::Echo);
    }
    let values: Vec<&str> = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let offers = parse_offers(values.iter().copied());
    match policy.registry.negotiate(offers.iter().copied()) {
        Negotiated::Refused => {
            let served = policy.registry.served_names();
            let list = if served.is_empty() { "none".to_string() } else { served.join(", ") };
            Err(Refusal::bad(
                "subprotocol",
                format!("no offered subprotocol is served; this server accepts: {list}"),
            ))
        }
        negotiated => Ok(Accepted::Adapter(negotiated)),
    }
}

/// Whether a comma-separated header holds `token` (case-insensitive), in any of its lines.
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The value of a header that must appear exactly once.
fn single(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    let mut all = headers.get_all(name).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return None;
    }
    first.to_str().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::tests::registry;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    // The sample handshake of RFC 6455 §1.3.
    fn rfc_sample() -> Vec<(&'static str, &'static str)> {
        vec![
            ("host", "server.example.com"),
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("origin", "http://example.com"),
            ("sec-websocket-protocol", "chat, superchat"),
            ("sec-websocket-version", "13"),
        ]
    }

    fn run(pairs: &[(&'static str, &str)], origins: &OriginPolicy) -> Result<Accepted, Refusal> {
        let reg = registry();
        let policy = HandshakePolicy {
            registry: &reg,
            origins,
            echo_path: Some("/echo"),
        };
        check(&Method::GET, Version::HTTP_11, "/mqtt", &headers(pairs), &policy)
    }

    fn without(name: &str, replace: Option<&'static str>) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<_> = rfc_sample().into_iter().filter(|(k, _)| *k != name).collect();
        if let Some(val) = replace {
            let key = rfc_sample().into_iter().find(|(k, _)| *k == name).unwrap().0;
            v.push((key, val));
        }
        v
    }

    #[test]
    fn rfc_sample_with_unserved_protocols_is_refused_naming_ours() {
        let err = run(&rfc_sample(), &OriginPolicy::default()).err().unwrap();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.reason.contains("mqtt, mqttv3.1"), "{}", err.reason);
        assert!(err.reason.contains("v12.stomp"), "{}", err.reason);
    }

    #[test]
    fn rfc_sample_without_protocols_is_sniffed() {
        let ok = run(&without("sec-websocket-protocol", None), &OriginPolicy::default())
            .ok()
            .unwrap();
        assert!(matches!(ok, Accepted::Adapter(Negotiated::Sniff)));
    }

    #[test]
    fn each_missing_or_bad_field_has_its_refusal() {
        let p = OriginPolicy::default();
        for (case, status) in [
            (without("upgrade", None), StatusCode::BAD_REQUEST),
            (without("upgrade", Some("h2c")), StatusCode::BAD_REQUEST),
            (without("connection", None), StatusCode::BAD_REQUEST),
            (without("connection", Some("keep-alive")), StatusCode::BAD_REQUEST),
            (without("sec-websocket-key", None), StatusCode::BAD_REQUEST),
            (without("sec-websocket-key", Some("c2hvcnQ=")), StatusCode::BAD_REQUEST),
            (without("sec-websocket-key", Some("not base64!")), StatusCode::BAD_REQUEST),
            (without("sec-websocket-version", None), StatusCode::UPGRADE_REQUIRED),
            (without("sec-websocket-version", Some("8")), StatusCode::UPGRADE_REQUIRED),
        ] {
            let err = run(&case, &p).err().unwrap();
            assert_eq!(err.status, status, "{case:?}");
            assert!(!err.reason.contains('\n'));
            assert_eq!(err.advertise_version, status == StatusCode::UPGRADE_REQUIRED);
        }
    }

    #[test]
    fn connection_header_may_list_several_tokens() {
        let mut h = without("connection", Some("keep-alive, Upgrade"));
        h.retain(|(k, _)| *k != "sec-websocket-protocol");
        assert!(run(&h, &OriginPolicy::default()).is_ok());
    }

    #[test]
    fn repeated_key_is_refused() {
        let mut h = rfc_sample();
        h.push(("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(run(&h, &OriginPolicy::default()).err().unwrap().label, "key");
    }

    #[test]
    fn origin_outside_the_list_gets_403() {
        let p = OriginPolicy::new(&["https://app.example".into()], true);
        let err = run(&rfc_sample(), &p).err().unwrap();
        assert_eq!(err.status, StatusCode::FORBIDDEN);
        assert!(err.reason.contains("http://example.com"));
    }

    #[test]
    fn post_and_http10_are_refused() {
        let reg = registry();
        let origins = OriginPolicy::default();
        let policy = HandshakePolicy {
            registry: &reg,
            origins: &origins,
            echo_path: None,
        };
        let h = headers(&rfc_sample());
        assert_eq!(
            check(&Method::POST, Version::HTTP_11, "/", &h, &policy).err().unwrap().label,
            "method"
        );
        assert_eq!(
            check(&Method::GET, Version::HTTP_10, "/", &h, &policy).err().unwrap().label,
            "http_version"
        );
    }

    #[test]
    fn echo_path_skips_negotiation() {
        let reg = registry();
        let origins = OriginPolicy::default();
        let policy = HandshakePolicy {
            registry: &reg,
            origins: &origins,
            echo_path: Some("/echo"),
        };
        let ok = check(&Method::GET, Version::HTTP_11, "/echo", &headers(&rfc_sample()), &policy)
            .ok()
            .unwrap();
        assert!(matches!(ok, Accepted::Echo));
    }
}
