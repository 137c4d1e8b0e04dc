//! The server side of permessage-deflate's negotiation (RFC 7692 §5, §7.1): parse the
//! client's `Sec-WebSocket-Extensions` offers, accept the first one Ferry can honour,
//! and build the exact response header value. Pure functions, no I/O.
//!
//! Grammar (RFC 6455 §9.1): the header may repeat; each is a comma-separated list of
//! `name *( ";" param [ "=" ( token / quoted-string ) ] )`. An offer with a repeated,
//! unknown or badly valued parameter is declined and the next one is tried (RFC 7692
//! §7.1); when none is acceptable no extension is answered and the connection goes on
//! uncompressed.
//!
//! Ferry's answer: the no-context-takeover profile (NATS's), `permessage-deflate;
//! server_no_context_takeover; client_no_context_takeover`, which RFC 7692 lets a server
//! send whatever was offered (§7.1.1.1, §7.1.1.2). A listener that opts into context
//! takeover leaves out either parameter the client did not ask for, while the global
//! [`ContextBudget`] has room for that direction's dedicated context.
//! `server_max_window_bits=N` is echoed only when offered (Firefox refuses an
//! unrequested one), and an offer of 8 is declined: raw deflate on zlib needs at least 9
//! (zlib and flate2 refuse 8). `client_max_window_bits` is never answered: Ferry
//! inflates with a 32 KiB window, which decodes whatever window the client uses.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hyper::header::HeaderValue;
use tracing::debug;

use super::config::CompressionConfig;

/// The extension's registered name.
pub const EXTENSION: &str = "permessage-deflate";

/// One well-formed `permessage-deflate` offer (RFC 7692 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offer {
    /// The client asks the server not to keep its LZ77 window between messages.
    pub server_no_context_takeover: bool,
    /// The client announces it will not keep its window between messages.
    pub client_no_context_takeover: bool,
    /// The largest window (8..=15 bits) the client can inflate, if it limits it.
    pub server_max_window_bits: Option<u8>,
    /// `None`: not offered; `Some(None)`: offered without a value (the client can limit
    /// its own window); `Some(Some(n))`: the client will use at most `n` bits.
    pub client_max_window_bits: Option<Option<u8>>,
}

/// Why an offer was declined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Declined {
    /// The offer does not follow the header grammar (bad token, unterminated quote).
    #[error("malformed permessage-deflate offer")]
    Malformed,
    /// A parameter appears twice.
    #[error("parameter {0} repeated")]
    Repeated(&'static str),
    /// A parameter RFC 7692 does not define for an offer.
    #[error("unknown parameter {0:?}")]
    Unknown(String),
    /// A parameter with a value it must not have, or without one it needs.
    #[error("invalid value for {0}")]
    BadValue(&'static str),
    /// `server_max_window_bits=8`, which raw deflate on zlib cannot produce.
    #[error("server_max_window_bits=8 is not supported (9 is the least raw deflate can use)")]
    WindowTooSmall,
}

/// What one connection agreed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// Ferry resets its compressor after every message (no dedicated compressor).
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message, so Ferry's decompressor is
    /// reset too (no dedicated decompressor).
    pub client_no_context_takeover: bool,
    /// The window Ferry compresses with, 9..=15 bits.
    pub server_window_bits: u8,
}

/// An accepted offer: the agreement, the response header value, and the budget slots
/// held for the connection's dedicated contexts (released when they drop).
#[derive(Debug)]
pub struct Negotiated {
    /// What was agreed.
    pub agreed: Agreed,
    /// The `Sec-WebSocket-Extensions` value for the 101 response.
    pub response: HeaderValue,
    /// The slot of a dedicated compressor (server context takeover).
    pub(super) server_slot: Option<ContextGuard>,
    /// The slot of a dedicated decompressor (client context takeover).
    pub(super) client_slot: Option<ContextGuard>,
}

/// The global budget of dedicated compression contexts: a count that connections
/// with context takeover reserve from and give back when they close.
#[derive(Debug)]
pub struct ContextBudget {
    max: usize,
    used: AtomicUsize,
}

/// One reserved slot of a [`ContextBudget`]; dropping it gives the slot back.
#[derive(Debug)]
pub struct ContextGuard {
    budget: Arc<ContextBudget>,
}

impl ContextBudget {
    /// A budget of `max` contexts, none in use.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            used: AtomicUsize::new(0),
        })
    }

    /// Reserve one slot, or `None` when all `max` are in use.
    pub fn try_acquire(self: &Arc<Self>) -> Option<ContextGuard> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1))
            .ok()
            .map(|_| ContextGuard { budget: self.clone() })
    }

    /// Slots in use now (for a gauge).
    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accept the first acceptable `permessage-deflate` offer among the request's
/// `Sec-WebSocket-Extensions` values (in order), under `config` (the listener's). `None`:
/// answer no extension (compression off, nothing offered, or every offer declined).
pub fn negotiate<'a>(
    values: impl IntoIterator<Item = &'a HeaderValue>,
    config: &CompressionConfig,
    budget: &Arc<ContextBudget>,
) -> Option<Negotiated> {
    if !config.enabled {
        return None;
    }
    for offer in parse_offers(values) {
        match offer.and_then(|offer| accept(&offer, config, budget)) {
            Ok(negotiated) => return Some(negotiated),
            Err(declined) => debug!(reason = %declined, "permessage-deflate offer declined"),
        }
    }
    None
}

/// Every `permessage-deflate` offer in the header values, in order, each parsed or the
/// reason it must be declined. Other extensions are skipped.
pub fn parse_offers<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> Vec<Result<Offer, Declined>> {
    let mut offers = Vec::new();
    for value in values {
        for element in split_outside_quotes(value.as_bytes(), b',') {
            let mut parts = split_outside_quotes(element, b';').into_iter();
            let name = parts.next().map(trim).unwrap_or_default();
            if !name.eq_ignore_ascii_case(EXTENSION.as_bytes()) {
                continue; // Empty list elements and other extensions.
            }
            offers.push(parse_params(parts));
        }
    }
    offers
}

fn parse_params<'a>(parts: impl Iterator<Item = &'a [u8]>) -> Result<Offer, Declined> {
    let mut offer = Offer::default();
    let mut seen = [false; 4];
    for part in parts {
        let (name, value) = split_param(part)?;
        let (index, label) = match name.to_ascii_lowercase().as_slice() {
            b"server_no_context_takeover" => (0, "server_no_context_takeover"),
            b"client_no_context_takeover" => (1, "client_no_context_takeover"),
            b"server_max_window_bits" => (2, "server_max_window_bits"),
            b"client_max_window_bits" => (3, "client_max_window_bits"),
            _ => return Err(Declined::Unknown(String::from_utf8_lossy(name).into_owned())),
        };
        if std::mem::replace(&mut seen[index], true) {
            return Err(Declined::Repeated(label));
        }
        match (index, value) {
            (0, None) => offer.server_no_context_takeover = true,
            (1, None) => offer.client_no_context_takeover = true,
            (2, Some(v)) => offer.server_max_window_bits = Some(window_bits(&v).ok_or(Declined::BadValue(label))?),
            (3, None) => offer.client_max_window_bits = Some(None),
            (3, Some(v)) => offer.client_max_window_bits = Some(Some(window_bits(&v).ok_or(Declined::BadValue(label))?)),
            _ => return Err(Declined::BadValue(label)),
        }
    }
    Ok(offer)
}

/// Decide on a well-formed offer.
fn accept(offer: &Offer, config: &CompressionConfig, budget: &Arc<ContextBudget>) -> Result<Negotiated, Declined> {
    let server_window_bits = match offer.server_max_window_bits {
        Some(8) => return Err(Declined::WindowTooSmall),
        Some(bits) => bits,
        None => 15,
    };
    let takeover = |client_forbids: bool| {
        if config.context_takeover && !client_forbids {
            budget.try_acquire()
        } else {
            None
        }
    };
    let server_slot = takeover(offer.server_no_context_takeover);
    let client_slot = takeover(offer.client_no_context_takeover);
    let agreed = Agreed {
        server_no_context_takeover: server_slot.is_none(),
        client_no_context_takeover: client_slot.is_none(),
        server_window_bits,
    };
    let mut response = String::from(EXTENSION);
    if agreed.server_no_context_takeover {
        response.push_str("; server_no_context_takeover");
    }
    if agreed.client_no_context_takeover {
        response.push_str("; client_no_context_takeover");
    }
    if let Some(bits) = offer.server_max_window_bits {
        response.push_str("; server_max_window_bits=");
        response.push_str(&bits.to_string());
    }
    // Built from fixed ASCII pieces: always a valid header value.
    let response = HeaderValue::try_from(response).map_err(|_| Declined::Malformed)?;
    Ok(Negotiated {
        agreed,
        response,
        server_slot,
        client_slot,
    })
}

/// A window size parameter: a decimal 8..=15 without leading zeroes (RFC 7692 §7.1.2).
fn window_bits(value: &[u8]) -> Option<u8> {
    match value {
        [b'8'] => Some(8),
        [b'9'] => Some(9),
        [b'1', d @ b'0'..=b'5'] => Some(10 + (d - b'0')),
        _ => None,
    }
}

/// `name [ "=" value ]`, with the value unquoted; a malformed name or value declines.
fn split_param(part: &[u8]) -> Result<(&[u8], Option<Vec<u8>>), Declined> {
    let (name, value) = match part.iter().position(|&b| b == b'=') {
        Some(eq) => (trim(&part[..eq]), Some(trim(&part[eq + 1..]))),
        None => (trim(part), None),
    };
    if !is_token(name) {
        return Err(Declined::Malformed);
    }
    let value = match value {
        None => None,
        Some(v) if is_token(v) => Some(v.to_vec()),
        Some(v) => Some(unquote(v).ok_or(Declined::Malformed)?),
    };
    Ok((name, value))
}

/// The content of a quoted-string (RFC 9110 §5.6.4), or `None` if `v` is not exactly one.
fn unquote(v: &[u8]) -> Option<Vec<u8>> {
    let inner = v.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let mut out = Vec::with_capacity(inner.len());
    let mut bytes = inner.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'\\' => out.push(*bytes.next()?),
            b'"' => return None,
            _ => out.push(b),
        }
    }
    Some(out)
}

/// Split on `sep` where it is not inside a quoted-string (a backslash escapes the next
/// byte inside quotes).
fn split_outside_quotes(s: &[u8], sep: u8) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, &b) in s.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    parts.push(&s[start..]);
    parts
}

fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

/// An HTTP token (RFC 9110 §5.6.2).
fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NCT: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    fn on() -> CompressionConfig {
        CompressionConfig {
            enabled: true,
            ..CompressionConfig::default()
        }
    }

    fn answer_with(headers: &[&str], config: &CompressionConfig, budget: &Arc<ContextBudget>) -> Option<String> {
        let values: Vec<HeaderValue> = headers.iter().map(|h| HeaderValue::from_str(h).unwrap()).collect();
        negotiate(&values, config, budget).map(|n| n.response.to_str().unwrap().to_owned())
    }

    fn answer(headers: &[&str]) -> Option<String> {
        answer_with(headers, &on(), &ContextBudget::new(10))
    }

    #[test]
    fn the_default_profile_answers_no_context_takeover_both_ways() {
        let table: &[(&[&str], Option<&str>)] = &[
            // Firefox, Chrome, Node's ws.
            (&["permessage-deflate"], Some(NCT)),
            (&["permessage-deflate; client_max_window_bits"], Some(NCT)),
            // Autobahn 13.1 .. 13.6.
            (
                &["permessage-deflate; client_no_context_takeover; client_max_window_bits"],
                Some(NCT),
            ),
            (
                &["permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover"],
                Some(NCT),
            ),
            (
                &["permessage-deflate; client_no_context_takeover; client_max_window_bits; server_max_window_bits=9"],
                Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9"),
            ),
            (
                &["permessage-deflate; server_no_context_takeover; server_max_window_bits=15"],
                Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15"),
            ),
            (&["permessage-deflate; client_max_window_bits=8"], Some(NCT)),
            // Nothing offered, or another extension only.
            (&[], None),
            (&["x-webkit-deflate-frame"], None),
            (&[""], None),
        ];
        for (offers, expected) in table {
            assert_eq!(answer(offers).as_deref(), *expected, "{offers:?}");
        }
    }

    #[test]
    fn bad_offers_are_declined_and_the_next_one_is_tried() {
        let table: &[(&str, Declined)] = &[
            (
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                Declined::Repeated("server_no_context_takeover"),
            ),
            (
                "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
                Declined::Repeated("client_max_window_bits"),
            ),
            ("permessage-deflate; mux", Declined::Unknown("mux".into())),
            (
                "permessage-deflate; server_max_window_bits",
                Declined::BadValue("server_max_window_bits"),
            ),
            (
                "permessage-deflate; server_max_window_bits=16",
                Declined::BadValue("server_max_window_bits"),
            ),
            (
                "permessage-deflate; server_max_window_bits=7",
                Declined::BadValue("server_max_window_bits"),
            ),
            (
                "permessage-deflate; server_max_window_bits=010",
                Declined::BadValue("server_max_window_bits"),
            ),
            (
                "permessage-deflate; server_max_window_bits=1a",
                Declined::BadValue("server_max_window_bits"),
            ),
            (
                "permessage-deflate; client_max_window_bits=0",
                Declined::BadValue("client_max_window_bits"),
            ),
            (
                "permessage-deflate; server_no_context_takeover=1",
                Declined::BadValue("server_no_context_takeover"),
            ),
            (
                "permessage-deflate; client_no_context_takeover=\"\"",
                Declined::BadValue("client_no_context_takeover"),
            ),
            ("permessage-deflate; server_max_window_bits=\"9", Declined::Malformed),
            ("permessage-deflate; =9", Declined::Malformed),
            ("permessage-deflate; server max_window_bits=9", Declined::Malformed),
        ];
        for (offer, why) in table {
            let value = HeaderValue::from_str(offer).unwrap();
            assert_eq!(parse_offers([&value]), vec![Err(why.clone())], "{offer}");
            assert_eq!(answer(&[offer]), None, "{offer} alone");
            assert_eq!(
                answer(&[offer, "permessage-deflate"]).as_deref(),
                Some(NCT),
                "{offer}, then a good one"
            );
        }
        // 8 bits is well-formed but cannot be honoured: declined, not clamped to 9.
        let eight = "permessage-deflate; server_max_window_bits=8";
        assert_eq!(answer(&[eight]), None);
        assert_eq!(
            answer(&[&format!("{eight}, permessage-deflate; server_max_window_bits=10")]).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10")
        );
    }

    #[test]
    fn several_offers_headers_quotes_and_case() {
        // Autobahn 13.7: three offers in one header; the first acceptable wins.
        assert_eq!(
            answer(&["permessage-deflate; client_no_context_takeover; server_max_window_bits=9, permessage-deflate; server_no_context_takeover, permessage-deflate"]).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9")
        );
        // Offers spread over several headers, the first one declined.
        assert_eq!(
            answer(&[
                "foo; bar=\"a,b;c\"",
                "permessage-deflate; bogus",
                "permessage-deflate;server_max_window_bits=12"
            ])
            .as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12")
        );
        // Quoted values (with an escape) and any case in names.
        let value = HeaderValue::from_static("Permessage-Deflate; Server_Max_Window_Bits=\"1\\1\"; CLIENT_MAX_WINDOW_BITS = \"10\"");
        assert_eq!(
            parse_offers([&value]),
            vec![Ok(Offer {
                server_max_window_bits: Some(11),
                client_max_window_bits: Some(Some(10)),
                ..Offer::default()
            })]
        );
        // A comma inside quotes does not split the offer; the value is still bad.
        let value = HeaderValue::from_static("permessage-deflate; server_max_window_bits=\"9,permessage-deflate\"");
        assert_eq!(parse_offers([&value]), vec![Err(Declined::BadValue("server_max_window_bits"))]);
        // Non-ASCII bytes in a header value decline that offer only.
        let value = HeaderValue::from_bytes(b"permessage-deflate; \xe9t\xe9, permessage-deflate").unwrap();
        assert_eq!(parse_offers([&value]), vec![Err(Declined::Malformed), Ok(Offer::default())]);
    }

    #[test]
    fn the_request_headers_are_read_as_they_come() {
        use hyper::header::{HeaderMap, SEC_WEBSOCKET_EXTENSIONS};
        let mut headers = HeaderMap::new();
        headers.append(SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_static("permessage-deflate; mux"));
        headers.append(
            SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static("permessage-deflate; server_max_window_bits=11"),
        );
        let n = negotiate(headers.get_all(SEC_WEBSOCKET_EXTENSIONS), &on(), &ContextBudget::new(0)).unwrap();
        assert_eq!(n.agreed.server_window_bits, 11);
        assert!(n.agreed.server_no_context_takeover && n.agreed.client_no_context_takeover);
    }

    #[test]
    fn every_answer_is_well_formed_and_within_the_offer() {
        // Offers made of every combination of parameter spellings, good and bad.
        let pieces = [
            "",
            "; server_no_context_takeover",
            "; client_no_context_takeover",
            "; server_max_window_bits=8",
            "; server_max_window_bits=9",
            "; server_max_window_bits=\"15\"",
            "; server_max_window_bits=16",
            "; client_max_window_bits",
            "; client_max_window_bits=12",
            "; client_max_window_bits=\"",
            "; x=1",
        ];
        let takeover = CompressionConfig {
            context_takeover: true,
            ..on()
        };
        let mut answered = 0;
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let offer = format!("permessage-deflate{a}{b}{c}");
                    for config in [on(), takeover.clone()] {
                        let budget = ContextBudget::new(1);
                        let value = HeaderValue::from_str(&offer).unwrap();
                        let Some(n) = negotiate([&value], &config, &budget) else {
                            continue;
                        };
                        answered += 1;
                        let parsed = parse_offers([&n.response]);
                        let [Ok(answer)] = parsed.as_slice() else {
                            panic!("malformed answer {:?} to {offer}", n.response);
                        };
                        let [Ok(asked)] = parse_offers([&value]).as_slice().to_owned()[..] else {
                            panic!("accepted a bad offer {offer}");
                        };
                        assert_eq!(answer.client_max_window_bits, None, "{offer}");
                        assert_eq!(answer.server_max_window_bits, asked.server_max_window_bits, "{offer}");
                        assert_ne!(asked.server_max_window_bits, Some(8), "{offer}");
                        assert!(answer.server_no_context_takeover || !asked.server_no_context_takeover, "{offer}");
                        assert!(answer.client_no_context_takeover || !asked.client_no_context_takeover, "{offer}");
                    }
                }
            }
        }
        assert!(answered > 100, "{answered}");
    }

    #[test]
    fn disabled_means_no_answer() {
        let off = CompressionConfig::default();
        assert_eq!(answer_with(&["permessage-deflate"], &off, &ContextBudget::new(10)), None);
    }

    #[test]
    fn context_takeover_is_opt_in_and_bounded_by_the_budget() {
        let config = CompressionConfig {
            context_takeover: true,
            ..on()
        };
        let budget = ContextBudget::new(3);
        let offer = HeaderValue::from_static("permessage-deflate; client_max_window_bits");
        let both = negotiate([&offer], &config, &budget).unwrap();
        assert_eq!(both.response, "permessage-deflate");
        assert!(!both.agreed.server_no_context_takeover && !both.agreed.client_no_context_takeover);
        assert_eq!(budget.in_use(), 2);
        // A client that resets its own context needs one slot, for the server's side.
        let nct = HeaderValue::from_static("permessage-deflate; client_no_context_takeover");
        let one = negotiate([&nct], &config, &budget).unwrap();
        assert_eq!(one.response, "permessage-deflate; client_no_context_takeover");
        assert_eq!(budget.in_use(), 3);
        // The budget is spent: the default profile, whatever is offered.
        let full = negotiate([&offer], &config, &budget).unwrap();
        assert_eq!(full.response, NCT);
        assert_eq!(budget.in_use(), 3);
        // Closing connections give their slots back.
        drop(both);
        assert_eq!(budget.in_use(), 1);
        let again = negotiate([&offer], &config, &budget).unwrap();
        assert_eq!(again.response, "permessage-deflate");
        drop((one, again, full));
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn the_budget_guard_releases_on_drop() {
        let budget = ContextBudget::new(2);
        let a = budget.try_acquire().unwrap();
        let b = budget.try_acquire().unwrap();
        assert!(budget.try_acquire().is_none());
        assert_eq!(budget.in_use(), 2);
        drop(a);
        let c = budget.try_acquire().unwrap();
        drop((b, c));
        assert_eq!(budget.in_use(), 0);
        assert!(ContextBudget::new(0).try_acquire().is_none());
    }
}
