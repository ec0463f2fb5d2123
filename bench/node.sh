# Shared by the single-node benchmarks (bench/checkin.sh, bench/security.sh); source it, then
# call node_build, node_prepare, node_start, … node_stop. Not a script of its own.
#
# Environment (defaults in brackets):
#   BENCH_DIR [unset: a temporary directory, removed on exit]: keep the node and fleet there
#   PORT_BASE [24440]: service PORT_BASE+3, System Manager PORT_BASE+4, SSH PORT_BASE+2
#   SKIP_BUILD [unset]: set to 1 to use the binaries already in target/release
#   BIN_DIR [target/release]: binaries to use instead (e.g. an older release, to compare)
#   TANDEM_LOG [warn]: the node's log filter; the log is $WORK/serve.log
#
# After node_prepare: WORK, NODE, PASSWORD_FILE, FLEET, SERVICE_ADDR; after node_start:
# SERVER_PID.

PORT_BASE=${PORT_BASE:-24440}
export TANDEM_LOG=${TANDEM_LOG:-warn}

# How long the node may take to answer its first probe, and to stop after SIGTERM (it drains
# connections for at most 10 s, then commits what is queued).
START_TIMEOUT_S=30
STOP_TIMEOUT_S=30

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/deps.sh
source "$ROOT/bench/deps.sh"
# The probe that says the node is up (installed when missing).
bench_needs curl
BIN="${BIN_DIR:-$ROOT/target/release}"
SERVICE_ADDR="127.0.0.1:$((PORT_BASE + 3))"
SERVER_PID=""

node_build() {
    if [[ "${SKIP_BUILD:-}" != 1 ]]; then
        bench_needs cargo
        echo "== building (release)" >&2
        (cd "$ROOT" && cargo build --release -p tandem -p tandem-bench)
    fi
}

node_cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ "$KEEP" == 0 ]]; then
        rm -rf "$WORK"
    fi
}

# The work directory (BENCH_DIR or a temporary one) and the node in it, created on first use.
node_prepare() {
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
    trap node_cleanup EXIT

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
}

# Starts `tandem serve` and waits until it answers its load-balancer probe.
node_start() {
    echo "== starting the node on $SERVICE_ADDR" >&2
    "$BIN/tandem" --data-dir "$NODE" serve 2>>"$WORK/serve.log" &
    SERVER_PID=$!
    local deadline=$((SECONDS + START_TIMEOUT_S))
    until curl -skf --max-time 2 "https://$SERVICE_ADDR/status/status.html" >/dev/null 2>&1; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null || ((SECONDS > deadline)); then
            echo "the node did not answer its probe within ${START_TIMEOUT_S} s; log:" >&2
            tail -n 20 "$WORK/serve.log" >&2
            return 1
        fi
        sleep 0.2
    done
}

# Stops the node with SIGTERM; fails unless it exits cleanly within STOP_TIMEOUT_S.
node_stop() {
    echo "== stopping the node (SIGTERM)" >&2
    kill -TERM "$SERVER_PID"
    local deadline=$((SECONDS + STOP_TIMEOUT_S))
    while kill -0 "$SERVER_PID" 2>/dev/null && ((SECONDS <= deadline)); do
        sleep 0.2
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "the node did not stop within ${STOP_TIMEOUT_S} s of SIGTERM" >&2
        return 1
    fi
    local server_status=0
    wait "$SERVER_PID" || server_status=$?
    SERVER_PID=""
    if [[ "$server_status" != 0 ]]; then
        echo "the node exited with status $server_status; log:" >&2
        tail -n 20 "$WORK/serve.log" >&2
        return 1
    fi
    echo "== node stopped cleanly" >&2
}
