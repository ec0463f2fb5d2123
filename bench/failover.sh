#!/usr/bin/env bash
# Failover benchmark: time from `kill -9` of the Primary to the Secondary answering
# `MOBILEIRON-STATUS: OK` on /status/status.html, with real processes on loopback.
#
# For each Fail Over Controls setting (heartbeat interval × failures, re-check interval) it runs
# REPEAT failovers and reports, per run:
#   - kill → OK: what a load balancer probing every 10 ms sees;
#   - detection bound: Heartbeat Interval + (N − 1) × Re-check, the reference the controller is
#     built to meet (measured in the same run: the ratio is kill→OK over the bound);
#   - detection → promotion: from the Secondary's HighAvailability log (failure detected →
#     promoted), the part the controller adds after detection (goal: < 200 ms).
#
#   bench/failover.sh                 # 1 s × 3 / 1 s and 250 ms × 3 / 250 ms, REPEAT each
#
# Environment (defaults in brackets): REPEAT [5] PORT_BASE [26400] SKIP_BUILD [unset].
# Needs curl, sqlite3 and python3. Prints one JSON line per run and a summary per setting.
set -euo pipefail

REPEAT=${REPEAT:-5}
PORT_BASE=${PORT_BASE:-26400}
export TANDEM_LOG=${TANDEM_LOG:-warn}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN="$ROOT/target/release/tandem"
if [[ -z "${SKIP_BUILD:-}" ]]; then
    (cd "$ROOT" && cargo build --release --locked --bin tandem)
fi
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
echo "bench-password-1" > "$WORK/password"

node() { "$BIN" --data-dir "$WORK/$1" "${@:2}"; }

wait_probe() { # port path text
    for _ in $(seq 1 600); do
        if curl -sk "https://127.0.0.1:$1$2" | grep -q "$3"; then return 0; fi
        sleep 0.05
    done
    echo "timed out waiting for $3 on port $1" >&2
    return 1
}

# run SETTING_NAME HEARTBEAT FAILURES RECHECK INDEX
run() {
    local name=$1 heartbeat=$2 failures=$3 recheck=$4 index=$5
    local base=$((PORT_BASE + index * 10))
    local a="a-$index" b="b-$index"
    node "$a" init --name node-a --service-addr 127.0.0.1:$((base)) --sysmgr-addr 127.0.0.1:$((base + 1)) \
        --ssh-addr 127.0.0.1:$((base + 2)) --admin-password-file "$WORK/password" >/dev/null
    node "$b" init --name node-b --service-addr 127.0.0.1:$((base + 3)) --sysmgr-addr 127.0.0.1:$((base + 4)) \
        --ssh-addr 127.0.0.1:$((base + 5)) --admin-password-file "$WORK/password" >/dev/null
    node "$b" ha trusted-hosts add 127.0.0.1:$((base + 2)) --key "$(node "$a" ha local-key)" >/dev/null
    node "$a" ha trusted-hosts add 127.0.0.1:$((base + 5)) --key "$(node "$b" ha local-key)" >/dev/null
    node "$a" ha configure --enable --mode primary >/dev/null
    node "$b" ha configure --enable --mode secondary --primary 127.0.0.1:$((base + 2)) \
        --heartbeat-interval "$heartbeat" --heartbeat-failures "$failures" --recheck-interval "$recheck" \
        >/dev/null 2>&1
    # Started directly (not through the `node` function) so $! is the tandem process itself.
    "$BIN" --data-dir "$WORK/$a" serve >/dev/null 2>&1 &
    local pid_a=$!
    PIDS+=("$pid_a")
    wait_probe $((base)) /status/status.html "MOBILEIRON-STATUS: OK"
    "$BIN" --data-dir "$WORK/$b" serve >/dev/null 2>&1 &
    local pid_b=$!
    PIDS+=("$pid_b")
    wait_probe $((base + 3)) /hastatus.html "Mode: Standby"
    node "$b" failover sync 127.0.0.1:$((base + 2)) >/dev/null
    # Let heartbeats settle, at a random phase of the heartbeat interval.
    sleep "$(python3 -c "import random; print(2 + random.random())")"
    python3 - "$pid_a" $((base + 3)) <<'PY' > "$WORK/elapsed"
import os, signal, ssl, sys, time, urllib.request
pid, port = int(sys.argv[1]), int(sys.argv[2])
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
killed = time.monotonic()
os.kill(pid, signal.SIGKILL)
while True:
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/status/status.html", context=context, timeout=1) as answer:
            if b"MOBILEIRON-STATUS: OK" in answer.read():
                break
    except Exception:
        pass
    if time.monotonic() - killed > 60:
        sys.exit("the Secondary never answered OK")
    time.sleep(0.01)
print(round((time.monotonic() - killed) * 1000))
PY
    local elapsed
    elapsed=$(cat "$WORK/elapsed")
    local promotion
    promotion=$(sqlite3 "$WORK/$b/node.db" "
        SELECT CAST(round((julianday(p.at) - julianday(d.at)) * 86400000) AS INTEGER)
        FROM local_log d, local_log p
        WHERE d.module = 'HighAvailability' AND d.message LIKE 'failure detected%'
          AND p.module = 'HighAvailability' AND p.message LIKE 'promoted to Active%'
        ORDER BY d.id DESC, p.id DESC LIMIT 1")
    kill -9 "$pid_b" 2>/dev/null || true
    wait "$pid_b" 2>/dev/null || true
    wait "$pid_a" 2>/dev/null || true
    local bound
    bound=$(python3 -c "
def ms(text):
    for unit, size in (('ms', 1), ('s', 1000)):
        if text.endswith(unit): return int(text[:-len(unit)]) * size
print(ms('$heartbeat') + ($failures - 1) * ms('$recheck'))")
    echo "{\"setting\":\"$name\",\"run\":$index,\"kill_to_ok_ms\":$elapsed,\"detection_bound_ms\":$bound,\"detection_to_promotion_ms\":$promotion}"
}

index=0
for setting in "1s 3 1s" "250ms 3 250ms"; do
    read -r heartbeat failures recheck <<<"$setting"
    name="${heartbeat}x${failures}/${recheck}"
    for _ in $(seq 1 "$REPEAT"); do
        run "$name" "$heartbeat" "$failures" "$recheck" "$index" | tee -a "$WORK/results"
        index=$((index + 1))
    done
done
python3 - "$WORK/results" <<'PY'
import json, sys, statistics
runs = [json.loads(line) for line in open(sys.argv[1])]
for setting in dict.fromkeys(run["setting"] for run in runs):
    rows = [run for run in runs if run["setting"] == setting]
    ok = [run["kill_to_ok_ms"] for run in rows]
    promo = [run["detection_to_promotion_ms"] for run in rows]
    bound = rows[0]["detection_bound_ms"]
    print(f"{setting}: kill -9 -> MOBILEIRON-STATUS: OK median {statistics.median(ok):.0f} ms "
          f"(min {min(ok)}, max {max(ok)}; detection bound {bound} ms, ratio "
          f"{statistics.median(ok) / bound:.2f}); detection -> promotion max {max(promo)} ms")
PY
