#!/bin/bash
# perftest baseline: what raw verbs achieve between two hosts of this run.
#
# Runs under deploy/vm/rmpool-vm with at least 2 hosts (target
# bench-baseline does `rmpool-vm run --hosts 2`). For each of ib_read_lat,
# ib_write_lat, ib_atomic_lat, ib_read_bw and ib_write_bw (all with -R,
# rdma_cm: without it perftest does not reach RTR in the guests), in polling
# and in event mode (-e), it runs the server on host 1 and the client on
# host 2, REPS times, and keeps the median of perftest's own figure: the
# typical (median) latency in us, the average bandwidth in MB/s. Under TCG
# absolute figures mean little; rmpool benchmarks of the same run divide by
# these (read them from --out).
#
# Output: one table on stdout; with --out FILE, key=value lines such as
#   read_lat.poll.typical_us=334.12   read_bw.event.avg_MBps=61.30
#   read_lat.size=2   reps=3   server=198.18.0.1 ...
#   ack_timeout=18
# (All runs use -R -u 18, or --ack-timeout, see run_once.)
# Exit status 1 when any measurement failed (its cell shows FAIL).
# Every perftest process is bounded by a timeout.
set -euo pipefail

VM=$(cd "$(dirname "$(readlink -f "$0")")/../../deploy/vm" && pwd)/rmpool-vm
OUT=
REPS=3
LAT_ITERS=200
BW_ITERS=100
BW_SIZE=65536
SERVER=1
CLIENT=2
MODES="poll event"
ONLY= # --tests: names from TESTS, empty: all
ACK_TIMEOUT=18 # perftest -u: the QP's ACK timeout, 4.096 us * 2^N
PORT=18600 # first rdma_cm port; each run takes the next one
RUN_TIMEOUT=60 # a 200-iteration run takes seconds; longer means rxe hung

usage() {
	cat <<EOF
Usage: perftest-baseline.sh [--out FILE] [--reps N] [--lat-iters N]
                            [--bw-iters N] [--bw-size BYTES]
                            [--server HOST] [--client HOST] [--modes "poll event"]
                            [--tests "read_lat read_bw ..."] [--ack-timeout N] [--first-port N]
Run inside 'deploy/vm/rmpool-vm run --hosts 2 -- ...'. Prints one table of
medians over N runs (default $REPS) and writes key=value lines to FILE.
Defaults: --lat-iters $LAT_ITERS, --bw-iters $BW_ITERS, --bw-size $BW_SIZE,
server host $SERVER, client host $CLIENT, --ack-timeout $ACK_TIMEOUT (perftest -u),
all tests (read_lat write_lat atomic_lat read_bw write_bw).
EOF
}

while (($#)); do
	case $1 in
	--out) OUT=$2; shift 2 ;;
	--reps) REPS=$2; shift 2 ;;
	--lat-iters) LAT_ITERS=$2; shift 2 ;;
	--bw-iters) BW_ITERS=$2; shift 2 ;;
	--bw-size) BW_SIZE=$2; shift 2 ;;
	--server) SERVER=$2; shift 2 ;;
	--client) CLIENT=$2; shift 2 ;;
	--modes) MODES=$2; shift 2 ;;
	--tests) ONLY=$2; shift 2 ;;
	--ack-timeout) ACK_TIMEOUT=$2; shift 2 ;;
	--first-port) PORT=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "perftest-baseline: unknown option '$1'" >&2; usage >&2; exit 2 ;;
	esac
done

die() {
	echo "perftest-baseline: $*" >&2
	exit 2
}
[[ -n ${RMPOOL_VM_DIR:-} ]] ||
	die "RMPOOL_VM_DIR is unset: run under the harness: deploy/vm/rmpool-vm run --hosts 2 -- $0"
read -r -a hosts <<<"${RMPOOL_VM_HOSTS:-}"
((${#hosts[@]} >= 2)) || die "needs 2 hosts, the run has ${#hosts[@]}"
SERVER_ADDR=${hosts[SERVER - 1]}

# name  kind  size  extra perftest options
TESTS=(
	"read_lat   lat 2         "
	"write_lat  lat 2         "
	"atomic_lat lat 8         "
	"read_bw    bw  $BW_SIZE  "
	"write_bw   bw  $BW_SIZE  "
)
if [[ -n $ONLY ]]; then
	kept=()
	for t in "${TESTS[@]}"; do
		read -r name _ <<<"$t"
		[[ " $ONLY " == *" $name "* ]] && kept+=("$t")
	done
	((${#kept[@]})) || die "--tests '$ONLY' names no test"
	TESTS=("${kept[@]}")
fi

# One server/client pair; prints perftest's figure (typical latency or
# average bandwidth) on stdout, or fails.
run_once() { # NAME KIND SIZE MODE PORT
	local name=$1 kind=$2 size=$3 mode=$4 port=$5 job out rc=0 iters opts=()
	iters=$LAT_ITERS
	[[ $kind == bw ]] && iters=$BW_ITERS
	# -u: the QP's ACK timeout, 4.096 us * 2^N. The baseline uses 18 (1 s;
	# perftest's default, 14, is 67 ms). It changes nothing on a path that
	# loses nothing; on emulated rxe, which drops READ reply packets, every
	# loss at the tail of a burst waits it out, so bandwidth depends on it.
	# rmpool's own QPs use 14; --ack-timeout 14 measures perftest at the
	# same value (bench-pool prints both).
	opts=(-R -u "$ACK_TIMEOUT" -n "$iters" -p "$port")
	[[ $name == atomic_lat ]] || opts+=(-s "$size")
	[[ $mode == event ]] && opts+=(-e)
	job=pt_${name}_${mode}_$$_$port
	"$VM" exec --bg "$job" "$SERVER" -- timeout "$RUN_TIMEOUT" "ib_$name" "${opts[@]}" ||
		{ echo "cannot start the ib_$name server" >&2; return 1; }
	if ! "$VM" wait-listen --timeout 30 "$SERVER" "$port"; then
		"$VM" kill "$job" KILL 2>/dev/null || true
		echo "ib_$name ${opts[*]}: the server does not listen" >&2
		return 1
	fi
	out=$("$VM" exec --timeout "$RUN_TIMEOUT" "$CLIENT" -- \
		"ib_$name" "${opts[@]}" "$SERVER_ADDR" 2>&1) || rc=$?
	if ((rc != 0)); then
		"$VM" kill "$job" KILL 2>/dev/null || true
		printf '%s\n' "$out" | tail -n 5 >&2
		echo "ib_$name ${opts[*]}: client status $rc" >&2
		return 1
	fi
	"$VM" wait --timeout 30 "$job" || rc=$?
	if ((rc != 0)); then
		tail -n 5 "$RMPOOL_VM_SCRATCH/$job.log" >&2
		echo "ib_$name ${opts[*]}: server status $rc" >&2
		return 1
	fi
	rm -f "$RMPOOL_VM_SCRATCH/$job.log"
	# The line after the "#bytes" header: lat -> t_typical is column 5,
	# bw -> BW average[MB/sec] is column 4.
	# A figure that is not a finite number is a failed run: under TCG
	# perftest's cycle clock sometimes gives a typical latency of "inf".
	awk -v col="$([[ $kind == lat ]] && echo 5 || echo 4)" '
		hdr && $1 ~ /^[0-9]+$/ { if ($col ~ /^[0-9]+(\.[0-9]+)?$/) { print $col; found = 1 }; exit }
		/#bytes/ { hdr = 1 }
		END { exit !found }' <<<"$out" || {
		printf '%s\n' "$out" | tail -n 5 >&2
		echo "ib_$name ${opts[*]}: no result line, or not a finite figure" >&2
		return 1
	}
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A result
failed=0
t0=$SECONDS
for t in "${TESTS[@]}"; do
	read -r name kind size <<<"$t"
	for mode in $MODES; do
		vals=()
		if [[ $mode == event && $name == write_* ]]; then
			# perftest: "Events feature not available on WRITE verb".
			result[$name.$mode]=n/a
			continue
		fi
		# Extra attempts: on a loaded machine rdma_cm connects can time out
		# (perftest then even crashes) and rxe under TCG sometimes stalls.
		for ((r = 1; r <= 2 * REPS && ${#vals[@]} < REPS; r++)); do
			PORT=$((PORT + 1))
			if v=$(run_once "$name" "$kind" "$size" "$mode" "$PORT"); then
				vals+=("$v")
			else
				echo "perftest-baseline: ib_$name ($mode) attempt $r failed" >&2
			fi
		done
		if ((${#vals[@]} == REPS)); then
			result[$name.$mode]=$(median "${vals[@]}")
		else
			result[$name.$mode]=FAIL
			failed=1
		fi
		echo "perftest-baseline: ib_$name $mode: ${vals[*]:-none} -> ${result[$name.$mode]}" >&2
	done
done

{
	echo "perftest baseline: host $CLIENT -> host $SERVER ($SERVER_ADDR), rdma_cm (-R), -u $ACK_TIMEOUT, median of $REPS runs, $((SECONDS - t0)) s"
	printf '%-14s %8s %7s' test bytes iters
	for mode in $MODES; do printf ' %12s' "$mode"; done
	printf '  %s\n' unit
	for t in "${TESTS[@]}"; do
		read -r name kind size <<<"$t"
		iters=$LAT_ITERS unit="us (typical)"
		[[ $kind == bw ]] && iters=$BW_ITERS unit="MB/s (average)"
		printf '%-14s %8s %7s' "ib_$name" "$size" "$iters"
		for mode in $MODES; do printf ' %12s' "${result[$name.$mode]}"; done
		printf '  %s\n' "$unit"
	done
	echo "(ib_write_lat is a ping-pong: it reports half a round trip; an RDMA WRITE completes after a full one."
	echo " n/a: perftest has no event mode for WRITE. Figures are from this run's guests: compare ratios, not absolutes.)"
}

if [[ -n $OUT ]]; then
	{
		echo "# perftest baseline, $(date -u +%Y-%m-%dT%H:%M:%SZ), median of $REPS runs"
		echo "server=$SERVER_ADDR"
		echo "reps=$REPS"
		echo "ack_timeout=$ACK_TIMEOUT"
		for t in "${TESTS[@]}"; do
			read -r name kind size <<<"$t"
			echo "$name.size=$size"
			for mode in $MODES; do
				[[ ${result[$name.$mode]} == n/a ]] && continue
				if [[ $kind == lat ]]; then
					echo "$name.$mode.typical_us=${result[$name.$mode]}"
				else
					echo "$name.$mode.avg_MBps=${result[$name.$mode]}"
				fi
			done
		done
	} >"$OUT.tmp"
	mv "$OUT.tmp" "$OUT"
	echo "key=value results: $OUT"
fi
exit "$failed"
