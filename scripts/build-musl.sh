#!/usr/bin/env bash
# Build a static `musqratt` for the project's own target, x86_64-unknown-musqratt-musl:
# Rust's std compiled from source (Debian's rust-web-src) over musl libc.
#
#   scripts/build-musl.sh                 # -> target/x86_64-unknown-musqratt-musl/release/musqratt
#   MUSL_FEATURES= scripts/build-musl.sh  # musl's own malloc, no lwIP/DPDK path
#
# MUSL_FEATURES (cargo features of the musqratt crate) defaults to "mimalloc,lwip-dpdk" (each
# when the crate has it): musl's malloc halves the broker's throughput under threads, and the
# static binary carries the user-level network path like target/release/musqratt does. With
# lwip-dpdk, DPDK comes from Debian's static archives and lwIP is compiled from Debian's source
# (scripts/fetch-lwip-src.sh); docs/runtime.md "The static build on the lwIP path".
#
# Installs Debian's rustc-web, cargo-web, rust-web-src, musl-tools, musl-dev and libunwind-14-dev
# when missing (run as root, or with sudo). Idempotent: a second run only checks and lets cargo
# decide there is nothing to rebuild. See rust-std-port/README.md and docs/runtime.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TARGET_NAME=x86_64-unknown-musqratt-musl
TARGET_JSON="rust-std-port/$TARGET_NAME.json"
CARGO_CONFIG="rust-std-port/cargo-config.toml"
PROFILE="${MUSL_PROFILE:-release}"
if [ -z "${MUSL_FEATURES+set}" ]; then
    FEATURES=""
    grep -q '^mimalloc *=' broker-component/server/Cargo.toml && FEATURES="mimalloc"
    grep -q '^lwip-dpdk *=' broker-component/server/Cargo.toml && FEATURES="${FEATURES:+$FEATURES,}lwip-dpdk"
else
    FEATURES="${MUSL_FEATURES-}"
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="$TARGET_DIR/$TARGET_NAME/$PROFILE/musqratt"
SUPPORT="$TARGET_DIR/$TARGET_NAME/musqratt-support"

log() { echo "build-musl: $*" >&2; }
die() { echo "build-musl: error: $*" >&2; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --- 1. Debian toolchain packages -----------------------------------------------------------
PKGS=(rustc-web cargo-web rust-web-src musl-tools musl-dev libunwind-14-dev)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # apt-get update only when the package lists do not know the packages yet.
    if ! as_root apt-get install -y -qq "${missing[@]}" >&2; then
        log "apt-get update"
        as_root apt-get update -qq
        as_root apt-get install -y -qq "${missing[@]}" >&2
    fi
fi

# Our dependencies need a recent Rust (rustyline 19 uses `cfg_select!`, stable since 1.95).
# Bookworm has rustc-web 1.85 in bookworm/main and newer ones in bookworm-security: package lists
# older than those updates install 1.85, which cannot build them. Then update and upgrade.
MIN_RUSTC_MINOR=95
rustc_minor() { /usr/bin/rustc --version 2>/dev/null | sed -nE 's/^rustc 1\.([0-9]+)\..*/\1/p'; }
minor="$(rustc_minor)"
if [ -z "$minor" ] || [ "$minor" -lt "$MIN_RUSTC_MINOR" ]; then
    log "Debian's rustc is 1.${minor:-?}, older than 1.$MIN_RUSTC_MINOR: apt-get update and upgrade"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq "${PKGS[@]}" >&2
    minor="$(rustc_minor)"
    [ -n "$minor" ] && [ "$minor" -ge "$MIN_RUSTC_MINOR" ] \
        || die "Debian's rustc-web is 1.${minor:-?} after an upgrade; 1.$MIN_RUSTC_MINOR or newer is needed"
fi

# rustup's ~/.cargo/bin comes first on PATH: always name Debian's tools explicitly.
CARGO_DEB=/usr/bin/cargo
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
[ -x "$CARGO_DEB" ] && [ -x "$RUSTC" ] || die "Debian's /usr/bin/cargo or /usr/bin/rustc is missing"
SYSROOT_SRC="$("$RUSTC" --print sysroot)/lib/rustlib/src/rust/library"
[ -f "$SYSROOT_SRC/Cargo.lock" ] || die "std source not found at $SYSROOT_SRC (package rust-web-src)"
for f in /usr/lib/x86_64-linux-musl/rcrt1.o /usr/lib/x86_64-linux-musl/libc.a \
         /usr/lib/gcc/x86_64-linux-gnu/12/crtbeginS.o /usr/lib/llvm-14/lib/libunwind.a; do
    [ -e "$f" ] || die "missing $f (musl-dev, gcc-12, libunwind-14-dev)"
done

# --- 2. libunwind for musl: LLVM 14's archive + a __fprintf_chk stub --------------------------
# std's unwind crate links libunwind.a statically on musl (panic=unwind, as in the glibc build).
# Debian's copy calls glibc's __fprintf_chk; add a forwarder compiled against musl.
mkdir -p "$SUPPORT"
STUB_SRC=rust-std-port/unwind-stub/fprintf_chk.c
if [ ! -f "$SUPPORT/libunwind.a" ] || [ "$STUB_SRC" -nt "$SUPPORT/libunwind.a" ] \
   || [ /usr/lib/llvm-14/lib/libunwind.a -nt "$SUPPORT/libunwind.a" ]; then
    log "preparing $SUPPORT/libunwind.a"
    musl-gcc -O2 -fPIC -c "$STUB_SRC" -o "$SUPPORT/fprintf_chk.o"
    cp /usr/lib/llvm-14/lib/libunwind.a "$SUPPORT/libunwind.a.tmp"
    ar rcs "$SUPPORT/libunwind.a.tmp" "$SUPPORT/fprintf_chk.o"
    mv "$SUPPORT/libunwind.a.tmp" "$SUPPORT/libunwind.a"
fi

# --- 3. lwIP from Debian's source, DPDK's static archives (feature lwip-dpdk) ------------------
case ",$FEATURES," in
*,lwip-dpdk,*)
    for f in /usr/lib/x86_64-linux-gnu/librte_eal.a /usr/lib/x86_64-linux-gnu/libnuma.a \
             /usr/include/lwip/lwipopts.h; do
        [ -e "$f" ] || die "missing $f: the lwip-dpdk feature needs libdpdk-dev and liblwip-dev (scripts/install-deps.sh run)"
    done
    MUSQRATT_LWIP_SRC="$(scripts/fetch-lwip-src.sh "$SUPPORT/lwip")"
    export MUSQRATT_LWIP_SRC
    ;;
esac

# --- 4. cargo build: std from source for our target ----------------------------------------
args=(build --locked --profile "$PROFILE" -p musqratt
      --target "$TARGET_JSON" --config "$CARGO_CONFIG")
[ -n "$FEATURES" ] && args+=(--features "$FEATURES")

log "RUSTC_BOOTSTRAP=1 $CARGO_DEB ${args[*]}"
# C code of dependencies (the cc crate, e.g. mimalloc) is compiled against musl's headers.
# RUSTFLAGS reaches only the target's artifacts (std included), not build scripts or proc-macros.
env -u RUSTC_WRAPPER -u CARGO_BUILD_RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS \
    RUSTC_BOOTSTRAP=1 \
    RUSTFLAGS="-L native=$SUPPORT" \
    CC_x86_64_unknown_musqratt_musl=musl-gcc \
    CARGO_TARGET_DIR="$TARGET_DIR" \
    "$CARGO_DEB" "${args[@]}"

# --- 5. check: static, no interpreter -------------------------------------------------------
[ -x "$OUT" ] || die "no binary at $OUT"
if readelf -lW "$OUT" | grep -q 'INTERP'; then die "$OUT has a program interpreter"; fi
if readelf -dW "$OUT" | grep -q 'NEEDED'; then die "$OUT needs shared libraries"; fi
command -v file >/dev/null 2>&1 && file "$OUT" >&2
log "ok: $OUT"
