#!/usr/bin/env bash
# Failover benchmark (issue 18): what devices see, end to end, with real processes on loopback.
#
# For each Fail Over Controls setting (the guide's defaults, 250 ms and 100 ms; the traffic
# controller's probes set to match) it measures:
#
#   (a) outage: a Primary/Secondary pair behind a traffic controller, enrolled devices checking
#       in continuously through the controller's device port (keep-alive HTTPS with their client
#       certificates, reconnecting at once after an error); `kill -9` of the Primary; outage =
#       kill -> first successful check-in sent after the kill (answered by the promoted
#       Secondary). REPEAT runs through `tandem lb` and REPEAT through HAProxy
#       (deploy/haproxy/haproxy.cfg, its check interval set to the same probe interval), each on
#       a fresh pair, alternating; median and max per controller. Also per run: the Secondary's
#       detection -> promotion (HighAvailability log).
#   (b) false alarms: a fresh pair behind `tandem lb` for LOAD_MINUTES of full check-in load
#       (tandem-loadgen, closed loop, CONNECTIONS connections through the controller) plus a CPU
#       hog on both cores (`stress-ng --cpu 2` if installed, else two `yes >/dev/null`, nice 0).
#       Counts promotions and fences (HighAvailability logs of both nodes, epochs), failed
#       heartbeats, traffic switches (`tandem lb status`) and check-in errors.
#
#   bench/failover.sh                                   # REPEAT=5, LOAD_MINUTES=10: ~45 minutes
#   REPEAT=2 LOAD_MINUTES=0.5 SETTINGS="100ms" bench/failover.sh   # a quick look
#
# Environment (defaults in brackets): REPEAT [5] LOAD_MINUTES [10] SETTINGS ["guide 250ms
# 100ms"] DEVICES [64] (enrolled per pair) CLIENTS [4] (check-in connections during (a))
# CONNECTIONS [32] (loadgen connections during (b)) PORT_BASE [26400] SKIP_BUILD [unset: build]
# SKIP_HAPROXY [unset] SKIP_LOAD [unset] RESULTS [unset: a file to append the JSON lines to]
# PROFILE [release; debug runs the debug binaries].
# Prints one JSON line per run and per soak, then a summary table. Installs haproxy (apt) when
# missing; needs curl, sqlite3 and python3.
set -euo pipefail

REPEAT=${REPEAT:-5}
LOAD_MINUTES=${LOAD_MINUTES:-10}
SETTINGS=${SETTINGS:-guide 250ms 100ms}
DEVICES=${DEVICES:-64}
CLIENTS=${CLIENTS:-4}
CONNECTIONS=${CONNECTIONS:-32}
PORT_BASE=${PORT_BASE:-26400}
export TANDEM_LOG=${TANDEM_LOG:-warn}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# PROFILE=debug runs the debug binaries (e.g. when a release build is not at hand; slower).
PROFILE=${PROFILE:-release}
BIN="$ROOT/target/$PROFILE"

# What the runs need, installed when missing (as scripts/test does).
missing=()
for tool in curl sqlite3 python3; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [[ -z "${SKIP_HAPROXY:-}" ]] && ! command -v haproxy >/dev/null && [[ ! -x /usr/sbin/haproxy ]]; then
    missing+=(haproxy)
fi
if ((${#missing[@]})); then
    echo "bench/failover.sh: installing ${missing[*]}" >&2
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
HAPROXY=${HAPROXY:-$(command -v haproxy || echo /usr/sbin/haproxy)}
if [[ -z "${SKIP_BUILD:-}" ]]; then
    if [[ $PROFILE == release ]]; then
        (cd "$ROOT" && cargo build --release --locked -p tandem -p tandem-bench)
    else
        (cd "$ROOT" && cargo build --locked -p tandem -p tandem-bench)
    fi
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
echo "bench-password-1" >"$WORK/password"
RESULTS_FILE="$WORK/results"
touch "$RESULTS_FILE"

# setting NAME -> "HEARTBEAT FAILURES RECHECK PROBE_INTERVAL PROBE_TIMEOUT"
setting() {
    case $1 in
        guide) echo "10s 3 5s 1s 800ms" ;;
        250ms) echo "250ms 3 250ms 250ms 200ms" ;;
        100ms) echo "100ms 3 100ms 100ms 80ms" ;;
        *)
            echo "SETTINGS: unknown setting $1; use guide, 250ms or 100ms" >&2
            exit 2
            ;;
    esac
}

wait_port() { # port
    for _ in $(seq 1 600); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "nothing listens on port $1" >&2
    return 1
}

wait_probe() { # port path text
    for _ in $(seq 1 1200); do
        if curl -sk --max-time 2 "https://127.0.0.1:$1$2" | grep -q "$3"; then return 0; fi
        sleep 0.05
    done
    echo "timed out waiting for $3 on port $1$2" >&2
    return 1
}

node() { "$BIN/tandem" --data-dir "$WORK/$1" "${@:2}"; }

# pair TAG BASE HEARTBEAT FAILURES RECHECK: nodes a-TAG (Primary, service BASE) and b-TAG
# (Secondary, service BASE+3), serving, B a Standby holding A's data (enrolled devices included).
# Sets PID_A, PID_B and PIN (both nodes' server certificate after the sync: B serves A's).
pair() {
    local tag=$1 base=$2 heartbeat=$3 failures=$4 recheck=$5
    local a="a-$tag" b="b-$tag"
    PIN=$(node "$a" init --name node-a --service-addr "127.0.0.1:$base" \
        --sysmgr-addr "127.0.0.1:$((base + 1))" --ssh-addr "127.0.0.1:$((base + 2))" \
        --admin-password-file "$WORK/password" | sed -n 's/.*server certificate *SHA-256 //p')
    node "$b" init --name node-b --service-addr "127.0.0.1:$((base + 3))" \
        --sysmgr-addr "127.0.0.1:$((base + 4))" --ssh-addr "127.0.0.1:$((base + 5))" \
        --admin-password-file "$WORK/password" >/dev/null
    node "$b" ha trusted-hosts add "127.0.0.1:$((base + 2))" --key "$(node "$a" ha local-key)" >/dev/null
    node "$a" ha trusted-hosts add "127.0.0.1:$((base + 5))" --key "$(node "$b" ha local-key)" >/dev/null
    # Both nodes carry the Fail Over Controls, so roles can swap without a slow side.
    node "$a" ha configure --enable --mode primary --heartbeat-interval "$heartbeat" \
        --heartbeat-failures "$failures" --recheck-interval "$recheck" >/dev/null 2>&1
    node "$b" ha configure --enable --mode secondary --primary "127.0.0.1:$((base + 2))" \
        --heartbeat-interval "$heartbeat" --heartbeat-failures "$failures" \
        --recheck-interval "$recheck" >/dev/null 2>&1
    "$BIN/tandem" --data-dir "$WORK/$a" serve 2>>"$WORK/$a.log" &
    PID_A=$!
    PIDS+=("$PID_A")
    wait_probe "$base" /status/status.html "MOBILEIRON-STATUS: OK"
    "$BIN/tandem" --data-dir "$WORK/$b" serve 2>>"$WORK/$b.log" &
    PID_B=$!
    PIDS+=("$PID_B")
    wait_probe $((base + 3)) /hastatus.html "Mode: Standby"
    # Devices enrolled on the Primary, then a sync so the Secondary knows them too.
    "$BIN/tandem-loadgen" --target "127.0.0.1:$base" --data-dir "$WORK/$a" \
        --admin-password-file "$WORK/password" --fleet-file "$WORK/fleet-$tag.jsonl" \
        --devices "$DEVICES" --connections 4 --duration 1s --warmup 0s --no-reference \
        --json >"$WORK/enroll-$tag.json"
    node "$b" failover sync "127.0.0.1:$((base + 2))" >/dev/null
}

# start_lb TAG BASE PROBE_INTERVAL PROBE_TIMEOUT: `tandem lb` on BASE+6 (admin BASE+7).
start_lb() {
    local tag=$1 base=$2
    cat >"$WORK/lb-$tag.toml" <<EOF
listen = "127.0.0.1:$((base + 6))"
admin = "127.0.0.1:$((base + 7))"
state_file = "$WORK/lb-$tag.state"
probe_interval = "$3"
probe_timeout = "$4"
fall = 3
rise = 2
[probe_tls]
pinned_sha256 = ["$PIN"]
[[backend]]
name = "main-primary"
address = "127.0.0.1:$base"
[[backend]]
name = "main-secondary"
address = "127.0.0.1:$((base + 3))"
EOF
    "$BIN/tandem" lb --config "$WORK/lb-$tag.toml" 2>>"$WORK/lb-$tag.log" &
    PIDS+=("$!")
    wait_probe $((base + 6)) /status/status.html "MOBILEIRON-STATUS: OK"
}

# start_haproxy TAG BASE PROBE_INTERVAL: deploy/haproxy/haproxy.cfg as shipped on BASE+6.
start_haproxy() {
    local tag=$1 base=$2
    TANDEM_LB_DEVICE_BIND="127.0.0.1:$((base + 6))" TANDEM_PRIMARY="127.0.0.1:$base" \
        TANDEM_SECONDARY="127.0.0.1:$((base + 3))" TANDEM_LB_PEER_ADDR="127.0.0.1:$((base + 8))" \
        TANDEM_LB_ADMIN_SOCKET="$WORK/haproxy-$tag.sock" TANDEM_LB_CHECK_INTER="$3" \
        TANDEM_LB_LOG=stdout TANDEM_LB_UNPRIVILEGED=1 \
        "$HAPROXY" -db -f "$ROOT/deploy/haproxy/haproxy.cfg" >>"$WORK/haproxy-$tag.log" 2>&1 &
    PIDS+=("$!")
    wait_probe $((base + 6)) /status/status.html "MOBILEIRON-STATUS: OK"
}

# The check-in client of (a): CLIENTS devices checking in through the controller, kill -9 of
# the Primary after a warm-up at a random phase, outage = kill -> first success sent after it.
cat >"$WORK/outage.py" <<'PY'
import http.client, json, os, random, signal, ssl, sys, tempfile, threading, time
fleet, port, pid, clients = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
records = [json.loads(line) for line in open(fleet)][1:]
lock = threading.Lock()
successes = []  # monotonic send times of answered check-ins
failures = [0]
stop = threading.Event()
BODY = json.dumps({"osVersion": "18.1"})

def context(record):
    directory = tempfile.mkdtemp()
    certificate, key = os.path.join(directory, "c.pem"), os.path.join(directory, "k.pem")
    open(certificate, "w").write(record["certificatePem"])
    open(key, "w").write(record["privateKeyPem"])
    result = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    result.check_hostname = False
    result.verify_mode = ssl.CERT_NONE  # lab: the devices' identities are what is measured
    result.load_cert_chain(certificate, key)
    return result

def device(record):
    tls = context(record)
    connection = None
    while not stop.is_set():
        sent = time.monotonic()
        try:
            if connection is None:
                connection = http.client.HTTPSConnection("127.0.0.1", port, context=tls, timeout=2)
            connection.request("POST", "/device/v1/checkin", BODY, {"Content-Type": "application/json"})
            answer = connection.getresponse()
            answer.read()
            if answer.status == 200:
                with lock:
                    successes.append(sent)
                continue
        except Exception:
            pass
        with lock:
            failures[0] += 1
        if connection is not None:
            connection.close()
            connection = None
        time.sleep(0.005)

threads = [threading.Thread(target=device, args=(records[i % len(records)],), daemon=True) for i in range(clients)]
for thread in threads:
    thread.start()
time.sleep(3 + random.random())
with lock:
    before = len(successes)
if before == 0:
    sys.exit("no check-in succeeded before the kill")
with lock:
    failures[0] = 0
killed = time.monotonic()
os.kill(pid, signal.SIGKILL)
while True:
    with lock:
        after = [sent for sent in successes if sent >= killed]
    if after:
        break
    if time.monotonic() - killed > 120:
        sys.exit("no check-in succeeded within 120 s of the kill")
    time.sleep(0.001)
stop.set()
first = min(after)
# The first success's own time: its send time, plus the one round trip it took (bounded by the
# poll above): report the send time; the answer followed within milliseconds.
print(json.dumps({"outage_ms": round((first - killed) * 1000), "failed_attempts": failures[0],
                  "checkins_before": before}))
PY

# outage_run SETTING CONTROLLER INDEX
outage_run() {
    local name=$1 controller=$2 index=$3
    read -r heartbeat failures recheck interval timeout <<<"$(setting "$name")"
    local tag="o$index" base=$((PORT_BASE + index * 10))
    pair "$tag" "$base" "$heartbeat" "$failures" "$recheck"
    case $controller in
        tandem-lb) start_lb "$tag" "$base" "$interval" "$timeout" ;;
        haproxy) start_haproxy "$tag" "$base" "$interval" ;;
    esac
    local result
    result=$(python3 "$WORK/outage.py" "$WORK/fleet-$tag.jsonl" $((base + 6)) "$PID_A" "$CLIENTS")
    local promotion
    promotion=$(sqlite3 "$WORK/b-$tag/node.db" "
        SELECT CAST(round((julianday(p.at) - julianday(d.at)) * 86400000) AS INTEGER)
        FROM local_log d, local_log p
        WHERE d.module = 'HighAvailability' AND d.message LIKE 'failure detected%'
          AND p.module = 'HighAvailability' AND p.message LIKE 'promoted to Active%'
        ORDER BY d.id DESC, p.id DESC LIMIT 1")
    kill -9 "$PID_B" "${PIDS[-1]}" 2>/dev/null || true
    wait 2>/dev/null || true
    PIDS=()
    python3 -c "
import json, sys
run = json.loads(sys.argv[1])
run.update(part='outage', setting=sys.argv[2], controller=sys.argv[3], run=int(sys.argv[4]),
           detection_to_promotion_ms=int(sys.argv[5]) if sys.argv[5] else None)
print(json.dumps(run))" "$result" "$name" "$controller" "$index" "$promotion" | tee -a "$RESULTS_FILE"
}

# soak SETTING INDEX: LOAD_MINUTES of check-ins through `tandem lb` plus a CPU hog.
soak() {
    local name=$1 index=$2
    read -r heartbeat failures recheck interval timeout <<<"$(setting "$name")"
    local tag="s$index" base=$((PORT_BASE + index * 10))
    pair "$tag" "$base" "$heartbeat" "$failures" "$recheck"
    start_lb "$tag" "$base" "$interval" "$timeout"
    local seconds hog=()
    seconds=$(python3 -c "print(max(1, round(float('$LOAD_MINUTES') * 60)))")
    if command -v stress-ng >/dev/null; then
        stress-ng --cpu 2 --timeout "${seconds}s" >/dev/null 2>&1 &
        hog+=("$!")
    else
        for _ in 1 2; do
            yes >/dev/null &
            hog+=("$!")
        done
    fi
    PIDS+=("${hog[@]}")
    "$BIN/tandem-loadgen" --target "127.0.0.1:$((base + 6))" --data-dir "$WORK/a-$tag" \
        --admin-password-file "$WORK/password" --fleet-file "$WORK/fleet-$tag.jsonl" \
        --devices "$DEVICES" --connections "$CONNECTIONS" --duration "${seconds}s" --warmup 0s \
        --no-reference --json >"$WORK/soak-$tag.json" || true
    kill -9 "${hog[@]}" 2>/dev/null || true
    local lb_status
    lb_status=$(curl -s "http://127.0.0.1:$((base + 7))/status")
    count() { # node pattern
        sqlite3 "$WORK/$1-$tag/node.db" \
            "SELECT count(*) FROM local_log WHERE module = 'HighAvailability' AND message LIKE '$2'"
    }
    local promotions fences heartbeat_failures epoch_a epoch_b
    promotions=$(($(count a 'promoted to Active%') + $(count b 'promoted to Active%')))
    fences=$(($(count a '%stopped serving (Not Available)%') + $(count b '%stopped serving (Not Available)%')))
    heartbeat_failures=$(count b 'heartbeat % failed%')
    epoch_a=$(node "a-$tag" ha status --json 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin).get('epoch'))" || echo null)
    epoch_b=$(node "b-$tag" ha status --json 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin).get('epoch'))" || echo null)
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
    python3 -c "
import json, sys
try:
    load = json.load(open(sys.argv[1]))
except ValueError:
    load = {}  # tandem-loadgen could not run: the row says so with null figures
status = json.loads(sys.argv[2])
phase = load.get('checkin') or {}
print(json.dumps(dict(part='soak', setting=sys.argv[3], minutes=float(sys.argv[4]), cpu_hog=sys.argv[5],
    promotions=int(sys.argv[6]), fences=int(sys.argv[7]), failed_heartbeats=int(sys.argv[8]),
    epochs=[sys.argv[9], sys.argv[10]], lb_switches=status.get('switches'), lb_active=status.get('active'),
    checkins_per_s=round(phase['requests_per_second']) if 'requests_per_second' in phase else None,
    checkin_errors=phase.get('errors'), checkin_errors_by_kind=phase.get('errors_by_kind'))))
" "$WORK/soak-$tag.json" "$lb_status" "$name" "$LOAD_MINUTES" \
        "$(command -v stress-ng >/dev/null && echo 'stress-ng --cpu 2' || echo '2 x yes')" \
        "$promotions" "$fences" "$heartbeat_failures" "$epoch_a" "$epoch_b" | tee -a "$RESULTS_FILE"
}

index=0
for name in $SETTINGS; do
    setting "$name" >/dev/null
    for run in $(seq 1 "$REPEAT"); do
        outage_run "$name" tandem-lb "$index"
        index=$((index + 1))
        if [[ -z "${SKIP_HAPROXY:-}" ]]; then
            outage_run "$name" haproxy "$index"
            index=$((index + 1))
        fi
    done
done
if [[ -z "${SKIP_LOAD:-}" ]]; then
    for name in $SETTINGS; do
        soak "$name" "$index"
        index=$((index + 1))
    done
fi
if [[ -n "${RESULTS:-}" ]]; then
    cat "$RESULTS_FILE" >>"$RESULTS"
fi

python3 - "$RESULTS_FILE" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print()
print("(a) kill -9 of the Primary -> first successful device check-in through the controller")
print(f"{'setting':<8} {'controller':<10} {'runs':>4} {'median ms':>10} {'max ms':>8} {'min ms':>8} {'detect->promote max ms':>23}")
for setting in dict.fromkeys(row["setting"] for row in rows):
    for controller in ("tandem-lb", "haproxy"):
        runs = [row for row in rows if row["part"] == "outage" and row["setting"] == setting and row["controller"] == controller]
        if not runs:
            continue
        outage = [row["outage_ms"] for row in runs]
        promote = [row["detection_to_promotion_ms"] for row in runs if row["detection_to_promotion_ms"] is not None]
        print(f"{setting:<8} {controller:<10} {len(runs):>4} {statistics.median(outage):>10.0f} {max(outage):>8} {min(outage):>8} {max(promote) if promote else '-':>23}")
soaks = [row for row in rows if row["part"] == "soak"]
if soaks:
    print()
    print("(b) full check-in load + CPU hog on both cores, through tandem lb")
    print(f"{'setting':<8} {'minutes':>7} {'promotions':>10} {'fences':>6} {'failed heartbeats':>17} {'lb switches':>11} {'check-ins/s':>11} {'errors':>6}")
    for row in soaks:
        print(f"{row['setting']:<8} {row['minutes']:>7} {row['promotions']:>10} {row['fences']:>6} {row['failed_heartbeats']:>17} {row['lb_switches']!s:>11} {row['checkins_per_s']!s:>11} {row['checkin_errors']!s:>6}")
PY
