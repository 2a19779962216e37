#!/usr/bin/env bash
# `make boot-disk`: the appliance as a bootable UEFI disk image → target/appliance/musqratt-boot.img
# (docs/deploy-dpdk.md "The appliance on a physical machine"). Write it to a boot medium with dd;
# `BOOT=disk runscripts/appliance.sh` boots the same file in QEMU with UEFI firmware (OVMF).
#
# Layout (GPT):
#   1  musqratt-esp   FAT32, 64 MiB: systemd-boot as \EFI\BOOT\BOOTX64.EFI (the removable-media
#                     path every UEFI firmware boots), loader\entries\musqratt.conf (the kernel
#                     command line: edit it on any machine that reads FAT), \musqratt\vmlinuz
#                     and \musqratt\initramfs.cpio.lz4 from `make image`
#   2  musqratt-data  DATA_MB (default 1024), left blank: init creates ext4 on it at first boot
#                     and finds it by name (musqratt.data=PARTLABEL=musqratt-data)
#
# Settings (environment): DATA_MB; BOOT_OPTIONS: the kernel command line's musqratt settings,
# default "musqratt.net=dpdk" (every virtio-net NIC, uio_pci_generic): on a physical NIC add
# musqratt.nic=0000:01:00.0 musqratt.nic_driver=vfio-pci intel_iommu=on iommu=pt and the
# addresses (musqratt.ip=, musqratt.gw=); HUGEPAGES (2 MB pages reserved at boot, default 96).
# systemd-boot's EFI binary comes from Debian's systemd-boot-efi, downloaded and unpacked
# (never installed). Needs no root for the image itself (mtools, sfdisk on a file).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${APPLIANCE_DIR:-$ROOT/target/appliance}"
CACHE="$OUT/cache"
IMG="$OUT/musqratt-boot.img"
DATA_MB="${DATA_MB:-1024}"
ESP_MB=64
HUGEPAGES="${HUGEPAGES:-96}"
BOOT_OPTIONS="${BOOT_OPTIONS:-musqratt.net=dpdk}"

PROG=build-boot-disk
# shellcheck source=lib/common.sh
. "$ROOT/scripts/lib/common.sh"

[[ "$DATA_MB" =~ ^[0-9]+$ ]] && [ "$DATA_MB" -ge 64 ] || die "DATA_MB=$DATA_MB: expected at least 64"
for f in vmlinuz initramfs.cpio.lz4; do
    [ -f "$OUT/$f" ] || die "$OUT/$f is missing: run 'make image' first"
done
need_tools mkfs.vfat:dosfstools mcopy:mtools sfdisk:fdisk dpkg-deb:dpkg

# systemd-boot's EFI binary, from the package Debian builds it in.
SDBOOT="$CACHE/systemd-boot-efi/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
if [ ! -f "$SDBOOT" ]; then
    log "downloading systemd-boot-efi"
    deb_unpack systemd-boot-efi "$CACHE/systemd-boot-efi"
    [ -f "$SDBOOT" ] || die "systemd-bootx64.efi is not where systemd-boot-efi used to put it"
fi

# The ESP as its own file first (mtools writes into a FAT image without mounting it).
ESP="$OUT/esp.img.tmp"
rm -f "$ESP"
mkfs.vfat -F 32 -n MUSQRATT -C "$ESP" $((ESP_MB * 1024)) > /dev/null
m() { mmd -i "$ESP" "$@"; }
m ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries ::/musqratt
mcopy -i "$ESP" "$SDBOOT" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$ESP" "$OUT/vmlinuz" ::/musqratt/vmlinuz
mcopy -i "$ESP" "$OUT/initramfs.cpio.lz4" ::/musqratt/initramfs.cpio.lz4
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
# timeout 0: straight into the entry (hold a key at power-on for the menu).
printf 'default musqratt.conf\ntimeout 0\nconsole-mode keep\n' > "$TMP/loader.conf"
# console= both: the machine's screen and its first serial port (QEMU, IPMI serial-over-LAN).
# panic=10: a physical machine reboots 10 s after a kernel panic.
cat > "$TMP/musqratt.conf" <<EOF
title   MusQraTT appliance
linux   /musqratt/vmlinuz
initrd  /musqratt/initramfs.cpio.lz4
options console=tty0 console=ttyS0,115200 quiet panic=10 hugepagesz=2M hugepages=$HUGEPAGES musqratt.data=PARTLABEL=musqratt-data $BOOT_OPTIONS
EOF
mcopy -i "$ESP" "$TMP/loader.conf" ::/loader/loader.conf
mcopy -i "$ESP" "$TMP/musqratt.conf" ::/loader/entries/musqratt.conf

# The disk: 1 MiB for the GPT, the ESP, the data partition, 1 MiB for the backup GPT.
rm -f "$IMG.tmp"
truncate -s $((1 + ESP_MB + DATA_MB + 1))M "$IMG.tmp"
sfdisk --quiet "$IMG.tmp" <<EOF
label: gpt
start=2048, size=${ESP_MB}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="musqratt-esp"
size=${DATA_MB}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="musqratt-data"
EOF
dd if="$ESP" of="$IMG.tmp" bs=1M seek=1 conv=notrunc,sparse status=none
rm -f "$ESP"
mv "$IMG.tmp" "$IMG"
log "done: $IMG ($((1 + ESP_MB + DATA_MB + 1)) MiB, sparse; boot options: $BOOT_OPTIONS)"
log "write it with: dd if=$IMG of=/dev/DISK bs=4M conv=fsync status=progress"
