//! What the transport learns of a client before its protocol begins: a bearer token on
//! the WebSocket upgrade, and the identity in a verified TLS client certificate. Neither
//! a token nor a URL that may hold one is ever logged.

use std::net::IpAddr;

use ferry_core::ClientCert;
use hyper::header::{HeaderMap, AUTHORIZATION};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The query parameter that may carry a bearer token (browsers cannot set headers on a
/// WebSocket).
pub const ACCESS_TOKEN_PARAM: &str = "access_token";

/// A bearer token offered on an HTTP request: the `Authorization: Bearer <token>` header
/// (scheme case-insensitive), else the `access_token` query parameter (percent-decoded).
/// `None` when neither is there; another `Authorization` scheme counts as none.
pub fn bearer_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let from_header = headers.get_all(AUTHORIZATION).iter().find_map(|v| {
        let v = v.to_str().ok()?.trim();
        let (scheme, token) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
    });
    from_header.or_else(|| {
        query.and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == ACCESS_TOKEN_PARAM)
                .map(|(_, v)| v.into_owned())
        })
    })
}

/// The subject common name and subject alternative names of a DER certificate (one that
/// TLS verified already); `None` if it does not parse.
pub fn client_cert(der: &[u8]) -> Option<ClientCert> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    let subject_alt_names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san.value.general_names.iter().filter_map(general_name).collect(),
        _ => Vec::new(),
    };
    Some(ClientCert {
        common_name,
        subject_alt_names,
    })
}

fn general_name(name: &GeneralName<'_>) -> Option<String> {
    match name {
        GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => Some((*s).to_owned()),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(*bytes).ok().map(|b| IpAddr::from(b).to_string()),
            16 => <[u8; 16]>::try_from(*bytes).ok().map(|b| IpAddr::from(b).to_string()),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn bearer_from_header_query_or_nowhere() {
        let none = HeaderMap::new();
        assert_eq!(bearer_token(&auth("Bearer abc.def.ghi"), None).as_deref(), Some("abc.def.ghi"));
        assert_eq!(bearer_token(&auth("bearer   xyz "), None).as_deref(), Some("xyz"));
        assert_eq!(
            bearer_token(&auth("Basic dXNlcjpwYXNz"), None),
            None,
            "other schemes are not tokens"
        );
        assert_eq!(
            bearer_token(&none, Some("client=1&access_token=abc.def.ghi")).as_deref(),
            Some("abc.def.ghi")
        );
        assert_eq!(
            bearer_token(&none, Some("access_token=a%2Bb%3D%3D.c_d-e&x=1")).as_deref(),
            Some("a+b==.c_d-e"),
            "percent-decoded"
        );
        assert_eq!(
            bearer_token(&auth("Bearer from-header"), Some("access_token=from-query")).as_deref(),
            Some("from-header"),
            "the header wins"
        );
        assert_eq!(bearer_token(&none, Some("token=abc")), None);
        assert_eq!(bearer_token(&none, None), None);
        assert_eq!(
            bearer_token(&none, Some("access_token=")).as_deref(),
            Some(""),
            "empty, refused later"
        );
    }

    #[test]
    fn certificate_names() {
        let mut params = rcgen::CertificateParams::new(vec!["device-1.example".to_string(), "10.0.0.9".to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "device-1");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let got = client_cert(cert.der()).unwrap();
        assert_eq!(got.common_name.as_deref(), Some("device-1"));
        assert_eq!(got.subject_alt_names, vec!["device-1.example".to_string(), "10.0.0.9".to_string()]);
        assert!(client_cert(b"not a certificate").is_none());
    }
}
