//! TLS listeners: wss with a certificate the test makes (rcgen), mTLS refusing a client
//! without a certificate, and start-up failing clearly on bad certificate files.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;

/// A CA, a server certificate for localhost/127.0.0.1 and a client certificate, as PEM.
struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "Ferry test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
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

fn tls_section(dir: &Path, pki: &Pki, mtls: bool) -> String {
    let cert = write_file(dir, "cert.pem", &pki.server_cert);
    let key = write_file(dir, "key.pem", &pki.server_key);
    let ca = write_file(dir, "ca.pem", &pki.ca);
    let mut s = format!("[tls]\ncert_file = {:?}\nkey_file = {:?}\n", cert, key);
    if mtls {
        s += &format!("client_ca_file = {:?}\nclient_auth = \"required\"\n", ca);
    }
    s + "[websocket]\necho_path = \"/echo\"\n"
}

fn connector(pki: &Pki, with_client_cert: bool) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pki.ca.as_bytes()).unwrap()).unwrap();
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = if with_client_cert {
        let chain = vec![CertificateDer::from_pem_slice(pki.client_cert.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(pki.client_key.as_bytes()).unwrap();
        builder.with_client_auth_cert(chain, key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    TlsConnector::from(Arc::new(config))
}

/// Open wss://localhost/echo and exchange one message; Err if any step fails.
async fn wss_echo(addr: std::net::SocketAddr, connector: TlsConnector) -> Result<(), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut ws, resp) = tokio_tungstenite::client_async("wss://localhost/echo", tls)
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("over tls")).await.map_err(|e| e.to_string())?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.as_str() == "over tls" => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

#[tokio::test]
async fn wss_handshake_and_echo_with_a_generated_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let b = Broker::start(&tls_section(dir.path(), &pki, false));
    wss_echo(b.addr("wss"), connector(&pki, false)).await.unwrap();
    // Plain HTTPS on the same listener: the health check.
    let tcp = TcpStream::connect(b.addr("wss")).await.unwrap();
    let mut tls = connector(&pki, false)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    tls.read_to_string(&mut text).await.ok();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

#[tokio::test]
async fn mtls_refuses_a_client_without_a_certificate_and_admits_one_with() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let b = Broker::start(&tls_section(dir.path(), &pki, true));
    let refused = wss_echo(b.addr("wss"), connector(&pki, false)).await;
    assert!(refused.is_err(), "a client without a certificate got through");
    wss_echo(b.addr("wss"), connector(&pki, true)).await.unwrap();
    assert!(
        b.wait_log("TLS handshake failed", std::time::Duration::from_secs(2)),
        "the refusal is logged"
    );
}

#[test]
fn missing_or_bad_certificate_fails_start_up_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = write_file(dir.path(), "garbage.pem", "this is not PEM\n");
    let key = write_file(dir.path(), "key.pem", &pki().server_key);
    for (cert, expect) in [(dir.path().join("absent.pem"), "absent.pem"), (garbage, "no CERTIFICATE block")] {
        let config = write_file(
            dir.path(),
            "ferry.toml",
            &format!("{LOOPBACK}\n[tls]\ncert_file = {cert:?}\nkey_file = {key:?}\n"),
        );
        let (status, _, stderr) = ferry_command(&["--config", config.to_str().unwrap()], &[]);
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expect), "{stderr}");
        assert!(stderr.contains("tls.cert_file"), "{stderr}");
    }
}

/// An MQTT 3.1.1 CONNECT for client id "tls" and the CONNACK it must get.
const CONNECT: &[u8] = &[0x10, 15, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30, 0, 3, b't', b'l', b's'];
const CONNACK: &[u8] = &[0x20, 0x02, 0x00, 0x00];

#[tokio::test]
async fn mqtt_over_mqtts_and_over_wss_with_the_mqtt_subprotocol() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let b = Broker::start(&tls_section(dir.path(), &pki, false));
    // mqtts:// (8883 by default): MQTT straight over TLS.
    let tcp = TcpStream::connect(b.addr("mqtts")).await.unwrap();
    let mut tls = connector(&pki, false)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(CONNECT).await.unwrap();
    let mut ack = [0u8; 4];
    tls.read_exact(&mut ack).await.unwrap();
    assert_eq!(ack, CONNACK);
    // wss:// with Sec-WebSocket-Protocol: mqtt, MQTT packets in binary messages.
    let tcp = TcpStream::connect(b.addr("wss")).await.unwrap();
    let tls = connector(&pki, false)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request("wss://localhost/mqtt").unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::client_async(request, tls).await.unwrap();
    assert_eq!(resp.headers().get("sec-websocket-protocol").unwrap(), "mqtt");
    ws.send(Message::binary(CONNECT.to_vec())).await.unwrap();
    match ws.next().await {
        Some(Ok(Message::Binary(b))) => assert_eq!(&b[..], CONNACK),
        other => panic!("expected a binary CONNACK, got {other:?}"),
    }
}
