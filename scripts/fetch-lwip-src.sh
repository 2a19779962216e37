#!/usr/bin/env bash
# Unpack Debian's lwIP source (the same version as the installed liblwip-dev, with Debian's
# patches applied) into DEST, for the static musl build: Debian ships lwIP only as a shared
# library, so scripts/build-musl.sh compiles it from this source with musl-gcc
# (components/lwip-sys/build.rs, docs/runtime.md "The static build on the lwIP path").
#
#   scripts/fetch-lwip-src.sh DEST     # -> DEST/lwip-2.1.3 (prints that path)
#
# The tarballs come from Debian's archive and are checked against the SHA-256 sums pinned
# below (taken from the source package's .dsc). Idempotent: an unpacked tree is reused.
set -euo pipefail

DEST="${1:?usage: fetch-lwip-src.sh DEST}"
VERSION="2.1.3+dfsg1-2"
UPSTREAM="2.1.3"
POOL="http://deb.debian.org/debian/pool/main/l/lwip"
ORIG="lwip_2.1.3+dfsg1.orig.tar.xz"
ORIG_SHA256="0a8276d09fc4e97bbba2f953d74af2388fc2195ea156be9d7589e297a68fde24"
DEBIAN="lwip_${VERSION}.debian.tar.xz"
DEBIAN_SHA256="c5a48413d362cc757032cdd58f528f75eb64ee781ca46ca24f010b49b0e62a90"

log() { echo "fetch-lwip-src: $*" >&2; }
die() { echo "fetch-lwip-src: error: $*" >&2; exit 1; }

# The headers bindgen and our C shim see are the installed liblwip-dev's: the library we
# compile must be the same version, or structure layouts could differ.
installed="$(dpkg-query -W -f='${Version}' liblwip-dev 2>/dev/null || true)"
[ "$installed" = "$VERSION" ] \
    || die "liblwip-dev is '${installed:-not installed}', this script pins $VERSION: update ORIG/DEBIAN and their SHA-256 from the new .dsc"

TREE="$DEST/lwip-$UPSTREAM"
STAMP="$TREE/.musqratt-$VERSION"
if [ -f "$STAMP" ]; then
    echo "$TREE"
    exit 0
fi

mkdir -p "$DEST"
for pair in "$ORIG $ORIG_SHA256" "$DEBIAN $DEBIAN_SHA256"; do
    set -- $pair
    file="$DEST/$1"
    if [ ! -f "$file" ] || ! echo "$2  $file" | sha256sum -c --quiet - >/dev/null 2>&1; then
        log "downloading $POOL/$1"
        curl -fsSL --retry 3 -o "$file.tmp" "$POOL/$1" || die "download of $POOL/$1 failed"
        mv "$file.tmp" "$file"
    fi
    echo "$2  $file" | sha256sum -c --quiet - || die "$1: SHA-256 mismatch"
done

rm -rf "$TREE" "$DEST/debian"
tar -xJf "$DEST/$ORIG" -C "$DEST"
tar -xJf "$DEST/$DEBIAN" -C "$DEST"
# Debian's patch series (quilt format), in order: the port (sys_arch, lwipopts.h) and fixes.
while read -r p; do
    case "$p" in ''|'#'*) continue ;; esac
    patch -d "$TREE" -p1 -s --no-backup-if-mismatch < "$DEST/debian/patches/$p" \
        || die "Debian patch $p did not apply"
done < "$DEST/debian/patches/series"
# Our headers come from liblwip-dev: check that the options match the tree we compile.
cmp -s "$TREE/port/include/lwipopts.h" /usr/include/lwip/lwipopts.h \
    || die "$TREE/port/include/lwipopts.h differs from liblwip-dev's /usr/include/lwip/lwipopts.h"
touch "$STAMP"
log "unpacked lwIP $VERSION in $TREE"
echo "$TREE"
