#!/usr/bin/env bash
# The broker on lwIP over DPDK's net_af_packet, on a veth pair between two network namespaces:
#
#   broker namespace  musq-b-SUFFIX: veth end musq-dpdk, NO kernel address; lwIP owns 10.99.0.2/24
#   peer namespace    musq-p-SUFFIX: veth end musq-peer, 10.99.0.1/24, checksum offload off
#
#   runscripts/lwip-af-packet.sh [EXTRA.toml]
#
# EXTRA.toml is appended to the generated config (e.g. [limits] or [hold] settings; not [network]
# or [[listener]], which this script writes). Run as root; Ctrl-C stops the broker and removes the
# namespaces and /var/run/dpdk/PREFIX (also when a step fails). MUSQRATT_BIN picks the binary, else
# target/release/musqratt is built with --features lwip-dpdk.
# Environment: MUSQ_STACK=kernel runs the same topology with the broker on kernel sockets (the
# broker end then gets 10.99.0.2/24), for comparison.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib/netns.sh
. "$here/lib/netns.sh"
# shellcheck source=lib/broker.sh
. "$here/lib/broker.sh"

if [[ $# -gt 1 || ${1:-} == -h || ${1:-} == --help ]]; then
    sed -n '2,15p' "$0" >&2
    exit 2
fi
extra=${1:-}
[[ -z $extra || -r $extra ]] || { echo "cannot read $extra" >&2; exit 1; }
stack=${MUSQ_STACK:-lwip-dpdk}
case $stack in lwip-dpdk | kernel) ;; *) echo "MUSQ_STACK: kernel or lwip-dpdk" >&2; exit 2 ;; esac
musq_need_root
musq_need_tools ip ethtool
if [[ $stack == lwip-dpdk ]]; then bin=$(musq_bin lwip-dpdk); else bin=$(musq_bin); fi

sfx=$(musq_suffix)
bns=musq-b-$sfx
pns=musq-p-$sfx
bif=musq-dpdk
pif=musq-peer
prefix=musq-$sfx
broker_ip=10.99.0.2
peer_cidr=10.99.0.1/24
port=1883
dir=$(mktemp -d /tmp/musqratt-afp-XXXXXX)

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e # clean up everything, whatever fails
    musq_stop_broker
    musq_netns_del "$bns" "$pns"
    musq_dpdk_clean "$prefix"
    rm -rf -- "$dir"
    echo "removed namespaces $bns $pns and /var/run/dpdk/$prefix" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ $stack == lwip-dpdk ]]; then
    musq_netns_pair "$bns" "$bif" "$pns" "$pif" "$peer_cidr"
    cat >"$dir/musqratt.toml" <<TOML
[network]
stack = "lwip-dpdk"
ip = "$broker_ip/24"
gateway = "${peer_cidr%/*}"
eal_args = ["--no-huge", "--no-pci", "--no-shconf", "-m", "256", "-l", "0", "--file-prefix", "$prefix", "--vdev=net_af_packet0,iface=$bif"]

[[listener]]
bind = "$broker_ip:$port"
TOML
else
    musq_netns_pair "$bns" "$bif" "$pns" "$pif" "$peer_cidr" "$broker_ip/24"
    cat >"$dir/musqratt.toml" <<TOML
[network]
stack = "kernel"

[[listener]]
bind = "$broker_ip:$port"
TOML
fi
[[ -n $extra ]] && cat "$extra" >>"$dir/musqratt.toml"

cat <<MSG
musqratt ($stack) in namespace $bns, reachable from namespace $pns at $broker_ip:$port:
  ip netns exec $pns mosquitto_sub -h $broker_ip -t '#' -v
  ip netns exec $pns mosquitto_pub -h $broker_ip -t demo -m hello -q 1
config: $dir/musqratt.toml     Ctrl-C stops the broker and removes the namespaces.
MSG
musq_run_broker ip netns exec "$bns" "$bin" serve -c "$dir/musqratt.toml" --in-memory
