#!/usr/bin/env bash
# rmpool's main job, from a fresh machine: installs what is missing,
# builds, and runs the demo.
#
# Today the pool's control and data planes are still being built (see
# README.md, "Status"), so the demo shows the engine every pool will run
# on: the lock-free buddy heap under four threads (no overlap, full
# coalescing, in the plain and the RDMA-like store modes), then its
# benchmark against glibc malloc with the word operations per call that
# become RDMA round trips.
#
#   deploy/demo.sh [--build-dir DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build"
while (($#)); do
	case "$1" in
	--build-dir) build=$2; shift 2 ;;
	-h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "deploy/demo.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
	esac
done

"$root/deploy/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target stress_heap bench_heap >/dev/null

echo
echo "== lock-free buddy heap: 4 threads, 400000 steps, sizes 256 B .. 512 KiB in 4 MiB =="
"$build/tests/stress/stress_heap" --threads 4 --ops 400000
"$build/tests/stress/stress_heap" --threads 4 --ops 400000 --rdma-like
echo
echo "== benchmark: rmp_heap against glibc malloc, same run =="
"$build/tests/bench/bench_heap" --seconds 0.25
