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
#   BIN_DIR [unset: target/release]: binaries to use instead (e.g. an older release, to compare)
#   JSON_OUT [unset]: also write the results as JSON to this file
#   LOADGEN_ARGS [unset]: extra arguments for tandem-loadgen
#   TANDEM_LOG [warn]: the node's log filter
#
# Needs curl (installed when missing, see bench/deps.sh) and Rust (cargo) to build.
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

# Build, work directory, node start and stop (PORT_BASE, BENCH_DIR, SKIP_BUILD, BIN_DIR,
# TANDEM_LOG): shared with bench/security.sh.
# shellcheck source=bench/node.sh
source "$(dirname "${BASH_SOURCE[0]}")/node.sh"

node_build
node_prepare
node_start

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

node_stop
exit "$status"
