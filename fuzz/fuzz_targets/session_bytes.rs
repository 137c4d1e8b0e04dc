//! Bytes from a client fed to one MQTT or STOMP connection on a fresh broker: a new
//! `ferry_core::Router` with both adapters on their defaults, an MQTT 5 subscriber to
//! `#` and a STOMP 1.2 subscriber to `/topic/#` already connected, so what the fuzzed
//! client publishes is routed, converted and written to both. Nothing may panic, and
//! what the broker writes to the two subscribers must decode.
//!
//! The first byte picks the connection: bit 0 STOMP (else MQTT), bit 1 a WebSocket
//! (else a stream). The rest is a list of steps. A byte below 0xf0 is a chunk: that many
//! bytes plus one, taken from what follows, arrive as one read (on a WebSocket, as one
//! message: binary, or text when bit 2 of the first byte is set and the chunk is UTF-8).
//! 0xf0 rings the connection's doorbell, 0xf1 to 0xfd let time pass (100 ms, 200 ms,
//! 400 ms, … about 7 minutes) and fire the timers that are due, 0xfe ticks the MQTT
//! broker (delayed wills), 0xff shuts the broker down. The connection ends when the
//! session asks to close, or when the steps run out.
#![no_main]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ferry_core::{Adapter, Carrier, ConnectionInfo, Input, MessageKind, Output, Router, Connection, Wakeup};
use ferry_mqtt::codec::{Decoder as MqttDecoder, Version as MqttVersion};
use ferry_auth::CoreParts;
use ferry_mqtt::{MqttAdapter, MqttConfig};
use ferry_stomp::{Decoded, Decoder as StompDecoder, Limits, StompAdapter, StompConfig, Version as StompVersion};
use libfuzzer_sys::fuzz_target;

/// An MQTT 5 CONNECT (clean start, no keep-alive, client id `sub`) and a SUBSCRIBE to
/// `#` at QoS 2.
const MQTT_SUBSCRIBER: &[u8] = &[
    0x10, 0x10, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x00, 0x00, 0x00, 0x03, b's', b'u', b'b', //
    0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'#', 0x02,
];
const STOMP_SUBSCRIBER: &[u8] =
    b"CONNECT\naccept-version:1.2\nhost:fuzz\n\n\0SUBSCRIBE\nid:0\ndestination:/topic/#\nack:client-individual\n\n\0";

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

fn info(carrier: Carrier, listener: &'static str) -> (Arc<ConnectionInfo>, Wakeup) {
    let wakeup = Wakeup::new();
    let info = ConnectionInfo {
        id: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
        peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
        listener,
        tls: false,
        carrier,
        subprotocol: None,
        wakeup: wakeup.clone(),
        credentials: None,
        monitor: Default::default(),
    };
    (Arc::new(info), wakeup)
}

/// A connection already subscribed, whose output is decoded as its client would.
struct Subscriber {
    session: Box<dyn Connection>,
    buf: BytesMut,
    decode: fn(&mut Subscriber),
    mqtt: MqttDecoder,
    stomp: StompDecoder,
    open: bool,
}

impl Subscriber {
    fn new(adapter: &dyn Adapter, setup: &'static [u8], decode: fn(&mut Subscriber), now: Instant) -> Self {
        let (info, _) = info(Carrier::Stream, adapter.name());
        let mut s = Subscriber {
            session: adapter.open(&info, now),
            buf: BytesMut::new(),
            decode,
            mqtt: MqttDecoder::client(MqttVersion::V5, usize::MAX),
            stomp: StompDecoder::with_version(Limits::default(), StompVersion::V1_2),
            open: true,
        };
        let mut out = Output::default();
        s.session.on_input(Input::Stream(Bytes::from_static(setup)), now, &mut out);
        s.take(out, now);
        s
    }

    fn take(&mut self, out: Output, now: Instant) {
        for w in out.writes {
            self.buf.extend_from_slice(&w.data);
        }
        (self.decode)(self);
        if out.close.is_some() {
            self.session.on_closed(false, now);
            self.open = false;
        }
    }

    fn wake(&mut self, now: Instant) {
        if self.open {
            let mut out = Output::default();
            self.session.on_wake(now, &mut out);
            self.take(out, now);
        }
    }
}

fn decode_mqtt(s: &mut Subscriber) {
    while let Some(_packet) = s
        .mqtt
        .decode(&mut s.buf)
        .unwrap_or_else(|e| panic!("the broker wrote bad MQTT 5: {e:?}"))
    {}
}

fn decode_stomp(s: &mut Subscriber) {
    while let Some(Decoded::Frame(_) | Decoded::HeartBeat) = s
        .stomp
        .decode(&mut s.buf)
        .unwrap_or_else(|e| panic!("the broker wrote bad STOMP 1.2: {e:?}"))
    {}
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut steps)) = data.split_first() else { return };
    let stomp = mode & 1 != 0;
    let carrier = if mode & 2 != 0 { Carrier::WebSocket } else { Carrier::Stream };
    let text = mode & 4 != 0;

    let router = Arc::new(Router::default());
    let mqtt = MqttAdapter::new(CoreParts::open_with(router.clone()), MqttConfig::default());
    let stomp_adapter = StompAdapter::new(CoreParts::open_with(router.clone()), StompConfig::default());
    let mut now = Instant::now();
    let mut subscribers = [
        Subscriber::new(&mqtt, MQTT_SUBSCRIBER, decode_mqtt, now),
        Subscriber::new(&stomp_adapter, STOMP_SUBSCRIBER, decode_stomp, now),
    ];
    let adapter: &dyn Adapter = if stomp { &stomp_adapter } else { &mqtt };
    let (info, _wakeup) = info(carrier, adapter.name());
    let mut session = adapter.open(&info, now);

    let mut closed = false;
    while let Some((&step, rest)) = steps.split_first() {
        steps = rest;
        let mut out = Output::default();
        match step {
            0x00..=0xef => {
                let n = (usize::from(step) + 1).min(steps.len());
                let (chunk, rest) = steps.split_at(n);
                steps = rest;
                let bytes = Bytes::copy_from_slice(chunk);
                let input = match carrier {
                    Carrier::Stream => Input::Stream(bytes),
                    Carrier::WebSocket if text && std::str::from_utf8(chunk).is_ok() => Input::Message(MessageKind::Text, bytes),
                    Carrier::WebSocket => Input::Message(MessageKind::Binary, bytes),
                };
                session.on_input(input, now, &mut out);
            }
            0xf0 => session.on_wake(now, &mut out),
            0xf1..=0xfd => {
                now += Duration::from_millis(100) * (1 << (step - 0xf1));
                if session.poll_timeout().is_some_and(|at| at <= now) {
                    session.on_timeout(now, &mut out);
                }
                for s in &mut subscribers {
                    if s.open && s.session.poll_timeout().is_some_and(|at| at <= now) {
                        let mut out = Output::default();
                        s.session.on_timeout(now, &mut out);
                        s.take(out, now);
                    }
                }
            }
            0xfe => {
                mqtt.broker().tick(now);
            }
            0xff => {
                session.on_shutdown(now, &mut out);
                closed = true;
            }
        }
        for s in &mut subscribers {
            s.wake(now);
        }
        if closed || out.close.is_some() {
            closed = true;
            break;
        }
    }
    session.on_closed(closed, now);
    for s in &mut subscribers {
        s.wake(now);
        if s.open {
            s.session.on_closed(false, now);
        }
    }
});
