#!/bin/bash
# donor_agent: the host agent spawning, refusing, terminating and reaping
# donor processes, donors outliving their agent and their coordinator
# connection, a restarted agent adopting them, generations and the orphan
# grace, against a scripted fake coordinator (donor_agent.c, which lists
# the checks), all on host 1 of the harness (the donors need its RDMA
# device). donor_agent reads the shared log back to check what was logged.
# Usage: donor_agent.sh PATH/TO/donor_agent PATH/TO/rmpool-donor
# Never skips: no harness, no pass.
set -euo pipefail

BIN=${1:?usage: donor_agent.sh PATH/TO/donor_agent PATH/TO/rmpool-donor}
DONOR=${2:?usage: donor_agent.sh PATH/TO/donor_agent PATH/TO/rmpool-donor}
VM=$(cd "$(dirname "$(readlink -f "$0")")/../../deploy/vm" && pwd)/rmpool-vm

fail() {
	echo "donor_agent: FAIL: $*" >&2
	exit 1
}
[[ -n ${RMPOOL_VM_DIR:-} ]] ||
	fail "RMPOOL_VM_DIR is unset: run under the harness, e.g. deploy/vm/rmpool-vm run --hosts 2 -- ctest --test-dir build -L rdma"
[[ -x $BIN && -x $DONOR ]] || fail "$BIN or $DONOR is not built"
RMPOOL_SECRET=donor-agent-test-secret-$$-$RANDOM
export RMPOOL_SECRET
# One log file (one open file description) for the fake coordinator, the
# agent and its donors, so that their lines interleave instead of
# overwriting each other.
log=$RMPOOL_VM_SCRATCH/donor_agent_$$.log
rc=0
"$VM" exec --timeout 400 1 -- sh -c 'exec "$0" "$1" "$2" >"$2" 2>&1' "$BIN" "$DONOR" "$log" || rc=$?
cat "$log"
((rc == 0)) || fail "donor_agent on host 1 exited with status $rc"
# No donor may outlive the test (they would show as rmpool-donor processes).
left=$("$VM" exec --timeout 30 1 -- sh -c "pgrep -f '^$DONOR' || true")
[[ -z $left ]] || fail "processes left behind on host 1: $left"
echo "donor_agent: PASS"
