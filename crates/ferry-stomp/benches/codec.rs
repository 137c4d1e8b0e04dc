//! The cost of the STOMP codec: decoding frames off a stream buffer and encoding a
//! MESSAGE into an output buffer.
//!
//! Every input is written out byte for byte as STOMP 1.2 lays the frame out, and
//! checked once before it is measured: it must decode to exactly the frame expected, so
//! no case can quietly measure an error path. The cases:
//!
//! * `stomp_decode/send_64B_content_length`: a SEND with `destination`, `content-type`,
//!   `content-length` and a 64-byte body (the body is split off by its length);
//! * `stomp_decode/send_64B_no_content_length`: the same without `content-length` (the
//!   body ends at the first NUL, which is searched for);
//! * `stomp_decode/connect`: a CONNECT with `accept-version`, `host`, `login`,
//!   `passcode` and `heart-beat`, decoded before any version is settled;
//! * `stomp_decode/send_escaped_headers_v12`: a 1.2 SEND whose headers use all four
//!   escapes (`\c`, `\\`, `\n`, `\r`), so they are unescaped into new strings;
//! * `stomp_encode/message_64B`: a MESSAGE with `destination`, `message-id`,
//!   `subscription`, `content-length` and a 64-byte body, as the broker delivers one;
//! * `stomp_stream/1000_send_64B`: 1,000 back-to-back SEND frames (the first case)
//!   decoded from one buffer until it is empty, as the transport hands the decoder what
//!   it read.
//!
//! Decoding gets a fresh buffer (and decoder) per iteration, made and dropped outside the
//! timed part (the stream case drops each decoded item inside it, as a connection does);
//! encoding reuses one output buffer, cleared each time, as a connection's writer does.
//! Throughput is in bytes of frame for the single frames and in frames for the stream.
//! Run with `cargo bench -p ferry-stomp --bench codec`.
#![allow(missing_docs, reason = "criterion_group! defines an undocumented public function")]

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ferry_stomp::codec::{encode, Command, Decoded, Decoder, Frame, Limits, Version};

/// Every body: 64 bytes of JSON.
const BODY: &[u8; 64] = br#"{"seq":42,"ts":1767225600123,"temp":21.50,"hum":48.25,"ok":true}"#;

/// Frames in the stream case.
const STREAM_FRAMES: usize = 1_000;

/// A SEND to a topic with a `content-length` (STOMP 1.2 §"SEND").
fn send_content_length() -> Vec<u8> {
    [
        &b"SEND\n"[..],
        b"destination:/topic/sensors.room1.temp\n",
        b"content-type:application/json\n",
        b"content-length:64\n",
        b"\n",
        BODY,
        b"\0",
    ]
    .concat()
}

/// The same SEND without `content-length`: the body runs to the NUL.
fn send_no_content_length() -> Vec<u8> {
    [
        &b"SEND\n"[..],
        b"destination:/topic/sensors.room1.temp\n",
        b"content-type:application/json\n",
        b"\n",
        BODY,
        b"\0",
    ]
    .concat()
}

/// The CONNECT a stompjs or stomp.py client opens with (STOMP 1.2 §"CONNECT or STOMP
/// Frame"); handshake frames are never escaped.
fn connect() -> Vec<u8> {
    [
        &b"CONNECT\n"[..],
        b"accept-version:1.2,1.1,1.0\n",
        b"host:ferry\n",
        b"login:sensor-0042\n",
        b"passcode:s3cret-passw0rd\n",
        b"heart-beat:10000,10000\n",
        b"\n",
        b"\0",
    ]
    .concat()
}

/// A 1.2 SEND with escaped header values (STOMP 1.2 §"Value Encoding"): `\c` is a
/// colon, `\\` a backslash, `\n` a LF and `\r` a CR.
fn send_escaped_headers() -> Vec<u8> {
    [
        &b"SEND\n"[..],
        b"destination:/queue/jobs\n",
        b"reply-to:/temp-queue/replies\n",
        br"correlation-id:job\c42\c7",
        b"\n",
        br"x-path:C\c\\data\\in",
        b"\n",
        br"x-note:line one\nline two\r",
        b"\n",
        b"content-length:64\n",
        b"\n",
        BODY,
        b"\0",
    ]
    .concat()
}

/// The MESSAGE the encoder is given, and the bytes it must write for it.
fn message() -> (Frame, Vec<u8>) {
    let frame = Frame::new(Command::Message)
        .with_header("destination", "/topic/sensors.room1.temp")
        .with_header("message-id", "ferry-7-42")
        .with_header("subscription", "sub-0")
        .with_header("content-length", "64")
        .with_body(Bytes::from_static(BODY));
    let wire = [
        &b"MESSAGE\n"[..],
        b"destination:/topic/sensors.room1.temp\n",
        b"message-id:ferry-7-42\n",
        b"subscription:sub-0\n",
        b"content-length:64\n",
        b"\n",
        BODY,
        b"\0",
    ]
    .concat();
    (frame, wire)
}

/// One decoding case: its name, the bytes, the version in force, what they mean.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    /// `None`: the first frame of a connection, no version negotiated yet.
    version: Option<Version>,
    expected: Frame,
}

impl Case {
    fn decoder(&self) -> Decoder {
        match self.version {
            Some(version) => Decoder::with_version(Limits::default(), version),
            None => Decoder::new(Limits::default()),
        }
    }
}

fn send(headers: &[(&str, &str)]) -> Frame {
    let mut frame = Frame::new(Command::Send).with_body(Bytes::from_static(BODY));
    for (name, value) in headers {
        frame.headers.push(*name, *value);
    }
    frame
}

fn cases() -> Vec<Case> {
    let destination = ("destination", "/topic/sensors.room1.temp");
    let content_type = ("content-type", "application/json");
    vec![
        Case {
            name: "send_64B_content_length",
            bytes: send_content_length(),
            version: Some(Version::V1_2),
            expected: send(&[destination, content_type, ("content-length", "64")]),
        },
        Case {
            name: "send_64B_no_content_length",
            bytes: send_no_content_length(),
            version: Some(Version::V1_2),
            expected: send(&[destination, content_type]),
        },
        Case {
            name: "connect",
            bytes: connect(),
            version: None,
            expected: Frame::new(Command::Connect)
                .with_header("accept-version", "1.2,1.1,1.0")
                .with_header("host", "ferry")
                .with_header("login", "sensor-0042")
                .with_header("passcode", "s3cret-passw0rd")
                .with_header("heart-beat", "10000,10000"),
        },
        Case {
            name: "send_escaped_headers_v12",
            bytes: send_escaped_headers(),
            version: Some(Version::V1_2),
            expected: send(&[
                ("destination", "/queue/jobs"),
                ("reply-to", "/temp-queue/replies"),
                ("correlation-id", "job:42:7"),
                ("x-path", r"C:\data\in"),
                ("x-note", "line one\nline two\r"),
                ("content-length", "64"),
            ]),
        },
    ]
}

/// Decodes everything in `buf`: the frames, and whether anything else (a heart-beat,
/// an error, a partial frame) turned up.
fn decode_all(decoder: &mut Decoder, mut buf: BytesMut) -> (Vec<Frame>, bool) {
    let mut frames = Vec::new();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(Decoded::Frame(frame))) => frames.push(frame),
            Ok(None) => return (frames, !buf.is_empty() || decoder.in_frame()),
            Ok(Some(Decoded::HeartBeat)) | Err(_) => return (frames, true),
        }
    }
}

/// Panics unless `case` decodes to exactly its one expected frame.
fn check(case: &Case) {
    let (frames, other) = decode_all(&mut case.decoder(), BytesMut::from(&case.bytes[..]));
    assert!(!other, "{}: something besides one whole frame", case.name);
    assert_eq!(frames, std::slice::from_ref(&case.expected), "{}", case.name);
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("stomp_decode");
    for case in cases() {
        check(&case);
        group.throughput(Throughput::Bytes(case.bytes.len() as u64));
        group.bench_function(case.name, |b| {
            b.iter_batched(
                || (case.decoder(), BytesMut::from(&case.bytes[..])),
                |(mut decoder, mut buf)| (decoder.decode(&mut buf), buf),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let (frame, wire) = message();
    let mut out = BytesMut::with_capacity(1024);
    encode(&frame, Version::V1_2, &mut out).expect("the MESSAGE encodes");
    assert_eq!(&out[..], &wire[..], "the MESSAGE encodes to the bytes expected");

    let mut group = c.benchmark_group("stomp_encode");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("message_64B", |b| {
        b.iter(|| {
            out.clear();
            encode(black_box(&frame), Version::V1_2, &mut out)
        })
    });
    group.finish();
}

fn bench_stream(c: &mut Criterion) {
    let stream = send_content_length().repeat(STREAM_FRAMES);
    let (frames, other) = decode_all(
        &mut Decoder::with_version(Limits::default(), Version::V1_2),
        BytesMut::from(&stream[..]),
    );
    assert!(
        !other && frames.len() == STREAM_FRAMES,
        "the stream decodes to {STREAM_FRAMES} frames"
    );

    let mut group = c.benchmark_group("stomp_stream");
    group.throughput(Throughput::Elements(STREAM_FRAMES as u64));
    group.bench_function(format!("{STREAM_FRAMES}_send_64B"), |b| {
        b.iter_batched(
            || BytesMut::from(&stream[..]),
            |mut buf| {
                let mut decoder = Decoder::with_version(Limits::default(), Version::V1_2);
                let mut frames = 0;
                while let Ok(Some(item)) = decoder.decode(&mut buf) {
                    black_box(item);
                    frames += 1;
                }
                frames
            },
            BatchSize::LargeInput,
        )
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
