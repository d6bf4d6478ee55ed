#!/usr/bin/env bash
# nbbs-compare.sh - rmp_heap against NBBS (HPDCS/NBBS, the lock-free buddy
# system) on NBBS's own benchmark drivers, same run, same machine.
#
# Given a fetched NBBS checkout (a work tree, or a git directory such as the
# one the fetch tool returns) and a build directory OUTSIDE this tree, it
#   1. copies NBBS there and builds its allocators 1lvl-nb and 4lvl-nb with
#      NBBS's own Makefiles, configured for a 2 GiB heap of 4 KiB leaves
#      (MIN=4096 NUM_LEVELS=20, and MAX=4 MiB as NBBS's scripts/config.sh),
#      and its four drivers (threadtest, linux-scalability, fixed-size =
#      constant occupancy, cached allocation) for both, at their defaults;
#   2. builds the same drivers, with the same command NBBS's Makefile uses,
#      against tests/bench/nbbs_adapter.c (rmp_heap behind bd_xx_malloc /
#      bd_xx_free) and this tree's librmpool_common.a;
#   3. runs every cell (shape x size x threads) --reps times, interleaved:
#      1lvl-nb, rmp_heap (driver), 4lvl-nb, rmp_heap (bench_shapes), and
#      prints the medians, the median of the per-pair ratios rmp_heap /
#      NBBS, and whether bench_shapes agrees with the driver within 20%;
#   4. prints bench_shapes' loads per alloc in threadtest bursts of N = 1k,
#      10k, 50k.
# Nothing of NBBS is written inside this tree, nor committed: the build
# directory must lie outside it. The drivers time with rdtsc; the TSC rate
# is calibrated against CLOCK_MONOTONIC at the start and at the end.
#
# --scale tt=D,co=D,ca=D (or just D, for all three) divides the number of
# repetitions of the shape - threadtest's bursts, the steps of constant
# occupancy and of cached allocation - in the rmp_heap runs only (the
# adapter's drivers are built from a copy whose parameters.h is divided,
# and bench_shapes gets --scale D): every repetition is the same, so
# ns/op stays the same, and a run that would take an hour takes a minute.
# NBBS always runs its drivers at their defaults. linux-scalability has
# only 2*k bursts and is never scaled.
#
#   tests/bench/nbbs-compare.sh --nbbs DIR --build DIR [--rmpool-build DIR]
#       [--reps N] [--shapes "tt ls co ca"] [--sizes "4096 32768"]
#       [--threads "1 2"] [--scale SPEC] [--no-bursts] [--build-only]
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NBBS="" BUILD="" RMPOOL_BUILD="$REPO/build"
REPS=3 SHAPES="tt ls co ca" SIZES="4096 32768" THREADS="1 2" BURSTS=1 BUILD_ONLY=0 SCALE=1

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
	case "$1" in
	--nbbs) NBBS=$2; shift 2 ;;
	--build) BUILD=$2; shift 2 ;;
	--rmpool-build) RMPOOL_BUILD=$2; shift 2 ;;
	--reps) REPS=$2; shift 2 ;;
	--shapes) SHAPES=$2; shift 2 ;;
	--sizes) SIZES=$2; shift 2 ;;
	--threads) THREADS=$2; shift 2 ;;
	--scale) SCALE=$2; shift 2 ;;
	--no-bursts) BURSTS=0; shift ;;
	--build-only) BUILD_ONLY=1; shift ;;
	-h|--help) usage; exit 0 ;;
	*) echo "nbbs-compare.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
	esac
done
[ -n "$NBBS" ] && [ -n "$BUILD" ] || { usage >&2; exit 2; }
mkdir -p "$BUILD"
BUILD=$(cd "$BUILD" && pwd)
RMPOOL_BUILD=$(cd "$RMPOOL_BUILD" && pwd)
case "$BUILD/" in "$REPO"/*)
	echo "nbbs-compare.sh: --build $BUILD is inside the tree; NBBS must be built outside it" >&2; exit 2 ;;
esac
LIB="$RMPOOL_BUILD/common/librmpool_common.a"
SHAPES_BIN="$RMPOOL_BUILD/tests/bench/bench_shapes"
for f in "$LIB" "$SHAPES_BIN"; do
	[ -e "$f" ] || { echo "nbbs-compare.sh: $f missing: cmake --build $RMPOOL_BUILD --target bench_shapes" >&2; exit 2; }
done

log() { echo "nbbs-compare.sh: $*" >&2; }

# The divisor of a shape's repetitions in the rmp_heap runs (--scale).
scale_of() {
	local kv
	case "$SCALE" in *=*) ;; *) [ "$1" = ls ] && echo 1 || echo "$SCALE"; return ;; esac
	for kv in ${SCALE//,/ }; do
		[ "${kv%%=*}" = "$1" ] && [ "$1" != ls ] && { echo "${kv#*=}"; return; }
	done
	echo 1
}
for sh in tt co ca; do
	case "$(scale_of $sh)" in ''|0|*[!0-9]*) echo "nbbs-compare.sh: --scale $SCALE: not D or tt=D,co=D,ca=D" >&2; exit 2 ;; esac
done

# --- 1. NBBS, outside the tree ---
SRC="$BUILD/src"
rm -rf "$SRC"
mkdir -p "$SRC"
if [ -d "$NBBS/allocators" ] && [ -d "$NBBS/benchmarks" ]; then
	cp -r "$NBBS/." "$SRC/"
	rm -rf "$SRC/.git"
elif git --git-dir="$NBBS" rev-parse --verify -q HEAD >/dev/null; then
	git --git-dir="$NBBS" archive HEAD | tar -x -C "$SRC"
else
	echo "nbbs-compare.sh: --nbbs $NBBS is neither an NBBS work tree nor its git directory" >&2; exit 2
fi
NBBS_REV=$( (git -C "$NBBS" rev-parse --short HEAD 2>/dev/null || git --git-dir="$NBBS" rev-parse --short HEAD) 2>/dev/null || echo unknown)
# The drivers include <numaif.h> but only their kernel variant calls it.
STUB="$BUILD/stub-include"
mkdir -p "$STUB"
if ! echo '#include <numaif.h>' | ${CC:-gcc} -E - >/dev/null 2>&1; then
	echo '/* empty: the user-space drivers call nothing from numaif.h */' >"$STUB/numaif.h"
fi
NBBS_CONF=(MIN=4096 MAX=4194304 NUM_LEVELS=20) # 4096 << 19 = 2 GiB
DRIVERS=(TB_threadtest TB_linux-scalability TB_fixed-size TB_cached_allocation)
log "building NBBS $NBBS_REV in $SRC (${NBBS_CONF[*]})"
make -s -C "$SRC/utils" >"$BUILD/make.log" 2>&1
for a in 1lvl-nb 4lvl-nb; do
	make -s -C "$SRC/allocators/$a" "${NBBS_CONF[@]}" >>"$BUILD/make.log" 2>&1
	for d in "${DRIVERS[@]}"; do
		make -s -C "$SRC/benchmarks/$d" "$d-$a" FLAGS="-I$STUB" >>"$BUILD/make.log" 2>&1
	done
done

# --- 2. the same drivers against rmp_heap ---
log "building the drivers against rmp_heap ($LIB)"
${CC:-gcc} -std=c11 -O2 -g -D_GNU_SOURCE -Wall -Wextra -Werror -I"$REPO/common/include" \
	-c "$REPO/tests/bench/nbbs_adapter.c" -o "$BUILD/nbbs_adapter.o"
driver_of() { case $1 in tt) echo TB_threadtest ;; ls) echo TB_linux-scalability ;;
	co) echo TB_fixed-size ;; ca) echo TB_cached_allocation ;; esac; }
for sh in tt ls co ca; do
	d=$(driver_of $sh) sc=$(scale_of $sh)
	# A copy of the driver's folder (main.h includes "parameters.h" from
	# its own folder), its repetitions divided by --scale.
	rm -rf "$SRC/benchmarks/$d-rmp"
	cp -r "$SRC/benchmarks/$d" "$SRC/benchmarks/$d-rmp"
	sed -i -E "s/^(#define (TT|CO|CA)_ITERATIONS[[:space:]]+)([0-9]+ULL)/\1(\3 \/ $sc)/" \
		"$SRC/benchmarks/$d-rmp/parameters.h"
	# NBBS's benchmarks/base.mk rule for an allocator, with the adapter
	# and librmpool_common.a in place of lib<allocator>.a.
	(cd "$SRC/benchmarks/$d-rmp" && ${CC:-gcc} -I"$STUB" main.c -I../../utils -o "$d-rmp" -DALLOCATOR=rmp \
		-D'TO_BE_REPLACED_MALLOC(x)=bd_xx_malloc(x)' -D'TO_BE_REPLACED_FREE(x)=bd_xx_free(x)' \
		-D'ALLOCATOR_NAME="rmp_heap"' "$BUILD/nbbs_adapter.o" "$LIB" -lpthread) >>"$BUILD/make.log" 2>&1
done
cat >"$BUILD/tsc_hz.c" <<'EOF'
/* TSC ticks per second against CLOCK_MONOTONIC, over half a second. */
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <x86intrin.h>
static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}
int main(void)
{
	struct timespec half = { 0, 500000000 };
	double t0 = now();
	uint64_t c0 = __rdtsc();
	nanosleep(&half, NULL);
	uint64_t c1 = __rdtsc();
	printf("%.0f\n", (double)(c1 - c0) / (now() - t0));
	return 0;
}
EOF
${CC:-gcc} -O2 "$BUILD/tsc_hz.c" -o "$BUILD/tsc_hz"
[ "$BUILD_ONLY" = 1 ] && { log "built in $BUILD"; exit 0; }

# --- 3. the cells, interleaved ---
TSC_HZ=$("$BUILD/tsc_hz")
RAW="$BUILD/nbbs-compare-$(date +%Y%m%d-%H%M%S).tsv"
printf 'shape\tsize\tthreads\trep\timpl\tns_op\tloads_alloc\tcas_alloc\tfalse_enomem\tload1\n' >"$RAW"
LOAD_START=$(uptime)
log "load at start: $LOAD_START; TSC $TSC_HZ Hz; raw figures in $RAW"

# One driver run: ns/op over allocs + frees, from its rdtsc clocks.
run_driver() { # shape size threads impl rep
	local bin out err ns ld cas en
	bin="$SRC/benchmarks/$(driver_of "$1")/$(driver_of "$1")-$4"
	[ "$4" = rmp ] && bin="$SRC/benchmarks/$(driver_of "$1")-rmp/$(driver_of "$1")-rmp"
	out=$("$bin" "$3" "$2" 2>"$BUILD/last.err") || { log "$bin $3 $2 failed"; cat "$BUILD/last.err" >&2; exit 1; }
	ns=$(awk -v hz="$TSC_HZ" '/^Timer/ {c = $NF} /^total allocs:/ {a = $NF} /^total frees:/ {f = $NF}
		END {printf "%.2f", c / hz * 1e9 / (a + f)}' <<<"$out")
	ld=- cas=- en=-
	if [ "$4" = rmp ]; then
		err=$(grep '^nbbs_adapter:' "$BUILD/last.err")
		ld=$(sed -n 's/.*per alloc: loads \([0-9.]*\).*/\1/p' <<<"$err")
		cas=$(sed -n 's/.*per alloc: loads [0-9.]* cas \([0-9.]*\).*/\1/p' <<<"$err")
		en=$(sed -n 's/.*false_enomem \([0-9]*\).*/\1/p' <<<"$err")
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$5" "$4" "$ns" "$ld" "$cas" "$en" \
		"$(cut -d' ' -f1 /proc/loadavg)" >>"$RAW"
}

run_shapes() { # shape size threads rep
	local row
	row=$("$SHAPES_BIN" --shape "$1" --size "$2" --threads "$3" --scale "$(scale_of "$1")" | grep -E '^(threadtest|linux-scal|const-occ|cached) ')
	# shape size thr ns/op Mops/s | alloc% free% (thread caches) | loads cas cas_fail faa | ld cas | ENOMEM ...
	awk -v s="$1" -v z="$2" -v t="$3" -v r="$4" -v l="$(cut -d' ' -f1 /proc/loadavg)" \
		'{printf "%s\t%s\t%s\t%s\tshapes\t%s\t%s\t%s\t%s\t%s\n", s, z, t, r, $4, $10, $11, $18, l}' <<<"$row" >>"$RAW"
}

for shape in $SHAPES; do
	for size in $SIZES; do
		for thr in $THREADS; do
			for rep in $(seq 1 "$REPS"); do
				log "$shape ${size} B, $thr thread(s), run $rep of $REPS"
				run_driver "$shape" "$size" "$thr" 1lvl-nb "$rep"
				run_driver "$shape" "$size" "$thr" rmp "$rep"
				run_driver "$shape" "$size" "$thr" 4lvl-nb "$rep"
				run_shapes "$shape" "$size" "$thr" "$rep"
			done
		done
	done
done
LOAD_END=$(uptime)
TSC_HZ_END=$("$BUILD/tsc_hz")

# --- the table: medians, median of per-pair ratios ---
echo
echo "rmp_heap vs NBBS on NBBS's drivers (NBBS $NBBS_REV: MIN=4096 MAX=4 MiB NUM_LEVELS=20, 2 GiB heap)"
echo "$(uname -n), $(nproc) CPUs, TSC $TSC_HZ / $TSC_HZ_END Hz; medians of $REPS interleaved runs; ns/op over allocs+frees"
echo "rmp_heap runs' repetitions divided by: tt $(scale_of tt), co $(scale_of co), ca $(scale_of ca) (--scale; NBBS at its defaults)"
echo "load at start: $LOAD_START"
echo "load at end:   $LOAD_END"
awk -F'\t' 'NR > 1 {
	k = $1 SUBSEP $2 SUBSEP $3; keys[k] = 1
	v[k, $5, $4] = $6
	ld1[k, $5, $4] = $10
	if ($5 == "rmp" || $5 == "shapes") { ld[k, $5, $4] = $7; cas[k, $5, $4] = $8; en[k] += $9 }
	if ($4 > reps) reps = $4
}
function med(a, n,   i, j, t) {
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function m(k, impl,   a, i) { for (i = 1; i <= reps; i++) a[i] = v[k, impl, i]; return med(a, reps) }
function mr(k, num, den,   a, i) { for (i = 1; i <= reps; i++) a[i] = v[k, num, i] / v[k, den, i]; return med(a, reps) }
function ml(arr, k, impl,   a, i) { for (i = 1; i <= reps; i++) a[i] = arr[k, impl, i]; return med(a, reps) }
function spread(k, impl,   lo, hi, i) { lo = hi = v[k, impl, 1]
	for (i = 2; i <= reps; i++) { if (v[k, impl, i] < lo) lo = v[k, impl, i]; if (v[k, impl, i] > hi) hi = v[k, impl, i] }
	return hi / lo }
END {
	name["tt"] = "threadtest"; name["ls"] = "linux-scal"; name["co"] = "const-occ"; name["ca"] = "cached"
	printf "%-10s %5s %3s | %9s %9s %9s %9s | %7s %6s | %8s %8s | %17s %5s | %6s | %4s\n", "shape", "size",
		"thr", "1lvl-nb", "4lvl-nb", "rmp drv", "rmp shp", "shp/drv", "spread", "rmp/1lvl", "rmp/4lvl",
		"ld/alloc drv shp", "cas", "ENOMEM", "load"
	n = 0
	for (k in keys) order[++n] = k
	for (i = 2; i <= n; i++) for (j = i; j > 1 && rank(order[j]) < rank(order[j - 1]); j--) {
		t = order[j]; order[j] = order[j - 1]; order[j - 1] = t }
	bad = 0
	for (i = 1; i <= n; i++) {
		k = order[i]; split(k, f, SUBSEP)
		agree = m(k, "shapes") / m(k, "rmp")
		if (agree < 0.8 || agree > 1.2) bad++
		printf "%-10s %4dK %3d | %9.1f %9.1f %9.1f %9.1f | %6.2f%s %5.2fx | %7.2fx %7.2fx | %8.2f %8.2f %5.2f | %6d | %4.1f\n",
			name[f[1]], f[2] / 1024, f[3], m(k, "1lvl-nb"), m(k, "4lvl-nb"), m(k, "rmp"), m(k, "shapes"),
			agree, (agree < 0.8 || agree > 1.2) ? "!" : " ", spread(k, "rmp"), mr(k, "rmp", "1lvl-nb"),
			mr(k, "rmp", "4lvl-nb"), ml(ld, k, "rmp"), ml(ld, k, "shapes"), ml(cas, k, "rmp"), en[k],
			ml(ld1, k, "rmp")
	}
	printf "ns/op: medians; rmp/NBBS: median of the per-run ratios (rmp driver run / the NBBS run beside it);\n"
	printf "shp/drv: bench_shapes / driver for rmp_heap, must be within 0.80-1.20 (%d cells outside: marked !);\n", bad
	printf "spread: slowest / fastest of the rmp driver runs (the noise: a cell with a spread well over 1.2 cannot\n"
	printf "        show agreement within 20%%; re-run it with more --reps or on a quieter machine);\n"
	printf "ld/alloc: loads per alloc, rmp_heap through the driver and in bench_shapes; cas: CAS per alloc (driver);\n"
	printf "ENOMEM: false ENOMEM, allocations refused by rmp_heap, summed over its driver and bench_shapes runs;\n"
	printf "load: the 1-minute load average at the rmp driver runs (median)\n"
}
function rank(k,   f) { split(k, f, SUBSEP)
	return index("tt ls co ca", f[1]) * 1e12 + f[2] * 1e3 + f[3] }' "$RAW"

if [ "$BURSTS" = 1 ]; then
	echo
	"$SHAPES_BIN" --bursts 1000,10000,50000 | sed -n '/^threadtest bursts/,$p'
fi
