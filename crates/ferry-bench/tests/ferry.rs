//! ferry-bench against the real `ferry` binary: short runs over each transport that must
//! deliver everything they publish.

use std::process::{Command, Stdio};

use ferry_testkit::process::Broker;

/// A broker for a bench run: the test kit's loopback listeners, info-level logs.
fn broker() -> Broker {
    Broker::start_with("", &[("FERRY_LOG__LEVEL", "info")])
}

/// Runs ferry-bench with `args` (plus `--json --quiet`) and returns its JSON result.
pub fn bench(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry-bench"))
        .args(args)
        .args(["--json", "--quiet"])
        .stdin(Stdio::null())
        .output()
        .expect("run ferry-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ferry-bench {args:?} failed:\n{stderr}");
    let line = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output from ferry-bench {args:?}:\n{stderr}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{stderr}"))
}

fn assert_clean(result: &serde_json::Value, what: &str) {
    let delivered = result["window"]["delivered"].as_u64().unwrap_or(0);
    assert!(delivered > 0, "{what}: nothing delivered: {result}");
    assert_eq!(result["seq"]["lost"], 0, "{what}: {result}");
    assert_eq!(result["seq"]["duplicates"], 0, "{what}: {result}");
    assert_eq!(result["failures"], 0, "{what}: {result}");
    assert!(result["seq"]["received"].as_u64().unwrap_or(0) >= delivered, "{what}: {result}");
}

const SHORT: [&str; 6] = ["--duration", "1", "--warmup", "300ms", "--clients", "10"];

#[test]
fn fanout_over_websocket_and_tcp() {
    let broker = broker();
    let pid = broker.pid().to_string();
    let ws = format!("ws://{}/mqtt", broker.addr("ws"));
    let tcp = format!("tcp://{}", broker.addr("mqtt"));
    for (url, qos) in [(&ws, "0"), (&tcp, "0"), (&ws, "1"), (&tcp, "2")] {
        let mut args = vec!["fanout", "--url", url, "--qos", qos, "--broker-pid", &pid];
        args.extend(SHORT);
        let result = bench(&args);
        assert_clean(&result, &format!("fanout {url} QoS {qos}"));
        assert_eq!(result["subscribers"], 10);
        assert!(result["latency"]["p50"].as_f64().unwrap_or(0.0) > 0.0, "{result}");
        assert!(result["window"]["bench_cpu"].as_f64().is_some(), "{result}");
        assert!(result["window"]["broker_cpu"].as_f64().is_some(), "{result}");
        // Fan-out: every message reaches every subscriber.
        let published = result["window"]["published"].as_u64().unwrap_or(0) as f64;
        let delivered = result["window"]["delivered"].as_u64().unwrap_or(0) as f64;
        assert!(delivered > 5.0 * published, "{result}");
    }
}

#[test]
fn fanin_pairs_and_a_paced_rate() {
    let broker = broker();
    let tcp = format!("tcp://{}", broker.addr("mqtt"));
    for scenario in ["fanin", "pairs"] {
        let mut args = vec![scenario, "--url", &tcp];
        args.extend(SHORT);
        assert_clean(&bench(&args), scenario);
    }
    let mut args = vec!["pairs", "--url", &tcp, "--rate", "200"];
    args.extend(SHORT);
    let result = bench(&args);
    assert_clean(&result, "paced");
    let rate = result["window"]["published_per_s"].as_f64().unwrap_or(0.0);
    assert!((150.0..=250.0).contains(&rate), "asked 200/s, got {rate}: {result}");
}

#[test]
fn idle_connections_and_broker_memory() {
    let broker = broker();
    let pid = broker.pid().to_string();
    let ws = format!("ws://{}/", broker.addr("ws"));
    let result = bench(&["conns", "--url", &ws, "--clients", "200", "--duration", "1", "--broker-pid", &pid]);
    let conns = &result["conns"];
    assert_eq!(conns["established"], 200, "{result}");
    assert_eq!(conns["failed"], 0, "{result}");
    assert_eq!(conns["dropped"], 0, "{result}");
    assert!(conns["broker_rss_per_conn_kib"].as_f64().is_some(), "{result}");
}

#[test]
fn a_stalled_subscriber_in_the_second_phase() {
    let broker = broker();
    let pid = broker.pid().to_string();
    let tcp = format!("tcp://{}", broker.addr("mqtt"));
    let ws = format!("ws://{}/mqtt", broker.addr("ws"));
    for (url, pace) in [(&tcp, "--max"), (&ws, "--rate=2000")] {
        let result = bench(&[
            "slow",
            "--url",
            url,
            pace,
            "--clients",
            "10",
            "--duration",
            "2",
            "--warmup",
            "300ms",
            "--broker-pid",
            &pid,
        ]);
        // The healthy subscribers lose nothing, whatever the stalled one does.
        assert_clean(&result, &format!("slow {url} {pace}"));
        assert_eq!(result["subscribers"], 10, "{result}");
        let slow = &result["slow"];
        assert_eq!(slow["phase_secs"], 1.0, "{result}");
        for phase in ["phase_a", "phase_b"] {
            assert!(slow[phase]["window"]["delivered"].as_u64().unwrap_or(0) > 0, "{phase}: {result}");
            assert!(slow[phase]["broker_rss"]["samples"].as_u64().unwrap_or(0) >= 5, "{phase}: {result}");
            assert!(slow[phase]["latency"]["p50"].as_f64().is_some(), "{phase}: {result}");
        }
        assert!(slow["delivered_ratio"].as_f64().is_some_and(|r| r > 0.0), "{result}");
        assert!(slow["broker_rss_growth_kib"].as_i64().is_some(), "{result}");
        let stalled = &slow["stalled"];
        let (published, backlog) = (stalled["published"].as_u64().unwrap_or(0), stalled["backlog"].as_u64().unwrap_or(0));
        assert!(
            published > 0 && backlog > 0,
            "the stalled subscriber was sent to and kept some: {result}"
        );
        assert_eq!(stalled["dropped"].as_u64(), Some(published.saturating_sub(backlog)), "{result}");
        assert_eq!(stalled["closed_by_broker"], false, "{result}");
    }
}

#[test]
fn stomp_and_cross_protocol_when_served() {
    let broker = broker();
    let Some(stomp) = broker.try_addr("stomp") else {
        eprintln!("skipped: this ferry serves no STOMP yet");
        return;
    };
    let ws = format!("ws://{}/", broker.addr("ws"));
    let stomp = format!("stomp://{stomp}");
    let mut args = vec!["fanout", "--protocol", "stomp", "--url", &ws];
    args.extend(SHORT);
    assert_clean(&bench(&args), "STOMP fanout over ws");
    let mut args = vec!["pairs", "--protocol", "stomp", "--url", &stomp, "--ack", "client-individual"];
    args.extend(SHORT);
    assert_clean(&bench(&args), "STOMP pairs over tcp with acks and receipts");
    let mut args = vec!["cross", "--url", &ws];
    args.extend(SHORT);
    assert_clean(&bench(&args), "MQTT ⇄ STOMP over ws");
}

#[test]
fn websocket_and_mqtt_over_tls() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("certificate");
    let (cert, key) = (certified.cert.pem(), certified.key_pair.serialize_pem());
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, &cert).expect("write cert");
    std::fs::write(&key_file, &key).expect("write key");
    let tls = format!("[tls]\ncert_file = {cert_file:?}\nkey_file = {key_file:?}\n");
    let broker = Broker::start_with(&tls, &[("FERRY_LOG__LEVEL", "info")]);
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert).expect("write ca");
    let ca = ca.to_string_lossy().to_string();
    let wss = format!("wss://localhost:{}/mqtt", broker.addr("wss").port());
    let mqtts = format!("mqtts://127.0.0.1:{}", broker.addr("mqtts").port());
    let runs: [(&str, Vec<&str>); 2] = [(&wss, vec!["--ca", &ca]), (&mqtts, vec!["--insecure", "--qos", "1"])];
    for (url, extra) in runs {
        let mut args = vec!["fanout", "--url", url];
        args.extend(extra);
        args.extend(SHORT);
        assert_clean(&bench(&args), url);
    }
}
