//! Authentication, ACL, token expiry and rate limits, through a real [`Gatekeeper`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use ferry_auth::config::{AnonymousPolicy, AuthSettings, FailedAuthSettings};
use ferry_auth::jwt::{Algorithm, JwtKey};
use ferry_auth::password::{HashParams, PasswordFile};
use ferry_auth::{Acl, AuthParts, Authenticator, CoreParts, Gatekeeper, JwtVerifier, LimitSettings, Offload, RunInline};
use jsonwebtoken::{encode, EncodingKey, Header};
use parking_lot::Mutex;
use serde_json::json;

use super::*;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
/// The wall clock the gatekeeper reads (seconds since the epoch).
const NOW: u64 = 1_700_000_000;

const ACL: &str = "\
user alice
topic readwrite sensors/#
topic deny sensors/secret/#
queue readwrite jobs.#
user bob
topic write sensors/+/temp
queue write jobs.results
user carol
topic readwrite carol/#
";

/// An offload that keeps the jobs until the test runs them (a slow password check).
#[derive(Default)]
struct Deferred(Mutex<Vec<Box<dyn FnOnce() + Send>>>);

impl Offload for Deferred {
    fn run(&self, job: Box<dyn FnOnce() + Send>) {
        self.0.lock().push(job);
    }
}

impl Deferred {
    fn run_all(&self) -> usize {
        let jobs = std::mem::take(&mut *self.0.lock());
        let n = jobs.len();
        jobs.into_iter().for_each(|job| job());
        n
    }
}

/// A gatekeeper with users alice/wonderland and bob/builder (cheap argon2 parameters),
/// [`ACL`], HS256 tokens with no leeway, and no anonymous access.
fn gate_with(offload: Arc<dyn Offload>, failed_auth: FailedAuthSettings, limits: LimitSettings) -> Arc<Gatekeeper> {
    let cheap = HashParams::new(64, 1, 1).unwrap();
    let mut passwords = PasswordFile::new();
    passwords.set_with("alice", b"wonderland", &cheap).unwrap();
    passwords.set_with("bob", b"builder", &cheap).unwrap();
    let jwt = JwtVerifier::new(&[Algorithm::HS256], JwtKey::Secret(SECRET))
        .unwrap()
        .with_leeway(Duration::ZERO);
    let authenticator = Authenticator::from_parts(AuthParts {
        anonymous: AnonymousPolicy::Auto,
        passwords: Some(passwords),
        acl: Some(Acl::parse(ACL).unwrap()),
        jwt: Some(jwt),
        close_on_token_expiry: true,
        ..AuthParts::default()
    });
    let auth = AuthSettings {
        failed_auth,
        ..AuthSettings::default()
    };
    let gate =
        Gatekeeper::new(Arc::new(authenticator), &auth, limits, offload).with_clock(Arc::new(|| UNIX_EPOCH + Duration::from_secs(NOW)));
    Arc::new(gate)
}

fn secured_with(config: StompConfig, offload: Arc<dyn Offload>, limits: LimitSettings) -> Arc<StompShared> {
    let gate = gate_with(offload, FailedAuthSettings::default(), limits);
    Arc::new(StompShared::new(CoreParts::new(Arc::new(Router::default()), gate), config))
}

fn secured() -> Arc<StompShared> {
    secured_with(StompConfig::default(), Arc::new(RunInline), LimitSettings::default())
}

fn stat(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

fn token(subject: &str, expires_in: u64) -> String {
    let claims = json!({ "sub": subject, "exp": NOW + expires_in });
    encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET)).unwrap()
}

fn login(b: &Arc<StompShared>, user: &str, passcode: &str) -> Client {
    let mut c = Client::open(b);
    let f = c.send(&format!("CONNECT\naccept-version:1.2\nlogin:{user}\npasscode:{passcode}\n\n\0"));
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].command, Command::Connected, "{f:?}");
    c.raw.clear();
    c
}

/// What the client received since `raw` was last cleared, as text.
fn raw(c: &Client) -> String {
    String::from_utf8_lossy(&c.raw).into_owned()
}

const BAD_CREDENTIALS: &str = "ERROR\nmessage:access refused\ncontent-type:text/plain\ncontent-length:16\n\nbad credentials\n\0";

// --- CONNECT ---

#[test]
fn a_wrong_passcode_is_refused_with_access_refused_then_close() {
    let b = secured();
    let mut c = Client::open(&b);
    c.send("CONNECT\naccept-version:1.2\nlogin:alice\npasscode:hunter2\nreceipt:r\n\n\0");
    assert_eq!(raw(&c), BAD_CREDENTIALS, "no receipt for a CONNECT, never the passcode");
    assert_eq!(c.closed.as_ref().map(|r| r.code.0), Some(1008));
    assert!(c.session.connect_headers().is_none());
    assert!(c.send("SEND\ndestination:/topic/a\n\n\0").is_empty(), "nothing is read after ERROR");
    assert_eq!(stat(&b.gate.stats.auth_bad_credentials), 1);
    // An unknown user and a login without passcode get the same answer.
    for connect in [
        "CONNECT\nlogin:mallory\npasscode:x\n\n\0",
        "STOMP\naccept-version:1.1\nlogin:alice\n\n\0",
    ] {
        let mut c = Client::open(&b);
        c.send(connect);
        assert_eq!(raw(&c), BAD_CREDENTIALS);
    }
}

#[test]
fn anonymous_clients_are_refused_when_users_exist() {
    let b = secured();
    let mut c = Client::open(&b);
    c.send("CONNECT\naccept-version:1.2\nhost:h\n\n\0");
    assert_eq!(
        raw(&c),
        "ERROR\nmessage:access refused\ncontent-type:text/plain\ncontent-length:15\n\nnot authorized\n\0"
    );
    assert!(c.closed.is_some());
    assert_eq!(stat(&b.gate.stats.auth_not_authorized), 1);
}

#[test]
fn a_good_login_connects_and_keeps_the_identity() {
    let b = secured();
    let c = login(&b, "alice", "wonderland");
    let identity = c.session.identity().expect("connected");
    assert_eq!(identity.username.as_deref(), Some("alice"));
    assert!(identity.client_id.starts_with("ferry-"), "the session id: {}", identity.client_id);
    assert_eq!(c.session.connect_headers().and_then(|c| c.login.as_deref()), Some("alice"));
    let mut d = Client::open(&b);
    d.send("CONNECT\naccept-version:1.2\nlogin:bob\npasscode:builder\nclient-id:dev-7\n\n\0");
    assert_eq!(d.session.identity().map(|i| i.client_id.as_str()), Some("dev-7"));
    assert_eq!(stat(&b.gate.stats.auth_successes), 2);
}

#[test]
fn the_open_gatekeeper_lets_everyone_in() {
    let mut c = Client::open(&broker());
    let f = c.send("CONNECT\naccept-version:1.2\n\n\0");
    assert_eq!(f[0].command, Command::Connected);
    assert_eq!(c.session.identity().map(|i| i.username.is_none()), Some(true));
}

#[test]
fn a_slow_check_buffers_what_follows_until_the_verdict() {
    let offload = Arc::new(Deferred::default());
    let b = secured_with(StompConfig::default(), offload.clone(), LimitSettings::default());
    let mut c = Client::open(&b);
    let f = c.send(
        "CONNECT\naccept-version:1.2\nlogin:alice\npasscode:wonderland\n\n\0\
         SUBSCRIBE\nid:1\ndestination:/topic/sensors.a\nreceipt:s\n\n\0SEND\ndestination:/topic/sensors.a\n\nhi",
    );
    assert!(f.is_empty(), "nothing before the verdict: {f:?}");
    assert!(c.wake().is_empty(), "a ring with no verdict yet changes nothing");
    assert_eq!(
        c.session.poll_timeout(),
        Some(c.now + Duration::from_secs(10)),
        "the connect deadline still holds"
    );
    assert_eq!(offload.run_all(), 1);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let rang = rt.block_on(async {
        tokio::select! {
            biased;
            () = c.wakeup.woken() => true,
            () = std::future::ready(()) => false,
        }
    });
    assert!(rang, "the verdict rings the connection's wakeup");
    let f = c.wake();
    assert_eq!(
        f.iter().map(|f| f.command).collect::<Vec<_>>(),
        [Command::Connected, Command::Receipt]
    );
    // The rest of the SEND arrives later; the buffered part was kept.
    let f = c.send("\0");
    assert_eq!(bodies(&f), ["hi"]);
}

#[test]
fn a_slow_refusal_arrives_by_the_wakeup() {
    let offload = Arc::new(Deferred::default());
    let b = secured_with(StompConfig::default(), offload.clone(), LimitSettings::default());
    let mut c = Client::open(&b);
    assert!(c.send("CONNECT\nlogin:bob\npasscode:nope\n\n\0").is_empty());
    offload.run_all();
    let f = c.wake();
    assert_error(&f, &c, "access refused", "bad credentials");
    assert_eq!(raw(&c), BAD_CREDENTIALS);
}

#[test]
fn no_verdict_within_the_connect_timeout_is_a_timeout() {
    let offload = Arc::new(Deferred::default());
    let b = secured_with(StompConfig::default(), offload, LimitSettings::default());
    let mut c = Client::open(&b);
    c.send("CONNECT\nlogin:alice\npasscode:wonderland\n\n\0");
    let f = c.advance(Duration::from_secs(10));
    assert_error(&f, &c, "connect timeout", "no CONNECT");
}

#[test]
fn repeated_failures_are_answered_after_the_delay() {
    let failed_auth = FailedAuthSettings {
        max_failures: 1,
        delay: Duration::from_secs(2),
        ..FailedAuthSettings::default()
    };
    let gate = gate_with(Arc::new(RunInline), failed_auth, LimitSettings::default());
    let b = Arc::new(StompShared::new(
        CoreParts::new(Arc::new(Router::default()), gate),
        StompConfig::default(),
    ));
    let mut first = Client::open(&b);
    first.send("CONNECT\nlogin:alice\npasscode:bad\n\n\0");
    assert_eq!(raw(&first), BAD_CREDENTIALS, "the first failure is answered at once");
    // From the same address, the next attempt (even a good one) waits 2 s.
    let mut c = Client::open(&b);
    c.now = first.now;
    assert!(c.send("CONNECT\nlogin:alice\npasscode:wonderland\n\n\0").is_empty());
    assert_eq!(c.session.poll_timeout(), Some(c.now + Duration::from_secs(2)));
    assert!(c.advance(Duration::from_millis(1999)).is_empty());
    let f = c.advance(Duration::from_millis(1));
    assert_eq!(f[0].command, Command::Connected);
}

#[test]
fn too_much_input_while_authenticating_closes() {
    let offload = Arc::new(Deferred::default());
    let config = StompConfig {
        max_body_unauthenticated: 64,
        ..Default::default()
    };
    let b = secured_with(config, offload, LimitSettings::default());
    let mut c = Client::open(&b);
    let mut input = String::from("CONNECT\nlogin:alice\npasscode:wonderland\n\n\0SEND\ndestination:/topic/x\n\n");
    assert!(c.send(&input).is_empty());
    input = "x".repeat(64);
    let f = c.send(&input);
    assert_error(
        &f,
        &c,
        "frame too large",
        "more than 64 octets received while the CONNECT was being checked",
    );
    assert_eq!(c.closed.as_ref().map(|r| r.code.0), Some(1009));
}

#[test]
fn the_body_limit_is_lower_before_connected() {
    let config = StompConfig {
        max_body_unauthenticated: 8,
        ..Default::default()
    };
    let b = broker_with(config);
    let mut c = Client::open(&b);
    let f = c.send("CONNECT\ncontent-length:9\n\n123456789\0");
    assert_error(&f, &c, "frame too large", "limit of 8");
    let mut c = Client::open(&b);
    c.send("CONNECT\naccept-version:1.2\ncontent-length:8\n\n12345678\0");
    let f = c.send("SEND\ndestination:/topic/big\nreceipt:r\n\n0123456789abcdef\0");
    assert_eq!(f[0].command, Command::Receipt, "the full limit applies once connected: {f:?}");
}

#[test]
fn a_bearer_token_from_the_upgrade_authenticates() {
    let b = secured();
    let credentials = TransportCredentials {
        bearer: Some(token("carol", 60)),
        client_cert: None,
    };
    let mut c = Client::open_with(&b, Carrier::WebSocket, Some(Arc::new(credentials)));
    let f = c.send("CONNECT\naccept-version:1.2\n\n\0");
    assert_eq!(f[0].command, Command::Connected);
    assert_eq!(c.session.identity().and_then(|i| i.username.as_deref()), Some("carol"));
}

// --- token expiry ---

#[test]
fn a_token_passcode_closes_the_connection_when_it_expires() {
    let b = secured();
    let mut c = login(&b, "carol", &token("carol", 60));
    c.send("SUBSCRIBE\nid:1\ndestination:/topic/carol.x\n\n\0");
    assert_eq!(c.session.poll_timeout(), Some(c.now + Duration::from_secs(60)));
    assert!(c.advance(Duration::from_secs(59)).is_empty());
    c.advance(Duration::from_secs(1));
    assert_eq!(
        raw(&c),
        "ERROR\nmessage:access refused\ncontent-type:text/plain\ncontent-length:14\n\ntoken expired\n\0"
    );
    assert_eq!(c.closed.as_ref().map(|r| r.code.0), Some(1008));
    assert_eq!(stat(&b.gate.stats.token_expired), 1);
    // An expired token is refused at CONNECT.
    let mut late = Client::open(&b);
    late.send(&format!("CONNECT\nlogin:carol\npasscode:{}\n\n\0", token("carol", 0)));
    assert_eq!(raw(&late), BAD_CREDENTIALS);
}

#[test]
fn a_frame_after_the_expiry_is_refused_even_before_the_timer() {
    let b = secured();
    let mut c = login(&b, "carol", &token("carol", 5));
    c.now += Duration::from_secs(5);
    let f = c.send("SEND\ndestination:/topic/carol.x\n\nx\0");
    assert_error(&f, &c, "access refused", "token expired");
}

// --- ACL ---

#[test]
fn acl_denied_send_to_a_topic_is_an_error_naming_it_with_the_receipt() {
    let b = secured();
    let mut c = login(&b, "alice", "wonderland");
    c.send("SEND\ndestination:/topic/sensors.secret.k\nreceipt:r7\n\nx\0");
    assert_eq!(
        raw(&c),
        "ERROR\nmessage:access refused\nreceipt-id:r7\ncontent-type:text/plain\ncontent-length:50\n\n\
         not authorized to send to /topic/sensors.secret.k\n\0"
    );
    assert_eq!(c.closed.as_ref().map(|r| r.code.0), Some(1008));
    assert_eq!(stat(&b.gate.stats.denied_publish), 1);
}

#[test]
fn acl_denied_subscribe_to_a_topic_is_an_error() {
    let b = secured();
    let mut c = login(&b, "bob", "builder");
    let f = c.send("SUBSCRIBE\nid:1\ndestination:/topic/sensors.#\n\n\0");
    assert_error(&f, &c, "access refused", "not authorized to subscribe to /topic/sensors.#");
    assert_eq!(stat(&b.gate.stats.denied_subscribe), 1);
    assert_eq!(b.router.subscription_count(), 0, "nothing was subscribed");
}

#[test]
fn an_mqtt_rule_covers_the_stomp_destination_it_maps_to() {
    let b = secured();
    // bob: `topic write sensors/+/temp`.
    let mut c = login(&b, "bob", "builder");
    let f = c.send("SEND\ndestination:/topic/sensors.room1.temp\nreceipt:ok\n\n21\0");
    assert_eq!(f[0].command, Command::Receipt);
    let f = c.send("SEND\ndestination:/topic/sensors.room1.humidity\n\n50\0");
    assert_error(&f, &c, "access refused", "/topic/sensors.room1.humidity");
}

#[test]
fn queue_rules_decide_send_and_subscribe() {
    let b = secured();
    // bob: `queue write jobs.results`.
    let mut c = login(&b, "bob", "builder");
    let f = c.send("SEND\ndestination:/queue/jobs.results\nreceipt:ok\n\nr\0");
    assert_eq!(f[0].command, Command::Receipt);
    let f = c.send("SUBSCRIBE\nid:1\ndestination:/queue/jobs.results\nreceipt:s\n\n\0");
    assert_eq!(header(&f[0], "receipt-id"), "s");
    assert_error(&f, &c, "access refused", "not authorized to subscribe to /queue/jobs.results");
    let mut c = login(&b, "bob", "builder");
    let f = c.send("SEND\ndestination:/queue/other\n\nr\0");
    assert_error(&f, &c, "access refused", "not authorized to send to /queue/other");
    // alice: `queue readwrite jobs.#`.
    let mut a = login(&b, "alice", "wonderland");
    let f = a.send("SUBSCRIBE\nid:1\ndestination:/queue/jobs.results\n\n\0");
    assert_eq!(bodies(&f), ["r"]);
    assert_eq!(stat(&b.gate.stats.denied_publish), 1);
    assert_eq!(stat(&b.gate.stats.denied_subscribe), 1);
}

#[test]
fn temporary_queues_are_private_and_need_no_rule() {
    let b = secured();
    // carol has no queue rule at all.
    let mut c = login(&b, "carol", &token("carol", 600));
    let f = c.send("SUBSCRIBE\nid:t\ndestination:/temp-queue/mine\n\n\0SEND\ndestination:/temp-queue/mine\nreceipt:r\n\nself\0");
    assert_eq!(
        f.iter().map(|f| f.command).collect::<Vec<_>>(),
        [Command::Receipt, Command::Message]
    );
    assert!(c.closed.is_none());
}

#[test]
fn deliveries_the_acl_takes_away_are_withheld_without_stalling_client_acks() {
    let b = secured();
    let mut c = login(&b, "alice", "wonderland");
    // Allowed by `readwrite sensors/#`, though `deny sensors/secret/#` takes part of it away.
    c.send("SUBSCRIBE\nid:1\ndestination:/topic/sensors.#\nack:client\nprefetch-count:1\n\n\0");
    for (topic, body) in [
        ("sensors/secret/a", "s1"),
        ("sensors/secret/b", "s2"),
        ("sensors/open", "o1"),
        ("sensors/secret/c", "s3"),
        ("sensors/next", "o2"),
    ] {
        let m = Message::new(TopicName::new(topic).unwrap(), Bytes::from(body), QoS::AtLeastOnce, false);
        b.router.publish(Arc::new(m), c.now);
    }
    let got = c.wake();
    assert_eq!(bodies(&got), ["o1"], "the window of 1 holds an allowed message, not a withheld one");
    let got = c.send(&format!("ACK\nid:{}\n\n\0", header(&got[0], "ack")));
    assert_eq!(bodies(&got), ["o2"]);
    assert_eq!(stat(&b.gate.stats.denied_delivery), 3);
}

#[test]
fn no_delivery_check_when_the_acl_cannot_take_anything_away() {
    let b = secured_with(StompConfig::default(), Arc::new(RunInline), LimitSettings::default());
    let acl_free = Arc::new(Gatekeeper::open());
    assert!(!acl_free.needs_delivery_check(&ferry_auth::Identity::anonymous("c")));
    assert!(b.gate.needs_delivery_check(&ferry_auth::Identity::anonymous("c")));
}

// --- limits ---

#[test]
fn sends_beyond_the_message_rate_close_the_connection() {
    let limits = LimitSettings {
        messages_per_second: 1.0,
        message_burst: 2,
        ..LimitSettings::default()
    };
    let b = secured_with(StompConfig::default(), Arc::new(RunInline), limits);
    let mut c = login(&b, "alice", "wonderland");
    c.send("SEND\ndestination:/topic/sensors.a\n\n1\0SEND\ndestination:/topic/sensors.a\n\n2\0");
    assert!(c.closed.is_none(), "the burst is allowed");
    c.now += Duration::from_secs(1);
    c.send("SEND\ndestination:/topic/sensors.a\n\n3\0");
    assert!(c.closed.is_none(), "one more token a second later");
    c.raw.clear();
    c.send("SEND\ndestination:/topic/sensors.a\nreceipt:r\n\n4\0");
    let text = "more SEND frames than limits.messages_per_second and limits.message_burst allow\n";
    assert_eq!(
        raw(&c),
        format!(
            "ERROR\nmessage:message rate too high\nreceipt-id:r\ncontent-type:text/plain\ncontent-length:{}\n\n{text}\0",
            text.len()
        )
    );
    assert_eq!(c.closed.as_ref().map(|r| r.code.0), Some(1008));
    assert_eq!(stat(&b.gate.stats.message_rate_exceeded), 1);
}

#[test]
fn too_many_subscriptions_are_counted_by_the_gatekeeper() {
    let config = StompConfig {
        max_subscriptions: 1,
        ..Default::default()
    };
    let b = secured_with(config, Arc::new(RunInline), LimitSettings::default());
    let mut c = login(&b, "alice", "wonderland");
    let f = c.send("SUBSCRIBE\nid:a\ndestination:/topic/sensors.a\n\n\0SUBSCRIBE\nid:b\ndestination:/topic/sensors.b\n\n\0");
    assert_error(&f, &c, "too many subscriptions", "more than 1");
    assert_eq!(stat(&b.gate.stats.subscription_quota_exceeded), 1);
}

#[test]
fn idle_connections_hold_no_rate_bucket_when_unlimited() {
    let b = secured();
    let c = login(&b, "alice", "wonderland");
    match &c.session.phase {
        super::super::Phase::Connected(conn) => assert!(!conn.policy.rate_limited()),
        _ => panic!("connected"),
    }
}
