#!/bin/bash
# donor_death: a donor SIGKILLed while a consumer holds blocks on it leaves
# service (issue 12, item 4), on three Soft-RoCE hosts (qemu guests of
# deploy/vm/rmpool-vm).
#
# Usage: donor_death.sh PATH/TO/rmpool PATH/TO/rmpool-server PATH/TO/rmpool-donor PATH/TO/death_data
# Run:   deploy/vm/rmpool-vm run --hosts 3 -- ctest --test-dir build -R rdma_donor_death
#
# Scenario:
#   - the coordinator on guest 1, an agent on every guest, a 96 MiB pool
#     of 4 MiB segments whose 3 donors lie one per host;
#   - a consumer on guest 2 (death_data.c) holds 2 blocks on guest 3's
#     donor (rmp_pool_segment_donor shows it) and 2 on the others, each
#     written and read back, then says it is ready and watches its
#     segment table;
#   - guest 3's donor is SIGKILLed; within 1 s the consumer holds the new
#     table version (the figure on the host's clock: the mtimes, in the 9p
#     scratch share, of a file guest 3 writes right before the kill and of
#     the one the consumer writes when it sees the table);
#   - the consumer: capacity down by the donor's bytes; a read and a write
#     on the dead donor fail with -RMP_EDONOR naming it, at once; the
#     blocks on other donors read back byte for byte; allocations up to
#     the capacity left put 0 blocks on the dead donor and number exactly
#     what it holds; a block on the dead donor is freed and its handle
#     released; everything freed;
#   - status: the pool degraded, its capacity and lost bytes, 1 donor
#     lost; metrics: rmpool_pools_degraded 1, the push counted, the 4
#     retire passes of the coordinator's loopback engine done, none
#     failed; `rmpool pool check`: invariants hold, free bytes == the
#     capacity left, the dead donor's bytes reserved (retired);
#   - `pool destroy` leaves no donor process.
# Never skips: no harness, no pass.
set -euo pipefail

usage="usage: donor_death.sh PATH/TO/rmpool PATH/TO/rmpool-server PATH/TO/rmpool-donor PATH/TO/death_data"
CLI=${1:?$usage}
SERVER=${2:?$usage}
DONOR=${3:?$usage}
DDATA=${4:?$usage}
VM=$(cd "$(dirname "$(readlink -f "$0")")/../../deploy/vm" && pwd)/rmpool-vm

# As rdma_restart: 44M per process (32M regions in 4M segments), a 64M
# budget per host holds one donor, so 96M puts one on each host.
PROCESS_LIMIT=44M
BUDGET=64M
POOL_SIZE=96M
SEG=$((4 << 20))
PUSH_BOUND_MS=1000 # the issue's bound: consumers learn of the loss within 1 s
PORT=7410
HTTP_PORT=7411
RDMA_PORT=7412
POOL=death$$

T=donor_death
source "$(dirname "$(readlink -f "$0")")/cluster-lib.sh"

cluster_need rdma_donor_death "$CLI" "$SERVER" "$DONOR" "$DDATA"

cluster_scratch donor_death
STACK_STATE_DIR=/tmp/rmpool-state.death.$$
SRV=death_srv_$$
agent_job() { echo "death_agent$1_$$"; }
CONSUMER=death_consumer_$$
consumer_log=$RMPOOL_VM_SCRATCH/$CONSUMER.log

cleanup() {
	local rc=$?
	"$VM" kill "$CONSUMER" TERM 2>/dev/null || true
	for g in 1 2 3; do
		"$VM" kill "$(agent_job "$g")" TERM 2>/dev/null || true
	done
	"$VM" kill "$SRV" TERM 2>/dev/null || true
	kill_donors 2>/dev/null || true
	if ((rc != 0)); then
		echo "---- coordinator log (tail) ----" >&2
		tail -n 60 "$RMPOOL_VM_SCRATCH/$SRV.log" >&2 2>/dev/null || true
		echo "---- agent log, guest 3 (tail) ----" >&2
		tail -n 15 "$RMPOOL_VM_SCRATCH/$(agent_job 3).log" >&2 2>/dev/null || true
		echo "---- consumer log (tail) ----" >&2
		tail -n 30 "$consumer_log" >&2 2>/dev/null || true
	fi
}
trap cleanup EXIT

status_of() { # EXPR on the pool's entry in `status --json` -> value
	cli 2 "$work/status.json" status --json || fail "status: $(cat "$work/status.json.err")"
	json "$work/status.json" "[p for p in j['pools'] if p['name'] == '$POOL'][0]$1"
}

consumer_failed() { grep -q 'FAILED' "$consumer_log" 2>/dev/null; }

# ------------------------------------------------------------ the cluster and the pool
start_coordinator --donor-return-timeout 60s
for g in 1 2 3; do
	stack_agent "$(agent_job "$g")" "$g" "$BUDGET" "$PROCESS_LIMIT" --log-level debug
done
stack_wait_agents 3 60
cli 2 "$work/create.out" pool create "$POOL" "$POOL_SIZE" ||
	fail "pool create $POOL $POOL_SIZE: $(cat "$work/create.out.err")"
cap0=$(status_of "['capacity']")
ver0=$(status_of "['segtab_version']")
[[ $(status_of "['state']") == ready ]] || fail "pool $POOL is not ready after create"
dpid=$(donor_pids 3 | xargs)
[[ $dpid =~ ^[0-9]+$ ]] || fail "want one donor process on guest 3 (${hosts[2]}), found '$dpid'"
note "pool $POOL ready: $cap0 bytes, segment table version $ver0; guest 3's donor is pid $dpid"

# ------------------------------------------------------------ the consumer, then the kill
"$VM" exec --bg "$CONSUMER" 2 -- env RMPOOL_COORDINATOR="$coord" RMPOOL_SECRET="$(cat "$secret")" \
	RMPOOL_WAIT=event "$DDATA" "$POOL" "$work" "${hosts[2]}" ||
	fail "cannot start the consumer on guest 2"
for _ in $(seq 1 240); do
	[[ -s $work/ready ]] && break
	consumer_failed && fail "the consumer failed: $(grep FAILED "$consumer_log")"
	sleep 0.5
done
[[ -s $work/ready ]] || fail "the consumer is not ready within 120 s: $(tail -n 5 "$consumer_log")"
victim=$(awk '{ print $2 }' "$work/ready")
note "$(grep 'victim donor' "$consumer_log" | sed 's/^death_data: //')"

# The figure on one clock, the host's: the scratch folder is a 9p share
# served by qemu on the host, so a file's mtime is the host's time when a
# guest wrote it. Guest 3 writes "killed" right before the kill, the
# consumer "seen" (its tmp file, renamed) right after it saw the table.
"$VM" exec --timeout 30 3 -- sh -c ': >"$1/killed"; kill -KILL "$2"' sh "$work" "$dpid" ||
	fail "cannot SIGKILL donor $victim (pid $dpid) on guest 3"
for _ in $(seq 1 60); do
	[[ -s $work/seen ]] && break
	consumer_failed && fail "the consumer failed: $(grep FAILED "$consumer_log")"
	sleep 0.5
done
[[ -s $work/seen ]] || fail "the consumer saw no new segment table within 30 s of the kill"
ver1=$(awk '{ print $4 }' "$work/seen")
kill_ms=$(stat -c %.3Y "$work/killed" | tr -d .)
seen_ms=$(stat -c %.3Y "$work/seen" | tr -d .)
took=$((seen_ms - kill_ms))
note "donor $victim SIGKILLed: the consumer held segment table version $ver1 $took ms after the kill (host clock: the mtimes of files the two guests wrote; bound $PUSH_BOUND_MS ms)"
((took <= PUSH_BOUND_MS)) || fail "the consumer learned of the loss $took ms after the kill, want at most $PUSH_BOUND_MS"
((ver1 == ver0 + 1)) || fail "the consumer's new table is version $ver1, want $((ver0 + 1))"
lost_line=$(grep -m1 "is lost: .*pushed to" "$RMPOOL_VM_SCRATCH/$SRV.log" || true)
[[ -n $lost_line ]] || fail "the coordinator's log has no 'pushed to' line for the loss"
note "coordinator: ${lost_line#*pool }"

rc=0
"$VM" wait --timeout 300 "$CONSUMER" >/dev/null 2>&1 || rc=$?
((rc == 0)) || fail "the consumer exited with status $rc: $(grep -E 'FAILED' "$consumer_log" | tail -n 5)"
grep '^death_data: ' "$consumer_log" | grep -v 'victim donor' | sed "s/^death_data: /$T: consumer: /"

# ------------------------------------------------------------ status, metrics, the metadata
vbytes=$(grep -o 'victim donor [0-9]* on [^ ]* ([0-9]* bytes)' "$consumer_log" | grep -o '([0-9]*' | tr -d '(')
[[ $vbytes =~ ^[0-9]+$ ]] || fail "the consumer did not say how many bytes the victim backs"
st=$(status_of "['state']")
cap1=$(status_of "['capacity']")
lost=$(status_of "['donors_lost']")
lbytes=$(status_of "['lost_bytes']")
ver=$(status_of "['segtab_version']")
[[ $st == degraded ]] || fail "pool $POOL is '$st' after the loss, want degraded"
((cap1 == cap0 - vbytes && lost == 1 && lbytes == vbytes && ver == ver1)) ||
	fail "status after the loss: capacity $cap1 (want $((cap0 - vbytes))), $lost lost (want 1), lost bytes $lbytes (want $vbytes), version $ver (want $ver1)"
note "status: $st, capacity $cap1 (was $cap0), 1 donor lost, $lbytes bytes out of service: $(status_of "['note']")"
cli 2 "$work/status.txt" status || fail "status: $(cat "$work/status.txt.err")"
grep -q "$POOL .* degraded" "$work/status.txt" || fail "rmpool status does not show $POOL degraded: $(cat "$work/status.txt")"

wait_metric rmpool_pools_degraded 1 10
wait_metric rmpool_retire_passes_total 4 20 # at the loss and +1, +3, +10 s
m=$(metrics)
for name in rmpool_retire_failures_total:0 rmpool_donors_retired_total:1; do
	v=$(metric "${name%%:*}" "$m")
	[[ $v == "${name#*:}" ]] || fail "metrics: ${name%%:*} is $v, want ${name#*:}"
done
pushes=$(metric rmpool_segtab_pushes_total "$m")
((pushes >= 1)) || fail "metrics: rmpool_segtab_pushes_total is $pushes, want at least 1"
retired=$(metric rmpool_retired_bytes_total "$m")
((retired > 0 && retired <= vbytes)) || fail "metrics: rmpool_retired_bytes_total is $retired, want 1 to $vbytes"
grep -q 'rmpool_pool_info{pool="'"$POOL"'",id="[0-9]*",state="degraded"} 1' <<<"$m" ||
	fail "metrics: no rmpool_pool_info with state=\"degraded\" for $POOL"
passes=$(grep -o 'retire pass [0-9] (+[0-9]* ms): [0-9]* segment(s) of lost donors retired over the loopback engine in [0-9]* ms, [0-9]* byte(s) newly reserved' "$RMPOOL_VM_SCRATCH/$SRV.log" || true)
[[ -n $passes ]] || fail "the coordinator's log has no retire pass"
while read -r line; do note "coordinator: $line"; done <<<"$passes"
note "metrics: pools_degraded 1, segtab_pushes_total $pushes, retire passes 4 (0 failed), retired_bytes_total $retired"

cli 2 "$work/check.json" pool check --json "$POOL" || fail "pool check: $(cat "$work/check.json.err")"
[[ $(json "$work/check.json" "j['valid']") == True ]] || fail "pool check: $(json "$work/check.json" "j['error']")"
free=$(json "$work/check.json" "j['free_bytes']")
alloc=$(json "$work/check.json" "j['alloc_bytes']")
reserved=$(json "$work/check.json" "j['reserved_bytes']")
space=$(json "$work/check.json" "j['space']")
((free == cap1 && alloc == 0 && reserved == space - cap1)) ||
	fail "pool check after every free: free $free (want $cap1), allocated $alloc (want 0), reserved $reserved (want $((space - cap1)): the tail and the dead donor's bytes)"
note "pool check: invariants hold; free $free == the capacity left, reserved $reserved (the tail and the dead donor's $vbytes)"

cli 2 "$work/destroy.out" pool destroy "$POOL" || fail "pool destroy: $(cat "$work/destroy.out.err")"
for _ in $(seq 1 30); do
	left=$(for g in 1 2 3; do donor_pids "$g"; done | wc -w)
	((left == 0)) && break
	sleep 1
done
((left == 0)) || fail "$left donor process(es) left after pool destroy"
note "PASS"
