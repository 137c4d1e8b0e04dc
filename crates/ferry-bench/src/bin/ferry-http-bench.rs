//! `ferry-http-bench`: Ferry's HTTP messaging under load, for `make bench` (row `http`).
//!
//! * `publish`: N keep-alive HTTP/1.1 connections each POST `/api/v1/publish` (a 64-byte
//!   payload) one request after another; one MQTT 3.1.1 subscriber over TCP counts
//!   the deliveries. Prints requests/s and delivered msg/s.
//! * `sse`: N `GET /api/v1/events` streams on one topic, one MQTT 3.1.1 publisher (QoS 0,
//!   over TCP) kept at most `--window` messages ahead of the slowest stream, so that no
//!   stream's queue overflows. Prints delivered events/s (all streams together).
//!
//! Loopback only; the MQTT packets are encoded with Ferry's own codec (ferry-mqtt).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use clap::{Parser, ValueEnum};
use ferry_mqtt::codec::{encode, ByteString, Connect, Packet, Properties, Publish, QoS, Subscribe, Subscription, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// HTTP publish, N connections → one MQTT subscriber.
    Publish,
    /// One MQTT publisher → N Server-Sent Events streams.
    Sse,
}

/// Ferry's HTTP publish and Server-Sent Events under load.
#[derive(Parser)]
struct Args {
    /// What to measure.
    mode: Mode,
    /// The broker's `ws` listener (HTTP).
    #[arg(long)]
    http: SocketAddr,
    /// The broker's `mqtt` listener.
    #[arg(long)]
    mqtt: SocketAddr,
    /// HTTP connections (publish) or event streams (sse).
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// How long to measure, after a 1 s warm-up.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    duration: Duration,
    /// sse: messages the publisher may be ahead of the slowest stream.
    #[arg(long, default_value_t = 500)]
    window: u64,
}

const TOPIC: &str = "bench/http";
const PAYLOAD: &str = "0123456789012345678901234567890123456789012345678901234567890123";

fn loopback(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if !addr.ip().is_loopback() {
        bail!("{addr} is not a loopback address");
    }
    Ok(addr)
}

/// `packet` encoded for MQTT 3.1.1.
fn mqtt_bytes(packet: &Packet) -> anyhow::Result<Vec<u8>> {
    let mut out = BytesMut::new();
    encode(packet, Version::V3_1_1, &mut out).map_err(|e| anyhow::anyhow!("cannot encode: {e}"))?;
    Ok(out.to_vec())
}

/// An MQTT 3.1.1 connection, CONNACK read.
async fn mqtt_connect(addr: SocketAddr, client_id: &str) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await.context("MQTT connect")?;
    s.set_nodelay(true)?;
    let mut connect = Connect::new(Version::V3_1_1, client_id);
    connect.keep_alive = 0;
    s.write_all(&mqtt_bytes(&Packet::Connect(connect))?).await?;
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).await?;
    if connack[0] != 0x20 || connack[3] != 0 {
        bail!("CONNACK refused: {connack:?}");
    }
    Ok(s)
}

/// Counts the PUBLISH packets on `s` (an MQTT stream after SUBACK) into `count`.
async fn count_publishes(mut s: TcpStream, count: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let n = match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => n,
            Err(_) => continue,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut at = 0;
        loop {
            let mut len = 0usize;
            let mut mul = 1usize;
            let mut i = at + 1;
            let mut complete = false;
            while i < pending.len() && i < at + 5 {
                let b = pending[i];
                len += usize::from(b & 0x7f) * mul;
                mul *= 128;
                i += 1;
                if b & 0x80 == 0 {
                    complete = true;
                    break;
                }
            }
            if !complete || i + len > pending.len() {
                break;
            }
            if pending[at] >> 4 == 3 {
                count.fetch_add(1, Ordering::Relaxed);
            }
            at = i + len;
        }
        pending.drain(..at);
    }
}

/// One keep-alive HTTP connection publishing until `stop`.
async fn http_publisher(addr: SocketAddr, done: Arc<AtomicU64>, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let mut s = TcpStream::connect(addr).await.context("HTTP connect")?;
    s.set_nodelay(true)?;
    let body = format!("{{\"topic\":\"{TOPIC}\",\"payload\":\"{PAYLOAD}\",\"qos\":0}}");
    let request = format!(
        "POST /api/v1/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut buf = vec![0u8; 4096];
    let mut have = 0;
    while !stop.load(Ordering::Relaxed) {
        s.write_all(request.as_bytes()).await?;
        // Read one response: head, then Content-Length bytes of body.
        loop {
            if let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&buf[..end]).unwrap_or("");
                if !(head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.1 202")) {
                    bail!("publish refused: {}", head.lines().next().unwrap_or(""));
                }
                let length = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                let total = end + 4 + length;
                if have >= total {
                    buf.copy_within(total..have, 0);
                    have -= total;
                    break;
                }
            }
            if have == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
            let n = s.read(&mut buf[have..]).await?;
            if n == 0 {
                bail!("the broker closed the HTTP connection");
            }
            have += n;
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// One event stream counting its `data:` lines until `stop`.
async fn sse_stream(addr: SocketAddr, count: Arc<AtomicU64>, ready: Arc<AtomicU64>, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let mut s = TcpStream::connect(addr).await.context("HTTP connect")?;
    let topic = TOPIC.replace('/', "%2F");
    s.write_all(format!("GET /api/v1/events?topic={topic} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n").as_bytes())
        .await?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = true;
    let mut carry: Vec<u8> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let n = match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0)) => bail!("the broker closed the event stream"),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => continue,
        };
        carry.extend_from_slice(&buf[..n]);
        if head {
            let Some(end) = carry.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            if !carry.starts_with(b"HTTP/1.1 200") {
                bail!("event stream refused: {}", String::from_utf8_lossy(&carry[..end]));
            }
            carry.drain(..end + 4);
            head = false;
            ready.fetch_add(1, Ordering::Relaxed);
        }
        // Count complete "\ndata: " lines; keep a possibly split tail.
        let complete = carry.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let events = carry[..complete].windows(6).filter(|w| w == b"data: ").count();
        count.fetch_add(events as u64, Ordering::Relaxed);
        carry.drain(..complete);
    }
    Ok(())
}

/// Sums `counter` over the measured window after a warm-up; returns per second.
async fn measure(counter: &AtomicU64, duration: Duration) -> f64 {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (t0, c0) = (Instant::now(), counter.load(Ordering::Relaxed));
    tokio::time::sleep(duration).await;
    (counter.load(Ordering::Relaxed) - c0) as f64 / t0.elapsed().as_secs_f64()
}

async fn publish(args: &Args) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));
    let mut sub = mqtt_connect(args.mqtt, "http-bench-sub").await?;
    let subscribe = Subscribe {
        pkid: 1,
        subscriptions: vec![Subscription::new(TOPIC, QoS::AtMostOnce)],
        properties: Properties::new(),
    };
    sub.write_all(&mqtt_bytes(&Packet::Subscribe(subscribe))?).await?;
    let mut suback = [0u8; 5];
    sub.read_exact(&mut suback).await?;
    let counter = tokio::spawn(count_publishes(sub, delivered.clone(), stop.clone()));
    let requests = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        tasks.push(tokio::spawn(http_publisher(args.http, requests.clone(), stop.clone())));
    }
    let (r0, d0, t0) = (requests.load(Ordering::Relaxed), delivered.load(Ordering::Relaxed), Instant::now());
    let rate = measure(&requests, args.duration).await;
    let secs = t0.elapsed().as_secs_f64();
    let delivered_rate = (delivered.load(Ordering::Relaxed) - d0) as f64 / secs;
    let _ = r0;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    let _ = counter.await;
    println!(
        "http publish: {} keep-alive connections, 64-byte payloads: {:.0} requests/s; MQTT subscriber received {:.0} msg/s",
        args.clients, rate, delivered_rate
    );
    Ok(())
}

async fn sse(args: &Args) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicU64::new(0));
    let counts: Vec<Arc<AtomicU64>> = (0..args.clients).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let mut tasks = Vec::new();
    for c in &counts {
        tasks.push(tokio::spawn(sse_stream(args.http, c.clone(), ready.clone(), stop.clone())));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while ready.load(Ordering::Relaxed) < args.clients as u64 {
        if Instant::now() > deadline {
            bail!("only {} of {} event streams opened", ready.load(Ordering::Relaxed), args.clients);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut publisher = mqtt_connect(args.mqtt, "http-bench-pub").await?;
    let one = mqtt_bytes(&Packet::Publish(Publish::new(
        ByteString::from_static(TOPIC),
        QoS::AtMostOnce,
        Bytes::from_static(PAYLOAD.as_bytes()),
    )))?;
    let window = args.window;
    let pub_stop = stop.clone();
    let pub_counts = counts.clone();
    let pump = tokio::spawn(async move {
        let mut sent = 0u64;
        let mut batch = Vec::with_capacity(one.len() * 64);
        while !pub_stop.load(Ordering::Relaxed) {
            let slowest = pub_counts.iter().map(|c| c.load(Ordering::Relaxed)).min().unwrap_or(0);
            let room = (slowest + window).saturating_sub(sent).min(64);
            if room == 0 {
                tokio::task::yield_now().await;
                continue;
            }
            batch.clear();
            for _ in 0..room {
                batch.extend_from_slice(&one);
            }
            if publisher.write_all(&batch).await.is_err() {
                return;
            }
            sent += room;
        }
    });
    let total = Arc::new(AtomicU64::new(0));
    let summer_total = total.clone();
    let summer_counts = counts.clone();
    let summer_stop = stop.clone();
    let summer = tokio::spawn(async move {
        while !summer_stop.load(Ordering::Relaxed) {
            summer_total.store(summer_counts.iter().map(|c| c.load(Ordering::Relaxed)).sum(), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let rate = measure(&total, args.duration).await;
    stop.store(true, Ordering::Relaxed);
    let _ = pump.await;
    let _ = summer.await;
    for t in tasks {
        t.await??;
    }
    println!(
        "sse fan-out 1→{}: 64-byte payloads, QoS 0 from MQTT: {:.0} events/s delivered (all streams)",
        args.clients, rate
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    args.http = loopback(args.http)?;
    args.mqtt = loopback(args.mqtt)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        match args.mode {
            Mode::Publish => publish(&args).await,
            Mode::Sse => sse(&args).await,
        }
    })
}
