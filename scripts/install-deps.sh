#!/usr/bin/env bash
# Install what MusQraTT needs on a fresh Debian 12 machine (run as root).
#
#   scripts/install-deps.sh run    # toolchain check + DPDK/lwIP dev packages (enough for `make serve`)
#   scripts/install-deps.sh test   # + mosquitto, mosquitto-clients, tmux, python venv with paho-mqtt 2.x + pytest,
#                                  #   node + npm with mqtt.js (tests/ws)
#                                  #   nightly toolchain (minimal) + cargo-fuzz for make test-fuzz
#
# Idempotent: when everything is present it only checks and returns quickly.
set -euo pipefail

MODE="${1:-test}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"

log() { echo "install-deps: $*" >&2; }
die() { echo "install-deps: error: $*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# --- Rust toolchain (rustup cannot download here: only check) --------------
check_rust() {
    command -v cargo >/dev/null 2>&1 || die "cargo not found; install a Rust toolchain (rustup) first"
    if [ "$MODE" = test ]; then
        cargo fmt --version >/dev/null 2>&1 \
            || die "rustfmt missing: run 'rustup component add rustfmt' (needs network access to the Rust dist server)"
        cargo clippy --version >/dev/null 2>&1 \
            || die "clippy missing: run 'rustup component add clippy' (needs network access to the Rust dist server)"
    fi
}

# --- Fuzzing (make fuzz / test-fuzz): a nightly toolchain and cargo-fuzz ----------------
# The fuzz crate (fuzz/) needs nightly's -Z flags (coverage instrumentation); the minimal
# profile is enough (rustc, cargo, rust-std). cargo-fuzz builds from crates.io with the stable
# toolchain; libfuzzer-sys compiles libFuzzer's C++ sources (g++).
fuzz_tools() {
    apt_install g++
    if ! cargo +nightly --version >/dev/null 2>&1; then
        command -v rustup >/dev/null 2>&1 || die "no nightly toolchain and no rustup to install one"
        log "installing the nightly toolchain (minimal profile) for cargo-fuzz"
        rustup toolchain install nightly --profile minimal >&2
    fi
    if ! cargo fuzz --version >/dev/null 2>&1; then
        log "installing cargo-fuzz"
        cargo install cargo-fuzz --locked >&2
    fi
}

# --- Debian packages --------------------------------------------------------
APT_UPDATED=0
apt_install() {
    local missing=()
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    if [ "$APT_UPDATED" -eq 0 ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    # policy-rc.d 101 keeps the package's init script from starting the service.
    local rc_created=0
    if [ ! -e /usr/sbin/policy-rc.d ] && [ "$(id -u)" -eq 0 ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        rc_created=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    [ "$rc_created" -eq 1 ] && rm -f /usr/sbin/policy-rc.d
    return 0
}

# Debian's mosquitto package starts a system broker on 1883; our broker owns that port.
# Tests that want Mosquitto as a peer start their own instance on a free port.
stop_system_mosquitto() {
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        if systemctl is-enabled --quiet mosquitto 2>/dev/null || systemctl is-active --quiet mosquitto 2>/dev/null; then
            log "stopping and disabling the system mosquitto service"
            as_root systemctl disable --now mosquitto >/dev/null 2>&1 || true
        fi
    else
        if [ -x /etc/init.d/mosquitto ] && command -v update-rc.d >/dev/null 2>&1; then
            as_root update-rc.d mosquitto disable >/dev/null 2>&1 || true
        fi
        local pidfile=/run/mosquitto/mosquitto.pid
        if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            log "stopping the system mosquitto (pid $(cat "$pidfile"))"
            as_root kill "$(cat "$pidfile")" || true
        fi
    fi
}

# --- Python venv with paho-mqtt 2.x and pytest ------------------------------
python_env() {
    local py="${PYTHON:-python3}"
    command -v "$py" >/dev/null 2>&1 || { apt_install python3; py=python3; }
    if [ ! -x "$VENV/bin/python" ]; then
        if ! "$py" -m venv --help >/dev/null 2>&1; then
            apt_install python3-venv
        fi
        log "creating Python venv at $VENV"
        "$py" -m venv "$VENV" || { apt_install python3-venv; rm -rf "$VENV"; "$py" -m venv "$VENV"; }
    fi
    if ! "$VENV/bin/python" - <<'PY' 2>/dev/null
import sys
import paho.mqtt, pytest  # noqa: F401
sys.exit(0 if int(paho.mqtt.__version__.split(".")[0]) >= 2 else 1)
PY
    then
        log "installing paho-mqtt 2.x and pytest into $VENV"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check 'paho-mqtt>=2,<3' 'pytest>=7' >&2
    fi
}

# --- mqtt.js for the WebSocket tests (tests/paho/test_websocket.py) --------------
# Debian's node and npm; the package and its lockfile are in broker-component/server/tests/ws.
node_env() {
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || apt_install nodejs npm
    local dir="$ROOT/broker-component/server/tests/ws"
    if [ ! -d "$dir/node_modules/mqtt" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
        log "installing mqtt.js into $dir/node_modules"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
    fi
}

# The user-level network path (`[network] stack = "lwip-dpdk"`, built into every release
# binary): DPDK and lwIP from Debian, libclang for bindgen; iproute2/ethtool for the
# namespace topologies of runscripts/ and the tests (docs/deploy-dpdk.md).
NET_PKGS=(libdpdk-dev dpdk liblwip-dev libclang-dev pkg-config iproute2 ethtool)

# The appliance (`make image`, `make boot-disk`, `make run`, its smoke test): QEMU, UEFI
# firmware for the boot disk, the image's packing tools.
# Not qemu-utils: machine images may carry a newer one that conflicts with bookworm's
# qemu-system (docs/appliance.md).
APPLIANCE_PKGS=(qemu-system-x86 cpio e2fsprogs lz4 ovmf dosfstools mtools fdisk)

check_rust
case "$MODE" in
    run)
        apt_install "${NET_PKGS[@]}"
        apt_install "${APPLIANCE_PKGS[@]}"
        ;;
    test)
        apt_install "${NET_PKGS[@]}"
        apt_install "${APPLIANCE_PKGS[@]}"
        # openssl: the wss tests (tests/paho/test_websocket.py) make their certificates with it.
        apt_install mosquitto mosquitto-clients tmux ca-certificates openssl
        stop_system_mosquitto
        python_env
        node_env
        fuzz_tools
        ;;
    *) die "usage: $0 [run|test]" ;;
esac
log "ok ($MODE)"
