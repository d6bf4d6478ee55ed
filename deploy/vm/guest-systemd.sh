# Units of an rmpool-vm guest booted with --init systemd: sourced by stage
# 2 (deploy/vm/guest-boot.sh, busybox sh) with R (the overlay root), G, fail()
# and /rmp/vm.env's settings, just before it switch_roots into R with
# systemd as PID 1 at rmpool-guest.target. Everything is written into the
# overlay's upper layer (a guest tmpfs): the host's own files are not
# touched.
#
# rmpool-guest.target is the harness's own: basic.target (sysinit, the
# sockets, journald, udev, cgroup v2 on /sys/fs/cgroup), sshd with --ssh,
# and the exec agent. Nothing pulls in multi-user.target, so the units the
# host has enabled there (a database, apt's timers, the host's own sshd)
# do not start. The agent's service writes the ready marker (the guest's
# uptime then: the boot time the harness reports) once sshd listens, and
# its end (the host asked for power-off) powers the guest off.
U=$R/etc/systemd/system
mkdir -p "$U" "$R/etc/rmpool-vm" || fail "systemd: unit folder"
# An identity of its own (the host's machine-id and hostname are shared
# through the lower layer otherwise).
tr -d '-' </proc/sys/kernel/random/uuid >"$R/etc/machine-id" || fail "systemd: machine-id"
echo "rmpool-g$G" >"$R/etc/hostname"
# root's home is the host's through the lower layer: its shell start-up
# files (a pyenv init, say) would run for every command ssh runs (Debian's
# bash reads ~/.bashrc under sshd). A fresh host's instead: /etc/skel's.
for f in .bashrc .profile; do
	[ -r "$R/etc/skel/$f" ] && cp "$R/etc/skel/$f" "$R/root/$f"
done
# man-db's dpkg trigger re-indexes every man page on each package install:
# minutes over 9p under TCG (a guest's man pages are never read). Its
# auto-update flag off, in the guest only.
rm -f "$R/var/lib/man-db/auto-update"
# The host's fstab names the host's disks (the kernel command line says
# fstab=no too).
: >"$R/etc/fstab"
# Modules of the host's kernel are not the guest's: stage 1 loaded what
# the guest needs.
ln -sf /dev/null "$U/systemd-modules-load.service"
# The host's timers (apt's, its databases' maintenance) are not armed:
# basic.target wants timers.target, which pulls them in.
ln -sf /dev/null "$U/timers.target"
# systemd-tmpfiles would empty /tmp at boot (tmp.conf's "D /tmp"), that
# is, hide the host's /tmp from the guest (build trees, the run
# directory's parent) behind whiteouts, after walking it over 9p for
# minutes: an empty tmp.conf of the guest's own overrides it.
mkdir -p "$R/etc/tmpfiles.d" && : >"$R/etc/tmpfiles.d/tmp.conf" || fail "systemd: tmpfiles override"

cat >"$R/etc/rmpool-vm/ready.sh" <<EOF
#!/bin/sh
# rmpool-vm guest $G: the ready marker, once sshd listens (with --ssh).
if [ "${RMPOOL_VM_SSH:-0}" = 1 ]; then
	i=0
	until ss -Hltn "sport = :22" | grep -q .; do
		i=\$((i + 1))
		[ \$i -le 600 ] || { echo "sshd does not listen on :22" >&2; exit 1; }
		sleep 0.1
	done
fi
read -r up _ </proc/uptime
echo "\$up" >"$RMPOOL_VM_DIR/g$G/ready"
echo "rmpool-vm guest $G: ready after \${up}s of guest uptime (systemd)"
EOF
chmod 0755 "$R/etc/rmpool-vm/ready.sh"

wants="rmpool-vm-agent.service"
if [ "${RMPOOL_VM_SSH:-0}" = 1 ]; then
	wants="rmpool-vm-sshd.service $wants"
	cat >"$U/rmpool-vm-sshd.service" <<EOF
[Unit]
Description=sshd of rmpool-vm guest $G on 198.18.0.$G:22
After=basic.target

[Service]
ExecStartPre=/bin/mkdir -p /run/sshd
ExecStart=/usr/sbin/sshd -D -e -f $RMPOOL_VM_DIR/ssh/sshd_config.g$G
Restart=on-failure
EOF
fi

cat >"$U/rmpool-vm-agent.service" <<EOF
[Unit]
Description=rmpool-vm exec agent of guest $G
After=basic.target rmpool-vm-sshd.service

[Service]
Type=simple
Environment=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
LimitMEMLOCK=infinity
ExecStartPre=/etc/rmpool-vm/ready.sh
ExecStart=/bin/bash $RMPOOL_VM_AGENT $RMPOOL_VM_DIR/g$G/ch $RMPOOL_VM_POLL
# The jobs it started end with it (the host asked for power-off).
KillMode=control-group
SuccessAction=poweroff-force
FailureAction=poweroff-force
EOF

cat >"$U/rmpool-guest.target" <<EOF
[Unit]
Description=rmpool-vm guest $G: basic system, sshd, the exec agent
Requires=basic.target
Wants=$wants
After=basic.target
AllowIsolate=yes
EOF
