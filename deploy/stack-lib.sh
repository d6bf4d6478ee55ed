# stack-lib.sh - start an rmpool stack on the hosts of an rmpool-vm run:
# the coordinator on host 1, host agents where asked, and the wait until
# the agents have registered. Sourced, not run, by deploy/demo-stack.sh
# and by the RDMA tests (tests/rdma/cluster-lib.sh, pool_data.sh); it
# lives in deploy/ because deploy/ must not depend on tests/.
#
# The caller defines fail MESSAGE (prints and exits, never returns) and
# sets, before calling anything here:
#   VM        deploy/vm/rmpool-vm
#   SERVER    the rmpool-server binary     DONOR  the rmpool-donor binary
#   secret    the shared-secret file (on a path every host sees)
#   coord_ip  host 1's address; the coordinator's control, HTTP and
#             rdma_cm listeners are on it
#   coord     coord_ip:PORT, the control address
#   HTTP_PORT RDMA_PORT
# and may set the array STACK_WRAP, a command that wraps every process
# started here (the demo: STACK_WRAP=(timeout 1800), so that nothing
# outlives a lost run; the donors an agent starts run in sessions of their
# own, and outlive it by at most their --orphan-grace), and STACK_STATE_DIR,
# the coordinator's --state-dir on host 1 (default /tmp/rmpool-state.JOB:
# one per job, so that runs sharing the hosts never see each other's
# pools; a caller that restarts the coordinator under another job name
# sets it).
# Every wait is bounded, and each failure says which process and host.

# stack_coordinator JOB READY_SECONDS [FLAGS...]
# rmpool-server as background job JOB on host 1, FLAGS after the stack's
# own; returns once it logged "ready" and its rdma_cm listener on coord_ip.
stack_coordinator() {
	local job=$1 ready_s=$2 log
	shift 2
	log=$RMPOOL_VM_SCRATCH/$job.log
	"$VM" exec --bg "$job" 1 -- ${STACK_WRAP[@]+"${STACK_WRAP[@]}"} "$SERVER" --listen "$coord" --secret-file "$secret" \
		--http-addr "$coord_ip" --http-port "$HTTP_PORT" --rdma-addr "$coord_ip" --rdma-port "$RDMA_PORT" \
		--provision-timeout 5m --state-dir "${STACK_STATE_DIR:-/tmp/rmpool-state.$job}" "$@" ||
		fail "cannot start rmpool-server on host 1"
	for _ in $(seq 1 $((ready_s * 2))); do
		grep -q 'INFO: ready' "$log" 2>/dev/null && break
		sleep 0.5
	done
	grep -q 'INFO: ready' "$log" 2>/dev/null || fail "rmpool-server was not ready after $ready_s s"
	grep -q "rdma_cm listener on $coord_ip" "$log" ||
		fail "rmpool-server has no rdma_cm listener on $coord_ip"
}

# stack_agent JOB HOST BUDGET PROCESS_LIMIT [FLAGS...]
# A host agent as background job JOB on host HOST (1-based), named by and
# listening on that host's address in RMPOOL_VM_HOSTS.
stack_agent() {
	local job=$1 host=$2 budget=$3 limit=$4 ip addrs
	shift 4
	read -r -a addrs <<<"${RMPOOL_VM_HOSTS:-}"
	ip=${addrs[host - 1]:-}
	[[ -n $ip ]] || fail "host $host is not in RMPOOL_VM_HOSTS (${RMPOOL_VM_HOSTS:-none})"
	"$VM" exec --bg "$job" "$host" -- ${STACK_WRAP[@]+"${STACK_WRAP[@]}"} "$DONOR" --agent --coordinator "$coord" \
		--secret-file "$secret" --budget "$budget" --process-limit "$limit" \
		--rdma-addr "$ip" --host "$ip" "$@" || fail "cannot start the agent on host $host"
}

# stack_kill_donors: SIGKILLs every donor process of this stack's
# coordinator on every host. Donors outlive their agent and their
# coordinator (sessions of their own: rmpool-vm's process-group signals do
# not reach them; they leave by themselves only after --orphan-grace), so
# whoever ends a stack ends its donors with this.
stack_kill_donors() {
	local addrs h
	read -r -a addrs <<<"${RMPOOL_VM_HOSTS:-}"
	for ((h = 1; h <= ${#addrs[@]}; h++)); do
		"$VM" exec --timeout 30 "$h" -- sh -c "pkill -KILL -f '^$DONOR --coordinator $coord ' || true" \
			>/dev/null 2>&1 || true
	done
}

# stack_metric NAME -> its value on the coordinator's /metrics, fetched
# from host 1 with bash alone (no curl needed); empty when it cannot.
stack_metric() {
	"$VM" exec --timeout 20 1 -- timeout 5 bash -c \
		'exec 3<>"/dev/tcp/$0/$1" && printf "GET /metrics HTTP/1.0\r\nHost: $0\r\n\r\n" >&3 && cat <&3' \
		"$coord_ip" "$HTTP_PORT" 2>/dev/null | tr -d '\r' | awk -v n="$1" '$1 == n { print $2 }' || true
}

# stack_wait_agents N SECONDS: fails unless N agents are registered in time.
stack_wait_agents() {
	local want=$1 secs=$2 got=0
	for _ in $(seq 1 "$secs"); do
		got=$(stack_metric rmpool_agents)
		[[ ${got:-0} == "$want" ]] && return 0
		sleep 1
	done
	fail "${got:-0} of $want agents registered with the coordinator after $secs s"
}
