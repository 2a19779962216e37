# Sourced by the image scripts (build-image.sh, build-boot-disk.sh). Set PROG first.
# shellcheck shell=bash

log() { echo "$PROG: $*" >&2; }
die() { echo "$PROG: error: $*" >&2; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# need_tools COMMAND:PACKAGE...: installs the Debian packages of the commands that are missing
# (apt-get update only when the package lists do not know them yet).
need_tools() {
    local need=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
    done
    [ "${#need[@]}" -eq 0 ] && return 0
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
        || { as_root apt-get update -qq && as_root apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; } \
        || die "apt-get install ${need[*]} failed"
}

# deb_unpack PACKAGE DIR: downloads a Debian package with apt-get download (never installs it)
# and unpacks it into DIR (replaced).
deb_unpack() {
    local pkg="$1" dir="$2" dl
    dl="$(mktemp -d)"
    # As root apt-get warns that _apt cannot write to the directory (it downloads unsandboxed).
    if ! (cd "$dl" && apt-get download "$pkg" 2>&1 | grep -v "^W: Download is performed unsandboxed" >&2; exit "${PIPESTATUS[0]}"); then
        as_root apt-get update -qq
        (cd "$dl" && apt-get download "$pkg" 2>&1 | grep -v "^W: Download is performed unsandboxed" >&2; exit "${PIPESTATUS[0]}") \
            || { rm -rf "$dl"; die "apt-get download $pkg failed"; }
    fi
    rm -rf "$dir.tmp" && dpkg-deb -x "$dl"/*.deb "$dir.tmp"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
    rm -rf "$dl"
}
