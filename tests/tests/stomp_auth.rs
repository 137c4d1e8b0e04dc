//! STOMP authentication, ACL and limits end to end: the real broker started with a
//! password file, an ACL file and a JWT secret, raw STOMP frames over TCP (and one
//! WebSocket), answers read with Ferry's own codec.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_stomp::codec::{Command, Frame};
use ferry_testkit::gatekeeper::{hs256_token, light_hash};
use ferry_testkit::prelude::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const WAIT: Duration = Duration::from_secs(5);
const SECRET: &str = "0123456789abcdef0123456789abcdef";
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

/// The kit's STOMP client over TCP, with the calls these tests make.
struct Stomp(ferry_testkit::stomp::Stomp);

impl Stomp {
    async fn open(b: &Broker) -> Stomp {
        Stomp(ferry_testkit::stomp::Stomp::tcp(b).await)
    }

    async fn send(&mut self, raw: &str) {
        self.0.send(raw).await;
    }

    /// The next frame; `None` once the broker closed.
    async fn frame(&mut self) -> Option<Frame> {
        self.0.next_frame().await
    }

    /// CONNECT with `login`/`passcode` (no heart-beats); the broker's first answer.
    async fn connect(&mut self, login: Option<&str>, passcode: Option<&str>) -> Frame {
        let mut connect = String::from("CONNECT\naccept-version:1.2\nhost:ferry\nheart-beat:0,0\n");
        if let Some(l) = login {
            connect += &format!("login:{l}\n");
        }
        if let Some(p) = passcode {
            connect += &format!("passcode:{p}\n");
        }
        self.send(&format!("{connect}\n\0")).await;
        self.frame().await.expect("an answer to CONNECT")
    }

    /// Send `command_and_headers` with a receipt request and wait for the RECEIPT.
    async fn with_receipt(&mut self, command_and_headers: &str, body: &str) {
        self.send(&format!("{command_and_headers}\nreceipt:ok\n\n{body}\0")).await;
        let f = self.frame().await.expect("a receipt");
        assert_eq!(f.command, Command::Receipt, "{f:?}");
    }

    /// An ERROR frame, then the broker closes the connection.
    async fn expect_error(&mut self, message: &str, body_has: &str) -> Frame {
        let e = self.frame().await.expect("an ERROR frame");
        assert_eq!(e.command, Command::Error, "{e:?}");
        assert_eq!(e.header("message"), Some(message), "{e:?}");
        let body = String::from_utf8_lossy(&e.body).into_owned();
        assert!(body.contains(body_has), "{body:?} should say {body_has:?}");
        assert!(self.frame().await.is_none(), "the connection closes after ERROR");
        e
    }
}

fn auth_config(dir: &Path, extra: &str) -> String {
    // Light argon2id parameters (64 KiB, 1 pass): quick in debug builds.
    let hash = light_hash("pw");
    let users = write_file(dir, "passwd", &format!("alice:{hash}\nbob:{hash}\n"));
    let acl = write_file(dir, "acl", ACL);
    format!(
        "[auth]\npassword_file = {:?}\nacl_file = {:?}\n[auth.jwt]\nsecret = {SECRET:?}\nleeway = \"0s\"\n{extra}",
        users.to_str().unwrap(),
        acl.to_str().unwrap()
    )
}

fn secured(dir: &Path) -> Broker {
    Broker::start_with(&auth_config(dir, ""), &[("FERRY_LOG__LEVEL", "info")])
}

fn token(subject: &str, valid_for: Duration) -> String {
    let exp = (SystemTime::now() + valid_for).duration_since(UNIX_EPOCH).unwrap().as_secs();
    hs256_token(SECRET.as_bytes(), &serde_json::json!({ "sub": subject, "exp": exp }))
}

async fn login(b: &Broker, user: &str, passcode: &str) -> Stomp {
    let mut c = Stomp::open(b).await;
    let f = c.connect(Some(user), Some(passcode)).await;
    assert_eq!(f.command, Command::Connected, "{f:?}");
    c
}

#[tokio::test]
async fn a_bad_passcode_and_an_anonymous_client_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = secured(dir.path());
    let mut c = Stomp::open(&b).await;
    let e = c.connect(Some("alice"), Some("hunter2-secret")).await;
    assert_eq!(e.command, Command::Error, "{e:?}");
    assert_eq!(e.header("message"), Some("access refused"));
    assert_eq!(&e.body[..], b"bad credentials\n", "never the passcode");
    assert!(c.frame().await.is_none(), "closed after ERROR");
    let mut c = Stomp::open(&b).await;
    let e = c.connect(None, None).await;
    assert_eq!(e.header("message"), Some("access refused"));
    assert_eq!(&e.body[..], b"not authorized\n");
    assert!(c.frame().await.is_none());
    assert!(
        !b.logs().iter().any(|l| l.contains("hunter2-secret")),
        "the passcode is never logged"
    );
}

#[tokio::test]
async fn a_good_login_publishes_and_subscribes_where_the_acl_allows() {
    let dir = tempfile::tempdir().unwrap();
    let b = secured(dir.path());
    let mut alice = login(&b, "alice", "pw").await;
    alice.with_receipt("SUBSCRIBE\nid:1\ndestination:/topic/sensors.*.temp", "").await;
    // bob's rule is written for MQTT (`topic write sensors/+/temp`): it covers the STOMP
    // destination /topic/sensors.room1.temp.
    let mut bob = login(&b, "bob", "pw").await;
    bob.with_receipt("SEND\ndestination:/topic/sensors.room1.temp", "21").await;
    let m = alice.frame().await.unwrap();
    assert_eq!(m.command, Command::Message);
    assert_eq!(m.header("destination"), Some("/topic/sensors.room1.temp"));
    assert_eq!(&m.body[..], b"21");
    // Queues by their own rules: bob may send to jobs.results, alice may consume it.
    bob.with_receipt("SEND\ndestination:/queue/jobs.results", "r1").await;
    alice.send("SUBSCRIBE\nid:q\ndestination:/queue/jobs.results\n\n\0").await;
    let m = alice.frame().await.unwrap();
    assert_eq!(&m.body[..], b"r1");
}

#[tokio::test]
async fn acl_denied_sends_and_subscribes_get_access_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = secured(dir.path());
    let mut c = login(&b, "alice", "pw").await;
    c.send("SEND\ndestination:/topic/sensors.secret.k\nreceipt:r1\n\nx\0").await;
    let e = c
        .expect_error("access refused", "not authorized to send to /topic/sensors.secret.k")
        .await;
    assert_eq!(e.header("receipt-id"), Some("r1"));
    let mut c = login(&b, "bob", "pw").await;
    c.send("SUBSCRIBE\nid:1\ndestination:/topic/sensors.#\n\n\0").await;
    c.expect_error("access refused", "not authorized to subscribe to /topic/sensors.#")
        .await;
    let mut c = login(&b, "bob", "pw").await;
    c.send("SEND\ndestination:/queue/other\n\nx\0").await;
    c.expect_error("access refused", "not authorized to send to /queue/other").await;
    let mut c = login(&b, "bob", "pw").await;
    c.send("SUBSCRIBE\nid:1\ndestination:/queue/jobs.results\n\n\0").await;
    c.expect_error("access refused", "not authorized to subscribe to /queue/jobs.results")
        .await;
    let ws = b.addr("ws");
    assert_eq!(metric(ws, "ferry_acl_denied_publish").await, Some(2.0));
    assert_eq!(metric(ws, "ferry_acl_denied_subscribe").await, Some(2.0));
}

#[tokio::test]
async fn a_jwt_passcode_connects_and_its_expiry_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let b = secured(dir.path());
    let mut c = login(&b, "carol", &token("carol", Duration::from_secs(2))).await;
    c.with_receipt("SUBSCRIBE\nid:1\ndestination:/topic/carol.inbox", "").await;
    let started = std::time::Instant::now();
    let e = c.frame().await.expect("an ERROR at the token's expiry");
    assert_eq!(e.command, Command::Error, "{e:?}");
    assert_eq!(e.header("message"), Some("access refused"));
    assert_eq!(&e.body[..], b"token expired\n");
    assert!(started.elapsed() <= Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(c.frame().await.is_none());
    assert_eq!(metric(b.addr("ws"), "ferry_token_expired").await, Some(1.0));
    // An expired token is refused at CONNECT.
    let mut c = Stomp::open(&b).await;
    let expired = hs256_token(SECRET.as_bytes(), &serde_json::json!({ "sub": "carol", "exp": 1 }));
    let e = c.connect(Some("carol"), Some(&expired)).await;
    assert_eq!((e.command, e.header("message")), (Command::Error, Some("access refused")));
}

#[tokio::test]
async fn sends_beyond_the_message_rate_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = auth_config(dir.path(), "[limits]\nmessages_per_second = 1.0\nmessage_burst = 3\n");
    let b = Broker::start_with(&config, &[("FERRY_LOG__LEVEL", "info")]);
    let mut c = login(&b, "alice", "pw").await;
    let sends: String = (0..5).map(|n| format!("SEND\ndestination:/topic/sensors.a\n\n{n}\0")).collect();
    c.send(&sends).await;
    c.expect_error("message rate too high", "limits.messages_per_second").await;
    assert_eq!(metric(b.addr("ws"), "ferry_message_rate_exceeded").await, Some(1.0));
}

#[tokio::test]
async fn a_refusal_over_websocket_is_an_error_frame_then_a_policy_close() {
    let dir = tempfile::tempdir().unwrap();
    let b = secured(dir.path());
    let mut request = format!("ws://{}/stomp", b.addr("ws")).into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "v12.stomp".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(WsMessage::text("CONNECT\naccept-version:1.2\nlogin:bob\npasscode:nope\n\n\0"))
        .await
        .unwrap();
    let mut error = None;
    let mut close = None;
    while let Some(Ok(m)) = tokio::time::timeout(WAIT, ws.next()).await.expect("in time") {
        match m {
            WsMessage::Text(t) => error = Some(t.to_string()),
            WsMessage::Close(c) => {
                close = c.map(|c| u16::from(c.code));
                break;
            }
            _ => {}
        }
    }
    assert_eq!(
        error.as_deref(),
        Some("ERROR\nmessage:access refused\ncontent-type:text/plain\ncontent-length:16\n\nbad credentials\n\0")
    );
    assert_eq!(close, Some(1008));
}
