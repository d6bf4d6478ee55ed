#!/bin/bash
# provision: a pool larger than any process and any host may hold, end to end
# on three Soft-RoCE hosts (qemu guests of deploy/vm/rmpool-vm).
#
# Usage: provision.sh PATH/TO/rmpool PATH/TO/rmpool-server PATH/TO/rmpool-donor PATH/TO/probe_metadata
# Run:   deploy/vm/rmpool-vm run --hosts 3 -- ctest --test-dir build -R rdma_provision
#
# Scenario (issue 4):
#   - the coordinator on guest 1, a host agent on every guest, each with a
#     per-host budget and a per-process maximum (RLIMIT_AS) small enough
#     for TCG, where registering memory costs ~5 s per GiB;
#   - `rmpool pool create` from guest 2 of a pool larger than 3x the
#     per-process maximum and larger than any one host's budget;
#   - donors run on >= 2 hosts; each donor's /proc/PID/limits shows the
#     address-space limit, and its region is <= that limit;
#   - `rmpool status --json` and GET /metrics agree with what runs;
#   - `rmpool pool check` on guest 2 reads the metadata region over RDMA:
#     valid, free bytes == capacity;
#   - a garbage frame, a wrong secret and rdma_cm connections without a
#     valid token (or with one of an older generation) are refused, and the
#     pool still checks out afterwards;
#   - a consumer that stops renewing (SIGSTOP) loses its lease (metrics
#     and the coordinator's log say so);
#   - `rmpool pool destroy` leaves no donor process on any guest.
# Prints the time to provision, the donors and hosts used, and each donor's
# region against its limit. Never skips: no harness, no pass.
set -euo pipefail

usage="usage: provision.sh PATH/TO/rmpool PATH/TO/rmpool-server PATH/TO/rmpool-donor PATH/TO/probe_metadata"
CLI=${1:?$usage}
SERVER=${2:?$usage}
DONOR=${3:?$usage}
PROBE=${4:?$usage}
VM=$(cd "$(dirname "$(readlink -f "$0")")/../../deploy/vm" && pwd)/rmpool-vm
SETUP_RXE=$(cd "$(dirname "$(readlink -f "$0")")/../../deploy" && pwd)/setup-rxe.sh

# Sizes (binary units). A donor's own footprint (~5 MiB measured under the
# guest kernel) comes out of its per-process limit, so a 64M limit gives
# 56M regions (whole 4M segments): 224M needs 4 donors, and 2 fit in a
# 128M budget. 224M > 3 x 64M and > 128M: no process and no host could
# hold it alone.
PROCESS_LIMIT=${RMPOOL_PROV_LIMIT:-64M}
read -r -a BUDGETS <<<"${RMPOOL_PROV_BUDGETS:-96M 128M 128M}"
POOL_SIZE=${RMPOOL_PROV_SIZE:-224M}
LEASE=4s
PORT=7400
HTTP_PORT=7401
RDMA_PORT=7402
POOL=prov$$

T=provision
source "$(dirname "$(readlink -f "$0")")/cluster-lib.sh"

cluster_need rdma_provision "$CLI" "$SERVER" "$DONOR" "$PROBE"

limit_bytes=$(to_bytes "$PROCESS_LIMIT")
size_bytes=$(to_bytes "$POOL_SIZE")

cluster_scratch provision
SRV=prov_srv_$$
LEASE_JOB=prov_lease_$$
agent_job() { echo "prov_agent$1_$$"; }

cleanup() {
	local rc=$?
	"$VM" kill "$LEASE_JOB" KILL 2>/dev/null || true
	for g in 1 2 3; do "$VM" kill "$(agent_job $g)" TERM 2>/dev/null || true; done
	"$VM" kill "$SRV" TERM 2>/dev/null || true
	kill_donors
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

vmx() { # HOST CMD... -> output of CMD; fails the test when it fails
	local host=$1
	shift
	"$VM" exec --timeout 60 "$host" -- "$@" || fail "host $host: '$*' failed with status $?"
}


# ------------------------------------------------------------ coordinator
t_start=$(date +%s%N)
start_coordinator --lease-timeout "$LEASE"
note "coordinator ready on guest 1 ($coord, metrics :$HTTP_PORT, rdma_cm :$RDMA_PORT)"

# ------------------------------------------------------------ agents
for g in 1 2 3; do
	stack_agent "$(agent_job $g)" "$g" "${BUDGETS[g - 1]}" "$PROCESS_LIMIT" --log-level debug
done
stack_wait_agents 3 60
note "3 agents registered: budgets ${BUDGETS[*]}, per-process limit $PROCESS_LIMIT"

# setup-rxe.sh on a host that has rxe0 already: it must change nothing and succeed.
vmx 3 "$SETUP_RXE" eth0 | sed "s/^/$T: guest 3: /"

# ------------------------------------------------------------ pool create
rc=0
t0=$(date +%s%N)
cli 2 "$work/create.out" pool create "$POOL" "$POOL_SIZE" || rc=$?
t1=$(date +%s%N)
sed "s/^/$T: create: /" "$work/create.out"
((rc == 0)) || fail "pool create $POOL $POOL_SIZE on guest 2 exited $rc: $(cat "$work/create.out.err")"
provision_ms=$(((t1 - t0) / 1000000))

# A pool the hosts' budgets cannot hold: refused with the numbers, and no
# donor process is started for it (or left behind).
pids_before=$(for g in 1 2 3; do donor_pids "$g"; done | wc -w)
rc=0
cli 2 "$work/toobig.out" pool create "big$$" 2G || rc=$?
((rc != 0)) || fail "pool create big$$ 2G succeeded: the budgets hold 352M in all"
grep -Eq '[0-9]' "$work/toobig.out.err" || fail "the refusal gives no numbers: $(cat "$work/toobig.out.err")"
note "too big for the budgets, refused: $(head -c 300 "$work/toobig.out.err")"
pids_after=$(for g in 1 2 3; do donor_pids "$g"; done | wc -w)
((pids_after == pids_before)) || fail "the refused pool left donor processes: $pids_before before, $pids_after after"

cli 2 "$work/info.json" pool info --json "$POOL" || fail "pool info: $(cat "$work/info.json.err")"
n_donors=$(json "$work/info.json" 'len(j["donors"])')
n_hosts=$(json "$work/info.json" 'j["hosts"]')
capacity=$(json "$work/info.json" 'j["capacity"]')
((capacity == size_bytes)) || fail "pool capacity $capacity, asked $size_bytes"
((n_hosts >= 2)) || fail "the donors run on $n_hosts host(s): want at least 2"
((size_bytes > 3 * limit_bytes)) || fail "test setup: the pool must exceed 3x the per-process limit"

# ------------------------------------------------------------ donors on the guests
declare -A region_of # donor id -> bytes in the segment table
while read -r id bytes host; do region_of[$id]=$bytes; done < <(
	python3 -c 'import json,sys
for d in json.load(open(sys.argv[1]))["donors"]: print(d["id"], d["bytes"], d["host"])' "$work/info.json")
report=()
total_pids=0
declare -A per_host
for g in 1 2 3; do
	pids=$(donor_pids "$g")
	per_host[${hosts[g - 1]}]=$(wc -w <<<"$pids")
	for pid in $pids; do
		total_pids=$((total_pids + 1))
		info=$(vmx "$g" sh -c "tr '\\0' ' ' </proc/$pid/cmdline; echo; awk '/^Max address space/ { print \$4 }' /proc/$pid/limits; awk '/^VmLck|^VmPin|^VmRSS/ { printf \"%s%s \", \$1, \$2 }' /proc/$pid/status")
		cmdline=$(sed -n 1p <<<"$info")
		as_limit=$(sed -n 2p <<<"$info")
		vm=$(sed -n 3p <<<"$info")
		id=$(sed -n 's/.*--donor-id \([0-9]*\).*/\1/p' <<<"$cmdline")
		size=$(sed -n 's/.*--size \([0-9]*\).*/\1/p' <<<"$cmdline")
		[[ -n $id && -n ${region_of[$id]:-} ]] || fail "guest $g: pid $pid ($cmdline) is no donor of pool $POOL"
		[[ $as_limit == "$limit_bytes" ]] ||
			fail "guest $g: donor $id (pid $pid): Max address space is '$as_limit', want $limit_bytes"
		((size == region_of[$id])) || fail "donor $id: --size $size but ${region_of[$id]} bytes in the segment table"
		((region_of[$id] <= limit_bytes)) || fail "donor $id: region ${region_of[$id]} > limit $limit_bytes"
		report+=("donor $id on ${hosts[g - 1]} (pid $pid): region $((region_of[$id] >> 20)) MiB <= RLIMIT_AS $((as_limit >> 20)) MiB [$vm]")
	done
done
((total_pids == n_donors)) || fail "$total_pids donor processes run on the guests, the segment table names $n_donors"

# ------------------------------------------------------------ status and metrics agree
cli 2 "$work/status.json" status --json || fail "status: $(cat "$work/status.json.err")"
cli 2 "$work/status.txt" status || fail "status: $(cat "$work/status.txt.err")"
sed "s/^/$T: status: /" "$work/status.txt"
st_donors=$(json "$work/status.json" "[p['donors'] for p in j['pools'] if p['name'] == '$POOL'][0]")
st_capacity=$(json "$work/status.json" "[p['capacity'] for p in j['pools'] if p['name'] == '$POOL'][0]")
((st_donors == n_donors)) || fail "status says $st_donors donors, the segment table $n_donors"
((st_capacity == size_bytes)) || fail "status says capacity $st_capacity, want $size_bytes"
for g in 1 2 3; do
	ip=${hosts[g - 1]}
	hd=$(json "$work/status.json" "sum(h['donors'] for h in j['hosts'] if h['host'] == '$ip')")
	((hd == per_host[$ip])) || fail "status: host $ip has $hd donors, ${per_host[$ip]} run there"
done
m=$(metrics)
[[ $(metric rmpool_donors "$m") == "$n_donors" ]] || fail "metrics: rmpool_donors $(metric rmpool_donors "$m"), want $n_donors"
[[ $(metric rmpool_pools "$m") == 1 ]] || fail "metrics: rmpool_pools $(metric rmpool_pools "$m"), want 1"
[[ $(metric rmpool_capacity_bytes "$m") == "$size_bytes" ]] ||
	fail "metrics: rmpool_capacity_bytes $(metric rmpool_capacity_bytes "$m"), want $size_bytes"
note "status --json and /metrics agree: $n_donors donors, capacity $size_bytes"

# ------------------------------------------------------------ pool check over RDMA
check_pool() { # LABEL
	cli 2 "$work/check.json" pool check --json "$POOL" || fail "pool check ($1): $(cat "$work/check.json.err")"
	[[ $(json "$work/check.json" 'j["valid"]') == True ]] || fail "pool check ($1): invalid: $(json "$work/check.json" 'j["error"]')"
	local free
	free=$(json "$work/check.json" 'j["free_bytes"]')
	((free == capacity)) || fail "pool check ($1): free bytes $free != capacity $capacity"
	note "pool check ($1) on guest 2: $(json "$work/check.json" 'j["metadata_bytes"]') bytes of metadata read over RDMA in $(json "$work/check.json" 'j["read_ms"]') ms, valid, free $free == capacity"
}
check_pool "after create"

# ------------------------------------------------------------ bad peers
m0=$(metrics)
rej0=$(metric rmpool_frames_rejected_total "$m0")
auth0=$(metric rmpool_auth_failures_total "$m0")
# A garbage frame (bad magic) on the control port, from guest 3.
vmx 3 bash -c "exec 3<>/dev/tcp/$coord_ip/$PORT; printf 'GET / HTTP/1.0\r\n\r\n' >&3; timeout 10 cat <&3 >/dev/null || true"
# The frames below speak the wire version this tree was built with, so
# that each is refused for what it tests, not for its version.
wire_version=$(sed -n 's/^#define RMP_WIRE_VERSION \([0-9]*\)u.*/\1/p' \
	"$(dirname "$(readlink -f "$0")")/../../common/wire.h")
[[ -n $wire_version ]] || fail "RMP_WIRE_VERSION not found in common/wire.h"
# An oversized frame: valid header, 16 MiB length.
vmx 3 bash -c "exec 3<>/dev/tcp/$coord_ip/$PORT; printf 'RM\\$(printf '%03o' "$wire_version")\\001\\001\\000\\000\\000' >&3; timeout 10 cat <&3 >/dev/null || true"
# A wrong secret.
rc=0
"$VM" exec --timeout 60 3 -- env RMPOOL_SECRET=this-is-not-the-cluster-secret "$CLI" --coordinator "$coord" status \
	>"$work/wrong.out" 2>&1 || rc=$?
((rc == 1)) || fail "status with a wrong secret exited $rc, want 1: $(cat "$work/wrong.out")"
grep -qi 'secret' "$work/wrong.out" || fail "wrong secret: the error does not say so: $(cat "$work/wrong.out")"
note "wrong secret refused by the client (the coordinator's proof fails): $(cat "$work/wrong.out")"
# A peer that does not hold the secret and sends a proof anyway: the
# coordinator must refuse it (mutual authentication: rmpool itself hangs up
# before that, so this peer is a script speaking the wire format).
cat >"$work/wrong_proof.py" <<'PY'
import os, socket, struct, sys
def frame(t, payload):
    return b"RM" + bytes([int(sys.argv[3]), t]) + struct.pack(">I", len(payload)) + payload
def recv_frame(s):
    hdr = b""
    while len(hdr) < 8:
        b = s.recv(8 - len(hdr))
        if not b:
            return None, b""
        hdr += b
    n = struct.unpack(">I", hdr[4:])[0]
    body = b""
    while len(body) < n:
        b = s.recv(n - len(body))
        if not b:
            break
        body += b
    return hdr[3], body
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
ident = b"wrong-proof-test"
s.sendall(frame(0x01, bytes([1]) + os.urandom(32) + struct.pack(">H", len(ident)) + ident))
t, body = recv_frame(s)
assert t == 0x02, "want CHALLENGE, got %r" % (t,)
s.sendall(frame(0x03, os.urandom(32)))
t, body = recv_frame(s)
if t == 0x04:
    print("ACCEPTED")
    sys.exit(1)
if t == 0x05:
    code, = struct.unpack(">I", body[:4]); n, = struct.unpack(">H", body[5:7])
    print("refused: ERROR %d %s" % (code, body[7:7 + n].decode()))
else:
    print("refused: connection closed")
PY
wp=$(vmx 3 python3 "$work/wrong_proof.py" "$coord_ip" "$PORT" "$wire_version") || fail "a forged proof was accepted: $wp"
note "forged proof (no secret): $wp"
# rdma_cm connections to the metadata endpoint without a valid token.
for mode in none garbage wrong-pool expired wrong-secret old-generation; do
	"$VM" exec --timeout 400 3 -- sh -c 'out=$1; shift; exec "$@" >"$out" 2>"$out.err"' sh \
		"$work/probe.out" "$PROBE" "$coord" "$secret" "$POOL" "$mode" ||
		fail "rdma_cm connect with token '$mode': $(cat "$work/probe.out" "$work/probe.out.err")"
	note "$(cat "$work/probe.out")"
done
m1=$(metrics)
rej1=$(metric rmpool_frames_rejected_total "$m1")
auth1=$(metric rmpool_auth_failures_total "$m1")
((rej1 >= rej0 + 2)) || fail "metrics: frames_rejected_total $rej0 -> $rej1, want +2"
((auth1 >= auth0 + 1)) || fail "metrics: auth_failures_total $auth0 -> $auth1, want +1"
n_rdma_rej=$(grep -c 'rdma: connect request.*rejected\|rdma: connect request without a valid token' "$RMPOOL_VM_SCRATCH/$SRV.log" || true)
((n_rdma_rej >= 6)) || fail "the coordinator logged $n_rdma_rej rejected rdma_cm requests, want 6"
grep -q 'rdma: connect request .*older than this coordinator' "$RMPOOL_VM_SCRATCH/$SRV.log" ||
	fail "the coordinator did not log refusing a token of an older generation"
note "bad peers refused: frames_rejected_total $rej0 -> $rej1, auth_failures_total $auth0 -> $auth1, $n_rdma_rej rdma_cm rejections logged"
check_pool "after the bad peers"

# ------------------------------------------------------------ lease expiry
exp0=$(metric rmpool_leases_expired_total)
"$VM" exec --bg "$LEASE_JOB" 3 -- "$CLI" --coordinator "$coord" --secret-file "$secret" lease-hold "$POOL" 600 ||
	fail "cannot start lease-hold on guest 3"
lease_log=$RMPOOL_VM_SCRATCH/$LEASE_JOB.log
for _ in $(seq 1 60); do
	grep -q '^lease ' "$lease_log" 2>/dev/null && break
	sleep 0.5
done
lease_id=$(awk '$1 == "lease" { print $2; exit }' "$lease_log" 2>/dev/null)
[[ -n $lease_id ]] || fail "lease-hold did not attach: $(cat "$lease_log" 2>/dev/null)"
sleep 6 # renewals keep it alive past the lease timeout ($LEASE)
[[ $(metric rmpool_leases_expired_total) == "$exp0" ]] || fail "a lease expired while its holder was renewing"
"$VM" kill "$LEASE_JOB" STOP || fail "cannot SIGSTOP lease-hold"
exp1=$exp0
for _ in $(seq 1 30); do
	exp1=$(metric rmpool_leases_expired_total)
	((exp1 > exp0)) && break
	sleep 1
done
((exp1 > exp0)) || fail "the stopped client's lease $lease_id did not expire in 30 s (leases_expired_total $exp0)"
grep -q "lease $lease_id .*expired" "$RMPOOL_VM_SCRATCH/$SRV.log" ||
	fail "the coordinator's log does not mention lease $lease_id expiring"
note "lease $lease_id of a SIGSTOPped client expired: leases_expired_total $exp0 -> $exp1; log: $(grep -m1 "lease $lease_id .*expired" "$RMPOOL_VM_SCRATCH/$SRV.log" | sed 's/^.*WARN: //')"
"$VM" kill "$LEASE_JOB" CONT || true
"$VM" kill "$LEASE_JOB" TERM || true
"$VM" wait --timeout 30 "$LEASE_JOB" >/dev/null 2>&1 || true
check_pool "after the lease expired"

# ------------------------------------------------------------ destroy
cli 2 "$work/destroy.out" pool destroy "$POOL" || fail "pool destroy: $(cat "$work/destroy.out.err")"
sed "s/^/$T: destroy: /" "$work/destroy.out"
left=
for _ in $(seq 1 30); do
	left=
	for g in 1 2 3; do
		p=$(donor_pids "$g")
		[[ -z $p ]] || left+="guest $g: $p; "
	done
	[[ -z $left ]] && break
	sleep 1
done
[[ -z $left ]] || fail "donor processes left after pool destroy: $left"
[[ $(metric rmpool_donors) == 0 ]] || fail "metrics: rmpool_donors is $(metric rmpool_donors) after destroy"
note "pool destroy left no rmpool-donor process on any guest"

# ------------------------------------------------------------ figures
t_end=$(date +%s%N)
echo
echo "$T: ==== figures ===="
echo "$T: pool $POOL_SIZE ($size_bytes bytes) provisioned in $((provision_ms / 1000)).$((provision_ms % 1000 / 100)) s (rmpool pool create on guest 2, wall)"
echo "$T: $n_donors donors on $n_hosts hosts; per-process limit $PROCESS_LIMIT; host budgets ${BUDGETS[*]}"
for g in 1 2 3; do echo "$T:   host ${hosts[g - 1]}: ${per_host[${hosts[g - 1]}]} donor(s)"; done
for line in "${report[@]}"; do echo "$T:   $line"; done
echo "$T: whole test $(((t_end - t_start) / 1000000000)) s"
echo "$T: PASS"
