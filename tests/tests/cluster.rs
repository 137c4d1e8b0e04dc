//! Ferry nodes in a cluster on a real nats-server (JetStream on, on loopback): messages
//! cross nodes for MQTT 3.1.1/5 and STOMP over TCP and WebSocket with their
//! properties, once each even with overlapping subscriptions, never back to their own
//! node, only to nodes with interest; retained messages are shared and survive node
//! and NATS restarts; a node cut off from NATS serves its own clients and says so. An
//! MQTT client id is unique in the cluster (take-over across nodes, racing connects),
//! a persistent session moves between nodes with its subscriptions and queued
//! messages (from its record when the old node is dead), a persistent session is
//! refused without NATS, and a dead node's wills are published once.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_testkit::nats::NatsServer;
use ferry_testkit::prelude::*;
use ferry_testkit::stomp::Stomp;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::Transport;
use tokio::sync::mpsc;

/// A node of the cluster on `nats`, named `name`, with `env` overrides.
fn node(nats: &NatsServer, name: &str, env: &[(&str, &str)]) -> Broker {
    Broker::start_with(&format!("[cluster]\nnats_url = \"{}\"\nnode_name = \"{name}\"\n", nats.url()), env)
}

struct Client {
    client: AsyncClient,
    incoming: mpsc::UnboundedReceiver<Packet>,
    _task: tokio::task::JoinHandle<()>,
}

async fn mqtt(b: &Broker, id: &str, ws: bool) -> Client {
    let mut o = if ws {
        let addr = b.addr("ws");
        let mut o = MqttOptions::new(id, format!("ws://{addr}/mqtt"), addr.port());
        o.set_transport(Transport::Ws);
        o
    } else {
        let addr = b.addr("mqtt");
        MqttOptions::new(id, addr.ip().to_string(), addr.port())
    };
    o.set_keep_alive(Duration::from_secs(10));
    let (client, mut eventloop) = AsyncClient::new(o, 100);
    let (tx, incoming) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(p) = event {
                if tx.send(p).is_err() {
                    return;
                }
            }
        }
    });
    let mut c = Client {
        client,
        incoming,
        _task: task,
    };
    assert!(matches!(c.next().await, Packet::ConnAck(_)));
    c
}

impl Client {
    async fn next(&mut self) -> Packet {
        tokio::time::timeout(Duration::from_secs(5), self.incoming.recv())
            .await
            .expect("a packet in time")
            .expect("client running")
    }

    async fn publish(&mut self) -> Publish {
        loop {
            if let Packet::Publish(p) = self.next().await {
                return p;
            }
        }
    }

    async fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.client.subscribe(filter, qos).await.unwrap();
        while !matches!(self.next().await, Packet::SubAck(_)) {}
    }

    /// Publishes received within `wait`.
    async fn publishes_within(&mut self, wait: Duration) -> Vec<Publish> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(p)) = tokio::time::timeout_at(deadline, self.incoming.recv()).await {
            if let Packet::Publish(p) = p {
                out.push(p);
            }
        }
        out
    }
}

/// A metric of `b`, 0 when absent.
async fn m(b: &Broker, name: &str) -> f64 {
    metric(b.addr("ws"), name).await.unwrap_or(0.0)
}

/// Waits (at most 10 s) until `b`'s metric `name` is at least `want`.
async fn wait_metric(b: &Broker, name: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = m(b, name).await;
        if v >= want {
            return;
        }
        assert!(Instant::now() < deadline, "{name} stayed at {v}, wanted {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (at most 10 s) until `b`'s `/healthz` body starts with `want`.
async fn wait_health(b: &Broker, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = http_request(b.addr("ws"), "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        if r.body.starts_with(want) {
            assert_eq!(r.status, 200, "a node cut off from NATS still serves: {}", r.body);
            return r.body;
        }
        if Instant::now() >= deadline {
            let logs: Vec<String> = b
                .logs()
                .into_iter()
                .filter(|l| l.contains("cluster") || l.contains("nats"))
                .collect();
            panic!("healthz said {:?}, wanted {want}; cluster logs: {logs:#?}", r.body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// nats-server's view of connection `name`: the subjects it subscribes to under
/// `ferry.m.` (the message routing subjects; its other subscriptions are JetStream's
/// reply inboxes).
async fn connz(nats: &NatsServer, name: &str) -> Vec<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // HTTP/1.0: the whole body, then the server closes (no chunked encoding).
    let mut s = tokio::net::TcpStream::connect(nats.monitor()).await.unwrap();
    s.write_all(b"GET /connz?subs=1 HTTP/1.0\r\nHost: x\r\n\r\n").await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all))
        .await
        .expect("connz in time")
        .unwrap();
    let all = String::from_utf8_lossy(&all);
    let body = all.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let v: serde_json::Value = serde_json::from_str(body).expect("connz JSON");
    let conns = v["connections"].as_array().expect("connections");
    let c = conns
        .iter()
        .find(|c| c["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no NATS connection named {name}: {body}"));
    let mut subs: Vec<String> = c["subscriptions_list"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|s| s.as_str())
                .filter(|s| s.starts_with("ferry.m."))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    subs.sort();
    subs
}

fn h<'f>(f: &'f ferry_stomp::codec::Frame, name: &str) -> &'f str {
    f.header(name).unwrap_or_else(|| panic!("no {name} header in {f:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_nodes_once_with_their_properties_for_mqtt_and_stomp_over_tcp_and_websocket() {
    let nats = NatsServer::start();
    let a = node(&nats, "A", &[]);
    let b = node(&nats, "B", &[]);
    let c = node(&nats, "C", &[]);

    // On B one MQTT 5 session (TCP) holds overlapping filters; on C a STOMP client
    // subscribes over WebSocket.
    let mut on_b = mqtt(&b, "sub-b", false).await;
    on_b.subscribe("x/#", QoS::AtLeastOnce).await;
    on_b.subscribe("x/a", QoS::AtLeastOnce).await;
    let (mut stomp_c, _) = Stomp::ws(&c, "v12.stomp").await;
    stomp_c.connect("1.2").await;
    stomp_c.with_receipt("SUBSCRIBE\nid:0\ndestination:/topic/x.a", "", "s").await;
    // x/# is x.> and x; x/a is x.a.
    wait_metric(&b, "ferry_cluster_nats_subscriptions", 3.0).await;
    wait_metric(&c, "ferry_cluster_nats_subscriptions", 1.0).await;

    // MQTT 5 over WebSocket on A, with every property.
    let pub_a = mqtt(&a, "pub-a", true).await;
    let props = PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some("text/plain".into()),
        response_topic: Some("replies/1".into()),
        correlation_data: Some(Bytes::from_static(b"corr")),
        user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
        ..Default::default()
    };
    pub_a
        .client
        .publish_with_properties("x/a", QoS::AtLeastOnce, false, "hello", props)
        .await
        .unwrap();

    let got = on_b.publish().await;
    assert_eq!((&got.topic[..], &got.payload[..]), (&b"x/a"[..], &b"hello"[..]));
    let p = got.properties.expect("MQTT 5 properties");
    assert_eq!(p.payload_format_indicator, Some(1));
    assert_eq!(p.content_type.as_deref(), Some("text/plain"));
    assert_eq!(p.response_topic.as_deref(), Some("replies/1"));
    assert_eq!(p.correlation_data.as_deref(), Some(&b"corr"[..]));
    assert_eq!(
        p.user_properties,
        [("k".to_owned(), "v".to_owned()), ("k".to_owned(), "w".to_owned())]
    );

    let f = stomp_c.frame().await;
    assert_eq!(f.command, ferry_stomp::codec::Command::Message, "{f:?}");
    assert_eq!(&f.body[..], b"hello");
    assert_eq!(h(&f, "destination"), "/topic/x.a");
    assert_eq!(h(&f, "content-type"), "text/plain");
    assert_eq!(h(&f, "k"), "v");

    // STOMP over TCP on C → MQTT on B; MQTT 3.1.1 over TCP on A → B.
    let mut stomp_pub = Stomp::tcp(&c).await;
    stomp_pub.connect("1.2").await;
    stomp_pub
        .with_receipt("SEND\ndestination:/topic/x.a\ncontent-type:application/json", "{}", "r1")
        .await;
    let got = on_b.publish().await;
    assert_eq!((&got.topic[..], &got.payload[..]), (&b"x/a"[..], &b"{}"[..]));
    assert_eq!(got.properties.and_then(|p| p.content_type).as_deref(), Some("application/json"));
    // The STOMP subscriber on C gets it from its own node, once.
    let f = stomp_c.frame().await;
    assert_eq!(&f.body[..], b"{}");

    let v5 = mqtt(&a, "v5-a", false).await;
    v5.client.publish("x/deep/er", QoS::AtMostOnce, false, "q0").await.unwrap();
    let got = on_b.publish().await;
    assert_eq!((&got.topic[..], &got.payload[..]), (&b"x/deep/er"[..], &b"q0"[..]));

    // Exactly one copy each, though B's NATS connection got two of every x/a message.
    assert!(on_b.publishes_within(Duration::from_millis(500)).await.is_empty(), "no duplicates");
    assert!(stomp_c.frames_within(Duration::from_millis(300)).await.is_empty(), "no duplicates");
    assert!(m(&b, "ferry_cluster_dedup_dropped").await >= 2.0, "overlap copies were dropped");

    // No echo and no interest: A holds no subscription, so NATS sent it nothing, and
    // C (interested in x.a only) got nothing of x/deep/er.
    assert!(connz(&nats, "A").await.is_empty(), "A has no interest: no routing subscription");
    assert_eq!(connz(&nats, "B").await, ["ferry.m.x", "ferry.m.x.>", "ferry.m.x.a"]);
    assert_eq!(connz(&nats, "C").await, ["ferry.m.x.a"]);
    assert_eq!(m(&a, "ferry_cluster_messages_sent").await, 2.0);
    assert_eq!(m(&c, "ferry_cluster_messages_sent").await, 1.0);
    assert_eq!(m(&a, "ferry_cluster_messages_received").await, 0.0);
    assert_eq!(m(&c, "ferry_cluster_messages_received").await, 1.0, "only the x/a from A");
    assert_eq!(
        m(&c, "ferry_cluster_own_dropped").await,
        0.0,
        "no_echo: C's own STOMP message never came back"
    );

    // The last subscription gone, the interest goes.
    stomp_c.with_receipt("UNSUBSCRIBE\nid:0", "", "u").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while m(&c, "ferry_cluster_nats_subscriptions").await > 0.0 {
        assert!(Instant::now() < deadline, "C kept its NATS subscription");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(connz(&nats, "C").await.is_empty());
}

/// Subscribes a new client on `b` to `filter` until it gets a retained message (the
/// mirror converges asynchronously); returns it, or None if none came in 10 s.
async fn retained_on(b: &Broker, id: &str, filter: &str) -> Option<Publish> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        let mut c = mqtt(b, &format!("{id}-{n}"), false).await;
        c.subscribe(filter, QoS::AtLeastOnce).await;
        if let Some(p) = c.publishes_within(Duration::from_millis(300)).await.into_iter().find(|p| p.retain) {
            return Some(p);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_are_cluster_wide_and_survive_node_and_nats_restarts() {
    let mut nats = NatsServer::start();
    let a = node(&nats, "A", &[]);
    let data_b = tempfile::tempdir().unwrap();
    let data_b_dir = data_b.path().join("data");
    let data_b_str = data_b_dir.to_str().unwrap();
    let mut b = node(&nats, "B", &[("FERRY_STORAGE__DIR", data_b_str)]);
    let c = node(&nats, "C", &[]);
    for n in [&a, &b, &c] {
        wait_health(n, "ok").await;
    }

    let pub_a = mqtt(&a, "pub-a", false).await;
    pub_a.client.publish("r/1", QoS::AtLeastOnce, true, "one").await.unwrap();
    pub_a.client.publish("r/2", QoS::AtLeastOnce, true, "two").await.unwrap();
    wait_metric(&a, "ferry_cluster_kv_puts", 2.0).await;

    // A subscriber on C gets what was retained on A.
    let got = retained_on(&c, "c", "r/1").await.expect("r/1 retained on C");
    assert_eq!(&got.payload[..], b"one");
    let got = retained_on(&c, "c2", "r/+").await.expect("r/+ retained on C");
    assert!(got.topic.starts_with(b"r/"));

    // Cleared on A: gone on B (after the mirror converged).
    pub_a.client.publish("r/2", QoS::AtLeastOnce, true, "").await.unwrap();
    wait_metric(&a, "ferry_cluster_kv_deletes", 1.0).await;
    wait_metric(&b, "ferry_retained_messages", 1.0).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while m(&b, "ferry_retained_messages").await != 1.0 {
        assert!(Instant::now() < deadline, "r/2 was not cleared on B");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A node restarted on its own data, with a change made while it was away.
    b.kill_9();
    drop(b);
    pub_a.client.publish("r/3", QoS::AtLeastOnce, true, "three").await.unwrap();
    pub_a.client.publish("r/1", QoS::AtLeastOnce, true, "").await.unwrap();
    wait_metric(&a, "ferry_cluster_kv_deletes", 2.0).await;
    let b = node(&nats, "B", &[("FERRY_STORAGE__DIR", data_b_str)]);
    wait_health(&b, "ok").await;
    let got = retained_on(&b, "b", "r/3").await.expect("r/3 on the restarted B");
    assert_eq!(&got.payload[..], b"three");
    assert_eq!(
        m(&b, "ferry_retained_messages").await,
        1.0,
        "r/1, cleared while B was away, is gone"
    );
    // A fresh node (no data of its own) gets them too.
    let d = node(&nats, "D", &[]);
    let got = retained_on(&d, "d", "r/3").await.expect("r/3 on a new node");
    assert_eq!(&got.payload[..], b"three");

    // nats-server restarted on its store: the nodes reconnect and resynchronise.
    nats.stop();
    wait_health(&c, "degraded").await;
    nats.resume();
    wait_metric(&c, "ferry_cluster_connects", 2.0).await;
    wait_health(&c, "ok").await;
    pub_a.client.publish("r/4", QoS::AtLeastOnce, true, "four").await.unwrap();
    let got = retained_on(&c, "c3", "r/4").await.expect("r/4 after the NATS restart");
    assert_eq!(&got.payload[..], b"four");
    let got = retained_on(&c, "c4", "r/3").await.expect("r/3 kept across the NATS restart");
    assert_eq!(&got.payload[..], b"three");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_nats_serves_its_own_clients_and_catches_up_when_nats_is_back() {
    let mut nats = NatsServer::start();
    let a = node(&nats, "A", &[]);
    let b = node(&nats, "B", &[]);
    let mut on_b = mqtt(&b, "sub-b", false).await;
    on_b.subscribe("t/#", QoS::AtMostOnce).await;
    let mut local_a = mqtt(&a, "sub-a", true).await;
    local_a.subscribe("t/#", QoS::AtMostOnce).await;
    wait_metric(&b, "ferry_cluster_nats_subscriptions", 2.0).await;
    let pub_a = mqtt(&a, "pub-a", false).await;
    pub_a.client.publish("t/1", QoS::AtLeastOnce, false, "before").await.unwrap();
    assert_eq!(&on_b.publish().await.payload[..], b"before");
    assert_eq!(&local_a.publish().await.payload[..], b"before");

    nats.stop();
    let body = wait_health(&a, "degraded").await;
    assert!(body.contains("NATS unreachable"), "{body}");
    assert_eq!(m(&a, "ferry_cluster_connected").await, 0.0);
    // Local clients are served all the same, QoS 1 acknowledged.
    pub_a.client.publish("t/2", QoS::AtLeastOnce, false, "during").await.unwrap();
    assert_eq!(&local_a.publish().await.payload[..], b"during");

    nats.resume();
    wait_metric(&a, "ferry_cluster_connects", 2.0).await;
    wait_metric(&b, "ferry_cluster_connects", 2.0).await;
    wait_health(&a, "ok").await;
    // B's subscriptions were sent again on reconnect: cross-node delivery resumes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    loop {
        n += 1;
        pub_a
            .client
            .publish("t/3", QoS::AtMostOnce, false, format!("after {n}"))
            .await
            .unwrap();
        let got = on_b.publishes_within(Duration::from_millis(300)).await;
        if got.iter().any(|p| p.payload.starts_with(b"after")) {
            break;
        }
        assert!(Instant::now() < deadline, "cross-node delivery did not resume");
    }
    assert_eq!(
        connz(&nats, "B").await,
        ["ferry.m.t", "ferry.m.t.>"],
        "B holds its subscriptions again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_nats_message_is_delivered_as_qos0_and_garbage_is_dropped() {
    let nats = NatsServer::start();
    let a = node(&nats, "A", &[]);
    let mut on_a = mqtt(&a, "sub-a", false).await;
    on_a.subscribe("plain/#", QoS::AtLeastOnce).await;
    wait_metric(&a, "ferry_cluster_nats_subscriptions", 2.0).await;
    // A bare NATS client: PUB with no envelope, then an envelope that is cut short.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", nats.port)).await.unwrap();
    let mut info = [0u8; 4096];
    let _ = raw.read(&mut info).await.unwrap();
    raw.write_all(b"CONNECT {\"verbose\":false}\r\nPUB ferry.m.plain.x 2\r\nhi\r\nPUB ferry.m.plain.x 5\r\nFRY\x01\x05\r\nPUB ferry.m.plain.=!! 1\r\nz\r\nPING\r\n")
        .await
        .unwrap();
    let got = on_a.publish().await;
    assert_eq!(
        (&got.topic[..], &got.payload[..], got.qos),
        (&b"plain/x"[..], &b"hi"[..], QoS::AtMostOnce)
    );
    wait_metric(&a, "ferry_cluster_bad_messages", 2.0).await;
    assert!(on_a.publishes_within(Duration::from_millis(300)).await.is_empty());
    assert_eq!(m(&a, "ferry_cluster_foreign_messages").await, 1.0);
}

/// A connected MQTT 3.1.1 client (rumqttc v4) on `b` and its incoming packets.
async fn mqtt311(b: &Broker, id: &str, ws: bool) -> (rumqttc::AsyncClient, mpsc::UnboundedReceiver<rumqttc::Packet>) {
    let mut o = if ws {
        let addr = b.addr("ws");
        let mut o = rumqttc::MqttOptions::new(id, format!("ws://{addr}/mqtt"), addr.port());
        o.set_transport(Transport::Ws);
        o
    } else {
        let addr = b.addr("mqtt");
        rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port())
    };
    o.set_keep_alive(Duration::from_secs(10));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(o, 100);
    let (tx, mut incoming) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let rumqttc::Event::Incoming(p) = event {
                if tx.send(p).is_err() {
                    return;
                }
            }
        }
    });
    let first = tokio::time::timeout(Duration::from_secs(5), incoming.recv())
        .await
        .expect("CONNACK in time");
    assert!(matches!(first, Some(rumqttc::Packet::ConnAck(_))), "{first:?}");
    (client, incoming)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_1_clients_on_two_nodes_over_tcp_and_websocket() {
    let nats = NatsServer::start();
    let a = node(&nats, "A", &[]);
    let b = node(&nats, "B", &[]);
    let (sub, mut inbox) = mqtt311(&b, "v311-sub", true).await;
    sub.subscribe("old/+", rumqttc::QoS::AtLeastOnce).await.unwrap();
    wait_metric(&b, "ferry_cluster_nats_subscriptions", 1.0).await;
    let (publisher, _pub_inbox) = mqtt311(&a, "v311-pub", false).await;
    for i in 0..20 {
        publisher
            .publish("old/t", rumqttc::QoS::AtLeastOnce, false, format!("m{i}"))
            .await
            .unwrap();
    }
    // All twenty, once each, in the publisher's order.
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.len() < 20 {
        match tokio::time::timeout_at(deadline, inbox.recv()).await {
            Ok(Some(rumqttc::Packet::Publish(p))) => got.push(String::from_utf8(p.payload.to_vec()).unwrap()),
            Ok(Some(_)) => {}
            other => panic!("only {} of 20 arrived: {other:?}", got.len()),
        }
    }
    let want: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want);
}

/// What an MQTT 5 connection's event loop gave: a packet, or how it ended.
#[derive(Debug)]
enum Ev {
    P(Box<Packet>),
    End(String),
}

/// An MQTT 5 connection whose CONNACK and end the test looks at (TCP).
struct Raw {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Ev>,
    _task: tokio::task::JoinHandle<()>,
}

fn raw5(b: &Broker, id: &str, clean_start: bool, expiry: Option<u32>) -> Raw {
    raw5_with(b, id, clean_start, expiry, None)
}

fn raw5_with(b: &Broker, id: &str, clean_start: bool, expiry: Option<u32>, will: Option<rumqttc::v5::mqttbytes::v5::LastWill>) -> Raw {
    let addr = b.addr("mqtt");
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(10));
    o.set_clean_start(clean_start);
    o.set_session_expiry_interval(expiry);
    if let Some(will) = will {
        o.set_last_will(will);
    }
    let (client, mut eventloop) = AsyncClient::new(o, 100);
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(p)) => {
                    if tx.send(Ev::P(Box::new(p))).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Ev::End(format!("{e:?}")));
                    return;
                }
            }
        }
    });
    Raw { client, rx, _task: task }
}

impl Raw {
    /// The CONNACK, or how the connection ended before it (10 s at most).
    async fn connack(&mut self) -> Result<rumqttc::v5::mqttbytes::v5::ConnAck, String> {
        match tokio::time::timeout(Duration::from_secs(10), self.rx.recv()).await {
            Ok(Some(Ev::P(p))) if matches!(*p, Packet::ConnAck(_)) => match *p {
                Packet::ConnAck(a) => Ok(a),
                _ => unreachable!(),
            },
            Ok(Some(other)) => Err(format!("{other:?}")),
            Ok(None) => Err("event loop gone".into()),
            Err(_) => Err("no CONNACK in 10 s".into()),
        }
    }

    /// How the connection ended, if it did within `wait` (packets are skipped).
    async fn ended_within(&mut self, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(Ev::End(why))) => return Some(why),
                Ok(Some(Ev::P(_))) => continue,
                Ok(None) => return Some("event loop gone".into()),
                Err(_) => return None,
            }
        }
    }

    /// The next PUBLISH within 5 s.
    async fn publish(&mut self) -> Publish {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(Ev::P(p))) => {
                    if let Packet::Publish(p) = *p {
                        return p;
                    }
                }
                other => panic!("no PUBLISH: {other:?}"),
            }
        }
    }

    /// Whether a SUBSCRIBE is answered within 5 s (the connection is alive and owned).
    async fn works(&mut self, filter: &str) -> bool {
        if self.client.subscribe(filter, QoS::AtLeastOnce).await.is_err() {
            return false;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(Ev::P(p))) if matches!(*p, Packet::SubAck(_)) => return true,
                Ok(Some(Ev::P(_))) => continue,
                _ => return false,
            }
        }
    }
}

/// The lines of `b`'s log about the cluster's sessions, for a failure's message.
fn session_logs(b: &Broker) -> Vec<String> {
    b.logs()
        .into_iter()
        .filter(|l| l.contains("cluster") || l.contains("CONNECT") || l.contains("taken"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_is_unique_in_the_cluster_mqtt_5_and_3_1_1() {
    let nats = NatsServer::start();
    let a = node(&nats, "A", &[]);
    let b = node(&nats, "B", &[]);
    for n in [&a, &b] {
        wait_health(n, "ok").await;
    }

    // MQTT 5: the connection on A gets DISCONNECT 0x8E when the same id connects on B.
    let mut on_a = raw5(&a, "dup-5", true, None);
    assert!(on_a.connack().await.is_ok());
    let mut on_b = raw5(&b, "dup-5", true, None);
    let ack = on_b.connack().await.expect("CONNACK on B");
    assert_eq!(ack.code, rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success);
    let ended = on_a.ended_within(Duration::from_secs(5)).await;
    assert!(
        ended.as_deref().is_some_and(|e| e.contains("SessionTakenOver")),
        "A's connection: {ended:?}; A: {:#?}",
        session_logs(&a)
    );
    assert!(on_b.works("t/x").await, "B's connection is the one left");
    assert_eq!(m(&b, "ferry_cluster_takeovers_total").await, 1.0);
    assert_eq!(m(&a, "ferry_cluster_takeovers_received_total").await, 1.0);

    // And back: B's connection is taken over by A's.
    let mut again_a = raw5(&a, "dup-5", true, None);
    assert!(again_a.connack().await.is_ok());
    assert!(on_b.ended_within(Duration::from_secs(5)).await.is_some(), "B's connection closed");
    assert!(again_a.works("t/y").await);

    // MQTT 3.1.1: the connection on A is closed.
    let (_c311, mut rx311) = mqtt311(&a, "dup-311", false).await;
    let (c311_b, _rx311_b) = mqtt311(&b, "dup-311", false).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, rx311.recv()).await {
            Ok(None) => break,
            Ok(Some(_)) => continue,
            Err(_) => panic!("the 3.1.1 connection on A stayed open; A: {:#?}", session_logs(&a)),
        }
    }
    c311_b.subscribe("t/z", rumqttc::QoS::AtLeastOnce).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connects_with_one_client_id_racing_on_two_nodes_leave_exactly_one_owner() {
    let nats = NatsServer::start();
    let a = node(&nats, "A", &[]);
    let b = node(&nats, "B", &[]);
    for n in [&a, &b] {
        wait_health(n, "ok").await;
    }
    for round in 0..5 {
        let id = format!("race-{round}");
        // Persistent sessions in even rounds, clean ones in odd ones.
        let (clean, expiry) = if round % 2 == 0 { (false, Some(60)) } else { (true, None) };
        let mut x = raw5(&a, &id, clean, expiry);
        let mut y = raw5(&b, &id, clean, expiry);
        let (ax, ay) = tokio::join!(x.connack(), y.connack());
        let ok = |r: &Result<rumqttc::v5::mqttbytes::v5::ConnAck, String>| {
            r.as_ref()
                .is_ok_and(|a| a.code == rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success)
        };
        // Settle: a take-over closes the loser within the take-over's time.
        let (ex, ey) = tokio::join!(x.ended_within(Duration::from_secs(3)), y.ended_within(Duration::from_secs(3)));
        let alive_x = ok(&ax) && ex.is_none();
        let alive_y = ok(&ay) && ey.is_none();
        assert!(
            alive_x ^ alive_y,
            "round {round}: exactly one owner, got A {ax:?} then {ex:?}, B {ay:?} then {ey:?}; A: {:#?}; B: {:#?}",
            session_logs(&a),
            session_logs(&b)
        );
        let survivor = if alive_x { &mut x } else { &mut y };
        assert!(survivor.works("race/t").await, "round {round}: the owner's connection works");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_moves_to_another_node_with_its_subscription_and_queued_messages() {
    let nats = NatsServer::start();
    let a = node(&nats, "A", &[]);
    let b = node(&nats, "B", &[]);
    for n in [&a, &b] {
        wait_health(n, "ok").await;
    }
    // Subscribed on A, then offline.
    let mut first = raw5(&a, "mover", false, Some(300));
    assert!(!first.connack().await.expect("CONNACK on A").session_present);
    assert!(first.works("move/t").await);
    first.client.disconnect().await.unwrap();
    assert!(first.ended_within(Duration::from_secs(5)).await.is_some());

    // Three QoS 1 messages queued for it on A.
    let publisher = mqtt(&a, "mover-pub", false).await;
    for i in 0..3 {
        publisher
            .client
            .publish("move/t", QoS::AtLeastOnce, false, format!("queued {i}"))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // It comes back on B: session present, the queued messages, in order.
    let mut moved = raw5(&b, "mover", false, Some(300));
    let ack = moved.connack().await.expect("CONNACK on B");
    assert!(ack.session_present, "session present on B; B: {:#?}", session_logs(&b));
    for i in 0..3 {
        let p = moved.publish().await;
        assert_eq!(&p.payload[..], format!("queued {i}").as_bytes());
        assert_eq!(p.qos, QoS::AtLeastOnce);
    }
    assert_eq!(m(&b, "ferry_cluster_sessions_moved_in_total").await, 1.0);
    assert_eq!(m(&a, "ferry_mqtt_sessions_handed_off_total").await, 1.0);

    // Its subscription works on B: for a publisher on B, and on A across the cluster.
    let local = mqtt(&b, "mover-pub-b", false).await;
    local.client.publish("move/t", QoS::AtLeastOnce, false, "on b").await.unwrap();
    assert_eq!(&moved.publish().await.payload[..], b"on b");
    wait_metric(&b, "ferry_cluster_nats_subscriptions", 1.0).await;
    publisher.client.publish("move/t", QoS::AtLeastOnce, false, "from a").await.unwrap();
    assert_eq!(&moved.publish().await.payload[..], b"from a");
    // A does not deliver to the session any more: nothing left of it there.
    assert_eq!(m(&a, "ferry_cluster_takeovers_received_total").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_nats_a_persistent_session_is_refused_and_a_clean_one_proceeds_locally() {
    let mut nats = NatsServer::start();
    let a = node(&nats, "A", &[]);
    wait_health(&a, "ok").await;
    nats.stop();
    wait_health(&a, "degraded").await;

    // MQTT 5: CONNACK 0x88 for a session that outlives its connection.
    let mut persistent = raw5(&a, "p-5", false, Some(60));
    let refused = persistent.connack().await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("ServerUnavailable")),
        "{refused:?}; A: {:#?}",
        session_logs(&a)
    );
    // MQTT 3.1.1 clean session 0: return code 3.
    let addr = a.addr("mqtt");
    let mut o = rumqttc::MqttOptions::new("p-311", addr.ip().to_string(), addr.port());
    o.set_clean_session(false);
    let (_c, mut eventloop) = rumqttc::AsyncClient::new(o, 10);
    let first = tokio::time::timeout(Duration::from_secs(10), eventloop.poll())
        .await
        .expect("an answer in time");
    assert!(
        matches!(
            first,
            Err(rumqttc::ConnectionError::ConnectionRefused(
                rumqttc::ConnectReturnCode::ServiceUnavailable
            ))
        ),
        "{first:?}"
    );
    // A clean session is served by this node alone.
    let mut clean = raw5(&a, "c-5", true, None);
    assert!(clean.connack().await.is_ok());
    assert!(clean.works("t/local").await);
    assert!(m(&a, "ferry_cluster_claims_refused_total").await >= 2.0);
    assert!(m(&a, "ferry_cluster_claims_local_total").await >= 1.0);

    // NATS back: the persistent session is accepted.
    nats.resume();
    wait_health(&a, "ok").await;
    let mut back = raw5(&a, "p-5", false, Some(60));
    let ack = back.connack().await.expect("CONNACK once NATS is back");
    assert_eq!(ack.code, rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_of_a_dead_node_resumes_on_another_from_its_record() {
    let nats = NatsServer::start();
    let mut a = node(&nats, "A", &[]);
    let b = node(&nats, "B", &[]);
    for n in [&a, &b] {
        wait_health(n, "ok").await;
    }
    let mut first = raw5(&a, "phoenix", false, Some(300));
    assert!(first.connack().await.is_ok());
    assert!(first.works("ph/t").await);
    // The claim, the session's subscriptions at CONNECT (none), then after SUBSCRIBE,
    // written to the record.
    wait_metric(&a, "ferry_cluster_sessions_kv_writes_total", 3.0).await;
    a.kill_9();
    assert!(first.ended_within(Duration::from_secs(5)).await.is_some());

    // A is gone: B resumes the session from the record (its subscription, no messages).
    let mut again = raw5(&b, "phoenix", false, Some(300));
    let ack = again.connack().await.expect("CONNACK on B");
    assert!(ack.session_present, "B: {:#?}", session_logs(&b));
    assert!(
        b.wait_log("resuming from the record's subscriptions", Duration::from_secs(5)),
        "B: {:#?}",
        session_logs(&b)
    );
    assert_eq!(m(&b, "ferry_cluster_takeovers_unanswered_total").await, 1.0);
    let publisher = mqtt(&b, "phoenix-pub", false).await;
    publisher.client.publish("ph/t", QoS::AtLeastOnce, false, "risen").await.unwrap();
    assert_eq!(&again.publish().await.payload[..], b"risen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_wills_are_published_once_by_another_node_after_their_delay() {
    use rumqttc::v5::mqttbytes::v5::{LastWill, LastWillProperties};
    let nats = NatsServer::start();
    let fast = [
        ("FERRY_CLUSTER__HEARTBEAT_INTERVAL", "200ms"),
        ("FERRY_CLUSTER__NODE_TIMEOUT", "1s"),
    ];
    let mut a = node(&nats, "A", &fast);
    let b = node(&nats, "B", &fast);
    let c = node(&nats, "C", &fast);
    for n in [&a, &b, &c] {
        wait_health(n, "ok").await;
    }
    let will = |topic: &str, delay: Option<u32>| {
        let props = delay.map(|d| LastWillProperties {
            delay_interval: Some(d),
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
        });
        Some(LastWill::new(topic, "gone", QoS::AtLeastOnce, false, props))
    };
    // On A: one client disconnects normally (no will), one with a will of delay 0, one
    // (persistent) with a will delayed 3 s.
    let mut polite = raw5_with(&a, "w-polite", true, None, will("will/polite", None));
    assert!(polite.connack().await.is_ok());
    polite.client.disconnect().await.unwrap();
    assert!(polite.ended_within(Duration::from_secs(5)).await.is_some());
    let mut now_w = raw5_with(&a, "w-now", true, None, will("will/now", None));
    assert!(now_w.connack().await.is_ok());
    let mut later = raw5_with(&a, "w-later", false, Some(60), will("will/later", Some(3)));
    assert!(later.connack().await.is_ok());
    // Three claims, the polite one's end, the persistent session's subscriptions.
    wait_metric(&a, "ferry_cluster_sessions_kv_writes_total", 5.0).await;

    let mut on_b = mqtt(&b, "will-sub-b", false).await;
    on_b.subscribe("will/#", QoS::AtLeastOnce).await;
    let mut on_c = mqtt(&c, "will-sub-c", false).await;
    on_c.subscribe("will/#", QoS::AtLeastOnce).await;
    wait_metric(&b, "ferry_cluster_nats_subscriptions", 2.0).await;
    wait_metric(&c, "ferry_cluster_nats_subscriptions", 2.0).await;
    // B and C have heard A's heartbeats.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    a.kill_9();
    let killed = Instant::now();
    let mut got_b: Vec<(String, Duration)> = Vec::new();
    let mut got_c: Vec<(String, Duration)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && (got_b.len() < 2 || got_c.len() < 2) {
        for p in on_b.publishes_within(Duration::from_millis(100)).await {
            got_b.push((String::from_utf8_lossy(&p.topic).into_owned(), killed.elapsed()));
        }
        for p in on_c.publishes_within(Duration::from_millis(100)).await {
            got_c.push((String::from_utf8_lossy(&p.topic).into_owned(), killed.elapsed()));
        }
    }
    // Nothing more comes: each will once.
    for p in on_b.publishes_within(Duration::from_secs(2)).await {
        got_b.push((String::from_utf8_lossy(&p.topic).into_owned(), killed.elapsed()));
    }
    for p in on_c.publishes_within(Duration::from_millis(200)).await {
        got_c.push((String::from_utf8_lossy(&p.topic).into_owned(), killed.elapsed()));
    }
    let logs = || format!("B: {:#?}\nC: {:#?}", session_logs(&b), session_logs(&c));
    for got in [&got_b, &got_c] {
        let topics: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(topics, ["will/now", "will/later"], "{got:?}; {}", logs());
        let (now_at, later_at) = (got[0].1, got[1].1);
        assert!(later_at >= now_at + Duration::from_millis(2500), "the delayed will waited: {got:?}");
    }
    let published =
        m(&b, "ferry_cluster_dead_node_wills_published_total").await + m(&c, "ferry_cluster_dead_node_wills_published_total").await;
    assert_eq!(published, 2.0, "each will published by one node; {}", logs());
}
