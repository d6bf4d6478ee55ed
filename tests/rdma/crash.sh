#!/bin/bash
# rdma_crash: a consumer killed at every step of its allocator operations
# gives its memory back, while another keeps working (issue 12, the
# reclaim), on three Soft-RoCE hosts.
#
# Usage: crash.sh PATH/TO/rmpool PATH/TO/rmpool-server PATH/TO/rmpool-donor PATH/TO/crash_data
# Run:   deploy/vm/rmpool-vm run --hosts 3 -- ctest --test-dir build -R 'rdma_crash$' -V
# Soak:  RMPOOL_CRASH_SOAK=1 (ctest rdma_crash_soak, -DRMPOOL_SOAK=ON): every k.
#
# Scenario (coordinator on guest 1 with --lease-timeout 2s, an agent on
# every guest, a 96M pool whose donors lie on the 3 hosts):
#   - a survivor on guest 3 (crash_data survivor: 3 threads allocating and
#     freeing 4 KiB .. 128 KiB blocks, the small cache on, patterns
#     written and checked before each free, an owner array claimed with
#     CAS; 0..2 x RMPOOL_CRASH_SURV_GAP_US (50 ms) between a thread's
#     operations) works through the whole test; a pause protocol (files in the
#     shared scratch) parks its threads, and it reports its live bytes as
#     the metadata count them and its own rmp_pool_check;
#   - the workload touches what it breaks: a victim on guest 2 runs each
#     kind's operation once without the kill, the survivor paused, and
#     counts its word operations (crash_data victim KIND 0): the alloc
#     splits (3+ round trips, the next alloc gets its buddy), the free
#     merges (2+ round trips), the cached alloc claims a chunk; that
#     count N is the kind's k range. The survivor's live bytes equal what the walk sees before
#     any kill;
#   - trials: a victim (holding 1 MiB in 4 blocks from 2 threads, plus
#     its setup's blocks) arms the hook with k and runs the operation: it
#     SIGKILLs itself right after its k-th word operation (exit status
#     137). Then, without pausing the survivor, the coordinator's line
#     "pool P: lease L reclaimed: N blocks, B bytes back" (B at least the
#     victim's held bytes); then the survivor is paused: its own check and
#     `rmpool pool check --json` say valid and free bytes == usable - the
#     survivor's live bytes, no wrong byte, nothing handed out twice;
#     resumed. The time from the death to that equality must be within 2
#     lease periods: from the victim's ready file seen (it dies within its
#     one operation, a few ms later), for a random victim (it works a
#     while first) from its exit seen less the most a known death took
#     to be seen;
#   - CI: 20 trials (5 evenly strided k per kind, first and last
#     included, and 5 random kills); soak: every k of every kind and
#     random kills, 100 trials at least;
#   - the end: the survivor reads every block back byte for byte, frees
#     all, exits 0; the whole capacity is free and the metadata valid.
# Prints every trial (kind, k, the reclaim line's time, the equality's
# time, the survivor's operations meanwhile) and a summary per kind.
# Never skips: no harness, no pass.
set -euo pipefail

usage="usage: crash.sh PATH/TO/rmpool PATH/TO/rmpool-server PATH/TO/rmpool-donor PATH/TO/crash_data"
CLI=${1:?$usage}
SERVER=${2:?$usage}
DONOR=${3:?$usage}
CDATA=${4:?$usage}
VM=$(cd "$(dirname "$(readlink -f "$0")")/../../deploy/vm" && pwd)/rmpool-vm

PROCESS_LIMIT=44M
BUDGET=64M
POOL_SIZE=96M
LEASE_MS=2000
SURV_THREADS=3
SURV_GAP_US=${RMPOOL_CRASH_SURV_GAP_US:-50000}
CI_PER_KIND=5
CI_RANDOM=5
SOAK_MIN=100
PORT=7500
HTTP_PORT=7501
RDMA_PORT=7502
POOL=crash$$
SOAK=${RMPOOL_CRASH_SOAK:-0}
SEED=${RMPOOL_CRASH_SEED:-$$}

T=rdma_crash
((SOAK)) && T=rdma_crash_soak
source "$(dirname "$(readlink -f "$0")")/cluster-lib.sh"
cluster_need "$T" "$CLI" "$SERVER" "$DONOR" "$CDATA"
export RMPOOL_COORDINATOR=$coord
export RMPOOL_WAIT=event # 1-vCPU guests: block, do not spin (DESIGN.md, Soft-RoCE)

cluster_scratch crash export
STACK_STATE_DIR=/tmp/rmpool-state.crash.$$
SRV=crash_srv_$$
srv_log=$RMPOOL_VM_SCRATCH/$SRV.log
agent_job() { echo "crash_agent$1_$$"; }
SURV=crash_surv_$$
victim=

cleanup() {
	local rc=$?
	[[ -n $victim ]] && "$VM" kill "$victim" KILL 2>/dev/null || true
	"$VM" kill "$SURV" KILL 2>/dev/null || true
	"$VM" exec --timeout 120 2 -- "$CLI" --coordinator "$coord" --secret-file "$secret" \
		pool destroy "$POOL" >/dev/null 2>&1 || true
	for g in 1 2 3; do "$VM" kill "$(agent_job $g)" TERM 2>/dev/null || true; done
	"$VM" kill "$SRV" TERM 2>/dev/null || true
	kill_donors
	if ((rc != 0)); then
		echo "---- coordinator log (tail) ----" >&2
		tail -n 60 "$srv_log" >&2 2>/dev/null || true
		for j in "$victim" "$SURV"; do
			[[ -n $j ]] || continue
			echo "---- $j (tail) ----" >&2
			tail -n 20 "$RMPOOL_VM_SCRATCH/$j.log" >&2 2>/dev/null || true
		done
	fi
}
trap cleanup EXIT

now_ms() { date +%s%3N; }

field() { # FILE NAME -> the word after NAME in FILE's first line
	awk -v n="$2" '{ for (i = 1; i < NF; i++) if ($i == n) { print $(i + 1); exit } }' "$1"
}

wait_file() { # FILE SECONDS (polled every 20 ms)
	local end=$(($(now_ms) + $2 * 1000))
	until [[ -e $1 ]]; do
		(($(now_ms) > end)) && return 1
		sleep 0.02
	done
}

# ------------------------------------------------------------ the survivor's pause
# pause: parks the survivor and reads its report into r_* (live valid free
# usable ops wrong twice why); fails at once on a wrong byte or a block
# handed out twice. resume: lets it go on.
pause() {
	touch "$work/PAUSE"
	wait_file "$work/report" 20 || fail "the survivor did not answer a pause within 20 s"
	local f=$work/report
	r_live=$(field "$f" live) r_valid=$(field "$f" valid) r_free=$(field "$f" free)
	r_usable=$(field "$f" usable) r_ops=$(field "$f" ops) r_wrong=$(field "$f" wrong)
	r_twice=$(field "$f" twice) r_why=$(sed 's/^[^|]*| *//' "$f")
	((r_wrong == 0)) || fail "the survivor read $r_wrong wrong bytes (a block of its was freed and reused)"
	((r_twice == 0)) || fail "the survivor got $r_twice blocks handed out twice (a live block of its was freed)"
}
resume() {
	rm -f "$work/PAUSE"
	local end=$(($(now_ms) + 20000))
	while [[ -e $work/report ]]; do
		(($(now_ms) > end)) && fail "the survivor did not resume within 20 s"
		sleep 0.02
	done
}
exact() { [[ $r_valid == 1 ]] && ((r_free == r_usable - r_live)); }

cli_check() { # WHAT -> fails unless `rmpool pool check --json` says valid and free == usable - r_live
	cli 1 "$work/check.json" pool check --json "$POOL" || fail "$1: pool check: $(cat "$work/check.json.err")"
	local v f u
	read -r v f u < <(json "$work/check.json" 'j["valid"], j["free_bytes"], j["usable"]' | tr -d '(),')
	[[ $v == True ]] && ((f == u - r_live)) ||
		fail "$1: pool check --json: valid $v, free $f; want valid, free $u - the survivor's $r_live = $((u - r_live))"
}

# ------------------------------------------------------------ the pool
start_coordinator --lease-timeout 2s
for g in 1 2 3; do
	stack_agent "$(agent_job $g)" "$g" "$BUDGET" "$PROCESS_LIMIT"
done
stack_wait_agents 3 60
"$VM" exec --timeout 400 2 -- "$CLI" --coordinator "$coord" --secret-file "$secret" pool create "$POOL" "$POOL_SIZE" ||
	fail "pool create failed"
note "pool $POOL ($POOL_SIZE) created; lease timeout $LEASE_MS ms"

"$VM" exec --bg "$SURV" 3 -- "$CDATA" survivor "$POOL" "$SURV_THREADS" "$SURV_GAP_US" "$work" ||
	fail "cannot start the survivor"
wait_file "$work/survivor.ready" 120 || fail "the survivor did not get ready within 120 s"
sleep 1
pause
exact || fail "before any kill: the survivor holds $r_live bytes, the walk says free $r_free of $r_usable, valid $r_valid ($r_why)"
cli_check "before any kill"
ops_before=$r_ops
resume
note "survivor on guest 3: $SURV_THREADS threads, $r_ops operations so far; its $r_live live bytes are exactly what the walk misses (free $r_free of $r_usable)"

# ------------------------------------------------------------ the workload touches what it breaks
# Each operation alone (the survivor paused): its word operations are
# the k range of its kills.
declare -A N
pause
for kind in split merge cache random; do
	"$VM" exec --timeout 120 2 -- "$CDATA" victim "$POOL" "$kind" 0 "$work" ||
		fail "the $kind count run failed (exit $?; 4: its operation did not do what it is named for)"
	line=$(cat "$work/count.$kind")
	N[$kind]=$(field "$work/count.$kind" ops)
	note "$kind without the kill: $line"
	((N[$kind] > 0)) || fail "$kind: its operation issued no word operation"
done
resume
note "split: the alloc cost $(field "$work/count.split" rts) round trips and the next alloc got its buddy (a split); merge: the free cost $(field "$work/count.merge" rts) round trips (a merge); cache: a 1 MiB chunk claimed"
pause
exact || fail "after the count runs (they free all and close): free $r_free of $r_usable, the survivor's $r_live, valid $r_valid ($r_why)"
resume

# ------------------------------------------------------------ the trials
RANDOM=$SEED
plan=()
for kind in split merge cache; do
	n=${N[$kind]}
	if ((SOAK)); then
		for ((k = 1; k <= n; k++)); do plan+=("$kind $k"); done
	else
		last=0
		for ((i = 0; i < CI_PER_KIND; i++)); do
			k=$((1 + (i * (n - 1) + (CI_PER_KIND - 1) / 2) / (CI_PER_KIND - 1)))
			((k == last)) && k=$((k + 1))
			((k > n)) && k=$n
			plan+=("$kind $k")
			last=$k
		done
	fi
done
n_rand=$CI_RANDOM
if ((SOAK)); then
	n_rand=$((SOAK_MIN - ${#plan[@]}))
	((n_rand < 20)) && n_rand=20
fi
for ((i = 0; i < n_rand; i++)); do plan+=("random $((1 + RANDOM % N[random]))"); done
soak_count=$((N[split] + N[merge] + N[cache]))
soak_rand=$((SOAK_MIN - soak_count))
((soak_rand < 20)) && soak_rand=20
note "CI-sized count: $((3 * CI_PER_KIND + CI_RANDOM)) trials (soak: $((soak_count + soak_rand)): every k of split 1..${N[split]}, merge 1..${N[merge]}, cache 1..${N[cache]}, and $soak_rand random kills in 1..${N[random]}); this run: ${#plan[@]} trials, seed $SEED"

bound_ms=$((2 * LEASE_MS))
declare -A runs times
all_times=()
late=()
max_lag=0 # ms from a victim's death to its exit seen here, at most (the fixed kinds)
declare -A beyond
trial=0
ops_prev=$r_ops
surv_ops_trials=0
t_start=$(now_ms)
for entry in "${plan[@]}"; do
	read -r kind k <<<"$entry"
	trial=$((trial + 1))
	victim=crash_v_$$_$trial
	rm -f "$work/victim.ready" "$work/victim.short"
	"$VM" exec --bg "$victim" 2 -- "$CDATA" victim "$POOL" "$kind" "$k" "$work" "$trial" ||
		fail "trial $trial: cannot start the victim"
	wait_file "$work/victim.ready" 120 || fail "trial $trial ($kind k=$k): the victim did not get ready within 120 s"
	t0=$(now_ms)
	lease=$(field "$work/victim.ready" lease)
	held=$(field "$work/victim.ready" held)
	dry=$(field "$work/victim.ready" dry_ops)
	rc=0
	"$VM" wait --timeout 60 "$victim" || rc=$?
	((rc == 137)) || fail "trial $trial ($kind k=$k): the victim ended with status $rc, not by its SIGKILL (137)"
	t_dead=$(now_ms)
	# The death: right after the ready file for one operation (t0 is a
	# little early: conservative); a random victim works a while first,
	# so its exit as seen, less the most it lagged a known death so far.
	if [[ $kind == random ]]; then
		t0=$((t_dead - max_lag))
	else
		((t_dead - t0 > max_lag)) && max_lag=$((t_dead - t0))
	fi
	ended=
	[[ -e $work/victim.short ]] && beyond[$kind]=$((${beyond[$kind]:-0} + 1)) && ended=" (its operation ended after $(field "$work/victim.short" after) word operations this time: killed after it)"
	# The reclaim, the survivor working meanwhile.
	line=
	while [[ -z $line ]]; do
		line=$(grep "pool $POOL: lease $lease reclaimed:" "$srv_log" || true)
		[[ -n $line ]] && break
		(($(now_ms) - t0 > 30000)) && fail "trial $trial ($kind k=$k): no reclaim of lease $lease within 30 s of the kill"
		sleep 0.05
	done
	t_line=$(now_ms)
	read -r rblocks rbytes rms < <(sed -n 's/.*reclaimed: \([0-9]*\) blocks, \([0-9]*\) bytes back in \([0-9]*\) ms.*/\1 \2 \3/p' <<<"$line")
	((rbytes >= held)) || fail "trial $trial ($kind k=$k): the reclaim gave back $rbytes bytes, less than the $held the victim held"
	# The bytes, with the survivor paused.
	while :; do
		pause
		exact && break
		(($(now_ms) - t0 > 30000)) &&
			fail "trial $trial ($kind k=$k): 30 s after the kill: free $r_free of $r_usable, the survivor holds $r_live (want free $((r_usable - r_live))), valid $r_valid ($r_why)"
		resume
		sleep 0.1
	done
	t_eq=$(now_ms)
	cli_check "trial $trial ($kind k=$k)"
	resume
	ms=$((t_eq - t0))
	d_ops=$((r_ops - ops_prev))
	ops_prev=$r_ops
	surv_ops_trials=$((surv_ops_trials + d_ops))
	snaps=$(sed -n "s/.*pool $POOL: reclaim of lease $lease: \([0-9]*\) snapshot(s) in \([0-9]*\) ms.*/\1 snapshots (\2 ms)/p" "$srv_log" |
		paste -sd ';')
	len=${N[$kind]}
	[[ $kind == split || $kind == merge ]] && len="$dry (dry run; count run ${N[$kind]})"
	note "trial $trial: $kind k=$k of $len$ended: killed; reclaimed $rblocks blocks, $rbytes bytes (held $held) in $rms ms, ${snaps:-? snapshots}, line seen +$((t_line - t0)) ms; walk exact and valid +$ms ms (bound $bound_ms); survivor $d_ops ops meanwhile"
	((ms <= bound_ms)) || late+=("trial $trial ($kind k=$k): $ms ms")
	((d_ops > 0)) || fail "trial $trial ($kind k=$k): the survivor did no operation during the trial"
	runs[$kind]=$((${runs[$kind]:-0} + 1))
	times[$kind]="${times[$kind]:-} $ms"
	all_times+=("$ms")
	victim=
done
t_trials=$(($(now_ms) - t_start))

stats() { # MS... -> "min/median/max"
	printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { printf "%d/%d/%d", v[1], v[int((NR + 1) / 2)], v[NR] }'
}
summary=""
for kind in split merge cache random; do
	[[ -n ${runs[$kind]:-} ]] || continue
	# shellcheck disable=SC2086
	summary+="$kind ${runs[$kind]} (k range 1..${N[$kind]}, ${beyond[$kind]:-0} with k past the operation's end, reclaim ms $(stats ${times[$kind]})); "
done

# ------------------------------------------------------------ the survivor's blocks
touch "$work/STOP"
rc=0
"$VM" wait --timeout 300 "$SURV" || rc=$?
sed "s/^/$T: survivor: /" "$RMPOOL_VM_SCRATCH/$SURV.log"
((rc == 0)) || fail "the survivor saw a wrong byte or a block handed out twice, or failed (exit $rc)"
r_live=0
cli_check "after the survivor freed its blocks"
passed=$((trial - ${#late[@]}))
note "summary: $trial trials run, $passed passed in $((t_trials / 1000)) s: ${summary}reclaim ms min/median/max $(stats "${all_times[@]}") against the bound $bound_ms (2 x lease $LEASE_MS; a death seen at most $max_lag ms late); survivor $surv_ops_trials operations during the trials ($((surv_ops_trials * 1000 / (t_trials + 1))) per s; $((r_ops - ops_before)) since its start), 0 wrong bytes, 0 blocks handed out twice"
((${#late[@]} == 0)) ||
	fail "${#late[@]} of $trial trials gave the bytes back later than 2 lease periods ($bound_ms ms) after the kill: ${late[*]}"
note "PASS"
