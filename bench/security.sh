#!/usr/bin/env bash
# Wrong-password flood benchmark (issue 16, "Tests and figures"): one node serving check-ins,
# the same check-in load measured twice against it, first without and then with a flood of
# wrong passwords for an existing admin user (`tandem-loadgen --password-flood`), and the ratios
# between the two runs.
#
#   bench/security.sh                              # the issue's setting: 64 flood connections, 30 s
#   DEVICES=2000 DURATION=5s bench/security.sh     # a quick check
#   REPEAT=3 BENCH_DIR=/var/tmp/tandem-security bench/security.sh   # 3 pairs; keep the node
#
# Environment (defaults in brackets):
#   DEVICES [20000]: the fleet; enrolled once (kept in BENCH_DIR). Smaller than checkin.sh's
#     100,000 so enrollment stays short: a 30 s run reaches about as many devices anyway.
#   DURATION [30s]  WARMUP [2s]  CONNECTIONS [32]  REQUESTS_PER_CONNECTION [10]
#   PROBE_INTERVAL [10ms]  ENROLL_CONCURRENCY [32]: the check-in load, as in bench/checkin.sh
#   FLOOD_CONNECTIONS [64]  FLOOD_USER [admin]: the flood (the user must exist)
#   SETTLE [5s]: idle time after each run before the server's memory is read the last time
#   REPEAT [1]: pairs of runs (without the flood, then with it) against the same node
#   REFERENCE [unset]: set to 1 to also run tandem-loadgen's reference phase in every run
#   RESULTS_DIR [unset]: keep each run's JSON there (else it goes with the work directory)
#   and bench/node.sh's: BENCH_DIR PORT_BASE SKIP_BUILD BIN_DIR TANDEM_LOG
#
# Prints each run's report, then per pair: check-in and probe p99 without and with the flood
# and their ratio, the flood's answers by status, and the server's RSS (start, peak, after
# SETTLE), marked PASS or MISS against the issue's bounds (peak RSS below 256 MB, p99 ratios at
# most 2).
#
# A benchmark, not a test: exit status 0 whatever the numbers, 1 only when the run could not be
# carried out (build, node start or clean stop, the load generator unable to run). Needs curl
# and python3, and Rust (cargo) to build; the first two are installed when missing (bench/deps.sh).
set -euo pipefail

DEVICES=${DEVICES:-20000}
DURATION=${DURATION:-30s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-32}
REQUESTS_PER_CONNECTION=${REQUESTS_PER_CONNECTION:-10}
ENROLL_CONCURRENCY=${ENROLL_CONCURRENCY:-32}
PROBE_INTERVAL=${PROBE_INTERVAL:-10ms}
FLOOD_CONNECTIONS=${FLOOD_CONNECTIONS:-64}
FLOOD_USER=${FLOOD_USER:-admin}
SETTLE=${SETTLE:-5s}
REPEAT=${REPEAT:-1}

# tandem-loadgen's exit status when the run could not be carried out (1 only says that more
# than 0.1 % of the check-ins failed, which under a flood is a result, not a failure to run).
LOADGEN_EXIT_FAILURE=2

# Build, work directory, node start and stop: shared with bench/checkin.sh.
# shellcheck source=bench/node.sh
source "$(dirname "${BASH_SOURCE[0]}")/node.sh"
bench_needs python3

node_build
node_prepare
node_start
RESULTS=${RESULTS_DIR:-$WORK/results}
mkdir -p "$RESULTS"

# run NAME [EXTRA ARGUMENTS…]: one load-generator run, its report on stdout, its JSON in
# $RESULTS/NAME.json.
run() {
    local name=$1
    shift
    local loadgen=("$BIN/tandem-loadgen"
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
        --server-pid "$SERVER_PID"
        --settle "$SETTLE"
        --json-file "$RESULTS/$name.json")
    if [[ "${REFERENCE:-}" != 1 ]]; then
        loadgen+=(--no-reference)
    fi
    echo "== $name" >&2
    local status=0
    "${loadgen[@]}" "$@" || status=$?
    if [[ "$status" -ge "$LOADGEN_EXIT_FAILURE" || ! -s "$RESULTS/$name.json" ]]; then
        echo "$name: the load generator could not run (exit status $status)" >&2
        return 1
    fi
}

for ((pair = 1; pair <= REPEAT; pair++)); do
    run "pair$pair-without-flood"
    run "pair$pair-with-flood" --password-flood "$FLOOD_CONNECTIONS" --flood-user "$FLOOD_USER"
done

node_stop

python3 - "$RESULTS" "$REPEAT" "$FLOOD_CONNECTIONS" "$DURATION" "$SETTLE" <<'PY'
import json, sys

results, repeat, flood_connections, duration, settle = sys.argv[1:]
# The issue's bounds (issue 16): peak RSS under 256 MB (10^6 bytes), p99 within 2x.
RSS_BOUND_MB = 256.0
P99_RATIO_BOUND = 2.0
MB = 1e6

def verdict(met):
    return "PASS" if met else "MISS"

print(f"\nWrong-password flood: {flood_connections} connections, {duration} per run, "
      f"server memory read again after {settle} idle")
for pair in range(1, int(repeat) + 1):
    runs = {}
    for mode in ("without", "with"):
        with open(f"{results}/pair{pair}-{mode}-flood.json") as f:
            runs[mode] = json.load(f)["checkin"]
    off, on = runs["without"], runs["with"]
    print(f"\npair {pair}                    without flood   with flood    ratio  bound")
    def latency(name, key):
        a, b = off[key]["p99_ms"], on[key]["p99_ms"]
        ratio = b / a if a > 0 else float("inf")
        print(f"  {name:<24} {a:>10.2f} ms {b:>10.2f} ms {ratio:>8.2f}  "
              f"<= {P99_RATIO_BOUND:g}x {verdict(ratio <= P99_RATIO_BOUND)}")
    print(f"  {'check-ins/s':<24} {off['requests_per_second']:>13.0f} "
          f"{on['requests_per_second']:>13.0f} "
          f"{on['requests_per_second'] / max(off['requests_per_second'], 1e-9):>8.2f}")
    latency("check-in p99", "latency")
    latency("probe p99", "probe")
    print(f"  {'check-in errors':<24} {off['errors']:>13} {on['errors']:>13}")
    memory = {mode: runs[mode]["memory"] for mode in runs}
    if all(memory.values()):
        def row(name, key):
            values = [memory[mode][key] for mode in ("without", "with")]
            text = ["unknown" if v is None else f"{v / MB:.1f} MB" for v in values]
            print(f"  {name:<24} {text[0]:>13} {text[1]:>13}", end="")
            return values
        row("RSS at start", "start_bytes")
        print()
        peaks = row("RSS peak", "peak_bytes")
        print(f"           < {RSS_BOUND_MB:g} MB {verdict(peaks[1] < RSS_BOUND_MB * MB)}")
        row("RSS at the end", "end_bytes")
        print()
        after = row(f"RSS after {settle} idle", "after_settle_bytes")
        start = memory["with"]["start_bytes"]
        if after[1] is not None:
            print(f"           (with flood: {(after[1] - start) / MB:+.1f} MB from its start)")
        else:
            print()
        # The anonymous part (heap): VmRSS also counts mapped database pages, which grow with
        # the database during any check-in load.
        row("RssAnon at start", "anon_start_bytes")
        print()
        row("RssAnon peak", "anon_peak_bytes")
        print()
        anon_after = row(f"RssAnon after {settle} idle", "anon_after_settle_bytes")
        anon_start = memory["with"]["anon_start_bytes"]
        if anon_after[1] is not None:
            print(f"           (with flood: {(anon_after[1] - anon_start) / MB:+.1f} MB from its start)")
        else:
            print()
    else:
        print("  server memory: not read (no /proc?)")
    flood = on["flood"]
    print(f"  flood answers/s: 401 {flood['unauthorized_401_per_second']:.0f}, "
          f"429 {flood['too_many_requests_429_per_second']:.0f}, "
          f"503 {flood['busy_503_per_second']:.0f}, other {flood['other_per_second']:.0f}, "
          f"errors {flood['errors_per_second']:.0f} "
          f"(total {flood['requests_per_second']:.0f}/s, "
          f"{flood['connections_opened']} connections opened)")
    cpu = {mode: runs[mode]["cpu"] for mode in runs}
    print(f"  CPU: server {cpu['without']['server_pct']:.0f}% / {cpu['with']['server_pct']:.0f}%, "
          f"load generator {cpu['without']['loadgen_pct']:.0f}% / {cpu['with']['loadgen_pct']:.0f}%, "
          f"machine busy {cpu['without']['machine_busy_pct']:.0f}% / "
          f"{cpu['with']['machine_busy_pct']:.0f}% (without / with flood)")
PY
