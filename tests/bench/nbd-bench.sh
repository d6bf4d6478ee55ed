#!/bin/bash
# nbd-bench: rmpool-nbd (the nbdkit plugin) under fio, against nbdkit's
# own plugins and rmpool's own reads, in one run on two Soft-RoCE guests.
# Not in CI (target bench-nbd; fio is installed for it by
# deploy/install-deps.sh --bench).
#
# Host 1: rmpool-server and one agent (every donor is on host 1). Host 2:
# the consumer side, where everything below runs:
#   rmpool          nbdkit rmpool, a DISK-sized disk on a POOL-sized pool
#                   (the plugin's default buffers=32: registered slots)
#   rmpool-bounce   the same with buffers=0 (librmpool's bounce buffers)
#   memory          nbdkit memory: the disk in host 2's own RAM (the
#                   local-RAM ceiling: no network at all)
#   file            nbdkit file on a file in the harness's scratch folder:
#                   a 9p shared folder of the host machine, not a disk (a
#                   floor of sorts; say so wherever it is quoted)
# each through fio's nbd engine (libnbd, on a Unix socket) and through the
# kernel's client (/dev/nbdN, libaio with O_DIRECT), except rmpool-bounce
# (libnbd only). The jobs, each JOB_S seconds, on a disk written in full
# first (so that every read of rmpool's crosses the network; a chunk
# never written would read as zeros without it):
#   randread / randwrite of 4 KiB at queue depth 1 and 16, and read /
#   write of 1 MiB sequentially at queue depth 1.
# And `rmpool bench` on the same pool from host 2: 4 KiB rmp_read
# latency, 1 MiB rmp_read bandwidth (one at a time).
# Targets (issue 17): 4 KiB QD1 read latency <= 1.5x the 4 KiB rmp_read;
# 1 MiB sequential read >= 0.8x rmp_read's bandwidth.
#
# Usage: nbd-bench.sh RMPOOL RMPOOL-SERVER RMPOOL-DONOR PLUGIN.so [--rounds N] [--job-s S] [--out DIR]
# under deploy/vm/rmpool-vm run --hosts 2.
set -euo pipefail

usage="usage: nbd-bench.sh rmpool rmpool-server rmpool-donor nbdkit-rmpool-plugin.so [--rounds N] [--job-s S] [--out DIR]"
CLI=${1:?$usage}
SERVER=${2:?$usage}
DONOR=${3:?$usage}
PLUGIN=${4:?$usage}
shift 4
ROUNDS=1
JOB_S=8
OUT=
while (($#)); do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--job-s) JOB_S=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	-h | --help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "nbd-bench: unknown option '$1' ($usage)" >&2; exit 2 ;;
	esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $JOB_S =~ ^[1-9][0-9]*$ ]] || { echo "nbd-bench: --rounds and --job-s want N >= 1" >&2; exit 2; }
HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
VM=$HERE/../../deploy/vm/rmpool-vm
fail() {
	echo "nbd-bench: FAIL: $*" >&2
	exit 1
}
note() { echo "nbd-bench: $*" >&2; }
[[ -n ${RMPOOL_VM_DIR:-} ]] || fail "run under deploy/vm/rmpool-vm run --hosts 2"
read -r -a hosts <<<"${RMPOOL_VM_HOSTS:-}"
((${#hosts[@]} >= 2)) || fail "needs 2 hosts"
for tool in fio nbdkit nbd-client; do
	command -v "$tool" >/dev/null || fail "$tool is missing (deploy/install-deps.sh --bench)"
done
fio --enghelp 2>/dev/null | grep -qw nbd || fail "this fio has no nbd (libnbd) engine"
ip1=${hosts[0]}
coord=$ip1:7430
work=$RMPOOL_VM_SCRATCH/nbd_bench_$$
mkdir -p "$work"
(umask 077 && head -c 24 /dev/urandom | base64 >"$work/secret")
secret=$work/secret
SRV=nb_srv_$$ AG=nb_agent_$$ POOL=nbench$$
POOL_SIZE=128M
DISK=48M # two rmpool disks (96 MiB) and rmpool bench's blocks fit the pool
TARGETS="rmpool rmpool-bounce memory file"
declare -A PORT=([rmpool]=10811 [rmpool-bounce]=10812 [memory]=10813 [file]=10814)
declare -A DEV=([rmpool]=/dev/nbd0 [memory]=/dev/nbd1 [file]=/dev/nbd2)
g2() { "$VM" exec --timeout "$1" 2 -- sh -c "$2"; }
cleanup() {
	local t
	for t in rmpool memory file; do g2 30 "nbd-client -d ${DEV[$t]} >/dev/null 2>&1" || true; done
	for t in $TARGETS; do "$VM" kill "nb_kit_${t}_$$" TERM 2>/dev/null || true; done
	sleep 1
	"$VM" exec --timeout 60 2 -- "$CLI" --coordinator "$coord" --secret-file "$secret" pool destroy "$POOL" >/dev/null 2>&1 || true
	"$VM" kill "$AG" TERM 2>/dev/null || true
	"$VM" kill "$SRV" TERM 2>/dev/null || true
	[[ -z $OUT ]] || { mkdir -p "$OUT" && cp -r "$work"/. "$OUT"/ 2>/dev/null; } || true
}
trap cleanup EXIT
t0=$SECONDS

# 1. The pool on host 1.
"$VM" exec --bg "$SRV" 1 -- "$SERVER" --listen "$coord" --http-port 0 --rdma-addr "$ip1" --rdma-port 7432 \
	--state-dir "/tmp/rmpool-state.$SRV" --secret-file "$secret" || fail "cannot start rmpool-server"
for _ in $(seq 1 120); do
	grep -q 'INFO: ready' "$RMPOOL_VM_SCRATCH/$SRV.log" 2>/dev/null && break
	sleep 0.5
done
"$VM" exec --bg "$AG" 1 -- "$DONOR" --agent --coordinator "$coord" --secret-file "$secret" --budget 256M \
	--process-limit 64M --rdma-addr "$ip1" --host "$ip1" || fail "cannot start the agent"
ok=0
for _ in $(seq 1 60); do
	if "$VM" exec --timeout 120 2 -- "$CLI" --coordinator "$coord" --secret-file "$secret" pool create "$POOL" \
		"$POOL_SIZE" >"$work/create.out" 2>&1; then
		ok=1
		break
	fi
	sleep 1 # the agent may not have registered yet
done
((ok)) || fail "pool create failed: $(cat "$work/create.out")"

# 2. The four servers on host 2, each on a TCP port of loopback: the
# kernel's client and fio's libnbd engine connect to the same server (a
# Unix socket would need a second nbdkit, and so a second disk).
start_kit() { # TARGET ARGS...
	local t=$1
	shift
	# Not -v: nbdkit's debug lines per request, into the harness's
	# shared folder, would cost more than a request itself.
	"$VM" exec --bg "nb_kit_${t}_$$" 2 -- nbdkit -f -t 16 -i 127.0.0.1 -p "${PORT[$t]}" "$@" ||
		fail "cannot start nbdkit for $t"
}
start_kit rmpool "$PLUGIN" pool="$POOL" size="$DISK" secret-file="$secret" coordinator="$coord" mlock=true
start_kit rmpool-bounce "$PLUGIN" pool="$POOL" size="$DISK" secret-file="$secret" coordinator="$coord" mlock=true buffers=0
start_kit memory memory "$DISK"
g2 60 "rm -f $work/file.img && truncate -s $DISK $work/file.img" || fail "cannot make the file plugin's file"
start_kit file file "$work/file.img"
for t in $TARGETS; do
	up=
	for _ in $(seq 1 120); do
		if g2 30 "nbdinfo --size nbd://127.0.0.1:${PORT[$t]} >/dev/null 2>&1"; then up=1; break; fi
		sleep 0.5
	done
	[[ -n $up ]] || fail "nbdkit for $t does not answer: $(tail -n 5 "$RMPOOL_VM_SCRATCH/nb_kit_${t}_$$.log")"
done
for t in rmpool memory file; do
	g2 60 "nbd-client 127.0.0.1 ${PORT[$t]} ${DEV[$t]} -timeout 30 -block-size 4096 >/dev/null" ||
		fail "nbd-client ${DEV[$t]} for $t failed"
done
note "servers up ($((SECONDS - t0)) s): $TARGETS; /dev/nbd0..2 for rmpool, memory, file"

# 3. fio. Every disk is written in full first (rmpool's thin chunks).
JOBS="seqwrite1m seqread1m randread4k_qd1 randwrite4k_qd1 randread4k_qd16 randwrite4k_qd16"
jobargs() { # JOB -> fio's options
	case $1 in
	seqwrite1m) echo "--rw=write --bs=1M --iodepth=1" ;;
	seqread1m) echo "--rw=read --bs=1M --iodepth=1" ;;
	randread4k_qd1) echo "--rw=randread --bs=4k --iodepth=1" ;;
	randwrite4k_qd1) echo "--rw=randwrite --bs=4k --iodepth=1" ;;
	randread4k_qd16) echo "--rw=randread --bs=4k --iodepth=16" ;;
	randwrite4k_qd16) echo "--rw=randwrite --bs=4k --iodepth=16" ;;
	esac
}
runfio() { # TARGET PATH JOB ROUND
	local t=$1 path=$2 job=$3 r=$4 io
	if [[ $path == libnbd ]]; then
		io="--ioengine=nbd --uri=nbd://127.0.0.1:${PORT[$t]}"
	else
		io="--ioengine=libaio --direct=1 --filename=${DEV[$t]}"
	fi
	g2 $((JOB_S * 3 + 120)) "fio --name=$job $io $(jobargs "$job") --size=$DISK --time_based --runtime=$JOB_S \
		--ramp_time=1 --lat_percentiles=1 --output-format=json --output=$work/fio.$t.$path.$job.$r.json >/dev/null 2>$work/fio.err" ||
		fail "fio $job on $t ($path) failed: $(cat "$work/fio.err")"
}
for t in rmpool rmpool-bounce memory file; do
	g2 300 "fio --name=fill --ioengine=nbd --uri=nbd://127.0.0.1:${PORT[$t]} --rw=write --bs=1M --size=$DISK \
		--output=/dev/null >/dev/null 2>$work/fio.err" || fail "filling $t failed: $(cat "$work/fio.err")"
done
for ((r = 1; r <= ROUNDS; r++)); do
	for job in $JOBS; do
		for t in $TARGETS; do
			runfio "$t" libnbd "$job" "$r"
			[[ $t == rmpool-bounce ]] || runfio "$t" dev "$job" "$r"
		done
	done
	"$VM" exec --timeout 600 2 -- "$CLI" --coordinator "$coord" --secret-file "$secret" bench "$POOL" \
		--lat-iters 1000 >"$work/bench.$r.txt" || fail "rmpool bench failed: $(cat "$work/bench.$r.txt")"
	note "round $r/$ROUNDS done, $((SECONDS - t0)) s"
done

# 4. The table: medians over the rounds.
python3 - "$work" "$ROUNDS" "$TARGETS" "$JOBS" <<'PY'
import json, statistics, sys
work, rounds, targets, jobs = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()
def fio(t, path, job, r):
    try:
        j = json.load(open(f"{work}/fio.{t}.{path}.{job}.{r}.json"))["jobs"][0]
    except (OSError, ValueError, KeyError, IndexError):
        return None
    side = j["read"] if j["read"]["io_bytes"] else j["write"]
    return {"lat_us": side["lat_ns"]["mean"] / 1000,
            "p50_us": side["lat_ns"].get("percentile", {}).get("50.000000", 0) / 1000,
            "iops": side["iops"], "MBps": side["bw_bytes"] / 1e6}
def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None
def bench(key):
    vals = []
    for r in range(1, rounds + 1):
        for line in open(f"{work}/bench.{r}.txt"):
            k, _, v = line.strip().partition("=")
            if k == key:
                vals.append(float(v))
    return med(vals)
rd4k = bench("read4k_lat.median_us")
wr4k = bench("write4k_lat.median_us")
rbw = bench("read_bw.MBps")
wbw = bench("write_bw.MBps")
print()
import os
print(f"completion waits: RMPOOL_WAIT={os.environ.get('RMPOOL_WAIT', 'adaptive (unset)')} (nbdkit's librmpool and rmpool bench alike)")
print(f"rmpool bench (host 2 -> host 1), medians of {rounds} round(s): 4 KiB rmp_read {rd4k:.1f} us, rmp_write {wr4k:.1f} us; "
      f"1 MiB rmp_read {rbw:.1f} MB/s, rmp_write {wbw:.1f} MB/s (one at a time)")
print("fio, medians over the rounds; latency = total (submission + completion): mean, and median in brackets;")
print("'memory' is host 2's own RAM (the ceiling), 'file' a 9p shared folder of the machine, not a disk")
hdr = f"{'job':18} {'target':14} {'path':7} {'lat us':>9} {'[p50]':>8} {'IOPS':>9} {'MB/s':>8}"
print(hdr)
res = {}
for job in jobs:
    for t in targets:
        for path in ("libnbd", "dev"):
            if t == "rmpool-bounce" and path == "dev":
                continue
            rs = [fio(t, path, job, r) for r in range(1, rounds + 1)]
            rs = [x for x in rs if x]
            if not rs:
                continue
            m = {k: med([x[k] for x in rs]) for k in rs[0]}
            res[(job, t, path)] = m
            print(f"{job:18} {t:14} {path:7} {m['lat_us']:9.1f} {m['p50_us']:8.1f} {m['iops']:9.0f} {m['MBps']:8.1f}")
print()
print("targets (issue 17):")
for path in ("libnbd", "dev"):
    m = res.get(("randread4k_qd1", "rmpool", path))
    if m and rd4k:
        ratio = m["p50_us"] / rd4k
        print(f"  4 KiB QD1 randread ({path}): median {m['p50_us']:.1f} us = {ratio:.2f}x the 4 KiB rmp_read's median "
              f"({rd4k:.1f} us; means: {m['lat_us']:.1f} us); target <= 1.5x: {'met' if ratio <= 1.5 else 'MISSED'}")
    m = res.get(("seqread1m", "rmpool", path))
    if m and rbw:
        ratio = m["MBps"] / rbw
        print(f"  1 MiB sequential read ({path}): {m['MBps']:.1f} MB/s = {ratio:.2f}x rmp_read's {rbw:.1f} MB/s; "
              f"target >= 0.8x: {'met' if ratio >= 0.8 else 'MISSED'}")
for job in ("randread4k_qd1", "randread4k_qd16", "seqread1m", "seqwrite1m"):
    a, b = res.get((job, "rmpool", "libnbd")), res.get((job, "rmpool-bounce", "libnbd"))
    if a and b:
        print(f"  registered slots vs bounce buffers, {job} (libnbd): {a['lat_us']:.1f} / {b['lat_us']:.1f} us, "
              f"{a['MBps']:.1f} / {b['MBps']:.1f} MB/s")
for job in ("randread4k_qd1", "seqread1m"):
    a, b = res.get((job, "rmpool", "libnbd")), res.get((job, "memory", "libnbd"))
    if a and b:
        print(f"  rmpool vs nbdkit memory, {job} (libnbd): {a['p50_us'] / b['p50_us']:.2f}x the median latency, "
              f"{a['MBps'] / b['MBps']:.2f}x the bandwidth")
PY
note "done in $((SECONDS - t0)) s"
