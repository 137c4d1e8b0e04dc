#!/usr/bin/env bash
# make bench, rows `admin`: what operating Ferry costs it (issue 15).
#   1. dashboard: the broker's CPU over ADMIN_IDLE seconds idle, then over as long with
#      the dashboard open in a headless Chromium (it polls the API every 2 s); the
#      difference, as a share of one core.
#   2. HTTP messaging (ferry-http-bench): POST /api/v1/publish requests/s from 100
#      keep-alive connections to one MQTT subscriber, and Server-Sent Events fan-out
#      1→100 delivered events/s from one MQTT publisher.
#   3. clients API: with BENCH_CONNS idle MQTT connections (ferry-bench conns), the time
#      of GET /api/v1/clients?limit=1000 (median of 10) and of a scrape of every page.
# Sourced by bench/run.sh, which provides FERRY, BENCH, OUT, the CPUs and CONNS; writes
# $OUT/admin.txt.
set -euo pipefail

ADMIN_IDLE=${ADMIN_IDLE:-30}
A_PORT=$F_ADMIN

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)

admin_broker() {
    rm -rf "$WORK/data"
    FERRY_LISTENERS__ADMIN__ENABLED=true FERRY_LISTENERS__ADMIN__BIND="127.0.0.1:$A_PORT" \
        taskset -c "$BROKER_CPU" "$FERRY" --config "$WORK/ferry.toml" >>"$OUT/ferry-admin.log" 2>&1 &
    ADMIN_PID=$!
    PIDS+=("$ADMIN_PID")
    for _ in $(seq 200); do
        curl -sf "http://127.0.0.1:$A_PORT/healthz" >/dev/null && return 0
        sleep 0.05
    done
    die "ferry (admin) did not start"
}

{
    echo "## admin (Ferry only)"
    if [[ -x ${CHROMIUM:-/usr/bin/chromium} && -d "$ROOT/tests/interop/node_modules/puppeteer-core" ]]; then
        admin_broker
        sleep 2
        a=$(cpu_ticks "$ADMIN_PID")
        sleep "$ADMIN_IDLE"
        b=$(cpu_ticks "$ADMIN_PID")
        taskset -c "$LOAD_CPU" node "$ROOT/bench/dashboard.mjs" "http://127.0.0.1:$A_PORT/" "$((ADMIN_IDLE + 4))" 2>>"$OUT/dashboard.log" &
        dash=$!
        for _ in $(seq 400); do grep -q "dashboard open" "$OUT/dashboard.log" 2>/dev/null && break; sleep 0.05; done
        sleep 2
        c=$(cpu_ticks "$ADMIN_PID")
        sleep "$ADMIN_IDLE"
        d=$(cpu_ticks "$ADMIN_PID")
        wait "$dash" || true
        if ! grep -q "dashboard open" "$OUT/dashboard.log"; then
            echo "- dashboard: FAILED to open (see $OUT/dashboard.log)"
        else
            grep -o "dashboard made [0-9]* requests" "$OUT/dashboard.log" | sed 's/^/- /'
            python3 -c "
import sys
idle, open_, secs, tck = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
share = lambda t: 100.0 * t / tck / secs
print(f'- dashboard: broker CPU idle {share(idle):.2f}% of a core, with the dashboard open {share(open_):.2f}%: +{share(open_) - share(idle):.2f}% ({secs} s each)')
" "$((b - a))" "$((d - c))" "$ADMIN_IDLE" "$tck"
        fi
        stop "$ADMIN_PID"
    else
        echo "- dashboard: skipped (needs Debian's chromium and tests/interop/node_modules: run make test once)"
    fi

    admin_broker
    for mode in publish sse; do
        taskset -c "$LOAD_CPU" "$HTTP_BENCH" "$mode" --http "127.0.0.1:$F_WS" --mqtt "127.0.0.1:$F_TCP" \
            --clients 100 --duration "${DURATION}s" 2>>"$OUT/http-bench.log" | sed 's/^/- /' ||
            echo "- $mode: FAILED (see $OUT/http-bench.log)"
    done
    stop "$ADMIN_PID"

    admin_broker
    taskset -c "$LOAD_CPU" "$BENCH" conns --url "tcp://127.0.0.1:$F_TCP" --clients "$CONNS" --connect-concurrency 200 \
        --duration 60s --quiet >"$OUT/admin-conns.json" 2>"$OUT/admin-conns.log" &
    conns=$!
    PIDS+=("$conns")
    for _ in $(seq 1200); do
        n=$(curl -s "http://127.0.0.1:$F_WS/metrics" | awk '/^ferry_connections_active\{listener="mqtt"\}/ {print $2}')
        [[ ${n:-0} -ge $CONNS ]] && break
        sleep 0.1
    done
    python3 - "$A_PORT" "$CONNS" <<'PY'
import json, statistics, sys, time, urllib.request
port, conns = sys.argv[1], int(sys.argv[2])
def get(path):
    t = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as r:
        body = r.read()
    return time.perf_counter() - t, json.loads(body)
times = [get("/api/v1/clients?limit=1000")[0] for _ in range(10)]
whole_times = []
for _ in range(5):
    t, body = get(f"/api/v1/clients?limit={conns}")
    whole_times.append(t)
    got = len(body.get("data") or [])
t0 = time.perf_counter()
page, seen = 1, 0
while True:
    _, body = get(f"/api/v1/clients?limit=1000&page={page}")
    items = body.get("data") or body.get("items") or []
    seen += len(items)
    if len(items) < 1000:
        break
    page += 1
whole = time.perf_counter() - t0
print(f"- clients API with {conns} connections: one request for all {got} in {statistics.median(whole_times) * 1000:.0f} ms (median of 5); "
      f"a page of 1000 in {statistics.median(times) * 1000:.1f} ms (median of 10); all {seen} page by page in {whole * 1000:.0f} ms")
PY
    kill "$conns" 2>/dev/null || true
    wait "$conns" 2>/dev/null || true
    stop "$ADMIN_PID"
} | tee "$OUT/admin.txt"
