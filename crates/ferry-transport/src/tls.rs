//! TLS for any listener: the server certificate and key from PEM files (through
//! rustls-pki-types' `PemObject`), optionally verifying client certificates (mTLS).

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::{ClientAuth, TlsConfig};
use crate::error::TransportError;

/// Build the acceptor shared by TLS listeners; `Ok(None)` when no certificate is set.
/// `alpn` is offered to clients (`http/1.1` for WebSocket listeners).
pub(crate) fn acceptor(config: &TlsConfig, alpn: &[&[u8]]) -> Result<Option<TlsAcceptor>, TransportError> {
    let Some(cert_file) = &config.cert_file else {
        if config.key_file.is_some() {
            return Err(TransportError::Tls("tls.key_file is set but tls.cert_file is not".into()));
        }
        return Ok(None);
    };
    let key_file = config
        .key_file
        .as_ref()
        .ok_or_else(|| TransportError::Tls("tls.cert_file is set but tls.key_file is not".into()))?;
    let chain = certificates(cert_file, "the certificate chain (tls.cert_file)")?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| pem_error("the private key (tls.key_file)", key_file, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::Tls(e.to_string()))?;
    let builder = match (config.client_auth, &config.client_ca_file) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (_, None) => return Err(TransportError::Tls("tls.client_auth needs tls.client_ca_file".into())),
        (mode, Some(ca_file)) => {
            let mut roots = RootCertStore::empty();
            for ca in certificates(ca_file, "client CA certificates (tls.client_ca_file)")? {
                roots.add(ca).map_err(|e| TransportError::Tls(format!("tls.client_ca_file: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if mode == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| TransportError::Tls(format!("tls.client_ca_file: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server = builder
        .with_single_cert(chain, key)
        .map_err(|e| TransportError::Tls(format!("certificate and key do not fit together: {e}")))?;
    server.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}

fn certificates(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, path, e))?;
    if certs.is_empty() {
        return Err(TransportError::Pem {
            what,
            path: path.into(),
            reason: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

fn pem_error(what: &'static str, path: &Path, e: rustls_pki_types::pem::Error) -> TransportError {
    let reason = match e {
        rustls_pki_types::pem::Error::Io(io) => io.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => "no PEM block of the right kind found".into(),
        other => other.to_string(),
    };
    TransportError::Pem {
        what,
        path: path.into(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_certificate_means_no_tls() {
        assert!(acceptor(&TlsConfig::default(), &[]).unwrap().is_none());
    }

    #[test]
    fn missing_files_are_named() {
        let cfg = TlsConfig {
            cert_file: Some("/nonexistent/cert.pem".into()),
            key_file: Some("/nonexistent/key.pem".into()),
            ..TlsConfig::default()
        };
        let err = acceptor(&cfg, &[]).err().unwrap().to_string();
        assert!(err.contains("/nonexistent/cert.pem"), "{err}");
        assert!(err.contains("tls.cert_file"), "{err}");
    }

    #[test]
    fn key_without_certificate_is_refused() {
        let cfg = TlsConfig {
            key_file: Some("k.pem".into()),
            ..TlsConfig::default()
        };
        assert!(acceptor(&cfg, &[]).err().unwrap().to_string().contains("tls.cert_file"));
    }
}
