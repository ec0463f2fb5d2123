#!/usr/bin/env bash
# The check-in benchmark, end to end: build, create a node, serve it, enroll a fleet, drive
# check-ins next to a reference workload measured in the same run, stop the node cleanly.
#
#   bench/checkin.sh                      # the issue's setting: 100,000 devices, 30 s
#   DEVICES=2000 DURATION=5s bench/checkin.sh
#   BENCH_DIR=/var/tmp/tandem-bench bench/checkin.sh   # keep node and fleet; later runs skip enrollment
#
# Environment (defaults in brackets):
#   DEVICES [100000]  DURATION [30s]  WARMUP [2s]  CONNECTIONS [32]  REQUESTS_PER_CONNECTION [10]
#   ENROLL_CONCURRENCY [32]  PROBE_INTERVAL [10ms]  RATE [unset: closed loop]
#   BENCH_DIR [unset: a temporary directory, removed afterwards]
#   PORT_BASE [24440]: service PORT_BASE+3, System Manager PORT_BASE+4, SSH PORT_BASE+2
#   SKIP_BUILD [unset]: set to 1 to use the binaries already in target/release
#   JSON_OUT [unset]: also write the results as JSON to this file
#   LOADGEN_ARGS [unset]: extra arguments for tandem-loadgen
#   TANDEM_LOG [warn]: the node's log filter
#
# Exit status: tandem-loadgen's (1: more than 0.1 % errors), or 1 when the node fails to start
# or to stop cleanly.
set -euo pipefail

DEVICES=${DEVICES:-100000}
DURATION=${DURATION:-30s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-32}
REQUESTS_PER_CONNECTION=${REQUESTS_PER_CONNECTION:-10}
ENROLL_CONCURRENCY=${ENROLL_CONCURRENCY:-32}
PROBE_INTERVAL=${PROBE_INTERVAL:-10ms}
PORT_BASE=${PORT_BASE:-24440}
# The node logs warnings and errors only, into $WORK/serve.log.
export TANDEM_LOG=${TANDEM_LOG:-warn}

# How long the node may take to answer its first probe, and to stop after SIGTERM (it drains
# connections for at most 10 s, then commits what is queued).
START_TIMEOUT_S=30
STOP_TIMEOUT_S=30

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# BIN_DIR: binaries to use instead of this tree's release build (e.g. an older release, to compare).
BIN="${BIN_DIR:-$ROOT/target/release}"
SERVICE_ADDR="127.0.0.1:$((PORT_BASE + 3))"

if [[ "${SKIP_BUILD:-}" != 1 ]]; then
    echo "== building (release)" >&2
    (cd "$ROOT" && cargo build --release -p tandem -p tandem-bench)
fi

if [[ -n "${BENCH_DIR:-}" ]]; then
    WORK=$BENCH_DIR
    mkdir -p "$WORK"
    KEEP=1
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/tandem-bench.XXXXXX")
    KEEP=0
fi
NODE="$WORK/node"
PASSWORD_FILE="$WORK/admin-password"
FLEET="$WORK/fleet.jsonl"
SERVER_PID=""

cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ "$KEEP" == 0 ]]; then
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

if [[ ! -f "$NODE/tandem.toml" ]]; then
    echo "== creating the node in $NODE" >&2
    rm -f "$FLEET"
    head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$PASSWORD_FILE"
    "$BIN/tandem" --data-dir "$NODE" init --name bench \
        --admin-password-file "$PASSWORD_FILE" \
        --service-addr "$SERVICE_ADDR" \
        --sysmgr-addr "127.0.0.1:$((PORT_BASE + 4))" \
        --ssh-addr "127.0.0.1:$((PORT_BASE + 2))" >/dev/null
else
    echo "== reusing the node in $NODE" >&2
    SERVICE_ADDR=$(sed -n 's/^service *= *"\(.*\)"/\1/p' "$NODE/tandem.toml" | head -n 1)
fi

echo "== starting the node on $SERVICE_ADDR" >&2
"$BIN/tandem" --data-dir "$NODE" serve 2>>"$WORK/serve.log" &
SERVER_PID=$!
deadline=$((SECONDS + START_TIMEOUT_S))
until curl -skf --max-time 2 "https://$SERVICE_ADDR/status/status.html" >/dev/null 2>&1; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null || ((SECONDS > deadline)); then
        echo "the node did not answer its probe within ${START_TIMEOUT_S} s; log:" >&2
        tail -n 20 "$WORK/serve.log" >&2
        exit 1
    fi
    sleep 0.2
done

echo "== load generator" >&2
loadgen=("$BIN/tandem-loadgen"
    --target "$SERVICE_ADDR"
    --data-dir "$NODE"
    --admin-password-file "$PASSWORD_FILE"
    --fleet-file "$FLEET"
    --devices "$DEVICES"
    --enroll-concurrency "$ENROLL_CONCURRENCY"
    --connections "$CONNECTIONS"
    --requests-per-connection "$REQUESTS_PER_CONNECTION"
    --duration "$DURATION"
    --warmup "$WARMUP"
    --probe-interval "$PROBE_INTERVAL"
    --server-pid "$SERVER_PID")
if [[ -n "${RATE:-}" ]]; then
    loadgen+=(--rate "$RATE")
fi
# shellcheck disable=SC2206 # deliberately split into words
loadgen+=(${LOADGEN_ARGS:-})

status=0
if [[ -n "${JSON_OUT:-}" ]]; then
    "${loadgen[@]}" --json >"$JSON_OUT" || status=$?
    cat "$JSON_OUT"
else
    "${loadgen[@]}" || status=$?
fi

echo "== stopping the node (SIGTERM)" >&2
kill -TERM "$SERVER_PID"
deadline=$((SECONDS + STOP_TIMEOUT_S))
while kill -0 "$SERVER_PID" 2>/dev/null && ((SECONDS <= deadline)); do
    sleep 0.2
done
if kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "the node did not stop within ${STOP_TIMEOUT_S} s of SIGTERM" >&2
    exit 1
fi
server_status=0
wait "$SERVER_PID" || server_status=$?
SERVER_PID=""
if [[ "$server_status" != 0 ]]; then
    echo "the node exited with status $server_status; log:" >&2
    tail -n 20 "$WORK/serve.log" >&2
    exit 1
fi
echo "== node stopped cleanly" >&2
exit "$status"
