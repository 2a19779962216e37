#!/usr/bin/env bash
# The broker on kernel sockets, as `make serve` runs it: on 127.0.0.1:1883, or as CONFIG says.
#
#   runscripts/kernel.sh [CONFIG.toml]
#
# Ctrl-C stops it. MUSQRATT_BIN picks another binary (else target/release/musqratt is built).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib/broker.sh
. "$here/lib/broker.sh"

if [[ $# -gt 1 || ${1:-} == -h || ${1:-} == --help ]]; then
    sed -n '2,6p' "$0" >&2
    exit 2
fi
bin=$(musq_bin)
if [[ $# -eq 1 ]]; then
    args=(-c "$1")
    echo "musqratt on kernel sockets, config $1"
else
    args=(--listen 127.0.0.1:1883)
    echo "musqratt on kernel sockets: mosquitto_sub -h 127.0.0.1 -t '#' -v"
fi
musq_run_broker "$bin" serve "${args[@]}"
