#!/bin/bash
# deploy_guests: the harness's guests look like real hosts (issue 16, step
# 1). Runs under deploy/vm/rmpool-vm run --hosts 3 --init systemd --ssh
# (tests/run.sh's deployment step), and checks on every guest:
#   - systemd is PID 1, at the harness's own rmpool-guest.target (active);
#     the system is running (or degraded: the failed units are named, and
#     none of them may be the harness's);
#   - multi-user.target is not active, and no unit the host machine has
#     enabled there runs in the guest;
#   - cgroup v2 is mounted on /sys/fs/cgroup;
#   - its hostname is rmpool-gI and rxe0 is ACTIVE;
#   - ssh from guest 1 reaches every guest (and guest 2 guest 3) as root with
#     the run's key and known_hosts (StrictHostKeyChecking), and sshd
#     listens on the guest's own 198.18.0.I only;
#   - no sshd runs on the host machine with the run's configuration.
# Prints each guest's boot time (uptime when it was ready, and
# systemd-analyze's). Never skips: no harness, no systemd, no ssh: fail.
set -euo pipefail
T=deploy_guests
fail() {
	echo "$T: FAIL: $*" >&2
	exit 1
}
note() { echo "$T: $*"; }
HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
VM=$HERE/../../deploy/vm/rmpool-vm
[[ -n ${RMPOOL_VM_DIR:-} ]] || fail "run under deploy/vm/rmpool-vm run --hosts 3 --init systemd --ssh"
[[ -n ${RMPOOL_VM_SSH_CONFIG:-} && -r $RMPOOL_VM_SSH_CONFIG ]] || fail "no RMPOOL_VM_SSH_CONFIG: the run has no --ssh"
read -r -a hosts <<<"${RMPOOL_VM_HOSTS:-}"
((${#hosts[@]} == 3)) || fail "needs 3 guests, the run has ${#hosts[@]}"
g() { "$VM" exec --timeout "$2" "$1" -- sh -c "$3"; }

enabled=$(find /etc/systemd/system/multi-user.target.wants -maxdepth 1 -name '*.service' -printf '%f\n' 2>/dev/null | sort | xargs)
for i in 1 2 3; do
	comm=$(g $i 30 "cat /proc/1/comm")
	[[ $comm == systemd ]] || fail "guest $i: PID 1 is '$comm', not systemd"
	tgt=$(g $i 30 "systemctl is-active rmpool-guest.target" || true)
	[[ $tgt == active ]] || fail "guest $i: rmpool-guest.target is '$tgt'"
	state=$(g $i 60 "systemctl is-system-running --wait" || true)
	failed=$(g $i 30 "systemctl --failed --no-legend --plain | cut -d' ' -f1 | xargs" || true)
	[[ $state == running || $state == degraded ]] || fail "guest $i: the system is '$state' (failed: ${failed:-none})"
	[[ " $failed " != *" rmpool-"* ]] || fail "guest $i: a unit of the harness failed: $failed"
	mu=$(g $i 30 "systemctl is-active multi-user.target" || true)
	[[ $mu != active ]] || fail "guest $i: multi-user.target is active: the host's units would start"
	running=
	for u in $enabled; do
		[[ $(g $i 30 "systemctl is-active $u" || true) != active ]] || running+=" $u"
	done
	[[ -z $running ]] || fail "guest $i: units the host enabled for multi-user.target run:$running"
	fs=$(g $i 30 "stat -fc %T /sys/fs/cgroup")
	[[ $fs == cgroup2fs ]] || fail "guest $i: /sys/fs/cgroup is '$fs', not cgroup v2"
	hn=$(g $i 30 "hostname")
	[[ $hn == "rmpool-g$i" ]] || fail "guest $i: hostname '$hn'"
	port=$(g $i 30 "cat /sys/class/infiniband/rxe0/ports/1/state")
	[[ $port == *ACTIVE* ]] || fail "guest $i: rxe0 port state '$port'"
	listen=$(g $i 30 "ss -Hltn 'sport = :22' | awk '{ print \$4 }' | xargs")
	[[ $listen == "${hosts[$((i - 1))]}:22" ]] || fail "guest $i: sshd listens on '$listen', want ${hosts[$((i - 1))]}:22 only"
	up=$(cat "$RMPOOL_VM_DIR/g$i/ready")
	an=$(g $i 30 "systemd-analyze time 2>/dev/null | head -n1" || true)
	note "guest $i: systemd PID 1 at rmpool-guest.target, system $state (failed units: ${failed:-none}); cgroup2; ready after ${up} s of uptime; systemd-analyze: ${an:-n/a}"
done
note "the host's units of multi-user.target (${enabled:-none}) run in no guest"

# From guest 1 (Ansible's control node) to all 3, and from guest 2 to 3
# (each ssh costs seconds of emulated key exchange).
for pair in "1 1" "1 2" "1 3" "2 3"; do
	read -r from to <<<"$pair"
	out=$(g $from 60 "ssh -F $RMPOOL_VM_SSH_CONFIG ${hosts[$((to - 1))]} 'hostname; cat /proc/1/comm'" 2>&1) ||
		fail "ssh from guest $from to ${hosts[$((to - 1))]} failed: $out"
	[[ $out == "rmpool-g$to"$'\n'systemd ]] || fail "ssh from guest $from to ${hosts[$((to - 1))]} ran on '$out'"
done
# A host key that is not the guest's is refused (strict checking): guest
# 3 is asked for under guest 2's key.
bad=$RMPOOL_VM_SCRATCH/known_hosts.bad
sed -n 2p "$(dirname "$RMPOOL_VM_SSH_CONFIG")/known_hosts" | sed "s/^[^ ]*/${hosts[2]}/" >"$bad"
if g 1 60 "ssh -F $RMPOOL_VM_SSH_CONFIG -o UserKnownHostsFile=$bad ${hosts[2]} true" >/dev/null 2>&1; then
	fail "ssh accepted guest 3 under another host's key"
fi
note "ssh: guest 1 reaches all 3 and guest 2 reaches guest 3, as root (key only, known hosts checked; a wrong host key is refused)"
if pgrep -f "sshd_config.g" >/dev/null; then
	fail "an sshd with the run's configuration runs on the host machine: $(pgrep -af 'sshd_config.g')"
fi
note "the host machine runs no sshd of the run's ($(pgrep -c -x sshd || true) sshd processes of its own)"
note "PASS"
