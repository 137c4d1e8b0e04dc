//! The session's security behaviour, byte for byte: authentication at CONNECT (inline and
//! off the connection's task), the ACL on publish, subscribe, will and delivery, token
//! expiry, the message rate, the subscription quota and the pre-authentication packet size.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use ferry_auth::config::{AnonymousPolicy, FailedAuthSettings};
use ferry_auth::jwt::{Algorithm, JwtKey};
use ferry_auth::password::HashParams;
use ferry_auth::{Acl, AuthParts, AuthSettings, Authenticator, Gatekeeper, JwtVerifier, LimitSettings, Offload, PasswordFile, RunInline};
use ferry_core::{Carrier, Connection, ConnectionInfo, Input, Message, MessageKind, Output, QoS, Router, TopicName, Wakeup};

use super::MqttConnection;
use crate::codec::{self, Ack, Connect, Packet, Property, Publish, Subscribe, Subscription, Version, Will};
use crate::config::MqttConfig;
use crate::shared::MqttShared;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
/// The wall clock the gatekeeper reads: fixed.
const WALL: u64 = 1_700_000_000;

const ACL: &str = "\
user alice
topic readwrite alice/#
topic deny alice/secret/#
topic read public/#
";

/// An offload that keeps the password checks until the test runs them.
#[derive(Default)]
struct Deferred(Mutex<Vec<Box<dyn FnOnce() + Send>>>);

impl Offload for Deferred {
    fn run(&self, job: Box<dyn FnOnce() + Send>) {
        self.0.lock().unwrap().push(job);
    }
}

impl Deferred {
    fn run_all(&self) -> usize {
        let jobs = std::mem::take(&mut *self.0.lock().unwrap());
        let n = jobs.len();
        jobs.into_iter().for_each(|job| job());
        n
    }
}

/// The gatekeeper of these tests: user alice (password "wonderland", light hashing), the
/// ACL above, HS256 tokens without leeway, anonymous clients refused.
fn gate(offload: Arc<dyn Offload>, failed_auth: FailedAuthSettings, limits: LimitSettings) -> Arc<Gatekeeper> {
    let mut passwords = PasswordFile::new();
    passwords
        .set_with("alice", b"wonderland", &HashParams::new(64, 1, 1).unwrap())
        .unwrap();
    let jwt = JwtVerifier::new(&[Algorithm::HS256], JwtKey::Secret(SECRET))
        .unwrap()
        .with_leeway(Duration::ZERO);
    let authenticator = Arc::new(Authenticator::from_parts(AuthParts {
        anonymous: AnonymousPolicy::Deny,
        passwords: Some(passwords),
        acl: Some(Acl::parse(ACL).unwrap()),
        jwt: Some(jwt),
        close_on_token_expiry: true,
        ..AuthParts::default()
    }));
    let auth = AuthSettings {
        failed_auth,
        ..AuthSettings::default()
    };
    let gate = Gatekeeper::new(authenticator, &auth, limits, offload).with_clock(Arc::new(|| UNIX_EPOCH + Duration::from_secs(WALL)));
    Arc::new(gate)
}

fn inline_gate() -> Arc<Gatekeeper> {
    gate(Arc::new(RunInline), FailedAuthSettings::default(), LimitSettings::default())
}

fn broker(gate: Arc<Gatekeeper>, config: MqttConfig) -> Arc<MqttShared> {
    Arc::new(MqttShared::with_gatekeeper(Arc::new(Router::default()), config, gate))
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// One connection to `broker`, at a test-controlled time.
struct Conn {
    session: MqttConnection,
    now: Instant,
}

impl Conn {
    fn open(broker: &Arc<MqttShared>, now: Instant) -> Conn {
        let info = ConnectionInfo {
            id: NEXT_CONN.fetch_add(1, Ordering::Relaxed),
            peer: "192.0.2.7:40000".parse().unwrap(),
            listener: "mqtt",
            tls: false,
            carrier: Carrier::Stream,
            subprotocol: None,
            wakeup: Wakeup::new(),
            credentials: None,
            monitor: Default::default(),
        };
        Conn {
            session: MqttConnection::new(broker.clone(), Arc::new(info), now),
            now,
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> Output {
        let mut out = Output::default();
        self.session
            .on_input(Input::Stream(Bytes::copy_from_slice(bytes)), self.now, &mut out);
        out
    }

    fn send(&mut self, packet: &Packet, version: Version) -> Output {
        let mut buf = BytesMut::new();
        codec::encode(packet, version, &mut buf).unwrap();
        self.feed(&buf)
    }

    fn wake(&mut self) -> Output {
        let mut out = Output::default();
        self.session.on_wake(self.now, &mut out);
        out
    }

    fn timeout(&mut self) -> Output {
        let mut out = Output::default();
        self.session.on_timeout(self.now, &mut out);
        out
    }
}

/// Everything written, as one byte string.
fn bytes(out: &Output) -> Vec<u8> {
    out.writes.iter().flat_map(|w| w.data.iter().copied()).collect()
}

fn connect(version: Version, client_id: &str, username: Option<&str>, password: Option<&[u8]>) -> Packet {
    let mut c = Connect::new(version, client_id);
    c.keep_alive = 0;
    c.username = username.map(Into::into);
    c.password = password.map(Bytes::copy_from_slice);
    Packet::Connect(c)
}

fn alice(version: Version) -> Packet {
    connect(version, "c1", Some("alice"), Some(b"wonderland"))
}

/// An MQTT 5 packet with a reason string property: `head`, remaining length, `code`
/// (after `pkid` for acknowledgements), then the property.
fn with_reason(head: u8, pkid: Option<u16>, code: u8, reason: &str) -> Vec<u8> {
    let mut body = Vec::new();
    if let Some(id) = pkid {
        body.extend(id.to_be_bytes());
    } else if head == 0x20 {
        body.push(0); // CONNACK flags
    }
    body.push(code);
    body.push(u8::try_from(3 + reason.len()).unwrap());
    body.push(0x1F);
    body.extend(u16::try_from(reason.len()).unwrap().to_be_bytes());
    body.extend(reason.as_bytes());
    let mut out = vec![head, u8::try_from(body.len()).unwrap()];
    out.extend(body);
    out
}

fn connected(broker: &Arc<MqttShared>, version: Version, now: Instant) -> Conn {
    let mut conn = Conn::open(broker, now);
    let out = conn.send(&alice(version), version);
    assert_eq!(&bytes(&out)[..4], &[0x20, bytes(&out)[1], 0x00, 0x00], "accepted");
    assert!(out.close.is_none());
    conn
}

fn publish(topic: &str, qos: QoS, pkid: u16) -> Packet {
    let mut p = Publish::new(topic, qos, Bytes::from_static(b"x"));
    p.pkid = pkid;
    Packet::Publish(p)
}

fn subscribe(pkid: u16, filters: &[&str]) -> Packet {
    Packet::Subscribe(Subscribe {
        pkid,
        subscriptions: filters.iter().map(|f| Subscription::new(*f, QoS::AtLeastOnce)).collect(),
        properties: Default::default(),
    })
}

#[test]
fn wrong_password_is_refused_with_the_versions_code() {
    let b = broker(inline_gate(), MqttConfig::default());
    let now = Instant::now();
    let mut c = Conn::open(&b, now);
    let out = c.send(&connect(Version::V3_1_1, "c1", Some("alice"), Some(b"queen")), Version::V3_1_1);
    assert_eq!(bytes(&out), [0x20, 0x02, 0x00, 0x04]);
    assert!(out.close.is_some());
    let mut c = Conn::open(&b, now);
    let out = c.send(&connect(Version::V5, "c1", Some("alice"), Some(b"queen")), Version::V5);
    assert_eq!(bytes(&out), with_reason(0x20, None, 0x86, "bad user name or password"));
    assert!(out.close.is_some());
    assert_eq!(b.gate.stats.auth_bad_credentials.load(Ordering::Relaxed), 2);
    assert_eq!(b.sessions.len(), 0, "no session claimed");
}

#[test]
fn anonymous_is_refused_as_not_authorized() {
    let b = broker(inline_gate(), MqttConfig::default());
    let now = Instant::now();
    let out = Conn::open(&b, now).send(&connect(Version::V3_1_1, "c1", None, None), Version::V3_1_1);
    assert_eq!(bytes(&out), [0x20, 0x02, 0x00, 0x05]);
    let out = Conn::open(&b, now).send(&connect(Version::V5, "c1", None, None), Version::V5);
    assert_eq!(bytes(&out), with_reason(0x20, None, 0x87, "not authorized"));
    assert_eq!(b.gate.stats.auth_not_authorized.load(Ordering::Relaxed), 2);
}

#[test]
fn a_wrong_password_does_not_take_over_the_real_clients_session() {
    let b = broker(inline_gate(), MqttConfig::default());
    let now = Instant::now();
    let mut real = connected(&b, Version::V5, now);
    let mut attacker = Conn::open(&b, now);
    let out = attacker.send(&connect(Version::V5, "c1", Some("alice"), Some(b"guess")), Version::V5);
    assert_eq!(bytes(&out)[3], 0x86);
    let out = real.wake();
    assert!(out.is_empty(), "the real client is not disturbed: {out:?}");
    // The real client still works.
    assert_eq!(bytes(&real.send(&Packet::PingReq, Version::V5)), [0xD0, 0x00]);
}

#[test]
fn password_checked_off_task_input_buffered_until_the_verdict() {
    let offload = Arc::new(Deferred::default());
    let b = broker(
        gate(offload.clone(), FailedAuthSettings::default(), LimitSettings::default()),
        MqttConfig::default(),
    );
    let now = Instant::now();
    let mut c = Conn::open(&b, now);
    let mut input = BytesMut::new();
    codec::encode(&alice(Version::V3_1_1), Version::V3_1_1, &mut input).unwrap();
    input.extend_from_slice(&[0xC0, 0x00]); // PINGREQ, sent before the CONNACK
    let out = c.feed(&input);
    assert!(out.is_empty(), "waiting for the verdict: {out:?}");
    assert_eq!(b.sessions.len(), 0, "nothing claimed before the verdict");
    assert_eq!(c.session.poll_timeout(), Some(now + MqttConfig::default().connect_timeout));
    assert!(c.wake().is_empty(), "a wake before the verdict changes nothing");
    assert_eq!(offload.run_all(), 1);
    let out = c.wake();
    assert_eq!(
        bytes(&out),
        [0x20, 0x02, 0x00, 0x00, 0xD0, 0x00],
        "CONNACK, then the buffered PINGREQ"
    );
    assert!(out.close.is_none());
    assert_eq!(b.sessions.len(), 1);
}

#[test]
fn a_verdict_that_never_comes_ends_at_the_connect_timeout() {
    let offload = Arc::new(Deferred::default());
    let config = MqttConfig::default();
    let b = broker(
        gate(offload, FailedAuthSettings::default(), LimitSettings::default()),
        config.clone(),
    );
    let now = Instant::now();
    let mut c = Conn::open(&b, now);
    assert!(c.send(&alice(Version::V3_1_1), Version::V3_1_1).is_empty());
    c.now = now + config.connect_timeout;
    let out = c.timeout();
    assert_eq!(bytes(&out), [0x20, 0x02, 0x00, 0x03], "server unavailable");
    assert!(out.close.is_some());
}

#[test]
fn input_piling_up_while_authenticating_closes() {
    let offload = Arc::new(Deferred::default());
    let config = MqttConfig {
        max_packet_size: 1000,
        ..MqttConfig::default()
    };
    let b = broker(gate(offload, FailedAuthSettings::default(), LimitSettings::default()), config);
    let mut c = Conn::open(&b, Instant::now());
    assert!(c.send(&alice(Version::V3_1_1), Version::V3_1_1).is_empty());
    assert!(c.feed(&[0xC0, 0x00].repeat(500)).is_empty(), "1000 bytes kept");
    let out = c.feed(&[0xC0]);
    assert!(bytes(&out).is_empty() && out.close.is_some(), "{out:?}");
    assert_eq!(b.stats.too_large_unauthenticated.load(Ordering::Relaxed), 1);
}

#[test]
fn repeated_failures_delay_the_answer() {
    let failed_auth = FailedAuthSettings {
        max_failures: 1,
        delay: Duration::from_millis(100),
        ..FailedAuthSettings::default()
    };
    let b = broker(
        gate(Arc::new(RunInline), failed_auth, LimitSettings::default()),
        MqttConfig::default(),
    );
    let now = Instant::now();
    let wrong = connect(Version::V3_1_1, "c1", Some("alice"), Some(b"queen"));
    assert_eq!(bytes(&Conn::open(&b, now).send(&wrong, Version::V3_1_1)), [0x20, 2, 0, 4]);
    let mut c = Conn::open(&b, now);
    assert!(c.send(&wrong, Version::V3_1_1).is_empty(), "answer delayed");
    assert_eq!(c.session.poll_timeout(), Some(now + Duration::from_millis(100)));
    c.now = now + Duration::from_millis(99);
    assert!(c.timeout().is_empty());
    c.now = now + Duration::from_millis(100);
    assert_eq!(bytes(&c.timeout()), [0x20, 2, 0, 4]);
}

#[test]
fn packets_before_authentication_are_small() {
    let config = MqttConfig {
        max_packet_size_unauthenticated: 100,
        ..MqttConfig::default()
    };
    let b = broker(inline_gate(), config);
    let now = Instant::now();
    // Refused as soon as the protocol level is read: MQTT 5 gets CONNACK 0x95 Packet
    // too large, MQTT 3.1.1 (which has no such code) is closed.
    for (version, answer) in [(Version::V5, vec![0x20, 0x03, 0x00, 0x95, 0x00]), (Version::V3_1_1, vec![])] {
        let big = connect(version, "c1", Some("alice"), Some(&[b'p'; 100]));
        let out = Conn::open(&b, now).send(&big, version);
        assert_eq!(bytes(&out), answer);
        assert!(out.close.is_some(), "{out:?}");
    }
    assert_eq!(b.stats.too_large_unauthenticated.load(Ordering::Relaxed), 2);
    // Once authenticated, max_packet_size applies.
    let mut c = connected(&b, Version::V3_1_1, now);
    let mut p = Publish::new("alice/big", QoS::AtLeastOnce, vec![0u8; 500]);
    p.pkid = 9;
    let out = c.send(&Packet::Publish(p), Version::V3_1_1);
    assert_eq!(bytes(&out), [0x40, 0x02, 0x00, 0x09]);
    assert!(out.close.is_none());
}

#[test]
fn denied_publish_mqtt5_says_not_authorized() {
    let b = broker(inline_gate(), MqttConfig::default());
    let now = Instant::now();
    let mut c = connected(&b, Version::V5, now);
    assert!(c.send(&publish("bob/x", QoS::AtMostOnce, 0), Version::V5).is_empty());
    assert_eq!(
        bytes(&c.send(&publish("bob/x", QoS::AtLeastOnce, 1), Version::V5)),
        [0x40, 0x03, 0x00, 0x01, 0x87]
    );
    assert_eq!(
        bytes(&c.send(&publish("bob/x", QoS::ExactlyOnce, 2), Version::V5)),
        [0x50, 0x03, 0x00, 0x02, 0x87]
    );
    assert_eq!(b.gate.stats.denied_publish.load(Ordering::Relaxed), 3);
    assert_eq!(b.router.stats.published.load(Ordering::Relaxed), 0, "nothing routed");
    // Allowed: routed (no subscriber: 0x10).
    assert_eq!(
        bytes(&c.send(&publish("alice/x", QoS::AtLeastOnce, 3), Version::V5)),
        [0x40, 0x03, 0x00, 0x03, 0x10]
    );
}

#[test]
fn denied_publish_mqtt3_is_acknowledged_and_dropped() {
    let b = broker(inline_gate(), MqttConfig::default());
    let now = Instant::now();
    let mut c = connected(&b, Version::V3_1_1, now);
    assert!(c.send(&publish("bob/x", QoS::AtMostOnce, 0), Version::V3_1_1).is_empty());
    assert_eq!(
        bytes(&c.send(&publish("bob/x", QoS::AtLeastOnce, 1), Version::V3_1_1)),
        [0x40, 0x02, 0x00, 0x01]
    );
    assert_eq!(
        bytes(&c.send(&publish("bob/x", QoS::ExactlyOnce, 2), Version::V3_1_1)),
        [0x50, 0x02, 0x00, 0x02]
    );
    assert_eq!(
        bytes(&c.send(&Packet::PubRel(Ack::new(2)), Version::V3_1_1)),
        [0x70, 0x02, 0x00, 0x02]
    );
    assert_eq!(b.gate.stats.denied_publish.load(Ordering::Relaxed), 3);
    assert_eq!(b.router.stats.published.load(Ordering::Relaxed), 0);
}

#[test]
fn denied_subscriptions_get_failure_codes() {
    let b = broker(inline_gate(), MqttConfig::default());
    let now = Instant::now();
    let mut c = connected(&b, Version::V3_1_1, now);
    let out = c.send(&subscribe(1, &["alice/#", "bob/#", "public/+"]), Version::V3_1_1);
    assert_eq!(bytes(&out), [0x90, 0x05, 0x00, 0x01, 0x01, 0x80, 0x01]);
    let mut c = connected(&b, Version::V5, now);
    // A shared subscription is checked without its `$share/GROUP/` prefix.
    let out = c.send(&subscribe(2, &["bob/#", "$share/g/alice/+", "$share/g/bob/+"]), Version::V5);
    assert_eq!(bytes(&out), [0x90, 0x06, 0x00, 0x02, 0x00, 0x87, 0x01, 0x87]);
    assert_eq!(b.gate.stats.denied_subscribe.load(Ordering::Relaxed), 3);
}

#[test]
fn a_denied_will_topic_refuses_the_connect() {
    let b = broker(inline_gate(), MqttConfig::default());
    let now = Instant::now();
    for (version, expected) in [
        (Version::V3_1_1, vec![0x20, 0x02, 0x00, 0x05]),
        (Version::V5, with_reason(0x20, None, 0x87, "will topic not authorized")),
    ] {
        let Packet::Connect(mut c) = alice(version) else { unreachable!() };
        c.will = Some(Will {
            topic: "bob/will".into(),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
        });
        let out = Conn::open(&b, now).send(&Packet::Connect(c), version);
        assert_eq!(bytes(&out), expected);
        assert!(out.close.is_some());
    }
    assert_eq!(b.stats.will_denied.load(Ordering::Relaxed), 2);
    assert_eq!(b.sessions.len(), 0);
}

#[test]
fn deliveries_the_acl_refuses_are_withheld_without_stalling() {
    let config = MqttConfig {
        max_inflight: 1,
        ..MqttConfig::default()
    };
    let b = broker(inline_gate(), config);
    let now = Instant::now();
    let message = |topic: &str, retain: bool| {
        Arc::new(Message::new(
            TopicName::new(topic).unwrap(),
            Bytes::from_static(b"m"),
            QoS::AtLeastOnce,
            retain,
        ))
    };
    // A retained message alice may not read, and one she may.
    b.router.publish(message("alice/secret/r", true), now);
    b.router.publish(message("alice/open/r", true), now);
    let mut c = connected(&b, Version::V3_1_1, now);
    let out = c.send(&subscribe(1, &["alice/#"]), Version::V3_1_1);
    let sent = bytes(&out);
    assert_eq!(&sent[..5], [0x90, 0x03, 0x00, 0x01, 0x01]);
    let mut decoder = codec::Decoder::client(Version::V3_1_1, 1 << 20);
    let mut rest = BytesMut::from(&sent[5..]);
    let Some(Packet::Publish(p)) = decoder.decode(&mut rest).unwrap() else {
        panic!("{sent:?}")
    };
    assert_eq!((&*p.topic, p.pkid), ("alice/open/r", 1));
    assert!(rest.is_empty());
    // Live: two withheld QoS 1 messages, then one allowed, behind a window of one.
    for topic in ["alice/secret/a", "alice/secret/b", "alice/ok"] {
        b.router.publish(message(topic, false), now);
    }
    assert!(c.wake().is_empty(), "window full");
    let out = c.send(&Packet::PubAck(Ack::new(1)), Version::V3_1_1);
    let mut rest = BytesMut::from(&bytes(&out)[..]);
    let Some(Packet::Publish(p)) = decoder.decode(&mut rest).unwrap() else {
        panic!()
    };
    assert_eq!((&*p.topic, p.pkid), ("alice/ok", 2));
    assert_eq!(b.gate.stats.denied_delivery.load(Ordering::Relaxed), 3);
}

fn token(exp: u64) -> String {
    let claims = serde_json::json!({ "sub": "alice", "exp": exp });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

#[test]
fn an_expiring_token_closes_the_connection() {
    let b = broker(inline_gate(), MqttConfig::default());
    let now = Instant::now();
    let jwt = token(WALL + 5);
    for version in [Version::V5, Version::V3_1_1] {
        let mut c = Conn::open(&b, now);
        // MQTT 3.1.1 needs a user name beside a password: the token's subject.
        let out = c.send(&connect(version, "t1", Some("alice"), Some(jwt.as_bytes())), version);
        assert_eq!(bytes(&out)[3], 0x00, "accepted");
        assert_eq!(c.session.poll_timeout(), Some(now + Duration::from_secs(5)));
        c.now = now + Duration::from_secs(5);
        let out = c.timeout();
        let expected = if version.is_v5() {
            with_reason(0xE0, None, 0x87, "token expired")
        } else {
            Vec::new()
        };
        assert_eq!(bytes(&out), expected);
        assert!(out.close.is_some());
    }
    assert_eq!(b.gate.stats.token_expired.load(Ordering::Relaxed), 2);
    // An expired token is refused at CONNECT.
    let out = Conn::open(&b, now).send(&connect(Version::V5, "t2", None, Some(token(WALL - 1).as_bytes())), Version::V5);
    assert_eq!(bytes(&out)[3], 0x86);
}

#[test]
fn message_rate_beyond_the_limit_closes() {
    let limits = LimitSettings {
        messages_per_second: 1.0,
        message_burst: 2,
        ..LimitSettings::default()
    };
    let b = broker(
        gate(Arc::new(RunInline), FailedAuthSettings::default(), limits),
        MqttConfig::default(),
    );
    let now = Instant::now();
    for version in [Version::V5, Version::V3_1_1] {
        let mut c = connected(&b, version, now);
        assert!(c.send(&publish("alice/x", QoS::AtMostOnce, 0), version).is_empty());
        c.now = now + Duration::from_secs(1);
        assert!(c.send(&publish("alice/x", QoS::AtMostOnce, 0), version).is_empty());
        assert!(c.send(&publish("alice/x", QoS::AtMostOnce, 0), version).is_empty(), "refilled");
        let out = c.send(&publish("alice/x", QoS::AtMostOnce, 0), version);
        let expected = if version.is_v5() {
            with_reason(0xE0, None, 0x96, "message rate too high")
        } else {
            Vec::new()
        };
        assert_eq!(bytes(&out), expected);
        assert!(out.close.is_some());
    }
    assert_eq!(b.gate.stats.message_rate_exceeded.load(Ordering::Relaxed), 2);
}

#[test]
fn subscription_quota_refuses_with_the_versions_code() {
    let config = MqttConfig {
        max_subscriptions: 1,
        ..MqttConfig::default()
    };
    let b = broker(inline_gate(), config);
    let now = Instant::now();
    let mut c = connected(&b, Version::V3_1_1, now);
    let out = c.send(&subscribe(1, &["alice/a", "alice/b", "alice/a"]), Version::V3_1_1);
    assert_eq!(
        bytes(&out),
        [0x90, 0x05, 0x00, 0x01, 0x01, 0x80, 0x01],
        "re-subscribing is no new subscription"
    );
    let mut c = Conn::open(&b, now);
    let out = c.send(&connect(Version::V5, "c5", Some("alice"), Some(b"wonderland")), Version::V5);
    assert_eq!(bytes(&out)[3], 0x00);
    let out = c.send(&subscribe(2, &["alice/a", "alice/b"]), Version::V5);
    assert_eq!(bytes(&out), [0x90, 0x05, 0x00, 0x02, 0x00, 0x01, 0x97]);
    assert_eq!(b.gate.stats.subscription_quota_exceeded.load(Ordering::Relaxed), 2);
}

#[test]
fn the_open_gatekeeper_lets_everyone_in() {
    let b = Arc::new(MqttShared::new(Arc::new(Router::default()), MqttConfig::default()));
    let out = Conn::open(&b, Instant::now()).send(&connect(Version::V3_1_1, "a", None, None), Version::V3_1_1);
    assert_eq!(bytes(&out), [0x20, 0x02, 0x00, 0x00]);
}

// Conformance: will delay against session expiry, take-over, text frames.

/// A broker that lets everyone in (no ACL), for the conformance tests below.
fn open_broker() -> Arc<MqttShared> {
    Arc::new(MqttShared::new(Arc::new(Router::default()), MqttConfig::default()))
}

/// A 5.0 CONNECT for `id` with `session_expiry` seconds, not clean-start when the session
/// outlives the connection.
fn connect_v5(id: &str, session_expiry: u32) -> Connect {
    let mut c = Connect::new(Version::V5, id);
    c.keep_alive = 0;
    c.clean_start = session_expiry == 0;
    if session_expiry > 0 {
        c.properties.push(Property::SessionExpiryInterval(session_expiry));
    }
    c
}

fn with_will(mut c: Connect, topic: &str, delay: u32) -> Connect {
    let mut properties = codec::Properties::new();
    properties.push(Property::WillDelayInterval(delay));
    c.will = Some(Will {
        topic: topic.into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties,
    });
    c
}

#[test]
fn a_will_goes_when_the_session_ends_if_that_is_before_its_delay() {
    // MQTT 5 §3.1.3.2.2: published when the delay passes or the session ends, whichever
    // is first.
    let b = open_broker();
    let now = Instant::now();
    // Session expiry 0: the session ends with the connection, so the will goes at once.
    let mut c = Conn::open(&b, now);
    c.send(&Packet::Connect(with_will(connect_v5("w0", 0), "wills/w0", 5)), Version::V5);
    c.session.on_closed(false, now);
    assert_eq!(b.stats.wills.load(Ordering::Relaxed), 1, "published at once");
    assert_eq!(b.tick(now), None, "nothing left waiting");
    // Session expiry 2 s, will delay 5 s: the will goes at 2 s.
    let mut c = Conn::open(&b, now);
    c.send(&Packet::Connect(with_will(connect_v5("w2", 2), "wills/w2", 5)), Version::V5);
    c.session.on_closed(false, now);
    assert_eq!(b.stats.wills.load(Ordering::Relaxed), 1);
    assert_eq!(b.tick(now), Some(now + Duration::from_secs(2)));
    b.tick(now + Duration::from_secs(2));
    assert_eq!(b.stats.wills.load(Ordering::Relaxed), 2, "published when the session ended");
    // Will delay shorter than the session: the delay holds.
    let mut c = Conn::open(&b, now);
    c.send(&Packet::Connect(with_will(connect_v5("w9", 60), "wills/w9", 1)), Version::V5);
    c.session.on_closed(false, now);
    assert_eq!(b.tick(now), Some(now + Duration::from_secs(1)));
    b.tick(now + Duration::from_secs(1));
    assert_eq!(b.stats.wills.load(Ordering::Relaxed), 3);
}

#[test]
fn a_connection_taken_over_leaves_the_queue_to_its_successor() {
    // The state that let a will be skipped: a persistent subscriber's old connection,
    // taken over but not yet told (its wake-up not yet handled), reads a PUBACK from its
    // client, and the delivery round that follows took the message queued meanwhile (a
    // will) out of the session's queue and wrote it to the socket that is going away.
    let b = open_broker();
    let now = Instant::now();
    let mut old = Conn::open(&b, now);
    old.send(&Packet::Connect(connect_v5("sub", 300)), Version::V5);
    let mut s = Subscribe {
        pkid: 1,
        subscriptions: vec![Subscription::new("wills/#", QoS::ExactlyOnce)],
        properties: Default::default(),
    };
    old.send(&Packet::Subscribe(s.clone()), Version::V5);
    let mut publisher = Conn::open(&b, now);
    publisher.send(&Packet::Connect(connect_v5("pub", 0)), Version::V5);
    publisher.send(&publish("wills/first", QoS::AtLeastOnce, 1), Version::V5);
    let first = old.wake();
    assert_eq!(bytes(&first)[0] & 0xF0, 0x30, "the first message reached the old connection");
    // The client reconnects: the new connection takes the session over.
    let mut new = Conn::open(&b, now);
    let out = new.send(&Packet::Connect(connect_v5("sub", 300)), Version::V5);
    assert_eq!(bytes(&out)[3], 0x00, "accepted");
    // A will arrives for the session, and the old connection reads its client's PUBACK.
    let mut dying = Conn::open(&b, now);
    dying.send(&Packet::Connect(with_will(connect_v5("dying", 0), "wills/dying", 0)), Version::V5);
    dying.session.on_closed(false, now);
    let late = old.send(&Packet::PubAck(Ack::new(1)), Version::V5);
    assert!(
        !bytes(&late).windows(4).any(|w| w == b"gone"),
        "the old connection wrote the will: {late:?}"
    );
    let out = new.wake();
    assert!(
        bytes(&out).windows(4).any(|w| w == b"gone"),
        "the new connection gets the will: {out:?}"
    );
    // The old connection then learns of the take-over and leaves with 0x8E.
    let out = old.wake();
    assert_eq!(&bytes(&out)[..3], &[0xE0, bytes(&out)[1], 0x8E]);
    old.session.on_closed(false, now);
    s.pkid = 2;
    assert_eq!(
        bytes(&new.send(&Packet::Subscribe(s), Version::V5))[0],
        0x90,
        "the session still serves"
    );
}

#[test]
fn mqtt_in_a_websocket_text_frame_closes() {
    // MQTT 3.1.1 and 5.0 §6.0 [MQTT-6.0.0-1]: only binary frames.
    let b = open_broker();
    let now = Instant::now();
    let text = |conn: &mut Conn, packet: &Packet, version: Version| {
        let mut buf = BytesMut::new();
        codec::encode(packet, version, &mut buf).unwrap();
        let mut out = Output::default();
        conn.session
            .on_input(Input::Message(MessageKind::Text, buf.freeze()), now, &mut out);
        out
    };
    // A CONNECT in a text frame: no CONNACK, closed with 1003.
    let mut c = Conn::open(&b, now);
    let out = text(&mut c, &Packet::Connect(connect_v5("t1", 0)), Version::V5);
    assert!(bytes(&out).is_empty(), "{out:?}");
    assert_eq!(out.close.as_ref().map(|c| c.code.0), Some(1003));
    // A valid, all-ASCII PUBLISH after an accepted CONNECT: DISCONNECT 0x82, not routed.
    let mut sub = Conn::open(&b, now);
    sub.send(&Packet::Connect(connect_v5("t-sub", 0)), Version::V5);
    sub.send(&subscribe(1, &["ascii"]), Version::V5);
    let mut c = Conn::open(&b, now);
    c.send(&Packet::Connect(connect_v5("t2", 0)), Version::V5);
    let mut p = Publish::new("ascii", QoS::AtMostOnce, Bytes::from_static(b"hello"));
    p.pkid = 0;
    let out = text(&mut c, &Packet::Publish(p), Version::V5);
    assert_eq!(&bytes(&out)[..3], &[0xE0, bytes(&out)[1], 0x82]);
    assert_eq!(out.close.as_ref().map(|c| c.code.0), Some(1003));
    assert!(bytes(&sub.wake()).is_empty(), "not routed");
    assert_eq!(b.stats.text_frames.load(Ordering::Relaxed), 2);
}
