#!/bin/bash
# rdma_remote_buddy: the buddy engine over real RDMA atomics, from several
# hosts at once, with the serving process stopped (no CPU on the path).
#
# Host 1 serves the metadata region and an owner array (remote_buddy
# serve). Clients on hosts 2 and 3 (2 threads each, one RC connection per
# thread) allocate and free with RDMA READ/CAS/FAA and claim every minimum
# block they get with an RDMA CAS on the owner array: an overlap between
# any two live allocations, on any hosts, fails a claim. The server is
# SIGSTOPped while they run. Afterwards a client walks the metadata over
# RDMA and allocates the whole capacity in one piece, and the server's own
# read-only walk must be clean with everything free.
#   remote_buddy.sh PATH/TO/remote_buddy [STEPS_PER_THREAD]
set -euo pipefail

VM=$(cd "$(dirname "$(readlink -f "$0")")/../../deploy/vm" && pwd)/rmpool-vm
BIN=${1:?usage: remote_buddy.sh PATH/TO/remote_buddy [STEPS]}
STEPS=${2:-300}
fail() {
	echo "rdma_remote_buddy: FAIL: $*" >&2
	exit 1
}
[[ -n ${RMPOOL_VM_DIR:-} ]] || fail "RMPOOL_VM_DIR is unset: run under deploy/vm/rmpool-vm run"
read -r -a hosts <<<"${RMPOOL_VM_HOSTS:-}"
((${#hosts[@]} >= 2)) || fail "needs at least 2 hosts, the run has ${#hosts[@]}"
clients=(2)
((${#hosts[@]} >= 3)) && clients=(2 3)

export RMPOOL_SECRET=remote-buddy-test-secret-0123456789
info=$RMPOOL_VM_SCRATCH/remote_buddy.$$.info
srv=rb_srv_$$
rm -f "$info"
"$VM" exec --bg "$srv" 1 -- "$BIN" serve --info "$info" --order 20 --min 12 --timeout 600 ||
	fail "cannot start the server on host 1"
cleanup() {
	"$VM" exec --timeout 20 1 -- pkill -CONT -f "remote_buddy serve" >/dev/null 2>&1 || true
	"$VM" kill "$srv" KILL >/dev/null 2>&1 || true
}
trap cleanup EXIT
for _ in $(seq 1 600); do
	[[ -s $info ]] && break
	sleep 0.1
done
[[ -s $info ]] || { cat "$RMPOOL_VM_SCRATCH/$srv.log" >&2 || true; fail "the server did not publish its region within 60 s"; }
cat "$RMPOOL_VM_SCRATCH/$srv.log"

go=$info.go
start=$(date +%s)
for h in "${clients[@]}"; do
	"$VM" exec --bg "rb_cli_${h}_$$" "$h" -- "$BIN" client --info "$info" --id "$h" --threads 2 --steps "$STEPS" --go "$go" ||
		fail "cannot start the client on host $h"
done
# Connecting needs the server's CPU (rdma_cm accept); working must not.
want=$((${#clients[@]} * 2))
for _ in $(seq 1 1200); do
	n=$( (compgen -G "$go.ready.*" || true) | wc -l)
	((n >= want)) && break
	sleep 0.1
done
((n >= want)) || fail "only $n of $want client connections came up within 120 s"

# No CPU on the path: the serving process is stopped while clients work.
"$VM" exec --timeout 30 1 -- pkill -STOP -f "remote_buddy serve" || fail "cannot SIGSTOP the server"
state=$("$VM" exec --timeout 30 1 -- sh -c 'for p in $(pgrep -f "remote_buddy serve"); do cut -d" " -f3 /proc/$p/stat; done' | tr -d '\n')
[[ $state == *T* ]] || fail "the server is not stopped (state '$state')"
touch "$go"
bad=0
for h in "${clients[@]}"; do
	rc=0
	"$VM" wait --timeout 600 "rb_cli_${h}_$$" || rc=$?
	cat "$RMPOOL_VM_SCRATCH/rb_cli_${h}_$$.log"
	((rc == 0)) || { echo "rdma_remote_buddy: client on host $h exited $rc" >&2; bad=1; }
done
echo "rdma_remote_buddy: ${#clients[@]} hosts x 2 threads x $STEPS steps in $(($(date +%s) - start)) s with the server stopped"
((bad == 0)) || fail "a client failed"

"$VM" exec --timeout 30 1 -- pkill -CONT -f "remote_buddy serve" || fail "cannot SIGCONT the server"
"$VM" exec --timeout 120 2 -- "$BIN" client --info "$info" --final || fail "the final walk/whole-capacity allocation failed"
"$VM" kill "$srv" TERM || true
rc=0
"$VM" wait --timeout 60 "$srv" || rc=$?
cat "$RMPOOL_VM_SCRATCH/$srv.log"
((rc == 0)) || fail "the server's walk of the metadata failed (exit $rc)"
echo "rdma_remote_buddy: PASS"
