#!/usr/bin/env bash
# Network namespace helpers shared by the runscripts and by the integration test
# broker-component/server/tests/lwip_netns.rs. Needs root, iproute2 and ethtool.
#
# Source it for the functions, or run it as a command (what the Rust test does):
#   netns.sh pair BROKER_NS BROKER_IF PEER_NS PEER_IF PEER_CIDR [BROKER_CIDR]
#   netns.sh single NS                  # one namespace with lo up, IPv6 off
#   netns.sh addr NS IF CIDR            # put an address on IF in NS and bring it up
#   netns.sh down NS...                 # kill what runs in each NS, then delete it
#   netns.sh dpdk-clean PREFIX...       # remove /var/run/dpdk/PREFIX (EAL runtime files)
#
# Why these steps (docs/deploy-dpdk.md, "Troubleshooting"):
# - The veth is created *inside* the two namespaces (never in the host's), so interface names
#   only need to be unique per namespace and nothing is left in the host if a step fails.
# - The broker end gets no address when lwIP owns it: a kernel address there would make the kernel
#   answer ARP and reset TCP for lwIP's address.
# - `ethtool -K PEER_IF tx off` is required: otherwise the peer's kernel leaves TCP checksums to an
#   offload that af_packet never performs and lwIP drops every SYN (ICMP works, TCP does not).
# - IPv6 is off on both ends so router solicitations and DAD do not add noise to the link.

set -euo pipefail

# Namespace and interface names: letters, digits, '-', '_' and '.', as `ip` takes them. Checked so
# that a name can never become an option or a path outside /var/run/{netns,dpdk}.
musq_check_name() {
    local n
    for n in "$@"; do
        if [[ ! $n =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]]; then
            echo "netns.sh: bad name '$n'" >&2
            return 2
        fi
    done
}

# Every setup command ends in `|| return`: these functions also run inside `if !`, where errexit
# is off, and a half-made topology must be reported, not carried on with.

# A namespace with loopback up and IPv6 disabled (also for interfaces created later: default).
musq_netns_add() {
    local ns=$1
    musq_check_name "$ns" || return
    ip netns add "$ns" || return
    ip -n "$ns" link set lo up || return
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
        net.ipv6.conf.default.disable_ipv6=1 || return
}

# A veth pair between two existing namespaces, both ends up, IPv6 off, checksum offload off on
# the peer end; PEER_CIDR on the peer end, BROKER_CIDR (optional) on the broker end.
musq_veth_pair() {
    local bns=$1 bif=$2 pns=$3 pif=$4 pcidr=$5 bcidr=${6:-}
    musq_check_name "$bns" "$bif" "$pns" "$pif" || return
    ip -n "$bns" link add "$bif" type veth peer name "$pif" netns "$pns" || return
    ip netns exec "$bns" sysctl -qw "net.ipv6.conf.$bif.disable_ipv6=1" || return
    ip netns exec "$pns" sysctl -qw "net.ipv6.conf.$pif.disable_ipv6=1" || return
    ip netns exec "$pns" ethtool -K "$pif" tx off >/dev/null || return
    ip -n "$pns" addr add "$pcidr" dev "$pif" || return
    if [[ -n $bcidr ]]; then
        ip -n "$bns" addr add "$bcidr" dev "$bif" || return
    fi
    ip -n "$bns" link set "$bif" up || return
    ip -n "$pns" link set "$pif" up || return
}

# Two namespaces joined by a veth pair (see musq_veth_pair). On failure, removes what it made.
musq_netns_pair() {
    local bns=$1 bif=$2 pns=$3 pif=$4 pcidr=$5 bcidr=${6:-}
    musq_check_name "$bns" "$bif" "$pns" "$pif" || return
    # Refuse names in use: the clean-up below must only ever delete namespaces made here.
    if [[ -e /var/run/netns/$bns || -e /var/run/netns/$pns ]]; then
        echo "netns.sh: namespace $bns or $pns exists already" >&2
        return 1
    fi
    if ! { musq_netns_add "$bns" && musq_netns_add "$pns" &&
        musq_veth_pair "$bns" "$bif" "$pns" "$pif" "$pcidr" "$bcidr"; }; then
        echo "netns.sh: could not set up $bns <-> $pns; removing them" >&2
        musq_netns_del "$bns" "$pns"
        return 1
    fi
}

# An address on an interface in a namespace, interface brought up (IPv6 off on it first).
musq_addr() {
    local ns=$1 ifc=$2 cidr=$3
    musq_check_name "$ns" "$ifc" || return
    ip netns exec "$ns" sysctl -qw "net.ipv6.conf.$ifc.disable_ipv6=1" || return
    ip -n "$ns" addr add "$cidr" dev "$ifc" || return
    ip -n "$ns" link set "$ifc" up || return
}

# Kill every process still running in each namespace (they were started in it by us: the
# namespaces are per run), then delete it. Missing namespaces are fine: this runs from traps.
musq_netns_del() {
    local ns pids
    for ns in "$@"; do
        musq_check_name "$ns" || continue
        [[ -e /var/run/netns/$ns ]] || continue
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        if [[ -n $pids ]]; then
            # shellcheck disable=SC2086 # one pid per word
            kill -TERM $pids 2>/dev/null || true
            for _ in 1 2 3 4 5 6 7 8 9 10; do
                [[ -z $(ip netns pids "$ns" 2>/dev/null || true) ]] && break
                sleep 0.2
            done
            pids=$(ip netns pids "$ns" 2>/dev/null || true)
            # shellcheck disable=SC2086
            [[ -n $pids ]] && kill -KILL $pids 2>/dev/null || true
        fi
        ip netns del "$ns" 2>/dev/null || true
    done
}

# The EAL's runtime directory of one --file-prefix (made even with --no-shconf).
musq_dpdk_clean() {
    local p
    for p in "$@"; do
        musq_check_name "$p" || continue
        rm -rf -- "/var/run/dpdk/$p"
    done
}

# A per-run suffix for names: short (interface names are at most 15 bytes) and unique per process.
musq_suffix() {
    printf '%x%04x' "$$" "$((RANDOM))" | tail -c 8
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    cmd=${1:-}
    shift || true
    case $cmd in
        pair) musq_netns_pair "$@" ;;
        single) musq_netns_add "$@" ;;
        addr) musq_addr "$@" ;;
        down) musq_netns_del "$@" ;;
        dpdk-clean) musq_dpdk_clean "$@" ;;
        *)
            sed -n '2,12p' "$0" >&2
            exit 2
            ;;
    esac
fi
