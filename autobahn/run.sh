#!/usr/bin/env bash
# run.sh — the Autobahn TestSuite gate (`make autobahn`).
#
#   1. installs wstest if needed (install.sh; fast when already installed),
#   2. builds the broker (`cargo build --release -p ferry`) and starts
#      `target/release/ferry --config autobahn/ferry.toml` in the background,
#      which serves a WebSocket echo at ws://127.0.0.1:9001/echo,
#   3. waits (bounded) until 127.0.0.1:9001 accepts TCP connections,
#   4. runs `wstest -m fuzzingclient -s fuzzingclient.json` from autobahn/
#      (reports go to autobahn/reports/servers/, its output to reports/wstest.log),
#   5. stops the server — and wstest, if still running — also on any error or
#      signal (trap EXIT), so no process is left behind,
#   6. runs check.py, which prints the summary and decides pass/fail.
# Exits non-zero on any failure.
#
# Env:
#   AUTOBAHN_SERVER_CMD      start this echo server instead of building and
#                            starting ferry (run by bash from the repo root), e.g.
#                            '$HOME/.cache/ferry/autobahn/bin/wstest-run -m echoserver -w ws://127.0.0.1:9001'
#   AUTOBAHN_CASES           comma-separated case patterns instead of "*",
#                            e.g. '1.*,2.*' for a quick partial run
#   AUTOBAHN_STARTUP_TIMEOUT seconds to wait for the server port (default 30)
#   AUTOBAHN_TIMEOUT         seconds allowed for the wstest run (default 1800)
#   AUTOBAHN_PREFIX          where install.sh puts wstest (default $HOME/.cache/ferry/autobahn)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PREFIX="${AUTOBAHN_PREFIX:-$HOME/.cache/ferry/autobahn}"
case "$PREFIX" in /*) ;; *) PREFIX="$PWD/$PREFIX" ;; esac
export AUTOBAHN_PREFIX="$PREFIX"
WSTEST="$PREFIX/bin/wstest-run"
HOST=127.0.0.1
PORT=9001
STARTUP_TIMEOUT="${AUTOBAHN_STARTUP_TIMEOUT:-30}"
RUN_TIMEOUT="${AUTOBAHN_TIMEOUT:-1800}"
REPORTS="$HERE/reports"

log() { printf '[autobahn] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$PORT" 2>/dev/null; }

# --- process cleanup ---------------------------------------------------------------
SERVER_PID=""   # leader of its own process group (setsid)
WSTEST_PID=""

# stop_pid PID NAME [group]: SIGTERM (to the whole process group with "group"),
# up to 5 s grace, then SIGKILL; reaps it.
stop_pid() {
  local pid="$1" name="$2" target="$1"
  [ "${3:-}" = group ] && target="-$1"
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $name (pid $pid)"
    kill -TERM -- "$target" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name did not stop on SIGTERM: SIGKILL"
      kill -KILL -- "$target" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
  # leftovers of a group whose leader already exited
  [ "${3:-}" = group ] && { kill -KILL -- "$target" 2>/dev/null || true; }
  return 0
}
stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  stop_pid "$SERVER_PID" server group
  SERVER_PID=""
}
cleanup() {
  if [ -n "$WSTEST_PID" ]; then
    stop_pid "$WSTEST_PID" wstest
    WSTEST_PID=""
  fi
  stop_server
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# --- 1. wstest -----------------------------------------------------------------
"$HERE/install.sh"
[ -x "$WSTEST" ] || die "wstest wrapper missing: $WSTEST"

# --- 2. the server -------------------------------------------------------------
if port_open; then
  die "$HOST:$PORT is already in use: stop whatever listens there first"
fi
mkdir -p "$REPORTS"
if [ -n "${AUTOBAHN_SERVER_CMD:-}" ]; then
  SERVER_CMD="$AUTOBAHN_SERVER_CMD"
else
  log "cargo build --release -p ferry"
  (cd "$ROOT" && cargo build --release -p ferry)
  [ -f "$HERE/ferry.toml" ] || die "missing $HERE/ferry.toml"
  SERVER_CMD="exec target/release/ferry --config autobahn/ferry.toml"
fi
log "starting server: $SERVER_CMD (log: reports/server.log)"
# setsid: own process group, so stop_server can signal everything it started.
(cd "$ROOT" && exec setsid bash -c "$SERVER_CMD") </dev/null >"$REPORTS/server.log" 2>&1 &
SERVER_PID=$!

# --- 3. wait for the port --------------------------------------------------------
deadline=$(($(date +%s) + STARTUP_TIMEOUT))
until port_open; do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    tail -n 30 "$REPORTS/server.log" >&2 || true
    die "server exited before listening on $HOST:$PORT"
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    tail -n 30 "$REPORTS/server.log" >&2 || true
    die "server not listening on $HOST:$PORT after ${STARTUP_TIMEOUT}s"
  fi
  sleep 0.2
done
log "server is listening on $HOST:$PORT"

# --- 4. the fuzzing client ---------------------------------------------------------
rm -rf "$REPORTS/servers"
SPEC=fuzzingclient.json
if [ -n "${AUTOBAHN_CASES:-}" ]; then
  SPEC=reports/fuzzingclient.partial.json
  python3 - "$HERE/fuzzingclient.json" "$HERE/$SPEC" "$AUTOBAHN_CASES" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
spec["cases"] = [c.strip() for c in sys.argv[3].split(",") if c.strip()]
json.dump(spec, open(sys.argv[2], "w"), indent=2)
PY
  log "partial run: cases $AUTOBAHN_CASES"
fi
log "wstest -m fuzzingclient -s $SPEC (log: reports/wstest.log, timeout ${RUN_TIMEOUT}s)"
start=$(date +%s)
# In the background, polled, so that a signal to this script is handled at once
# (bash defers traps while a foreground command runs) and progress is shown.
(cd "$HERE" && exec timeout --kill-after=10 "$RUN_TIMEOUT" "$WSTEST" -m fuzzingclient -s "$SPEC") \
  </dev/null >"$REPORTS/wstest.log" 2>&1 &
WSTEST_PID=$!
next_progress=$((start + 30))
while kill -0 "$WSTEST_PID" 2>/dev/null; do
  sleep 1
  if [ "$(date +%s)" -ge "$next_progress" ]; then
    next_progress=$((next_progress + 30))
    last=$(grep -o 'Running test case ID [0-9.]*' "$REPORTS/wstest.log" | tail -n 1 || true)
    log "... $(($(date +%s) - start)) s: ${last:-no case started yet}"
  fi
done
wstest_rc=0
wait "$WSTEST_PID" || wstest_rc=$?
WSTEST_PID=""
log "wstest finished in $(($(date +%s) - start)) s (exit $wstest_rc)"

server_alive=1
kill -0 "$SERVER_PID" 2>/dev/null || server_alive=0

# --- 5. stop the server -------------------------------------------------------------
stop_server

if [ "$wstest_rc" -ne 0 ]; then
  tail -n 30 "$REPORTS/wstest.log" >&2 || true
  [ "$wstest_rc" -eq 124 ] && die "wstest timed out after ${RUN_TIMEOUT}s"
  die "wstest failed (exit $wstest_rc)"
fi
[ -f "$REPORTS/servers/index.json" ] || die "wstest wrote no reports/servers/index.json"

# --- 6. judge ----------------------------------------------------------------------
check_rc=0
python3 "$HERE/check.py" || check_rc=$?
if [ "$server_alive" -eq 0 ]; then
  tail -n 30 "$REPORTS/server.log" >&2 || true
  die "the server died during the run (see reports/server.log)"
fi
[ "$check_rc" -eq 0 ] || die "check.py failed (exit $check_rc); HTML report: reports/servers/index.html"
log "Autobahn gate passed"
