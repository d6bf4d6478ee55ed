# cluster-lib.sh - helpers of the RDMA tests that run a coordinator and
# donors on the rmpool-vm guests (provision.sh, standalone.sh,
# pool_data.sh, restart.sh, state_faults.sh, ...). Sourced, not run. The
# caller sets T (its name, for messages), VM, CLI, SERVER, DONOR and PORT,
# calls cluster_need (which sets hosts[], coord_ip and coord), then sets
# secret, SRV (the coordinator's job name), HTTP_PORT and RDMA_PORT before
# calling the rest. Starting the coordinator and the agents is shared with
# the demo: deploy/stack-lib.sh (stack_coordinator, stack_agent,
# stack_wait_agents), sourced here.

source "$(cd "$(dirname "${BASH_SOURCE[0]}")/../../deploy" && pwd)/stack-lib.sh"

fail() {
	echo "$T: FAIL: $*" >&2
	exit 1
}
note() { echo "$T: $*"; }

# The checks a cluster test starts with: under the harness (its ctest name
# TEST for the message), at least 3 hosts, every binary built, python3
# for JSON. Sets hosts[], coord_ip (guest 1) and coord (coord_ip:PORT).
cluster_need() { # TEST BINARY...
	local test=$1 b
	shift
	[[ -n ${RMPOOL_VM_DIR:-} ]] ||
		fail "RMPOOL_VM_DIR is unset: run under the harness, e.g. deploy/vm/rmpool-vm run --hosts 3 -- ctest --test-dir build -R $test"
	read -r -a hosts <<<"${RMPOOL_VM_HOSTS:-}"
	((${#hosts[@]} >= 3)) || fail "needs 3 hosts, the run has ${#hosts[@]} (${RMPOOL_VM_HOSTS:-none})"
	for b in "$@"; do
		[[ -x $b ]] || fail "$b is not built"
	done
	command -v python3 >/dev/null || fail "python3 is needed on the host to read JSON"
	coord_ip=${hosts[0]}
	coord=$coord_ip:$PORT
}

# The test's scratch folder on the guests' shared export and its secret:
# work=$RMPOOL_VM_SCRATCH/NAME_$$ and secret=$work/secret (24 random
# bytes, base64, mode 600); with "export", RMPOOL_SECRET holds it too,
# for the consumers the test starts.
cluster_scratch() { # NAME [export]
	work=$RMPOOL_VM_SCRATCH/$1_$$
	mkdir -p "$work"
	secret=$work/secret
	(umask 077 && head -c 24 /dev/urandom | base64 >"$secret")
	if [[ ${2:-} == export ]]; then
		RMPOOL_SECRET=$(cat "$secret")
		export RMPOOL_SECRET
	fi
}

to_bytes() { # 64M -> 67108864
	local v=$1 n=${1%[KMGT]}
	case $v in
	*K) echo $((n << 10)) ;; *M) echo $((n << 20)) ;; *G) echo $((n << 30)) ;; *T) echo $((n << 40)) ;;
	*) echo "$v" ;;
	esac
}

# rmpool on guest HOST; stdout to OUT, stderr to OUT.err; returns its status.
cli() { # HOST OUT ARGS...
	local host=$1 out=$2
	shift 2
	"$VM" exec --timeout 400 "$host" -- sh -c 'out=$1; shift; exec "$@" >"$out" 2>"$out.err"' sh \
		"$out" "$CLI" --coordinator "$coord" --secret-file "$secret" "$@"
}

json() { # FILE PYTHON-EXPR (on j) -> value
	python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

metrics() { # -> the coordinator's /metrics, fetched from guest 2
	"$VM" exec --timeout 30 2 -- curl -sf --max-time 10 "http://$coord_ip:$HTTP_PORT/metrics" ||
		fail "GET http://$coord_ip:$HTTP_PORT/metrics from guest 2 failed"
}
metric() { # NAME [TEXT] -> value
	local text=${2:-$(metrics)}
	awk -v n="$1" '$1 == n { print $2; found = 1 } END { if (!found) print "missing" }' <<<"$text"
}
wait_metric() { # NAME VALUE SECONDS -> fails unless NAME reaches VALUE in time
	local v=
	for _ in $(seq 1 "$3"); do
		v=$(metric "$1")
		[[ $v == "$2" ]] && return 0
		sleep 1
	done
	fail "metrics: $1 is '$v' after $3 s, want $2"
}

# Donors outlive their agent and their coordinator (issue 11): a test's
# cleanup ends its own with this, or they would serve on for their
# --orphan-grace and hold the guests' memory during the next tests.
kill_donors() { # -> every donor process of our coordinator, on every guest, SIGKILLed
	stack_kill_donors
}

donor_pids() { # HOST -> pids of donor processes (not the agent) of our coordinator
	"$VM" exec --timeout 30 "$1" -- sh -c "pgrep -f '^$DONOR --coordinator $coord ' || true"
}

# rmpool-server on guest 1 with metrics and rdma_cm on coord_ip, debug
# logging, the caller's extra flags after; fails unless it is ready
# within 60 s.
start_coordinator() { # EXTRA-FLAGS...
	stack_coordinator "$SRV" 60 --log-level debug "$@"
}
