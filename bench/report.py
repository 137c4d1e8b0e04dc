#!/usr/bin/env python3
"""Turns a `make bench` results directory into the comparison table (Markdown).

Files are named ROW.TRANSPORT.BROKER.REP.json (one ferry-bench JSON line each; the
slow-consumer row writes slow-max.* for its --max runs and slow.* for its paced ones), or,
when a row spread its subscribers over two load processes, ROW.TRANSPORT.BROKER.REP
.sub0.json, .sub1.json and .pub.json, which are added up here. *.single.json are the
single-process runs a spread row replaced; they are listed, not counted.
"""

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

LABELS = {
    "fanout-q0": "fan-out 1→100, QoS 0 (msg/s delivered)",
    "fanout-q1": "fan-out 1→100, QoS 1 (msg/s delivered)",
    "fanin-q0": "fan-in 100→1, QoS 0 (msg/s delivered)",
    "pairs-q0": "pairs 100, QoS 0 (msg/s delivered)",
    "persistent-q1": "fan-in 100→1, QoS 1, persistent subscriber (msg/s delivered)",
    "latency": "latency at 10k deliveries/s, p50 / p99 (ms)",
    "persistent-latency": "QoS 1 to a persistent session at 10k msg/s, storage on, publish → delivery p50 / p99 (ms)",
    "stomp-fanout": "STOMP fan-out 1→100, ack auto (msg/s)",
    "stomp-pairs": "STOMP pairs 100, ack auto (msg/s)",
    "slow-max": "slow consumer: 1→100 QoS 0 + 1 stalled, max rate (healthy rate B/A, broker RSS growth)",
    "slow": "slow consumer, paced at 90% of max (healthy rate B/A, broker RSS growth)",
    "conns": "idle MQTT connection, broker RSS (KiB)",
    "deflate-off": "STOMP fan-out 1→100, 1 KiB JSON, no compression (msg/s)",
    "deflate-on": "STOMP fan-out 1→100, 1 KiB JSON, permessage-deflate (msg/s)",
    "conns-deflate": "idle MQTT connection, permessage-deflate negotiated, broker RSS (KiB)",
}
SLOW_ROWS = ("slow-max", "slow")
ORDER = list(LABELS)


def load(path):
    try:
        lines = path.read_text().strip().splitlines()
        return json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None


def combine(parts):
    """One result from the load processes of a spread run."""
    subs = [p for name, p in parts.items() if name.startswith("sub") and p]
    pub = parts.get("pub")
    if not subs or not pub:
        return None
    window = {
        "delivered_per_s": sum(s["window"]["delivered_per_s"] for s in subs),
        "published_per_s": pub["window"]["published_per_s"],
        "bench_cpu": sum((p["window"].get("bench_cpu") or 0) for p in subs + [pub]),
        "broker_cpu": pub["window"].get("broker_cpu"),
        "core_busy": pub["window"].get("core_busy") or [],
    }
    lat = [s.get("latency") for s in subs if s.get("latency")]
    latency = {"p50": max(l["p50"] for l in lat), "p99": max(l["p99"] for l in lat)} if lat else None
    return {
        "window": window,
        "latency": latency,
        "seq": {"lost": sum(s["seq"]["lost"] for s in subs), "duplicates": sum(s["seq"]["duplicates"] for s in subs)},
        "loadavg": pub.get("loadavg"),
        "spread": len(subs),
        # Kept up: published at the pace and delivered it all (QoS 0 overflow counts as lost).
        "at_pace": bool(pub.get("rate"))
        and pub["window"]["published_per_s"] >= 0.97 * pub["rate"]
        and sum(s["seq"]["lost"] for s in subs) <= 0.001 * max(1, sum(s["seq"]["received"] for s in subs)),
        "errors": sum((p.get("errors") or [] for p in subs + [pub]), []),
    }


def collect(directory):
    runs = defaultdict(lambda: defaultdict(list))  # (row, transport) → broker → [result]
    spread = defaultdict(dict)
    replaced = []
    for path in sorted(Path(directory).glob("*.json")):
        parts = path.name[: -len(".json")].split(".")
        if len(parts) < 4:
            continue
        row, transport, broker, rep = parts[:4]
        if len(parts) == 5 and parts[4] == "single":
            continue
        result = load(path)
        if len(parts) == 5:
            spread[(row, transport, broker, rep)][parts[4]] = result
        elif result:
            runs[(row, transport)][broker].append(result)
    for (row, transport, broker, rep), parts in spread.items():
        result = combine(parts)
        single_path = Path(directory) / f"{row}.{transport}.{broker}.{rep}.single.json"
        single = load(single_path)
        # Spreading is there to lift a load-process ceiling. When it delivers less (the
        # paced publisher overran the broker and QoS 0 overflowed), the single-process
        # run stands.
        if single and (not result or rate_of(single) >= rate_of(result)):
            runs[(row, transport)][broker].append(single)
        elif result:
            runs[(row, transport)][broker].append(result)
            if single:
                replaced.append(single_path.name)
    return runs, replaced


def rate_of(result):
    return (result.get("window") or {}).get("delivered_per_s") or 0


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt_rate(v):
    if v is None:
        return "–"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.0f}k"
    return f"{v:.0f}"


def pct(v):
    return "–" if v is None else f"{100 * v:.0f}%"


def figures(row, results):
    """(main value for the ratio, text) of one broker's runs of one row."""
    if row in ("latency", "persistent-latency", "cluster-latency"):
        p50 = median([(r.get("latency") or {}).get("p50") for r in results])
        p99 = median([(r.get("latency") or {}).get("p99") for r in results])
        text = "–" if p50 is None else f"{p50:.2f} / {p99:.2f}"
        return p99, text
    if row in ("conns", "conns-deflate"):
        per = median([(r.get("conns") or {}).get("broker_rss_per_conn_kib") for r in results])
        return per, ("–" if per is None else f"{per:.1f}")
    if row in SLOW_ROWS:
        return slow_figures(results)
    rate = median([r["window"]["delivered_per_s"] for r in results])
    return rate, fmt_rate(rate)


def fmt_kib(v):
    if v is None:
        return "–"
    sign = "+" if v >= 0 else "−"
    v = abs(v)
    return f"{sign}{v / 1024:.1f} MiB" if v >= 1024 else f"{sign}{v:.0f} KiB"


def slow_figures(results):
    """(B/A of the healthy delivery rate, text) of slow-consumer runs: the ratio, the
    baseline rate it is a share of, and the broker's RSS growth during phase B."""
    slows = [r.get("slow") or {} for r in results]
    ratio = median([s.get("delivered_ratio") for s in slows])
    base = median([((s.get("phase_a") or {}).get("window") or {}).get("delivered_per_s") for s in slows])
    growth = median([s.get("broker_rss_growth_kib") for s in slows])
    if ratio is None:
        return None, "–"
    return ratio, f"{pct(ratio)} of {fmt_rate(base)}/s, RSS {fmt_kib(growth)}"


def slow_notes(results):
    slows = [r.get("slow") or {} for r in results]
    stalled = [s.get("stalled") or {} for s in slows]
    out = []
    kept = median([t.get("backlog") for t in stalled])
    dropped = median([t.get("dropped") for t in stalled])
    if kept is not None:
        out.append(f"stalled sub: {kept:.0f} kept, {dropped:.0f} dropped")
    cost = median([s.get("broker_cost_ratio") for s in slows])
    if cost is not None:
        out.append(f"broker CPU per delivery B/A {pct(cost)}")
    closed = sum(1 for t in stalled if t.get("closed_by_broker"))
    if closed:
        out.append(f"stalled sub closed by the broker in {closed} runs")
    missed = sum(1 for s in slows if s.get("meets_target") is False)
    if missed:
        out.append(f"below 90% in {missed} of {len(slows)} runs")
    return out


def cpu(results, key):
    if not results:
        return None
    if key == "bench_cpu" and results[0].get("conns"):
        return median([r["conns"].get("setup_bench_cpu") for r in results])
    return median([(r.get("window") or {}).get(key) for r in results])


def notes(row, results):
    out = []
    if any(r.get("spread") for r in results):
        out.append(f"{max(r.get('spread', 0) for r in results)} load processes")
        if any(r.get("at_pace") for r in results):
            out.append("kept up with the pace (150% of one process): a floor")
    lost = [r.get("seq", {}).get("lost", 0) for r in results if r.get("seq")]
    if lost and max(lost) > 0:
        out.append(f"lost {median(lost):.0f}")
    if row in ("conns", "conns-deflate"):
        c = [r["conns"] for r in results if r.get("conns")]
        if c:
            failed = max(x["failed"] for x in c)
            dropped = max(x["dropped"] for x in c)
            setup = median([x["setup_secs"] for x in c])
            out.append(f"{c[0]['requested']} conns set up in {setup:.1f} s")
            if failed or dropped:
                out.append(f"failed {failed}, dropped {dropped}")
    if row in SLOW_ROWS:
        out.extend(slow_notes(results))
    others = []
    for r in results:
        w = r.get("window") or {}
        busy = w.get("core_busy") or []
        if len(busy) >= 2 and w.get("broker_cpu") is not None and w.get("bench_cpu") is not None:
            others.append(max(0.0, busy[0] - w["broker_cpu"]) + max(0.0, busy[1] - min(1.0, w["bench_cpu"])))
    if others and median(others) >= 0.05:
        out.append(f"other processes ≈{100 * median(others):.0f}% of a core")
    errors = sum(len(r.get("errors") or []) for r in results)
    if errors:
        out.append(f"{errors} errors")
    return ", ".join(out)


def mib(v):
    return "–" if v is None else f"{v / 1048576:.1f} MiB"


def disk_bounded(directory):
    """The disk-bounded row (disk-bounded.result.json, written by run.sh): bytes on disk
    over a steady run with the storage defaults against the live state plus two segments."""
    r = load(Path(directory) / "disk-bounded.result.json")
    if not r:
        return
    seg = r.get("segment_bytes") or 0
    live = r.get("live_bytes")
    limit = None if live is None else live + 2 * seg
    rate = r.get("rate")
    print()
    print(
        f"Disk bounded (Ferry, storage defaults, {mib(seg)} segments): {r.get('seconds', 0)} s of QoS 1"
        f" at {'as fast as possible' if not rate else f'{rate:.0f} msg/s'}, 50 retained topics overwritten,"
        " 50 persistent sessions consuming:"
    )
    print()
    print("| max on disk | final on disk | live state | live + 2 segments | segments (max / final) | last snapshot | bounded |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {mib(r.get('max_bytes'))} | {mib(r.get('final_bytes'))} | {r.get('live_bytes', '–')} B | {mib(limit)} "
        f"| {r.get('max_segments', '–')} / {r.get('segments', '–')} | {r.get('snapshot_bytes') or '–'} B "
        f"| {'yes' if r.get('bounded') else 'NO'} |"
    )
    delivered, lost = r.get("delivered_per_s"), r.get("lost")
    if delivered is not None:
        print(f"(delivered {delivered:.0f} msg/s, {lost} lost; bytes are the store's files, preallocated)")


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--disk":
        disk_bounded(sys.argv[2])
        return
    directory = sys.argv[1] if len(sys.argv) > 1 else "."
    runs, replaced = collect(directory)
    print()
    print("| scenario | transport | Ferry | Mosquitto | Ferry/Mosquitto | load-process CPU F / M | broker CPU F / M | load avg | notes (F; M) |")
    print("|---|---|---|---|---|---|---|---|---|")
    keys = sorted(runs, key=lambda k: (ORDER.index(k[0]) if k[0] in ORDER else 99, k[1]))
    for row, transport in keys:
        if row.startswith("cluster"):
            continue  # a table of its own below
        brokers = runs[(row, transport)]
        f, m = brokers.get("ferry", []), brokers.get("mosquitto", [])
        if row.startswith("stomp-") and not m:
            # Compared with Mosquitto's MQTT figure for the same flow, as the targets ask.
            twin = {"stomp-fanout": "fanout-q0", "stomp-pairs": "pairs-q0"}[row]
            m = runs.get((twin, transport), {}).get("mosquitto", [])
        fv, ft = figures(row, f) if f else (None, "–")
        mv, mt = figures(row, m) if m else (None, "–")
        ratio = f"{fv / mv:.2f}" if fv and mv else "–"
        load = median([(r.get("loadavg") or [None])[0] for r in f + m])
        print(
            f"| {LABELS.get(row, row)} | {transport} | {ft} | {mt} | {ratio} "
            f"| {pct(cpu(f, 'bench_cpu'))} / {pct(cpu(m, 'bench_cpu'))} "
            f"| {pct(cpu(f, 'broker_cpu'))} / {pct(cpu(m, 'broker_cpu'))} "
            f"| {'–' if load is None else f'{load:.2f}'} | {notes(row, f)}; {notes(row, m)} |"
        )
    print()
    print("Medians of each row's repetitions. Latency and RSS: lower is better (ratio < 1 favours Ferry).")
    print("STOMP rows are Ferry's STOMP against Mosquitto's MQTT figure for the same flow.")
    print(
        "Slow consumer: healthy subscribers' delivery rate with a stalled subscriber (phase B) as a share of"
        " the rate without it (phase A), the broker's RSS growth from the end of A to the peak of B, and"
        " what the broker kept for / dropped for the stalled subscriber, and the broker's CPU time per healthy"
        " delivery in B as a share of A (near 100% with a lower rate in B: the broker got less CPU, the stall"
        " cost it no work); Ferry/Mosquitto compares the shares (higher is better)."
    )
    print("load avg: the machine's 1-minute load average at the end of the runs (other work included).")
    print()
    print("All runs (delivered msg/s, or p50/p99 ms, or KiB per connection, or slow-consumer share):")
    for row, transport in keys:
        for broker, results in sorted(runs[(row, transport)].items()):
            values = [figures(row, [r])[1] for r in results]
            print(f"- {row} {transport} {broker}: {', '.join(values)}")
    if replaced:
        print(f"- replaced by spread runs: {', '.join(replaced)}")
    persistent(runs)
    cluster(runs, directory)
    disk_bounded(directory)
    wire = wire_bytes(directory)
    if wire:
        print()
        print("permessage-deflate, bytes on the loopback wire per delivered message (1 KiB JSON body, TCP/IP")
        print("headers and acknowledgements included; medians):")
        for mode in ("off", "on"):
            if mode in wire:
                print(f"- compression {mode}: {wire[mode]:.0f} B")
        if "off" in wire and "on" in wire and wire["on"]:
            print(f"- {wire['off'] / wire['on']:.1f}x fewer bytes with compression")


def persistent(runs):
    """The persistent-session row side by side: Ferry with storage on (every PUBACK after
    fdatasync) and off, Mosquitto (in memory), NATS (JetStream file store)."""
    brokers = runs.get(("persistent-q1", "tcp"), {})
    if not brokers:
        return
    cols = [("ferry", "Ferry, storage on (fsync)"), ("ferry-nostore", "Ferry, storage off"),
            ("mosquitto", "Mosquitto (memory)"), ("nats", "NATS MQTT (JetStream file)")]
    values = {b: figures("persistent-q1", brokers[b]) if brokers.get(b) else (None, "–") for b, _ in cols}
    print()
    print("Persistent sessions, TCP: fan-in 100→1 at QoS 1 to a subscriber with clean session 0 (msg/s delivered):")
    print()
    print("| " + " | ".join(label for _, label in cols) + " | Ferry on / off | Ferry on / NATS | Ferry on / Mosquitto |")
    print("|" + "---|" * (len(cols) + 3))
    on = values["ferry"][0]

    def ratio(other):
        v = values[other][0]
        return f"{on / v:.2f}" if on and v else "–"

    print("| " + " | ".join(values[b][1] for b, _ in cols) + f" | {ratio('ferry-nostore')} | {ratio('nats')} | {ratio('mosquitto')} |")


def cluster(runs, directory):
    """The cluster row: fan-out 1→100 with the publisher on node 1 and the subscribers on
    node 2 (one nats-server), one Ferry node alone, NATS's MQTT on two clustered servers;
    the NATS traffic per publication; the cross-node latency at 10k msg/s."""
    cols = [
        ("ferry-2nodes", "Ferry, 2 nodes"),
        ("ferry-3nodes", "Ferry, 3 nodes (subscribers on 2 and 3)"),
        ("ferry-1node", "Ferry, 1 node"),
        ("nats-2servers", "NATS MQTT, 2 servers"),
    ]
    rows = [(q, runs.get((f"cluster-q{q}", "tcp"), {})) for q in (0, 1)]
    if not any(brokers for _, brokers in rows):
        return
    print()
    print("Cluster, TCP, fan-out 1→100, 64 B, publisher on node 1, subscribers on node 2 (msg/s delivered;")
    print("nodes, nats-server and load generator share the machine's cores):")
    print()
    print("| QoS | " + " | ".join(label for _, label in cols) + " | 2 nodes / NATS | NATS msgs per publication | NATS bytes per msg |")
    print("|" + "---|" * (len(cols) + 4))
    for q, brokers in rows:
        values = {b: figures("cluster", brokers[b]) if brokers.get(b) else (None, "–") for b, _ in cols}
        two, nats = values["ferry-2nodes"][0], values["nats-2servers"][0]
        per_pub, per_msg = [], []
        for path in sorted(Path(directory).glob(f"cluster-q{q}.tcp.ferry-2nodes.*.natsbytes")):
            try:
                n = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if n.get("sent") and n.get("nats_msgs"):
                per_pub.append(n["nats_msgs"] / n["sent"])
                per_msg.append(n["nats_bytes"] / n["nats_msgs"])
        ratio = f"{two / nats:.2f}" if two and nats else "–"
        pp, pm = median(per_pub), median(per_msg)
        print(
            f"| {q} | " + " | ".join(values[b][1] for b, _ in cols) + f" | {ratio} "
            f"| {'–' if pp is None else f'{pp:.2f}'} | {'–' if pm is None else f'{pm:.0f} B'} |"
        )
    for q, _ in rows:
        per_pub = []
        for path in sorted(Path(directory).glob(f"cluster-q{q}.tcp.ferry-3nodes.*.natsbytes")):
            try:
                n = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if n.get("sent"):
                per_pub.append(n.get("received", 0) / n["sent"])
        pp = median(per_pub)
        if pp is not None:
            print(f"\n3 nodes, QoS {q}: nodes 2 and 3 together received {pp:.2f} NATS messages per publication (one per receiving node).")
    lat = runs.get(("cluster-latency", "tcp"), {}).get("ferry-2nodes")
    if lat:
        print()
        print(f"Cross-node latency, QoS 1 at 10k msg/s, node 1 → node 2, p50 / p99 (ms): {figures('cluster-latency', lat)[1]}")


def wire_bytes(directory):
    """Median loopback bytes per delivered message of the deflate-off/-on runs."""
    per = defaultdict(list)
    for path in sorted(Path(directory).glob("deflate-*.wire")):
        mode = path.name.split(".")[0].split("-")[1]
        result = load(path.with_suffix(".json"))
        try:
            total = int(path.read_text().strip())
        except (OSError, ValueError):
            continue
        received = ((result or {}).get("seq") or {}).get("received")
        if received:
            per[mode].append(total / received)
    return {mode: median(values) for mode, values in per.items()}


if __name__ == "__main__":
    main()
