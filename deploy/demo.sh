#!/usr/bin/env bash
# rmpool's main job, from a fresh Debian 12 machine (as root): installs
# what is missing, builds into ./build, and runs the demo.
#
# The demo starts the whole stack - a coordinator and a host agent per
# host - and a consumer, rmpool-demo, that limits its own address space
# (RLIMIT_AS 48M), creates a pool of 256M from donor processes limited to
# 64M each, allocates one block larger than any donor region and than its
# own limit, writes it, reads every byte back and verifies it, prints the
# figures and destroys the pool.
#
# Where this machine has an RDMA device (/sys/class/infiniband), all of it
# runs here, on that device's address. Otherwise three qemu guests with
# Soft-RoCE stand in for three hosts (deploy/vm/README.md; the first run
# fetches the Debian guest kernel, about 70 MB).
#
#   deploy/demo.sh [--build-dir DIR] [--heap]
#     --build-dir DIR  build here (default: ./build)
#     --heap           instead: the in-process lock-free buddy heap under
#                      4 threads, and its benchmark against glibc malloc
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
build="$root/build"
heap=0
while (($#)); do
	case "$1" in
	--build-dir)
		(($# >= 2)) || { echo "deploy/demo.sh: --build-dir needs a folder" >&2; exit 2; }
		build=$2; shift 2 ;;
	--heap) heap=1; shift ;;
	-h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "deploy/demo.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
	esac
done
mkdir -p "$build"
build=$(cd "$build" && pwd)

step() { echo "== $* =="; }

step "packages"
"$root/deploy/install-deps.sh"

step "build ($build)"
t0=$SECONDS
blog="$build/demo-build.log"
if [[ $heap == 1 ]]; then
	targets=(stress_heap bench_heap)
else
	targets=(rmpool-server rmpool-donor rmpool-demo)
fi
if ! { cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
	cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"; } >"$blog" 2>&1; then
	tail -n 40 "$blog" >&2
	echo "deploy/demo.sh: the build failed (whole log: $blog)" >&2
	exit 1
fi
echo "built ${targets[*]} in $((SECONDS - t0)) s"

if [[ $heap == 1 ]]; then
	echo
	step "lock-free buddy heap: 4 threads, 400000 steps, sizes 256 B .. 512 KiB in 4 MiB"
	"$build/tests/stress/stress_heap" --threads 4 --ops 400000
	"$build/tests/stress/stress_heap" --threads 4 --ops 400000 --rdma-like
	echo
	step "benchmark: rmp_heap against glibc malloc, same run"
	"$build/tests/bench/bench_heap" --seconds 0.25
	exit 0
fi

echo
vm="$root/deploy/vm/rmpool-vm"
# demo-stack.sh writes this file once it starts: a harness failure (status
# 125) before that is a failed boot, retried once (under heavy load a TCG
# guest can hang early in its boot); so is status 75 (a guest cut off from
# the others).
marker=$(mktemp /tmp/rmpool-demo.XXXXXX)
trap 'rm -f "$marker"' EXIT
export RMPOOL_DEMO_STARTED=$marker
if compgen -G '/sys/class/infiniband/*' >/dev/null; then
	step "the pool demo on this host's RDMA device ($(basename "$(compgen -G '/sys/class/infiniband/*' | head -n 1)"))"
	run_args=(--native --hosts 1 --timeout 1200)
else
	step "the pool demo on 3 Soft-RoCE hosts (qemu guests: this kernel has no RDMA)"
	run_args=(--hosts 3 --timeout 1500)
fi
for attempt in 1 2; do
	rc=0
	"$vm" run "${run_args[@]}" -- "$root/deploy/demo-stack.sh" "$build" || rc=$?
	if ((attempt == 1)) && { ((rc == 125)) && [[ ! -s $marker ]] || ((rc == 75)); }; then
		echo "deploy/demo.sh: the hosts did not come up or could not reach each other (status $rc); booting them once more"
		: >"$marker"
		continue
	fi
	break
done
if ((rc != 0)); then
	echo "deploy/demo.sh: the demo failed (status $rc)" >&2
	exit "$rc"
fi
