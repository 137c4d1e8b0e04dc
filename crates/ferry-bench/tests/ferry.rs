//! ferry-bench against the real `ferry` binary: short runs over each transport that must
//! deliver everything they publish.

mod common;

use common::{bench, Broker};

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
    let broker = Broker::start();
    let pid = broker.pid().to_string();
    let ws = format!("ws://{}/mqtt", broker.addr("ws").expect("ws listener"));
    let tcp = format!("tcp://{}", broker.addr("mqtt").expect("mqtt listener"));
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
    let broker = Broker::start();
    let tcp = format!("tcp://{}", broker.addr("mqtt").expect("mqtt listener"));
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
    let broker = Broker::start();
    let pid = broker.pid().to_string();
    let ws = format!("ws://{}/", broker.addr("ws").expect("ws listener"));
    let result = bench(&["conns", "--url", &ws, "--clients", "200", "--duration", "1", "--broker-pid", &pid]);
    let conns = &result["conns"];
    assert_eq!(conns["established"], 200, "{result}");
    assert_eq!(conns["failed"], 0, "{result}");
    assert_eq!(conns["dropped"], 0, "{result}");
    assert!(conns["broker_rss_per_conn_kib"].as_f64().is_some(), "{result}");
}

#[test]
fn a_stalled_subscriber_in_the_second_phase() {
    let broker = Broker::start();
    let pid = broker.pid().to_string();
    let tcp = format!("tcp://{}", broker.addr("mqtt").expect("mqtt listener"));
    let ws = format!("ws://{}/mqtt", broker.addr("ws").expect("ws listener"));
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
    let broker = Broker::start();
    let Some(stomp) = broker.addr("stomp") else {
        eprintln!("skipped: this ferry serves no STOMP yet");
        return;
    };
    let ws = format!("ws://{}/", broker.addr("ws").expect("ws listener"));
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
    let broker = Broker::start_tls(&cert, &key);
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert).expect("write ca");
    let ca = ca.to_string_lossy().to_string();
    let wss = format!("wss://localhost:{}/mqtt", broker.addr("wss").expect("wss listener").port());
    let mqtts = format!("mqtts://127.0.0.1:{}", broker.addr("mqtts").expect("mqtts listener").port());
    let runs: [(&str, Vec<&str>); 2] = [(&wss, vec!["--ca", &ca]), (&mqtts, vec!["--insecure", "--qos", "1"])];
    for (url, extra) in runs {
        let mut args = vec!["fanout", "--url", url];
        args.extend(extra);
        args.extend(SHORT);
        assert_clean(&bench(&args), url);
    }
}
