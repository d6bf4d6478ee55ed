# Stage 2 of an rmpool-vm guest: sourced by the initramfs /init (busybox sh,
# outside the chroot) with G (guest index), fail() and the settings of
# /rmp/vm.env (RMPOOL_VM_DIR, RMPOOL_VM_AGENT, ...).
#
# 1. eth0 (virtio-net on the run's vde switch) gets 198.18.0.G/24; no
#    default route, nothing else is reachable.
# 2. The root the jobs see is an overlay: the host's root (read-only 9p) as
#    the lower layer, a guest tmpfs as the upper one. Every path of the host
#    (build trees under /tmp included) is visible, writes succeed but stay
#    inside the guest, and the host cannot be damaged. The run directory is
#    bind-mounted at its host path: it is the only place writes reach the host.
# 3. Soft-RoCE device rxe0 on eth0; wait until its port is ACTIVE.
# 4. Mark the guest ready and run the exec agent in the chroot until the host
#    asks for power-off; with --ssh, sshd (in the chroot) first. Each failing
#    step names itself through fail().
#    With --init systemd (RMPOOL_VM_INIT), instead: the units of
#    guest-systemd.sh are written into the overlay and stage 2 switch_roots
#    into it with systemd as PID 1 at rmpool-guest.target, which starts
#    sshd (--ssh) and the agent, and writes the ready marker.
R=/newroot
GDIR=/rmp/g$G
# For the commands run with chroot (the host's merged /usr); busybox's own
# applets stay in /bin of the initramfs.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

echo "rmpool-vm guest $G: stage 2 (network, root, rxe)"
hostname "rmpool-g$G"
ip link set lo up || fail "network: bring up lo"
ip link set eth0 up || fail "network: no eth0 (virtio_net)"
ip addr add "198.18.0.$G/24" dev eth0 || fail "network: address 198.18.0.$G on eth0"

mkdir -p /ovl "$R"
mount -t tmpfs -o mode=0755 tmpfs /ovl || fail "root: tmpfs for the overlay"
mkdir -p /ovl/upper /ovl/work
mount -t overlay overlay -o lowerdir=/host,upperdir=/ovl/upper,workdir=/ovl/work "$R" ||
	fail "root: overlay over the host root"
mount -t proc proc "$R/proc" || fail "root: proc"
mount -t sysfs sysfs "$R/sys" || fail "root: sysfs"
mount -t devtmpfs devtmpfs "$R/dev" || fail "root: devtmpfs"
mkdir -p "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$R/dev/pts" || fail "root: devpts"
mount -t tmpfs tmpfs "$R/dev/shm" || fail "root: /dev/shm"
mount -t tmpfs -o mode=0755 tmpfs "$R/run" || fail "root: /run"
mkdir -p "$R$RMPOOL_VM_DIR"
mount -o bind /rmp "$R$RMPOOL_VM_DIR" || fail "root: bind the run directory at $RMPOOL_VM_DIR"

chroot "$R" rdma link add rxe0 type rxe netdev eth0 || fail "rdma link add rxe0 type rxe netdev eth0"
n=0
until grep -q ACTIVE /sys/class/infiniband/rxe0/ports/1/state 2>/dev/null; do
	n=$((n + 1))
	[ $n -le 100 ] || fail "rxe0 port 1 ACTIVE (state: $(cat /sys/class/infiniband/rxe0/ports/1/state 2>&1))"
	sleep 0.1
done
for d in uverbs0 rdma_cm; do
	[ -c "$R/dev/infiniband/$d" ] || fail "/dev/infiniband/$d in the chroot"
done

if [ "${RMPOOL_VM_INIT:-busybox}" = systemd ]; then
	[ -r "/host$RMPOOL_VM_SYSTEMD_UNITS" ] || fail "systemd: find /host$RMPOOL_VM_SYSTEMD_UNITS"
	[ -x "$R/lib/systemd/systemd" ] || fail "systemd: no /lib/systemd/systemd on the host (apt-get install systemd)"
	. "/host$RMPOOL_VM_SYSTEMD_UNITS"
	echo "rmpool-vm guest $G: switch_root to systemd at rmpool-guest.target"
	exec switch_root "$R" /lib/systemd/systemd --unit=rmpool-guest.target
	fail "systemd: switch_root $R /lib/systemd/systemd"
fi
if [ "${RMPOOL_VM_SSH:-0}" = 1 ]; then
	# Not the host's shell start-up files for ssh's commands (see
	# guest-systemd.sh): /etc/skel's, as on a fresh host.
	for f in .bashrc .profile; do
		[ -r "$R/etc/skel/$f" ] && cp "$R/etc/skel/$f" "$R/root/$f"
	done
	rm -f "$R/var/lib/man-db/auto-update" # see guest-systemd.sh
	mkdir -p "$R/run/sshd"
	chroot "$R" /usr/sbin/sshd -f "$RMPOOL_VM_DIR/ssh/sshd_config.g$G" || fail "ssh: sshd -f $RMPOOL_VM_DIR/ssh/sshd_config.g$G"
fi
read -r up _ </proc/uptime
echo "$up" >"$GDIR/ready"
echo "rmpool-vm guest $G: ready after ${up}s of guest uptime"
chroot "$R" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	HOME=/root /bin/bash "$RMPOOL_VM_AGENT" "$RMPOOL_VM_DIR/g$G/ch" $RMPOOL_VM_POLL ||
	echo "rmpool-vm guest $G: agent exited with status $?"
