#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# rdma_healthz: the coordinator's rdma_cm listener is retried until its
# address exists, and /healthz and systemd's readiness follow it (issue 15).
#
# Usage: healthz.sh PATH/TO/rmpool-server
# Run:   deploy/vm/rmpool-vm run --hosts 1 -- ctest --test-dir build -R rdma_healthz --output-on-failure
#
# On guest 1: rmpool-server with --rdma-addr on an address the interface
# does not have yet, and $NOTIFY_SOCKET on a datagram socket a small
# receiver writes down (what systemd would hear). While the address is
# missing: /healthz is 503 and names the listener, the notifications say
# "waiting" and never READY=1, and the control port serves. Then
# `ip addr add` gives the interface the address (Soft-RoCE takes it as a
# GID): within 10 s /healthz is 200 "ok", READY=1 has come (after the
# waiting), and the log says the listener is bound after N attempts.
# Never skips: no harness, no pass.
set -euo pipefail

usage="usage: healthz.sh PATH/TO/rmpool-server"
SERVER=${1:?$usage}
VM=$(cd "$(dirname "$(readlink -f "$0")")/../../deploy/vm" && pwd)/rmpool-vm
PORT=7440
HTTP_PORT=7441
RDMA_PORT=7442
SRV=hz_srv_$$
RCV=hz_rcv_$$
T=rdma_healthz

fail() {
	echo "$T: FAIL: $*" >&2
	[[ -n ${RMPOOL_VM_SCRATCH:-} && -f $RMPOOL_VM_SCRATCH/$SRV.log ]] && tail -20 "$RMPOOL_VM_SCRATCH/$SRV.log" >&2
	exit 1
}
note() { echo "$T: $*"; }

[[ -n ${RMPOOL_VM_DIR:-} ]] ||
	fail "RMPOOL_VM_DIR is unset: run under the harness, e.g. deploy/vm/rmpool-vm run --hosts 1 -- ctest --test-dir build -R rdma_healthz"
read -r -a hosts <<<"${RMPOOL_VM_HOSTS:-}"
((${#hosts[@]} >= 1)) || fail "needs 1 host, the run has none"
[[ -x $SERVER ]] || fail "$SERVER is not built"
ip1=${hosts[0]}
# An address of the guests' subnet that no guest has (they count up from .1).
late_ip=${ip1%.*}.250
sock=/tmp/rmpool-hz-notify.$$ # guest-local: a socket on 9p would not work
heard=$RMPOOL_VM_SCRATCH/$RCV.heard
log=$RMPOOL_VM_SCRATCH/$SRV.log
secret=$RMPOOL_VM_SCRATCH/hz_secret_$$
umask 077
head -c 32 /dev/urandom | base64 >"$secret"

vmx() { # CMD... on guest 1
	"$VM" exec --timeout 30 1 -- "$@"
}
dev=$(vmx ip -o -4 addr show | awk -v a="$ip1" 'index($4, a "/") == 1 { print $2; exit }')
[[ -n $dev ]] || fail "no interface of guest 1 has $ip1"

cleanup() {
	"$VM" kill "$SRV" KILL 2>/dev/null || true
	"$VM" kill "$RCV" KILL 2>/dev/null || true
	vmx ip addr del "$late_ip/32" dev "$dev" 2>/dev/null || true
	rm -f "$secret"
}
trap cleanup EXIT

# The receiver: one line per datagram, newlines shown as " | ".
"$VM" exec --bg "$RCV" 1 -- /usr/bin/python3 -c '
import os, socket, sys, time
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.settimeout(1)
with open(out, "a", buffering=1) as f:
    f.write("listening\n")
    end = time.time() + 120
    while time.time() < end:
        try:
            m = s.recv(4096)
        except socket.timeout:
            continue
        f.write(m.decode(errors="replace").replace("\n", " | ") + "\n")
' "$sock" "$heard" || fail "cannot start the notification receiver"
for _ in $(seq 1 100); do
	grep -q '^listening' "$heard" 2>/dev/null && break
	sleep 0.1
done
grep -q '^listening' "$heard" 2>/dev/null || fail "the notification receiver did not start"

"$VM" exec --bg "$SRV" 1 -- env NOTIFY_SOCKET="$sock" timeout 120 "$SERVER" --listen "$ip1:$PORT" \
	--secret-file "$secret" --http-addr "$ip1" --http-port "$HTTP_PORT" --rdma-addr "$late_ip" \
	--rdma-port "$RDMA_PORT" --state-dir "/tmp/rmpool-state.$SRV" --log-level debug ||
	fail "cannot start rmpool-server"

healthz() { # -> "STATUS BODY" of GET /healthz from guest 1
	vmx curl -s --max-time 5 -w ' %{http_code}' "http://$ip1:$HTTP_PORT/healthz" || true
}

# While the address is missing.
for _ in $(seq 1 50); do
	grep -q 'STATUS=waiting' "$heard" 2>/dev/null && break
	sleep 0.2
done
grep -q 'STATUS=waiting: the rdma_cm listener is down: rdma_cm listen on '"$late_ip" "$heard" ||
	fail "no 'waiting' status naming the listener: $(cat "$heard")"
sleep 1 # a few retries
h=$(healthz)
[[ $h == *" 503" && $h == *"the rdma_cm listener is down"* && $h == *"$late_ip"* ]] ||
	fail "/healthz while $late_ip is missing: '$h', want 503 naming the listener"
! grep -q 'READY=1' "$heard" || fail "READY=1 while the rdma_cm listener is down: $(cat "$heard")"
note "address missing: /healthz 503 ($(head -c 120 <<<"$h")...), no READY=1"
attempts_before=$(grep -c 'rdma: attempt' "$log" || true)
((attempts_before >= 2)) || fail "the listener was not retried ($attempts_before attempts logged)"

# The address appears.
t0=$(date +%s%N)
vmx ip addr add "$late_ip/32" dev "$dev" || fail "ip addr add $late_ip/32 dev $dev"
ok=
for _ in $(seq 1 50); do
	h=$(healthz)
	if [[ $h == "ok"*" 200" ]]; then
		ok=1
		break
	fi
	sleep 0.2
done
t1=$(date +%s%N)
[[ -n $ok ]] || fail "/healthz 10 s after adding $late_ip: '$h', want 200 ok"
grep -q "INFO: rdma_cm listener on $late_ip:$RDMA_PORT, after [0-9]* attempt(s)" "$log" ||
	fail "no log line of the listener bound after the retries"
for _ in $(seq 1 20); do
	grep -q 'READY=1' "$heard" && break
	sleep 0.1
done
grep -q "READY=1 | STATUS=serving: control $ip1:$PORT, http://$ip1:$HTTP_PORT/metrics, rdma_cm $late_ip:$RDMA_PORT" "$heard" ||
	fail "no READY=1 with the listeners after the address came: $(cat "$heard")"
first_wait=$(grep -n 'STATUS=waiting' "$heard" | head -1 | cut -d: -f1)
ready_at=$(grep -n 'READY=1' "$heard" | head -1 | cut -d: -f1)
((first_wait < ready_at)) || fail "READY=1 came before the waiting: $(cat "$heard")"
note "address added: /healthz 200 after $(((t1 - t0) / 1000000)) ms, READY=1 heard, $(grep -o 'after [0-9]* attempt(s)' "$log")"
note "PASS"
