//! The admin API end to end, against the real binary: clients listed and kicked (MQTT 5
//! DISCONNECT 0x98, STOMP ERROR), subscriptions, retained messages read and deleted, API
//! keys and roles, the refusal of a public bind without keys, `$SYS`, the dashboard, the
//! OpenAPI document, and the README's `curl` examples.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_testkit::gatekeeper::light_hash;
use ferry_testkit::mqtt::{packet, read_packet, string as mqtt_string};
use ferry_testkit::prelude::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request; returns the status, the headers and the body as JSON (`Null` if none).
async fn call(addr: SocketAddr, method: &str, path: &str, auth: Option<&str>, body: Option<&str>) -> (u16, Vec<(String, String)>, Value) {
    let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let r = http_request(addr, &req).await;
    let json = if r.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&r.body).unwrap_or_else(|_| Value::String(r.body.clone()))
    };
    (r.status, r.headers, json)
}

async fn get(addr: SocketAddr, path: &str) -> Value {
    let (status, _, v) = call(addr, "GET", path, None, None).await;
    assert_eq!(status, 200, "{path}: {v}");
    v
}

/// An MQTT 5 client over TCP, connected as `id` and subscribed to `filter`.
async fn mqtt5(addr: SocketAddr, id: &str, filter: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut connect = mqtt_string("MQTT");
    connect.extend_from_slice(&[5, 0x02, 0, 60, 0]);
    connect.extend(mqtt_string(id));
    s.write_all(&packet(0x10, &connect)).await.unwrap();
    let mut sub = vec![0, 1, 0];
    sub.extend(mqtt_string(filter));
    sub.push(0);
    s.write_all(&packet(0x82, &sub)).await.unwrap();
    // CONNACK and SUBACK.
    let mut seen = Vec::new();
    while !(seen.contains(&0x20) && seen.contains(&0x90)) {
        let (first, _) = read_packet(&mut s).await.expect("CONNACK and SUBACK");
        seen.push(first & 0xF0);
    }
    s
}

fn wait_for<F: FnMut() -> bool>(mut f: F) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "condition not met in time");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn clients_are_listed_with_their_subscriptions_and_a_kicked_mqtt5_client_gets_disconnect_0x98() {
    let b = Broker::start("");
    let admin = b.addr("admin");
    let mut dev = mqtt5(b.addr("mqtt"), "dev-1", "sensors/#").await;
    let list = get(admin, "/api/v1/clients?protocol=mqtt").await;
    let c = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["clientid"] == "dev-1")
        .cloned()
        .expect("dev-1 listed");
    assert_eq!(
        (c["version"].as_str(), c["transport"].as_str(), c["listener"].as_str()),
        (Some("5.0"), Some("tcp"), Some("mqtt"))
    );
    assert!(c["connected_at"].as_u64().unwrap() > 1_600_000_000_000);
    assert!(c["bytes_in"].as_u64().unwrap() > 0);
    assert_eq!(get(admin, "/api/v1/clients?transport=ws").await["meta"]["count"], 0);
    let one = get(admin, "/api/v1/clients/dev-1").await;
    assert_eq!(one["subscriptions"][0]["topic"], "sensors/#");
    let subs = get(admin, "/api/v1/subscriptions?client=dev-1").await;
    assert_eq!(subs["data"][0]["topic"], "sensors/#");
    assert_eq!(get(admin, "/api/v1/sessions").await["data"][0]["clientid"], "dev-1");
    let (status, _, v) = call(admin, "DELETE", "/api/v1/clients/dev-1", None, None).await;
    assert_eq!(status, 204, "{v}");
    let (first, body) = read_packet(&mut dev).await.expect("a DISCONNECT");
    assert_eq!((first, body[0]), (0xE0, 0x98), "MQTT 5 DISCONNECT, Administrative action");
    let mut rest = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(5), dev.read(&mut rest)).await.unwrap();
    assert!(matches!(closed, Ok(0) | Err(_)), "the connection is closed after the DISCONNECT");
    let (status, _, v) = call(admin, "GET", "/api/v1/clients/nobody", None, None).await;
    assert_eq!((status, v["error"].as_str()), (404, Some("client_not_found")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("nobody"));
    let (status, _, v) = call(admin, "DELETE", "/api/v1/clients/nobody", None, None).await;
    assert_eq!((status, v["error"].as_str()), (404, Some("client_not_found")));
    assert!(get(admin, "/api/v1/stats").await["kicks"].as_u64() == Some(1));
}

#[tokio::test]
async fn a_kicked_stomp_client_gets_an_error_frame() {
    let b = Broker::start("");
    let admin = b.addr("admin");
    let mut s = TcpStream::connect(b.addr("stomp")).await.unwrap();
    s.write_all(b"CONNECT\naccept-version:1.2\nhost:/\n\n\0").await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("CONNECTED"));
    let list = get(admin, "/api/v1/clients?protocol=stomp").await;
    let id = list["data"][0]["clientid"].as_str().unwrap().to_owned();
    assert_eq!(list["data"][0]["version"], "1.2");
    let (status, _, _) = call(admin, "DELETE", &format!("/api/v1/clients/{id}"), None, None).await;
    assert_eq!(status, 204);
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("ERROR\n") && text.contains("message:closed by an administrator"),
        "{text}"
    );
}

#[tokio::test]
async fn retained_messages_are_read_deleted_and_cleared_by_filter() {
    let b = Broker::start("");
    let admin = b.addr("admin");
    for t in ["a/1", "a/2", "b/1"] {
        let body = format!(r#"{{"topic":"{t}","payload":"v-{t}","retain":true,"qos":1}}"#);
        let (status, _, v) = call(admin, "POST", "/api/v1/publish", None, Some(&body)).await;
        assert_eq!((status, v["message"].as_str()), (202, Some("no_matching_subscribers")), "{v}");
    }
    let a = get(admin, "/api/v1/retained?match=a/%23").await;
    assert_eq!(a["meta"]["count"], 2);
    let paged = get(admin, "/api/v1/retained?limit=1&page=2").await;
    assert_eq!(
        (paged["data"][0]["topic"].as_str(), paged["meta"]["hasnext"].as_bool()),
        (Some("a/2"), Some(true))
    );
    let one = get(admin, "/api/v1/retained/a/1").await;
    assert_eq!((one["payload"].as_str(), one["qos"].as_u64()), (Some("v-a/1"), Some(1)));
    assert_eq!(call(admin, "DELETE", "/api/v1/retained/a/1", None, None).await.0, 204);
    let (status, _, v) = call(admin, "GET", "/api/v1/retained/a/1", None, None).await;
    assert_eq!((status, v["error"].as_str()), (404, Some("not_found")));
    let (status, _, v) = call(admin, "DELETE", "/api/v1/retained", None, None).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("bad_request")),
        "a bulk delete names its filter"
    );
    let (status, _, v) = call(admin, "DELETE", "/api/v1/retained?match=%23", None, None).await;
    assert_eq!((status, v["deleted"].as_u64()), (200, Some(2)));
    let (status, _, v) = call(admin, "GET", "/api/v1/clients?limit=0", None, None).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("bad_request")));
    let (status, _, v) = call(admin, "POST", "/api/v1/publish", None, Some("{not json")).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("bad_request")));
    assert!(v["message"].as_str().unwrap().contains("JSON"), "{v}");
    let (status, _, v) = call(admin, "GET", "/api/v1/nothing", None, None).await;
    assert_eq!((status, v["error"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn the_openapi_document_and_the_dashboard_are_served() {
    let b = Broker::start("");
    let admin = b.addr("admin");
    let doc = get(admin, "/api/v1/openapi.json").await;
    assert_eq!(doc["openapi"], "3.0.3");
    for path in [
        "/api/v1/clients/{id}",
        "/api/v1/retained",
        "/api/v1/publish",
        "/api/v1/events",
        "/api/v1/stats",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    for (path, kind) in [("/", "text/html"), ("/app.js", "text/javascript"), ("/style.css", "text/css")] {
        let r = http_request(admin, &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-type").unwrap().starts_with(kind));
        assert!(!r.body.contains("http://") || path != "/app.js", "nothing fetched from elsewhere");
    }
    let r = http_request(admin, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    let r = http_request(admin, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(r.status, 404, "the admin listener does not serve /metrics");
    assert!(b.logs().iter().any(|l| l.contains(&format!("dashboard at http://{admin}/"))));
    let r = http_request(b.addr("ws"), "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(r.body.contains("ferry_http_requests_total{route=\"metrics\"}"), "{}", r.body);
    let listeners = get(admin, "/api/v1/listeners").await;
    assert!(listeners["data"].as_array().unwrap().iter().any(|l| l["name"] == "ws"));
}

fn hashed(secret: &str) -> String {
    light_hash(secret)
}

#[tokio::test]
async fn a_viewer_key_reads_but_cannot_kick_delete_or_publish() {
    let dir = tempfile::tempdir().unwrap();
    let keys = write_file(
        dir.path(),
        "keys",
        &format!("ops:{}\neyes:{}\n", hashed("ops-secret"), hashed("eyes-secret")),
    );
    let keys = keys.to_string_lossy().into_owned();
    let b = Broker::start_with("", &[("FERRY_ADMIN__API_KEYS_FILE", &keys), ("FERRY_ADMIN__ADMIN_KEYS", "ops")]);
    let admin = b.addr("admin");
    let _dev = mqtt5(b.addr("mqtt"), "dev-2", "x").await;
    let (status, headers, v) = call(admin, "GET", "/api/v1/clients", None, None).await;
    assert_eq!((status, v["error"].as_str()), (401, Some("unauthorized")));
    assert!(headers.iter().any(|(k, v)| k == "www-authenticate" && v.starts_with("Basic")));
    assert_eq!(call(admin, "GET", "/", None, None).await.0, 401, "the dashboard asks for a key too");
    let (status, _, _) = call(admin, "GET", "/api/v1/clients", Some("Bearer eyes:wrong"), None).await;
    assert_eq!(status, 401);
    let viewer = "Basic ZXllczpleWVzLXNlY3JldA=="; // eyes:eyes-secret
    let (status, _, v) = call(admin, "GET", "/api/v1/clients", Some(viewer), None).await;
    assert_eq!((status, v["meta"]["count"].as_u64()), (200, Some(1)));
    assert_eq!(call(admin, "GET", "/api/v1/whoami", Some(viewer), None).await.2["role"], "viewer");
    for (method, path, body) in [
        ("DELETE", "/api/v1/clients/dev-2", None),
        ("DELETE", "/api/v1/retained?match=%23", None),
        ("POST", "/api/v1/publish", Some(r#"{"topic":"x","payload":"y"}"#)),
    ] {
        let (status, _, v) = call(admin, method, path, Some(viewer), body).await;
        assert_eq!((status, v["error"].as_str()), (403, Some("forbidden")), "{method} {path}: {v}");
        assert!(v["message"].as_str().unwrap().contains("viewer"));
    }
    assert_eq!(
        get_with(admin, "/api/v1/clients", viewer).await["meta"]["count"],
        1,
        "still connected"
    );
    let (status, _, _) = call(admin, "DELETE", "/api/v1/clients/dev-2", Some("Bearer ops:ops-secret"), None).await;
    assert_eq!(status, 204, "the admin key kicks");
}

async fn get_with(addr: SocketAddr, path: &str, auth: &str) -> Value {
    call(addr, "GET", path, Some(auth), None).await.2
}

#[test]
fn a_public_admin_bind_without_keys_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "ferry.toml", LOOPBACK);
    let mut child = Command::new(ferry_bin())
        .arg("--config")
        .arg(&path)
        .env("FERRY_LISTENERS__ADMIN__BIND", "0.0.0.0:0")
        .env("FERRY_STORAGE__DIR", dir.path().join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ferry started with a public admin listener and no keys");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(err.contains("not a loopback address") && err.contains("api_keys_file"), "{err}");
}

#[tokio::test]
async fn sys_topics_are_retained_and_reach_mqtt_and_stomp_subscribers() {
    let b = Broker::start_with("", &[("FERRY_ADMIN__SYS_INTERVAL", "1s")]);
    let admin = b.addr("admin");
    wait_for(|| b.logs().iter().any(|l| l.contains("ferry started")));
    std::thread::sleep(Duration::from_millis(1200));
    let mut m = mqtt5(b.addr("mqtt"), "sys-reader", "$SYS/broker/clients/connected").await;
    let (first, body) = read_packet(&mut m).await.expect("a retained $SYS message");
    assert_eq!(first & 0xF1, 0x31, "a retained PUBLISH");
    let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
    assert_eq!(&body[2..2 + topic_len], b"$SYS/broker/clients/connected");
    let mut s = TcpStream::connect(b.addr("stomp")).await.unwrap();
    s.write_all(b"CONNECT\naccept-version:1.2\nhost:/\n\n\0SUBSCRIBE\nid:1\ndestination:/topic/$SYS.broker.version\n\n\0")
        .await
        .unwrap();
    let mut got = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !got.contains("ferry version") && Instant::now() < deadline {
        let mut buf = [0u8; 2048];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(
        got.contains("destination:/topic/$SYS.broker.version") && got.contains("ferry version"),
        "{got}"
    );
    let stats = get(admin, "/api/v1/stats").await;
    assert!(stats["sys"]["$SYS/broker/uptime"].as_str().unwrap().ends_with("seconds"));
    assert!(stats["sys"]["$SYS/broker/load/messages/received/1min"].is_string());
    assert!(!get(admin, "/api/v1/samples").await["data"].as_array().unwrap().is_empty());
}

/// The README's `curl` examples (the block after `<!-- tested by tests/tests/admin.rs -->`), run
/// with the default ports replaced by this broker's.
#[tokio::test]
async fn the_readme_curl_examples_run() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme
        .find("<!-- tested by tests/tests/admin.rs -->")
        .expect("the marked README block");
    let block = &readme[start..];
    let block = &block[block.find("```sh").expect("a sh block") + 5..];
    let block = &block[..block.find("```").unwrap()];
    let commands: Vec<&str> = block.lines().filter(|l| l.starts_with("curl ")).collect();
    assert!(commands.len() >= 5, "{commands:?}");
    let b = Broker::start("");
    let _dev = mqtt5(b.addr("mqtt"), "sensor-1", "sensors/#").await;
    for cmd in commands {
        let cmd = cmd
            .replace("127.0.0.1:18083", &b.addr("admin").to_string())
            .replace("127.0.0.1:8083", &b.addr("ws").to_string());
        let out = tokio::task::spawn_blocking(move || {
            let out = Command::new("sh").arg("-c").arg(format!("{cmd} --max-time 5")).output().unwrap();
            (cmd, out)
        })
        .await
        .unwrap();
        let (cmd, out) = out;
        assert!(
            out.status.success(),
            "{cmd}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
