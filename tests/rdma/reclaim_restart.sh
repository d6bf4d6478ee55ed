#!/bin/bash
# rdma_reclaim_restart: a reclaim survives a coordinator restart, and a
# consumer whose operations a restart cut in the middle abandons those
# slots, which the coordinator resets, so the next reclaim is not held up
# (issue 12), on three Soft-RoCE hosts.
#
# Usage: reclaim_restart.sh PATH/TO/rmpool PATH/TO/rmpool-server PATH/TO/rmpool-donor PATH/TO/reclaim_data
# Run:   deploy/vm/rmpool-vm run --hosts 3 -- ctest --test-dir build -R rdma_reclaim_restart -V
#
# Scenario (coordinator on guest 1 with a state directory, --lease-timeout
# 3s, an agent on every guest, a 96M pool on the 3 hosts):
#   - a survivor on guest 3 holds 32 blocks of 256 KiB with patterns and
#     stays idle; two victims on guest 2 hold 48 blocks each; a churner
#     on guest 3 holds 16 fixed blocks with patterns and allocates and
#     frees 256 KiB blocks from 8 threads non-stop;
#   - victim 1 is SIGKILLed; the first coordinator runs with
#     --reclaim-delay 60s, so once its lease expired and its cut is
#     complete it is only reclaim-pending (recorded in the state store);
#     then that coordinator is SIGKILLed - the churner's operations in
#     flight fail in the middle - and a second one is started on the same
#     state directory (--reclaim-delay 0);
#   - the second coordinator cuts victim 1 off again and reclaims it: its
#     line "lease L reclaimed: 48 blocks, ..." (the time from its start
#     printed); the churner's shards whose operations failed mid-way gave
#     their slots up (ABANDONED) and the coordinator reset them: "slot S
#     of lease C abandoned mid-operation: reset" with the churner's lease
#     (time from the start printed), counted in
#     rmpool_abandoned_slots_reset_total;
#   - the second coordinator is SIGKILLed too, the churner under load
#     again, and a third started: with no reclaim pending, its 1 s slot
#     scan finds the slots the churner abandoned and resets them ("slot S
#     of lease C abandoned mid-operation: reset, N blocks / B bytes
#     freed"; the time from the pool ready again printed);
#   - the churner stops, its churn blocks and its fixed ones (read back
#     byte for byte first) freed, no handle it got overlapped one it
#     held, and it closes; pool check: valid, and what is allocated is the
#     survivor's, victim 2's, the blocks of the churner's frees that
#     failed (given up: it does not free them again) and at most one block
#     per churner thread (an allocation the kill cut mid-way may leave the
#     block it claimed with its tag until its lease ends: leaked, bounded);
#   - victim 2 is SIGKILLed: its reclaim completes (before the abandon, a
#     busy slot of the churner's made every snapshot of the pool unclean)
#     and takes the churner's leftovers with it (their lease is over):
#     pool check then says free bytes == capacity - the survivor's, valid;
#   - the survivor reads its blocks back byte for byte and frees them: the
#     whole capacity free, valid.
# Never skips: no harness, no pass.
set -euo pipefail

usage="usage: reclaim_restart.sh PATH/TO/rmpool PATH/TO/rmpool-server PATH/TO/rmpool-donor PATH/TO/reclaim_data"
CLI=${1:?$usage}
SERVER=${2:?$usage}
DONOR=${3:?$usage}
RDATA=${4:?$usage}
VM=$(cd "$(dirname "$(readlink -f "$0")")/../../deploy/vm" && pwd)/rmpool-vm

# As rdma_reclaim: 3 donors of 32M regions, one per host.
PROCESS_LIMIT=44M
BUDGET=64M
POOL_SIZE=96M
LEASE_MS=3000
BLOCK=$((256 << 10))
KEEP_N=32
HOLD_N=48
FIXED_N=16
PORT=7490
HTTP_PORT=7491
RDMA_PORT=7492
POOL=reclrst$$

T=rdma_reclaim_restart
source "$(dirname "$(readlink -f "$0")")/cluster-lib.sh"
cluster_need rdma_reclaim_restart "$CLI" "$SERVER" "$DONOR" "$RDATA"
export RMPOOL_COORDINATOR=$coord
export RMPOOL_WAIT=event # 1-vCPU guests: block, do not spin (DESIGN.md, Soft-RoCE)

cluster_scratch reclaim_restart export
# One state directory for both coordinators (the job names differ).
STACK_STATE_DIR=/tmp/rmpool-state.reclaim_restart.$$
SRV=rrst_srv1_$$
agent_job() { echo "rrst_agent$1_$$"; }
VICTIM1=rrst_victim1_$$
VICTIM2=rrst_victim2_$$
KEEPER=rrst_keeper_$$
CHURNER=rrst_churner_$$
srv_logs=()

cleanup() {
	local rc=$?
	for j in "$VICTIM1" "$VICTIM2" "$KEEPER" "$CHURNER"; do "$VM" kill "$j" KILL 2>/dev/null || true; done
	"$VM" exec --timeout 120 2 -- "$CLI" --coordinator "$coord" --secret-file "$secret" \
		pool destroy "$POOL" >/dev/null 2>&1 || true
	for g in 1 2 3; do "$VM" kill "$(agent_job $g)" TERM 2>/dev/null || true; done
	"$VM" kill "$SRV" TERM 2>/dev/null || true
	kill_donors
	"$VM" exec --timeout 60 1 -- rm -rf "$STACK_STATE_DIR" >/dev/null 2>&1 || true
	if ((rc != 0)); then
		for l in "${srv_logs[@]}"; do
			echo "---- coordinator log $l (tail) ----" >&2
			tail -n 60 "$l" >&2 2>/dev/null || true
		done
		for j in "$VICTIM1" "$VICTIM2" "$KEEPER" "$CHURNER"; do
			echo "---- $j (tail) ----" >&2
			tail -n 20 "$RMPOOL_VM_SCRATCH/$j.log" >&2 2>/dev/null || true
		done
	fi
}
trap cleanup EXIT

check_pool() { # [poll] -> "valid free alloc usable" from pool check --json on guest 1
	cli 1 "$work/check.json" pool check --json "$POOL" || [[ ${1:-} == poll && -s $work/check.json ]] ||
		fail "pool check: $(cat "$work/check.json.err")"
	python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["valid"], j["free_bytes"], j["alloc_bytes"], j["usable"])' \
		"$work/check.json"
}

field() { # FILE NAME -> the word after NAME in FILE's first line
	awk -v n="$2" '{ for (i = 1; i < NF; i++) if ($i == n) { print $(i + 1); exit } }' "$1"
}

wait_file() { # FILE SECONDS
	for _ in $(seq 1 $(($2 * 10))); do
		[[ -e $1 ]] && return 0
		sleep 0.1
	done
	return 1
}

# wait_log FILE REGEX SECONDS -> the first matching line, once it is there
wait_log() {
	local line
	for _ in $(seq 1 $(($3 * 10))); do
		line=$(grep -E -m1 "$2" "$1" 2>/dev/null || true)
		[[ -n $line ]] && { echo "$line"; return 0; }
		sleep 0.1
	done
	return 1
}

ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

# log_gap LINE1 LINE2 -> ms between two coordinator log lines (their timestamps)
log_gap() {
	python3 -c 'import sys, datetime as d
t = [d.datetime.strptime(a.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ") for a in sys.argv[1:3]]
print(int((t[1] - t[0]).total_seconds() * 1000))' "$1" "$2"
}

# ------------------------------------------------------------ the pool
start_coordinator --lease-timeout 3s --reclaim-delay 60s
srv_logs+=("$RMPOOL_VM_SCRATCH/$SRV.log")
for g in 1 2 3; do
	stack_agent "$(agent_job $g)" "$g" "$BUDGET" "$PROCESS_LIMIT"
done
stack_wait_agents 3 60
"$VM" exec --timeout 400 2 -- "$CLI" --coordinator "$coord" --secret-file "$secret" pool create "$POOL" "$POOL_SIZE" ||
	fail "pool create failed"
note "pool $POOL ($POOL_SIZE) created; lease timeout $LEASE_MS ms; state in $STACK_STATE_DIR"

# ------------------------------------------------------------ the consumers
"$VM" exec --bg "$KEEPER" 3 -- "$RDATA" keep "$POOL" "$KEEP_N" "$BLOCK" "$work/keep.ready" "$work/keep.go" ||
	fail "cannot start the survivor"
wait_file "$work/keep.ready" 120 || fail "the survivor did not get ready within 120 s"
for v in 1 2; do
	job=$VICTIM1
	((v == 2)) && job=$VICTIM2
	"$VM" exec --bg "$job" 2 -- "$RDATA" hold "$POOL" "$HOLD_N" "$BLOCK" "$work/hold$v.ready" ||
		fail "cannot start victim $v"
	wait_file "$work/hold$v.ready" 120 || fail "victim $v did not get ready within 120 s"
done
"$VM" exec --bg "$CHURNER" 3 -- "$RDATA" churn "$POOL" "$FIXED_N" "$BLOCK" "$work/churn.ready" "$work/churn" ||
	fail "cannot start the churner"
wait_file "$work/churn.ready" 120 || fail "the churner did not get ready within 120 s"
keep_bytes=$(field "$work/keep.ready" bytes)
hold_bytes=$(field "$work/hold1.ready" bytes)
lease1=$(field "$work/hold1.ready" lease)
lease2=$(field "$work/hold2.ready" lease)
lease_c=$(field "$work/churn.ready" lease)
note "survivor: $keep_bytes bytes; victims: leases $lease1 and $lease2, $hold_bytes bytes each; churner: lease $lease_c, $FIXED_N fixed blocks, churning"

# ------------------------------------------------------------ victim 1, then the coordinator
"$VM" kill "$VICTIM1" KILL
cut=$(wait_log "$RMPOOL_VM_SCRATCH/$SRV.log" "lease $lease1 of client [0-9]+ on pool $POOL: cut complete" 30) ||
	fail "victim 1's lease $lease1 was not cut off within 30 s of its SIGKILL"
note "first coordinator: ${cut#*INFO: }"
grep -q "pool $POOL: lease $lease1 reclaimed" "$RMPOOL_VM_SCRATCH/$SRV.log" &&
	fail "lease $lease1 was reclaimed before the restart (--reclaim-delay 60s)"
sleep 1 # the churner keeps going: operations are in flight when the coordinator dies
"$VM" kill "$SRV" KILL
"$VM" wait --timeout 30 "$SRV" >/dev/null 2>&1 || true
note "first coordinator SIGKILLed with lease $lease1 reclaim-pending and the churner under load"
sleep 1
SRV=rrst_srv2_$$
t_start=$(date +%s%N)
start_coordinator --lease-timeout 3s --reclaim-delay 0s
log2=$RMPOOL_VM_SCRATCH/$SRV.log
srv_logs+=("$log2")
touch "$work/churn.gentle" # from now on the churner leaves the resolver quiet moments

# ------------------------------------------------------------ after the restart
line=$(wait_log "$log2" "pool $POOL: lease $lease1 reclaimed:" 60) ||
	fail "the restarted coordinator did not reclaim lease $lease1 within 60 s"
reclaim_ms=$(ms_since "$t_start")
ready=$(grep -m1 "pool $POOL (id [0-9]*) re-adopted and ready" "$log2") ||
	fail "no 're-adopted and ready' line for $POOL in the second coordinator's log"
note "second coordinator: ${ready#*INFO: }"
note "second coordinator: ${line#*INFO: }"
note "lease $lease1 reclaimed $(log_gap "$ready" "$line") ms after the pool was ready again ($reclaim_ms ms after the second coordinator was started)"
read -r blocks bytes < <(sed -n 's/.*reclaimed: \([0-9]*\) blocks, \([0-9]*\) bytes back.*/\1 \2/p' <<<"$line")
((blocks >= HOLD_N && bytes >= hold_bytes)) ||
	fail "the reclaim after the restart gave back $blocks blocks and $bytes bytes, want at least $HOLD_N and $hold_bytes"
reset=$(wait_log "$log2" "pool $POOL: .*of lease $lease_c.* abandoned mid-operation: reset" 60) ||
	fail "no abandoned slot of the churner's lease $lease_c was reset within 60 s of the restart: $(grep -c 'abandoned' "$log2") abandoned line(s)"
note "second coordinator: ${reset#*INFO: }"
note "the churner's abandoned slot(s) reset $(log_gap "$ready" "$reset") ms after the pool was ready again"
n_reset=$(metric rmpool_abandoned_slots_reset_total)
((n_reset >= 1)) || fail "rmpool_abandoned_slots_reset_total is $n_reset"

# ------------------------------------------------------------ again, with no reclaim pending: the scan
rm -f "$work/churn.gentle" # the churner under full load again
sleep 1
"$VM" kill "$SRV" KILL
"$VM" wait --timeout 30 "$SRV" >/dev/null 2>&1 || true
note "second coordinator SIGKILLed with the churner under load (no reclaim pending)"
sleep 1
SRV=rrst_srv3_$$
start_coordinator --lease-timeout 3s --reclaim-delay 0s
log3=$RMPOOL_VM_SCRATCH/$SRV.log
srv_logs+=("$log3")
touch "$work/churn.gentle"
ready3=$(wait_log "$log3" "pool $POOL \(id [0-9]+\) re-adopted and ready" 90) ||
	fail "the third coordinator did not have $POOL ready within 90 s"
scan=$(wait_log "$log3" "pool $POOL: .*of lease $lease_c.* abandoned mid-operation: reset, [0-9]+ blocks" 60) ||
	fail "the third coordinator's slot scan reset no abandoned slot of lease $lease_c within 60 s: $(grep -c 'abandoned' "$log3") abandoned line(s)"
note "third coordinator: ${scan#*INFO: }"
note "the churner's abandoned slot(s) reset by the 1 s scan $(log_gap "$ready3" "$scan") ms after the pool was ready again"
n_reset=$(metric rmpool_abandoned_slots_reset_total)
((n_reset >= 1)) || fail "rmpool_abandoned_slots_reset_total is $n_reset on the third coordinator"
note "metrics: rmpool_abandoned_slots_reset_total $n_reset, rmpool_abandoned_bytes_freed_total $(metric rmpool_abandoned_bytes_freed_total)"

# ------------------------------------------------------------ the churner stops
sleep 2 # a few more rounds of churn on the shards recorded again
touch "$work/churn.quiet"
rc=0
"$VM" wait --timeout 120 "$CHURNER" || rc=$?
sed "s/^/$T: churner: /" "$RMPOOL_VM_SCRATCH/$CHURNER.log" | grep -v '^$' | tail -3
((rc == 0)) || fail "the churner failed (exit $rc): overlapping handles or lost bytes"
note "churner: $(cat "$work/churn.done")"
read -r valid free alloc usable < <(check_pool)
leaked=$((alloc - keep_bytes - hold_bytes))
note "after the churner closed: valid $valid, allocated $alloc = survivor $keep_bytes + victim 2 $hold_bytes + $leaked left by the churner's failed operations"
[[ $valid == True ]] || fail "pool check invalid after the churner closed: $(cat "$work/check.json")"
# Left behind: the blocks of the frees that failed (given up, see
# reclaim_data.c), and at most one block per churner thread (8) whose
# allocation the kill cut mid-way; a later operation on the broken
# connection fails before anything lands. A free the kill cut mid-way
# returned 0 and was settled by the library (freed exactly once): none
# of those is left.
free_failed=$(field "$work/churn.done" free_failed)
note "frees cut in the middle by the kills and settled by the library: $(field "$work/churn.done" in_doubt) ($(field "$work/churn.done" unsettled) not settled yet before the close, which settles them)"
leak_max=$(((free_failed + 8) * BLOCK))
((leaked >= 0 && leaked <= leak_max)) ||
	fail "$leaked bytes allocated beyond the survivor's and victim 2's: more than the $free_failed failed frees' blocks + one per churner thread ($leak_max)"

# ------------------------------------------------------------ victim 2
"$VM" kill "$VICTIM2" KILL
t_kill=$(date +%s%N)
line=$(wait_log "$log3" "pool $POOL: lease $lease2 reclaimed:" 60) ||
	fail "victim 2's lease $lease2 was not reclaimed within 60 s of its SIGKILL"
back_ms=$(ms_since "$t_kill")
note "third coordinator: ${line#*INFO: }"
read -r blocks bytes < <(sed -n 's/.*reclaimed: \([0-9]*\) blocks, \([0-9]*\) bytes back.*/\1 \2/p' <<<"$line")
# The churner's leftovers go with the first resolver run after its close
# (this reclaim, or a scan just before it).
((bytes >= hold_bytes && bytes <= hold_bytes + leaked)) ||
	fail "the reclaim of victim 2 gave back $bytes bytes, want $hold_bytes (+ up to the churner's $leaked)"
read -r valid free alloc usable < <(check_pool)
[[ $valid == True ]] && ((alloc == keep_bytes && free == usable - keep_bytes)) ||
	fail "after victim 2's reclaim: valid $valid, free $free, allocated $alloc; want free $((usable - keep_bytes)), allocated $keep_bytes"
note "victim 2's $hold_bytes bytes (and the churner's $leaked) back $back_ms ms after its SIGKILL (nominal bound: 2 lease periods, $((2 * LEASE_MS)) ms); free == capacity - survivor's, valid"

# ------------------------------------------------------------ the survivor's blocks
touch "$work/keep.go"
rc=0
"$VM" wait --timeout 300 "$KEEPER" || rc=$?
sed "s/^/$T: survivor: /" "$RMPOOL_VM_SCRATCH/$KEEPER.log"
((rc == 0)) || fail "the survivor's blocks did not read back byte for byte (exit $rc)"
read -r valid free alloc usable < <(check_pool)
[[ $valid == True ]] && ((free == usable && alloc == 0)) ||
	fail "after the survivor freed its blocks: valid $valid, free $free of $usable, allocated $alloc"
note "survivor's $KEEP_N blocks byte-exact through the restart and freed: the whole $usable bytes free, metadata valid"
note "PASS"
