#!/usr/bin/env bash
# The broker on lwIP over DPDK's net_tap, in its own network namespace:
#
#   namespace musq-t-SUFFIX: the broker (lwIP owns 10.99.0.2/24) and the tap musqtap0 that DPDK
#   creates there, which this script gives 10.99.0.1/24 so clients in the namespace reach lwIP.
#
#   runscripts/lwip-tap.sh [EXTRA.toml]
#
# EXTRA.toml is appended to the generated config (not [network] or [[listener]]). Run as root;
# Ctrl-C stops the broker and removes the namespace (the tap goes with the process) and
# /var/run/dpdk/PREFIX. MUSQRATT_BIN picks the binary, else target/release/musqratt is built with
# --features lwip-dpdk. net_tap needs no `ethtool -K tx off`: the tap hands lwIP whole frames with
# their checksums filled in.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib/netns.sh
. "$here/lib/netns.sh"
# shellcheck source=lib/broker.sh
. "$here/lib/broker.sh"

if [[ $# -gt 1 || ${1:-} == -h || ${1:-} == --help ]]; then
    sed -n '2,13p' "$0" >&2
    exit 2
fi
extra=${1:-}
[[ -z $extra || -r $extra ]] || { echo "cannot read $extra" >&2; exit 1; }
musq_need_root
musq_need_tools ip
[[ -e /dev/net/tun ]] || { echo "no /dev/net/tun: modprobe tun" >&2; exit 1; }
bin=$(musq_bin lwip-dpdk)

sfx=$(musq_suffix)
ns=musq-t-$sfx
tap=musqtap0
prefix=musq-$sfx
broker_ip=10.99.0.2
peer_cidr=10.99.0.1/24
port=1883
dir=$(mktemp -d /tmp/musqratt-tap-XXXXXX)

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e # clean up everything, whatever fails
    [[ -n ${waiter:-} ]] && kill "$waiter" 2>/dev/null || true
    musq_stop_broker
    musq_netns_del "$ns"
    musq_dpdk_clean "$prefix"
    rm -rf -- "$dir"
    echo "removed namespace $ns and /var/run/dpdk/$prefix" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

musq_netns_add "$ns"
cat >"$dir/musqratt.toml" <<TOML
[network]
stack = "lwip-dpdk"
ip = "$broker_ip/24"
gateway = "${peer_cidr%/*}"
eal_args = ["--no-huge", "--no-pci", "--no-shconf", "-m", "256", "-l", "0", "--file-prefix", "$prefix", "--vdev=net_tap0,iface=$tap"]

[[listener]]
bind = "$broker_ip:$port"
TOML
[[ -n $extra ]] && cat "$extra" >>"$dir/musqratt.toml"

# The tap exists only once the broker's EAL has probed net_tap: address it then, from the side.
(
    for _ in $(seq 1 200); do
        if ip -n "$ns" link show "$tap" >/dev/null 2>&1; then
            musq_addr "$ns" "$tap" "$peer_cidr" && cat <<MSG
musqratt (lwip-dpdk over net_tap) in namespace $ns at $broker_ip:$port; $tap has $peer_cidr:
  ip netns exec $ns mosquitto_sub -h $broker_ip -t '#' -v
  ip netns exec $ns mosquitto_pub -h $broker_ip -t demo -m hello -q 1
config: $dir/musqratt.toml     Ctrl-C stops the broker and removes the namespace.
MSG
            exit 0
        fi
        sleep 0.1
    done
    echo "lwip-tap.sh: $tap did not appear in $ns within 20 s" >&2
) &
waiter=$!
musq_run_broker ip netns exec "$ns" "$bin" serve -c "$dir/musqratt.toml" --in-memory
