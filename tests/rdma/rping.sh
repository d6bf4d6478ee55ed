#!/bin/bash
# rdma_rping: Soft-RoCE works end to end between two distinct hosts.
#
# Runs under deploy/vm/rmpool-vm (needs RMPOOL_VM_DIR and at least 2 hosts):
# an rping server on host 1 and a client on host 2 exchange 10 verified
# pings through rdma_cm. Checks both exit codes and outputs, that the rxe
# packet counters rose on both hosts (the traffic really went through rxe
# on the wire, not loopback), and that the two hosts are two kernels
# (different boot ids). Never skips: no harness, no pass.
set -euo pipefail

VM=$(cd "$(dirname "$(readlink -f "$0")")/../../deploy/vm" && pwd)/rmpool-vm
COUNT=10
PORT=7174
SRV=rping_srv_$$

fail() {
	echo "rdma_rping: FAIL: $*" >&2
	exit 1
}

[[ -n ${RMPOOL_VM_DIR:-} ]] ||
	fail "RMPOOL_VM_DIR is unset: run under the harness, e.g. deploy/vm/rmpool-vm run --hosts 2 -- ctest --test-dir build -L rdma"
read -r -a hosts <<<"${RMPOOL_VM_HOSTS:-}"
((${#hosts[@]} >= 2)) || fail "needs 2 hosts, the run has ${#hosts[@]} (${RMPOOL_VM_HOSTS:-none})"
server_addr=${hosts[0]}

vmx() { # HOST CMD... -> stdout of CMD; fails the test when the host does not answer
	local host=$1
	shift
	"$VM" exec --timeout 30 "$host" -- "$@" || fail "host $host: '$*' failed with status $?"
}

counter() { # HOST NAME
	vmx "$1" cat "/sys/class/infiniband/rxe0/ports/1/hw_counters/$2"
}

boot1=$(vmx 1 cat /proc/sys/kernel/random/boot_id)
boot2=$(vmx 2 cat /proc/sys/kernel/random/boot_id)
[[ -n $boot1 && $boot1 != "$boot2" ]] || fail "hosts 1 and 2 have the same boot id ($boot1): not two kernels"

declare -A before
for h in 1 2; do
	for c in sent_pkts rcvd_pkts; do before[$h.$c]=$(counter $h $c); done
done

"$VM" exec --bg "$SRV" 1 -- timeout 90 rping -s -a "$server_addr" -p "$PORT" -v -C "$COUNT" ||
	fail "cannot start the rping server on host 1"
trap '"$VM" kill "$SRV" KILL 2>/dev/null || true' EXIT
"$VM" wait-listen --timeout 30 1 "$PORT" || fail "the rping server on host 1 does not listen on port $PORT"

rc=0
client_out=$("$VM" exec --timeout 60 2 -- rping -c -a "$server_addr" -p "$PORT" -v -C "$COUNT" 2>&1) || rc=$?
((rc == 0)) || { printf '%s\n' "$client_out" | tail -n 10 >&2; fail "rping client on host 2 exited with status $rc"; }

srv_rc=0
"$VM" wait --timeout 30 "$SRV" || srv_rc=$?
trap - EXIT
srv_log=$RMPOOL_VM_SCRATCH/$SRV.log
[[ $srv_rc == 0 ]] || { tail -n 20 "$srv_log" >&2; fail "rping server on host 1 exited with status $srv_rc"; }

n_client=$(grep -c '^ping data: rdma-ping-' <<<"$client_out" || true)
n_server=$(grep -c '^server ping data: rdma-ping-' "$srv_log" || true)
((n_client == COUNT)) || { printf '%s\n' "$client_out" >&2; fail "client printed $n_client of $COUNT pings"; }
((n_server == COUNT)) || { tail -n 20 "$srv_log" >&2; fail "server printed $n_server of $COUNT pings"; }

for h in 1 2; do
	for c in sent_pkts rcvd_pkts; do
		after=$(counter $h $c)
		((after > ${before[$h.$c]})) || fail "host $h: rxe0 $c did not rise (${before[$h.$c]} -> $after)"
		echo "host $h: rxe0 $c ${before[$h.$c]} -> $after"
	done
done
echo "rdma_rping: PASS ($COUNT pings host 2 -> host 1 over rxe, boot ids $boot1 / $boot2)"
