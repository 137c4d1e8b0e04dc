//! An in-memory broker in quinn's `Pair` style: both adapters on one router, connections
//! driven byte for byte through their sans-IO [`Connection`]s, and a virtual clock that
//! only moves when the test says so. No socket, no task, no sleep: cross-protocol
//! semantics (an MQTT publish reaching a STOMP subscriber, a will after its delay, a
//! keep-alive or heart-beat timeout) are tested in microseconds and deterministically.
//! The end-to-end tests still run the real binary ([`crate::process`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ferry_auth::CoreParts;
use ferry_core::{Adapter, Carrier, CloseRequest, Connection, ConnectionInfo, Input, Output, Wakeup};
use ferry_mqtt::codec::{self as mqtt, Decoder as MqttDecoder, Packet};
use ferry_mqtt::{MqttAdapter, MqttConfig, MqttShared};
use ferry_stomp::{Decoded, Decoder as StompDecoder, Frame, Limits, StompAdapter, StompConfig, StompShared, Version as StompVersion};

/// How many rounds of wake-ups [`MemoryBroker::settle`] runs at most before it gives up
/// (a round in which nothing rang ends it sooner).
const MAX_ROUNDS: usize = 1000;

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// A client of the in-memory broker, as [`MemoryBroker::connect_mqtt`] and
/// [`MemoryBroker::connect_stomp`] hand them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientId(usize);

/// Which protocol a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Mqtt,
    Stomp,
}

/// One connection: the adapter's state machine and what it wrote.
struct Client {
    protocol: Protocol,
    connection: Box<dyn Connection>,
    wakeup: Wakeup,
    /// Bytes written to the client and not yet read by the test.
    written: BytesMut,
    /// The close the connection asked for, once it did.
    close: Option<CloseRequest>,
    /// False once `on_closed` was called: the connection is not driven any more.
    open: bool,
    mqtt: MqttDecoder,
    stomp: StompDecoder,
}

/// Both adapters on one router, with a virtual clock.
pub struct MemoryBroker {
    /// The broker-wide parts (router and gatekeeper) both adapters share.
    pub parts: CoreParts,
    mqtt: MqttAdapter,
    stomp: StompAdapter,
    now: Instant,
    clients: Vec<Client>,
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBroker {
    /// Both adapters on their default settings, everyone let in.
    pub fn new() -> Self {
        Self::with_settings(CoreParts::open(), MqttConfig::default(), StompConfig::default())
    }

    /// Both adapters built from `parts` with the given settings.
    pub fn with_settings(parts: CoreParts, mqtt: MqttConfig, stomp: StompConfig) -> Self {
        Self {
            mqtt: MqttAdapter::new(parts.clone(), mqtt),
            stomp: StompAdapter::new(parts.clone(), stomp),
            parts,
            now: Instant::now(),
            clients: Vec::new(),
        }
    }

    /// The MQTT adapter's shared state (sessions, wills, counters).
    pub fn mqtt_shared(&self) -> Arc<MqttShared> {
        self.mqtt.broker()
    }

    /// The STOMP adapter's shared state (queues, counters).
    pub fn stomp_shared(&self) -> Arc<StompShared> {
        self.stomp.broker()
    }

    /// The virtual clock's time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Open an MQTT connection over a stream (nothing sent yet).
    pub fn connect_mqtt(&mut self) -> ClientId {
        self.open(Protocol::Mqtt)
    }

    /// Open a STOMP connection over a stream (nothing sent yet).
    pub fn connect_stomp(&mut self) -> ClientId {
        self.open(Protocol::Stomp)
    }

    fn open(&mut self, protocol: Protocol) -> ClientId {
        let wakeup = Wakeup::new();
        let adapter: &dyn Adapter = match protocol {
            Protocol::Mqtt => &self.mqtt,
            Protocol::Stomp => &self.stomp,
        };
        let info = Arc::new(ConnectionInfo {
            id: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
            peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
            listener: adapter.name(),
            tls: false,
            carrier: Carrier::Stream,
            subprotocol: None,
            wakeup: wakeup.clone(),
            credentials: None,
            monitor: Default::default(),
        });
        let connection = adapter.open(&info, self.now);
        self.clients.push(Client {
            protocol,
            connection,
            wakeup,
            written: BytesMut::new(),
            close: None,
            open: true,
            mqtt: MqttDecoder::client(mqtt::Version::V5, usize::MAX),
            stomp: StompDecoder::with_version(Limits::default(), StompVersion::V1_2),
        });
        ClientId(self.clients.len() - 1)
    }

    /// The client sends `bytes`; then every connection the core rang is woken until
    /// nothing more happens.
    pub fn send(&mut self, client: ClientId, bytes: &[u8]) {
        let now = self.now;
        let c = &mut self.clients[client.0];
        if c.open {
            let mut out = Output::default();
            c.connection.on_input(Input::Stream(Bytes::copy_from_slice(bytes)), now, &mut out);
            Self::take(c, out, now);
        }
        self.settle();
    }

    /// Encode `packet` for `version` and send it from `client`.
    pub fn send_mqtt(&mut self, client: ClientId, packet: &Packet, version: mqtt::Version) {
        let mut buf = BytesMut::new();
        mqtt::encode(packet, version, &mut buf).unwrap_or_else(|e| panic!("cannot encode {packet:?}: {e}"));
        self.send(client, &buf);
    }

    /// Move the virtual clock on by `by`, one second at a time, firing every timer that
    /// falls due and ticking the MQTT adapter (delayed wills, session expiry) as the
    /// binary does every second.
    pub fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while self.now < end {
            self.now = (self.now + Duration::from_secs(1)).min(end);
            let now = self.now;
            for c in self.clients.iter_mut().filter(|c| c.open) {
                if c.connection.poll_timeout().is_some_and(|at| at <= now) {
                    let mut out = Output::default();
                    c.connection.on_timeout(now, &mut out);
                    Self::take(c, out, now);
                }
            }
            self.mqtt.broker().tick(now);
            self.settle();
        }
    }

    /// The peer of `client` goes away without a goodbye (a dropped TCP connection).
    pub fn drop_connection(&mut self, client: ClientId) {
        let now = self.now;
        let c = &mut self.clients[client.0];
        if c.open {
            c.open = false;
            c.connection.on_closed(false, now);
        }
        self.settle();
    }

    /// Whether the broker closed `client`'s connection, and with what.
    pub fn close_request(&self, client: ClientId) -> Option<&CloseRequest> {
        self.clients[client.0].close.as_ref()
    }

    /// Whether `client`'s connection is still being served.
    pub fn is_open(&self, client: ClientId) -> bool {
        self.clients[client.0].open
    }

    /// The MQTT packets written to `client` since the last call, decoded as an MQTT 5
    /// client would (panics on bytes that are not valid MQTT 5: the broker wrote them).
    pub fn mqtt_received(&mut self, client: ClientId) -> Vec<Packet> {
        let c = &mut self.clients[client.0];
        assert_eq!(c.protocol, Protocol::Mqtt, "not an MQTT client");
        let mut packets = Vec::new();
        while let Some(p) = c
            .mqtt
            .decode(&mut c.written)
            .unwrap_or_else(|e| panic!("the broker wrote bad MQTT 5: {e:?}"))
        {
            packets.push(p);
        }
        packets
    }

    /// The STOMP frames written to `client` since the last call (heart-beats left out).
    pub fn stomp_received(&mut self, client: ClientId) -> Vec<Frame> {
        let c = &mut self.clients[client.0];
        assert_eq!(c.protocol, Protocol::Stomp, "not a STOMP client");
        let mut frames = Vec::new();
        while let Some(d) = c
            .stomp
            .decode(&mut c.written)
            .unwrap_or_else(|e| panic!("the broker wrote bad STOMP 1.2: {e:?}"))
        {
            if let Decoded::Frame(f) = d {
                frames.push(f);
            }
        }
        frames
    }

    /// Wake every connection whose doorbell rang, until a round passes in which none did.
    pub fn settle(&mut self) {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        for _ in 0..MAX_ROUNDS {
            let now = self.now;
            let mut woke = false;
            for c in self.clients.iter_mut().filter(|c| c.open) {
                if c.wakeup.poll_woken(&mut cx) == Poll::Ready(()) {
                    woke = true;
                    let mut out = Output::default();
                    c.connection.on_wake(now, &mut out);
                    Self::take(c, out, now);
                }
            }
            if !woke {
                return;
            }
        }
        panic!("connections kept waking each other for {MAX_ROUNDS} rounds");
    }

    fn take(c: &mut Client, out: Output, now: Instant) {
        for w in out.writes {
            c.written.extend_from_slice(&w.data);
        }
        if let Some(close) = out.close {
            c.close.get_or_insert(close);
            c.open = false;
            c.connection.on_closed(true, now);
        }
    }
}
