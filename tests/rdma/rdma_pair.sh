#!/bin/bash
# rdma_pair: common/rdma.c between two hosts over Soft-RoCE.
#
# Usage: rdma_pair.sh PATH/TO/rdma_pair (ctest passes the binary).
# Runs under deploy/vm/rmpool-vm (RMPOOL_VM_DIR, at least 2 hosts): the
# rdma_pair server on host 1, the client on host 2 (see rdma_pair.c for
# what each checks). Passes when the client reports no failure and the
# server saw the accepted and the refused connections it should have.
# Never skips: no harness, no pass.
set -euo pipefail

BIN=${1:?usage: rdma_pair.sh PATH/TO/rdma_pair}
VM=$(cd "$(dirname "$(readlink -f "$0")")/../../deploy/vm" && pwd)/rmpool-vm
SRV=rdma_pair_srv_$$

fail() {
	echo "rdma_pair: FAIL: $*" >&2
	exit 1
}

[[ -n ${RMPOOL_VM_DIR:-} ]] ||
	fail "RMPOOL_VM_DIR is unset: run under the harness, e.g. deploy/vm/rmpool-vm run --hosts 2 -- ctest --test-dir build -L rdma"
read -r -a hosts <<<"${RMPOOL_VM_HOSTS:-}"
((${#hosts[@]} >= 2)) || fail "needs 2 hosts, the run has ${#hosts[@]} (${RMPOOL_VM_HOSTS:-none})"
[[ -x $BIN ]] || fail "$BIN is not built"

# The test secret reaches both guests through the environment exec passes.
RMPOOL_SECRET=rdma-pair-test-secret-$$-$RANDOM
export RMPOOL_SECRET

"$VM" exec --bg "$SRV" 1 -- "$BIN" server --lifetime 150 ||
	fail "cannot start the rdma_pair server on host 1"
trap '"$VM" kill "$SRV" KILL 2>/dev/null || true' EXIT
srv_log=$RMPOOL_VM_SCRATCH/$SRV.log

ready=
for _ in $(seq 1 300); do
	ready=$(grep -m1 '^READY ' "$srv_log" 2>/dev/null || true)
	[[ -n $ready ]] && break
	sleep 0.1
done
[[ -n $ready ]] || { cat "$srv_log" >&2 || true; fail "server on host 1 did not become ready in 30 s"; }
read -r _ addr port raddr rkey len <<<"$ready"
[[ $addr == "${hosts[0]}" ]] || fail "server found its RDMA address as $addr, host 1 is ${hosts[0]}"
echo "rdma_pair: server ready on $addr:$port (region $raddr rkey $rkey len $len)"

rc=0
"$VM" exec --timeout 120 2 -- "$BIN" client "$addr" "$port" "$raddr" "$rkey" "$len" || rc=$?

"$VM" kill "$SRV" TERM || true
srv_rc=0
"$VM" wait --timeout 30 "$SRV" || srv_rc=$?
trap - EXIT
echo "--- server log (host 1) ---"
cat "$srv_log"
echo "---"
((rc == 0)) || fail "client on host 2 exited with status $rc"
((srv_rc == 0)) || fail "server on host 1 exited with status $srv_rc"
done_line=$(grep -m1 '^DONE ' "$srv_log") || fail "server printed no DONE line"
accepted=$(sed -n 's/.*accepted=\([0-9]*\).*/\1/p' <<<"$done_line")
rejected=$(sed -n 's/.*rejected=\([0-9]*\).*/\1/p' <<<"$done_line")
live=$(sed -n 's/.*live=\([0-9]*\).*/\1/p' <<<"$done_line")
((accepted == 3)) || fail "server accepted $accepted connections, want 3 (one per wait mode)"
((rejected == 3)) || fail "server rejected $rejected connect requests, want 3 (wrong target, bad MAC, no private data)"
((live == 0)) || fail "server still holds $live connections after the client closed them"
echo "rdma_pair: PASS"
