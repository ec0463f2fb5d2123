#!/usr/bin/env bash
# Continuous and synchronous replication (issue 6), real processes on loopback.
#
# Default (MODE=lag): continuous replication lag. A Primary and a Secondary
# with `--replication continuous`; tandem-loadgen drives device check-ins (each one a write to
# the replicated database) at a fixed rate against the Primary; the Secondary measures, per
# applied batch, the time from the Primary's commit of the batch's oldest entry to its own
# commit. Reports the Secondary's lag p50/p99/max over its last 4,096 batches, the entries it
# applied per second, and whether the two nodes hold the same data afterwards. Goal: lag p99
# < 50 ms at 1,000 writes/s.
#
#   bench/continuous.sh
#   MODE=throughput bench/continuous.sh   # closed-loop check-ins, continuous vs synchronous
#
# MODE=throughput: for each of continuous and synchronous, a fresh pair; check-ins as fast as
# the Primary answers (CONNECTIONS at once, DURATION); reports check-ins/s and p99 for each and
# the ratio synchronous / continuous (goal: at least 0.5).
#
# Environment (defaults in brackets): RATE [1000] check-ins/s, DURATION [20s], DEVICES [2000],
# CONNECTIONS [16], PORT_BASE [28400], SKIP_BUILD [unset: build]. Needs curl and python3
# (installed when missing, see bench/deps.sh).
set -euo pipefail

RATE=${RATE:-1000}
DURATION=${DURATION:-20s}
DEVICES=${DEVICES:-2000}
CONNECTIONS=${CONNECTIONS:-16}
PORT_BASE=${PORT_BASE:-28400}
export TANDEM_LOG=${TANDEM_LOG:-warn}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/deps.sh
source "$ROOT/bench/deps.sh"
bench_needs curl python3
BIN="$ROOT/target/release"
if [[ -z "${SKIP_BUILD:-}" ]]; then
    bench_needs cargo
    (cd "$ROOT" && cargo build --release --locked -p tandem -p tandem-bench)
fi
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
echo "bench-password-1" >"$WORK/password"

wait_probe() { # port path text
    for _ in $(seq 1 600); do
        if curl -sk "https://127.0.0.1:$1$2" | grep -q "$3"; then return 0; fi
        sleep 0.05
    done
    echo "timed out waiting for $3 on port $1" >&2
    return 1
}

# pair MODE INDEX: a fresh Primary and Secondary replicating as MODE, both running.
pair() {
    local mode=$1 index=$2
    a=(--data-dir "$WORK/a-$index")
    b=(--data-dir "$WORK/b-$index")
    A_DIR="$WORK/a-$index"
    base=$((PORT_BASE + index * 10))
    "$BIN/tandem" "${a[@]}" init --name node-a --service-addr "127.0.0.1:$base" \
        --sysmgr-addr "127.0.0.1:$((base + 1))" --ssh-addr "127.0.0.1:$((base + 2))" \
        --admin-password-file "$WORK/password" >/dev/null
    "$BIN/tandem" "${b[@]}" init --name node-b --service-addr "127.0.0.1:$((base + 3))" \
        --sysmgr-addr "127.0.0.1:$((base + 4))" --ssh-addr "127.0.0.1:$((base + 5))" \
        --admin-password-file "$WORK/password" >/dev/null
    "$BIN/tandem" "${b[@]}" ha trusted-hosts add "127.0.0.1:$((base + 2))" --key "$("$BIN/tandem" "${a[@]}" ha local-key)" >/dev/null
    "$BIN/tandem" "${a[@]}" ha trusted-hosts add "127.0.0.1:$((base + 5))" --key "$("$BIN/tandem" "${b[@]}" ha local-key)" >/dev/null
    "$BIN/tandem" "${a[@]}" ha configure --enable --mode primary --replication "$mode" >/dev/null 2>&1
    "$BIN/tandem" "${b[@]}" ha configure --enable --mode secondary --primary "127.0.0.1:$((base + 2))" \
        --replication "$mode" >/dev/null 2>&1
    "$BIN/tandem" "${a[@]}" serve 2>>"$WORK/a-$index.log" &
    PRIMARY_PID=$!
    PIDS+=("$PRIMARY_PID")
    wait_probe "$base" /status/status.html "MOBILEIRON-STATUS: OK"
    "$BIN/tandem" "${b[@]}" serve 2>>"$WORK/b-$index.log" &
    PIDS+=("$!")
    wait_probe $((base + 3)) /hastatus.html "Mode: Standby"
    # The follower is connected once the Primary's status shows what the Standby holds.
    sleep 1
}

# enroll: the fleet on the current pair's Primary (the Secondary follows).
enroll() {
    "$BIN/tandem-loadgen" --target "127.0.0.1:$base" --data-dir "$A_DIR" \
        --admin-password-file "$WORK/password" --fleet-file "$A_DIR/fleet.jsonl" \
        --devices "$DEVICES" --connections "$CONNECTIONS" --duration 1s --warmup 0s \
        --no-reference --json >/dev/null
}

if [[ "${MODE:-lag}" == throughput ]]; then
    index=0
    for mode in continuous synchronous continuous synchronous; do
        index=$((index + 1))
        pair "$mode" "$index"
        echo "== $mode: enrolling, then closed-loop check-ins for $DURATION" >&2
        enroll
        "$BIN/tandem-loadgen" --target "127.0.0.1:$base" --data-dir "$A_DIR" \
            --admin-password-file "$WORK/password" --fleet-file "$A_DIR/fleet.jsonl" \
            --devices "$DEVICES" --connections "$CONNECTIONS" --duration "$DURATION" --warmup 2s \
            --no-reference --json >"$WORK/throughput-$index-$mode.json"
        kill -9 "${PIDS[@]}" 2>/dev/null || true
        wait 2>/dev/null || true
        PIDS=()
    done
    python3 - "$WORK" <<'PY'
import glob, json, os, sys
rows = []
for path in sorted(glob.glob(f"{sys.argv[1]}/throughput-*.json")):
    index, mode = os.path.basename(path)[len("throughput-"):-len(".json")].split("-")
    checkin = json.load(open(path))["checkin"]
    rows.append((int(index), mode, checkin["requests_per_second"], checkin["latency"]["p99_ms"], checkin["errors"]))
print("| run | replication | check-ins/s | p99 | errors |")
print("| ---: | --- | ---: | ---: | ---: |")
for index, mode, rate, p99, errors in sorted(rows):
    print(f"| {index} | {mode} | {rate:,.0f} | {p99:.1f} ms | {errors} |")
mean = lambda mode: sum(r[2] for r in rows if r[1] == mode) / max(1, sum(1 for r in rows if r[1] == mode))
print(f"\nsynchronous / continuous = {mean('synchronous') / mean('continuous'):.2f}")
PY
    exit 0
fi

pair continuous 0
echo "== enrolling $DEVICES devices on the Primary (the Secondary follows)" >&2
enroll
applied_before=$("$BIN/tandem" "${b[@]}" ha status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["follower"]["appliedEntries"])')
echo "== check-ins at $RATE/s for $DURATION" >&2
"$BIN/tandem-loadgen" --target "127.0.0.1:$base" --data-dir "$A_DIR" \
    --admin-password-file "$WORK/password" --fleet-file "$A_DIR/fleet.jsonl" \
    --devices "$DEVICES" --connections "$CONNECTIONS" --duration "$DURATION" --warmup 2s \
    --rate "$RATE" --no-reference --server-pid "$PRIMARY_PID" --json >"$WORK/load.json"
"$BIN/tandem" "${b[@]}" ha status --json >"$WORK/status.json"
sleep 1
verify=$("$BIN/tandem" "${b[@]}" ha verify "127.0.0.1:$((base + 2))" 2>&1 | tail -n 1 || true)
python3 - "$WORK/load.json" "$WORK/status.json" "$applied_before" "$DURATION" "$verify" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
load = data["checkin"]
follower = json.load(open(sys.argv[2]))["follower"]
applied_before, duration, verify = int(sys.argv[3]), sys.argv[4], sys.argv[5]
seconds = float(duration.rstrip("s")) + 2  # + warmup
applied = follower["appliedEntries"] - applied_before
print("| offered check-ins/s | achieved | check-in p99 | entries applied/s on the Secondary | lag p50 | lag p99 | lag max | batches |")
print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
print(f"| {data['settings']['offered_rate']} | {load['requests_per_second']:,.0f} | {load['latency']['p99_ms']:.1f} ms | "
      f"{applied / seconds:,.0f} | {follower['recentLagP50Ms']} ms | {follower['recentLagP99Ms']} ms | "
      f"{follower['recentLagMaxMs']} ms | {follower['appliedBatches']} |")
print(f"\nha verify after the run: {verify}")
PY
