#!/usr/bin/env bash
# Traffic-controller benchmark (issue 5), real processes on loopback:
#
#   1. Check-ins through each path, alternating, in one run: direct to the node, through
#      `tandem lb`, through HAProxy in TCP mode (deploy/haproxy/haproxy.cfg as shipped, checks
#      on). Reports check-ins/s and p99 per path and the ratios to direct; the goal is that
#      `tandem lb` costs no more than HAProxy (lb/haproxy throughput ratio ≥ 1.0 within noise).
#   2. Switch time: a Primary/Secondary pair (Fail Over Controls 250 ms × 3, re-check 250 ms)
#      behind both controllers (probe interval 1 s, fall 3); `kill -9` of the Primary, then a
#      device request every 20 ms through each controller until node-b answers. Bound:
#      fall × probe interval + 100 ms = 3,100 ms.
#
#   bench/lb.sh
#
# Environment (defaults in brackets): DEVICES [2000] DURATION [10s] CONNECTIONS [32]
# REPEAT [2] (check-in rounds) SWITCH_REPEAT [3] PORT_BASE [27400] SKIP_BUILD [unset: build]
# HAPROXY [haproxy, else /usr/sbin/haproxy]. Needs Debian's haproxy, curl and python3 (installed
# when missing, see bench/deps.sh).
set -euo pipefail

DEVICES=${DEVICES:-2000}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
REPEAT=${REPEAT:-2}
SWITCH_REPEAT=${SWITCH_REPEAT:-3}
PORT_BASE=${PORT_BASE:-27400}
export TANDEM_LOG=${TANDEM_LOG:-warn}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/deps.sh
source "$ROOT/bench/deps.sh"
if [[ -z "${HAPROXY:-}" ]]; then bench_needs haproxy; fi
bench_needs curl python3
BIN="$ROOT/target/release"
HAPROXY=${HAPROXY:-$(command -v haproxy || echo /usr/sbin/haproxy)}
if [[ -z "${SKIP_BUILD:-}" ]]; then
    bench_needs cargo
    (cd "$ROOT" && cargo build --release --locked -p tandem -p tandem-bench)
fi
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
echo "bench-password-1" >"$WORK/password"

wait_port() { # port
    for _ in $(seq 1 600); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "nothing listens on port $1" >&2
    return 1
}

wait_probe() { # port path text
    for _ in $(seq 1 600); do
        if curl -sk "https://127.0.0.1:$1$2" | grep -q "$3"; then return 0; fi
        sleep 0.05
    done
    echo "timed out waiting for $3 on port $1" >&2
    return 1
}

init_node() { # dir name base
    "$BIN/tandem" --data-dir "$WORK/$1" init --name "$2" --service-addr "127.0.0.1:$3" \
        --sysmgr-addr "127.0.0.1:$(($3 + 1))" --ssh-addr "127.0.0.1:$(($3 + 2))" \
        --admin-password-file "$WORK/password" | sed -n 's/.*server certificate *SHA-256 //p'
}

# start_lb CONFIG_FILE LISTEN_PORT ADMIN_PORT PRIMARY_PORT SECONDARY_PORT PINS
start_lb() {
    cat >"$1" <<EOF
listen = "127.0.0.1:$2"
admin = "127.0.0.1:$3"
probe_interval = "1s"
probe_timeout = "800ms"
fall = 3
rise = 2
[probe_tls]
pinned_sha256 = [$6]
[[backend]]
name = "main-primary"
address = "127.0.0.1:$4"
[[backend]]
name = "main-secondary"
address = "127.0.0.1:$5"
EOF
    "$BIN/tandem" lb --config "$1" 2>>"$WORK/lb.log" &
    PIDS+=("$!")
    wait_port "$3"
}

# start_haproxy LISTEN_PORT PRIMARY_PORT SECONDARY_PORT PEER_PORT SOCKET
start_haproxy() {
    TANDEM_LB_DEVICE_BIND="127.0.0.1:$1" TANDEM_PRIMARY="127.0.0.1:$2" TANDEM_SECONDARY="127.0.0.1:$3" \
        TANDEM_LB_PEER_ADDR="127.0.0.1:$4" TANDEM_LB_ADMIN_SOCKET="$5" TANDEM_LB_CHECK_INTER=1s \
        TANDEM_LB_LOG=stdout TANDEM_LB_UNPRIVILEGED=1 \
        "$HAPROXY" -W -db -f "$ROOT/deploy/haproxy/haproxy.cfg" >>"$WORK/haproxy.log" 2>&1 &
    PIDS+=("$!")
    wait_port "$1"
}

# ---- 1. check-ins through each path ----------------------------------------------------------
base=$PORT_BASE
pin=$(init_node solo solo "$base")
"$BIN/tandem" --data-dir "$WORK/solo" serve 2>>"$WORK/serve.log" &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
wait_probe "$base" /status/status.html "MOBILEIRON-STATUS: OK"
dead=$((base + 9)) # the Secondary of this part does not exist: only the Primary serves
start_lb "$WORK/lb.toml" $((base + 3)) $((base + 4)) "$base" "$dead" "\"$pin\""
start_haproxy $((base + 5)) "$base" "$dead" $((base + 6)) "$WORK/haproxy.sock"
wait_probe $((base + 3)) /status/status.html "MOBILEIRON-STATUS: OK"
wait_probe $((base + 5)) /status/status.html "MOBILEIRON-STATUS: OK"

loadgen() { # target_port out_file
    "$BIN/tandem-loadgen" --target "127.0.0.1:$1" --data-dir "$WORK/solo" \
        --admin-password-file "$WORK/password" --fleet-file "$WORK/fleet.jsonl" \
        --devices "$DEVICES" --connections "$CONNECTIONS" --duration "$DURATION" --warmup 2s \
        --no-reference --server-pid "$SERVER_PID" --json >"$2"
}
echo "== enrolling $DEVICES devices" >&2
loadgen "$base" "$WORK/enroll.json"
for round in $(seq 1 "$REPEAT"); do
    for path in direct lb haproxy; do
        case $path in
            direct) port=$base ;;
            lb) port=$((base + 3)) ;;
            haproxy) port=$((base + 5)) ;;
        esac
        echo "== round $round: $path" >&2
        loadgen "$port" "$WORK/checkin-$round-$path.json"
    done
done
python3 - "$WORK" "$REPEAT" <<'PY'
import json, sys
work, repeat = sys.argv[1], int(sys.argv[2])
print("| round | path | check-ins/s | p50 ms | p99 ms | errors | ratio to direct |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
totals = {}
for round in range(1, repeat + 1):
    direct = None
    for path in ["direct", "lb", "haproxy"]:
        result = json.load(open(f"{work}/checkin-{round}-{path}.json"))["checkin"]
        rate = result["requests_per_second"]
        direct = direct or rate
        totals.setdefault(path, []).append(rate)
        print(f"| {round} | {path} | {rate:,.0f} | {result['latency']['p50_ms']:.1f} | "
              f"{result['latency']['p99_ms']:.1f} | {result['errors']} | {rate / direct:.2f} |")
mean = {path: sum(rates) / len(rates) for path, rates in totals.items()}
print(f"\nmean check-ins/s: direct {mean['direct']:,.0f}, tandem lb {mean['lb']:,.0f}, "
      f"HAProxy {mean['haproxy']:,.0f}; tandem lb / HAProxy = {mean['lb'] / mean['haproxy']:.2f}")
PY
kill -9 "${PIDS[@]}" 2>/dev/null || true
wait 2>/dev/null || true
PIDS=()

# ---- 2. switch time ---------------------------------------------------------------------------
echo "| run | tandem lb: kill → node-b answers | HAProxy: kill → node-b answers | bound |"
echo "| ---: | ---: | ---: | ---: |"
for run in $(seq 1 "$SWITCH_REPEAT"); do
    base=$((PORT_BASE + 20 + run * 20))
    pin_a=$(init_node "a-$run" node-a "$base")
    pin_b=$(init_node "b-$run" node-b $((base + 3)))
    node_a=(--data-dir "$WORK/a-$run")
    node_b=(--data-dir "$WORK/b-$run")
    "$BIN/tandem" "${node_b[@]}" ha trusted-hosts add "127.0.0.1:$((base + 2))" \
        --key "$("$BIN/tandem" "${node_a[@]}" ha local-key)" >/dev/null
    "$BIN/tandem" "${node_a[@]}" ha trusted-hosts add "127.0.0.1:$((base + 5))" \
        --key "$("$BIN/tandem" "${node_b[@]}" ha local-key)" >/dev/null
    "$BIN/tandem" "${node_a[@]}" ha configure --enable --mode primary >/dev/null
    "$BIN/tandem" "${node_b[@]}" ha configure --enable --mode secondary --primary "127.0.0.1:$((base + 2))" \
        --heartbeat-interval 250ms --heartbeat-failures 3 --recheck-interval 250ms >/dev/null 2>&1
    "$BIN/tandem" "${node_a[@]}" serve 2>/dev/null &
    pid_a=$!
    PIDS+=("$pid_a")
    wait_probe "$base" /status/status.html "MOBILEIRON-STATUS: OK"
    "$BIN/tandem" "${node_b[@]}" serve 2>/dev/null &
    PIDS+=("$!")
    wait_probe $((base + 3)) /hastatus.html "Mode: Standby"
    "$BIN/tandem" "${node_b[@]}" failover sync "127.0.0.1:$((base + 2))" >/dev/null
    start_lb "$WORK/lb-$run.toml" $((base + 10)) $((base + 11)) "$base" $((base + 3)) "\"$pin_a\", \"$pin_b\""
    start_haproxy $((base + 12)) "$base" $((base + 3)) $((base + 13)) "$WORK/haproxy-$run.sock"
    wait_probe $((base + 10)) /status/status.html "MOBILEIRON-STATUS: OK"
    wait_probe $((base + 12)) /status/status.html "MOBILEIRON-STATUS: OK"
    # Settle at a random phase of the probe interval.
    sleep "$(python3 -c "import random; print(3 + random.random())")"
    RUN=$run python3 - "$pid_a" $((base + 10)) $((base + 12)) <<'PY'
import base64, json, os, signal, ssl, sys, threading, time, urllib.request
pid, lb_port, haproxy_port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
auth = "Basic " + base64.b64encode(b"admin:bench-password-1").decode()
killed = time.monotonic()
results = {}
def watch(name, port):
    while time.monotonic() - killed < 60:
        try:
            request = urllib.request.Request(f"https://127.0.0.1:{port}/api/v2/ping", headers={"Authorization": auth})
            with urllib.request.urlopen(request, context=context, timeout=1) as answer:
                if json.load(answer).get("node") == "node-b":
                    results[name] = round((time.monotonic() - killed) * 1000)
                    return
        except Exception:
            pass
        time.sleep(0.02)
threads = [threading.Thread(target=watch, args=(name, port)) for name, port in [("lb", lb_port), ("haproxy", haproxy_port)]]
os.kill(pid, signal.SIGKILL)
killed = time.monotonic()
for thread in threads: thread.start()
for thread in threads: thread.join()
print(f"| {os.environ.get('RUN', '')} | {results.get('lb', 'never')} ms | {results.get('haproxy', 'never')} ms | 3,100 ms |")
PY
    kill -9 "${PIDS[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    PIDS=()
done
