#!/usr/bin/env bash
# Side-by-side benchmark of MusQraTT and Debian's Mosquitto on loopback (issue 5).
#
# Every scenario runs against both brokers alternately, each first in every other round (A B B A A B …), each run on
# a freshly started broker so no run inherits another's queues or memory. The
# results are JSON lines in $BENCH_OUT/results.jsonl; scripts/bench_plot.py
# turns them into a table of medians (printed), docs/benchmarks.md and
# docs/benchmarks.png. docs/benchmarks.md explains the method.
#
# Knobs (environment):
#   BENCH_ROUNDS=3     rounds per scenario and broker
#   BENCH_LAT_ROUNDS=5 rounds of the latency scenario (its p99.9 is the 20 worst of
#                      20,000 samples: a few stalls of the machine move it a lot)
#   BENCH_SECS=5       measurement window of each throughput run (latency: 4x)
#   BENCH_CLIENTS=19000  idle connections in the conns scenario
#   BENCH_ONLY="fan-in-q0 conns"  run only these labels
#   BENCH_INTERLEAVE=1 latency: both brokers at once, taking turns every
#                      BENCH_SLICE_MS=250 ms (0: one after the other, like the rest)
#   BENCH_DOCS=1       0: do not rewrite docs/benchmarks.{md,png}
#   BENCH_OUT=target/bench
#   BENCH_QUIET=1      0: leave the kernel's DAMON memory scanner running (see below)
#   BENCH_NETNS=1      0: skip the last part, MusQraTT on lwIP beside MusQraTT on kernel
#                      sockets on one veth (scripts/bench-netns.sh; root; label "netns"
#                      for BENCH_ONLY). Its table goes into its own section at the end of
#                      docs/benchmarks.md
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ROUNDS=${BENCH_ROUNDS:-3}
LAT_ROUNDS=${BENCH_LAT_ROUNDS:-5}
SECS=${BENCH_SECS:-5}
CLIENTS=${BENCH_CLIENTS:-19000}
ONLY=${BENCH_ONLY:-}
INTERLEAVE=${BENCH_INTERLEAVE:-1}
SLICE_MS=${BENCH_SLICE_MS:-250}
DOCS=${BENCH_DOCS:-1}
OUT=${BENCH_OUT:-$ROOT/target/bench}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
VENV=${BENCH_VENV:-$ROOT/target/bench-venv}
# Uncommon ports, so a broker someone left on 1883/18883 is never measured instead.
MOSQ_PORT=${BENCH_MOSQ_PORT:-27883}
MUSQ_PORT=${BENCH_MUSQ_PORT:-27884}

log() { printf '[bench] %s\n' "$*" >&2; }

# --- A quieter machine -----------------------------------------------------------
# On these VMs the kernel's DAMON scanner (kdamond, proactive reclaim) wakes every
# 500 ms and holds a vCPU for 1-4 ms; a thread woken behind it waits that long.
# That, not either broker, made the latency scenario's p99.9 (docs/benchmarks.md).
# It is paused for the runs, for both brokers alike, and switched back on at exit.
DAMON_PAUSED=()
if [ "${BENCH_QUIET:-1}" = 1 ]; then
    for state in /sys/kernel/mm/damon/admin/kdamonds/*/state; do
        [ -w "$state" ] && [ "$(cat "$state" 2>/dev/null)" = on ] || continue
        if echo off >"$state" 2>/dev/null; then
            DAMON_PAUSED+=("$state")
            log "paused DAMON ($state) for the runs"
        fi
    done
fi
restore_damon() {
    local state
    for state in "${DAMON_PAUSED[@]}"; do
        echo on >"$state" 2>/dev/null || log "could not switch $state back on"
    done
    DAMON_PAUSED=()
}
MACHINE_NOTE="kdamond running"
[ ${#DAMON_PAUSED[@]} -gt 0 ] && MACHINE_NOTE="kdamond paused during the runs"
[ -e /sys/kernel/mm/damon/admin/kdamonds ] || MACHINE_NOTE="no DAMON"

# --- Mosquitto: Debian's package, with its system service out of the way ------
if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
    log "installing Debian's mosquitto"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null
fi
# The package starts a service on 1883; we run our own instance on $MOSQ_PORT.
systemctl disable --now mosquitto >/dev/null 2>&1 || true
service mosquitto stop >/dev/null 2>&1 || true
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
# The TLS scenarios' certificates are made with the openssl command-line tool.
if ! command -v openssl >/dev/null; then
    log "installing Debian's openssl"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
fi

# --- Build ---------------------------------------------------------------------
log "building musqratt and musqratt-bench (release)"
cargo build --release -q -p musqratt -p musqratt-bench --features musqratt/lwip-dpdk
MUSQRATT=${BENCH_MUSQRATT_BIN:-$TARGET/release/musqratt}
GEN=$TARGET/release/musqratt-bench

mkdir -p "$OUT/logs"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"

# Same limits for both brokers: queues deep enough that QoS 1/2 never drop
# (what is measured is throughput, not a drop policy), 64 messages in flight
# per client (MusQraTT's default; Mosquitto's is 20), no connection cap.
cat >"$OUT/mosquitto.conf" <<EOF
listener $MOSQ_PORT 127.0.0.1
allow_anonymous true
max_connections -1
max_queued_messages 1000000
max_inflight_messages 64
persistence false
log_dest stderr
log_type error
log_type warning
EOF
# The durable comparison (issue 13): Mosquitto as its users run it for durability
# (`persistence true`: in-memory state saved on shutdown and every autosave_interval, so it
# acknowledges before anything reaches the disk), against MusQraTT's store with fsync = "always"
# (nothing acknowledged before it is fsynced).
sed -e 's/^persistence false$/persistence true/' "$OUT/mosquitto.conf" >"$OUT/mosquitto-persist.conf"
echo "persistence_location $OUT/mosquitto-data/" >>"$OUT/mosquitto-persist.conf"
cat >"$OUT/musqratt.toml" <<EOF
[limits]
max_queued_messages = 1000000
max_inflight = 64
EOF

# The TLS comparison (issue 15): one CA and one server certificate (P-256, for 127.0.0.1) for
# both brokers; the generator trusts the CA (--cafile). The key is readable by everyone: Mosquitto
# drops to its own user before reading it, and it protects nothing but these runs.
TLS_DIR=$OUT/tls
mkdir -p "$TLS_DIR"
(
    cd "$TLS_DIR"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
        -out ca.pem -days 2 -subj "/CN=musqratt bench CA" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
        -out server.csr -subj "/CN=127.0.0.1" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
        -days 2 -extfile server.ext 2>/dev/null
    chmod 644 server.key
)
sed -e "s|^listener .*|&\ncertfile $TLS_DIR/server.pem\nkeyfile $TLS_DIR/server.key|" \
    "$OUT/mosquitto.conf" >"$OUT/mosquitto-tls.conf"
{
    cat "$OUT/musqratt.toml"
    printf '\n[[listener]]\nbind = "127.0.0.1:%s"\n' "$MUSQ_PORT"
    printf 'tls = { cert = "%s", key = "%s" }\n' "$TLS_DIR/server.pem" "$TLS_DIR/server.key"
} >"$OUT/musqratt-tls.toml"

BROKER_PID=
# start_broker NAME: musqratt-wN runs with --workers N; musqratt uses the default.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_broker() {
    local name=$1 port=$MUSQ_PORT
    [[ $name == mosquitto* ]] && port=$MOSQ_PORT
    if port_open "$port"; then
        log "port $port is taken by another process: set BENCH_MOSQ_PORT / BENCH_MUSQ_PORT"
        exit 1
    fi
    case $name in
        mosquitto)
            "$MOSQUITTO" -c "$OUT/mosquitto.conf" 2>>"$OUT/logs/$name.log" &
            ;;
        mosquitto-tls)
            "$MOSQUITTO" -c "$OUT/mosquitto-tls.conf" 2>>"$OUT/logs/$name.log" &
            ;;
        musqratt-tls)
            "$MUSQRATT" serve -c "$OUT/musqratt-tls.toml" --in-memory >>"$OUT/logs/$name.log" 2>&1 &
            ;;
        mosquitto-persist)
            rm -rf "$OUT/mosquitto-data" && mkdir -p "$OUT/mosquitto-data"
            "$MOSQUITTO" -c "$OUT/mosquitto-persist.conf" 2>>"$OUT/logs/$name.log" &
            ;;
        musqratt-durable)
            # A fresh store each run, fsync = "always" (the default).
            rm -rf "$OUT/musqratt-data"
            "$MUSQRATT" serve -c "$OUT/musqratt.toml" --listen "127.0.0.1:$port" \
                --data-dir "$OUT/musqratt-data" >>"$OUT/logs/$name.log" 2>&1 &
            ;;
        musqratt*)
            local workers=()
            [[ $name == musqratt-w* ]] && workers=(--workers "${name#musqratt-w}")
            "$MUSQRATT" serve -c "$OUT/musqratt.toml" --listen "127.0.0.1:$port" --in-memory \
                "${workers[@]}" >>"$OUT/logs/$name.log" 2>&1 &
            ;;
    esac
    BROKER_PID=$!
    BROKER_PORT=$port
    for _ in $(seq 100); do
        kill -0 "$BROKER_PID" 2>/dev/null || break
        if port_open "$port"; then return 0; fi
        sleep 0.05
    done
    log "$name did not start listening on $port"
    return 1
}

stop_broker() {
    local pid=${1:-$BROKER_PID}
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
OTHER_PID=
trap 'stop_broker; stop_broker "$OTHER_PID"; restore_damon' EXIT
trap 'exit 130' INT TERM

# run LABEL ROUND BROKER SCENARIO ARGS...: one run on a fresh broker, one line.
run() {
    local label=$1 round=$2 broker=$3 line rc=0
    shift 3
    start_broker "$broker" || {
        not_started "$label" "$round" "$broker"
        return
    }
    line=$(timeout 120 "$GEN" "$@" --label "$label" --broker "$broker" \
        --broker-pid "$BROKER_PID" --port "$BROKER_PORT" 2>"$OUT/logs/gen.err") || rc=$?
    record "$label" "$round" "$broker" "$BROKER_PID" "$rc" "$line" "$OUT/logs/gen.err"
    stop_broker
}

not_started() {
    echo "{\"label\":\"$1\",\"broker\":\"$3\",\"round\":$2,\"error\":\"broker did not start\"}" >>"$RESULTS"
}

# record LABEL ROUND BROKER PID RC LINE ERRFILE: appends one result line (or the error).
record() {
    local label=$1 round=$2 broker=$3 pid=$4 rc=$5 line=$6 errfile=$7 err=
    if ! kill -0 "$pid" 2>/dev/null; then
        err="broker exited during the run (see $OUT/logs/$broker.log)"
    elif [ "$rc" -ne 0 ]; then
        err="generator exit $rc: $(tr '\n"' ' ' <"$errfile" | head -c 300)"
    fi
    if [ -n "$err" ]; then
        log "$label $broker round $round: $err"
        echo "{\"label\":\"$label\",\"broker\":\"$broker\",\"round\":$round,\"error\":\"$err\"}" >>"$RESULTS"
    else
        echo "${line%\}},\"round\":$round}" >>"$RESULTS"
        log "$label $broker round $round: $(summary "$line")"
    fi
}

# run_interleaved LABEL ROUND MOSQUITTO MUSQRATT ARGS...: the latency scenario on both brokers
# (start_broker names) at once, each generator publishing only in its own time slices
# (--slice-ms, --turn; bench/src/slices.rs), so both brokers see the same minutes of the
# machine. Each generator prints the usual line for its broker.
run_interleaved() {
    local label=$1 round=$2 mname=$3 qname=$4 mpid mport qpid qport
    shift 4
    if ! start_broker "$mname"; then
        not_started "$label" "$round" "$mname"
        return 0
    fi
    mpid=$BROKER_PID mport=$BROKER_PORT OTHER_PID=$BROKER_PID
    if ! start_broker "$qname"; then
        not_started "$label" "$round" "$qname"
        stop_broker "$mpid"
        OTHER_PID=
        return 0
    fi
    qpid=$BROKER_PID qport=$BROKER_PORT
    # gen BROKER PID PORT TURN: one generator in the background, its line in a file.
    gen() {
        timeout 180 "$GEN" "${args[@]}" --turn "$4" --label "$label" --broker "$1" \
            --broker-pid "$2" --port "$3" >"$OUT/logs/gen-$1.out" 2>"$OUT/logs/gen-$1.err" &
    }
    local args=("$@") mgen qgen mrc=0 qrc=0
    # Turns swap every round (the schedule inside a round is hashed anyway).
    gen "$mname" "$mpid" "$mport" $((round % 2))
    mgen=$!
    gen "$qname" "$qpid" "$qport" $(((round + 1) % 2))
    qgen=$!
    wait "$mgen" || mrc=$?
    wait "$qgen" || qrc=$?
    record "$label" "$round" "$mname" "$mpid" "$mrc" "$(cat "$OUT/logs/gen-$mname.out")" \
        "$OUT/logs/gen-$mname.err"
    record "$label" "$round" "$qname" "$qpid" "$qrc" "$(cat "$OUT/logs/gen-$qname.out")" \
        "$OUT/logs/gen-$qname.err"
    stop_broker "$qpid"
    stop_broker "$mpid"
    OTHER_PID=
}

summary() { python3 scripts/bench_plot.py --summary "$1"; }

wanted() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }

# label | generator arguments. Every scenario stops by itself.
SCENARIOS=(
    "fan-in-q0|fan-in --qos 0 --publishers 8 --duration $SECS"
    "fan-in-q1|fan-in --qos 1 --publishers 8 --inflight 64 --duration $SECS"
    "fan-in-q2|fan-in --qos 2 --publishers 8 --inflight 64 --duration $SECS"
    "fan-out-q0|fan-out --qos 0 --subscribers 8 --duration $SECS"
    "pairs-q0|pairs --qos 0 --pairs 8 --duration $SECS"
    "latency-q0|latency --qos 0 --rate 1000 --duration $((SECS * 4))"
    "conns|conns --clients $CLIENTS --procs 4 --threads 2 --src 127.0.0.2-9"
)

# What is measured: the commit, and whether the broker's sources differ from it.
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git status --porcelain -- broker-component 2>/dev/null)" ] &&
    COMMIT="$COMMIT with uncommitted changes in broker-component/"

START=$(date +%s)
for entry in "${SCENARIOS[@]}"; do
    label=${entry%%|*}
    read -r -a args <<<"${entry#*|}"
    wanted "$label" || continue
    rounds=$ROUNDS
    [[ $label == latency* ]] && rounds=$LAT_ROUNDS
    for round in $(seq "$rounds"); do
        # A B B A A B …: each broker goes first in half the rounds, so an
        # effect of the order (what the previous run left behind) cancels.
        order=(mosquitto musqratt)
        ((round % 2 == 0)) && order=(musqratt mosquitto)
        if [[ $label == latency* ]] && [ "$INTERLEAVE" = 1 ]; then
            # Both brokers at once, in turns of $SLICE_MS ms: twice the wall
            # time for the same number of samples each (this --duration comes
            # after the entry's, and the generator takes the last one).
            run_interleaved "$label" "$round" mosquitto musqratt "${args[@]}" --slice-ms "$SLICE_MS" \
                --duration $((SECS * 8))
            continue
        fi
        for broker in "${order[@]}"; do
            run "$label" "$round" "$broker" "${args[@]}"
        done
    done
done
# Scaling: the same load on MusQraTT with one worker, then two.
if wanted scaling; then
    for round in $(seq "$ROUNDS"); do
        for broker in musqratt-w1 musqratt-w2; do
            run scaling "$round" "$broker" pairs --qos 0 --pairs 8 --duration "$SECS"
        done
    done
fi
# Durability: QoS 1 fan-in on the durable store beside in-memory and Mosquitto's persistence.
if wanted fan-in-q1-durable; then
    for round in $(seq "$ROUNDS"); do
        for broker in mosquitto-persist musqratt-durable musqratt; do
            # --persistent: the subscriber's session outlives its connection, so its queue is
            # what a durable broker must store (a clean session's is not stored at all).
            run fan-in-q1-durable "$round" "$broker" fan-in --qos 1 --publishers 8 --inflight 64 \
                --persistent --duration "$SECS"
        done
    done
fi
# TLS (issue 15): QoS 1 fan-in and QoS 0 latency through each broker's TLS listener, same
# certificate, the generator verifying it against the CA (TLS 1.3 on both: rustls and OpenSSL 3.0
# pick it). Latency interleaved as above.
if wanted fan-in-q1-tls; then
    for round in $(seq "$ROUNDS"); do
        order=(mosquitto-tls musqratt-tls)
        ((round % 2 == 0)) && order=(musqratt-tls mosquitto-tls)
        for broker in "${order[@]}"; do
            run fan-in-q1-tls "$round" "$broker" fan-in --qos 1 --publishers 8 --inflight 64 \
                --duration "$SECS" --cafile "$TLS_DIR/ca.pem"
        done
    done
fi
if wanted latency-q0-tls; then
    for round in $(seq "$LAT_ROUNDS"); do
        run_interleaved latency-q0-tls "$round" mosquitto-tls musqratt-tls latency --qos 0 \
            --rate 1000 --cafile "$TLS_DIR/ca.pem" --slice-ms "$SLICE_MS" --duration $((SECS * 8))
    done
fi
# The lwIP path beside the kernel path on one veth (issue 12): its own script, its own table.
NETNS_MD=
if [ "${BENCH_NETNS:-1}" = 1 ] && wanted netns; then
    if [ "$(id -u)" -ne 0 ]; then
        log "not root: skipping the lwIP / kernel runs on a veth (scripts/bench-netns.sh)"
    elif BENCH_ROUNDS=$ROUNDS BENCH_SECS=$SECS BENCH_OUT=$OUT BENCH_MUSQRATT_BIN=$MUSQRATT \
        BENCH_GEN_BIN=$GEN scripts/bench-netns.sh; then
        NETNS_MD=$OUT/netns.md
    else
        log "scripts/bench-netns.sh failed: the veth section of docs/benchmarks.md is left as it was"
    fi
fi
log "runs took $(($(date +%s) - START)) s; results in $RESULTS"
restore_damon

# --- Table and plot --------------------------------------------------------------
PY=python3
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
    log "installing matplotlib into $VENV"
    { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q matplotlib; } >&2 || log "no matplotlib: table only"
fi
"$VENV/bin/python" -c 'import matplotlib' 2>/dev/null && PY=$VENV/bin/python
DOC_ARGS=()
[ "$DOCS" = 1 ] && DOC_ARGS=(--md docs/benchmarks.md --png docs/benchmarks.png)
# bench_plot.py rewrites everything after <!-- results --> in docs/benchmarks.md: the sections
# written by hand after its tables (## headings other than "Latest results") are put back after it.
DOC_TAIL=$OUT/benchmarks-tail.md
[ "$DOCS" = 1 ] && python3 - docs/benchmarks.md >"$DOC_TAIL" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
after = text.split("<!-- results -->", 1)[1] if "<!-- results -->" in text else ""
m = re.search(r"^## (?!Latest results)", after, re.M)
sys.stdout.write(after[m.start():] if m else "")
PY
if [ -s "$RESULTS" ]; then
    "$PY" scripts/bench_plot.py "$RESULTS" --mosquitto "$("$MOSQUITTO" -h 2>&1 | head -1)" \
        --commit "$COMMIT" --note "$MACHINE_NOTE" "${DOC_ARGS[@]}"
fi
# Then the veth table replaces the one between the markers of its section (added at the end if
# the file has none).
if [ "$DOCS" = 1 ]; then
    python3 - docs/benchmarks.md "$DOC_TAIL" "$NETNS_MD" "$COMMIT" <<'PY'
import sys
md, tail_file, netns_md, commit = sys.argv[1:5]
text = open(md).read()
tail = open(tail_file).read()
if tail and tail.strip() not in text:
    text = text.rstrip("\n") + "\n\n" + tail
if netns_md:
    begin, end = "<!-- netns-results -->", "<!-- /netns-results -->"
    table = open(netns_md).read().strip("\n").replace(
        "by `scripts/bench-netns.sh` (", f"by `make bench` (`scripts/bench-netns.sh`, MusQraTT at {commit}, ", 1)
    block = f"{begin}\n{table}\n{end}"
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = (text.rstrip("\n") + "\n\n## The lwIP path beside the kernel path on one veth\n\n"
                + block + "\n")
open(md, "w").write(text.rstrip("\n") + "\n")
PY
fi
