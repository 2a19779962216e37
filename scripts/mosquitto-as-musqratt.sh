#!/usr/bin/env bash
# Stand-in for the broker binary that runs Debian's Mosquitto instead, to check the test suites
# themselves: MUSQRATT_BIN=scripts/mosquitto-as-musqratt.sh cargo test -p musqratt --test rumqttc_client
# Understands only `serve --listen 127.0.0.1:PORT [other flags ignored]` (PORT 0: a free port).
set -euo pipefail
[ "${1:-}" = serve ] || { echo "usage: $0 serve --listen ADDR:PORT" >&2; exit 2; }
shift
listen=127.0.0.1:1883
while [ $# -gt 0 ]; do
    case "$1" in
        --listen) listen="$2"; shift 2 ;;
        *) shift ;;
    esac
done
# Port 0 (what the test helpers pass): Mosquitto cannot take an OS-chosen port, so pick a free one
# here (racy, but this stand-in only checks the test suites by hand).
if [ "${listen##*:}" = 0 ]; then
    listen="${listen%:*}:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
fi
dir="$(mktemp -d)"
cat >"$dir/mosquitto.conf" <<CONF
listener ${listen##*:} ${listen%:*}
allow_anonymous true
log_dest stderr
log_type all
CONF
# Announce the listener once it accepts connections; exec so that killing us kills Mosquitto.
(
    for _ in $(seq 200); do
        if (exec 3<>"/dev/tcp/${listen%:*}/${listen##*:}") 2>/dev/null; then break; fi
        sleep 0.05
    done
    echo "listening on mqtt://$listen"
) &
exec /usr/sbin/mosquitto -c "$dir/mosquitto.conf"
