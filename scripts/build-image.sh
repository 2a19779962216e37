#!/usr/bin/env bash
# `make image`: the MusQraTT appliance (docs/appliance.md) → target/appliance/
#
#   vmlinuz              Debian's cloud kernel, downloaded and unpacked (never installed)
#   initramfs.cpio.lz4   the whole root filesystem: /init (components/init), /bin/musqratt
#                        (the static musl build, with DPDK and lwIP), the kernel modules and
#                        their load lists, /sbin/mkfs.ext4 with its libraries
#   vmlinux              the same kernel, uncompressed (an ELF with a PVH entry): QEMU loads it
#                        directly, without firmware real mode or the decompressor (~0.5 s less
#                        to boot under software emulation); not part of the image's size
#   image-info.txt       what went in, with sizes
#
# The data disk (data.img) is not part of the image: runscripts/appliance.sh creates it blank
# on first run and init formats it on first boot.
#
# Idempotent: the kernel package is cached in target/appliance/cache (per version: a newer
# Debian kernel is picked up), the broker and init are rebuilt only when cargo says so.
# Run as root (apt-get), or with sudo.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${APPLIANCE_DIR:-$ROOT/target/appliance}"
CACHE="$OUT/cache"
STAGE="$OUT/rootfs"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BROKER="$TARGET_DIR/x86_64-unknown-musqratt-musl/release/musqratt"
INIT="$TARGET_DIR/x86_64-unknown-linux-gnu/release/musqratt-init"

PROG=build-image
# shellcheck source=lib/common.sh
. "$ROOT/scripts/lib/common.sh"

# --- 1. host tools ----------------------------------------------------------------------------
need_tools cpio:cpio mke2fs:e2fsprogs dpkg-deb:dpkg lz4:lz4
mkdir -p "$CACHE"

# --- 2. the kernel: Debian's cloud kernel, resolved through its metapackage -------------------
# Versions move with security updates; the metapackage names the current one.
kernel_pkg() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}'; }
PKG="$(kernel_pkg)"
if [ -z "$PKG" ]; then
    log "apt-get update (the package lists do not know linux-image-cloud-amd64)"
    as_root apt-get update -qq
    PKG="$(kernel_pkg)"
fi
[ -n "$PKG" ] || die "cannot resolve linux-image-cloud-amd64 to a kernel package"
KVER="${PKG#linux-image-}"
KDIR="$CACHE/$PKG"
if [ ! -f "$KDIR/boot/vmlinuz-$KVER" ]; then
    log "downloading $PKG"
    deb_unpack "$PKG" "$KDIR"
fi
MODDIR="$KDIR/lib/modules/$KVER/kernel"

# --- 3. the static broker and init -------------------------------------------------------------
log "static broker (scripts/build-musl.sh)"
scripts/build-musl.sh
[ -x "$BROKER" ] || die "$BROKER was not built"
log "static init (components/init)"
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked -q \
    -p musqratt-init --target x86_64-unknown-linux-gnu
[ -x "$INIT" ] || die "$INIT was not built"

# --- 4. the root filesystem --------------------------------------------------------------------
rm -rf "$STAGE"
mkdir -p "$STAGE"/{bin,sbin,etc,lib/modules,dev,proc,sys,data,run,tmp,var}
ln -s ../run "$STAGE/var/run"                  # DPDK's EAL keeps its runtime files in /var/run/dpdk
install -m 0755 "$INIT" "$STAGE/init"
install -m 0755 "$BROKER" "$STAGE/bin/musqratt"
strip "$STAGE/init" "$STAGE/bin/musqratt"

# Modules, in load order (there is no modprobe or modules.dep inside: the list is the order).
# The kernel has ext4, hugetlbfs, devtmpfs and PCI built in; virtio, the disk and the NIC
# drivers, the ACPI power button and evdev are modules.
COMMON=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk button evdev)
KERNEL_NET=(failover net_failover virtio_net)
DPDK_NET=(uio uio_pci_generic)
# musqratt.nic_driver=vfio-pci (a physical NIC behind an IOMMU; docs/deploy-dpdk.md).
DPDK_VFIO=(vfio vfio_iommu_type1 vfio_virqfd irqbypass vfio-pci-core vfio-pci)
# Each module's dependencies (its .modinfo "depends=") must come earlier in the common list or
# its own: checked here, since init has no modprobe to sort them out.
depends_of() { tr '\0' '\n' < "$1" | sed -n 's/^depends=//p' | tr ',' ' '; }
write_list() { # FILE MODULE...
    local file="$1"; shift
    local seen=" ${COMMON[*]} "
    [ "$(basename "$file")" = modules-load ] && seen=" "
    echo "# Loaded by /init with finit_module, in this order (made by scripts/build-image.sh)." > "$file"
    for m in "$@"; do
        local ko dep
        ko="$(find "$MODDIR" -name "$m.ko" -print -quit)"
        [ -n "$ko" ] || die "module $m.ko is not in $PKG"
        for dep in $(depends_of "$ko"); do
            [[ "$seen" == *" $dep "* || "$seen" == *" ${dep//_/-} "* || "$seen" == *" ${dep//-/_} "* ]] \
                || die "$(basename "$file"): $m needs $dep loaded before it"
        done
        seen="$seen$m "
        install -m 0644 "$ko" "$STAGE/lib/modules/$m.ko"
        echo "/lib/modules/$m.ko" >> "$file"
    done
}
write_list "$STAGE/etc/modules-load" "${COMMON[@]}"
write_list "$STAGE/etc/modules-load.kernel" "${KERNEL_NET[@]}"
write_list "$STAGE/etc/modules-load.dpdk" "${DPDK_NET[@]}"
write_list "$STAGE/etc/modules-load.dpdk-vfio" "${DPDK_VFIO[@]}"

# mkfs.ext4 for the first boot's blank data disk: Debian's, with the libraries it links.
install -m 0755 "$(command -v mke2fs)" "$STAGE/sbin/mkfs.ext4"
[ -f /etc/mke2fs.conf ] && install -m 0644 /etc/mke2fs.conf "$STAGE/etc/mke2fs.conf"
ldd "$(command -v mke2fs)" | awk '/=>/ {print $3} /^[ \t]*\// {print $1}' | while read -r lib; do
    [ -f "$lib" ] || continue
    dest="$STAGE$lib"
    mkdir -p "$(dirname "$dest")"
    cp -L "$lib" "$dest"
done
interp="$(ldd "$(command -v mke2fs)" | awk '/ld-linux/ {print $1}')"
[ -f "$STAGE$interp" ] || die "mke2fs's loader $interp was not copied"

# --- 5. pack -----------------------------------------------------------------------------------
# newc with every file owned by root, without needing root (notes/appliance.md). LZ4 (the
# kernel wants its legacy frame, -l): under software emulation it unpacks 0.2 s faster than
# gzip for 0.9 MB more.
(cd "$STAGE" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet) \
    | lz4 -l -9 -q > "$OUT/initramfs.cpio.lz4.tmp"
mv "$OUT/initramfs.cpio.lz4.tmp" "$OUT/initramfs.cpio.lz4"
install -m 0644 "$KDIR/boot/vmlinuz-$KVER" "$OUT/vmlinuz"

# vmlinux for QEMU's PVH boot: Debian's bzImage carries the kernel as an LZ4 (legacy frame)
# stream; it starts at the frame's magic and lz4 stops at its end.
if [ ! -f "$KDIR/vmlinux" ]; then
    off="$(LC_ALL=C grep -obUaP '\x02\x21\x4c\x18' "$KDIR/boot/vmlinuz-$KVER" | head -1 | cut -d: -f1)"
    [ -n "$off" ] || die "no LZ4 stream in vmlinuz-$KVER (is the kernel still LZ4-compressed?)"
    tail -c +$((off + 1)) "$KDIR/boot/vmlinuz-$KVER" | lz4 -dc 2>/dev/null > "$KDIR/vmlinux.tmp" || true
    [ "$(head -c 4 "$KDIR/vmlinux.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] \
        || die "the LZ4 stream of vmlinuz-$KVER did not unpack to an ELF kernel"
    mv "$KDIR/vmlinux.tmp" "$KDIR/vmlinux"
fi
ln -f "$KDIR/vmlinux" "$OUT/vmlinux" 2>/dev/null || cp "$KDIR/vmlinux" "$OUT/vmlinux"

size() { stat -c %s "$1"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
total=$(( $(size "$OUT/vmlinuz") + $(size "$OUT/initramfs.cpio.lz4") ))
{
    echo "kernel        $PKG"
    echo "vmlinuz       $(mib "$(size "$OUT/vmlinuz")")"
    echo "initramfs     $(mib "$(size "$OUT/initramfs.cpio.lz4")") (lz4; unpacked $(mib "$(du -sb "$STAGE" | cut -f1)"))"
    echo "  broker      $(mib "$(size "$STAGE/bin/musqratt")") (static, stripped)"
    echo "  init        $(mib "$(size "$STAGE/init")") (static, stripped)"
    echo "  modules     $(mib "$(du -sb "$STAGE/lib/modules" | cut -f1)") ($(ls "$STAGE/lib/modules" | wc -l) files)"
    echo "  mkfs.ext4   $(mib "$(du -cb "$STAGE/sbin" "$STAGE/lib/x86_64-linux-gnu" "$STAGE/lib64" | tail -1 | cut -f1)") (with its libraries and loader)"
    echo "image         $(mib "$total") (vmlinuz + initramfs)"
} > "$OUT/image-info.txt"
sed 's/^/build-image: /' "$OUT/image-info.txt" >&2
log "done: $OUT/vmlinuz $OUT/initramfs.cpio.lz4"
