#!/bin/bash
# restart: a coordinator restart loses nothing (issue 11), on three
# Soft-RoCE hosts (qemu guests of deploy/vm/rmpool-vm).
#
# Usage: restart.sh PATH/TO/rmpool PATH/TO/rmpool-server PATH/TO/rmpool-donor PATH/TO/restart_data
#                   PATH/TO/probe_metadata
# Run:   deploy/vm/rmpool-vm run --hosts 3 -- ctest --test-dir build -R rdma_restart
#
# Scenario:
#   - the coordinator on guest 1 with a state directory of its own, an
#     agent on every guest, a pool whose donors lie on all 3 hosts;
#   - a consumer on guest 2 allocates blocks until they lie on every
#     host, writes each with a pattern of its own, and leaves;
#   - a consumer that rides through every outage (restart_data ride) on
#     guest 2: blocks of its own, checked to lie on every host, in a
#     write/verify loop over all of them from before the first restart to
#     after the last; it watches the coordinator with rmp_status, and
#     while it is away (and until the first allocation works again) it
#     probes rmp_alloc - and calls rmp_alloc/rmp_free at no other time;
#   - 5 times in a row: the coordinator is killed (SIGKILL; the third
#     time SIGTERM, which must keep everything alike), stays down at
#     least 3 s (once longer than a lease), and is started again on the
#     same state directory; it must re-adopt the pool - ready again, with
#     the generation one higher and a newer segment table - and a fresh
#     consumer must read every block back, byte for byte, allocate new
#     blocks that overlap none of the old nor the rider's (the old ones
#     still read back right after the new ones are written);
#   - a token minted under the generation before is refused by the
#     restarted coordinator;
#   - the rider saw exactly the 5 outages, did reads and writes inside
#     each, none failed and no byte was wrong, and an allocation worked
#     again after each;
#   - the agent of guest 3 is SIGKILLed (its pid only) while the rider
#     runs: its donors keep running and serving (the rider's counts grow
#     meanwhile, the pool stays ready); the agent started again adopts
#     them: the coordinator counts them against the host's budget again,
#     the pool is ready with no donor away or lost;
#   - after the cycles and all frees (the rider's too), `rmpool pool
#     check` finds free bytes == capacity; a second coordinator on the
#     same state directory refuses to start, naming the first one's pid;
#   - `pool destroy` leaves no donor process.
# Prints, per restart, the time from the start to the pool ready again;
# per outage as the rider saw it, how long the coordinator was away, the
# reads and writes inside and the time to the first allocation; and
# restarts survived out of tried. Never skips: no harness, no pass.
set -euo pipefail

usage="usage: restart.sh PATH/TO/rmpool PATH/TO/rmpool-server PATH/TO/rmpool-donor PATH/TO/restart_data PATH/TO/probe_metadata"
CLI=${1:?$usage}
SERVER=${2:?$usage}
DONOR=${3:?$usage}
RDATA=${4:?$usage}
PROBE=${5:?$usage}
VM=$(cd "$(dirname "$(readlink -f "$0")")/../../deploy/vm" && pwd)/rmpool-vm

# 44M per process: 32M regions after the donor's footprint (8.6M since
# the donors link libsystemd; up to 12M leaves the same), in 4M
# segments; 96M needs 3 donors, and a 64M budget per host holds one of
# them with room for nothing more, so they spread over the 3 hosts.
PROCESS_LIMIT=44M
BUDGET=64M
POOL_SIZE=96M
LEASE=4s
LONG_OUTAGE=7 # s, longer than a lease
# 5 in CI; the soak run (label soak: rdma_restart_soak) sets more. In
# every 5, the 3rd is a SIGTERM and the 4th an outage longer than a lease.
CYCLES=${RMPOOL_RESTART_CYCLES:-5}
PORT=7400
HTTP_PORT=7401
RDMA_PORT=7402
POOL=restart$$

T=restart
source "$(dirname "$(readlink -f "$0")")/cluster-lib.sh"

cluster_need rdma_restart "$CLI" "$SERVER" "$DONOR" "$RDATA" "$PROBE"

cluster_scratch restart
# One state directory for every coordinator of the run (stack-lib.sh).
STACK_STATE_DIR=/tmp/rmpool-state.restart.$$
SRV=restart_srv0_$$
agent_job() { echo "restart_agent$1_$$"; }
AGENT3B=restart_agent3b_$$ # guest 3's agent started again after its SIGKILL
RIDER=restart_rider_$$
ride_log=$RMPOOL_VM_SCRATCH/$RIDER.log
ride_blocks=$work/ride.blocks
ride_report=$work/ride.report
ride_stop=$work/ride.stop

cleanup() {
	local rc=$?
	"$VM" kill "$RIDER" TERM 2>/dev/null || true
	for j in "$(agent_job 1)" "$(agent_job 2)" "$(agent_job 3)" "$AGENT3B"; do
		"$VM" kill "$j" TERM 2>/dev/null || true
	done
	"$VM" kill "$SRV" TERM 2>/dev/null || true
	if ((rc != 0)); then
		echo "---- coordinator log (tail) ----" >&2
		tail -n 80 "$RMPOOL_VM_SCRATCH/$SRV.log" >&2 2>/dev/null || true
		for j in "$(agent_job 1)" "$(agent_job 2)" "$(agent_job 3)" "$AGENT3B"; do
			echo "---- agent log $j (tail) ----" >&2
			tail -n 15 "$RMPOOL_VM_SCRATCH/$j.log" >&2 2>/dev/null || true
		done
		echo "---- riding consumer log (tail) ----" >&2
		tail -n 40 "$ride_log" >&2 2>/dev/null || true
	fi
}
trap cleanup EXIT

rdata() { # ARGS... -> a fresh consumer on guest 2; output to $work/rdata.out
	"$VM" exec --timeout 300 2 -- env RMPOOL_COORDINATOR="$coord" RMPOOL_SECRET="$(cat "$secret")" \
		RMPOOL_WAIT=event "$RDATA" "$@" >"$work/rdata.out" 2>&1 ||
		fail "restart_data $*: $(cat "$work/rdata.out")"
	sed "s/^/$T: /" "$work/rdata.out"
}

status_of() { # EXPR on the pool's entry in `status --json` -> value
	cli 2 "$work/status.json" status --json || fail "status: $(cat "$work/status.json.err")"
	json "$work/status.json" "[p for p in j['pools'] if p['name'] == '$POOL'][0]$1"
}

# Waits until the pool is ready again; prints the seconds it took.
wait_ready() { # SECONDS
	local st='' t0=$SECONDS
	for _ in $(seq 1 "$1"); do
		st=$(status_of "['state']" 2>/dev/null || echo none)
		[[ $st == ready ]] && { echo $((SECONDS - t0)); return 0; }
		sleep 1
	done
	fail "pool $POOL is '$st' $1 s after the restart, want ready"
}

ride_field() { # NAME -> its value in the rider's progress line (reads, writes, outages, away, ...)
	local v
	v=$(awk -v k="$1" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }' "$ride_report.progress" 2>/dev/null)
	echo "${v:-none}"
}

ride_rw() { # -> RR, RW: the rider's reads and writes so far
	RR=$(ride_field reads)
	RW=$(ride_field writes)
	[[ $RR =~ ^[0-9]+$ && $RW =~ ^[0-9]+$ ]] ||
		fail "the rider's progress has no counts: $(cat "$ride_report.progress" 2>/dev/null || echo none)"
}

rider_failed() { # -> true once the rider said FAILED
	grep -q 'FAILED' "$ride_log" 2>/dev/null
}

# Waits until the rider has seen N outages, the last of them over and an
# allocation after it done (so that the next one is an outage of its own).
wait_rider() { # N SECONDS
	for _ in $(seq 1 $(($2 * 2))); do
		rider_failed && fail "the riding consumer failed: $(grep FAILED "$ride_log")"
		[[ $(ride_field outages) == "$1" && $(ride_field away) == 0 && $(ride_field probing) == 0 ]] && return 0
		sleep 0.5
	done
	fail "the riding consumer, $2 s after restart $1: $(cat "$ride_report.progress" 2>/dev/null || echo 'no progress'), want outages $1 away 0 probing 0"
}

host3() { # EXPR on guest 3's entry in the hosts of `status --json` -> value
	cli 2 "$work/status.json" status --json || fail "status: $(cat "$work/status.json.err")"
	json "$work/status.json" "[h for h in j['hosts'] if h['host'] == '${hosts[2]}'][0]$1"
}

agent3_pid() { # -> pids of guest 3's agent processes (not its donors)
	"$VM" exec --timeout 30 3 -- sh -c "pgrep -f '^$DONOR --agent --coordinator $coord ' || true" | xargs
}

# ------------------------------------------------------------ the cluster and the pool
start_coordinator --lease-timeout "$LEASE" --donor-return-timeout 60s
for g in 1 2 3; do
	stack_agent "$(agent_job $g)" "$g" "$BUDGET" "$PROCESS_LIMIT" --log-level debug
done
stack_wait_agents 3 60
cli 2 "$work/create.out" pool create "$POOL" "$POOL_SIZE" ||
	fail "pool create $POOL $POOL_SIZE: $(cat "$work/create.out.err")"
capacity=$(status_of "['capacity']")
gen0=$(json "$work/status.json" "j['generation']")
ver=$(status_of "['segtab_version']")
note "pool $POOL ($capacity bytes) ready; coordinator generation $gen0, segment table version $ver"

rdata put "$POOL" "$work/blocks" $((4 << 20)) 3
rdata get "$POOL" "$work/blocks"

# The rider: its own blocks on all 3 hosts, a write/verify loop until the
# stop file, every outage counted (restart_data.c says how).
"$VM" exec --bg "$RIDER" 2 -- env RMPOOL_COORDINATOR="$coord" RMPOOL_SECRET="$(cat "$secret")" \
	RMPOOL_WAIT=event "$RDATA" ride "$POOL" "$ride_blocks" "$ride_report" "$ride_stop" "$work/blocks" ||
	fail "cannot start the riding consumer on guest 2"
for _ in $(seq 1 240); do
	[[ -s $ride_blocks ]] && break
	rider_failed && fail "the riding consumer failed: $(grep FAILED "$ride_log")"
	sleep 0.5
done
[[ -s $ride_blocks ]] || fail "the riding consumer wrote no $ride_blocks within 120 s: $(tail -n 5 "$ride_log")"
grep -q ' on 3 hosts ' "$ride_log" || fail "the rider's blocks do not lie on 3 hosts: $(grep 'ride:' "$ride_log")"
note "$(grep 'ride: .* block(s)' "$ride_log" | sed 's/^restart_data: //')"
wait_rider 0 30

# ------------------------------------------------------------ the restarts
survived=0
for i in $(seq 1 "$CYCLES"); do
	sig=KILL
	((i % 5 == 3)) && sig=TERM
	outage=3
	((i % 5 == 4)) && outage=$LONG_OUTAGE
	"$VM" kill "$SRV" "$sig" || fail "restart $i: cannot send SIG$sig to the coordinator"
	"$VM" wait --timeout 30 "$SRV" >/dev/null 2>&1 || true
	if [[ $sig == TERM ]]; then
		grep -q 'SIGTERM: shutting down; pools, donors and the state stay' "$RMPOOL_VM_SCRATCH/$SRV.log" ||
			fail "restart $i: the SIGTERM log line does not say that pools and donors stay"
	fi
	sleep "$outage"
	SRV=restart_srv${i}_$$
	start_coordinator --lease-timeout "$LEASE" --donor-return-timeout 60s
	took=$(wait_ready 90)
	gen=$(json "$work/status.json" "j['generation']")
	((gen == gen0 + i)) || fail "restart $i: generation $gen, want $((gen0 + i))"
	v=$(status_of "['segtab_version']")
	((v > ver)) || fail "restart $i: segment table version $v, was $ver"
	ver=$v
	lost=$(status_of "['donors_lost']")
	((lost == 0)) || fail "restart $i: $lost donor(s) lost: $(status_of "['note']")"
	ms=$(grep -o 're-adopted and ready, [0-9]* ms after the start' "$RMPOOL_VM_SCRATCH/$SRV.log" | grep -o '[0-9]*' || echo '?')
	note "restart $i (SIG$sig, down ${outage} s): pool ready ${ms} ms after the start (status saw it within ${took} s), generation $gen, table version $v"
	rdata get "$POOL" "$work/blocks"
	rdata put "$POOL" "$work/more" $((1 << 20)) 1 "$work/blocks" "$ride_blocks"
	rdata get "$POOL" "$work/blocks"
	"$VM" exec --timeout 400 3 -- "$PROBE" "$coord" "$secret" "$POOL" old-generation >"$work/probe.out" 2>&1 ||
		fail "restart $i: a token of the generation before was not refused: $(cat "$work/probe.out")"
	wait_rider "$i" 60
	survived=$((survived + 1))
done

# ------------------------------------------------------------ guest 3's agent SIGKILLed
# The agent's pid only: its donors run in sessions of their own and must
# keep serving; the agent started again adopts them.
d3=$(host3 "['donors']")
u3=$(host3 "['used']")
((d3 >= 1)) || fail "guest 3 (${hosts[2]}) has no donor on record before the agent kill"
dpids=$(donor_pids 3 | xargs)
[[ -n $dpids ]] || fail "no donor process on guest 3"
apid=$(agent3_pid)
[[ $apid =~ ^[0-9]+$ ]] || fail "want one agent process on guest 3, found '$apid'"
ride_rw
r0=$RR w0=$RW
"$VM" exec --timeout 30 3 -- kill -KILL "$apid" || fail "cannot SIGKILL the agent (pid $apid) on guest 3"
"$VM" wait --timeout 30 "$(agent_job 3)" >/dev/null 2>&1 || true
[[ -z $(agent3_pid) ]] || fail "the agent on guest 3 still runs after SIGKILL: $(agent3_pid)"
for _ in $(seq 1 20); do
	[[ $(stack_metric rmpool_agents) == 2 ]] && break
	sleep 1
done
[[ $(stack_metric rmpool_agents) == 2 ]] || fail "the coordinator still counts $(stack_metric rmpool_agents) agents after the SIGKILL, want 2"
sleep 3
[[ $(donor_pids 3 | xargs) == "$dpids" ]] ||
	fail "guest 3's donors changed while its agent was dead: were '$dpids', now '$(donor_pids 3 | xargs)'"
ride_rw
r1=$RR w1=$RW
((r1 > r0 && w1 > w0)) || fail "the rider stalled while the agent was dead: reads $r0 -> $r1, writes $w0 -> $w1"
[[ $(ride_field errors) == 0 && $(ride_field wrong_bytes) == 0 ]] ||
	fail "the rider, with guest 3's agent dead: $(cat "$ride_report.progress")"
st=$(status_of "['state']")
[[ $st == ready ]] || fail "pool $POOL is '$st' with guest 3's agent dead, want ready"
note "guest 3's agent (pid $apid) SIGKILLed: its donor(s) ($dpids) run on, the pool stays ready; the rider did $((r1 - r0)) reads and $((w1 - w0)) writes meanwhile, none failed"

stack_agent "$AGENT3B" 3 "$BUDGET" "$PROCESS_LIMIT" --log-level debug
stack_wait_agents 3 60
for _ in $(seq 1 30); do
	[[ $(host3 "['donors']") == "$d3" && $(host3 "['used']") == "$u3" ]] && break
	sleep 1
done
[[ $(host3 "['donors']") == "$d3" && $(host3 "['used']") == "$u3" ]] ||
	fail "guest 3 after its agent's restart: $(host3 "['donors']") donor(s), $(host3 "['used']") bytes used; want $d3 and $u3 as before"
adopted=$(grep -o 'adopted [0-9]* running donor(s)' "$RMPOOL_VM_SCRATCH/$AGENT3B.log" | grep -o '[0-9]*' || echo none)
[[ $adopted == "$d3" ]] || fail "the restarted agent adopted '$adopted' donor(s), want $d3"
[[ $(donor_pids 3 | xargs) == "$dpids" ]] || fail "guest 3's donors changed over the agent's restart"
st=$(status_of "['state']")
away=$(status_of "['donors_away']")
lost=$(status_of "['donors_lost']")
if [[ $st != ready ]] || ((away != 0 || lost != 0)); then
	fail "pool $POOL after the agent's restart: $st, $away donor(s) away, $lost lost: $(status_of "['note']")"
fi
ride_rw
r2=$RR w2=$RW
((r2 > r1 && w2 > w1)) || fail "the rider stalled over the agent's restart: reads $r1 -> $r2, writes $w1 -> $w2"
rdata get "$POOL" "$work/blocks"
note "guest 3's agent started again: adopted $adopted donor(s); the host counts $d3 donor(s), $u3 bytes used, as before; pool ready, 0 donors away, 0 lost"

# ------------------------------------------------------------ the rider stops
touch "$ride_stop"
rc=0
"$VM" wait --timeout 180 "$RIDER" >/dev/null 2>&1 || rc=$?
((rc == 0)) || fail "the riding consumer exited with status $rc: $(grep -E 'FAILED|ride: ' "$ride_log" | tail -n 10)"
[[ -s $ride_report ]] || fail "the riding consumer wrote no report"
sed "s/^/$T: rider: /" "$ride_report"
n=$(grep -c '^outage ' "$ride_report" || true)
((n == CYCLES)) || fail "the riding consumer saw $n outage(s), want $CYCLES"
# outage I duration_ms D reads R writes W errors E wrong_bytes B alloc_ms A alloc_bad X status_max_ms S
while read -r _ idx _ dur _ rd _ wr _ er _ wb _ am _ ab _ sm; do
	# Down at least 3 s (7 s the 4th time); the rider notices within one
	# step of its loop (tens of ms), and the restarted coordinator answers
	# a little after its start.
	want=2500
	((idx % 5 == 4)) && want=$((LONG_OUTAGE * 1000 - 500))
	((dur >= want)) || fail "outage $idx lasted $dur ms as the rider saw it, want at least $want"
	((rd > 0 && wr > 0)) || fail "outage $idx: $rd reads and $wr writes inside, want more than 0 of each"
	((er == 0 && wb == 0)) || fail "outage $idx: $er failed reads or writes, $wb wrong bytes"
	((am >= 0)) || fail "outage $idx: no allocation worked again after it"
	((ab == 0)) || fail "outage $idx: $ab allocation probe(s) returned another code than RMP_EAWAY or EAGAIN"
	note "outage $idx: the coordinator away ${dur} ms for the rider, ${rd} reads and ${wr} writes inside (0 failed, 0 wrong bytes; longest rmp_status ${sm} ms); allocations back ${am} ms after its start, $((am - dur)) ms after rmp_status worked again"
done < <(grep '^outage ' "$ride_report")

# ------------------------------------------------------------ the end
rdata get "$POOL" "$work/more"
rdata drop "$POOL" "$work/blocks"
rdata drop "$POOL" "$work/more"
cli 2 "$work/check.json" pool check --json "$POOL" || fail "pool check: $(cat "$work/check.json.err")"
free=$(json "$work/check.json" "j['free_bytes']")
usable=$(json "$work/check.json" "j['usable']")
[[ $(json "$work/check.json" "j['valid']") == True ]] || fail "pool check: $(json "$work/check.json" "j['error']")"
((free == usable)) || fail "pool check: free bytes $free after every free, want $usable"
note "after the restarts and every free: free bytes == capacity ($free), invariants hold"

out=$("$VM" exec --timeout 60 1 -- sh -c "RMPOOL_SECRET=x$(cat "$secret") '$SERVER' --listen $coord_ip:$((PORT + 50)) --http-port 0 --state-dir '$STACK_STATE_DIR' 2>&1; echo status \$?" || true)
grep -q 'held by another rmpool-server (pid' <<<"$out" && grep -q 'status 1' <<<"$out" ||
	fail "a second coordinator on $STACK_STATE_DIR was not refused: $out"
note "a second coordinator on the same state directory: $(grep -o 'state directory .*' <<<"$out" | head -1)"

cli 2 "$work/destroy.out" pool destroy "$POOL" || fail "pool destroy: $(cat "$work/destroy.out.err")"
for _ in $(seq 1 30); do
	left=$(for g in 1 2 3; do donor_pids "$g"; done | wc -w)
	((left == 0)) && break
	sleep 1
done
((left == 0)) || fail "$left donor process(es) left after pool destroy"
echo "$T: restarts survived: $survived of $CYCLES"
note "PASS"
