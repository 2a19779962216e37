#!/usr/bin/env bash
# MusQraTT on lwIP over DPDK's net_af_packet beside MusQraTT on kernel sockets, on one veth
# pair between two network namespaces (issue 12). Run by `make bench` at its end (scripts/bench.sh;
# BENCH_NETNS=0 skips it), or alone:
#
#   scripts/bench-netns.sh            # root; binaries already built (see below)
#
#   broker namespace  musq-bb-SUFFIX: veth end musq-dpdk; 10.99.0.2/24 on it for the kernel set-up,
#                     no kernel address for the lwIP set-up (lwIP owns 10.99.0.2 there)
#   peer namespace    musq-bp-SUFFIX: veth end musq-peer, 10.99.0.1/24, checksum offload off;
#                     musqratt-bench runs here against 10.99.0.2:1883
#
# Per round, both set-ups one after the other (order alternating, as in bench.sh), each run on a
# freshly started broker: the latency scenario and fan-in QoS 1 with bench.sh's flags. Then the
# idle CPU of each set-up: no client, utime + stime of /proc/PID/stat over BENCH_IDLE_SECS.
# Results: JSON lines in $BENCH_OUT/netns.jsonl, a markdown table on stdout and in
# $BENCH_OUT/netns.md. The namespaces and /var/run/dpdk/PREFIX are removed on any exit.
#
# Knobs (environment): BENCH_ROUNDS=3  BENCH_SECS=5 (latency: 4x)  BENCH_IDLE_SECS=20
#   BENCH_OUT=target/bench  BENCH_MUSQRATT_BIN (default target/release/musqratt, which must be built
#   with --features lwip-dpdk)  BENCH_GEN_BIN (default target/release/musqratt-bench)
#   BENCH_LWIP_IDLE_US: the lwIP set-up's [network] idle_sleep_max_us (default: the broker's, 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=../runscripts/lib/netns.sh
. "$ROOT/runscripts/lib/netns.sh"

ROUNDS=${BENCH_ROUNDS:-3}
SECS=${BENCH_SECS:-5}
IDLE_SECS=${BENCH_IDLE_SECS:-20}
OUT=${BENCH_OUT:-$ROOT/target/bench}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
MUSQRATT=${BENCH_MUSQRATT_BIN:-$TARGET/release/musqratt}
GEN=${BENCH_GEN_BIN:-$TARGET/release/musqratt-bench}

log() { printf '[bench-netns] %s\n' "$*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
    log "must run as root (network namespaces, DPDK)"
    exit 1
fi
for t in ip ethtool python3; do
    command -v "$t" >/dev/null || { log "'$t' not found"; exit 1; }
done
for b in "$MUSQRATT" "$GEN"; do
    [[ -x $b ]] || {
        log "$b missing: cargo build --release -p musqratt -p musqratt-bench --features musqratt/lwip-dpdk"
        exit 1
    }
done

sfx=$(musq_suffix)
BNS=musq-bb-$sfx
PNS=musq-bp-$sfx
BIF=musq-dpdk
PIF=musq-peer
PREFIX=musq-bench-$sfx
BROKER_IP=10.99.0.2
PEER_CIDR=10.99.0.1/24
PORT=1883
CLK_TCK=$(getconf CLK_TCK)

mkdir -p "$OUT/logs"
RESULTS=$OUT/netns.jsonl
: >"$RESULTS"
DIR=$(mktemp -d /tmp/musqratt-bench-netns-XXXXXX)

BROKER_PID=
stop_broker() {
    local pid=$BROKER_PID
    BROKER_PID=
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    musq_dpdk_clean "$PREFIX"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e # clean up everything, whatever fails
    stop_broker
    musq_netns_del "$BNS" "$PNS"
    musq_dpdk_clean "$PREFIX"
    rm -rf -- "$DIR"
    log "removed namespaces $BNS $PNS and /var/run/dpdk/$PREFIX"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

musq_netns_pair "$BNS" "$BIF" "$PNS" "$PIF" "$PEER_CIDR"

# Same limits as bench.sh's musqratt.toml; only [network] differs between the two set-ups.
LIMITS='[limits]
max_queued_messages = 1000000
max_inflight = 64'
cat >"$DIR/kernel.toml" <<EOF
[network]
stack = "kernel"

[[listener]]
bind = "$BROKER_IP:$PORT"

$LIMITS
EOF
cat >"$DIR/lwip.toml" <<EOF
[network]
stack = "lwip-dpdk"
ip = "$BROKER_IP/24"
gateway = "${PEER_CIDR%/*}"
eal_args = ["--no-huge", "--no-pci", "--no-shconf", "-m", "256", "-l", "0", "--file-prefix", "$PREFIX", "--vdev=net_af_packet0,iface=$BIF"]
${BENCH_LWIP_IDLE_US:+idle_sleep_max_us = $BENCH_LWIP_IDLE_US}

[[listener]]
bind = "$BROKER_IP:$PORT"

$LIMITS
EOF

# A TCP connect from the peer namespace (1 s at most: lwIP answers no ARP before it is up).
port_open() {
    ip netns exec "$PNS" timeout 1 bash -c "exec 3<>/dev/tcp/$BROKER_IP/$PORT" 2>/dev/null
}

# start_broker SETUP (kernel | lwip): the broker in the broker namespace, listening when this returns.
# `ip netns exec` execs the command, so $! is the broker's pid.
start_broker() {
    local setup=$1
    ip -n "$BNS" addr flush dev "$BIF" || return 1
    if [[ $setup == kernel ]]; then
        musq_addr "$BNS" "$BIF" "$BROKER_IP/24" || return 1
    fi
    if port_open; then
        log "something already answers on $BROKER_IP:$PORT"
        return 1
    fi
    ip netns exec "$BNS" "$MUSQRATT" serve -c "$DIR/$setup.toml" --in-memory \
        >>"$OUT/logs/netns-$setup.log" 2>&1 &
    BROKER_PID=$!
    for _ in $(seq 150); do
        kill -0 "$BROKER_PID" 2>/dev/null || break
        if port_open; then return 0; fi
        sleep 0.1
    done
    log "musqratt ($setup) did not start listening (see $OUT/logs/netns-$setup.log)"
    stop_broker
    return 1
}

# run LABEL ROUND SETUP ARGS...: one generator run on a fresh broker, one JSON line.
run() {
    local label=$1 round=$2 setup=$3 line rc=0 err=
    shift 3
    if ! start_broker "$setup"; then
        echo "{\"label\":\"$label\",\"broker\":\"musqratt-$setup\",\"round\":$round,\"error\":\"broker did not start\"}" >>"$RESULTS"
        return 0
    fi
    line=$(ip netns exec "$PNS" timeout 120 "$GEN" "$@" --label "$label" --broker "musqratt-$setup" \
        --broker-pid "$BROKER_PID" --host "$BROKER_IP" --port "$PORT" 2>"$OUT/logs/netns-gen.err") || rc=$?
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
        err="broker exited during the run (see $OUT/logs/netns-$setup.log)"
    elif [[ $rc -ne 0 ]]; then
        err="generator exit $rc: $(tr '\n"' ' ' <"$OUT/logs/netns-gen.err" | head -c 300)"
    fi
    if [[ -n $err ]]; then
        log "$label $setup round $round: $err"
        echo "{\"label\":\"$label\",\"broker\":\"musqratt-$setup\",\"round\":$round,\"error\":\"$err\"}" >>"$RESULTS"
    else
        echo "${line%\}},\"round\":$round}" >>"$RESULTS"
        log "$label $setup round $round: $(python3 scripts/bench_plot.py --summary "$line")"
    fi
    stop_broker
}

# CPU ticks (utime + stime) of a process, and of each of its threads (name: ticks), from /proc.
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
thread_ticks() {
    local t
    for t in /proc/"$1"/task/*; do
        printf '%s %s\n' "$(tr ' ' _ <"$t/comm")" "$(ticks "$1/task/${t##*/}")"
    done
}

# idle SETUP: the broker with no client for IDLE_SECS (after 2 s to settle), % of one core.
idle() {
    local setup=$1 t0 t1 w0 w1 pct threads
    if ! start_broker "$setup"; then
        echo "{\"label\":\"idle\",\"broker\":\"musqratt-$setup\",\"round\":1,\"error\":\"broker did not start\"}" >>"$RESULTS"
        return 0
    fi
    sleep 2
    thread_ticks "$BROKER_PID" >"$DIR/threads0"
    t0=$(ticks "$BROKER_PID") w0=$(date +%s.%N)
    sleep "$IDLE_SECS"
    t1=$(ticks "$BROKER_PID") w1=$(date +%s.%N)
    thread_ticks "$BROKER_PID" >"$DIR/threads1"
    pct=$(python3 -c "print(round(100 * ($t1 - $t0) / $CLK_TCK / ($w1 - $w0), 2))")
    # The threads that used CPU, busiest first (thread names repeat: summed by name).
    threads=$(python3 - "$DIR/threads0" "$DIR/threads1" "$CLK_TCK" "$w0" "$w1" <<'PY'
import sys, collections
def load(p):
    d = collections.Counter()
    for line in open(p):
        name, t = line.split()
        d[name] += int(t)
    return d
a, b = load(sys.argv[1]), load(sys.argv[2])
tck, wall = int(sys.argv[3]), float(sys.argv[5]) - float(sys.argv[4])
used = {n: 100 * (b[n] - a.get(n, 0)) / tck / wall for n in b}
print(", ".join(f"{n} {p:.2f}%" for n, p in sorted(used.items(), key=lambda kv: -kv[1]) if p > 0) or "none")
PY
)
    log "idle $setup: $pct% of one core over $IDLE_SECS s (threads: $threads)"
    echo "{\"label\":\"idle\",\"broker\":\"musqratt-$setup\",\"round\":1,\"idle_secs\":$IDLE_SECS,\"cpu_pct\":$pct,\"threads\":\"$threads\"}" >>"$RESULTS"
    stop_broker
}

START=$(date +%s)
for round in $(seq "$ROUNDS"); do
    # kernel lwip, lwip kernel, …: each set-up first in every other round.
    order=(kernel lwip)
    ((round % 2 == 0)) && order=(lwip kernel)
    for setup in "${order[@]}"; do
        run latency-q0 "$round" "$setup" latency --qos 0 --rate 1000 --duration $((SECS * 4))
    done
    for setup in "${order[@]}"; do
        run fan-in-q1 "$round" "$setup" fan-in --qos 1 --publishers 8 --inflight 64 --duration "$SECS"
    done
done
for setup in kernel lwip; do
    idle "$setup"
done
log "runs took $(($(date +%s) - START)) s; results in $RESULTS"

# --- Table ---------------------------------------------------------------------------
DAMON=$(cat /sys/kernel/mm/damon/admin/kdamonds/*/state 2>/dev/null | sort -u | tr '\n' ' ')
case $DAMON in *on*) DAMON="kdamond running" ;; off*) DAMON="kdamond paused" ;; *) DAMON="no DAMON" ;; esac
MACHINE="$(nproc) cores (\`nproc\`), Linux $(uname -r), $DAMON"
python3 - "$RESULTS" "$ROUNDS" "$IDLE_SECS" "$SECS" "$MACHINE" >"$OUT/netns.md" <<'PY'
import datetime, json, statistics, sys

runs = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if line:
        d = json.loads(line)
        runs.setdefault((d["label"], d["broker"]), []).append(d)
rounds, idle_secs, secs, machine = sys.argv[2:6]
K, L = "musqratt-kernel", "musqratt-lwip"

def ok(label, b):
    return [r for r in runs.get((label, b), []) if not r.get("error")]

def med(label, b, f):
    vs = [f(r) for r in ok(label, b)]
    return statistics.median(vs) if vs else None

def num(v, digits=0):
    if v is None:
        return "–"
    if digits == 0 and abs(v) >= 1e6:
        return f"{v / 1e6:.2f} M"
    if digits == 0 and abs(v) >= 1e4:
        return f"{v / 1e3:.0f} k"
    return f"{v:,.{digits}f}"

def ratio(a, b):
    return f"{b / a:.2f}×" if a and b is not None else "–"

rows = []
lat = lambda k: (lambda r: r["latency_us"][k])
for k, name in (("p50", "p50 µs"), ("p99", "p99 µs"), ("p999", "p99.9 µs")):
    a, b = med("latency-q0", K, lat(k)), med("latency-q0", L, lat(k))
    rows.append(("latency QoS 0 at 1,000 msg/s", name, num(a, 1), num(b, 1), ratio(a, b)))
a, b = (med("fan-in-q1", x, lambda r: r["msgs_per_s"]) for x in (K, L))
rows.append(("fan-in QoS 1, 8 pub -> 1 sub", "delivered msg/s", num(a), num(b), ratio(a, b)))
a, b = (sum(r.get("lost", 0) for r in ok("fan-in-q1", x)) for x in (K, L))
rows.append(("fan-in QoS 1, 8 pub -> 1 sub", "lost (all rounds)", f"{a:,}", f"{b:,}", ""))
a, b = (med("idle", x, lambda r: r["cpu_pct"]) for x in (K, L))
rows.append(("idle broker, no client", f"CPU % of one core ({idle_secs} s)", num(a, 2), num(b, 2), ""))

out = [f"Run on {datetime.date.today().isoformat()} by `scripts/bench-netns.sh` ({rounds} rounds, "
       f"medians; latency {4 * int(secs)} s and fan-in {secs} s per run, idle {idle_secs} s). "
       f"Machine: {machine}.", "",
       f"| scenario | metric | kernel sockets | lwIP over net_af_packet | lwIP / kernel |",
       "|---|---|---|---|---|"]
out += ["| " + " | ".join(r) + " |" for r in rows]
out += ["", "CPU during the runs, medians over rounds (% of one core; *softirq* includes the veth and "
        "af_packet work charged to no process):", "",
        "| run | set-up | rounds | broker CPU % | generator CPU % | softirq % | other CPU % | errors |",
        "|---|---|---|---|---|---|---|---|"]
for label in ("latency-q0", "fan-in-q1"):
    for b in (K, L):
        rs = ok(label, b)
        errs = sorted({r["error"] for r in runs.get((label, b), []) if r.get("error")})
        c = lambda f: num(med(label, b, lambda r: r.get("cpu", {}).get(f, 0)))
        out.append(f"| {label} | {b.split('-')[1]} | {len(rs)} | {c('broker_cpu_pct')} | "
                   f"{c('gen_cpu_pct')} | {c('softirq_pct')} | {c('other_cpu_pct')} | {'; '.join(errs)} |")
for b in (K, L):
    for r in runs.get(("idle", b), []):
        if not r.get("error"):
            out += ["", f"Idle, {b.split('-')[1]} set-up, CPU by thread: {r['threads']}."]
print("\n".join(out))
PY
cat "$OUT/netns.md"
