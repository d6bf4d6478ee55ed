#!/usr/bin/env bash
# The demo's stack on the hosts of an rmpool-vm run (deploy/demo.sh calls
# it; see deploy/vm/README.md):
#
#   deploy/vm/rmpool-vm run --hosts 3 -- deploy/demo-stack.sh BUILD_DIR
#   deploy/vm/rmpool-vm run --native  -- deploy/demo-stack.sh BUILD_DIR
#
# Starts the coordinator (rmpool-server) on host 1 and a host agent
# (rmpool-donor --agent) on every host, waits until all agents have
# registered, runs rmpool-demo on host 2 (host 1 when there is only one),
# then stops the agents and the coordinator (their start-up is
# deploy/stack-lib.sh, shared with the RDMA tests). The demo itself creates
# and destroys its pool. Every wait is bounded; on failure the coordinator's
# and agents' log tails are printed. Exit status: 0 PASS, 75 a host cannot
# reach host 1 (worth a fresh boot), else 1.
#
# Sizing (RMPOOL_DEMO_{PROCESS_LIMIT,POOL_SIZE,AS_LIMIT,BUDGET} override;
# RMPOOL_DEMO_ARGS adds rmpool-demo options): donor processes limited to 64M of
# address space each; a pool of 256M, more than 3 such processes and more
# than any one host gives (budgets of 128M per host over 3 hosts; one host
# alone gets 384M). Registration under TCG costs about 5 s per GiB.
set -euo pipefail

build=${1:?usage: demo-stack.sh BUILD_DIR}
build=$(cd "$build" && pwd)
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
VM=$here/vm/rmpool-vm
source "$here/stack-lib.sh"
STACK_WRAP=(timeout 1800)
SERVER=$build/server/rmpool-server
DONOR=$build/donor/rmpool-donor
DEMO=$build/client/tools/rmpool-demo
PORT=7420 HTTP_PORT=7421 RDMA_PORT=7422
PROC_LIMIT=${RMPOOL_DEMO_PROCESS_LIMIT:-64M}
POOL_SIZE=${RMPOOL_DEMO_POOL_SIZE:-256M}
AS_LIMIT=${RMPOOL_DEMO_AS_LIMIT:-48M}
POOL=demo$$
SRV=demo_srv_$$
agent_job() { echo "demo_agent$1_$$"; }

say() { echo "demo: $*"; }
fail() {
	echo "demo: FAILED: $*" >&2
	exit 1
}
[[ -n ${RMPOOL_VM_DIR:-} ]] || fail "RMPOOL_VM_DIR is unset: run me under deploy/vm/rmpool-vm run (deploy/demo.sh does)"
for b in "$SERVER" "$DONOR" "$DEMO"; do
	[[ -x $b ]] || fail "$b is missing: build first (deploy/demo.sh does)"
done
[[ -z ${RMPOOL_DEMO_STARTED:-} ]] || echo started >"$RMPOOL_DEMO_STARTED"
read -r -a hosts <<<"${RMPOOL_VM_HOSTS:-}"
n=${#hosts[@]}
((n >= 1)) || fail "the run has no hosts"
if ((n == 1)); then
	BUDGET=${RMPOOL_DEMO_BUDGET:-384M}
	consumer=1
else
	BUDGET=${RMPOOL_DEMO_BUDGET:-128M}
	consumer=2
fi
coord_ip=${hosts[0]}
coord=$coord_ip:$PORT
export RMPOOL_COORDINATOR=$coord
export RMPOOL_WAIT=${RMPOOL_WAIT:-event} # 1-vCPU guests: block on completions, never spin
work=$RMPOOL_VM_SCRATCH/demo_$$
mkdir -p "$work"
secret=$work/secret
(umask 077 && head -c 24 /dev/urandom | base64 >"$secret")
RMPOOL_SECRET=$(cat "$secret")
export RMPOOL_SECRET

started=()
log_tails() {
	local j
	for j in "${started[@]}"; do
		echo "---- $j: last lines of $RMPOOL_VM_SCRATCH/$j.log ----" >&2
		tail -n 25 "$RMPOOL_VM_SCRATCH/$j.log" >&2 2>/dev/null || echo "(no log)" >&2
	done
}
cleanup() {
	local rc=$? j
	trap - EXIT
	((rc == 0)) || log_tails
	# The demo destroyed its pool; donors outlive their agents, so any a
	# failed run left are ended by name.
	for ((i = ${#started[@]} - 1; i >= 0; i--)); do
		"$VM" kill "${started[i]}" TERM 2>/dev/null || true
	done
	for j in "${started[@]}"; do
		"$VM" wait --timeout 15 "$j" >/dev/null 2>&1 || "$VM" kill "$j" KILL 2>/dev/null || true
	done
	stack_kill_donors
	((rc != 0)) || say "stopped the agents and the coordinator"
	exit "$rc"
}
trap cleanup EXIT

elapsed() { echo "$((SECONDS - t0)) s"; }

# ------------------------------------------------------------ coordinator
say "coordinator on host 1 ($RMPOOL_COORDINATOR, metrics on http://$coord_ip:$HTTP_PORT/metrics)"
t0=$SECONDS
started+=("$SRV")
stack_coordinator "$SRV" 120
say "coordinator ready ($(elapsed))"

# ------------------------------------------------------------ network
# Every host must reach host 1 over TCP before anything else is started:
# the qemu guests' switch has (rarely) left one guest cut off; say so, and
# exit 75 so that deploy/demo.sh boots fresh guests once.
for ((g = 2; g <= n; g++)); do
	ok=0
	for _ in $(seq 1 15); do
		if "$VM" exec --timeout 20 "$g" -- timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1"' \
			"$coord_ip" "$HTTP_PORT" >/dev/null 2>&1; then
			ok=1
			break
		fi
		sleep 1
	done
	if ((ok == 0)); then
		echo "demo: FAILED: host $g (${hosts[g - 1]}) cannot reach host 1 ($coord_ip) over TCP: the guests' network is broken" >&2
		exit 75
	fi
done
((n == 1)) || say "hosts 2-$n reach host 1 ($(elapsed))"

# ------------------------------------------------------------ agents
say "host agents on $n host$( ((n == 1)) || echo s) (${hosts[*]}): donor processes limited to $PROC_LIMIT each, $BUDGET per host"
for ((g = 1; g <= n; g++)); do
	started+=("$(agent_job $g)")
	stack_agent "$(agent_job $g)" "$g" "$BUDGET" "$PROC_LIMIT"
done
stack_wait_agents "$n" 90
say "$n of $n agents registered ($(elapsed))"

# ------------------------------------------------------------ the consumer
say "running rmpool-demo on host $consumer (${hosts[consumer - 1]}): pool $POOL_SIZE, RLIMIT_AS $AS_LIMIT"
echo
rc=0
read -r -a extra <<<"${RMPOOL_DEMO_ARGS:-}" # more rmpool-demo options (--chunk, --block, --small)
"$VM" exec --timeout 900 "$consumer" -- "$DEMO" --pool "$POOL" --size "$POOL_SIZE" --as-limit "$AS_LIMIT" \
	"${extra[@]}" || rc=$?
echo
((rc == 0)) || fail "rmpool-demo exited with status $rc"
say "PASS ($(elapsed) after the coordinator started)"
