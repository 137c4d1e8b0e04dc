//! Cross-protocol semantics on the in-memory broker: MQTT and STOMP connections on one
//! router, a virtual clock, no socket. What the real binary does end to end is tested in
//! `tests/`; here each rule is checked on its own, deterministically, in microseconds.

use std::time::Duration;

use bytes::Bytes;
use ferry_mqtt::codec::{
    ByteString, Connect, Packet, Properties, Property, Publish, QoS, RetainHandling, Subscribe, Subscription, Version, Will,
};
use ferry_stomp::Command;
use ferry_testkit::memory::{ClientId, MemoryBroker};

fn connect(id: &str, keep_alive: u16, will: Option<Will>) -> Packet {
    Packet::Connect(Connect {
        version: Version::V5,
        clean_start: true,
        keep_alive,
        client_id: ByteString::from(id),
        will,
        username: None,
        password: None,
        properties: Properties::default(),
    })
}

fn subscribe(filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(Subscribe {
        pkid: 1,
        subscriptions: vec![Subscription {
            filter: ByteString::from(filter),
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::SendAtSubscribe,
        }],
        properties: Properties::default(),
    })
}

fn publish(topic: &str, payload: &'static [u8], qos: QoS, retain: bool) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain,
        topic: ByteString::from(topic),
        pkid: u16::from(qos != QoS::AtMostOnce),
        properties: Properties::default(),
        payload: Bytes::from_static(payload),
    })
}

/// A QoS 0 will, not retained.
fn will(topic: &str, payload: &'static [u8], properties: Properties) -> Will {
    Will {
        topic: ByteString::from(topic),
        payload: Bytes::from_static(payload),
        qos: QoS::AtMostOnce,
        retain: false,
        properties,
    }
}

/// An MQTT 5 client, connected (CONNACK read).
fn mqtt_client(b: &mut MemoryBroker, id: &str, keep_alive: u16, will: Option<Will>) -> ClientId {
    let c = b.connect_mqtt();
    b.send_mqtt(c, &connect(id, keep_alive, will), Version::V5);
    let got = b.mqtt_received(c);
    assert!(matches!(got.as_slice(), [Packet::ConnAck(a)] if a.code.0 == 0), "{got:?}");
    c
}

/// A STOMP 1.2 client, connected (CONNECTED read), subscribed to `destination`.
fn stomp_subscriber(b: &mut MemoryBroker, destination: &str, heart_beat: &str) -> ClientId {
    let c = b.connect_stomp();
    b.send(
        c,
        format!("CONNECT\naccept-version:1.2\nhost:memory\nheart-beat:{heart_beat}\n\n\0").as_bytes(),
    );
    let got = b.stomp_received(c);
    assert!(matches!(got.as_slice(), [f] if f.command == Command::Connected), "{got:?}");
    b.send(c, format!("SUBSCRIBE\nid:0\ndestination:{destination}\nack:auto\n\n\0").as_bytes());
    c
}

fn messages(b: &mut MemoryBroker, c: ClientId) -> Vec<(String, Bytes)> {
    b.stomp_received(c)
        .into_iter()
        .filter(|f| f.command == Command::Message)
        .map(|f| (f.header("destination").unwrap_or_default().to_owned(), f.body.clone()))
        .collect()
}

fn publishes(b: &mut MemoryBroker, c: ClientId) -> Vec<Publish> {
    b.mqtt_received(c)
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .collect()
}

#[test]
fn an_mqtt_publish_reaches_a_stomp_subscriber_with_the_topic_mapped() {
    let mut b = MemoryBroker::new();
    let sub = stomp_subscriber(&mut b, "/topic/sensors.*.temp", "0,0");
    let publisher = mqtt_client(&mut b, "pub", 0, None);
    b.send_mqtt(
        publisher,
        &publish("sensors/room1/temp", b"21.5", QoS::AtLeastOnce, false),
        Version::V5,
    );
    assert_eq!(
        messages(&mut b, sub),
        [("/topic/sensors.room1.temp".to_owned(), Bytes::from_static(b"21.5"))]
    );
    assert!(
        matches!(b.mqtt_received(publisher).as_slice(), [Packet::PubAck(a)] if a.pkid == 1),
        "the QoS 1 publish is acknowledged"
    );
}

#[test]
fn a_stomp_send_reaches_an_mqtt_subscriber_once_at_the_granted_qos() {
    let mut b = MemoryBroker::new();
    let sub = mqtt_client(&mut b, "sub", 0, None);
    b.send_mqtt(sub, &subscribe("a/+", QoS::AtLeastOnce), Version::V5);
    b.send_mqtt(sub, &subscribe("a/#", QoS::AtMostOnce), Version::V5);
    b.mqtt_received(sub);
    let sender = b.connect_stomp();
    b.send(
        sender,
        b"CONNECT\naccept-version:1.2\nhost:memory\n\n\0SEND\ndestination:/topic/a.b\n\nhello\0",
    );
    let got = publishes(&mut b, sub);
    assert_eq!(got.len(), 1, "overlapping subscriptions deliver once: {got:?}");
    assert_eq!((got[0].topic.as_ref(), &got[0].payload[..]), ("a/b", &b"hello"[..]));
    assert_eq!(
        got[0].qos,
        QoS::AtLeastOnce,
        "a SEND publishes at QoS 1, delivered at the highest QoS the overlapping subscriptions granted"
    );
}

#[test]
fn a_retained_mqtt_message_is_replayed_to_a_later_stomp_subscriber() {
    let mut b = MemoryBroker::new();
    let publisher = mqtt_client(&mut b, "pub", 0, None);
    b.send_mqtt(publisher, &publish("status/door", b"open", QoS::AtMostOnce, true), Version::V5);
    let sub = stomp_subscriber(&mut b, "/topic/status.#", "0,0");
    assert_eq!(
        messages(&mut b, sub),
        [("/topic/status.door".to_owned(), Bytes::from_static(b"open"))]
    );
}

#[test]
fn a_delayed_will_reaches_stomp_only_after_its_delay() {
    let mut b = MemoryBroker::new();
    let sub = stomp_subscriber(&mut b, "/topic/clients.#", "0,0");
    let will = will("clients/dev1", b"gone", Properties::default().with(Property::WillDelayInterval(5)));
    let dev = b.connect_mqtt();
    let mut c = match connect("dev1", 0, Some(will)) {
        Packet::Connect(c) => c,
        _ => unreachable!(),
    };
    c.properties = Properties::default().with(Property::SessionExpiryInterval(60));
    b.send_mqtt(dev, &Packet::Connect(c), Version::V5);
    b.drop_connection(dev);
    b.advance(Duration::from_secs(4));
    assert!(messages(&mut b, sub).is_empty(), "not before the will delay");
    b.advance(Duration::from_secs(1));
    assert_eq!(
        messages(&mut b, sub),
        [("/topic/clients.dev1".to_owned(), Bytes::from_static(b"gone"))]
    );
}

#[test]
fn a_silent_mqtt_client_is_closed_after_one_and_a_half_keep_alives_and_its_will_goes_to_stomp() {
    let mut b = MemoryBroker::new();
    let sub = stomp_subscriber(&mut b, "/topic/lwt", "0,0");
    let will = will("lwt", b"dev2 lost", Properties::default());
    let dev = mqtt_client(&mut b, "dev2", 10, Some(will));
    b.advance(Duration::from_secs(14));
    assert!(b.is_open(dev), "open within 1.5 × keep-alive");
    b.advance(Duration::from_secs(2));
    assert!(!b.is_open(dev), "closed after 15 s of silence");
    assert_eq!(messages(&mut b, sub), [("/topic/lwt".to_owned(), Bytes::from_static(b"dev2 lost"))]);
}

#[test]
fn a_stomp_client_whose_heart_beats_stop_is_closed_and_mqtt_traffic_goes_on() {
    let mut b = MemoryBroker::new();
    // The client promises a heart-beat every 1 s; the broker allows twice that.
    let quiet = stomp_subscriber(&mut b, "/topic/t", "1000,0");
    let mqtt_sub = mqtt_client(&mut b, "sub", 0, None);
    b.send_mqtt(mqtt_sub, &subscribe("t", QoS::AtMostOnce), Version::V5);
    b.mqtt_received(mqtt_sub);
    b.advance(Duration::from_secs(60));
    assert!(!b.is_open(quiet), "closed once heart-beats stopped");
    let errors: Vec<_> = b
        .stomp_received(quiet)
        .into_iter()
        .filter(|f| f.command == Command::Error)
        .collect();
    assert_eq!(errors.len(), 1, "an ERROR says why");
    let sender = b.connect_stomp();
    b.send(
        sender,
        b"CONNECT\naccept-version:1.2\nhost:memory\n\n\0SEND\ndestination:/topic/t\n\nstill here\0",
    );
    assert_eq!(publishes(&mut b, mqtt_sub).len(), 1);
}
