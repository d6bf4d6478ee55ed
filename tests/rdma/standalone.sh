#!/bin/bash
# standalone: a donor started on its own (`rmpool-donor --size ...`, no
# agent) offers memory that a pool uses, on three Soft-RoCE hosts (qemu
# guests of deploy/vm/rmpool-vm). Issue 4.
#
# Usage: standalone.sh PATH/TO/rmpool PATH/TO/rmpool-server PATH/TO/rmpool-donor PATH/TO/pool_data
# Run:   deploy/vm/rmpool-vm run --hosts 3 -- ctest --test-dir build -R rdma_standalone --output-on-failure
#
# Scenario:
#   - the coordinator on guest 1;
#   - a standalone donor on guest 3 whose region is smaller than one
#     segment is refused, with both sizes in the error;
#   - a standalone donor on guest 3 (48M under a 64M RLIMIT_AS) registers
#     and is spare (rmpool_donors_spare 1, `status --json` lists it on its
#     host); a host agent on guest 2 with a small budget;
#   - `rmpool pool create` from guest 2 of a pool larger than the
#     standalone region: the standalone donor backs 48M of it (`pool info
#     --json`), spawned donors on guest 2 the rest; spare drops to 0;
#   - `pool_data big` writes and verifies one block that spans the
#     standalone donor and spawned ones (or, for a pool too small for
#     that, `rmpool pool check`);
#   - the agent on guest 2 SIGKILLed (its pid only) while a consumer that
#     has connected to every donor waits: the spawned donors keep running,
#     the consumer's alloc/write/read/free rounds after the kill succeed;
#     a restarted agent adopts the donors (its log, and the coordinator's
#     status counts them on guest 2);
#   - `rmpool pool destroy`: the standalone donor gets TERMINATE on its own
#     connection and exits 0, the adopted ones are terminated by the new
#     agent; no donor process is left, rmpool_donors 0;
#   - a spare standalone donor that goes away is dropped (spare back to 0).
# Never skips: no harness, no pass.
set -euo pipefail

usage="usage: standalone.sh PATH/TO/rmpool PATH/TO/rmpool-server PATH/TO/rmpool-donor PATH/TO/pool_data"
CLI=${1:?$usage}
SERVER=${2:?$usage}
DONOR=${3:?$usage}
POOL_DATA=${4:?$usage}
VM=$(cd "$(dirname "$(readlink -f "$0")")/../../deploy/vm" && pwd)/rmpool-vm

STANDALONE_SIZE=${RMPOOL_SA_SIZE:-48M}
PROCESS_LIMIT=64M
AGENT_BUDGET=${RMPOOL_SA_BUDGET:-128M}
POOL_SIZE=${RMPOOL_SA_POOL:-128M}
PORT=7430
HTTP_PORT=7431
RDMA_PORT=7432
POOL=sa$$

T=rdma_standalone
source "$(dirname "$(readlink -f "$0")")/cluster-lib.sh"

cluster_need rdma_standalone "$CLI" "$SERVER" "$DONOR" "$POOL_DATA"
g2=${hosts[1]}
g3=${hosts[2]}

sa_bytes=$(to_bytes "$STANDALONE_SIZE")
size_bytes=$(to_bytes "$POOL_SIZE")
((size_bytes > sa_bytes)) || fail "test setup: the pool ($POOL_SIZE) must be larger than the standalone region ($STANDALONE_SIZE)"

cluster_scratch standalone
SRV=sa_srv_$$
AGENT=sa_agent_$$
AGENT2=sa_agent2_$$
RIDE=sa_ride_$$
SA=sa_donor_$$
SA2=sa_donor2_$$

cleanup() {
	local rc=$?
	"$VM" exec --timeout 120 2 -- "$CLI" --coordinator "$coord" --secret-file "$secret" \
		pool destroy "$POOL" >/dev/null 2>&1 || true
	for j in "$RIDE" "$SA2" "$SA" "$AGENT2" "$AGENT" "$SRV"; do "$VM" kill "$j" TERM 2>/dev/null || true; done
	kill_donors
	if ((rc != 0)); then
		echo "---- coordinator log (tail) ----" >&2
		tail -n 60 "$RMPOOL_VM_SCRATCH/$SRV.log" >&2 2>/dev/null || true
		for j in "$SA" "$AGENT" "$AGENT2" "$RIDE"; do
			echo "---- $j log (tail) ----" >&2
			tail -n 20 "$RMPOOL_VM_SCRATCH/$j.log" >&2 2>/dev/null || true
		done
	fi
}
trap cleanup EXIT


# ------------------------------------------------------------ coordinator
start_coordinator
note "coordinator ready on guest 1 ($coord)"

# ------------------------------------------------------------ a region under one segment is refused
rc=0
"$VM" exec --timeout 120 3 -- "$DONOR" --coordinator "$coord" --secret-file "$secret" --size 2M \
	--process-limit "$PROCESS_LIMIT" --rdma-addr "$g3" >"$work/small.out" 2>&1 || rc=$?
((rc != 0)) || fail "a standalone donor of 2M (under one 4M segment) was accepted: $(cat "$work/small.out")"
grep -q 'smaller than one segment' "$work/small.out" ||
	fail "the 2M standalone donor's error does not say why: $(cat "$work/small.out")"
grep -q '2097152' "$work/small.out" && grep -q '4194304' "$work/small.out" ||
	fail "the 2M standalone donor's error does not name both sizes: $(cat "$work/small.out")"
note "2M standalone donor refused (exit $rc): $(grep -m1 'smaller than one segment' "$work/small.out" | sed 's/^.*ERROR: //')"
[[ $(metric rmpool_donors) == 0 ]] || fail "metrics: rmpool_donors $(metric rmpool_donors) after a refused donor"

# ------------------------------------------------------------ the standalone donor and the agent
"$VM" exec --bg "$SA" 3 -- "$DONOR" --coordinator "$coord" --secret-file "$secret" --size "$STANDALONE_SIZE" \
	--process-limit "$PROCESS_LIMIT" --rdma-addr "$g3" --log-level debug ||
	fail "cannot start the standalone donor on guest 3"
wait_metric rmpool_donors_spare 1 60
grep -q 'standalone donor [0-9]* registered' "$RMPOOL_VM_SCRATCH/$SRV.log" ||
	fail "the coordinator's log does not show the standalone donor registering"
sa_id=$(sed -n 's/.*standalone donor \([0-9]*\) registered.*/\1/p' "$RMPOOL_VM_SCRATCH/$SRV.log" | tail -n 1)
sa_pid=$(donor_pids 3)
[[ $(wc -w <<<"$sa_pid") == 1 ]] || fail "want one donor process on guest 3, found '$sa_pid'"
note "standalone donor $sa_id (pid $sa_pid) on guest 3 is spare: $(grep -m1 'standalone donor [0-9]* registered' "$RMPOOL_VM_SCRATCH/$SRV.log" | sed 's/^.*INFO: //')"

stack_agent "$AGENT" 2 "$AGENT_BUDGET" "$PROCESS_LIMIT" --log-level debug
stack_wait_agents 1 60
m=$(metrics)
[[ $(metric rmpool_donors_standalone "$m") == 1 ]] ||
	fail "metrics: rmpool_donors_standalone $(metric rmpool_donors_standalone "$m"), want 1"
cli 2 "$work/status0.json" status --json || fail "status: $(cat "$work/status0.json.err")"
hd=$(json "$work/status0.json" "sum(h['donors'] for h in j['hosts'] if h['host'] == '$g3')")
hb=$(json "$work/status0.json" "sum(h['budget'] for h in j['hosts'] if h['host'] == '$g3')")
((hd == 1)) || fail "status: host $g3 has $hd donors, want the standalone one"
((hb == sa_bytes)) || fail "status: host $g3 offers $hb bytes, want $sa_bytes"
note "agent on guest 2 (budget $AGENT_BUDGET); status lists host $g3 with 1 standalone donor offering $hb bytes"

# ------------------------------------------------------------ pool create
t0=$(date +%s%N)
rc=0
cli 2 "$work/create.out" pool create "$POOL" "$POOL_SIZE" || rc=$?
t1=$(date +%s%N)
sed "s/^/$T: create: /" "$work/create.out"
((rc == 0)) || fail "pool create $POOL $POOL_SIZE on guest 2 exited $rc: $(cat "$work/create.out.err")"
note "pool $POOL ($POOL_SIZE) provisioned in $(((t1 - t0) / 1000000)) ms"

cli 2 "$work/info.json" pool info --json "$POOL" || fail "pool info: $(cat "$work/info.json.err")"
capacity=$(json "$work/info.json" 'j["capacity"]')
((capacity == size_bytes)) || fail "pool capacity $capacity, asked $size_bytes"
n_donors=$(json "$work/info.json" 'len(j["donors"])')
sa_in=$(json "$work/info.json" "sum(d['bytes'] for d in j['donors'] if d['id'] == $sa_id and d['host'] == '$g3')")
backed=$(json "$work/info.json" 'sum(d["bytes"] for d in j["donors"])')
max_donor=$(json "$work/info.json" 'max(d["bytes"] for d in j["donors"])')
python3 -c 'import json,sys
for d in json.load(open(sys.argv[1]))["donors"]: print("%s: pool info: donor %d on %s:%d, %d segments, %d bytes" % (sys.argv[2], d["id"], d["host"], d["port"], d["segments"], d["bytes"]))' \
	"$work/info.json" "$T"
((sa_in == sa_bytes)) || fail "pool info: the standalone donor $sa_id on $g3 backs $sa_in bytes, want $sa_bytes"
((backed >= size_bytes)) || fail "pool info: donors back $backed bytes, the pool is $size_bytes"
((n_donors >= 2)) || fail "pool info: $n_donors donor(s), want the standalone one and spawned ones"
m=$(metrics)
[[ $(metric rmpool_donors_spare "$m") == 0 ]] || fail "metrics: rmpool_donors_spare $(metric rmpool_donors_spare "$m") with the donor in a pool"
[[ $(metric rmpool_donors "$m") == "$n_donors" ]] || fail "metrics: rmpool_donors $(metric rmpool_donors "$m"), want $n_donors"
spawned=$(donor_pids 2)
(($(wc -w <<<"$spawned") == n_donors - 1)) || fail "guest 2 runs donors '$spawned', want $((n_donors - 1))"
cli 2 "$work/status1.json" status --json || fail "status: $(cat "$work/status1.json.err")"
st_donors=$(json "$work/status1.json" "[p['donors'] for p in j['pools'] if p['name'] == '$POOL'][0]")
((st_donors == n_donors)) || fail "status says $st_donors donors in $POOL, pool info $n_donors"
note "standalone donor $sa_id backs $sa_in of $size_bytes bytes; $((n_donors - 1)) spawned donor(s) on guest 2 the rest; spare 0"

# ------------------------------------------------------------ data over the standalone and spawned donors
export RMPOOL_COORDINATOR=$coord
RMPOOL_SECRET=$(cat "$secret")
export RMPOOL_SECRET
export RMPOOL_WAIT=${RMPOOL_WAIT:-event} # 1-vCPU guests: block, do not spin
if ((capacity > max_donor)); then
	"$VM" exec --timeout 600 2 -- "$POOL_DATA" big "$POOL" >"$work/big.out" 2>&1 ||
		fail "pool_data big $POOL exited $?: $(cat "$work/big.out")"
	sed "s/^/$T: /" "$work/big.out"
fi
cli 2 "$work/check.json" pool check --json "$POOL" || fail "pool check: $(cat "$work/check.json.err")"
[[ $(json "$work/check.json" 'j["valid"]') == True ]] || fail "pool check: invalid: $(json "$work/check.json" 'j["error"]')"
free=$(json "$work/check.json" 'j["free_bytes"]')
((free == capacity)) || fail "pool check: free bytes $free != capacity $capacity"
note "pool check: valid, free $free == capacity"

# ------------------------------------------------------------ the agent killed, its donors serve on
go=$work/ride.go
"$VM" exec --bg "$RIDE" 2 -- "$POOL_DATA" stopped "$POOL" --go "$go" || fail "cannot start pool_data stopped"
for _ in $(seq 1 600); do
	[[ -e $go.ready ]] && break
	sleep 0.1
done
[[ -e $go.ready ]] || fail "pool_data stopped did not connect to every donor in 60 s: $(tail -n 5 "$RMPOOL_VM_SCRATCH/$RIDE.log")"
agent_pid=$("$VM" exec --timeout 30 2 -- sh -c "pgrep -f '^$DONOR --agent --coordinator $coord ' || true")
[[ $(wc -w <<<"$agent_pid") == 1 ]] || fail "want one agent process on guest 2, found '$agent_pid'"
"$VM" exec --timeout 30 2 -- kill -KILL "$agent_pid" || fail "cannot SIGKILL the agent (pid $agent_pid)"
wait_metric rmpool_agents 0 30
[[ $(donor_pids 2 | sort | xargs) == $(xargs -n1 <<<"$spawned" | sort | xargs) ]] ||
	fail "the agent's SIGKILL took donors with it: before '$spawned', after '$(donor_pids 2)'"
touch "$go"
rc=0
"$VM" wait --timeout 120 "$RIDE" >/dev/null 2>&1 || rc=$?
sed "s/^/$T: ride: /" "$RMPOOL_VM_SCRATCH/$RIDE.log"
((rc == 0)) || fail "the consumer failed with the agent gone (status $rc)"
stack_agent "$AGENT2" 2 "$AGENT_BUDGET" "$PROCESS_LIMIT" --log-level debug
stack_wait_agents 1 60
n_spawned=$(wc -w <<<"$spawned")
grep -q "adopted $n_spawned running donor(s)" "$RMPOOL_VM_SCRATCH/$AGENT2.log" ||
	fail "the restarted agent did not adopt the $n_spawned donor(s): $(grep -m3 adopted "$RMPOOL_VM_SCRATCH/$AGENT2.log")"
cli 2 "$work/status2.json" status --json || fail "status: $(cat "$work/status2.json.err")"
hd=$(json "$work/status2.json" "sum(h['donors'] for h in j['hosts'] if h['host'] == '$g2')")
((hd == n_spawned)) || fail "status: host $g2 has $hd donors after the agent's restart, want $n_spawned"
note "agent on guest 2 SIGKILLed (pid $agent_pid): its $n_spawned donor(s) kept running, a connected consumer's rounds passed, the restarted agent adopted them: $(grep -m1 'adopted [0-9]* running' "$RMPOOL_VM_SCRATCH/$AGENT2.log" | sed 's/^.*INFO: //')"

# ------------------------------------------------------------ destroy
cli 2 "$work/destroy.out" pool destroy "$POOL" || fail "pool destroy: $(cat "$work/destroy.out.err")"
sed "s/^/$T: destroy: /" "$work/destroy.out"
rc=0
"$VM" wait --timeout 60 "$SA" >/dev/null 2>&1 || rc=$?
((rc == 0)) || fail "the standalone donor did not exit 0 within 60 s of the destroy (status $rc): $(tail -n 5 "$RMPOOL_VM_SCRATCH/$SA.log")"
grep -q 'terminates this donor' "$RMPOOL_VM_SCRATCH/$SA.log" ||
	fail "the standalone donor's log does not show a TERMINATE: $(tail -n 5 "$RMPOOL_VM_SCRATCH/$SA.log")"
grep -q "donor $sa_id (pool [0-9]*, host $g3): terminate sent via its connection" "$RMPOOL_VM_SCRATCH/$SRV.log" ||
	fail "the coordinator's log does not show TERMINATE sent to donor $sa_id on its connection"
left=
for _ in $(seq 1 30); do
	left=
	for g in 2 3; do
		p=$(donor_pids "$g")
		[[ -z $p ]] || left+="guest $g: $p; "
	done
	[[ -z $left ]] && break
	sleep 1
done
[[ -z $left ]] || fail "donor processes left after pool destroy: $left"
m=$(metrics)
for n in rmpool_donors rmpool_donors_standalone rmpool_donors_spare rmpool_pools; do
	[[ $(metric $n "$m") == 0 ]] || fail "metrics: $n is $(metric $n "$m") after destroy, want 0"
done
n_ended=$(grep -c 'adopted, not our child' "$RMPOOL_VM_SCRATCH/$AGENT2.log" || true)
((n_ended == n_spawned)) || fail "the restarted agent reported $n_ended adopted donor exits, want $n_spawned"
note "pool destroy: standalone donor $sa_id got TERMINATE on its connection and exited 0; the new agent terminated the $n_spawned adopted donor(s); no donor process left, rmpool_donors 0"

# ------------------------------------------------------------ a spare donor that goes away is dropped
"$VM" exec --bg "$SA2" 3 -- "$DONOR" --coordinator "$coord" --secret-file "$secret" --size 8M \
	--process-limit "$PROCESS_LIMIT" --rdma-addr "$g3" || fail "cannot start a second standalone donor"
wait_metric rmpool_donors_spare 1 60
"$VM" kill "$SA2" TERM || fail "cannot stop the second standalone donor"
"$VM" wait --timeout 30 "$SA2" >/dev/null 2>&1 || true
wait_metric rmpool_donors_spare 0 30
wait_metric rmpool_donors 0 5
grep -q 'disconnected while spare' "$RMPOOL_VM_SCRATCH/$SRV.log" ||
	fail "the coordinator's log does not show the spare donor leaving"
note "a spare standalone donor that left was dropped: $(grep -m1 'disconnected while spare' "$RMPOOL_VM_SCRATCH/$SRV.log" | sed 's/^.*INFO: //')"
note "PASS"
