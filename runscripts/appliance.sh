#!/usr/bin/env bash
# The MusQraTT appliance in QEMU (docs/appliance.md): the image of `make image` booted with its
# broker forwarded to 127.0.0.1:$PORT. The console goes to the terminal and to console.log;
# Ctrl-C (or SIGTERM) presses the virtual power button: init stops the broker, syncs, unmounts
# the data disk and powers off, and QEMU exits. Exit status: 0 after a clean power-off (the
# broker stopped on SIGTERM with status 0, then init powered off); 1 after a guest panic, an
# init failure, a broker that exited by itself or had to be killed; QEMU's own status if QEMU
# failed; 2 for a bad setting.
#
#   runscripts/appliance.sh                  # DPDK's virtio PMD drives the NIC (the default)
#   NET=kernel runscripts/appliance.sh       # same image, guest kernel sockets
#   PORT=11883 ACCEL=kvm runscripts/appliance.sh
#
# Settings (environment):
#   BOOT=kernel|disk  kernel: QEMU loads the kernel and initramfs of `make image` (default);
#                     disk: UEFI firmware (OVMF) boots target/appliance/musqratt-boot.img of
#                     `make boot-disk`, exactly as a machine boots the medium it was written
#                     to; the network settings are then the ones in the image's boot entry
#                     and the data partition inside it is the data disk (NET, NIC_DRIVER,
#                     DISK and APPEND do not apply)
#   BOOT_IMG=PATH     the boot disk for BOOT=disk (default $APPLIANCE_DIR/musqratt-boot.img)
#   NET=dpdk|kernel   who drives the guest's virtio-net (default dpdk)
#   NIC_DRIVER=uio_pci_generic|vfio-pci
#                     the guest driver that hands the NIC to DPDK (NET=dpdk); vfio-pci adds
#                     an emulated IOMMU (intel-iommu), as on a physical machine
#                     (docs/deploy-dpdk.md)
#   PORT=1883         host port forwarded to the broker (always on 127.0.0.1)
#   ACCEL=tcg|kvm     software emulation (default; KVM hangs a stock kernel on some hosts)
#   MACHINE=q35       QEMU machine type (q35: MSI for virtio, no ACPI interrupt-link set-up,
#                     which took 0.13 s per device on `pc`)
#   APPLIANCE_DIR     the image (default target/appliance)
#   DISK=PATH         the data disk (default $APPLIANCE_DIR/data.img, created blank: init
#                     formats it on first boot); DISK=none runs the broker --in-memory
#   DISK_MB=256       size of a new data disk
#   CONSOLE_LOG=PATH  where the console is kept (default $APPLIANCE_DIR/console.log)
#   QUIET=1           console to the log only, not the terminal (tests)
#   APPEND="…"        extra kernel parameters (musqratt.args="…", musqratt.eal="…", …)
#   STOP_WAIT=30      seconds to wait for the power-off before killing QEMU
#   QEMU_ARGS="…"     extra QEMU arguments (split on spaces)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NET="${NET:-dpdk}"
PORT="${PORT:-1883}"
ACCEL="${ACCEL:-tcg}"
DIR="${APPLIANCE_DIR:-$ROOT/target/appliance}"
DISK="${DISK:-$DIR/data.img}"
DISK_MB="${DISK_MB:-256}"
CONSOLE_LOG="${CONSOLE_LOG:-$DIR/console.log}"
STOP_WAIT="${STOP_WAIT:-30}"

die() { echo "appliance: error: $*" >&2; exit 2; }
say() { echo "appliance: $*" >&2; }

case "$NET" in kernel | dpdk) ;; *) die "NET=$NET: expected dpdk or kernel" ;; esac
case "$ACCEL" in tcg | kvm) ;; *) die "ACCEL=$ACCEL: expected tcg or kvm" ;; esac
[[ "$PORT" =~ ^[0-9]+$ ]] || die "PORT=$PORT: expected a port number"
BOOT="${BOOT:-kernel}"
case "$BOOT" in
    kernel)
        for f in vmlinux initramfs.cpio.lz4; do
            [ -f "$DIR/$f" ] || die "$DIR/$f is missing: run 'make image' first"
        done
        ;;
    disk)
        BOOT_IMG="${BOOT_IMG:-$DIR/musqratt-boot.img}"
        [ -f "$BOOT_IMG" ] || die "$BOOT_IMG is missing: run 'make boot-disk' first"
        ;;
    *) die "BOOT=$BOOT: expected kernel or disk" ;;
esac
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found (scripts/install-deps.sh run)"

# The kernel command line: the serial console, no reboot on panic (QEMU then exits), init's
# settings (components/init/README.md).
CMDLINE="console=ttyS0 quiet panic=-1 musqratt.net=$NET"
# Boot time under software emulation (docs/appliance.md): the crypto self-tests and the kprobe
# trace self-test were 0.55 s of the kernel's 1.8 s; the appliance uses neither.
CMDLINE="$CMDLINE cryptomgr.notests initcall_blacklist=crypto_kdf108_init,init_kprobe_trace"
NIC_DRIVER="${NIC_DRIVER:-uio_pci_generic}"
NIC=(-device virtio-net-pci,netdev=n0)
IOMMU=()
if [ "$NET" = dpdk ]; then
    # DPDK's buffers live in 2 MB hugepages reserved at boot (192 MB of the guest's 384).
    MEM=384
    CMDLINE="$CMDLINE hugepagesz=2M hugepages=96"
    case "$NIC_DRIVER" in
        uio_pci_generic) ;;
        vfio-pci)
            # vfio needs an IOMMU (the cloud kernel has no vfio no-IOMMU mode); the device
            # must then do its DMA through it (modern virtio only, iommu_platform).
            IOMMU=(-device intel-iommu)
            NIC=(-device virtio-net-pci,netdev=n0,disable-legacy=on,iommu_platform=on)
            CMDLINE="$CMDLINE intel_iommu=on musqratt.nic_driver=vfio-pci"
            ;;
        *) die "NIC_DRIVER=$NIC_DRIVER: expected uio_pci_generic or vfio-pci" ;;
    esac
else
    MEM=256
fi
DRIVE=()
if [ "$BOOT" = disk ]; then
    DISK=none
fi
if [ "$DISK" != none ]; then
    if [ ! -e "$DISK" ]; then
        say "creating a blank ${DISK_MB} MB data disk $DISK (formatted by the appliance at first boot)"
        truncate -s "${DISK_MB}M" "$DISK"
    fi
    DRIVE=(-drive "file=$DISK,if=virtio,format=raw,cache=writeback")
    CMDLINE="$CMDLINE musqratt.data=/dev/vda"
fi
CMDLINE="$CMDLINE ${APPEND:-}"

# The monitor on a pair of FIFOs: the script presses the power button through it.
RUN="$(mktemp -d "${TMPDIR:-/tmp}/musqratt-appliance.XXXXXX")"
mkfifo "$RUN/mon.in" "$RUN/mon.out"
: > "$CONSOLE_LOG"

# The kernel as an uncompressed ELF, entered through PVH, and qboot instead of SeaBIOS: no
# real-mode firmware, no decompressor; about 0.5 s less under software emulation
# (docs/appliance.md). vmlinux is the image's vmlinuz, unpacked by make image.
FIRMWARE=()
QBOOT=/usr/share/qemu/qboot.rom
[ -f "$QBOOT" ] && FIRMWARE=(-bios "$QBOOT")
KERNEL=(-kernel "$DIR/vmlinux" -initrd "$DIR/initramfs.cpio.lz4" -append "$CMDLINE")
if [ "$BOOT" = disk ]; then
    # UEFI: OVMF's code read-only, its variables in a per-run copy; the boot image is the
    # machine's disk (its data partition keeps the store across boots).
    OVMF=/usr/share/OVMF
    [ -f "$OVMF/OVMF_CODE_4M.fd" ] || die "$OVMF/OVMF_CODE_4M.fd not found (Debian package ovmf)"
    cp "$OVMF/OVMF_VARS_4M.fd" "$RUN/vars.fd"
    FIRMWARE=(-drive "if=pflash,format=raw,readonly=on,file=$OVMF/OVMF_CODE_4M.fd"
        -drive "if=pflash,format=raw,file=$RUN/vars.fd")
    KERNEL=(-drive "file=$BOOT_IMG,if=virtio,format=raw,cache=writeback")
    MEM=384
fi
# -cpu max: Debian's DPDK needs SSE4.2 and more (QEMU's default qemu64 dies with SIGILL).
# -no-reboot: a guest reboot or panic ends QEMU instead of looping.
# hostfwd names 127.0.0.1: never all interfaces.
QEMU=(qemu-system-x86_64 -accel "$ACCEL" -M "${MACHINE:-q35}" -cpu max -m "$MEM" -smp 2
    -nodefaults -no-user-config -no-reboot -display none
    "${FIRMWARE[@]}" "${KERNEL[@]}"
    "${IOMMU[@]}" -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$PORT-:1883" "${NIC[@]}"
    "${DRIVE[@]}"
    -chardev "file,id=con,path=$CONSOLE_LOG" -serial chardev:con
    -chardev "pipe,id=mon,path=$RUN/mon" -mon chardev=mon,mode=readline)
# shellcheck disable=SC2206 # word splitting is the point
QEMU+=(${QEMU_ARGS:-})

[ "$BOOT" = disk ] && NET="as in the boot entry"
say "booting (BOOT=$BOOT, NET=$NET, ACCEL=$ACCEL) → mqtt://127.0.0.1:$PORT; console: $CONSOLE_LOG"
# setsid: the terminal's Ctrl-C must reach this script (which powers the guest off), not QEMU
# (which would stop at once, like pulling the plug).
setsid "${QEMU[@]}" < /dev/null > "$RUN/qemu.out" 2>&1 &
QPID=$!
cat "$RUN/mon.out" > /dev/null &
DRAIN=$!
TAIL=""
if [ "${QUIET:-0}" != 1 ]; then
    tail -n +1 -f --pid="$QPID" "$CONSOLE_LOG" &
    TAIL=$!
fi

STOPPING=0
WATCHDOG=""
power_off() {
    [ "$STOPPING" = 1 ] && return
    STOPPING=1
    say "powering off (ACPI power button)"
    # A FIFO open for writing blocks while nobody reads it (QEMU gone): bounded.
    timeout 2 bash -c 'echo system_powerdown > "$1"' _ "$RUN/mon.in" || true
    ( sleep "$STOP_WAIT"; kill "$QPID" 2>/dev/null && echo "appliance: no power-off after ${STOP_WAIT} s: QEMU stopped" >&2 ) &
    WATCHDOG=$!
}
trap power_off INT TERM

# `wait` returns early (status > 128) when a trapped signal arrives: wait again while QEMU
# still runs.
while :; do
    if wait "$QPID"; then rc=0; else rc=$?; fi
    if [ "$rc" -gt 128 ] && kill -0 "$QPID" 2>/dev/null; then
        continue
    fi
    break
done
[ -n "$WATCHDOG" ] && kill "$WATCHDOG" 2>/dev/null || true
sleep 0.2
[ -n "$TAIL" ] && kill "$TAIL" 2>/dev/null || true
kill "$DRAIN" 2>/dev/null || true
if [ -s "$RUN/qemu.out" ]; then
    sed 's/^/qemu: /' "$RUN/qemu.out" >&2
fi
rm -rf "$RUN"

if [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ]; then
    say "QEMU failed (exit $rc)"
    exit "$rc"
fi
# Clean = the broker stopped on init's SIGTERM with status 0, then init powered off. Anything
# else (a panic, init's own failure line, a broker that exited or crashed by itself, SIGKILL
# after the stop timeout) is not, and the console's end is shown.
unclean() {
    say "$1 (console: $CONSOLE_LOG); its last lines:"
    tail -n 15 "$CONSOLE_LOG" | sed 's/^/  | /' >&2
    exit 1
}
grep -q "Kernel panic" "$CONSOLE_LOG" && unclean "the guest kernel panicked"
grep -q "^init: powering off" "$CONSOLE_LOG" || unclean "the guest stopped without init's power-off"
grep -q "^init: broker exited after SIGTERM: exit status 0" "$CONSOLE_LOG" \
    || unclean "the broker did not stop cleanly on the power button"
say "powered off cleanly"
