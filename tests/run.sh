#!/usr/bin/env bash
# The whole rmpool test suite, from a fresh machine:
#   installs what is missing (Debian packages; the guest kernel on first
#   use), builds into ./build with warnings as errors, runs the unit and
#   stress tests, then boots Soft-RoCE hosts (qemu guests, or the host's
#   own RDMA device where it has one) and runs the tests labelled `rdma`
#   in them, then boots 3 guests with systemd and sshd (rmpool-vm --init
#   systemd --ssh) for the deployment tests (label rdma-deploy). Fails
#   when any test fails, and when the RDMA or deployment tests did not
#   all run: they are never skipped.
#
#   tests/run.sh [--build-dir DIR] [--hosts N] [--no-rdma]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build"
hosts=3
rdma=1
while (($#)); do
	case "$1" in
	--build-dir) build=$2; shift 2 ;;
	--hosts) hosts=$2; shift 2 ;;
	--no-rdma) rdma=0; shift ;;
	-h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "tests/run.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
	esac
done
step() { printf '\n=== %s ===\n' "$*"; }

step "dependencies"
"$root/deploy/install-deps.sh"

step "build ($build)"
cmake -S "$root" -B "$build" -DRMPOOL_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)"

step "unit and stress tests"
ctest --test-dir "$build" -LE rdma --output-on-failure --no-tests=error --timeout 900

((rdma)) || { echo "tests/run.sh: RDMA tests not run (--no-rdma)"; exit 0; }

step "RDMA tests on Soft-RoCE ($hosts hosts)"
expected=$(ctest --test-dir "$build" -N -L rdma -LE deploy | sed -n 's/^Total Tests: *//p')
if [[ -z "$expected" || "$expected" -lt 1 ]]; then
	echo "tests/run.sh: FAILED: no test carries the label rdma" >&2
	exit 1
fi
log="$build/rdma-tests.log"
set +e
# --timeout bounds the whole run (boot, every test, power-off). Under TCG
# (no KVM) rdma_pool_data alone takes about 5 minutes and rdma_restart
# more; the harness's default of 20 minutes is less than the suite.
"$root/deploy/vm/rmpool-vm" run --hosts "$hosts" --timeout 3600 -- \
	ctest --test-dir "$build" -L rdma -LE deploy -V --no-tests=error 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
ran=$(sed -n 's/.*tests passed, [0-9]* tests failed out of \([0-9]*\).*/\1/p' "$log" | tail -n1)
if ((rc != 0)); then
	echo "tests/run.sh: FAILED: RDMA tests (exit $rc)" >&2
	exit 1
fi
if [[ "$ran" != "$expected" ]]; then
	echo "tests/run.sh: FAILED: expected $expected RDMA tests to run, ${ran:-none} ran" >&2
	exit 1
fi
echo "tests/run.sh: all $expected RDMA tests ran on Soft-RoCE and passed"

step "deployment tests (3 guests with systemd and sshd)"
dexpected=$(ctest --test-dir "$build" -N -L deploy | sed -n 's/^Total Tests: *//p')
if [[ -z "$dexpected" || "$dexpected" -lt 1 ]]; then
	echo "tests/run.sh: FAILED: no test carries the label rdma-deploy" >&2
	exit 1
fi
dlog="$build/deploy-tests.log"
set +e
"$root/deploy/vm/rmpool-vm" run --hosts 3 --init systemd --ssh --timeout 900 -- \
	ctest --test-dir "$build" -L deploy -V --no-tests=error 2>&1 | tee "$dlog"
rc=${PIPESTATUS[0]}
set -e
dran=$(sed -n 's/.*tests passed, [0-9]* tests failed out of \([0-9]*\).*/\1/p' "$dlog" | tail -n1)
if ((rc != 0)); then
	echo "tests/run.sh: FAILED: deployment tests (exit $rc)" >&2
	exit 1
fi
if [[ "$dran" != "$dexpected" ]]; then
	echo "tests/run.sh: FAILED: expected $dexpected deployment tests to run, ${dran:-none} ran" >&2
	exit 1
fi
echo "tests/run.sh: all $dexpected deployment tests ran in systemd guests and passed"
