# shellcheck shell=bash
# What the bench scripts need from the system, installed when missing, as scripts/test does for
# the tests, so every bench script runs on a fresh Debian machine. Source it, then name the
# commands the script runs:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/deps.sh"
#   bench_needs curl python3 sqlite3
#
# Each command maps to the Debian package that provides it (bench_package_of below). The
# missing ones are installed with one `apt-get install` (as root, or through sudo). On a system
# without apt-get, or with BENCH_INSTALL=0, the script stops instead and names the packages.
# `cargo` is not a Debian package here: it must come from rustup, as for the tests.
# Not a script of its own.

# The Debian package that provides COMMAND; empty for a command this file does not know.
bench_package_of() {
    case "$1" in
        curl) echo curl ;;
        python3) echo python3 ;;
        sqlite3) echo sqlite3 ;;
        bc) echo bc ;;
        sshd) echo openssh-server ;;
        ssh | scp | ssh-keygen) echo openssh-client ;;
        haproxy) echo haproxy ;;
        perf) echo linux-perf ;;
        valgrind) echo valgrind ;;
        *) echo "" ;;
    esac
}

# True when COMMAND can be run (sshd and haproxy live in /usr/sbin, which a user's PATH may
# lack).
bench_has() {
    command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" ]]
}

# bench_needs COMMAND...: returns once every COMMAND can be run, installing what is missing.
bench_needs() {
    local command package missing=() unknown=()
    for command in "$@"; do
        bench_has "$command" && continue
        if [[ "$command" == cargo ]]; then
            echo "bench: cargo is missing; install Rust with rustup (https://rustup.rs), then run this again" >&2
            return 1
        fi
        package=$(bench_package_of "$command")
        if [[ -z "$package" ]]; then
            unknown+=("$command")
        elif [[ " ${missing[*]} " != *" $package "* ]]; then
            missing+=("$package")
        fi
    done
    if ((${#unknown[@]})); then
        echo "bench: ${unknown[*]} missing, and bench/deps.sh knows no package for it; install it by hand" >&2
        return 1
    fi
    ((${#missing[@]})) || return 0
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null 2>&1 && sudo=(sudo)
    fi
    if [[ "${BENCH_INSTALL:-1}" == 0 ]] || ! command -v apt-get >/dev/null 2>&1 ||
        { [[ "$(id -u)" != 0 ]] && ((${#sudo[@]} == 0)); }; then
        echo "bench: missing ${missing[*]}; install them (Debian: apt-get install ${missing[*]}), then run this again" >&2
        return 1
    fi
    echo "bench: installing ${missing[*]}" >&2
    # A package with a service (openssh-server) must not start it: the benchmark starts its own
    # on a port of its choosing. policy-rc.d is Debian's switch for that; one already present is
    # left alone.
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 755 "$policy"
        own_policy=1
    fi
    local status=0
    "${sudo[@]}" apt-get update -qq &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
        status=$?
    if ((own_policy)); then "${sudo[@]}" rm -f "$policy"; fi
    if ((status)); then
        echo "bench: installing ${missing[*]} failed (apt-get exit status $status)" >&2
        return 1
    fi
    for command in "$@"; do
        bench_has "$command" || { echo "bench: $command still missing after installing ${missing[*]}" >&2; return 1; }
    done
}
