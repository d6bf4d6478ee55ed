#!/bin/bash
# pool-bench: rmpool's data path against perftest, between the same two
# Soft-RoCE hosts, in the same run and the same completion modes.
#
# Run under deploy/vm/rmpool-vm with 2 hosts (target bench-pool):
#   1. perftest baseline (perftest-baseline.sh, 64 KiB bandwidth) from host 2
#      to host 1, polling and event mode; then ib_read_bw again with
#      rmpool's ACK timeout (-u 14 instead of 18);
#   2. rmpool-server and one host agent on host 1 (so every donor is on
#      host 1, where perftest's server ran), a 64M pool;
#   3. `rmpool bench` on host 2, with RMPOOL_WAIT=poll and =event; then
#      ib_read_lat again (the load of a shared machine moves in minutes);
#   4. one table: 64 B rmp_read and rmp_write latency as ratios of
#      ib_read_lat, the mean of before and after (both complete after one
#      round trip; target <= 1.15x),
#      1 MiB read/write bandwidth as ratios of ib_read_bw / ib_write_bw
#      (target >= 0.9x; one 1 MiB call at a time, and beside it rmp_read_buf
#      and 4 rmp_*_async calls in flight, perftest's way), alloc+free
#      latency against ib_atomic_lat, round trips per alloc and per
#      free (target: mean <= 2 per alloc when a
#      block of the order is free), and work requests per alloc+free
#      against the packets host 2's rxe device sent meanwhile;
#   5. both hosts' rxe counters over each bench run: packets sent and
#      received each way (the difference was lost on the way), READ
#      retries (completer_retry_err) and the duplicates they caused.
# Usage: pool-bench.sh RMPOOL RMPOOL-SERVER RMPOOL-DONOR [--reps N]
set -euo pipefail

CLI=${1:?usage: pool-bench.sh rmpool rmpool-server rmpool-donor [--reps N]}
SERVER=${2:?}
DONOR=${3:?}
shift 3
REPS=3
[[ ${1:-} == --reps ]] && REPS=$2
HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
VM=$HERE/../../deploy/vm/rmpool-vm
fail() {
	echo "pool-bench: FAIL: $*" >&2
	exit 1
}
[[ -n ${RMPOOL_VM_DIR:-} ]] || fail "run under deploy/vm/rmpool-vm run --hosts 2"
read -r -a hosts <<<"${RMPOOL_VM_HOSTS:-}"
((${#hosts[@]} >= 2)) || fail "needs 2 hosts"
ip1=${hosts[0]}
coord=$ip1:7420
work=$RMPOOL_VM_SCRATCH/pool_bench_$$
mkdir -p "$work"
(umask 077 && head -c 24 /dev/urandom | base64 >"$work/secret")
RMPOOL_SECRET=$(cat "$work/secret")
export RMPOOL_SECRET
SRV=pb_srv_$$ AG=pb_agent_$$ POOL=bench$$
cleanup() {
	"$VM" exec --timeout 60 2 -- "$CLI" --coordinator "$coord" pool destroy "$POOL" >/dev/null 2>&1 || true
	"$VM" kill "$AG" TERM 2>/dev/null || true
	"$VM" kill "$SRV" TERM 2>/dev/null || true
}
trap cleanup EXIT

# perftest's bandwidth runs use 64 KiB messages: with 1 MiB READs, rxe
# under emulation loses reply bursts and ib_read_bw itself fails (every
# attempt, seen here). rmpool moves its 1 MiB in 64 KiB pieces too.
"$HERE/perftest-baseline.sh" --out "$work/base.txt" --bw-size 65536 --reps "$REPS" --server 1 --client 2 ||
	fail "the perftest baseline failed"
# ib_read_bw once more with rmpool's own ACK timeout (14, 67 ms; the
# baseline's -u 18 is 1 s): READ reply losses cost perftest that long.
"$HERE/perftest-baseline.sh" --out "$work/base14.txt" --bw-size 65536 --reps "$REPS" --server 1 --client 2 \
	--tests read_bw --ack-timeout 14 --first-port 18700 ||
	echo "pool-bench: ib_read_bw -u 14 had failed runs (see above)" >&2

"$VM" exec --bg "$SRV" 1 -- "$SERVER" --listen "$coord" --http-port 0 --rdma-addr "$ip1" --rdma-port 7422 \
	--state-dir "/tmp/rmpool-state.$SRV.$$" ||
	fail "cannot start rmpool-server"
for _ in $(seq 1 120); do
	grep -q 'INFO: ready' "$RMPOOL_VM_SCRATCH/$SRV.log" 2>/dev/null && break
	sleep 0.5
done
"$VM" exec --bg "$AG" 1 -- "$DONOR" --agent --coordinator "$coord" --budget 256M --process-limit 96M \
	--rdma-addr "$ip1" --host "$ip1" || fail "cannot start the agent"
ok=0
for _ in $(seq 1 60); do
	if "$VM" exec --timeout 120 2 -- "$CLI" --coordinator "$coord" pool create "$POOL" 64M >"$work/create.out" 2>&1; then
		ok=1
		break
	fi
	sleep 1 # the agent may not have registered yet
done
((ok)) || { cat "$work/create.out" >&2; fail "pool create failed"; }

# rxe's counters of both hosts (name=value lines, "h1.sent_pkts=...").
counters() {
	local h
	for h in 1 2; do
		"$VM" exec --timeout 60 "$h" -- sh -c 'cd /sys/class/infiniband/rxe0/ports/1/hw_counters && grep -H . *' |
			sed "s/^\([^:]*\):/h$h.\1=/"
	done
}
for mode in poll event; do
	counters >"$work/rxe.$mode.before.txt" || true
	RMPOOL_WAIT=$mode "$VM" exec --timeout 600 2 -- "$CLI" --coordinator "$coord" bench "$POOL" >"$work/rmp.$mode.txt" ||
		fail "rmpool bench ($mode) failed: $(cat "$work/rmp.$mode.txt")"
	counters >"$work/rxe.$mode.after.txt" || true
done
# ib_read_lat once more, after rmpool's runs: on a shared machine the load
# moves in minutes, so the latency ratios use the mean of before and after.
"$HERE/perftest-baseline.sh" --out "$work/base_after.txt" --reps "$REPS" --server 1 --client 2 \
	--tests read_lat --first-port 18800 ||
	echo "pool-bench: ib_read_lat after rmpool's runs had failed runs (see above)" >&2

get() { sed -n "s/^$2=//p" "$1" | head -n1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-"; else printf "%.2fx", a / b }'; }
B=$work/base.txt
echo
echo "rmpool bench: host 2 -> host 1 (${hosts[1]} -> $ip1), same run as perftest (median of $REPS perftest runs)"
printf '%-34s %10s %10s %10s %10s %8s\n' "figure" "mode" "rmpool" "perftest" "ratio" "target"
for mode in poll event; do
	R=$work/rmp.$mode.txt
	rl=$(get "$R" read_lat.median_us) wl=$(get "$R" write_lat.median_us) af=$(get "$R" alloc_free_lat.median_us)
	rb=$(get "$R" read_bw.MBps) wb=$(get "$R" write_bw.MBps)
	rbb=$(get "$R" read_buf_bw.MBps) wbb=$(get "$R" write_buf_bw.MBps)
	rs=$(get "$R" read_stream_bw.MBps) ws=$(get "$R" write_stream_bw.MBps) so=$(get "$R" stream_ops)
	brl0=$(get "$B" "read_lat.$mode.typical_us") bal=$(get "$B" "atomic_lat.$mode.typical_us")
	brl1=$(get "$work/base_after.txt" "read_lat.$mode.typical_us" 2>/dev/null || true)
	brl=$(awk -v a="$brl0" -v b="$brl1" 'BEGIN { if (b == "") print a; else printf "%.2f", (a + b) / 2 }')
	brb=$(get "$B" "read_bw.$mode.avg_MBps") bwb=$(get "$B" "write_bw.$mode.avg_MBps")
	brb14=$(get "$work/base14.txt" "read_bw.$mode.avg_MBps" 2>/dev/null || true)
	printf '%-34s %10s %10s %10s %10s %8s\n' "64 B rmp_read latency (us)" "$mode" "$rl" "$brl" "$(ratio "$rl" "$brl")" "<=1.15x"
	printf '%-34s %10s %10s %10s %10s %8s\n' "64 B rmp_write latency (us)" "$mode" "$wl" "$brl" "$(ratio "$wl" "$brl")" "<=1.15x"
	printf '%-34s %10s %10s %10s %10s %8s\n' "  ib_read_lat before, after (us)" "$mode" "" "$brl0" "${brl1:-n/a}" "-"
	printf '%-34s %10s %10s %10s %10s %8s\n' "1 MiB rmp_read bandwidth (MB/s)" "$mode" "$rb" "$brb" "$(ratio "$rb" "$brb")" ">=0.9x"
	printf '%-34s %10s %10s %10s %10s %8s\n' "  the same, vs ib_read_bw -u 14" "$mode" "$rb" "${brb14:-n/a}" "$(ratio "$rb" "$brb14")" "-"
	printf '%-34s %10s %10s %10s %10s %8s\n' "  rmp_read_buf, 1 at a time" "$mode" "$rbb" "$brb" "$(ratio "$rbb" "$brb")" "-"
	printf '%-34s %10s %10s %10s %10s %8s\n' "  rmp_read_async, ${so:-?} in flight" "$mode" "$rs" "$brb" "$(ratio "$rs" "$brb")" "-"
	printf '%-34s %10s %10s %10s %10s %8s\n' "1 MiB rmp_write bandwidth (MB/s)" "$mode" "$wb" "${bwb:-n/a}" "$(ratio "$wb" "$bwb")" ">=0.9x"
	printf '%-34s %10s %10s %10s %10s %8s\n' "  rmp_write_buf, 1 at a time" "$mode" "$wbb" "${bwb:-n/a}" "$(ratio "$wbb" "$bwb")" "-"
	printf '%-34s %10s %10s %10s %10s %8s\n' "  rmp_write_async, ${so:-?} in flight" "$mode" "$ws" "${bwb:-n/a}" "$(ratio "$ws" "$bwb")" "-"
	printf '%-34s %10s %10s %10s %10s %8s\n' "alloc+free latency (us)" "$mode" "$af" "$bal" "$(ratio "$af" "$bal")" "-"
done
echo
for mode in poll event; do
	d() {
		awk -F= -v k="$1" 'FNR == NR && $1 == k { a = $2 } FNR != NR && $1 == k { b = $2 }
			END { if (a == "" || b == "") print "?"; else print b - a }' "$work/rxe.$mode.before.txt" "$work/rxe.$mode.after.txt"
	}
	echo "rxe during rmpool bench ($mode): host 1 sent $(d h1.sent_pkts) packets, host 2 received $(d h2.rcvd_pkts);" \
		"host 2 sent $(d h2.sent_pkts), host 1 received $(d h1.rcvd_pkts); host 2 completer_retry_err +$(d h2.completer_retry_err)," \
		"retry_exceeded_err +$(d h2.retry_exceeded_err); host 1 duplicate_request +$(d h1.duplicate_request)"
done
R=$work/rmp.event.txt
echo
echo "round trips per alloc: $(get "$R" alloc.round_trips) (target <= 2 when a block of the order is free), per free: $(get "$R" free.round_trips)"
echo "work requests per alloc+free: $(awk -v a="$(get "$R" alloc.work_requests)" -v f="$(get "$R" free.work_requests)" 'BEGIN { printf "%.2f", a + f }')," \
	"rxe packets sent by host 2 per alloc+free: $(get "$R" alloc_free.sent_pkts) (one request packet per work request)"
echo "(ib_read_lat: the mean of its medians before and after rmpool's runs (both shown)."
echo " ib_write_bw has no event mode in perftest; the 64 B write is compared with ib_read_lat: both wait one round trip."
echo " perftest bandwidth: 64 KiB messages, as ib_read_bw with 1 MiB READs fails on emulated rxe; rmpool: 1 MiB calls."
echo " perftest runs with -u 18 (ACK timeout 1 s), rmpool's QPs with 14 (67 ms): the '-u 14' row compares at equal timeouts."
echo " The target rows are one 1 MiB rmp_read/rmp_write at a time (each waits for its last byte); perftest keeps"
echo " many messages in flight all along, like the 'in flight' rows (1 MiB rmp_*_async operations, a new one"
echo " started as the oldest is reaped). rxe counters of both hosts over each rmpool bench run: $work/rxe.*.txt)"
