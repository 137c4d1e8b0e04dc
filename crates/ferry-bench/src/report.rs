//! The result: one JSON line for scripts, and a summary for people.

use std::fmt::Write as _;

use serde::Serialize;

use crate::cli::{Args, Protocol};
use crate::scenario::conns::ConnsOutcome;
use crate::scenario::flow::FlowOutcome;
use crate::scenario::slow::{PhaseOutcome, SlowOutcome, TARGET_RATIO};
use crate::url::Target;

/// Everything a run reports.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// `fanout`, `fanin`, `pairs`, `conns`, `cross`, `slow`.
    pub scenario: &'static str,
    /// `mqtt` or `stomp`.
    pub protocol: String,
    /// `ws`, `wss`, `tcp`, `tls`.
    pub transport: &'static str,
    /// The broker URL.
    pub url: String,
    /// MQTT QoS (MQTT runs).
    pub qos: Option<u8>,
    /// STOMP ack mode and receipts (STOMP runs).
    pub ack: Option<&'static str>,
    /// STOMP publishers asked for receipts.
    pub receipts: Option<bool>,
    /// Payload bytes.
    pub payload: usize,
    /// `--clients`.
    pub clients: usize,
    /// `pub`, `sub`, `all`.
    pub role: &'static str,
    /// Publish rate asked for, or none for `--max`.
    pub rate: Option<f64>,
    /// In-flight window per publisher.
    pub inflight: usize,
    /// Worker threads.
    pub threads: usize,
    /// Flow scenarios.
    #[serde(flatten)]
    pub flow: Option<FlowOutcome>,
    /// `conns`.
    pub conns: Option<ConnsOutcome>,
    /// `slow`: its two phases and the stalled subscriber.
    pub slow: Option<SlowOutcome>,
    /// 1/5/15-minute load averages at the end.
    pub loadavg: Option<[f64; 3]>,
}

impl Report {
    /// A report for `args` against `target`.
    pub(crate) fn new(args: &Args, target: &Target, threads: usize) -> Report {
        let stomp = args.protocol == Protocol::Stomp || args.scenario == crate::cli::Scenario::Cross;
        let mqtt = args.protocol == Protocol::Mqtt || args.scenario == crate::cli::Scenario::Cross;
        Report {
            scenario: args.scenario.name(),
            protocol: args.protocol.to_string(),
            transport: target.transport.name(),
            url: target.url.clone(),
            qos: mqtt.then_some(args.qos),
            ack: stomp.then_some(args.ack.header()),
            receipts: stomp.then(|| args.stomp_receipts()),
            payload: args.payload,
            clients: args.clients,
            role: args.role.name(),
            rate: args.rate,
            inflight: args.inflight,
            threads,
            flow: None,
            conns: None,
            slow: None,
            loadavg: crate::sys::loadavg(),
        }
    }

    /// The JSON line.
    pub(crate) fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The readable summary.
    pub(crate) fn summary(&self) -> String {
        let mut s = String::new();
        let qos = match (self.qos, self.ack) {
            (Some(q), None) => format!("QoS {q}"),
            (None, Some(a)) => format!("ack {a}"),
            (Some(q), Some(a)) => format!("QoS {q} / ack {a}"),
            (None, None) => String::new(),
        };
        let _ = writeln!(
            s,
            "{} {} over {} ({}), {}, {} B payload, {} clients, role {}",
            self.scenario, self.protocol, self.transport, self.url, qos, self.payload, self.clients, self.role
        );
        if let Some(f) = &self.flow {
            let w = &f.window;
            let _ = writeln!(
                s,
                "  {} publishers, {} subscribers, set up in {:.2} s",
                f.publishers, f.subscribers, f.setup_secs
            );
            let _ = writeln!(
                s,
                "  measured {:.1} s: published {}/s, delivered {}/s",
                w.secs,
                si(w.published_per_s),
                si(w.delivered_per_s)
            );
            if let Some(l) = &f.latency {
                let _ = writeln!(
                    s,
                    "  latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  ({} samples)",
                    l.p50, l.p90, l.p99, l.p999, l.max, l.count
                );
            }
            let _ = writeln!(
                s,
                "  received {}, lost {}, duplicates {}, out of order {}{}{}",
                f.seq.received,
                f.seq.lost,
                f.seq.duplicates,
                f.seq.out_of_order,
                if f.foreign > 0 {
                    format!(", foreign {}", f.foreign)
                } else {
                    String::new()
                },
                if f.stalls > 0 {
                    format!(", window stalls {}", f.stalls)
                } else {
                    String::new()
                },
            );
            let _ = writeln!(s, "  {}", cpu_line(w.bench_cpu, w.broker_cpu, self.threads));
            if !w.core_busy.is_empty() {
                let cores: Vec<String> = w
                    .core_busy
                    .iter()
                    .enumerate()
                    .map(|(i, b)| format!("{i}: {:.0}%", b * 100.0))
                    .collect();
                let _ = writeln!(s, "  cores busy (all processes) {}", cores.join(", "));
            }
            for e in &f.errors {
                let _ = writeln!(s, "  error: {e}");
            }
        }
        if let Some(c) = &self.conns {
            let _ = writeln!(
                s,
                "  {} of {} connections in {:.2} s ({}/s), {} failed, {} dropped while held {:.1} s",
                c.established,
                c.requested,
                c.setup_secs,
                si(c.setup_per_s),
                c.failed,
                c.dropped,
                c.hold_secs
            );
            if let (Some(b), Some(a), Some(per)) = (c.broker_rss_before_kib, c.broker_rss_after_kib, c.broker_rss_per_conn_kib) {
                let _ = writeln!(s, "  broker RSS {b} KiB → {a} KiB: {per:.2} KiB per connection");
            }
            if let Some(per) = c.bench_rss_per_conn_kib {
                let _ = writeln!(s, "  bench RSS {per:.2} KiB per connection");
            }
            let _ = writeln!(s, "  {}", cpu_line(c.setup_bench_cpu, None, self.threads));
            for e in &c.errors {
                let _ = writeln!(s, "  error: {e}");
            }
        }
        if let Some(slow) = &self.slow {
            slow_lines(&mut s, slow);
        }
        if let Some([a, b, c]) = self.loadavg {
            let _ = writeln!(s, "  load average {a:.2} {b:.2} {c:.2}");
        }
        s
    }
}

/// The summary lines of `slow`.
fn slow_lines(s: &mut String, slow: &SlowOutcome) {
    let phase = |s: &mut String, name: &str, p: &PhaseOutcome| {
        let w = &p.window;
        let _ = write!(
            s,
            "  {name} ({:.1} s): published {}/s, healthy subscribers received {}/s",
            w.secs,
            si(w.published_per_s),
            si(w.delivered_per_s)
        );
        if let Some(l) = &p.latency {
            let _ = write!(s, ", p50 {:.3} ms p99 {:.3} ms", l.p50, l.p99);
        }
        if let Some(us) = p.broker_us_per_delivery {
            let _ = write!(s, "; broker {us:.3} µs CPU per delivery");
        }
        if let Some(r) = &p.broker_rss {
            let _ = write!(
                s,
                "; broker RSS {} → {} (max {})",
                kib(r.start_kib as i64),
                kib(r.end_kib as i64),
                kib(r.max_kib as i64)
            );
        }
        s.push('\n');
    };
    phase(s, "phase A, baseline", &slow.phase_a);
    phase(s, "phase B, 1 stalled subscriber", &slow.phase_b);
    let _ = write!(s, "  healthy subscribers' rate B/A: ");
    match slow.delivered_ratio {
        Some(r) => {
            let verdict = if r >= TARGET_RATIO { "met" } else { "MISSED" };
            let _ = write!(s, "{:.1}% (target ≥ {:.0}%: {verdict})", r * 100.0, TARGET_RATIO * 100.0);
        }
        None => s.push_str("unknown (nothing delivered in phase A)"),
    }
    if let Some(c) = slow.broker_cost_ratio {
        let _ = write!(s, "; broker CPU per delivery B/A {:.1}%", c * 100.0);
    }
    if let Some(g) = slow.broker_rss_growth_kib {
        let _ = write!(s, "; broker RSS {} from the end of A to the peak of B", kib_signed(g));
    }
    s.push('\n');
    let t = &slow.stalled;
    let _ = writeln!(
        s,
        "  stalled subscriber ({} B receive buffer, MSS {}): subscribed in {:.1} ms, read nothing; of {} published since, {} kept for it, {} dropped; {}",
        t.recv_buffer,
        t.mss,
        t.connect_secs * 1000.0,
        t.published,
        t.backlog,
        t.dropped,
        if t.closed_by_broker {
            format!("the broker closed its connection ({})", t.error.as_deref().unwrap_or("?"))
        } else {
            "the broker kept its connection".to_string()
        }
    );
}

/// KiB as KiB or MiB.
fn kib(v: i64) -> String {
    if v.abs() >= 10 * 1024 {
        format!("{:.1} MiB", v as f64 / 1024.0)
    } else {
        format!("{v} KiB")
    }
}

/// [`kib`] with its sign.
fn kib_signed(v: i64) -> String {
    if v >= 0 {
        format!("+{}", kib(v))
    } else {
        format!("−{}", kib(-v))
    }
}

fn cpu_line(bench: Option<f64>, broker: Option<f64>, threads: usize) -> String {
    let mut line = match bench {
        Some(c) => format!(
            "bench CPU {:.0}% of a core ({threads} thread{})",
            c * 100.0,
            if threads == 1 { "" } else { "s" }
        ),
        None => "bench CPU unknown".to_string(),
    };
    if bench.is_some_and(|c| c >= 0.9 * threads as f64) {
        line.push_str(" — the load generator may be the limit");
    }
    if let Some(b) = broker {
        let _ = write!(line, ", broker CPU {:.0}%", b * 100.0);
    }
    line
}

/// `1234567.0` → `1.23M`.
pub(crate) fn si(value: f64) -> String {
    let abs = value.abs();
    if abs >= 1e9 {
        format!("{:.2}G", value / 1e9)
    } else if abs >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if abs >= 1e3 {
        format!("{:.1}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_units() {
        assert_eq!(si(12.4), "12");
        assert_eq!(si(1234.0), "1.2k");
        assert_eq!(si(401_234.0), "401.2k");
        assert_eq!(si(1_560_000.0), "1.56M");
        assert_eq!(si(2.5e9), "2.50G");
    }

    #[test]
    fn memory_units() {
        assert_eq!(kib(812), "812 KiB");
        assert_eq!(kib(10_240), "10.0 MiB");
        assert_eq!(kib_signed(51_200), "+50.0 MiB");
        assert_eq!(kib_signed(-300), "−300 KiB");
    }

    #[test]
    fn slow_summary() {
        use crate::scenario::slow::RssTrack;
        let mut slow = SlowOutcome::default();
        slow.phase_a.window.delivered_per_s = 100_000.0;
        slow.phase_b.window.delivered_per_s = 85_000.0;
        slow.phase_b.broker_rss = Some(RssTrack::new(20_480));
        slow.delivered_ratio = Some(0.85);
        slow.broker_rss_growth_kib = Some(600);
        slow.broker_cost_ratio = Some(1.02);
        slow.stalled.closed_by_broker = true;
        let mut s = String::new();
        slow_lines(&mut s, &slow);
        assert!(s.contains("B/A: 85.0% (target ≥ 90%: MISSED)"), "{s}");
        assert!(s.contains("broker RSS 20.0 MiB → 20.0 MiB"), "{s}");
        assert!(s.contains("+600 KiB"), "{s}");
        assert!(s.contains("CPU per delivery B/A 102.0%"), "{s}");
        assert!(s.contains("the broker closed its connection"), "{s}");
    }

    #[test]
    fn cpu_warning() {
        assert!(cpu_line(Some(0.95), Some(1.0), 1).contains("may be the limit"));
        assert!(!cpu_line(Some(0.5), None, 1).contains("limit"));
        assert!(cpu_line(Some(0.5), Some(0.99), 1).contains("broker CPU 99%"));
    }
}
