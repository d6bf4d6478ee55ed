#!/bin/bash
# ab-bench: two builds of rmpool, side by side in ONE guest session, their
# `rmpool bench` runs interleaved, so that a change can be shown to leave
# the data path as it was ("same behaviour, shown").
#
# Run under deploy/vm/rmpool-vm with 2 hosts (target bench-ab):
#   1. each build's own rmpool-server and host agent on host 1 (side A on
#      control port 7420, side B on 7430; every donor on host 1), a 64M
#      pool each;
#   2. for each completion mode and each of --pairs pairs: `rmpool bench`
#      of A and of B on host 2 against its own pool, back to back; the
#      order alternates from pair to pair (ABBA...) so that a drift in the
#      machine's load favours neither;
#   3. each build's rmpool-demo once on a fresh 64M pool, for the round
#      trips of a small alloc/free after a block was freed (fresh pool);
#   4. one table: for each figure the median of B/A over the pairs (and
#      the range), and the round-trip counts of both, which must be equal.
# Usage: ab-bench.sh --a BUILD_DIR --b BUILD_DIR [--pairs N (4)] [--modes "event poll"]
#        [--bench-args "--lat-iters 1000 ..."] [--out FILE] [--report DIR]
#   --report DIR: print the table of an earlier run's work directory only.
# A pair in which either run failed (emulated rxe can time out a READ) is
# left out of the ratios, and counted.   (BUILD_DIR: a cmake build tree with rmpool, rmpool-server,
#        rmpool-donor and rmpool-demo; their paths are looked up in it)
set -euo pipefail

A= B= PAIRS=4 MODES="event poll" OUT= BARGS= REPORT=
usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
	case "$1" in
	--a) A=$2; shift 2 ;;
	--b) B=$2; shift 2 ;;
	--pairs) PAIRS=$2; shift 2 ;;
	--modes) MODES=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--bench-args) BARGS=$2; shift 2 ;;
	--report) REPORT=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "ab-bench: unknown argument '$1' (try --help)" >&2; exit 2 ;;
	esac
done
fail() {
	echo "ab-bench: FAIL: $*" >&2
	exit 1
}
[[ -n $REPORT || ( -n $A && -n $B ) ]] || fail "want --a BUILD_DIR and --b BUILD_DIR"
[[ $PAIRS =~ ^[1-9][0-9]*$ ]] || fail "--pairs wants a positive number"
HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
VM=$HERE/../../deploy/vm/rmpool-vm

run_all() {
[[ -n ${RMPOOL_VM_DIR:-} ]] || fail "run under deploy/vm/rmpool-vm run --hosts 2"
read -r -a hosts <<<"${RMPOOL_VM_HOSTS:-}"
((${#hosts[@]} >= 2)) || fail "needs 2 hosts"
ip1=${hosts[0]}

# The binaries of one build tree (the CLI and demo moved to client/tools/
# in one version: look in both places).
find_bin() {
	local dir=$1 name=$2 f
	for f in "$dir/client/tools/$name" "$dir/client/$name" "$dir/server/$name" "$dir/donor/$name"; do
		[[ -x $f ]] && { echo "$f"; return 0; }
	done
	fail "no $name in $dir"
}
declare -A CLI SRV DON DEMO PORT
for side in A B; do
	dir=${!side}
	CLI[$side]=$(find_bin "$dir" rmpool)
	SRV[$side]=$(find_bin "$dir" rmpool-server)
	DON[$side]=$(find_bin "$dir" rmpool-donor)
	DEMO[$side]=$(find_bin "$dir" rmpool-demo)
done
PORT[A]=7420 PORT[B]=7430

work=$RMPOOL_VM_SCRATCH/ab_bench_$$
mkdir -p "$work"
(umask 077 && head -c 24 /dev/urandom | base64 >"$work/secret")
RMPOOL_SECRET=$(cat "$work/secret")
export RMPOOL_SECRET
cleanup() {
	local side
	for side in A B; do
		"$VM" exec --timeout 60 2 -- "${CLI[$side]}" --coordinator "$ip1:${PORT[$side]}" pool destroy "ab$side" \
			>/dev/null 2>&1 || true
		"$VM" kill "ab_agent_$side" TERM 2>/dev/null || true
		"$VM" kill "ab_srv_$side" TERM 2>/dev/null || true
	done
}
trap cleanup EXIT

start_side() {
	local side=$1 p=${PORT[$1]} ok=0 state=()
	# A build with a state store gets a directory of its own per side.
	if "${SRV[$side]}" --help 2>/dev/null | grep -q -- --state-dir; then
		state=(--state-dir "/tmp/rmpool-state.ab_$side.$$")
	fi
	"$VM" exec --bg "ab_srv_$side" 1 -- "${SRV[$side]}" --listen "$ip1:$p" --http-port 0 --rdma-addr "$ip1" \
		--rdma-port $((p + 2)) "${state[@]}" || fail "side $side: cannot start rmpool-server"
	for _ in $(seq 1 120); do
		grep -q 'INFO: ready' "$RMPOOL_VM_SCRATCH/ab_srv_$side.log" 2>/dev/null && break
		sleep 0.5
	done
	"$VM" exec --bg "ab_agent_$side" 1 -- "${DON[$side]}" --agent --coordinator "$ip1:$p" --budget 256M \
		--process-limit 96M --rdma-addr "$ip1" --host "$ip1" || fail "side $side: cannot start the agent"
	for _ in $(seq 1 60); do
		if "$VM" exec --timeout 120 2 -- "${CLI[$side]}" --coordinator "$ip1:$p" pool create "ab$side" 64M \
			>"$work/create.$side.out" 2>&1; then
			ok=1
			break
		fi
		sleep 1 # the agent may not have registered yet
	done
	((ok)) || { cat "$work/create.$side.out" >&2; fail "side $side: pool create failed"; }
}
start_side A
start_side B

run_bench() { # side mode pair
	local side=$1 mode=$2 i=$3 f=$work/bench.$1.$2.$3.txt
	RMPOOL_WAIT=$mode "$VM" exec --timeout 600 2 -- "${CLI[$side]}" --coordinator "$ip1:${PORT[$side]}" \
		bench "ab$side" $BARGS >"$f" 2>&1 && return 0
	echo "ab-bench: side $side: rmpool bench ($mode, pair $i) failed (pair left out): $(tail -n 2 "$f")" >&2
	mv "$f" "$f.failed"
}
for mode in $MODES; do
	for ((i = 1; i <= PAIRS; i++)); do
		if ((i % 2)); then order="A B"; else order="B A"; fi
		for side in $order; do
			run_bench "$side" "$mode" "$i"
		done
		echo "ab-bench: $mode pair $i/$PAIRS done ($order)"
	done
done
for side in A B; do
	RMPOOL_WAIT=event "$VM" exec --timeout 600 2 -- "${DEMO[$side]}" --coordinator "$ip1:${PORT[$side]}" \
		--pool "abdemo$side" --size 64M --block 16M >"$work/demo.$side.txt" 2>&1 ||
		fail "side $side: rmpool-demo failed: $(tail -n 5 "$work/demo.$side.txt")"
done
echo "$A" >"$work/side.A" && echo "$B" >"$work/side.B" && echo "$PAIRS" >"$work/pairs" && echo "$MODES" >"$work/modes" &&
	echo "$BARGS" >"$work/bargs"
}

if [[ -n $REPORT ]]; then
	work=$REPORT
	A=$(cat "$work/side.A" 2>/dev/null || echo "?") B=$(cat "$work/side.B" 2>/dev/null || echo "?")
	[[ -r $work/pairs ]] && PAIRS=$(cat "$work/pairs")
	[[ -r $work/modes ]] && MODES=$(cat "$work/modes")
	[[ -r $work/bargs ]] && BARGS=$(cat "$work/bargs")
else
	run_all
fi

get() { sed -n "s/^$2=//p" "$1" 2>/dev/null | head -n1; }
# The first pair of a mode in which both runs completed (0: none).
first_pair() {
	local i
	for ((i = 1; i <= PAIRS; i++)); do
		[[ -r $work/bench.A.$1.$i.txt && -r $work/bench.B.$1.$i.txt ]] && { echo "$i"; return; }
	done
	echo 0
}
# The median, min and max of B/A over the pairs of one mode and one key.
ratios() {
	local mode=$1 key=$2 i a b
	for ((i = 1; i <= PAIRS; i++)); do
		[[ -r $work/bench.A.$mode.$i.txt && -r $work/bench.B.$mode.$i.txt ]] || continue
		a=$(get "$work/bench.A.$mode.$i.txt" "$key") b=$(get "$work/bench.B.$mode.$i.txt" "$key")
		awk -v a="$a" -v b="$b" 'BEGIN { if (a == "" || b == "" || a == 0) exit; printf "%.4f\n", b / a }'
	done | sort -n | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "- - -"; exit }
		m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "%.3f %.3f %.3f\n", m, v[1], v[NR] }'
}
medval() { # side mode key: median of the raw figure
	local side=$1 mode=$2 key=$3 i
	for ((i = 1; i <= PAIRS; i++)); do
		[[ -r $work/bench.A.$mode.$i.txt && -r $work/bench.B.$mode.$i.txt ]] || continue
		get "$work/bench.$side.$mode.$i.txt" "$key"
	done | sort -n |
		awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
{
	echo "ab-bench: A = $A"
	echo "ab-bench: B = $B"
	echo "rmpool bench ${BARGS:-(default iterations)}, host 2 -> host 1, $PAIRS interleaved pairs per mode;" \
		"ratio = B / A, median of the pairs [min..max]"
	printf '%-28s %6s %12s %12s %8s %18s %8s\n' figure mode "A (median)" "B (median)" ratio "[min..max]" target
	for mode in $MODES; do
		n=0
		for ((i = 1; i <= PAIRS; i++)); do
			[[ -r $work/bench.A.$mode.$i.txt && -r $work/bench.B.$mode.$i.txt ]] && n=$((n + 1))
		done
		echo "  $mode: $n complete pairs of $PAIRS$( ((n < PAIRS)) && echo " (the others had a failed run:" \
			"$(cd "$work" && ls bench.*."$mode".*.failed 2>/dev/null | tr '\n' ' '))")"
		for key in read_lat.median_us write_lat.median_us alloc_free_lat.median_us read_bw.MBps write_bw.MBps \
			read_buf_bw.MBps write_buf_bw.MBps read_stream_bw.MBps write_stream_bw.MBps; do
			read -r m lo hi <<<"$(ratios "$mode" "$key")"
			case $key in read_lat.* | write_lat.* | read_bw.* | write_bw.*) tgt="0.95-1.05" ;; *) tgt="-" ;; esac
			printf '%-28s %6s %12s %12s %8s %18s %8s\n' "$key" "$mode" "$(medval A "$mode" "$key")" \
				"$(medval B "$mode" "$key")" "$m" "[$lo..$hi]" "$tgt"
		done
	done
	echo
	echo "round trips (steady state, rmpool bench; they are counts, not times: A and B must be equal):"
	for mode in $MODES; do
		for side in A B; do
			f=$work/bench.$side.$mode.$(first_pair "$mode").txt
			echo "  $side $mode: alloc $(get "$f" alloc.round_trips), free $(get "$f" free.round_trips)," \
				"work requests per alloc+free $(awk -v a="$(get "$f" alloc.work_requests)" \
					-v b="$(get "$f" free.work_requests)" 'BEGIN { printf "%.2f", a + b }')"
		done
	done
	echo "round trips on a fresh pool (rmpool-demo: small blocks after the first block was freed):"
	for side in A B; do
		echo "  $side: $(grep -E 'round trips per alloc' "$work/demo.$side.txt" 2>/dev/null | sed 's/^ *//')"
	done
} | tee "${OUT:-/dev/null}"

# The counts must agree exactly; the timed ratios are figures, not tests.
for mode in $MODES; do
	for key in alloc.round_trips free.round_trips alloc.work_requests free.work_requests; do
		i=$(first_pair "$mode")
		((i > 0)) || fail "no complete pair in $mode mode"
		a=$(get "$work/bench.A.$mode.$i.txt" "$key") b=$(get "$work/bench.B.$mode.$i.txt" "$key")
		[[ $a == "$b" ]] || fail "$key differs in $mode mode: A $a, B $b"
	done
done
fa=$(grep -E 'round trips per alloc' "$work/demo.A.txt" 2>/dev/null | sed 's/(.*//') || true
fb=$(grep -E 'round trips per alloc' "$work/demo.B.txt" 2>/dev/null | sed 's/(.*//') || true
[[ $fa == "$fb" ]] || fail "fresh-pool round trips differ: A '$fa', B '$fb'"
echo "ab-bench: round trips identical; figures in $work"
