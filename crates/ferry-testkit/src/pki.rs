//! A test PKI made with rcgen: a CA, a server certificate signed by it and a client
//! certificate (common name `device-1`, client-auth usage) signed by it, as PEM, and a
//! rustls client configuration that trusts the CA.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// A CA, a server certificate and a client certificate, each as PEM.
pub struct Pki {
    /// The CA certificate.
    pub ca: String,
    /// The server certificate, signed by the CA.
    pub server_cert: String,
    /// The server certificate's private key.
    pub server_key: String,
    /// The client certificate (CN `device-1`), signed by the CA.
    pub client_cert: String,
    /// The client certificate's private key.
    pub client_key: String,
}

/// What a [`Pki`] is made with: the server's and the client's subject alternative names.
pub struct PkiBuilder {
    server_names: Vec<String>,
    client_names: Vec<String>,
}

impl Default for PkiBuilder {
    fn default() -> Self {
        PkiBuilder {
            server_names: vec!["localhost".to_string()],
            client_names: Vec::new(),
        }
    }
}

impl PkiBuilder {
    /// The server certificate's subject alternative names (default: `localhost`).
    pub fn server_names(mut self, names: &[&str]) -> Self {
        self.server_names = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// The client certificate's subject alternative names (default: none).
    pub fn client_names(mut self, names: &[&str]) -> Self {
        self.client_names = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// Generate the keys and certificates.
    pub fn build(self) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "Ferry test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(self.server_names)
            .unwrap()
            .signed_by(&server_key, &ca, &ca_key)
            .unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut client_params = CertificateParams::new(self.client_names).unwrap();
        client_params.distinguished_name.push(DnType::CommonName, "device-1");
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();
        Pki {
            ca: ca.pem(),
            server_cert: server.pem(),
            server_key: server_key.serialize_pem(),
            client_cert: client.pem(),
            client_key: client_key.serialize_pem(),
        }
    }
}

impl Pki {
    /// A builder, to choose the subject alternative names.
    pub fn builder() -> PkiBuilder {
        PkiBuilder::default()
    }

    /// A rustls client configuration (ring provider, safe default versions) trusting this
    /// CA, presenting the client certificate if `with_client_cert`.
    pub fn client_config(&self, with_client_cert: bool) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.ca.as_bytes()).unwrap()).unwrap();
        let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        if with_client_cert {
            let chain = vec![CertificateDer::from_pem_slice(self.client_cert.as_bytes()).unwrap()];
            let key = PrivateKeyDer::from_pem_slice(self.client_key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        } else {
            builder.with_no_client_auth()
        }
    }
}
