//! The cost of the MQTT codec: decoding packets off a stream buffer and encoding them
//! into an output buffer.
//!
//! Every input is written out byte for byte as the MQTT 3.1.1 / 5.0 specifications lay
//! the packet out, and checked once before it is measured: it must decode to the packet
//! expected and encode back to the very same bytes, so no case can quietly measure an
//! error path. The cases, in groups `mqtt_decode` and `mqtt_encode`:
//!
//! * `publish_qos0_v311`: a QoS 0 PUBLISH, 18-byte topic, 64-byte payload (3.1.1);
//! * `publish_qos0_v5_props`: the same under 5.0 with a Content Type and a User Property;
//! * `publish_qos1_v311`: a QoS 1 PUBLISH (packet identifier, 64-byte payload);
//! * `puback`: a PUBACK (5.0, success, short form; the same bytes as 3.1.1);
//! * `connect_v5_login`: a 5.0 CONNECT with user name, password and two properties;
//! * `subscribe_v5_4_filters`: a 5.0 SUBSCRIBE with a Subscription Identifier and four
//!   filters (one wildcard each way, one shared subscription, one exact);
//! * `mqtt_stream/1000_publish_qos0_64B`: 1,000 back-to-back QoS 0 PUBLISH packets decoded
//!   from one buffer until it is empty, as the transport hands the decoder what it read.
//!
//! Decoding gets a fresh buffer (and decoder) per iteration, made and dropped outside the
//! timed part (the stream case drops each decoded item inside it, as a connection does);
//! encoding reuses one output buffer, cleared each time, as a connection's writer does.
//! Throughput is in bytes of packet for the single packets and in packets for the stream.
//! Run with `cargo bench -p ferry-mqtt --bench codec`.
#![allow(missing_docs, reason = "criterion_group! defines an undocumented public function")]

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ferry_mqtt::codec::{
    encode, Ack, Connect, Decoder, Packet, Properties, Property, Publish, QoS, RetainHandling, Subscribe, Subscription, Version,
};

/// Largest packet the benchmark decoders accept (the broker's default, 1 MiB).
const MAX_PACKET: usize = 1 << 20;

/// The application message of every PUBLISH: 64 bytes of JSON.
const PAYLOAD: &[u8; 64] = br#"{"seq":42,"ts":1767225600123,"temp":21.50,"hum":48.25,"ok":true}"#;

/// Packets in the stream case.
const STREAM_PACKETS: usize = 1_000;

/// A QoS 0 PUBLISH to `sensors/room1/temp` (3.1.1 §3.3).
fn publish_qos0_v311() -> Vec<u8> {
    [
        &[0x30, 0x54][..],     // PUBLISH, QoS 0, remaining length 84
        &[0x00, 0x12],         // topic name length 18
        b"sensors/room1/temp", //
        PAYLOAD,               // 64 bytes
    ]
    .concat()
}

/// The same PUBLISH under 5.0 with two properties (5.0 §3.3.2.3).
fn publish_qos0_v5_props() -> Vec<u8> {
    [
        &[0x30, 0x78][..],     // PUBLISH, QoS 0, remaining length 120
        &[0x00, 0x12],         // topic name length 18
        b"sensors/room1/temp", //
        &[0x23],               // property length 35
        &[0x03, 0x00, 0x10],   // Content Type, 16 bytes
        b"application/json",   //
        &[0x26, 0x00, 0x04],   // User Property: name, 4 bytes
        b"unit",               //
        &[0x00, 0x07],         // value, 7 bytes
        b"celsius",            //
        PAYLOAD,               // 64 bytes
    ]
    .concat()
}

/// A QoS 1 PUBLISH with packet identifier 42 (3.1.1 §3.3).
fn publish_qos1_v311() -> Vec<u8> {
    [
        &[0x32, 0x56][..],     // PUBLISH, QoS 1, remaining length 86
        &[0x00, 0x12],         // topic name length 18
        b"sensors/room1/temp", //
        &[0x00, 0x2A],         // packet identifier 42
        PAYLOAD,               // 64 bytes
    ]
    .concat()
}

/// PUBACK of packet 42 (5.0 §3.4: reason Success and no properties may be left out).
fn puback() -> Vec<u8> {
    vec![0x40, 0x02, 0x00, 0x2A]
}

/// A 5.0 CONNECT with clean start, keep alive 60 s, Session Expiry Interval 3600 and
/// Receive Maximum 20, client `sensor-0042`, user name and password (5.0 §3.1).
fn connect_v5_login() -> Vec<u8> {
    [
        &[0x10, 0x3E][..],               // CONNECT, remaining length 62
        &[0x00, 0x04],                   // protocol name length 4
        b"MQTT",                         //
        &[0x05],                         // protocol level 5
        &[0xC2],                         // flags: user name, password, clean start
        &[0x00, 0x3C],                   // keep alive 60
        &[0x08],                         // property length 8
        &[0x11, 0x00, 0x00, 0x0E, 0x10], // Session Expiry Interval 3600
        &[0x21, 0x00, 0x14],             // Receive Maximum 20
        &[0x00, 0x0B],                   // client identifier, 11 bytes
        b"sensor-0042",                  //
        &[0x00, 0x0B],                   // user name, 11 bytes
        b"sensor-0042",                  //
        &[0x00, 0x0F],                   // password, 15 bytes
        b"s3cret-passw0rd",              //
    ]
    .concat()
}

/// A 5.0 SUBSCRIBE, packet 10, Subscription Identifier 7, four filters (5.0 §3.8).
fn subscribe_v5_4_filters() -> Vec<u8> {
    [
        &[0x82, 0x4E][..],        // SUBSCRIBE, remaining length 78
        &[0x00, 0x0A],            // packet identifier 10
        &[0x02, 0x0B, 0x07],      // property length 2: Subscription Identifier 7
        &[0x00, 0x0E],            // filter, 14 bytes
        b"sensors/+/temp",        //
        &[0x01],                  // QoS 1
        &[0x00, 0x08],            // filter, 8 bytes
        b"alerts/#",              //
        &[0x02],                  // QoS 2
        &[0x00, 0x15],            // filter, 21 bytes
        b"$share/workers/jobs/+", //
        &[0x01],                  // QoS 1
        &[0x00, 0x12],            // filter, 18 bytes
        b"config/sensor-0042",    //
        &[0x24],                  // QoS 0, No Local, Retain Handling 2
    ]
    .concat()
}

/// The packet `publish_qos0_v311` and `publish_qos1_v311` stand for.
fn expected_publish(qos: QoS, pkid: u16) -> Packet {
    let mut p = Publish::new("sensors/room1/temp", qos, Bytes::from_static(PAYLOAD));
    p.pkid = pkid;
    Packet::Publish(p)
}

/// One case: its name, the bytes, the version, how to decode them, what they mean.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    version: Version,
    /// A decoder in the state the packet arrives in.
    decoder: fn() -> Decoder,
    expected: Packet,
}

fn cases() -> Vec<Case> {
    let v311 = || Decoder::server_with_version(Version::V3_1_1, MAX_PACKET);
    let v5 = || Decoder::server_with_version(Version::V5, MAX_PACKET);

    let mut v5_publish = Publish::new("sensors/room1/temp", QoS::AtMostOnce, Bytes::from_static(PAYLOAD));
    v5_publish.properties = Properties::new()
        .with(Property::ContentType("application/json".into()))
        .with(Property::UserProperty("unit".into(), "celsius".into()));

    let mut connect = Connect::new(Version::V5, "sensor-0042");
    connect.username = Some("sensor-0042".into());
    connect.password = Some(Bytes::from_static(b"s3cret-passw0rd"));
    connect.properties = Properties::new()
        .with(Property::SessionExpiryInterval(3600))
        .with(Property::ReceiveMaximum(20));

    let subscribe = Subscribe {
        pkid: 10,
        subscriptions: vec![
            Subscription::new("sensors/+/temp", QoS::AtLeastOnce),
            Subscription::new("alerts/#", QoS::ExactlyOnce),
            Subscription::new("$share/workers/jobs/+", QoS::AtLeastOnce),
            Subscription {
                no_local: true,
                retain_handling: RetainHandling::DoNotSend,
                ..Subscription::new("config/sensor-0042", QoS::AtMostOnce)
            },
        ],
        properties: Properties::new().with(Property::SubscriptionIdentifier(7)),
    };

    vec![
        Case {
            name: "publish_qos0_v311",
            bytes: publish_qos0_v311(),
            version: Version::V3_1_1,
            decoder: v311,
            expected: expected_publish(QoS::AtMostOnce, 0),
        },
        Case {
            name: "publish_qos0_v5_props",
            bytes: publish_qos0_v5_props(),
            version: Version::V5,
            decoder: v5,
            expected: Packet::Publish(v5_publish),
        },
        Case {
            name: "publish_qos1_v311",
            bytes: publish_qos1_v311(),
            version: Version::V3_1_1,
            decoder: v311,
            expected: expected_publish(QoS::AtLeastOnce, 42),
        },
        Case {
            name: "puback",
            bytes: puback(),
            version: Version::V5,
            decoder: v5,
            expected: Packet::PubAck(Ack::new(42)),
        },
        Case {
            name: "connect_v5_login",
            bytes: connect_v5_login(),
            version: Version::V5,
            // A new connection: the CONNECT settles the version.
            decoder: || Decoder::server(MAX_PACKET),
            expected: Packet::Connect(connect),
        },
        Case {
            name: "subscribe_v5_4_filters",
            bytes: subscribe_v5_4_filters(),
            version: Version::V5,
            decoder: v5,
            expected: Packet::Subscribe(subscribe),
        },
    ]
}

/// Panics unless `case` is a whole, valid packet that decodes to what it should and
/// encodes back to the same bytes.
fn check(case: &Case) {
    let declared = usize::from(case.bytes[1]);
    assert_eq!(case.bytes.len(), 2 + declared, "{}: remaining length", case.name);
    let mut decoder = (case.decoder)();
    let mut buf = BytesMut::from(&case.bytes[..]);
    let packet = decoder
        .decode(&mut buf)
        .unwrap_or_else(|e| panic!("{}: {e}", case.name))
        .unwrap_or_else(|| panic!("{}: incomplete", case.name));
    assert!(buf.is_empty(), "{}: bytes left over", case.name);
    assert_eq!(packet, case.expected, "{}", case.name);
    assert_eq!(decoder.version(), Some(case.version), "{}", case.name);
    let mut out = BytesMut::new();
    encode(&packet, case.version, &mut out).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    assert_eq!(&out[..], &case.bytes[..], "{}: re-encoded", case.name);
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("mqtt_decode");
    for case in cases() {
        check(&case);
        group.throughput(Throughput::Bytes(case.bytes.len() as u64));
        group.bench_function(case.name, |b| {
            b.iter_batched(
                || ((case.decoder)(), BytesMut::from(&case.bytes[..])),
                |(mut decoder, mut buf)| (decoder.decode(&mut buf), buf),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("mqtt_encode");
    for case in cases() {
        check(&case);
        let packet = case.expected;
        let mut out = BytesMut::with_capacity(1024);
        group.throughput(Throughput::Bytes(case.bytes.len() as u64));
        group.bench_function(case.name, |b| {
            b.iter(|| {
                out.clear();
                encode(black_box(&packet), case.version, &mut out)
            })
        });
    }
    group.finish();
}

fn bench_stream(c: &mut Criterion) {
    let one = publish_qos0_v311();
    let stream = one.repeat(STREAM_PACKETS);
    let decode_all = |mut buf: BytesMut| {
        let mut decoder = Decoder::server_with_version(Version::V3_1_1, MAX_PACKET);
        let mut packets = 0;
        while let Ok(Some(packet)) = decoder.decode(&mut buf) {
            black_box(packet);
            packets += 1;
        }
        (packets, buf.len())
    };
    assert_eq!(
        decode_all(BytesMut::from(&stream[..])),
        (STREAM_PACKETS, 0),
        "the stream decodes whole"
    );

    let mut group = c.benchmark_group("mqtt_stream");
    group.throughput(Throughput::Elements(STREAM_PACKETS as u64));
    group.bench_function(format!("{STREAM_PACKETS}_publish_qos0_64B"), |b| {
        b.iter_batched(|| BytesMut::from(&stream[..]), decode_all, BatchSize::LargeInput)
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = bench_decode, bench_encode, bench_stream
}
criterion_main!(benches);
