#!/bin/bash
# restart: a coordinator restart loses nothing (issue 11), on three
# Soft-RoCE hosts (qemu guests of deploy/vm/rmpool-vm).
#
# Usage: restart.sh PATH/TO/rmpool PATH/TO/rmpool-server PATH/TO/rmpool-donor PATH/TO/restart_data
#                   PATH/TO/probe_metadata
# Run:   deploy/vm/rmpool-vm run --hosts 3 -- ctest --test-dir build -R rdma_restart
#
# Scenario (the coordinator's side and the donors'; the consumer that
# rides through each outage with a write/verify loop comes with the
# library's part of the issue):
#   - the coordinator on guest 1 with a state directory of its own, an
#     agent on every guest, a pool whose donors lie on all 3 hosts;
#   - a consumer on guest 2 allocates blocks until they lie on every
#     host, writes each with a pattern of its own, and leaves;
#   - 5 times in a row: the coordinator is killed (SIGKILL; the third
#     time SIGTERM, which must keep everything alike), stays down at
#     least 3 s (once longer than a lease), and is started again on the
#     same state directory; it must re-adopt the pool - ready again, with
#     the generation one higher and a newer segment table - and a fresh
#     consumer must read every block back, byte for byte, allocate new
#     blocks that overlap none of the old (the old ones still read back
#     right after the new ones are written);
#   - a token minted under the generation before is refused by the
#     restarted coordinator;
#   - after the cycles and all frees, `rmpool pool check` finds free
#     bytes == capacity; a second coordinator on the same state
#     directory refuses to start, naming the first one's pid;
#   - `pool destroy` leaves no donor process.
# Prints, per restart, the time from the start to the pool ready again,
# and restarts survived out of tried. Never skips: no harness, no pass.
set -euo pipefail

usage="usage: restart.sh PATH/TO/rmpool PATH/TO/rmpool-server PATH/TO/rmpool-donor PATH/TO/restart_data PATH/TO/probe_metadata"
CLI=${1:?$usage}
SERVER=${2:?$usage}
DONOR=${3:?$usage}
RDATA=${4:?$usage}
PROBE=${5:?$usage}
VM=$(cd "$(dirname "$(readlink -f "$0")")/../../deploy/vm" && pwd)/rmpool-vm

# 40M per process: 32M regions after the donor's footprint, in 4M
# segments; 96M needs 3 donors, and a 64M budget per host holds one of
# them with room for nothing more, so they spread over the 3 hosts.
PROCESS_LIMIT=40M
BUDGET=64M
POOL_SIZE=96M
LEASE=4s
LONG_OUTAGE=7 # s, longer than a lease
CYCLES=5
PORT=7400
HTTP_PORT=7401
RDMA_PORT=7402
POOL=restart$$

T=restart
source "$(dirname "$(readlink -f "$0")")/cluster-lib.sh"

[[ -n ${RMPOOL_VM_DIR:-} ]] ||
	fail "RMPOOL_VM_DIR is unset: run under the harness, e.g. deploy/vm/rmpool-vm run --hosts 3 -- ctest --test-dir build -R rdma_restart"
read -r -a hosts <<<"${RMPOOL_VM_HOSTS:-}"
((${#hosts[@]} >= 3)) || fail "needs 3 hosts, the run has ${#hosts[@]} (${RMPOOL_VM_HOSTS:-none})"
for b in "$CLI" "$SERVER" "$DONOR" "$RDATA" "$PROBE"; do
	[[ -x $b ]] || fail "$b is not built"
done
command -v python3 >/dev/null || fail "python3 is needed on the host to read JSON"
coord_ip=${hosts[0]}
coord=$coord_ip:$PORT

work=$RMPOOL_VM_SCRATCH/restart_$$
mkdir -p "$work"
secret=$work/secret
(umask 077 && head -c 24 /dev/urandom | base64 >"$secret")
# One state directory for every coordinator of the run (stack-lib.sh).
STACK_STATE_DIR=/tmp/rmpool-state.restart.$$
SRV=restart_srv0_$$
agent_job() { echo "restart_agent$1_$$"; }

cleanup() {
	local rc=$?
	for g in 1 2 3; do "$VM" kill "$(agent_job $g)" TERM 2>/dev/null || true; done
	"$VM" kill "$SRV" TERM 2>/dev/null || true
	if ((rc != 0)); then
		echo "---- coordinator log (tail) ----" >&2
		tail -n 80 "$RMPOOL_VM_SCRATCH/$SRV.log" >&2 2>/dev/null || true
		for g in 1 2 3; do
			echo "---- agent $g log (tail) ----" >&2
			tail -n 15 "$RMPOOL_VM_SCRATCH/$(agent_job $g).log" >&2 2>/dev/null || true
		done
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

# ------------------------------------------------------------ the restarts
survived=0
for i in $(seq 1 "$CYCLES"); do
	sig=KILL
	((i == 3)) && sig=TERM
	outage=3
	((i == 4)) && outage=$LONG_OUTAGE
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
	rdata put "$POOL" "$work/more" $((1 << 20)) 1
	rdata get "$POOL" "$work/blocks"
	"$VM" exec --timeout 400 3 -- "$PROBE" "$coord" "$secret" "$POOL" old-generation >"$work/probe.out" 2>&1 ||
		fail "restart $i: a token of the generation before was not refused: $(cat "$work/probe.out")"
	survived=$((survived + 1))
done

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
