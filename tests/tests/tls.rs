//! TLS listeners: wss with a certificate the test makes (rcgen), mTLS refusing a client
//! without a certificate, and start-up failing clearly on bad certificate files.

use std::path::Path;
use std::sync::Arc;

use ferry_testkit::pki::Pki;
use ferry_testkit::prelude::*;
use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;

/// The kit's test PKI with a server certificate for localhost and 127.0.0.1.
fn pki() -> Pki {
    Pki::builder().server_names(&["localhost", "127.0.0.1"]).build()
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
    TlsConnector::from(Arc::new(pki.client_config(with_client_cert)))
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
