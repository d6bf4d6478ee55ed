#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# state_faults: bad state that only a real pool can show, and a
# coordinator killed while it creates a pool (issue 11, Tests), on three
# Soft-RoCE hosts (qemu guests of deploy/vm/rmpool-vm). The bad state
# files (truncated, garbage, foreign, newer, a read-only directory) are
# refused before any RDMA device is opened: the integration test
# server_state_refused has them, natively.
#
# Usage: state_faults.sh PATH/TO/rmpool PATH/TO/rmpool-server PATH/TO/rmpool-donor
# Run:   deploy/vm/rmpool-vm run --hosts 3 -- ctest --test-dir build -R rdma_state
#
# Scenario: the coordinator on guest 1 with a state directory of its
# own, an agent on every guest whose donors get --orphan-grace 5s; a
# 96M pool needs 3 donors, one per host. To hold the creation half done,
# the agent on guest 3 is stopped (SIGSTOP) before `pool create`: the
# donors of guests 1 and 2 start and register, the third one waits.
#   1. kill in create, down longer than the grace: SIGKILL the
#      coordinator, let the agent go on; every donor must be gone within
#      the grace (plus its reconnection pacing) on its own, as an orphan;
#      the restarted coordinator does not list the pool, its log says why;
#   2. kill in create, restarted at once: the half pool must never show
#      ready; its donors are told to exit as they come back, none remains
#      after the grace; the hosts' budgets are free again and a pool of
#      the same name is created;
#   3. a metadata object of another layout version (its header's layout
#      word changed while the coordinator is down): the pool is lost with
#      the reason in `status --json`, the log and attach's error, the
#      object byte for byte as it was; with the word put back, the next
#      start re-adopts the pool (nothing was replaced);
#   4. /dev/shm wiped (the pool's objects deleted, as by a reboot): lost,
#      "is gone" in status and attach's error; `pool forget` refused while
#      its donors live; once they are killed (lost), `pool forget`
#      removes it and the name can be created again; no donor remains.
# Prints the time from each kill (or restart) to no donor left, against
# the grace. Never skips: no harness, no pass.
set -euo pipefail

usage="usage: state_faults.sh PATH/TO/rmpool PATH/TO/rmpool-server PATH/TO/rmpool-donor"
CLI=${1:?$usage}
SERVER=${2:?$usage}
DONOR=${3:?$usage}
VM=$(cd "$(dirname "$(readlink -f "$0")")/../../deploy/vm" && pwd)/rmpool-vm

# As restart.sh: 32M regions in 40M processes, a 64M budget holds one per
# host, so 96M takes one donor on each of the 3 hosts.
PROCESS_LIMIT=40M
BUDGET=64M
POOL_SIZE=96M
GRACE_S=5
PORT=7460
HTTP_PORT=7461
RDMA_PORT=7462
POOL=faults$$

T=state_faults
source "$(dirname "$(readlink -f "$0")")/cluster-lib.sh"

cluster_need rdma_state "$CLI" "$SERVER" "$DONOR"

cluster_scratch state_faults
STACK_STATE_DIR=/tmp/rmpool-state.state_faults.$$
n_srv=0
SRV=state_faults_srv0_$$
agent_gen=0 # the agents are started again with a longer grace after step 2
agent_job() { echo "state_faults_agent$1_${agent_gen}_$$"; }
SHM=/dev/shm/rmpool-$POOL

cleanup() {
	local rc=$?
	"$VM" kill "$(agent_job 3)" CONT 2>/dev/null || true
	for g in 1 2 3; do "$VM" kill "$(agent_job $g)" TERM 2>/dev/null || true; done
	"$VM" kill "$SRV" TERM 2>/dev/null || true
	kill_donors
	"$VM" exec --timeout 30 1 -- sh -c "rm -rf '$STACK_STATE_DIR' $SHM $SHM.self" >/dev/null 2>&1 || true
	if ((rc != 0)); then
		echo "---- coordinator log (tail) ----" >&2
		tail -n 60 "$RMPOOL_VM_SCRATCH/$SRV.log" >&2 2>/dev/null || true
		for g in 1 2 3; do
			echo "---- agent $g log (tail) ----" >&2
			tail -n 15 "$RMPOOL_VM_SCRATCH/$(agent_job $g).log" >&2 2>/dev/null || true
		done
	fi
}
trap cleanup EXIT

status() { # -> $work/status.json
	cli 2 "$work/status.json" status --json || fail "status: $(cat "$work/status.json.err")"
}
pool_field() { # FIELD -> the pool's FIELD in the last status, "absent" when it is not listed
	json "$work/status.json" "([p['$1'] for p in j['pools'] if p['name'] == '$POOL'] or ['absent'])[0]"
}
n_donors() { # -> donor processes of our coordinator on all hosts
	for g in 1 2 3; do donor_pids "$g"; done | wc -w
}
ms() { date +%s%3N; }

start_agents() { # GRACE
	for g in 1 2 3; do
		stack_agent "$(agent_job $g)" "$g" "$BUDGET" "$PROCESS_LIMIT" --log-level debug \
			--orphan-grace "$1" --reconnect-max 2s
	done
	stack_wait_agents 3 60
}

# The agents' log lengths now: the mark that donor_exit_ms reads on from.
agent_mark() {
	for g in 1 2 3; do wc -l <"$RMPOOL_VM_SCRATCH/$(agent_job $g).log"; done | xargs
}
# Per host, from its agent's logs past MARK (each host's own clock): the
# time from the agent's loss of the coordinator (the kill) to the exit of
# the host's last donor; prints "g1 N ms, g2 N ms, g3 N ms".
donor_exit_ms() { # MARK
	python3 - "$1" "$RMPOOL_VM_SCRATCH/$(agent_job 1).log" "$RMPOOL_VM_SCRATCH/$(agent_job 2).log" \
		"$RMPOOL_VM_SCRATCH/$(agent_job 3).log" <<'PY'
import datetime, re, sys
marks = [int(x) for x in sys.argv[1].split()]
out = []
for g, (path, mark) in enumerate(zip(sys.argv[2:], marks), 1):
    lost = gone = None
    for line in open(path, errors="replace").read().splitlines()[mark:]:
        m = re.match(r"(\S+Z) ", line)
        if not m:
            continue
        t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ")
        if lost is None and "lost the coordinator" in line and "reconnecting" in line:
            lost = t
        if lost and re.search(r"donor \d+: pid \d+ (exited|killed)", line):
            gone = t
    out.append("g%d %s" % (g, "%d ms" % ((gone - lost).total_seconds() * 1000)
                           if lost and gone else "no donor exit"))
print(", ".join(out))
PY
}

# The coordinator again on the same state directory (a new job name: its own log).
restart_coordinator() {
	n_srv=$((n_srv + 1))
	SRV=state_faults_srv${n_srv}_$$
	start_coordinator --donor-return-timeout 20s
}
kill_coordinator() {
	"$VM" kill "$SRV" KILL || fail "cannot SIGKILL the coordinator"
	"$VM" wait --timeout 30 "$SRV" >/dev/null 2>&1 || true
}

# Waits until the hosts hold no donor of ours, then until every agent is
# registered again and charged nothing (the terminated donors' costs
# given back); fails after SECONDS. Prints the milliseconds since T0.
wait_no_donors() { # T0_MS SECONDS WHAT
	local t0=$1 until=$((SECONDS + $2)) left took
	while left=$(n_donors) && ((left > 0)); do
		((SECONDS < until)) || fail "$3: $left donor process(es) left $2 s on (grace ${GRACE_S} s)"
		sleep 0.2
	done
	took=$(($(ms) - t0))
	while :; do
		status
		[[ $(json "$work/status.json" "sum(h['used'] for h in j['hosts']) == 0 and len(j['hosts']) == 3") == True ]] && break
		((SECONDS < until)) || fail "$3: the hosts are still charged: $(json "$work/status.json" "j['hosts']")"
		sleep 0.5
	done
	echo "$took"
}

# Starts `pool create` from guest 2 with the agent of guest 3 stopped, and
# returns once the donors of guests 1 and 2 have registered: the pool is
# half created. The create job is JOB.
half_create() { # JOB
	local log=$RMPOOL_VM_SCRATCH/$SRV.log n=0
	"$VM" kill "$(agent_job 3)" STOP || fail "cannot SIGSTOP the agent on guest 3"
	"$VM" exec --bg "$1" 2 -- "$CLI" --coordinator "$coord" --secret-file "$secret" \
		pool create "$POOL" "$POOL_SIZE" || fail "cannot start pool create on guest 2"
	for _ in $(seq 1 120); do
		n=$(grep -c "pool $POOL: donor [0-9]* registered" "$log" || true)
		((n >= 2)) && break
		sleep 0.5
	done
	((n == 2)) || fail "half create: $n donor(s) of $POOL registered after 60 s, want 2 (guest 3's agent is stopped)"
	status
	[[ $(pool_field state) == creating ]] || fail "half create: pool $POOL is '$(pool_field state)', want creating"
	[[ -n $(donor_pids 1) && -n $(donor_pids 2) && -z $(donor_pids 3) ]] ||
		fail "half create: want donors on guests 1 and 2 only"
}

# The create job must have failed once its coordinator was killed.
create_failed() { # JOB
	local rc=0
	"$VM" wait --timeout 60 "$1" >/dev/null 2>&1 || rc=$?
	((rc != 0 && rc != 124)) || fail "pool create did not fail when its coordinator was killed (status $rc)"
	note "  the killed create: exit $rc, \"$(tail -n 1 "$RMPOOL_VM_SCRATCH/$1.log")\""
}

# The restarted coordinator says it failed the half pool, and does not list it.
half_pool_gone() {
	local log=$RMPOOL_VM_SCRATCH/$SRV.log line
	line=$(grep -o "pool $POOL (id [0-9]*) was being created when the coordinator stopped: it fails now.*" "$log") ||
		fail "the restarted coordinator's log does not say that $POOL failed"
	note "  coordinator: $line"
	status
	[[ $(pool_field state) == absent ]] || fail "the half pool is listed again: '$(pool_field state)' ($(pool_field note))"
}

# ------------------------------------------------------------ the cluster
start_coordinator --donor-return-timeout 20s
start_agents "${GRACE_S}s"

# ------------------------------------------------------------ 1. kill in create, down past the grace
note "1. SIGKILL while pool $POOL is half created; the coordinator stays down past the grace (${GRACE_S} s)"
half_create create1_$$
mark=$(agent_mark)
kill_coordinator
t_kill=$(ms)
left=$(n_donors)
((left == 2)) || fail "1: $left donor(s) right after the kill, want 2 (they serve on for the grace)"
"$VM" kill "$(agent_job 3)" CONT || fail "cannot SIGCONT the agent on guest 3"
create_failed create1_$$
until=$((SECONDS + GRACE_S + 15))
while left=$(n_donors) && ((left > 0)); do
	((SECONDS < until)) || fail "1: $left orphan donor(s) left $((GRACE_S + 15)) s after the kill (grace ${GRACE_S} s)"
	sleep 0.2
done
orphan_ms=$(($(ms) - t_kill))
grep -q "orphaned: no coordinator has accepted donor" "$RMPOOL_VM_SCRATCH/$(agent_job 1).log" "$RMPOOL_VM_SCRATCH/$(agent_job 2).log" ||
	fail "1: no donor said it was orphaned"
note "  no donor left ${orphan_ms} ms after the kill (grace ${GRACE_S} s), as the test polled; from each agent's loss of the coordinator to its host's last donor exit: $(donor_exit_ms "$mark") (guest 3's agent was stopped: from its SIGCONT; its donor could not register and exited)"
restart_coordinator
half_pool_gone
wait_no_donors "$(ms)" 30 "1" >/dev/null
note "  restarted: pool not listed; hosts charged nothing again"

# ------------------------------------------------------------ 2. kill in create, restarted at once
note "2. SIGKILL while pool $POOL is half created; restarted at once"
half_create create2_$$
mark=$(agent_mark)
kill_coordinator
t_kill=$(ms)
restart_coordinator
t_start=$(ms)
"$VM" kill "$(agent_job 3)" CONT || fail "cannot SIGCONT the agent on guest 3"
create_failed create2_$$
half_pool_gone
# The half pool must never show ready while its donors come back and go.
until=$((SECONDS + GRACE_S + 20))
while left=$(n_donors) && ((left > 0)); do
	status
	[[ $(pool_field state) == absent ]] || fail "2: the half pool is listed: '$(pool_field state)'"
	((SECONDS < until)) || fail "2: $left donor(s) left $((GRACE_S + 20)) s after the restart (grace ${GRACE_S} s)"
	sleep 0.2
done
gone_ms=$(($(ms) - t_kill))
start_gone_ms=$(($(ms) - t_start))
told=$(grep -c "came back while it is being terminated\|terminate sent via its agent" "$RMPOOL_VM_SCRATCH/$SRV.log" || true)
wait_no_donors "$(ms)" 30 "2" >/dev/null
note "  no donor left ${gone_ms} ms after the kill, ${start_gone_ms} ms after the restart, as the test polled (grace ${GRACE_S} s); from each agent's loss of the coordinator to its host's last donor exit: $(donor_exit_ms "$mark"); $told terminate(s) sent by the restarted coordinator"
# From here on the coordinator is down for longer than that grace (the
# steps change files on guest 1 meanwhile): agents with a longer one.
for g in 1 2 3; do "$VM" kill "$(agent_job $g)" TERM || fail "cannot stop agent $g"; done
for g in 1 2 3; do "$VM" wait --timeout 30 "$(agent_job $g)" >/dev/null 2>&1 || true; done
agent_gen=1
start_agents 5m
cli 2 "$work/create.out" pool create "$POOL" "$POOL_SIZE" ||
	fail "2: pool create $POOL $POOL_SIZE after the half one: $(cat "$work/create.out.err")"
status
[[ $(pool_field state) == ready && $(pool_field donors) == 3 ]] ||
	fail "2: the new pool $POOL is '$(pool_field state)' with $(pool_field donors) donors"
note "  a new pool $POOL of the same name: ready, 3 donors"

# ------------------------------------------------------------ 3. another layout version
note "3. the metadata object's layout word changed while the coordinator is down"
kill_coordinator
# Word 0 of the header is RMP_BUDDY_MAGIC << 16 | layout version (little-endian).
word=$("$VM" exec --timeout 30 1 -- python3 -c '
import struct, sys
with open(sys.argv[1], "r+b") as f:
    w = struct.unpack("<Q", f.read(8))[0]
    f.seek(0)
    f.write(struct.pack("<Q", (w & ~0xffff) | 99))
print(w)' "$SHM") || fail "3: cannot change the layout word of $SHM on guest 1"
sum0=$("$VM" exec --timeout 30 1 -- sha256sum "$SHM" | cut -d' ' -f1)
restart_coordinator
status
[[ $(pool_field state) == lost ]] || fail "3: pool $POOL is '$(pool_field state)', want lost"
reason=$(pool_field note)
[[ $reason == *"layout version 99"* ]] || fail "3: the lost pool's note does not give the reason: '$reason'"
note "  status --json: state lost, note \"$reason\""
line=$(grep -o "pool $POOL (id [0-9]*) is lost: .*" "$RMPOOL_VM_SCRATCH/$SRV.log" | head -n 1) ||
	fail "3: no log line says that $POOL is lost"
note "  coordinator: $line"
if cli 2 "$work/info.out" pool info "$POOL"; then fail "3: attach to the lost pool succeeded"; fi
if ! grep -q "lost" "$work/info.out.err" || ! grep -q "layout version 99" "$work/info.out.err"; then
	fail "3: attach's error does not name the reason: $(cat "$work/info.out.err")"
fi
note "  attach: $(cat "$work/info.out.err")"
sleep 2 # the donors come back meanwhile: nothing of it may touch the object
sum1=$("$VM" exec --timeout 30 1 -- sha256sum "$SHM" | cut -d' ' -f1)
[[ $sum1 == "$sum0" ]] || fail "3: $SHM was changed by the restart ($sum0 before, $sum1 after)"
note "  $SHM byte for byte as it was (sha256 $sum0)"
kill_coordinator
"$VM" exec --timeout 30 1 -- python3 -c '
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.write(struct.pack("<Q", int(sys.argv[2])))' "$SHM" "$word" || fail "3: cannot put the layout word back"
restart_coordinator
for _ in $(seq 1 60); do
	status
	[[ $(pool_field state) == ready ]] && break
	sleep 0.5
done
[[ $(pool_field state) == ready && $(pool_field donors_lost) == 0 ]] ||
	fail "3: with its layout word back, $POOL is '$(pool_field state)' with $(pool_field donors_lost) donor(s) lost ($(pool_field note)), want ready with none lost"
note "  its layout word put back: the next start re-adopted it (ready, $(pool_field donors) donors, none lost)"

# ------------------------------------------------------------ 4. /dev/shm wiped
note "4. the pool's shm objects deleted while the coordinator is down (a reboot's /dev/shm)"
kill_coordinator
"$VM" exec --timeout 30 1 -- sh -c "rm -f $SHM $SHM.self" || fail "4: cannot delete $SHM"
restart_coordinator
status
[[ $(pool_field state) == lost ]] || fail "4: pool $POOL is '$(pool_field state)', want lost"
reason=$(pool_field note)
[[ $reason == *"/rmpool-$POOL is gone"* ]] || fail "4: the lost pool's note does not give the reason: '$reason'"
note "  status --json: state lost, note \"$reason\""
if cli 2 "$work/info.out" pool info "$POOL"; then fail "4: attach to the lost pool succeeded"; fi
grep -q "/rmpool-$POOL is gone" "$work/info.out.err" || fail "4: attach's error does not name the reason: $(cat "$work/info.out.err")"
note "  attach: $(cat "$work/info.out.err")"
for _ in $(seq 1 30); do # its donors come back into the lost pool
	status
	(($(pool_field donors_away) == 0)) && break
	sleep 0.5
done
(($(pool_field donors_away) == 0 && $(pool_field donors_lost) == 0)) ||
	fail "4: $(pool_field donors_away) donor(s) away, $(pool_field donors_lost) lost; want all 3 back"
if cli 2 "$work/forget.out" pool forget "$POOL"; then fail "4: pool forget with live donors succeeded"; fi
grep -q "destroy it instead" "$work/forget.out.err" || fail "4: pool forget's refusal: $(cat "$work/forget.out.err")"
note "  pool forget while its donors live: $(cat "$work/forget.out.err")"
kill_donors
for _ in $(seq 1 60); do
	status
	(($(pool_field donors_lost) == 3)) && break
	sleep 0.5
done
(($(pool_field donors_lost) == 3)) || fail "4: $(pool_field donors_lost) donor(s) lost after they were killed, want 3"
cli 2 "$work/forget.out" pool forget "$POOL" || fail "4: pool forget: $(cat "$work/forget.out.err")"
status
[[ $(pool_field state) == absent ]] || fail "4: pool $POOL is still listed after pool forget"
line=$(grep -o "pool $POOL (id [0-9]*) forgotten.*" "$RMPOOL_VM_SCRATCH/$SRV.log") || fail "4: no log line of the forget"
note "  coordinator: $line"
wait_no_donors "$(ms)" 30 "4" >/dev/null
cli 2 "$work/create.out" pool create "$POOL" 32M || fail "4: pool create $POOL after forget: $(cat "$work/create.out.err")"
cli 2 "$work/destroy.out" pool destroy "$POOL" || fail "4: pool destroy: $(cat "$work/destroy.out.err")"
wait_no_donors "$(ms)" 30 "4 (destroy)" >/dev/null
note "  the name created again after the forget, then destroyed: no donor left"
note "PASS"
