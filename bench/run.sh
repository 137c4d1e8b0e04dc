#!/usr/bin/env bash
# make bench: Ferry against a reference Mosquitto 2.0 on this machine, with ferry-bench.
#
# Each broker runs pinned to one core (BENCH_BROKER_CPU, default 0) and the load
# generator to another (BENCH_LOAD_CPU, default 1). Every row of issue 6's target table
# runs BENCH_REPS times per transport, the brokers alternating (Ferry first on odd
# repetitions, Mosquitto first on even ones); the table shows the median of each row,
# the Ferry/Mosquitto ratio, the load generator's and the brokers' CPU use, and the
# machine's load average. Raw JSON lines land in bench/results/<timestamp>/.
#
# Knobs (environment):
#   BENCH_DURATION   seconds measured per run (default 5)
#   BENCH_WARMUP     seconds of warm-up per run (default 1)
#   BENCH_REPS       repetitions per row and broker (default 3)
#   BENCH_CONNS      idle connections for the memory row (default 10000)
#   BENCH_TRANSPORTS transports to run (default "ws tcp")
#   BENCH_STOMP      1 (default) adds Ferry-only STOMP rows when Ferry serves STOMP
#   BENCH_SPREAD_AT  load-process CPU share (0-1) above which a broker's fan-out or
#                    pairs row spreads its subscribers over two load processes, the
#                    publishers paced at 150% of the single process's rate (default 0.90)
#   BENCH_BROKER_CPU / BENCH_LOAD_CPU  cores for the brokers / the load processes
#   BENCH_ROWS       regular expression: only the rows whose id matches (fanout-q0,
#                    fanout-q1, fanin-q0, pairs-q0, retained-q1, persistent-q1 (with persistent-latency), latency,
#                    stomp-fanout, stomp-pairs, slow, conns, deflate, cluster, disk-bounded, restart, admin)
#   BENCH_DISK_SECONDS, BENCH_DISK_RATE
#                    the disk-bounded row's length and steady rate (600 s, 5000 msg/s)
#   BENCH_RESTART_RETAINED, BENCH_RESTART_SESSIONS, BENCH_RESTART_STORM
#                    the restart row's sizes (1000000, 100000, 10000)
#   BENCH_SKIP_BUILD 1 to use the binaries already in target/release
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

DURATION=${BENCH_DURATION:-5}
WARMUP=${BENCH_WARMUP:-1}
REPS=${BENCH_REPS:-3}
CONNS=${BENCH_CONNS:-10000}
TRANSPORTS=${BENCH_TRANSPORTS:-"ws tcp"}
STOMP=${BENCH_STOMP:-1}
SPREAD_AT=${BENCH_SPREAD_AT:-0.90}
BROKER_CPU=${BENCH_BROKER_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
ONLY=${BENCH_ROWS:-.}

log() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "$*"; exit 1; }

# ---------------------------------------------------------------- processes we start
PIDS=()
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench.XXXXXX")
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget() { # remove a pid from PIDS once it has been stopped
    local keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

stop() {
    local pid=$1
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget "$pid"
}

# ---------------------------------------------------------------- prerequisites
command -v taskset >/dev/null || die "taskset (util-linux) is needed"
command -v python3 >/dev/null || die "python3 is needed for the table"
NCPU=$(nproc)
((NCPU >= 2)) || log "only $NCPU CPU: broker and load generator will share it"

if ! command -v mosquitto >/dev/null; then
    log "installing Debian's mosquitto (reference broker)"
    SUDO=""
    [[ $(id -u) == 0 ]] || SUDO=sudo
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null
    # The package may start a system service: this script runs its own instance.
    if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
        $SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true
    else
        $SUDO service mosquitto stop >/dev/null 2>&1 || true
        $SUDO update-rc.d mosquitto disable >/dev/null 2>&1 || true
    fi
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
MOSQUITTO_VERSION=$({ "$MOSQUITTO" -h 2>/dev/null || true; } | awk 'NR == 1 {print $3}')

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    log "building ferry and ferry-bench (release)"
    cargo build --release --quiet -p ferry -p ferry-bench
fi
# Private copies: a rebuild of target/ during the run must not swap the binaries.
cp target/release/ferry "$WORK/ferry"
cp target/release/ferry-bench "$WORK/ferry-bench"
cp target/release/ferry-http-bench "$WORK/ferry-http-bench"
cp target/release/ferry-restart-bench "$WORK/ferry-restart-bench"
FERRY="$WORK/ferry"
BENCH="$WORK/ferry-bench"
HTTP_BENCH="$WORK/ferry-http-bench"

# Brokers hold up to BENCH_CONNS connections.
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"

STAMP=$(date +%Y%m%d-%H%M%S)
OUT="$ROOT/bench/results/$STAMP"
mkdir -p "$OUT"

free_ports() { # N spare loopback ports
    python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

wait_port() {
    local port=$1
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# ---------------------------------------------------------------- brokers
read -r F_WS F_TCP F_STOMP M_WS M_TCP F_ADMIN N_MQTT N_CLIENT <<<"$(free_ports 8)"

# A Ferry configuration on loopback ports: node_conf DATA_DIR WS TCP STOMP [NATS_URL]
# (the admin listener off; with NATS_URL, a cluster node named after DATA_DIR's name).
node_conf() {
    cat <<EOF
[log]
level = "warn"
[listeners.ws]
bind = "127.0.0.1:$2"
[listeners.wss]
enabled = false
[listeners.mqtt]
bind = "127.0.0.1:$3"
[listeners.mqtts]
enabled = false
[listeners.stomp]
bind = "127.0.0.1:$4"
[listeners.stomps]
enabled = false
[listeners.admin]
enabled = false
[storage]
dir = "$1"
EOF
    if [[ -n ${5:-} ]]; then printf '[cluster]\nnats_url = "%s"\nnode_name = "bench-%s"\n' "$5" "$(basename "$1")"; fi
}
# Storage on, as by default (sync = "fsync"): the retained-q1 row acknowledges each
# PUBLISH after its record is on disk; Mosquitto below keeps everything in memory.
node_conf "$WORK/data" "$F_WS" "$F_TCP" "$F_STOMP" >"$WORK/ferry.toml"

cat >"$WORK/mosquitto.conf" <<EOF
# Reference broker for make bench: loopback only, anonymous, no persistence.
per_listener_settings false
allow_anonymous true
persistence false
max_queued_messages 1000000
max_connections -1
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
listener $M_TCP 127.0.0.1
listener $M_WS 127.0.0.1
protocol websockets
socket_domain ipv4
EOF

FERRY_PID=""
MOSQ_PID=""
start_ferry() {
    # Every run starts from an empty data directory, as the reference Mosquitto does.
    rm -rf "$WORK/data"
    taskset -c "$BROKER_CPU" "$FERRY" --config "$WORK/ferry.toml" >>"$OUT/ferry.log" 2>&1 &
    FERRY_PID=$!
    PIDS+=("$FERRY_PID")
    wait_port "$F_TCP" && wait_port "$F_WS" || die "ferry did not start: $(tail -5 "$OUT/ferry.log")"
}
start_mosquitto() {
    taskset -c "$BROKER_CPU" "$MOSQUITTO" -c "$WORK/mosquitto.conf" >>"$OUT/mosquitto.log" 2>&1 &
    MOSQ_PID=$!
    PIDS+=("$MOSQ_PID")
    wait_port "$M_TCP" && wait_port "$M_WS" || die "mosquitto did not start: $(tail -5 "$OUT/mosquitto.log")"
}

url_of() { # broker transport [protocol]
    case "$1:$2:${3:-mqtt}" in
    ferry:ws:*) echo "ws://127.0.0.1:$F_WS/mqtt" ;;
    ferry:tcp:mqtt) echo "tcp://127.0.0.1:$F_TCP" ;;
    ferry:tcp:stomp) echo "stomp://127.0.0.1:$F_STOMP" ;;
    mosquitto:ws:*) echo "ws://127.0.0.1:$M_WS/mqtt" ;;
    mosquitto:tcp:*) echo "tcp://127.0.0.1:$M_TCP" ;;
    ferry-nostore:*) url_of ferry "$2" "${3:-mqtt}" ;;
    nats:tcp:*) echo "tcp://127.0.0.1:$N_MQTT" ;;
    esac
}
pid_of() {
    case $1 in
    ferry | ferry-nostore) echo "$FERRY_PID" ;;
    nats) echo "$NATS_PID" ;;
    *) echo "$MOSQ_PID" ;;
    esac
}

# ---------------------------------------------------------------- one measurement
# run_one NAME BROKER TRANSPORT PROTOCOL SPLIT ARGS... → writes $OUT/NAME.json
# (RUN_DURATION overrides BENCH_DURATION for one call)
run_one() {
    local name=$1 broker=$2 transport=$3 protocol=$4 split=$5
    shift 5
    local url pid
    url=$(url_of "$broker" "$transport" "$protocol")
    pid=$(pid_of "$broker")
    local common=(--protocol "$protocol" --url "$url" --broker-pid "$pid" --duration "${RUN_DURATION:-$DURATION}" --warmup "$WARMUP" --json --quiet)
    settle "$pid"
    if [[ $split == 1 ]]; then
        run_split "$name" "${PACE[$broker]:-}" "${common[@]}" "$@"
        return
    fi
    if ! taskset -c "$LOAD_CPU" "$BENCH" "$@" "${common[@]}" >"$OUT/$name.json" 2>"$OUT/$name.log"; then
        log "FAILED $name: $(tail -2 "$OUT/$name.log" | tr '\n' ' ')"
        rm -f "$OUT/$name.json"
    fi
}

# Subscribers in two load processes (half each), publishers in a third, all on the
# load core. Combined by report.py from NAME.sub0/.sub1/.pub. Without subscribers of
# its own the publishing process has no end-to-end window, so it is paced instead at
# RATE (150% of what the single process published), lest it flood the broker.
run_split() {
    local name=$1 rate=$2
    shift 2
    local clients=100 a
    local -a args=()
    while (($#)); do
        if [[ $1 == --clients ]]; then
            clients=$2
            shift 2
        else
            args+=("$1")
            shift
        fi
    done
    local -a pace=()
    [[ -n $rate ]] && pace=(--rate "$rate")
    local half=$((clients / 2))
    local subs=() i
    for i in 0 1; do
        local n=$half offset=0
        ((i == 1)) && n=$((clients - half)) && offset=$half
        taskset -c "$LOAD_CPU" "$BENCH" "${args[@]}" --role sub --clients "$n" --id-offset "$offset" \
            --start-timeout 30s >"$OUT/$name.sub$i.json" 2>"$OUT/$name.sub$i.log" &
        subs+=($!)
        PIDS+=($!)
    done
    for i in 0 1; do
        for _ in $(seq 200); do
            grep -q "ferry-bench: ready" "$OUT/$name.sub$i.log" 2>/dev/null && break
            sleep 0.05
        done
    done
    taskset -c "$LOAD_CPU" "$BENCH" "${args[@]}" "${pace[@]}" --clients "$clients" --role pub >"$OUT/$name.pub.json" 2>"$OUT/$name.pub.log" ||
        log "FAILED $name (publishers): $(tail -2 "$OUT/$name.pub.log" | tr '\n' ' ')"
    for i in 0 1; do
        wait "${subs[i]}" 2>/dev/null || log "FAILED $name (subscribers $i): $(tail -2 "$OUT/$name.sub$i.log" | tr '\n' ' ')"
        forget "${subs[i]}"
    done
}

window_of() { # FIELD FILE: a field of a result's measurement window, or 0
    python3 -c '
import json, sys
try:
    print(json.loads(open(sys.argv[2]).read().splitlines()[-1])["window"][sys.argv[1]] or 0)
except Exception:
    print(0)' "$1" "$2"
}

settle() { # wait (up to 10 s) until the broker is idle: < 5% CPU over 200 ms
    local pid=$1 a b
    for _ in $(seq 50); do
        a=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null) || return 0
        sleep 0.2
        b=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null) || return 0
        ((b - a <= 1)) && return 0
    done
    log "broker $pid still busy before the next run"
}

# ---------------------------------------------------------------- the rows
# id | scenario arguments | may spread subscribers
ROWS=(
    "fanout-q0|fanout --clients 100 --qos 0|1"
    "fanout-q1|fanout --clients 100 --qos 1|1"
    "fanin-q0|fanin --clients 100 --qos 0|0"
    "pairs-q0|pairs --clients 100 --qos 0|1"
    "retained-q1|pairs --clients 100 --qos 1 --retain|0"
    "latency|fanout --clients 100 --qos 0 --rate 100|0"
)
STOMP_ROWS=(
    "stomp-fanout|fanout --clients 100|1"
    "stomp-pairs|pairs --clients 100|1"
)

order_for() { # rep → broker order
    if (($1 % 2 == 1)); then echo "ferry mosquitto"; else echo "mosquitto ferry"; fi
}

log "results in ${OUT#"$ROOT"/}; $DURATION s per run after $WARMUP s warm-up, $REPS repetitions, mosquitto $MOSQUITTO_VERSION"
log "load average $(cut -d' ' -f1-3 /proc/loadavg)"
start_ferry
start_mosquitto

FERRY_STOMP=0
[[ $STOMP == 1 ]] && (exec 3<>"/dev/tcp/127.0.0.1/$F_STOMP") 2>/dev/null && FERRY_STOMP=1

# run_row ID ARGS MAY_SPREAD PROTOCOL BROKERS: every repetition of one row over every
# transport. After the first repetition, a broker whose run kept the single load
# process near a full core is measured again, and from then on, with its subscribers
# spread over two load processes (said so in the table).
declare -A PACE=() SPLIT=()
run_row() {
    local id=$1 args=$2 may_spread=$3 protocol=$4 brokers=$5 transport rep broker name single
    for transport in $TRANSPORTS; do
        PACE=()
        SPLIT=()
        for ((rep = 1; rep <= REPS; rep++)); do
            for broker in $(order_for "$rep"); do
                [[ " $brokers " == *" $broker "* ]] || continue
                name="$id.$transport.$broker.$rep"
                log "$name ($protocol: $args)"
                # shellcheck disable=SC2086
                run_one "$name" "$broker" "$transport" "$protocol" "${SPLIT[$broker]:-0}" $args
            done
            ((rep == 1 && may_spread == 1)) || continue
            for broker in $brokers; do
                single="$OUT/$id.$transport.$broker.1.json"
                busy=$(python3 -c 'import sys; print(int(float(sys.argv[2]) >= float(sys.argv[1])))' "$SPREAD_AT" "$(window_of bench_cpu "$single")")
                [[ $busy == 1 ]] || continue
                log "$id over $transport with $broker: the load process neared a core; spreading subscribers over 2 processes"
                # Paced at 150% of what the single process published: room to show
                # more, without flooding.
                PACE[$broker]=$(python3 -c 'import sys; r = float(sys.argv[1]) * 1.5; print(f"{r:.0f}" if r > 0 else "")' \
                    "$(window_of published_per_s "$single")")
                SPLIT[$broker]=1
                mv "$single" "${single%.json}.single.json" 2>/dev/null || true
                log "$id.$transport.$broker.1 again, spread"
                # shellcheck disable=SC2086
                run_one "$id.$transport.$broker.1" "$broker" "$transport" "$protocol" 1 $args
                # Spreading that delivered less (the paced publisher overran the broker)
                # is not used for the other repetitions; report.py keeps the better of
                # the two for this one.
                local spread_rate single_rate
                spread_rate=$(awk -v a="$(window_of delivered_per_s "$OUT/$id.$transport.$broker.1.sub0.json")" \
                    -v b="$(window_of delivered_per_s "$OUT/$id.$transport.$broker.1.sub1.json")" 'BEGIN { print a + b }')
                single_rate=$(window_of delivered_per_s "${single%.json}.single.json")
                if awk -v s="$spread_rate" -v o="$single_rate" 'BEGIN { exit !(s < o) }'; then
                    log "$id over $transport with $broker: spread delivered less ($spread_rate < $single_rate msg/s); one process for the other repetitions"
                    SPLIT[$broker]=0
                fi
            done
        done
    done
}

for row in "${ROWS[@]}"; do
    IFS='|' read -r id args may_spread <<<"$row"
    [[ $id =~ $ONLY ]] || continue
    run_row "$id" "$args" "$may_spread" mqtt "ferry mosquitto"
done

if [[ $FERRY_STOMP == 1 ]]; then
    for row in "${STOMP_ROWS[@]}"; do
        IFS='|' read -r id args may_spread <<<"$row"
        [[ $id =~ $ONLY ]] || continue
        run_row "$id" "$args" "$may_spread" stomp ferry
    done
elif [[ $STOMP == 1 ]]; then
    log "Ferry serves no STOMP on this build: STOMP rows skipped"
fi

stop "$FERRY_PID"
stop "$MOSQ_PID"
start_broker() { if [[ $1 == ferry ]]; then start_ferry; else start_mosquitto; fi; }
stop_broker() { if [[ $1 == ferry ]]; then stop "$FERRY_PID"; else stop "$MOSQ_PID"; fi; }

# Slow consumer (row id slow): fan-out 1→100 at QoS 0 plus one subscriber that joins
# for the second of two phases and never reads (ferry-bench's `slow`), each phase
# BENCH_DURATION long. A fresh broker per run, so that memory freed by earlier rows
# cannot hide the growth. Each repetition runs it as fast as the window allows
# (files slow-max.*), then paced at 90% of the publish rate of phase A of that broker's
# first slow-max run over this transport (files slow.*): both phases offered the same
# load, close to what the broker sustains.
slow_pace() { # FILE → 90% of its phase A publish rate, or nothing
    python3 -c '
import json, sys
try:
    r = json.loads(open(sys.argv[1]).read().splitlines()[-1])["slow"]["phase_a"]["window"]["published_per_s"] * 0.9
    print(f"{r:.0f}" if r >= 1 else "")
except Exception:
    print("")' "$1"
}
declare -A SLOW_PACE=()
SLOW_DURATION=$(awk -v d="$DURATION" 'BEGIN { print 2 * d }')
for transport in $TRANSPORTS; do
    [[ slow =~ $ONLY ]] || break
    SLOW_PACE=()
    for ((rep = 1; rep <= REPS; rep++)); do
        for broker in $(order_for "$rep"); do
            name="slow-max.$transport.$broker.$rep"
            log "$name (1→100 QoS 0 + 1 stalled subscriber, --max, fresh broker)"
            start_broker "$broker"
            sleep 0.5
            RUN_DURATION=$SLOW_DURATION run_one "$name" "$broker" "$transport" mqtt 0 slow --clients 100 --qos 0 --max
            stop_broker "$broker"
            [[ -n ${SLOW_PACE[$broker]:-} ]] || SLOW_PACE[$broker]=$(slow_pace "$OUT/$name.json")
            if [[ -z ${SLOW_PACE[$broker]} ]]; then
                log "slow.$transport.$broker.$rep skipped: no phase A rate to pace at"
                continue
            fi
            name="slow.$transport.$broker.$rep"
            log "$name (1→100 QoS 0 + 1 stalled subscriber, --rate ${SLOW_PACE[$broker]}, fresh broker)"
            start_broker "$broker"
            sleep 0.5
            RUN_DURATION=$SLOW_DURATION run_one "$name" "$broker" "$transport" mqtt 0 slow --clients 100 --qos 0 --rate "${SLOW_PACE[$broker]}"
            stop_broker "$broker"
        done
    done
done

# Persistent sessions (row persistent-q1), TCP, a fresh broker per run: 100 QoS 1
# publishers to one subscriber with a persistent session (clean session 0): Ferry with
# storage on (every PUBACK after the message's records are fdatasync'ed) and off (memory
# only), Mosquitto (memory), and, when nats-server is installed, NATS's MQTT (sessions and
# QoS 1 messages in a JetStream file store). Ferry lets the one subscriber have 1000
# messages in flight (mqtt.max_inflight; the default 32 caps one subscriber near 90k
# msg/s on this machine, storage or not); Mosquitto's in-flight limit is not what bounds
# it here (it runs out of CPU first).
NATS=$(command -v nats-server || true)
start_nats() {
    rm -rf "$WORK/nats"
    cat >"$WORK/nats.conf" <<EOF
listen: "127.0.0.1:$N_CLIENT"
server_name: "bench"
jetstream { store_dir: "$WORK/nats" }
mqtt { listen: "127.0.0.1:$N_MQTT" }
EOF
    taskset -c "$BROKER_CPU" "$NATS" -c "$WORK/nats.conf" >>"$OUT/nats.log" 2>&1 &
    NATS_PID=$!
    PIDS+=("$NATS_PID")
    wait_port "$N_MQTT" || die "nats-server did not start: $(tail -5 "$OUT/nats.log")"
}
PERSISTENT=(fanin --clients 100 --qos 1 --persistent)
if [[ " $TRANSPORTS " == *" tcp "* && persistent-q1 =~ $ONLY ]]; then
    for ((rep = 1; rep <= REPS; rep++)); do
        export FERRY_MQTT__MAX_INFLIGHT=1000
        for storage in on off; do
            broker=ferry
            [[ $storage == off ]] && broker=ferry-nostore && export FERRY_STORAGE__ENABLED=false
            name="persistent-q1.tcp.$broker.$rep"
            log "$name (fan-in 100→1 QoS 1, persistent subscriber, storage $storage, fresh broker)"
            start_ferry
            unset FERRY_STORAGE__ENABLED
            sleep 0.5
            run_one "$name" "$broker" tcp mqtt 0 "${PERSISTENT[@]}"
            if [[ $storage == on ]]; then
                # The same flow paced at 10k msg/s: publish → delivery latency with
                # storage on (deliveries never wait for the disk; PUBACKs do).
                name="persistent-latency.tcp.ferry.$rep"
                log "$name (fan-in 100→1 QoS 1 at 10k msg/s, persistent subscriber, storage on)"
                run_one "$name" ferry tcp mqtt 0 "${PERSISTENT[@]}" --rate 10000
            fi
            stop "$FERRY_PID"
        done
        unset FERRY_MQTT__MAX_INFLIGHT
        name="persistent-q1.tcp.mosquitto.$rep"
        log "$name (fan-in 100→1 QoS 1, persistent subscriber, fresh broker)"
        start_mosquitto
        sleep 0.5
        run_one "$name" mosquitto tcp mqtt 0 "${PERSISTENT[@]}"
        stop "$MOSQ_PID"
        if [[ -n $NATS ]]; then
            name="persistent-q1.tcp.nats.$rep"
            log "$name (fan-in 100→1 QoS 1, persistent subscriber, $("$NATS" --version 2>&1 | head -1), fresh broker)"
            start_nats
            sleep 1
            run_one "$name" nats tcp mqtt 0 "${PERSISTENT[@]}"
            stop "$NATS_PID"
        else
            log "nats-server is not installed: the NATS column of persistent-q1 is left out"
        fi
    done
fi

# A cluster of two Ferry nodes on one nats-server (row cluster; TCP, MQTT): a publisher
# on node 1, 100 subscribers on node 2, QoS 0 and 1, 64-byte payloads; then three
# nodes, the subscribers spread over nodes 2 and 3; beside them one Ferry node alone
# with the same load. Nothing is pinned: both nodes, nats-server and
# the load generator share the machine's cores, as a cluster on one machine would.
# NATS bytes per message are read off nats-server's /varz (in_bytes / in_msgs) over the
# run; NATS messages per publication are node 2's received messages over node 1's
# published ones (one per publication per receiving node, never one per subscriber).
# When the machine has a second nats-server free (it always does: it is one binary),
# NATS's own MQTT runs in the same topology: two nats-servers in a NATS cluster, the
# publisher on one, the subscribers on the other.
if [[ " $TRANSPORTS " == *" tcp "* && cluster =~ $ONLY && -n $NATS ]]; then
    read -r C_NATS C_MON C_WS1 C_TCP1 C_ST1 C_WS2 C_TCP2 C_ST2 C_WS0 C_TCP0 C_ST0 C_WS3 C_TCP3 C_ST3 <<<"$(free_ports 14)"
    rm -rf "$WORK/cnats"
    "$NATS" -a 127.0.0.1 -p "$C_NATS" -m "$C_MON" -js -sd "$WORK/cnats" >>"$OUT/cluster-nats.log" 2>&1 &
    CNATS_PID=$!
    PIDS+=("$CNATS_PID")
    wait_port "$C_NATS" || die "nats-server did not start: $(tail -5 "$OUT/cluster-nats.log")"
    node_conf "$WORK/cdata1" "$C_WS1" "$C_TCP1" "$C_ST1" "nats://127.0.0.1:$C_NATS" >"$WORK/cluster1.toml"
    node_conf "$WORK/cdata2" "$C_WS2" "$C_TCP2" "$C_ST2" "nats://127.0.0.1:$C_NATS" >"$WORK/cluster2.toml"
    node_conf "$WORK/cdata3" "$C_WS3" "$C_TCP3" "$C_ST3" "nats://127.0.0.1:$C_NATS" >"$WORK/cluster3.toml"
    node_conf "$WORK/cdata0" "$C_WS0" "$C_TCP0" "$C_ST0" >"$WORK/cluster0.toml"
    metric_of() { # port name: a counter off a node's /metrics, or 0
        curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n {print $2; f = 1} END {if (!f) print 0}'
    }
    varz_of() { curl -s "http://127.0.0.1:$C_MON/varz" | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["in_msgs"], v["in_bytes"])'; }
    for ((rep = 1; rep <= REPS; rep++)); do
        for qos in 0 1; do
            rm -rf "$WORK"/cdata*
            "$FERRY" --config "$WORK/cluster1.toml" >>"$OUT/cluster-ferry1.log" 2>&1 &
            N1=$!
            "$FERRY" --config "$WORK/cluster2.toml" >>"$OUT/cluster-ferry2.log" 2>&1 &
            N2=$!
            PIDS+=("$N1" "$N2")
            wait_port "$C_TCP1" && wait_port "$C_TCP2" || die "ferry cluster nodes did not start"
            sleep 1
            name="cluster-q$qos.tcp.ferry-2nodes.$rep"
            log "$name (fan-out 1→100 QoS $qos, publisher on node 1, subscribers on node 2, one nats-server)"
            read -r m0 b0 <<<"$(varz_of)"
            s0=$(metric_of "$C_WS1" ferry_cluster_messages_sent_total)
            r0=$(metric_of "$C_WS2" ferry_cluster_messages_received_total)
            "$BENCH" fanout --clients 100 --qos "$qos" --protocol mqtt --url "tcp://127.0.0.1:$C_TCP1" \
                --sub-url "tcp://127.0.0.1:$C_TCP2" --broker-pid "$N2" --duration "$DURATION" --warmup "$WARMUP" \
                --json --quiet >"$OUT/$name.json" 2>"$OUT/$name.log" || log "FAILED $name: $(tail -2 "$OUT/$name.log" | tr '\n' ' ')"
            read -r m1 b1 <<<"$(varz_of)"
            s1=$(metric_of "$C_WS1" ferry_cluster_messages_sent_total)
            r1=$(metric_of "$C_WS2" ferry_cluster_messages_received_total)
            echo "{\"name\": \"$name\", \"nats_msgs\": $((m1 - m0)), \"nats_bytes\": $((b1 - b0)), \"sent\": $((s1 - s0)), \"received\": $((r1 - r0))}" >"$OUT/$name.natsbytes"
            stop "$N1"
            stop "$N2"
            forget "$N1"
            forget "$N2"
            # Three nodes: the publisher on node 1, the 100 subscribers spread over nodes 2
            # and 3 (50 each): NATS delivers one copy per publication to each of them.
            rm -rf "$WORK"/cdata*
            for n in 1 2 3; do
                "$FERRY" --config "$WORK/cluster$n.toml" >>"$OUT/cluster-ferry$n.log" 2>&1 &
                eval "N$n=\$!"
            done
            PIDS+=("$N1" "$N2" "$N3")
            wait_port "$C_TCP1" && wait_port "$C_TCP2" && wait_port "$C_TCP3" || die "ferry cluster nodes did not start"
            sleep 1
            name="cluster-q$qos.tcp.ferry-3nodes.$rep"
            log "$name (fan-out 1→100 QoS $qos, publisher on node 1, subscribers spread over nodes 2 and 3)"
            s0=$(metric_of "$C_WS1" ferry_cluster_messages_sent_total)
            r0=$(($(metric_of "$C_WS2" ferry_cluster_messages_received_total) + $(metric_of "$C_WS3" ferry_cluster_messages_received_total)))
            "$BENCH" fanout --clients 100 --qos "$qos" --protocol mqtt --url "tcp://127.0.0.1:$C_TCP1" \
                --sub-url "tcp://127.0.0.1:$C_TCP2,tcp://127.0.0.1:$C_TCP3" --broker-pid "$N2" --duration "$DURATION" --warmup "$WARMUP" \
                --json --quiet >"$OUT/$name.json" 2>"$OUT/$name.log" || log "FAILED $name: $(tail -2 "$OUT/$name.log" | tr '\n' ' ')"
            s1=$(metric_of "$C_WS1" ferry_cluster_messages_sent_total)
            r1=$(($(metric_of "$C_WS2" ferry_cluster_messages_received_total) + $(metric_of "$C_WS3" ferry_cluster_messages_received_total)))
            echo "{\"name\": \"$name\", \"sent\": $((s1 - s0)), \"received\": $((r1 - r0))}" >"$OUT/$name.natsbytes"
            for n in "$N1" "$N2" "$N3"; do stop "$n"; forget "$n"; done
            name="cluster-q$qos.tcp.ferry-1node.$rep"
            log "$name (fan-out 1→100 QoS $qos, one Ferry node, no cluster, same cores)"
            "$FERRY" --config "$WORK/cluster0.toml" >>"$OUT/cluster-ferry0.log" 2>&1 &
            N0=$!
            PIDS+=("$N0")
            wait_port "$C_TCP0" || die "ferry did not start"
            sleep 0.5
            "$BENCH" fanout --clients 100 --qos "$qos" --protocol mqtt --url "tcp://127.0.0.1:$C_TCP0" \
                --broker-pid "$N0" --duration "$DURATION" --warmup "$WARMUP" \
                --json --quiet >"$OUT/$name.json" 2>"$OUT/$name.log" || log "FAILED $name: $(tail -2 "$OUT/$name.log" | tr '\n' ' ')"
            stop "$N0"
            forget "$N0"
        done
    done
    stop "$CNATS_PID"
    forget "$CNATS_PID"
    # NATS's own MQTT, two servers in one NATS cluster (JetStream holds its MQTT state).
    read -r A_C A_R A_M B_C B_R B_M <<<"$(free_ports 6)"
    for s in a b; do
        if [[ $s == a ]]; then c=$A_C r=$A_R m=$A_M peer=$B_R; else c=$B_C r=$B_R m=$B_M peer=$A_R; fi
        rm -rf "$WORK/nats-$s"
        cat >"$WORK/nats-$s.conf" <<EOF
listen: "127.0.0.1:$c"
server_name: "bench-$s"
jetstream { store_dir: "$WORK/nats-$s" }
mqtt { listen: "127.0.0.1:$m" }
cluster { name: "bench", listen: "127.0.0.1:$r", routes: ["nats://127.0.0.1:$peer"] }
EOF
        "$NATS" -c "$WORK/nats-$s.conf" >>"$OUT/cluster-nats-$s.log" 2>&1 &
        PIDS+=($!)
        eval "NATS_$s=\$!"
    done
    if wait_port "$A_M" && wait_port "$B_M"; then
        sleep 3 # the JetStream meta group elects its leader
        for ((rep = 1; rep <= REPS; rep++)); do
            for qos in 0 1; do
                name="cluster-q$qos.tcp.nats-2servers.$rep"
                log "$name (fan-out 1→100 QoS $qos, NATS's MQTT, publisher on server 1, subscribers on server 2)"
                "$BENCH" fanout --clients 100 --qos "$qos" --protocol mqtt --url "tcp://127.0.0.1:$A_M" \
                    --sub-url "tcp://127.0.0.1:$B_M" --broker-pid "$NATS_b" --duration "$DURATION" --warmup "$WARMUP" \
                    --json --quiet >"$OUT/$name.json" 2>"$OUT/$name.log" || log "FAILED $name: $(tail -2 "$OUT/$name.log" | tr '\n' ' ')"
            done
        done
    else
        log "the NATS cluster's MQTT did not start: $(tail -3 "$OUT/cluster-nats-a.log" | tr '\n' ' ')"
    fi
    for s in a b; do eval "p=\$NATS_$s"; stop "$p"; forget "$p"; done
    # Latency across nodes: QoS 1 at 10k msg/s, publisher on node 1, one subscriber on node 2.
    rm -rf "$WORK"/cdata* "$WORK/cnats"
    "$NATS" -a 127.0.0.1 -p "$C_NATS" -m "$C_MON" -js -sd "$WORK/cnats" >>"$OUT/cluster-nats.log" 2>&1 &
    CNATS_PID=$!
    PIDS+=("$CNATS_PID")
    wait_port "$C_NATS" || die "nats-server did not restart"
    "$FERRY" --config "$WORK/cluster1.toml" >>"$OUT/cluster-ferry1.log" 2>&1 &
    N1=$!
    "$FERRY" --config "$WORK/cluster2.toml" >>"$OUT/cluster-ferry2.log" 2>&1 &
    N2=$!
    PIDS+=("$N1" "$N2")
    wait_port "$C_TCP1" && wait_port "$C_TCP2" || die "ferry cluster nodes did not start"
    sleep 1
    for ((rep = 1; rep <= REPS; rep++)); do
        name="cluster-latency.tcp.ferry-2nodes.$rep"
        log "$name (QoS 1 at 10k msg/s, 10 publishers on node 1, 1 subscriber on node 2)"
        "$BENCH" fanin --clients 10 --qos 1 --rate 10000 --protocol mqtt --url "tcp://127.0.0.1:$C_TCP1" \
            --sub-url "tcp://127.0.0.1:$C_TCP2" --broker-pid "$N2" --duration "$DURATION" --warmup "$WARMUP" \
            --json --quiet >"$OUT/$name.json" 2>"$OUT/$name.log" || log "FAILED $name: $(tail -2 "$OUT/$name.log" | tr '\n' ' ')"
    done
    for p in "$N1" "$N2" "$CNATS_PID"; do stop "$p"; forget "$p"; done
fi

# Disk stays bounded (row disk-bounded; Ferry only, TCP): storage on with the defaults of
# conf/ferry.toml (64 MiB segments; a snapshot once the log moved into a new segment and
# outgrew the last snapshot), a fresh data directory, BENCH_DISK_SECONDS (default 600) of
# steady QoS 1 load at BENCH_DISK_RATE msg/s (default 5000): 50 publishers, each setting
# the retained message of its own topic (a fixed set of 50, overwritten) that a
# subscriber with a persistent session consumes. The data directory's bytes and segment
# files are sampled every 5 s; at the end `ferry storage inspect` gives the live state.
# Bounded: the final bytes are at most the live state plus two segments.
if [[ " $TRANSPORTS " == *" tcp "* && disk-bounded =~ $ONLY ]]; then
    DISK_SECONDS=${BENCH_DISK_SECONDS:-600}
    DISK_RATE=${BENCH_DISK_RATE:-5000}
    name="disk-bounded"
    log "$name ($DISK_SECONDS s of QoS 1 at $DISK_RATE msg/s, 50 retained topics, 50 persistent sessions, storage defaults, fresh broker)"
    start_ferry
    sleep 0.5
    taskset -c "$LOAD_CPU" "$BENCH" pairs --clients 50 --qos 1 --retain --persistent --rate "$DISK_RATE" \
        --protocol mqtt --url "$(url_of ferry tcp)" --broker-pid "$FERRY_PID" \
        --duration "${DISK_SECONDS}s" --warmup 1s --max-duration "$((DISK_SECONDS + 120))s" --json --quiet \
        >"$OUT/$name.load.json" 2>"$OUT/$name.log" &
    load_pid=$!
    PIDS+=("$load_pid")
    : >"$OUT/$name.samples"
    while kill -0 "$load_pid" 2>/dev/null; do
        # seconds, bytes of the store's files (segments, snapshots, a preallocated spare), segment files
        echo "$SECONDS $(find "$WORK/data" -maxdepth 1 -type f \( -name '*.wal' -o -name '*.snap' -o -name '*.tmp' \) -printf '%s\n' |
            awk '{s += $1} END {print s + 0}')" \
            "$(find "$WORK/data" -maxdepth 1 -name '*.wal' | wc -l)" >>"$OUT/$name.samples"
        sleep 5
    done
    wait "$load_pid" || log "FAILED $name load: $(tail -2 "$OUT/$name.log" | tr '\n' ' ')"
    forget "$load_pid"
    "$FERRY" storage inspect "$WORK/data" >"$OUT/$name.inspect" 2>&1 || log "$name: storage inspect failed"
    stop "$FERRY_PID"
    python3 - "$OUT" "$name" "$ROOT/conf/ferry.toml" <<'PY'
import json, re, sys
from pathlib import Path
out, name, conf = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]).read_text()
segment = int(re.search(r"^segment_bytes\s*=\s*(\d+)", conf, re.M).group(1))
samples = [list(map(int, l.split())) for l in (out / f"{name}.samples").read_text().splitlines() if len(l.split()) == 3]
inspect = (out / f"{name}.inspect").read_text()
def field(pattern):
    m = re.search(pattern, inspect, re.M)
    return int(m.group(1)) if m else None
load = {}
try:
    load = json.loads((out / f"{name}.load.json").read_text().strip().splitlines()[-1])
except (OSError, ValueError, IndexError):
    pass
final, live = field(r"^\s*bytes on disk\s+(\d+)"), field(r"^\s*live state\s+(\d+)")
result = {
    "row": name,
    "seconds": (samples[-1][0] - samples[0][0]) if samples else 0,
    "rate": load.get("rate"),
    "delivered_per_s": (load.get("window") or {}).get("delivered_per_s"),
    "lost": (load.get("seq") or {}).get("lost"),
    "segment_bytes": segment,
    "max_bytes": max((s[1] for s in samples), default=None),
    "max_segments": max((s[2] for s in samples), default=None),
    "final_bytes": final,
    "live_bytes": live,
    "segments": field(r"^\s*log\s+\d+ records in (\d+) segments"),
    "snapshot_bytes": field(r"^\s*snapshot\s+at LSN \d+, \d+ records, (\d+) bytes"),
    "next_lsn": field(r"^\s*next LSN\s+(\d+)"),
}
result["bounded"] = final is not None and live is not None and final <= live + 2 * segment
(out / f"{name}.result.json").write_text(json.dumps(result) + "\n")
PY
    python3 "$ROOT/bench/report.py" --disk "$OUT" | tee "$OUT/$name.txt"
fi

# Idle connections: a fresh broker per run, as the issue asks.
for transport in $TRANSPORTS; do
    [[ conns =~ $ONLY ]] || break
    for ((rep = 1; rep <= REPS; rep++)); do
        for broker in $(order_for "$rep"); do
            name="conns.$transport.$broker.$rep"
            log "$name ($CONNS idle connections, fresh broker)"
            start_broker "$broker"
            sleep 0.5
            RUN_DURATION=2 run_one "$name" "$broker" "$transport" mqtt 0 conns --clients "$CONNS" --connect-concurrency 200
            stop_broker "$broker"
        done
    done
done

# permessage-deflate (rows deflate, conns-deflate), WebSocket only, Ferry only: STOMP
# fan-out 1→100 with a 1 KiB JSON body from a Ferry with [websocket.compression] off and
# one with it on (the subscribers offer permessage-deflate and inflate), and the idle
# connections with compression negotiated. Bytes on the wire per delivered message come
# from the loopback interface's transmit counter (TCP/IP headers and acknowledgements
# included) over the whole run, divided by the messages the subscribers received.
lo_tx_bytes() { awk -F'[: ]+' '/^ *lo:/ {print $11}' /proc/net/dev; }
if [[ $FERRY_STOMP == 1 && " $TRANSPORTS " == *" ws "* && deflate =~ $ONLY ]]; then
    for ((rep = 1; rep <= REPS; rep++)); do
        for mode in off on; do
            name="deflate-$mode.ws.ferry.$rep"
            extra=()
            if [[ $mode == on ]]; then
                export FERRY_WEBSOCKET__COMPRESSION__ENABLED=true
                extra=(--deflate)
            fi
            log "$name (STOMP fan-out 1→100, 1 KiB JSON, compression $mode, fresh broker)"
            start_ferry
            unset FERRY_WEBSOCKET__COMPRESSION__ENABLED
            sleep 0.5
            before=$(lo_tx_bytes)
            run_one "$name" ferry ws stomp 0 fanout --clients 100 --payload 1024 --json-body "${extra[@]}"
            echo "$(($(lo_tx_bytes) - before))" >"$OUT/$name.wire"
            stop "$FERRY_PID"
        done
    done
fi
if [[ " $TRANSPORTS " == *" ws "* && conns =~ $ONLY ]]; then
    for ((rep = 1; rep <= REPS; rep++)); do
        name="conns-deflate.ws.ferry.$rep"
        log "$name ($CONNS idle connections, compression negotiated, fresh broker)"
        export FERRY_WEBSOCKET__COMPRESSION__ENABLED=true
        start_ferry
        unset FERRY_WEBSOCKET__COMPRESSION__ENABLED
        sleep 0.5
        RUN_DURATION=2 run_one "$name" ferry ws mqtt 0 conns --clients "$CONNS" --connect-concurrency 200 --deflate
        stop "$FERRY_PID"
    done
fi

# Restart (rows restart, restart-storm; Ferry only): a data directory filled through
# Ferry's journal with BENCH_RESTART_RETAINED retained messages and BENCH_RESTART_SESSIONS
# persistent sessions holding 10 queued QoS 1 messages each (then a snapshot, as a broker
# that ran a while leaves it); the time from starting the broker until one stored session
# is served its messages, the replay time it logged and the bytes on disk; then SIGKILL,
# restart, and BENCH_RESTART_STORM sessions reconnecting at once from 127.0.0.1, timed
# until every one is back with its messages (limits.connection_rate paces them).
if [[ restart =~ $ONLY ]]; then
    log "restart (${BENCH_RESTART_RETAINED:-1000000} retained, ${BENCH_RESTART_SESSIONS:-100000} sessions × 10 queued; storm of ${BENCH_RESTART_STORM:-10000})"
    if "$WORK/ferry-restart-bench" --ferry "$FERRY" --work "$WORK/restart" \
        --retained "${BENCH_RESTART_RETAINED:-1000000}" --sessions "${BENCH_RESTART_SESSIONS:-100000}" --queued 10 \
        --reconnect "${BENCH_RESTART_STORM:-10000}" >"$OUT/restart.txt" 2>"$OUT/restart.log"; then
        sed -i '1i Restart (Ferry; broker and clients on both CPUs, not pinned):' "$OUT/restart.txt"
        cat "$OUT/restart.txt"
    else
        log "FAILED restart: $(tail -2 "$OUT/restart.log" | tr '\n' ' ')"
    fi
    rm -rf "$WORK/restart"
fi

# What operating Ferry costs it: the dashboard's CPU, the clients API with
# BENCH_CONNS connections (bench/admin.sh; Ferry only).
if [[ admin =~ $ONLY ]]; then
    log "admin (dashboard CPU, clients API with $CONNS connections)"
    # shellcheck source=bench/admin.sh
    source "$ROOT/bench/admin.sh"
fi

{
    echo "ferry-bench results $STAMP on $(hostname): $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)," \
        "brokers on CPU $BROKER_CPU, load on CPU $LOAD_CPU; mosquitto $MOSQUITTO_VERSION; $DURATION s per run, median of $REPS"
    python3 "$ROOT/bench/report.py" "$OUT"
    if [[ -f "$OUT/restart.txt" ]]; then
        echo
        cat "$OUT/restart.txt"
    fi
    if [[ -f "$OUT/admin.txt" ]]; then
        echo
        cat "$OUT/admin.txt"
    fi
} | tee "$OUT/table.md"
