#!/bin/bash
# pool-bench: rmpool's data path against honest anchors, between the same
# two Soft-RoCE hosts, interleaved in one session, same completion modes.
#
# The anchors:
#   bench_anchor (tests/bench/bench_anchor.c): minimal verbs loops of the
#     project's own, on common/rdma.c (rmpool's QP setup, ACK timeout and
#     completion waits) against a registered region on host 1:
#     (a) one 64 B READ / WRITE per iteration (the floor of a 64 B
#         rmp_read / rmp_write);
#     (b) one 64-word READ + CAS batch (the floor of one allocator round
#         trip), and the word operations of rmp_alloc + rmp_free in
#         `rmpool bench`'s steady state replayed batch by batch (recorded
#         from the buddy engine itself on a local copy of the pool's
#         metadata: the floor of an alloc+free);
#     (c) 1 MiB moved with rmpool's own pipelining to one donor (pieces of
#         RMP_PIECE_MAX, RMP_DEPTH_MAX in flight, client/data.h), from a
#         registered buffer: the ceiling of one 1 MiB call at a time;
#   perftest: ib_read_lat and ib_read_bw (64 KiB messages, -R), at
#     rmpool's ACK timeout (-u 14, --perftest-ack to change it).
#
# Run under deploy/vm/rmpool-vm with 2 hosts (target bench-pool):
#   1. rmpool-server and one host agent on host 1 (every donor is on host
#      1), a 64M pool; the bench_anchor server on host 1;
#   2. PAIRS rounds (default 5), each in polling and in event mode, from
#      host 2: bench_anchor, `rmpool bench`, perftest (ib_read_lat,
#      ib_read_bw) - one after the other, so each rmpool run has its own
#      anchors minutes, not tens of minutes, away;
#   3. one table per mode: for each figure the median over the pairs of
#      rmpool, of the anchor, and of the per-pair ratio rmpool/anchor
#      (with its smallest and largest), and the target;
#   4. both hosts' rxe counters over the rmpool runs: packets sent and
#      received each way, READ retries and the duplicates they caused.
#   5. with --out DIR, every raw file of the run copied to DIR (the
#      harness removes its scratch folder after a run).
# Usage: pool-bench.sh RMPOOL RMPOOL-SERVER RMPOOL-DONOR BENCH-ANCHOR [--pairs N] [--perftest-ack N] [--out DIR]
set -euo pipefail

CLI=${1:?usage: pool-bench.sh rmpool rmpool-server rmpool-donor bench_anchor [--pairs N] [--perftest-ack N] [--out DIR]}
SERVER=${2:?}
DONOR=${3:?}
ANCHOR=${4:?}
shift 4
PAIRS=5
PT_ACK=14
OUT=
while (($#)); do
	case $1 in
	--pairs) PAIRS=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--perftest-ack) PT_ACK=$2; shift 2 ;;
	*) echo "pool-bench: unknown option '$1'" >&2; exit 2 ;;
	esac
done
((PAIRS >= 1)) || { echo "pool-bench: --pairs N >= 1" >&2; exit 2; }
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
SRV=pb_srv_$$ AG=pb_agent_$$ ANC=pb_anchor_$$ POOL=bench$$
ANCHOR_PORT=19900
cleanup() {
	"$VM" exec --timeout 60 2 -- "$CLI" --coordinator "$coord" pool destroy "$POOL" >/dev/null 2>&1 || true
	"$VM" kill "$ANC" TERM 2>/dev/null || true
	"$VM" kill "$AG" TERM 2>/dev/null || true
	"$VM" kill "$SRV" TERM 2>/dev/null || true
}
trap cleanup EXIT
t0=$SECONDS

# 1. The pool, and the anchor's server beside its donors.
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
"$VM" exec --timeout 120 2 -- "$CLI" --coordinator "$coord" pool info --json "$POOL" >"$work/info.json" ||
	fail "pool info failed"
jget() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$work/info.json" "$1"; }
space=$(jget space) min_block=$(jget min_block) capacity=$(jget capacity)
ndonors=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["donors"]))' "$work/info.json")

"$VM" exec --bg "$ANC" 1 -- "$ANCHOR" server --addr "$ip1" --port "$ANCHOR_PORT" --lifetime 3000 ||
	fail "cannot start the bench_anchor server"
ready=
for _ in $(seq 1 300); do
	ready=$(grep -m1 '^READY ' "$RMPOOL_VM_SCRATCH/$ANC.log" 2>/dev/null || true)
	[[ -n $ready ]] && break
	sleep 0.1
done
[[ -n $ready ]] || { cat "$RMPOOL_VM_SCRATCH/$ANC.log" >&2 || true; fail "the bench_anchor server is not ready"; }
read -r _ a_addr a_port a_raddr a_rkey a_len <<<"$ready"

# rxe's counters of both hosts (name=value lines, "h1.sent_pkts=...").
counters() {
	local h
	for h in 1 2; do
		"$VM" exec --timeout 60 "$h" -- sh -c 'cd /sys/class/infiniband/rxe0/ports/1/hw_counters && grep -H . *' |
			sed "s/^\([^:]*\):/h$h.\1=/"
	done
}

# 2. The pairs: anchor, rmpool, perftest, per mode, PAIRS times.
port=18600
for ((i = 1; i <= PAIRS; i++)); do
	for mode in poll event; do
		RMPOOL_WAIT=$mode "$VM" exec --timeout 300 2 -- "$ANCHOR" client "$a_addr" "$a_port" "$a_raddr" "$a_rkey" \
			"$a_len" --space "$space" --min-block "$min_block" --capacity "$capacity" >"$work/anc.$mode.$i.txt" ||
			fail "bench_anchor client ($mode, pair $i) failed"
		counters >"$work/rxe.$mode.$i.before.txt" || true
		RMPOOL_WAIT=$mode "$VM" exec --timeout 600 2 -- "$CLI" --coordinator "$coord" bench "$POOL" \
			>"$work/rmp.$mode.$i.txt" || fail "rmpool bench ($mode, pair $i) failed: $(cat "$work/rmp.$mode.$i.txt")"
		counters >"$work/rxe.$mode.$i.after.txt" || true
		# perftest: each test takes up to 2 ports (a retry); 10 apart.
		"$HERE/perftest-baseline.sh" --out "$work/pt.$mode.$i.txt" --reps 1 --modes "$mode" --tests "read_lat read_bw" \
			--bw-size 65536 --ack-timeout "$PT_ACK" --first-port "$port" --server 1 --client 2 >/dev/null ||
			echo "pool-bench: perftest ($mode, pair $i) had a failed run (see above)" >&2
		port=$((port + 10))
		echo "pool-bench: pair $i/$PAIRS ($mode) done, $((SECONDS - t0)) s" >&2
	done
done

# 3. The table. get FILE KEY -> value; per-pair values of a key as a list.
get() { sed -n "s/^$2=//p" "$1" 2>/dev/null | head -n1; }
series() { # PREFIX MODE KEY -> one value per pair ("" where missing)
	local i
	for ((i = 1; i <= PAIRS; i++)); do
		printf '%s\n' "$(get "$work/$1.$2.$i.txt" "$3")"
	done
}
# rmpool's alloc+free per round trip, a per-pair value of its own.
for mode in poll event; do
	for ((i = 1; i <= PAIRS; i++)); do
		R=$work/rmp.$mode.$i.txt
		per_rt=$(awk -v af="$(get "$R" alloc_free_lat.median_us)" -v a="$(get "$R" alloc.round_trips)" \
			-v f="$(get "$R" free.round_trips)" 'BEGIN { if (af != "" && a + f > 0) printf "%.2f", af / (a + f) }')
		if [[ -n $per_rt ]]; then echo "af_per_rt_us=$per_rt" >>"$R"; fi
	done
done
# stat RMPOOL-LIST ANCHOR-LIST -> "median-rmpool median-anchor median-ratio min-ratio max-ratio n"
stat() {
	paste <(printf '%s\n' "$1") <(printf '%s\n' "$2") | awk -F'\t' '
		function med(v, n,   i, j, t) {
			for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
			return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
		}
		{ okr = $1 ~ /^[0-9]+(\.[0-9]+)?$/ && $1 > 0; oka = $2 ~ /^[0-9]+(\.[0-9]+)?$/ && $2 > 0 }
		okr { nr++; r[nr] = $1 + 0 }
		oka { na++; a[na] = $2 + 0 }
		okr && oka { n++; q[n] = $1 / $2; lo = (n == 1 || q[n] < lo) ? q[n] : lo; hi = (n == 1 || q[n] > hi) ? q[n] : hi }
		END {
			printf "%s %s %s %s %s %d\n", nr ? sprintf("%.2f", med(r, nr)) : "-", na ? sprintf("%.2f", med(a, na)) : "-",
				n ? sprintf("%.2fx", med(q, n)) : "-", n ? sprintf("%.2f", lo) : "-", n ? sprintf("%.2f", hi) : "-", n
		}'
}
row() { # LABEL MODE RMPOOL-KEY ANCHOR-PREFIX ANCHOR-KEY TARGET
	local s
	read -r -a s <<<"$(stat "$(series rmp "$2" "$3")" "$(series "$4" "$2" "$5")")"
	printf '%-40s %6s %9s %9s %8s %12s %3s %8s\n' "$1" "$2" "${s[0]}" "${s[1]}" "${s[2]}" "${s[3]}-${s[4]}" "${s[5]}" "$6"
}
echo
echo "rmpool bench: host 2 -> host 1 (${hosts[1]} -> $ip1), pool of $ndonors donor(s); $PAIRS pairs per mode, interleaved"
echo "(anchor, rmpool bench, perftest; $((SECONDS - t0)) s). Columns: median over the pairs of rmpool and of the anchor,"
echo "median of the per-pair ratios rmpool/anchor (smallest-largest, pairs counted)."
printf '%-40s %6s %9s %9s %8s %12s %3s %8s\n' "figure vs anchor" "mode" "rmpool" "anchor" "ratio" "range" "n" "target"
for mode in poll event; do
	row "64 B rmp_read (us) vs (a) READ" "$mode" read_lat.median_us anc anchor.read_lat.median_us "<=1.15x"
	row "  vs ib_read_lat" "$mode" read_lat.median_us pt "read_lat.$mode.typical_us" "-"
	row "64 B rmp_write (us) vs (a) WRITE" "$mode" write_lat.median_us anc anchor.write_lat.median_us "<=1.15x"
	row "alloc+free (us) vs (b) replay" "$mode" alloc_free_lat.median_us anc anchor.alloc_free_lat.median_us "-"
	row "  per round trip vs READ+CAS batch" "$mode" af_per_rt_us anc anchor.batch_lat.median_us "-"
	row "1 MiB rmp_read (MB/s) vs (c)" "$mode" read_bw.MBps anc anchor.read_bw.MBps ">=0.9x"
	row "  vs ib_read_bw -u $PT_ACK" "$mode" read_bw.MBps pt "read_bw.$mode.avg_MBps" "-"
	row "  rmp_read_buf vs (c)" "$mode" read_buf_bw.MBps anc anchor.read_bw.MBps "-"
	row "  rmp_read_async x$(get "$work/rmp.$mode.1.txt" stream_ops) vs ib_read_bw" "$mode" read_stream_bw.MBps pt "read_bw.$mode.avg_MBps" "-"
	row "1 MiB rmp_write (MB/s) vs (c)" "$mode" write_bw.MBps anc anchor.write_bw.MBps ">=0.9x"
	row "  rmp_write_buf vs (c)" "$mode" write_buf_bw.MBps anc anchor.write_bw.MBps "-"
done
echo
# The replay is honest only if it is rmpool's pattern: both counts side by side.
for mode in poll event; do
	R=$work/rmp.$mode.1.txt A=$work/anc.$mode.1.txt
	echo "alloc/free round trips ($mode, pair 1): rmpool $(get "$R" alloc.round_trips) / $(get "$R" free.round_trips)," \
		"replay $(get "$A" anchor.alloc.round_trips) / $(get "$A" anchor.free.round_trips);" \
		"work requests: rmpool $(get "$R" alloc.work_requests) / $(get "$R" free.work_requests)," \
		"replay $(get "$A" anchor.alloc.work_requests) / $(get "$A" anchor.free.work_requests)"
done
# 4. rxe counters, summed over the rmpool runs of each mode.
for mode in poll event; do
	d() {
		local i sum=0 v
		for ((i = 1; i <= PAIRS; i++)); do
			v=$(awk -F= -v k="$1" 'FNR == NR && $1 == k { a = $2 } FNR != NR && $1 == k { b = $2 }
				END { if (a == "" || b == "") print "?"; else print b - a }' "$work/rxe.$mode.$i.before.txt" "$work/rxe.$mode.$i.after.txt" 2>/dev/null || echo "?")
			[[ $v == "?" ]] && { echo "?"; return; }
			sum=$((sum + v))
		done
		echo "$sum"
	}
	echo "rxe during rmpool bench ($mode, $PAIRS runs): host 1 sent $(d h1.sent_pkts) packets, host 2 received $(d h2.rcvd_pkts);" \
		"host 2 sent $(d h2.sent_pkts), host 1 received $(d h1.rcvd_pkts); host 2 completer_retry_err +$(d h2.completer_retry_err)," \
		"retry_exceeded_err +$(d h2.retry_exceeded_err); host 1 duplicate_request +$(d h1.duplicate_request)"
done
R=$work/rmp.event.1.txt
echo "rxe packets sent by host 2 per alloc+free (event, pair 1): $(get "$R" alloc_free.sent_pkts) (one request packet per work request)"
echo "(Anchors (a)-(c): bench_anchor on common/rdma.c, rmpool's QP options (ACK timeout 14), its wait mode; (c) moves"
echo " 1 MiB as $(get "$work/anc.poll.1.txt" anchor.piece_bytes)-byte pieces, $(get "$work/anc.poll.1.txt" anchor.depth) in flight, from a registered buffer;"
echo " rmp_read/rmp_write go through a bounce buffer (a copy), rmp_*_buf do not. perftest: -R -u $PT_ACK, 64 KiB messages"
echo " (1 MiB READs make ib_read_bw fail on emulated rxe), many in flight all along like the async rows."
echo " (b) replays rmpool's own batches (pair 1: $(get "$work/anc.event.1.txt" anchor.pair0));"
echo " the per-round-trip row divides rmpool's alloc+free by its round trips per alloc plus per free and"
echo " sets it beside the lightest allocator round trip, one 64-word READ + CAS.)"
if [[ -n $OUT ]]; then
	mkdir -p "$OUT" && cp -r "$work/." "$OUT/" && rm -f "$OUT/secret" && echo "raw files: $OUT"
fi
