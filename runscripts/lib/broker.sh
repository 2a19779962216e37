#!/usr/bin/env bash
# Helpers shared by the runscripts: the broker binary, root check, running the broker so that
# Ctrl-C / SIGTERM stop it cleanly and the caller's EXIT trap then removes what the run made.
# Sourced, not run.

MUSQ_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

musq_need_root() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "$(basename "$0"): must run as root (network namespaces, DPDK)" >&2
        exit 1
    fi
}

musq_need_tools() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null || {
            echo "$(basename "$0"): '$t' not found (apt-get install iproute2 ethtool)" >&2
            exit 1
        }
    done
}

# The broker binary: $MUSQRATT_BIN if set, else target/release/musqratt built now (a no-op when it
# is up to date) with the cargo features given (e.g. lwip-dpdk).
musq_bin() {
    if [[ -n ${MUSQRATT_BIN:-} ]]; then
        [[ -x $MUSQRATT_BIN ]] || {
            echo "$(basename "$0"): MUSQRATT_BIN=$MUSQRATT_BIN is not executable" >&2
            exit 1
        }
        echo "$MUSQRATT_BIN"
        return
    fi
    local features=()
    [[ $# -gt 0 ]] && features=(--features "$*")
    (cd "$MUSQ_ROOT" && cargo build --release -p musqratt "${features[@]}" >&2) || exit 1
    echo "${CARGO_TARGET_DIR:-$MUSQ_ROOT/target}/release/musqratt"
}

# Run "$@" (the broker command) in the background and wait for it. On SIGINT/SIGTERM the broker
# gets SIGTERM (it stops cleanly on it) and we wait for it to end; the script then exits with the
# broker's status and its EXIT trap cleans up. Backgrounding it is what lets the trap run while the
# broker is up: bash runs traps only between foreground commands.
musq_run_broker() {
    "$@" &
    MUSQ_BROKER_PID=$!
    trap 'musq_stop_broker; exit 130' INT
    trap 'musq_stop_broker; exit 143' TERM
    local rc=0
    wait "$MUSQ_BROKER_PID" || rc=$?
    MUSQ_BROKER_PID=
    return "$rc"
}

musq_stop_broker() {
    if [[ -n ${MUSQ_BROKER_PID:-} ]]; then
        kill -TERM "$MUSQ_BROKER_PID" 2>/dev/null || true
        wait "$MUSQ_BROKER_PID" 2>/dev/null || true
        MUSQ_BROKER_PID=
    fi
}
