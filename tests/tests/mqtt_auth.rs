//! MQTT authentication, ACL and limits end to end: the real broker with a password file,
//! an ACL file and an HS256 JWT secret, rumqttc v4 (3.1.1) and v5 clients over TCP and
//! WebSocket, raw bytes where rumqttc cannot express the case.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_testkit::gatekeeper::{hs256_token, light_hash};
use ferry_testkit::prelude::*;
use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode as ConnectReturnCode5, Disconnect, DisconnectReasonCode, Packet as Packet5, PubAckReason,
    SubscribeReasonCode as SubscribeReasonCode5,
};
use rumqttc::v5::{AsyncClient as AsyncClient5, Event as Event5, MqttOptions as MqttOptions5};
use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS, SubscribeReasonCode, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

const ACL: &str = "\
user alice
topic readwrite alice/#
user admin
topic readwrite #
";

/// The password file and ACL (kept alive beside the broker), and the `[auth]` TOML.
fn auth_files() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    // Light argon2 parameters: the defaults take seconds in a debug build.
    let users = format!("alice:{}\nadmin:{}\n", light_hash("wonderland"), light_hash("root"));
    std::fs::write(dir.path().join("passwd"), users).unwrap();
    std::fs::write(dir.path().join("acl"), ACL).unwrap();
    let toml = format!(
        "[auth]\nallow_anonymous = false\npassword_file = {:?}\nacl_file = {:?}\n\
         [auth.jwt]\nsecret = \"{SECRET}\"\nleeway = \"0s\"\n\
         [auth.failed_auth]\nmax_failures = 0\n",
        dir.path().join("passwd"),
        dir.path().join("acl"),
    );
    (dir, toml)
}

fn secured(extra: &str) -> (Broker, tempfile::TempDir) {
    let (dir, toml) = auth_files();
    let b = Broker::start_with(&format!("{toml}\n{extra}"), &[("FERRY_LOG__LEVEL", "info")]);
    (b, dir)
}

/// An HS256 token for alice, expiring `exp_in` seconds from now (negative: already expired).
fn token(exp_in: i64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let exp = now.checked_add_signed(exp_in).unwrap();
    hs256_token(SECRET.as_bytes(), &serde_json::json!({ "sub": "alice", "exp": exp }))
}

fn addr(b: &Broker, ws: bool) -> (String, u16) {
    if ws {
        let a = b.addr("ws");
        (format!("ws://{a}/mqtt"), a.port())
    } else {
        let a = b.addr("mqtt");
        (a.ip().to_string(), a.port())
    }
}

/// A connected rumqttc v4 client whose incoming packets arrive on a channel (closed when
/// the connection ends).
struct Client {
    client: AsyncClient,
    incoming: mpsc::UnboundedReceiver<Packet>,
}

/// Connect with rumqttc v4: the client, or the CONNACK's refusal.
async fn connect4(b: &Broker, id: &str, ws: bool, creds: Option<(&str, &str)>) -> Result<Client, ConnectReturnCode> {
    let (host, port) = addr(b, ws);
    let mut o = MqttOptions::new(id, host, port);
    if ws {
        o.set_transport(Transport::Ws);
    }
    o.set_keep_alive(Duration::from_secs(10));
    if let Some((user, password)) = creds {
        o.set_credentials(user, password);
    }
    let (client, mut eventloop) = AsyncClient::new(o, 100);
    let first = tokio::time::timeout(Duration::from_secs(5), eventloop.poll())
        .await
        .expect("CONNACK in time");
    match first {
        Ok(Event::Incoming(Packet::ConnAck(ack))) => assert_eq!(ack.code, ConnectReturnCode::Success),
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return Err(code),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    let (tx, incoming) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(p) = event {
                if tx.send(p).is_err() {
                    return;
                }
            }
        }
    });
    Ok(Client { client, incoming })
}

impl Client {
    /// The next packet, or `None` when the connection ended.
    async fn next(&mut self) -> Option<Packet> {
        tokio::time::timeout(Duration::from_secs(5), self.incoming.recv())
            .await
            .expect("a packet in time")
    }

    async fn subscribe(&mut self, filter: &str) -> Vec<SubscribeReasonCode> {
        self.client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        loop {
            if let Some(Packet::SubAck(ack)) = self.next().await {
                return ack.return_codes;
            }
        }
    }
}

/// A connected rumqttc v5 client.
struct Client5 {
    client: AsyncClient5,
    incoming: mpsc::UnboundedReceiver<Packet5>,
}

async fn connect5(b: &Broker, id: &str, ws: bool, creds: Option<(&str, &str)>) -> Result<Client5, ConnectReturnCode5> {
    let (host, port) = addr(b, ws);
    let mut o = MqttOptions5::new(id, host, port);
    if ws {
        o.set_transport(Transport::Ws);
    }
    o.set_keep_alive(Duration::from_secs(10));
    if let Some((user, password)) = creds {
        o.set_credentials(user, password);
    }
    let (client, mut eventloop) = AsyncClient5::new(o, 100);
    let first = tokio::time::timeout(Duration::from_secs(5), eventloop.poll())
        .await
        .expect("CONNACK in time");
    match first {
        Ok(Event5::Incoming(Packet5::ConnAck(ack))) => assert_eq!(ack.code, ConnectReturnCode5::Success),
        Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => return Err(code),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    let (tx, incoming) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let packet = match eventloop.poll().await {
                Ok(Event5::Incoming(p)) => p,
                Ok(_) => continue,
                // rumqttc ends its event loop with the server's DISCONNECT as an error.
                Err(rumqttc::v5::ConnectionError::MqttState(rumqttc::v5::StateError::ServerDisconnect { reason_code, .. })) => {
                    Packet5::Disconnect(Disconnect::new(reason_code))
                }
                Err(_) => return,
            };
            if tx.send(packet).is_err() {
                return;
            }
        }
    });
    Ok(Client5 { client, incoming })
}

impl Client5 {
    async fn next(&mut self) -> Option<Packet5> {
        tokio::time::timeout(Duration::from_secs(8), self.incoming.recv())
            .await
            .expect("a packet in time")
    }

    /// The reason of the server's DISCONNECT, skipping other packets.
    async fn disconnect_reason(&mut self) -> DisconnectReasonCode {
        loop {
            match self.next().await {
                Some(Packet5::Disconnect(d)) => return d.reason_code,
                Some(_) => continue,
                None => panic!("closed without DISCONNECT"),
            }
        }
    }
}

#[tokio::test]
async fn mqtt3_passwords_over_tcp_and_websocket() {
    let (b, _files) = secured("");
    for ws in [false, true] {
        let wrong = connect4(&b, "a1", ws, Some(("alice", "queen"))).await;
        assert_eq!(wrong.err(), Some(ConnectReturnCode::BadUserNamePassword), "ws={ws}");
        let unknown = connect4(&b, "a1", ws, Some(("mallory", "x"))).await;
        assert_eq!(unknown.err(), Some(ConnectReturnCode::BadUserNamePassword), "ws={ws}");
        let anonymous = connect4(&b, "a1", ws, None).await;
        assert_eq!(anonymous.err(), Some(ConnectReturnCode::NotAuthorized), "ws={ws}");
        assert!(connect4(&b, "a1", ws, Some(("alice", "wonderland"))).await.is_ok(), "ws={ws}");
    }
}

#[tokio::test]
async fn mqtt5_passwords_over_tcp_and_websocket() {
    let (b, _files) = secured("");
    for ws in [false, true] {
        let wrong = connect5(&b, "a5", ws, Some(("alice", "queen"))).await;
        assert_eq!(wrong.err(), Some(ConnectReturnCode5::BadUserNamePassword), "ws={ws}");
        let anonymous = connect5(&b, "a5", ws, None).await;
        assert_eq!(anonymous.err(), Some(ConnectReturnCode5::NotAuthorized), "ws={ws}");
        assert!(connect5(&b, "a5", ws, Some(("alice", "wonderland"))).await.is_ok(), "ws={ws}");
    }
}

#[tokio::test]
async fn a_wrong_password_does_not_kick_the_real_client() {
    let (b, _files) = secured("");
    let mut real = connect5(&b, "same", false, Some(("alice", "wonderland"))).await.unwrap();
    let attacker = connect5(&b, "same", false, Some(("alice", "guess"))).await;
    assert_eq!(attacker.err(), Some(ConnectReturnCode5::BadUserNamePassword));
    real.client
        .publish("alice/still-here", rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    loop {
        match real.next().await {
            Some(Packet5::PubAck(_)) => break,
            Some(Packet5::Disconnect(d)) => panic!("the real client was kicked: {d:?}"),
            Some(_) => continue,
            None => panic!("the real client was closed"),
        }
    }
}

#[tokio::test]
async fn mqtt5_acl_denials_carry_not_authorized() {
    let (b, _files) = secured("");
    for ws in [false, true] {
        let mut c = connect5(&b, "acl5", ws, Some(("alice", "wonderland"))).await.unwrap();
        c.client
            .publish("bob/x", rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, "x")
            .await
            .unwrap();
        loop {
            if let Some(Packet5::PubAck(ack)) = c.next().await {
                assert_eq!(ack.reason, PubAckReason::NotAuthorized, "ws={ws}");
                break;
            }
        }
        c.client.subscribe("bob/#", rumqttc::v5::mqttbytes::QoS::AtLeastOnce).await.unwrap();
        loop {
            if let Some(Packet5::SubAck(ack)) = c.next().await {
                assert_eq!(ack.return_codes, [SubscribeReasonCode5::NotAuthorized], "ws={ws}");
                break;
            }
        }
    }
}

#[tokio::test]
async fn mqtt3_denied_publishes_are_acknowledged_and_dropped() {
    let (b, _files) = secured("");
    let mut admin = connect4(&b, "admin", false, Some(("admin", "root"))).await.unwrap();
    assert_eq!(admin.subscribe("#").await, [SubscribeReasonCode::Success(QoS::AtLeastOnce)]);
    for ws in [false, true] {
        let mut c = connect4(&b, "acl3", ws, Some(("alice", "wonderland"))).await.unwrap();
        assert_eq!(c.subscribe("bob/#").await, [SubscribeReasonCode::Failure], "ws={ws}");
        c.client.publish("bob/x", QoS::AtLeastOnce, false, "denied").await.unwrap();
        c.client.publish("alice/x", QoS::AtLeastOnce, false, "allowed").await.unwrap();
        let mut acks = 0;
        while acks < 2 {
            if let Some(Packet::PubAck(_)) = c.next().await {
                acks += 1;
            }
        }
        // Only the allowed one reaches a subscriber to everything.
        loop {
            match admin.next().await {
                Some(Packet::Publish(p)) => {
                    assert_eq!(p.topic, "alice/x", "ws={ws}");
                    break;
                }
                Some(_) => continue,
                None => panic!("admin closed"),
            }
        }
    }
}

#[tokio::test]
async fn a_jwt_password_works_until_it_expires() {
    let (b, _files) = secured("");
    let jwt = token(3);
    let mut v5 = connect5(&b, "jwt5", true, Some(("alice", &jwt))).await.unwrap();
    let mut v3 = connect4(&b, "jwt3", false, Some(("alice", &jwt))).await.unwrap();
    assert_eq!(v3.subscribe("alice/#").await, [SubscribeReasonCode::Success(QoS::AtLeastOnce)]);
    assert_eq!(v5.disconnect_reason().await, DisconnectReasonCode::NotAuthorized);
    loop {
        match v3.next().await {
            None => break,
            Some(p) => assert!(!matches!(p, Packet::Publish(_)), "{p:?}"),
        }
    }
    // An expired token is refused.
    let expired = connect5(&b, "jwt5", false, Some(("alice", &token(-10)))).await;
    assert_eq!(expired.err(), Some(ConnectReturnCode5::BadUserNamePassword));
    // And a token signed with another secret.
    let forged = hs256_token(
        b"another secret, also 32 bytes...",
        &serde_json::json!({ "sub": "alice", "exp": u64::MAX / 2 }),
    );
    assert_eq!(
        connect4(&b, "jwt3", false, Some(("alice", &forged))).await.err(),
        Some(ConnectReturnCode::BadUserNamePassword)
    );
}

#[tokio::test]
async fn publishing_too_fast_is_disconnected() {
    let (b, _files) = secured("[limits]\nmessages_per_second = 1.0\nmessage_burst = 3\n");
    let mut c = connect5(&b, "fast", false, Some(("alice", "wonderland"))).await.unwrap();
    for _ in 0..6 {
        c.client
            .publish("alice/x", rumqttc::v5::mqttbytes::QoS::AtMostOnce, false, "x")
            .await
            .unwrap();
    }
    assert_eq!(c.disconnect_reason().await, DisconnectReasonCode::MessageRateTooHigh);
    // MQTT 3.1.1: closed.
    let mut s = TcpStream::connect(b.addr("mqtt")).await.unwrap();
    let mut connect = vec![0x10, 33, 0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 60, 0, 2, b'r', b'3'];
    connect.extend([0, 5]);
    connect.extend(b"alice");
    connect.extend([0, 10]);
    connect.extend(b"wonderland");
    s.write_all(&connect).await.unwrap();
    let mut connack = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut connack))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
    for _ in 0..6 {
        // QoS 0 to "alice/x", empty payload.
        s.write_all(&[0x30, 0x09, 0, 7, b'a', b'l', b'i', b'c', b'e', b'/', b'x'])
            .await
            .unwrap();
    }
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);
}

#[tokio::test]
async fn an_oversized_packet_before_authentication_closes() {
    let (b, _files) = secured("");
    let mut s = TcpStream::connect(b.addr("mqtt")).await.unwrap();
    // A CONNECT announcing 70 000 bytes, beyond the 65 536 allowed before authentication.
    s.write_all(&[0x10, 0xF0, 0xA2, 0x04, 0, 4, b'M', b'Q', b'T', b'T', 4])
        .await
        .unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);
}

#[tokio::test]
async fn retained_messages_beyond_the_limit_are_delivered_but_not_kept() {
    let (b, _files) = secured("[limits]\nmax_retained_messages = 1\n");
    let mut live = connect4(&b, "live", false, Some(("admin", "root"))).await.unwrap();
    assert_eq!(live.subscribe("r/#").await, [SubscribeReasonCode::Success(QoS::AtLeastOnce)]);
    let publisher = connect4(&b, "pub", false, Some(("admin", "root"))).await.unwrap();
    for topic in ["r/1", "r/2"] {
        publisher.client.publish(topic, QoS::AtLeastOnce, true, "kept?").await.unwrap();
    }
    let mut live_topics = Vec::new();
    while live_topics.len() < 2 {
        if let Some(Packet::Publish(p)) = live.next().await {
            live_topics.push(p.topic);
        }
    }
    assert_eq!(live_topics, ["r/1", "r/2"], "both delivered live");
    let mut later = connect4(&b, "later", false, Some(("admin", "root"))).await.unwrap();
    assert_eq!(later.subscribe("r/#").await, [SubscribeReasonCode::Success(QoS::AtLeastOnce)]);
    let Some(Packet::Publish(p)) = later.next().await else {
        panic!("the retained message")
    };
    assert_eq!(p.topic, "r/1");
    let quiet = tokio::time::timeout(Duration::from_millis(300), later.incoming.recv()).await;
    assert!(!matches!(quiet, Ok(Some(Packet::Publish(_)))), "r/2 not retained: {quiet:?}");
}

#[tokio::test]
async fn a_bearer_token_from_the_websocket_upgrade_authenticates_the_connect() {
    let (b, _files) = secured("");
    let a = b.addr("ws");
    let jwt = token(60);
    // No user name or password in the CONNECT: the token in the upgrade's URL is enough.
    let mut o = MqttOptions5::new("bearer", format!("ws://{a}/mqtt?access_token={jwt}"), a.port());
    o.set_transport(Transport::Ws);
    let (client, mut eventloop) = AsyncClient5::new(o, 10);
    let first = tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await.unwrap();
    assert!(
        matches!(first, Ok(Event5::Incoming(Packet5::ConnAck(ref ack))) if ack.code == ConnectReturnCode5::Success),
        "{first:?}"
    );
    drop(client);
    // A bad token is refused at the upgrade (HTTP 401), before any MQTT.
    let mut o = MqttOptions5::new("bearer", format!("ws://{a}/mqtt?access_token=not.a.token"), a.port());
    o.set_transport(Transport::Ws);
    let (_client, mut eventloop) = AsyncClient5::new(o, 10);
    let refused = tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await.unwrap();
    assert!(refused.is_err(), "{refused:?}");
}

#[tokio::test]
async fn sighup_applies_new_rules_to_live_connections_without_dropping_them() {
    let (b, files) = secured("");
    let mut c = connect5(&b, "reload", false, Some(("alice", "wonderland"))).await.unwrap();
    let publish = |c: &Client5| {
        let client = c.client.clone();
        async move {
            client
                .publish("shared/x", rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, "x")
                .await
                .unwrap();
        }
    };
    publish(&c).await;
    loop {
        if let Some(Packet5::PubAck(ack)) = c.next().await {
            assert_eq!(ack.reason, PubAckReason::NotAuthorized);
            break;
        }
    }
    std::fs::write(files.path().join("acl"), format!("{ACL}user alice\ntopic write shared/#\n")).unwrap();
    b.signal_hup();
    assert!(b.wait_log("authentication reloaded", Duration::from_secs(10)), "{:?}", b.logs());
    // The same connection, still open: the new rule applies to its next publish.
    publish(&c).await;
    loop {
        match c.next().await {
            Some(Packet5::PubAck(ack)) => {
                // Accepted: nobody subscribes, hence 0x10 (no matching subscribers).
                assert_eq!(ack.reason, PubAckReason::NoMatchingSubscribers);
                break;
            }
            Some(Packet5::Disconnect(d)) => panic!("dropped by the reload: {d:?}"),
            Some(_) => continue,
            None => panic!("closed by the reload"),
        }
    }
}
