#!/bin/sh
# /init of the rmpool-vm guest initramfs (busybox-static, runs as PID 1).
#
# Stage 1, kept small because changing it means rebuilding the cached
# initramfs: load the modules listed in /modules.list (dependency order,
# resolved on the host with modprobe --show-depends), mount the host's root
# read-only (9p tag "hostroot") and the run directory read-write (9p tag
# "rmprun"), then source stage 2 (deploy/vm/guest-boot.sh) from the host's
# root, whose path the host wrote into the run directory. Stage 2 lives in
# the repository so it can change without a rebuild. Whatever happens, the
# guest powers off at the end: qemu runs with -no-reboot and exits.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs devtmpfs /dev
# The cpio has no /dev/console (non-root hosts cannot mknod), so the kernel
# started us without stdio: attach it now that devtmpfs is there.
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys

G=0
for arg in $(cat /proc/cmdline); do
	case "$arg" in rmpool.g=*) G=${arg#rmpool.g=} ;; esac
done

fail() {
	echo "rmpool-vm guest $G: FAILED at step: $*"
	[ -d "/rmp/g$G" ] && echo "$*" >"/rmp/g$G/failed"
	sync
	poweroff -f
}

echo "rmpool-vm guest $G: stage 1 (modules, 9p)"
while read -r ko; do
	insmod "/lib/modules/$ko" || fail "module load: $ko"
done </modules.list

mkdir -p /host /rmp
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 rmprun /rmp ||
	fail "mount run directory (9p tag rmprun)"
[ -r /rmp/vm.env ] || fail "read /rmp/vm.env"
. /rmp/vm.env
# cache=loose halves the cost of starting a program in the guest, but does
# not see a file the host replaces after the guest looked at it; the host
# picks the mode (RMPOOL_VM_9P_CACHE).
mount -t 9p -o "trans=virtio,version=9p2000.L,msize=512000,ro,cache=${RMPOOL_VM_9P_CACHE:-none}" \
	hostroot /host || fail "mount host root (9p tag hostroot)"
[ -r "/host$RMPOOL_VM_STAGE2" ] || fail "find stage 2 script /host$RMPOOL_VM_STAGE2"
. "/host$RMPOOL_VM_STAGE2"
echo "rmpool-vm guest $G: powering off"
sync
poweroff -f
