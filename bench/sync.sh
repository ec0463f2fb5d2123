#!/usr/bin/env bash
# Replication benchmarks, end to end with real processes on loopback:
#
#  1. Full sync of a large replicated database (DEVICES_BIG devices, about 1 GB at 1,000,000)
#     against `scp` of the same database file through Debian's OpenSSH server, same run.
#  2. Incremental sync of CHANGES changes on the large database against the same on a small one
#     (DEVICES_SMALL): the cost should follow the changes, not the size.
#  3. Write throughput with change capture on against off (tandem-storebench capture): the
#     median of CAPTURE_PAIRS ratios, each of one run with capture on and the next with it off,
#     because this VM's disk changes speed from one minute to the next.
#
#   bench/sync.sh                                  # the issue's setting
#   DEVICES_BIG=100000 bench/sync.sh               # quicker
#   BENCH_DIR=/var/tmp/tandem-sync bench/sync.sh   # keep (and reuse) the filled nodes
#   STEPS=incremental DEVICES_BIG=300000 REPEAT=5 BENCH_DIR=/var/tmp/tandem-sync300k bench/sync.sh
#
# Environment (defaults in brackets): DEVICES_BIG [1000000] DEVICES_SMALL [10000]
# CHANGES [1000] REPEAT [3] CAPTURE_SECONDS [5] CAPTURE_PAIRS [8] PORT_BASE [25400]
# BENCH_DIR [temporary] SKIP_BUILD [unset: build] BIN_DIR [target/release]: binaries to use instead
# STEPS [full,incremental,capture]: which of the three to run (comma-separated).
# TANDEM_LOG [warn]: the nodes' and the CLI's log filter; with `debug` each sync logs the time
#   of its phases to $WORK/sync-cli.log (e.g. TANDEM_LOG=warn,tandem_repl=debug).
#
# Needs (installed when missing, see bench/deps.sh): sqlite3, bc, and for the `full` step's
# reference openssh-server and openssh-client. Fills the nodes on first use (about 75 s for
# 1,000,000 devices); a kept BENCH_DIR skips that.
# Prints one JSON object per measurement and a summary; exit status 1 if a step fails.
set -euo pipefail

DEVICES_BIG=${DEVICES_BIG:-1000000}
DEVICES_SMALL=${DEVICES_SMALL:-10000}
CHANGES=${CHANGES:-1000}
REPEAT=${REPEAT:-3}
CAPTURE_SECONDS=${CAPTURE_SECONDS:-5}
CAPTURE_PAIRS=${CAPTURE_PAIRS:-8}
PORT_BASE=${PORT_BASE:-25400}
STEPS=${STEPS:-full,incremental,capture}
export TANDEM_LOG=${TANDEM_LOG:-warn}
step() { [[ ",$STEPS," == *",$1,"* ]]; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/deps.sh
source "$ROOT/bench/deps.sh"
bench_needs sqlite3 bc
if step full; then bench_needs sshd scp ssh-keygen; fi
BIN="${BIN_DIR:-$ROOT/target/release}"
if [[ -z "${SKIP_BUILD:-}" ]]; then
    bench_needs cargo
    (cd "$ROOT" && cargo build --release --locked --bin tandem && cargo build --release --locked -p tandem-bench --bin tandem-storebench)
fi
if [[ -n "${BENCH_DIR:-}" ]]; then
    WORK=$BENCH_DIR
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
fi
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap 'cleanup; [[ -z "${BENCH_DIR:-}" ]] && rm -rf "$WORK"' EXIT

tandem() { "$BIN/tandem" "$@"; }
now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# init NAME OFFSET: a node whose ports are PORT_BASE+OFFSET..+2
init() {
    local dir="$WORK/$1" offset=$2
    if [[ ! -f "$dir/tandem.toml" ]]; then
        printf 'bench-password-1\n' > "$WORK/password"
        tandem --data-dir "$dir" init --name "$1" \
            --service-addr "127.0.0.1:$((PORT_BASE + offset))" \
            --sysmgr-addr "127.0.0.1:$((PORT_BASE + offset + 1))" \
            --ssh-addr "127.0.0.1:$((PORT_BASE + offset + 2))" \
            --admin-password-file "$WORK/password" > /dev/null
    fi
}
ssh_port() { echo $((PORT_BASE + $2 + 2)); }
trust_pair() { # A OFFSET_A B OFFSET_B
    tandem --data-dir "$WORK/$1" ha trusted-hosts add "127.0.0.1:$((PORT_BASE + $4 + 2))" \
        --key "$(tandem --data-dir "$WORK/$3" ha local-key)" > /dev/null
    tandem --data-dir "$WORK/$3" ha trusted-hosts add "127.0.0.1:$((PORT_BASE + $2 + 2))" \
        --key "$(tandem --data-dir "$WORK/$1" ha local-key)" > /dev/null
}
SERVE_PID=
serve() { # NAME OFFSET
    "$BIN/tandem" --data-dir "$WORK/$1" serve 2>> "$WORK/$1.log" &
    SERVE_PID=$!
    PIDS+=("$SERVE_PID")
    # Ready when its replication listener answers; a node that died (busy port) fails the run.
    for _ in $(seq 1 300); do
        kill -0 "$SERVE_PID" 2>/dev/null || { echo "node $1 exited:" >&2; tail -3 "$WORK/$1.log" >&2; return 1; }
        (exec 3<>"/dev/tcp/127.0.0.1/$((PORT_BASE + $2 + 2))") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "node $1 did not start" >&2; return 1
}
stop() { kill -TERM "$1"; wait "$1" || true; }
fill() { # NAME DEVICES
    local have
    have=$(sqlite3 "$WORK/$1/replicated.db" 'SELECT count(*) FROM devices' 2>/dev/null || echo 0)
    if (( have < $2 )); then "$BIN/tandem-storebench" fill --data-dir "$WORK/$1" --devices "$2"; fi
}

echo "== nodes in $WORK"
init big-a 0; init big-b 10; init small-a 20; init small-b 30
trust_pair big-a 0 big-b 10
trust_pair small-a 20 small-b 30
fill big-a "$DEVICES_BIG"
fill small-a "$DEVICES_SMALL"
DB_BYTES=$(stat -c %s "$WORK/big-a/replicated.db")

FULL_S=null SCP_S=null INC_BIG=null INC_SMALL=null INC_BIG_MS=null INC_SMALL_MS=null CAPTURE_RATIO=null
if step full; then
echo "== full sync of $DB_BYTES bytes, $REPEAT times"
serve big-a 0; BIG_A=$SERVE_PID
FULL=()
for _ in $(seq 1 "$REPEAT"); do
    start=$(now)
    tandem --data-dir "$WORK/big-b" failover sync "127.0.0.1:$(ssh_port big-a 0)" --full --json > "$WORK/full.json"
    FULL+=("$(elapsed "$start" "$(now)")")
done
FULL_S=$(printf '%s\n' "${FULL[@]}" | median)
echo "{\"measurement\":\"full_sync\",\"seconds\":[${FULL[*]// /,}],\"median\":$FULL_S}"

echo "== reference: scp of the same file through OpenSSH on loopback"
SSHD_DIR="$WORK/sshd"; mkdir -p "$SSHD_DIR"; chmod 700 "$SSHD_DIR"
[[ -f "$SSHD_DIR/host_key" ]] || ssh-keygen -q -t ed25519 -N '' -f "$SSHD_DIR/host_key"
[[ -f "$SSHD_DIR/client_key" ]] || ssh-keygen -q -t ed25519 -N '' -f "$SSHD_DIR/client_key"
cp "$SSHD_DIR/client_key.pub" "$SSHD_DIR/authorized_keys"; chmod 600 "$SSHD_DIR/authorized_keys"
SSHD_PORT=$((PORT_BASE + 90))
mkdir -p /run/sshd
"$(command -v sshd || echo /usr/sbin/sshd)" -D -p "$SSHD_PORT" -h "$SSHD_DIR/host_key" -o ListenAddress=127.0.0.1 \
    -o AuthorizedKeysFile="$SSHD_DIR/authorized_keys" -o PasswordAuthentication=no \
    -o StrictModes=no -o PidFile="$SSHD_DIR/sshd.pid" &
PIDS+=("$!")
sleep 0.5
SCP=()
for _ in $(seq 1 "$REPEAT"); do
    rm -f "$WORK/scp-copy.db"
    start=$(now)
    scp -q -P "$SSHD_PORT" -i "$SSHD_DIR/client_key" -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null "$WORK/big-a/replicated.db" "127.0.0.1:$WORK/scp-copy.db"
    SCP+=("$(elapsed "$start" "$(now)")")
done
rm -f "$WORK/scp-copy.db"
SCP_S=$(printf '%s\n' "${SCP[@]}" | median)
echo "{\"measurement\":\"scp\",\"seconds\":[${SCP[*]// /,}],\"median\":$SCP_S}"
stop "$BIG_A"
fi

incremental() { # A OFFSET_A B ; prints the median seconds
    local a=$1 offset=$2 b=$3 times=() inside=() pid start
    for _ in $(seq 1 "$REPEAT"); do
        "$BIN/tandem-storebench" touch --data-dir "$WORK/$a" --changes "$CHANGES" > /dev/null
        serve "$a" "$offset"; pid=$SERVE_PID
        start=$(now)
        tandem --data-dir "$WORK/$b" failover sync "127.0.0.1:$(ssh_port "$a" "$offset")" --json \
            > "$WORK/incremental.json" 2>> "$WORK/sync-cli.log"
        times+=("$(elapsed "$start" "$(now)")")
        grep -q '"kind": "incremental"' "$WORK/incremental.json" || { cat "$WORK/incremental.json" >&2; return 1; }
        # The sync's own duration (as Sync History records it), without the CLI process's
        # start-up and the WAL checkpoint when it closes the database.
        inside+=("$(grep -o '"durationMs": [0-9]*' "$WORK/incremental.json" | tr -dc '0-9')")
        stop "$pid"
    done
    printf '%s\n' "${inside[@]}" | median > "$WORK/$a.sync-ms"
    echo "{\"measurement\":\"incremental_$a\",\"seconds\":[$(IFS=,; echo "${times[*]}")],\"syncDurationMs\":[$(IFS=,; echo "${inside[*]}")],\"syncDurationMsMedian\":$(cat "$WORK/$a.sync-ms")}" >&2
    printf '%s\n' "${times[@]}" | median
}
if step incremental; then
echo "== incremental sync of $CHANGES changes: $DEVICES_BIG devices, then $DEVICES_SMALL"
# Each target starts from a copy of its source (a full sync), unless an earlier run left one.
for pair in "big-a 0 big-b" "small-a 20 small-b"; do
    read -r a offset b <<< "$pair"
    if [[ ! -f "$WORK/$b/replicated.db" ]] || [[ "$(sqlite3 "$WORK/$b/replicated.db" 'SELECT count(*) FROM devices')" == 0 ]]; then
        serve "$a" "$offset"
        tandem --data-dir "$WORK/$b" failover sync "127.0.0.1:$(ssh_port "$a" "$offset")" > /dev/null
        stop "$SERVE_PID"
    fi
done
INC_BIG=$(incremental big-a 0 big-b)
INC_SMALL=$(incremental small-a 20 small-b)
INC_BIG_MS=$(cat "$WORK/big-a.sync-ms"); INC_SMALL_MS=$(cat "$WORK/small-a.sync-ms")
fi

if step capture; then
echo "== write throughput, change capture on and off"
"$BIN/tandem-storebench" capture --seconds "$CAPTURE_SECONDS" --pairs "$CAPTURE_PAIRS" | tee "$WORK/capture.json"
CAPTURE_RATIO=$(grep ratioOnToOffMedian "$WORK/capture.json" | tr -dc '0-9.')
fi
ratio() { if [[ "$1" == null || "$2" == null ]]; then echo null; else echo "scale=3; $1 / $2" | bc; fi; }

cat <<EOF
== summary
{
  "databaseBytes": $DB_BYTES,
  "devicesBig": $DEVICES_BIG,
  "fullSyncSeconds": $FULL_S,
  "scpSeconds": $SCP_S,
  "fullSyncToScpRatio": $(ratio "$FULL_S" "$SCP_S"),
  "incrementalBigSeconds": $INC_BIG,
  "incrementalSmallSeconds": $INC_SMALL,
  "incrementalBigToSmallRatio": $(ratio "$INC_BIG" "$INC_SMALL"),
  "incrementalBigSyncMs": $INC_BIG_MS,
  "incrementalSmallSyncMs": $INC_SMALL_MS,
  "incrementalBigToSmallSyncRatio": $(ratio "$INC_BIG_MS" "$INC_SMALL_MS"),
  "captureOnToOffRatio": $CAPTURE_RATIO
}
EOF
