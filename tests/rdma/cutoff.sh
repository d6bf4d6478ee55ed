#!/bin/bash
# rdma_cutoff: a consumer that outlived its lease cannot write into the
# pool (issue 12, the cut-off), on three Soft-RoCE hosts.
#
# Usage: cutoff.sh PATH/TO/rmpool PATH/TO/rmpool-server PATH/TO/rmpool-donor PATH/TO/cutoff_data
# Run:   deploy/vm/rmpool-vm run --hosts 3 -- ctest --test-dir build -R rdma_cutoff -V
#
# Scenario (coordinator on guest 1 with --lease-timeout 2s and
# --reclaim-delay 60s - the cut consumers' blocks are looked at after the
# cut, so they must not be reclaimed yet -, an agent on every guest, a
# 96M pool whose donors lie on the 3 hosts):
#   - two stale consumers, S1 on guest 2 and S2 on guest 3, each
#     allocate a 64 KiB block and write pattern A into it. S1 runs with
#     RMPOOL_TEST_NO_LEASE_CHECK=1: the library's own lease check is off,
#     so whatever it does after its resume goes out on the wire and only
#     the far sides can stop it. S2 runs as any consumer does;
#   - both are SIGSTOPped, past their leases; the test waits for the
#     coordinator's "cut complete" of each lease (the metadata listener
#     and every donor tore its connections down and acknowledged);
#   - another consumer writes pattern B into both blocks (they are still
#     live: nothing is reclaimed yet);
#   - SIGCONT: each stale consumer at once writes pattern C into its
#     block, allocates, writes again, allocates again and reads: every
#     call must fail with -RMP_ELEASE;
#   - both blocks still hold pattern B byte for byte; the coordinator
#     refused S1's new metadata connection as cut off; attaching again
#     on the same connection is refused (-EACCES: the session stays cut).
# Prints the time from each expiry to its cut complete, the connections
# torn down, and per stale consumer the calls after SIGCONT, how they
# failed and how long the first took. Never skips: no harness, no pass.
set -euo pipefail

usage="usage: cutoff.sh PATH/TO/rmpool PATH/TO/rmpool-server PATH/TO/rmpool-donor PATH/TO/cutoff_data"
CLI=${1:?$usage}
SERVER=${2:?$usage}
DONOR=${3:?$usage}
CDATA=${4:?$usage}
VM=$(cd "$(dirname "$(readlink -f "$0")")/../../deploy/vm" && pwd)/rmpool-vm

# As restart.sh: 3 donors of 32M regions, one per host.
PROCESS_LIMIT=44M
BUDGET=64M
POOL_SIZE=96M
PORT=7420
HTTP_PORT=7421
RDMA_PORT=7422
POOL=cutoff$$

T=rdma_cutoff
source "$(dirname "$(readlink -f "$0")")/cluster-lib.sh"

cluster_need rdma_cutoff "$CLI" "$SERVER" "$DONOR" "$CDATA"
export RMPOOL_COORDINATOR=$coord
export RMPOOL_WAIT=event # 1-vCPU guests: block, do not spin (DESIGN.md, Soft-RoCE)

work=$RMPOOL_VM_SCRATCH/cutoff_$$
mkdir -p "$work"
secret=$work/secret
(umask 077 && head -c 24 /dev/urandom | base64 >"$secret")
RMPOOL_SECRET=$(cat "$secret")
export RMPOOL_SECRET
SRV=cut_srv_$$
srv_log=$RMPOOL_VM_SCRATCH/$SRV.log
agent_job() { echo "cut_agent$1_$$"; }
stale_job() { echo "cut_stale$1_$$"; }

cleanup() {
	local rc=$?
	for s in 1 2; do
		"$VM" kill "$(stale_job $s)" CONT 2>/dev/null || true
		"$VM" kill "$(stale_job $s)" KILL 2>/dev/null || true
	done
	"$VM" exec --timeout 120 2 -- "$CLI" --coordinator "$coord" --secret-file "$secret" \
		pool destroy "$POOL" >/dev/null 2>&1 || true
	for g in 1 2 3; do "$VM" kill "$(agent_job $g)" TERM 2>/dev/null || true; done
	"$VM" kill "$SRV" TERM 2>/dev/null || true
	kill_donors
	if ((rc != 0)); then
		echo "---- coordinator log (tail) ----" >&2
		tail -n 60 "$srv_log" >&2 2>/dev/null || true
		for s in 1 2; do
			echo "---- stale consumer $s (tail) ----" >&2
			tail -n 20 "$RMPOOL_VM_SCRATCH/$(stale_job $s).log" >&2 2>/dev/null || true
		done
	fi
}
trap cleanup EXIT

run() { # HOST TIMEOUT CMD... (fails the test on failure)
	local host=$1 t=$2
	shift 2
	"$VM" exec --timeout "$t" "$host" -- "$@" || fail "guest $host: '$*' exited $?"
}

field() { # FILE NAME -> the word after NAME in FILE's first line
	awk -v n="$2" '{ for (i = 1; i < NF; i++) if ($i == n) { print $(i + 1); exit } }' "$1"
}

# ------------------------------------------------------------ the pool
start_coordinator --lease-timeout 2s --reclaim-delay 60s
for g in 1 2 3; do
	stack_agent "$(agent_job $g)" "$g" "$BUDGET" "$PROCESS_LIMIT"
done
stack_wait_agents 3 60
run 2 400 "$CLI" --coordinator "$coord" --secret-file "$secret" pool create "$POOL" "$POOL_SIZE"
note "pool $POOL ($POOL_SIZE) created; lease timeout 2 s"

# ------------------------------------------------------------ two stale consumers
# S1 on guest 2 with the library's check off, S2 on guest 3 as shipped.
"$VM" exec --bg "$(stale_job 1)" 2 -- env RMPOOL_TEST_NO_LEASE_CHECK=1 "$CDATA" stale "$POOL" \
	"$work/s1.ready" "$work/s1.go" "$work/s1.report" || fail "cannot start S1"
"$VM" exec --bg "$(stale_job 2)" 3 -- "$CDATA" stale "$POOL" \
	"$work/s2.ready" "$work/s2.go" "$work/s2.report" || fail "cannot start S2"
for _ in $(seq 1 1200); do
	[[ -e $work/s1.ready && -e $work/s2.ready ]] && break
	sleep 0.1
done
[[ -e $work/s1.ready && -e $work/s2.ready ]] || fail "the stale consumers did not get ready within 120 s"
declare -A client lease block
for s in 1 2; do
	client[$s]=$(field "$work/s$s.ready" client)
	lease[$s]=$(field "$work/s$s.ready" lease)
	block[$s]=$(field "$work/s$s.ready" block)
	note "S$s: client ${client[$s]}, lease ${lease[$s]}, block ${block[$s]} (pattern A)"
done

# ------------------------------------------------------------ past the lease
for s in 1 2; do "$VM" kill "$(stale_job $s)" STOP; done
t_stop=$(date +%s%N)
for s in 1 2; do
	g=$((s + 1))
	st=$("$VM" exec --timeout 30 "$g" -- sh -c "for p in \$(pgrep -f '^$CDATA stale'); do cut -d' ' -f3 /proc/\$p/stat; done")
	[[ $st == *T* && $st != *S* && $st != *R* ]] || fail "S$s on guest $g is not stopped (states: $st)"
done
note "S1 and S2 SIGSTOPped"
declare -A cut_ms cut_conns
for s in 1 2; do
	line=
	for _ in $(seq 1 300); do
		line=$(grep "lease ${lease[$s]} of client ${client[$s]} on pool $POOL: cut complete" "$srv_log" || true)
		[[ -n $line ]] && break
		sleep 0.1
	done
	[[ -n $line ]] || fail "no cut complete for S$s (lease ${lease[$s]}) within 30 s of the stop"
	cut_ms[$s]=$(sed -n 's/.*cut complete \([0-9]*\) ms after the expiry.*/\1/p' <<<"$line")
	cut_conns[$s]=$(sed -n 's/.*(\([0-9]*\) connection(s) torn down; donors: \([0-9]*\) acknowledged, \([0-9]*\) lost.*/\1 \2 \3/p' <<<"$line")
	read -r nconn nack nlost <<<"${cut_conns[$s]}"
	((nlost == 0 && nack >= 3)) || fail "S$s: cut with $nack donor(s) acknowledged and $nlost lost, want 3 and 0: $line"
	((nconn >= 2)) || fail "S$s: only $nconn connection(s) torn down (its metadata and donor ones): $line"
	note "S$s: cut complete ${cut_ms[$s]} ms after its lease expired ($nconn connection(s) torn down, $nack donors acknowledged)"
done
note "both cut $((($(date +%s%N) - t_stop) / 1000000)) ms after the SIGSTOP"

# Another consumer writes pattern B into both blocks: still live.
for s in 1 2; do run 1 120 "$CDATA" write "$POOL" "${block[$s]}"; done

# ------------------------------------------------------------ SIGCONT
for s in 1 2; do touch "$work/s$s.go"; done
for s in 1 2; do "$VM" kill "$(stale_job $s)" CONT; done
for s in 1 2; do
	rc=0
	"$VM" wait --timeout 120 "$(stale_job $s)" || rc=$?
	sed "s/^/$T: S$s: /" "$RMPOOL_VM_SCRATCH/$(stale_job $s).log"
	[[ -e $work/s$s.report ]] || fail "S$s wrote no report (exit $rc)"
	sed "s/^/$T: S$s report: /" "$work/s$s.report"
	((rc == 0)) || fail "S$s: a call after SIGCONT did not fail with -RMP_ELEASE (exit $rc)"
done
for s in 1 2; do
	out=$("$VM" exec --timeout 120 1 -- "$CDATA" check "$POOL" "${block[$s]}" 2>&1) ||
		fail "S$s's block: $out"
	note "S$s: $out"
done
grep -q "connect request from client ${client[1]} to pool [0-9]*: it was cut off" "$srv_log" ||
	fail "the coordinator did not refuse S1's new metadata connection as cut off"
note "the coordinator refused S1's new metadata connection as cut off"
for s in 1 2; do
	read -r _ _ n _ e _ o _ f _ x < <(grep '^total' "$work/s$s.report")
	note "S$s after SIGCONT: $n call(s), $e failed with -RMP_ELEASE, $o otherwise; the first answered in $f ms; lease_expired $x"
done
note "PASS"
