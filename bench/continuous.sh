#!/usr/bin/env bash
# Continuous replication lag (issue 6), real processes on loopback: a Primary and a Secondary
# with `--replication continuous`; tandem-loadgen drives device check-ins (each one a write to
# the replicated database) at a fixed rate against the Primary; the Secondary measures, per
# applied batch, the time from the Primary's commit of the batch's oldest entry to its own
# commit. Reports the Secondary's lag p50/p99/max over its last 4,096 batches, the entries it
# applied per second, and whether the two nodes hold the same data afterwards. Goal: lag p99
# < 50 ms at 1,000 writes/s.
#
#   bench/continuous.sh
#
# Environment (defaults in brackets): RATE [1000] check-ins/s, DURATION [20s], DEVICES [2000],
# CONNECTIONS [16], PORT_BASE [28400], SKIP_BUILD [unset: build]. Needs curl and python3.
set -euo pipefail

RATE=${RATE:-1000}
DURATION=${DURATION:-20s}
DEVICES=${DEVICES:-2000}
CONNECTIONS=${CONNECTIONS:-16}
PORT_BASE=${PORT_BASE:-28400}
export TANDEM_LOG=${TANDEM_LOG:-warn}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN="$ROOT/target/release"
if [[ -z "${SKIP_BUILD:-}" ]]; then
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

a=(--data-dir "$WORK/a")
b=(--data-dir "$WORK/b")
base=$PORT_BASE
"$BIN/tandem" "${a[@]}" init --name node-a --service-addr "127.0.0.1:$base" \
    --sysmgr-addr "127.0.0.1:$((base + 1))" --ssh-addr "127.0.0.1:$((base + 2))" \
    --admin-password-file "$WORK/password" >/dev/null
"$BIN/tandem" "${b[@]}" init --name node-b --service-addr "127.0.0.1:$((base + 3))" \
    --sysmgr-addr "127.0.0.1:$((base + 4))" --ssh-addr "127.0.0.1:$((base + 5))" \
    --admin-password-file "$WORK/password" >/dev/null
"$BIN/tandem" "${b[@]}" ha trusted-hosts add "127.0.0.1:$((base + 2))" --key "$("$BIN/tandem" "${a[@]}" ha local-key)" >/dev/null
"$BIN/tandem" "${a[@]}" ha trusted-hosts add "127.0.0.1:$((base + 5))" --key "$("$BIN/tandem" "${b[@]}" ha local-key)" >/dev/null
"$BIN/tandem" "${a[@]}" ha configure --enable --mode primary >/dev/null
"$BIN/tandem" "${b[@]}" ha configure --enable --mode secondary --primary "127.0.0.1:$((base + 2))" \
    --replication continuous >/dev/null 2>&1
"$BIN/tandem" "${a[@]}" serve 2>>"$WORK/a.log" &
PRIMARY_PID=$!
PIDS+=("$PRIMARY_PID")
wait_probe "$base" /status/status.html "MOBILEIRON-STATUS: OK"
"$BIN/tandem" "${b[@]}" serve 2>>"$WORK/b.log" &
PIDS+=("$!")
wait_probe $((base + 3)) /hastatus.html "Mode: Standby"

echo "== enrolling $DEVICES devices on the Primary (the Secondary follows)" >&2
"$BIN/tandem-loadgen" --target "127.0.0.1:$base" --data-dir "$WORK/a" \
    --admin-password-file "$WORK/password" --fleet-file "$WORK/fleet.jsonl" \
    --devices "$DEVICES" --connections "$CONNECTIONS" --duration 1s --warmup 0s \
    --no-reference --json >/dev/null
applied_before=$("$BIN/tandem" "${b[@]}" ha status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["follower"]["appliedEntries"])')
echo "== check-ins at $RATE/s for $DURATION" >&2
"$BIN/tandem-loadgen" --target "127.0.0.1:$base" --data-dir "$WORK/a" \
    --admin-password-file "$WORK/password" --fleet-file "$WORK/fleet.jsonl" \
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
