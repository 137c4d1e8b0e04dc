//! `ferry-restart-bench`: how fast a restarted Ferry is back, for `make bench` (rows
//! `restart` and `restart-storm`).
//!
//! 1. Fills a data directory through Ferry's own journal (ferry-store, the records the
//!    broker writes): `--retained` retained messages, `--sessions` persistent MQTT
//!    sessions (clean session 0) subscribed to one topic, each holding `--queued` QoS 1
//!    messages (ten bodies stored once, shared by every session), then a snapshot, as a
//!    broker that ran a while leaves it.
//! 2. Starts the real broker on it and times it until it serves: from the spawn until a
//!    client of one stored session has connected (CONNACK with session present) and got
//!    its queued messages. Prints that time, the replay time the broker logged and the
//!    bytes on disk it read.
//! 3. The restart storm: kills the broker with SIGKILL, starts it again, and connects
//!    `--reconnect` of the stored sessions at once from 127.0.0.1; times until every one
//!    is back (session present) with all its queued messages.
//!
//! Loopback only; the MQTT packets are encoded with Ferry's own codec (ferry-mqtt).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use clap::Parser;
use ferry_core::{Delivery, Journal, MemoryRetained, Message, QoS, Router, SubscribeOptions, Subscription, TopicFilter, TopicName};
use ferry_mqtt::codec::{encode, Ack, Connect, Decoder, Packet, Version};
use ferry_store::{BrokerJournal, StoreConfig, SyncMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(about = "How fast a restarted Ferry serves its stored state again")]
struct Args {
    /// The ferry binary.
    #[arg(long)]
    ferry: PathBuf,
    /// A working directory (the data directory and logs go in it; emptied first).
    #[arg(long)]
    work: PathBuf,
    /// Retained messages stored.
    #[arg(long, default_value_t = 1_000_000)]
    retained: usize,
    /// Persistent sessions stored.
    #[arg(long, default_value_t = 100_000)]
    sessions: usize,
    /// QoS 1 messages queued for each session.
    #[arg(long, default_value_t = 10)]
    queued: usize,
    /// Sessions that reconnect at once after the kill (the storm).
    #[arg(long, default_value_t = 10_000)]
    reconnect: usize,
    /// Print one JSON line instead of text.
    #[arg(long)]
    json: bool,
}

/// Fills `data` through the journal, as the broker would have written it.
fn fill(data: &Path, args: &Args) -> anyhow::Result<()> {
    let mut config = StoreConfig::new(data);
    // The broker syncs each batch; filling does not need to wait for the disk per record.
    config.sync = SyncMode::Os;
    let memory = Arc::new(MemoryRetained::new());
    let (journal, _) = BrokerJournal::open(config, &memory).context("opening the data directory")?;
    let journal = Arc::new(journal);
    let router = Router::new(memory).with_journal(journal.clone());
    let now = Instant::now();
    for i in 0..args.retained {
        let topic = TopicName::new(&format!("retained/{}/{}", i / 1000, i % 1000)).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let m = Message::new(topic, Bytes::from(format!("{i:064}")), QoS::AtLeastOnce, true);
        router.publish_durable(Arc::new(m), now).map_err(anyhow::Error::msg)?;
    }
    let topic = TopicName::new("queued/all").map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let bodies: Vec<Arc<Message>> = (0..args.queued)
        .map(|i| {
            Arc::new(Message::new(
                topic.clone(),
                Bytes::from(format!("{i:064}")),
                QoS::AtLeastOnce,
                false,
            ))
        })
        .collect();
    let filter = Subscription::Plain(TopicFilter::new("queued/#").map_err(|e| anyhow::anyhow!("{e:?}"))?);
    let options = SubscribeOptions {
        qos: QoS::AtLeastOnce,
        ..SubscribeOptions::default()
    };
    let mut last = 0;
    for s in 0..args.sessions {
        let expiry = Some(Duration::from_secs(24 * 3600));
        let (key, _) = journal.session_open(None, &format!("s{s}"), expiry).map_err(anyhow::Error::msg)?;
        journal.subscribed(key, "queued/#", &filter, &options).map_err(anyhow::Error::msg)?;
        for m in &bodies {
            let d = Delivery {
                message: m.clone(),
                qos: QoS::AtLeastOnce,
                retain: false,
                subscription_ids: Vec::new(),
            };
            last = journal.enqueued(key, &d).map_err(anyhow::Error::msg)?;
        }
        journal.session_detached(key, expiry);
    }
    journal.store().wait_durable(last).map_err(anyhow::Error::msg)?;
    journal.snapshot(&router).context("snapshot")?;
    drop(router);
    let journal = Arc::try_unwrap(journal).map_err(|_| anyhow::anyhow!("journal still shared"))?;
    journal.close().map_err(anyhow::Error::msg)?;
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The broker on `data`, MQTT over TCP on `port`, everything else off; its log in `log`.
fn start(ferry: &Path, data: &Path, port: u16, log: &Path) -> anyhow::Result<Child> {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    let child = Command::new(ferry)
        .env("FERRY_STORAGE__DIR", data)
        .env("FERRY_LISTENERS__MQTT__BIND", format!("127.0.0.1:{port}"))
        .env("FERRY_LISTENERS__WS__ENABLED", "false")
        .env("FERRY_LISTENERS__STOMP__ENABLED", "false")
        .env("FERRY_LISTENERS__ADMIN__ENABLED", "false")
        .env("FERRY_LOG__FORMAT", "json")
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("starting ferry")?;
    Ok(child)
}

async fn read_packet(stream: &mut TcpStream, decoder: &mut Decoder, buf: &mut BytesMut) -> anyhow::Result<Packet> {
    loop {
        if let Some(p) = decoder.decode(buf).map_err(|e| anyhow::anyhow!("{e}"))? {
            return Ok(p);
        }
        if stream.read_buf(buf).await? == 0 {
            bail!("connection closed");
        }
    }
}

/// Connects as stored session `client` (clean session 0), checks the session is
/// present, and takes `queued` messages, acknowledging each.
async fn resume(addr: SocketAddr, client: &str, queued: usize) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(addr).await?;
    let version = Version::V3_1_1;
    let mut connect = Connect::new(version, client.to_owned());
    connect.clean_start = false;
    connect.keep_alive = 0;
    let mut out = BytesMut::new();
    encode(&Packet::Connect(connect), version, &mut out).map_err(|e| anyhow::anyhow!("{e}"))?;
    stream.write_all(&out).await?;
    let mut decoder = Decoder::client(version, 1 << 20);
    let mut buf = BytesMut::new();
    match read_packet(&mut stream, &mut decoder, &mut buf).await? {
        Packet::ConnAck(ack) if ack.session_present => {}
        Packet::ConnAck(ack) => bail!("{client}: CONNACK {:#04x}, session present {}", ack.code.0, ack.session_present),
        other => bail!("{client}: {} before CONNACK", other.packet_type()),
    }
    let mut got = 0;
    while got < queued {
        if let Packet::Publish(p) = read_packet(&mut stream, &mut decoder, &mut buf).await? {
            got += 1;
            out.clear();
            encode(&Packet::PubAck(Ack::new(p.pkid)), version, &mut out).map_err(|e| anyhow::anyhow!("{e}"))?;
            stream.write_all(&out).await?;
        }
    }
    Ok(())
}

/// Waits until the broker accepts connections on `addr`.
async fn until_listening(addr: SocketAddr, child: &mut Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("ferry exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bail!("ferry did not listen within 120 s")
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    })
}

/// The replay time the broker logged (`storage: restored … took_ms`), the last one in `log`.
fn logged_replay_ms(log: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find(|l| l.contains("storage: restored")).and_then(|l| {
        let at = l.find("\"took_ms\":")? + "\"took_ms\":".len();
        l[at..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let _ = std::fs::remove_dir_all(&args.work);
    std::fs::create_dir_all(&args.work)?;
    let data = args.work.join("data");
    let log = args.work.join("ferry.log");
    let filling = Instant::now();
    fill(&data, &args)?;
    let fill_s = filling.elapsed().as_secs_f64();
    let disk = dir_bytes(&data);

    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let started = Instant::now();
    let mut child = start(&args.ferry, &data, port, &log)?;
    until_listening(addr, &mut child).await?;
    let listening_s = started.elapsed().as_secs_f64();
    resume(addr, "s0", args.queued).await?;
    let served_s = started.elapsed().as_secs_f64();
    let replay_ms = logged_replay_ms(&log);

    // The storm: SIGKILL, restart, every client at once.
    child.kill()?;
    child.wait()?;
    let restarted = Instant::now();
    let mut child = start(&args.ferry, &data, port, &log)?;
    until_listening(addr, &mut child).await?;
    let reconnect = args.reconnect.min(args.sessions.saturating_sub(1));
    let mut tasks = tokio::task::JoinSet::new();
    for s in 1..=reconnect {
        let queued = args.queued;
        tasks.spawn(async move {
            let client = format!("s{s}");
            // A refused or paced connection tries again, as a device's client does.
            let deadline = Instant::now() + Duration::from_secs(300);
            loop {
                match resume(addr, &client, queued).await {
                    Ok(()) => return Ok(()),
                    Err(e) if Instant::now() > deadline => return Err(e),
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
    }
    let mut failed = 0;
    while let Some(done) = tasks.join_next().await {
        if !matches!(done, Ok(Ok(()))) {
            failed += 1;
        }
    }
    let storm_s = restarted.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    if failed > 0 {
        bail!("{failed} of {reconnect} sessions did not come back");
    }
    if args.json {
        println!(
            "{{\"retained\":{},\"sessions\":{},\"queued\":{},\"disk_bytes\":{disk},\"fill_s\":{fill_s:.2},\"listening_s\":{listening_s:.3},\"served_s\":{served_s:.3},\"replay_ms\":{},\"reconnect\":{reconnect},\"storm_s\":{storm_s:.3}}}",
            args.retained,
            args.sessions,
            args.queued,
            replay_ms.map_or("null".to_owned(), |m| m.to_string()),
        );
    } else {
        println!(
            "stored: {} retained, {} sessions × {} queued; {disk} bytes on disk (filled in {fill_s:.1} s)",
            args.retained, args.sessions, args.queued
        );
        println!(
            "restart: listening after {listening_s:.3} s, a stored session served after {served_s:.3} s (replay {} ms)",
            replay_ms.map_or("?".to_owned(), |m| m.to_string())
        );
        println!("storm: SIGKILL, restart, {reconnect} sessions from 127.0.0.1 back with their messages after {storm_s:.3} s");
    }
    Ok(())
}
