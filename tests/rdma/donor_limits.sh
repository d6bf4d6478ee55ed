#!/bin/bash
# donor_limits: rmpool-donor's address-space limit, registration and
# token check on real Soft-RoCE, without a coordinator.
#
# Usage: donor_limits.sh PATH/TO/rmpool-donor PATH/TO/rdma_pair
# Under deploy/vm/rmpool-vm with 2 hosts:
#   1. --measure-footprint prints a plausible VmSize and exits 0;
#   2. --size above --process-limit fails, non-zero, naming both numbers;
#   3. a donor that fits (--no-coordinator) runs with RLIMIT_AS set, soft
#      and hard, as /proc/PID/limits shows; a consumer on host 2 is refused
#      with a token for another donor and served with the right one
#      (WRITE/READ at both ends of the region, FAA); SIGTERM -> exit 0;
#   4. every wait on the coordinator is bounded: nobody listening fails at
#      once, a listener that never answers fails after --timeout.
# Never skips: no harness, no pass.
set -euo pipefail

DONOR=${1:?usage: donor_limits.sh PATH/TO/rmpool-donor PATH/TO/rdma_pair}
PAIR=${2:?usage: donor_limits.sh PATH/TO/rmpool-donor PATH/TO/rdma_pair}
VM=$(cd "$(dirname "$(readlink -f "$0")")/../../deploy/vm" && pwd)/rmpool-vm
BG=donor_limits_$$
SILENT=donor_silent_$$
MiB=$((1024 * 1024))

fail() {
	echo "donor_limits: FAIL: $*" >&2
	exit 1
}
say() { echo "donor_limits: $*"; }

[[ -n ${RMPOOL_VM_DIR:-} ]] ||
	fail "RMPOOL_VM_DIR is unset: run under the harness, e.g. deploy/vm/rmpool-vm run --hosts 2 -- ctest --test-dir build -L rdma"
read -r -a hosts <<<"${RMPOOL_VM_HOSTS:-}"
((${#hosts[@]} >= 2)) || fail "needs 2 hosts, the run has ${#hosts[@]} (${RMPOOL_VM_HOSTS:-none})"
[[ -x $DONOR && -x $PAIR ]] || fail "$DONOR or $PAIR is not built"
RMPOOL_SECRET=donor-limits-test-secret-$$-$RANDOM
export RMPOOL_SECRET
cleanup() {
	"$VM" kill "$BG" KILL 2>/dev/null || true
	"$VM" kill "$SILENT" KILL 2>/dev/null || true
}
trap cleanup EXIT

# 1. footprint
foot=$("$VM" exec --timeout 60 1 -- "$DONOR" --measure-footprint) || fail "--measure-footprint failed"
[[ $foot =~ ^[0-9]+$ ]] || fail "--measure-footprint printed '$foot'"
((foot > MiB && foot < 4096 * MiB)) || fail "footprint $foot bytes is implausible"
say "a donor's footprint is $foot bytes ($((foot / MiB)) MiB)"

# 2. a region that cannot fit
out=$("$VM" exec --timeout 60 1 -- "$DONOR" --no-coordinator --size 64M --process-limit 32M 2>&1) &&
	fail "a 64 MiB donor under a 32 MiB limit succeeded: $out"
grep -q 67108864 <<<"$out" && grep -q 33554432 <<<"$out" ||
	fail "the refusal does not name both numbers (67108864, 33554432): $out"
say "refused as it should: $out"

# 3. a region that fits: limits, tokens, data, SIGTERM
size=$((16 * MiB))
limit=$((foot + size + 32 * MiB))
"$VM" exec --bg "$BG" 1 -- "$DONOR" --no-coordinator --size "$size" --process-limit "$limit" ||
	fail "cannot start the donor on host 1"
log=$RMPOOL_VM_SCRATCH/$BG.log
ready=
for _ in $(seq 1 300); do
	ready=$(grep -m1 '^READY ' "$log" 2>/dev/null || true)
	[[ -n $ready ]] && break
	sleep 0.1
done
[[ -n $ready ]] || { cat "$log" >&2 || true; fail "the donor did not get ready in 30 s"; }
read -r _ addr port raddr rkey len pid <<<"$ready"
((len == size)) || fail "the donor registered $len bytes, asked for $size"
say "donor pid $pid serves $len bytes at $addr:$port (rkey $rkey)"
line=$("$VM" exec --timeout 30 1 -- grep 'Max address space' "/proc/$pid/limits") ||
	fail "cannot read /proc/$pid/limits on host 1"
read -r -a f <<<"$line"
[[ ${f[3]} == "$limit" && ${f[4]} == "$limit" ]] ||
	fail "RLIMIT_AS of the donor is '$line', want $limit soft and hard"
say "$line"
"$VM" exec --timeout 90 2 -- "$PAIR" probe "$addr" "$port" "$raddr" "$rkey" "$len" 0 ||
	fail "a consumer on host 2 could not use the donor's region"
"$VM" kill "$BG" TERM || fail "cannot signal the donor"
rc=0
"$VM" wait --timeout 30 "$BG" || rc=$?
cat "$log"
((rc == 0)) || fail "the donor exited with status $rc after SIGTERM"
grep -q 'refused an RDMA connection' "$log" || fail "the donor did not log the refused consumer"

# 4. bounded waits on the coordinator
t0=$SECONDS
out=$("$VM" exec --timeout 60 1 -- "$DONOR" --coordinator 127.0.0.1:1 --size 4M 2>&1) &&
	fail "a donor without a coordinator succeeded: $out"
grep -q 'Connection refused' <<<"$out" || fail "no clear error for a closed port: $out"
say "closed port: $out"
port=$((20000 + RANDOM % 20000))
"$VM" exec --bg "$SILENT" 1 -- /usr/bin/python3 -c "
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $port)); s.listen(4); print('listening', flush=True)
c, _ = s.accept(); time.sleep(60)" || fail "cannot start the silent listener"
for _ in $(seq 1 100); do
	grep -q listening "$RMPOOL_VM_SCRATCH/$SILENT.log" 2>/dev/null && break
	sleep 0.1
done
t0=$SECONDS
out=$("$VM" exec --timeout 60 1 -- "$DONOR" --coordinator "127.0.0.1:$port" --timeout 2s --size 4M 2>&1) &&
	fail "a donor whose coordinator never answers succeeded: $out"
took=$((SECONDS - t0))
grep -Eq 'no answer within [0-9]+ ms' <<<"$out" || fail "no clear error for a silent coordinator: $out"
((took < 30)) || fail "the silent coordinator held the donor for $took s (timeout 2 s)"
say "silent coordinator, after ${took}s: $out"
say PASS
