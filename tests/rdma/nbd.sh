#!/bin/bash
# rdma_nbd: the pool as a block device (issue 17): nbdkit with rmpool's
# plugin on guest 2 serves a 256M pool on 3 Soft-RoCE hosts, the kernel's
# NBD client makes it /dev/nbd0, and ext4 on it keeps a file tree across
# an unmount, a disconnect and a reconnect.
#
# Usage: nbd.sh PATH/TO/rmpool PATH/TO/rmpool-server PATH/TO/rmpool-donor PATH/TO/nbdkit-rmpool-plugin.so PATH/TO/swap_touch
# Run:   deploy/vm/rmpool-vm run --hosts 3 -- ctest --test-dir build -R rdma_nbd -V
#
# Scenario (coordinator on guest 1, an agent on every guest, a 256M pool
# whose donors lie on the 3 hosts; nbdkit, nbd-client and mkfs.ext4 are
# the host's, which the guests share):
#   - bad input first, each a clear error from nbdkit and nothing
#     created (the pool list and the pool's free bytes as before): an
#     unknown pool, a wrong secret, a size larger than the pool;
#   - nbdkit on guest 2 (127.0.0.1:PORT inside it), nbd-client with a
#     timeout makes /dev/nbd0; the disk reads as zeros before anything
#     is written (pool blocks are not zeroed: the plugin does it);
#     mkfs.ext4, mount, a tree of files of random bytes written and their
#     sha256 sums taken; the pool's allocated bytes show the disk is
#     pool memory (at least the bytes written);
#   - unmount, nbd-client -d, nbd-client again, mount: every sum checks;
#   - swap: nbdkit runs with mlock=true outside the limited cgroup; the
#     device is unmounted, mkswap'd and swapped on; swap_touch (128 MiB
#     of pages written, then checked and rewritten once) runs first with
#     enough memory (the baseline), then in a cgroup v2 whose memory.max
#     is 32 MiB: it completes with every page right, /proc/vmstat's
#     pswpout grows by at least the 96 MiB it could not keep, and the
#     guest's rxe counters show the packets sent; swapoff;
#   - trim: a 4 KiB blkdiscard frees nothing, one of the first 32 MiB gives
#     their chunks back to the pool (whole chunks, 1 to 32 MiB) and they
#     read as zeros again;
#   - a host's donors die: 1 MiB of random bytes written to every 6th
#     chunk of the raw device (40); nbdkit's debug log names each chunk's
#     donor, and the host whose donors hold the most (not all) of those
#     chunks loses them all
#     (SIGKILL); then every chunk is read back with O_DIRECT: the chunks
#     on the dead host fail with EIO, every other one is byte-exact (at
#     least one of each);
#   - disconnect, nbdkit stopped: its chunks go back (those on the dead
#     donors out of service), nothing allocated, the pool valid; nbdkit
#     ran with buffers=4 (of 32 by default), and its log counts pieces
#     moved both through those registered buffers and, when all 4 were
#     taken, through librmpool's bounce buffers: both ran.
# Never skips: no harness, no plugin, no nbdkit: fail.
set -euo pipefail

usage="usage: nbd.sh PATH/TO/rmpool PATH/TO/rmpool-server PATH/TO/rmpool-donor PATH/TO/nbdkit-rmpool-plugin.so PATH/TO/swap_touch"
CLI=${1:?$usage}
SERVER=${2:?$usage}
DONOR=${3:?$usage}
PLUGIN=${4:?$usage}
TOUCH=${5:?$usage}
VM=$(cd "$(dirname "$(readlink -f "$0")")/../../deploy/vm" && pwd)/rmpool-vm

BUDGET=128M
PROCESS_LIMIT=64M
POOL_SIZE=256M
DISK_SIZE=240M
PORT=7520
HTTP_PORT=7521
RDMA_PORT=7522
NBD_PORT=10809
FILES=24
FILE_KIB=512
SWAP_MIB=128
CG_MAX=32M
SWAP_PASSES=1
PAT_MIB=40
# Few registered slots (the default is 32), so that swap's parallel
# writes also take the path for a piece that finds none free.
NBD_SLOTS=4
PAT_STRIDE=6
POOL=nbd$$

T=rdma_nbd
source "$(dirname "$(readlink -f "$0")")/cluster-lib.sh"
cluster_need "$T" "$CLI" "$SERVER" "$DONOR" "$TOUCH"
[[ -f $PLUGIN ]] || fail "$PLUGIN is not built (nbdkit-plugin-dev missing? deploy/install-deps.sh installs it)"
for tool in nbdkit nbd-client mkfs.ext4 sha256sum mkswap swapon; do
	command -v "$tool" >/dev/null || fail "$tool is not installed (deploy/install-deps.sh installs it)"
done
export RMPOOL_COORDINATOR=$coord
export RMPOOL_WAIT=event # 1-vCPU guests: block, do not spin (DESIGN.md, Soft-RoCE)

cluster_scratch nbd export
SRV=nbd_srv_$$
agent_job() { echo "nbd_agent$1_$$"; }
KIT=nbd_kit_$$
MNT=/tmp/rmpool-nbd-$$
CG=/sys/fs/cgroup/rmpool-swap-$$

g2() { # SECONDS SCRIPT (sh -c on guest 2)
	"$VM" exec --timeout "$1" 2 -- sh -c "$2"
}

cleanup() {
	local rc=$?
	g2 60 "umount $MNT 2>/dev/null; swapoff /dev/nbd0 2>/dev/null; rmdir $CG 2>/dev/null
		nbd-client -d /dev/nbd0 >/dev/null 2>&1; true" || true
	"$VM" kill "$KIT" TERM 2>/dev/null || true
	"$VM" exec --timeout 120 2 -- "$CLI" --coordinator "$coord" --secret-file "$secret" \
		pool destroy "$POOL" >/dev/null 2>&1 || true
	for g in 1 2 3; do "$VM" kill "$(agent_job $g)" TERM 2>/dev/null || true; done
	"$VM" kill "$SRV" TERM 2>/dev/null || true
	kill_donors
	if ((rc != 0)); then
		echo "---- coordinator log (tail) ----" >&2
		tail -n 30 "$RMPOOL_VM_SCRATCH/$SRV.log" >&2 2>/dev/null || true
		echo "---- nbdkit (tail) ----" >&2
		tail -n 30 "$RMPOOL_VM_SCRATCH/$KIT.log" >&2 2>/dev/null || true
	fi
}
trap cleanup EXIT

check_pool() { # -> "valid free alloc usable" of `rmpool pool check --json`
	cli 2 "$work/check.json" pool check --json "$POOL" ||
		fail "pool check: $(cat "$work/check.json.err")"
	json "$work/check.json" 'j["valid"], j["free_bytes"], j["alloc_bytes"], j["usable"]' | tr -d '(),'
}

# ------------------------------------------------------------ the pool
start_coordinator
for g in 1 2 3; do
	stack_agent "$(agent_job $g)" "$g" "$BUDGET" "$PROCESS_LIMIT"
done
stack_wait_agents 3 60
cli 2 "$work/create.out" pool create "$POOL" "$POOL_SIZE" ||
	fail "pool create $POOL $POOL_SIZE: $(cat "$work/create.out.err")"
read -r valid free0 alloc0 usable < <(check_pool)
[[ $valid == True ]] && ((alloc0 == 0)) || fail "a fresh pool: valid $valid, $alloc0 bytes allocated"
pools() { # -> the pool names `rmpool status --json` lists, sorted
	cli 2 "$work/status.json" status --json || fail "status: $(cat "$work/status.json.err")"
	json "$work/status.json" '" ".join(sorted(p["name"] for p in j["pools"]))'
}
pools0=$(pools)
note "pool $POOL ($POOL_SIZE, $usable usable) on 3 hosts; the plugin: $PLUGIN"

# ------------------------------------------------------------ bad input: a clear error, nothing created
bad() { # WHAT WANT-IN-THE-ERROR ARGS... (nbdkit in the foreground on guest 2 must fail)
	local what=$1 want=$2 rc=0
	shift 2
	"$VM" exec --timeout 120 2 -- sh -c 'out=$1; shift; exec "$@" >"$out" 2>&1' sh "$work/bad.out" \
		nbdkit -f -i 127.0.0.1 -p "$NBD_PORT" "$PLUGIN" "$@" || rc=$?
	((rc != 0)) || fail "$what: nbdkit started (exit 0): $(cat "$work/bad.out")"
	grep -q -- "$want" "$work/bad.out" || fail "$what: nbdkit's error does not say '$want': $(cat "$work/bad.out")"
	note "$what: nbdkit exits $rc: $(grep -m1 'error' "$work/bad.out" || head -n1 "$work/bad.out")"
}
wrong=$work/wrong-secret
(umask 077 && head -c 24 /dev/urandom | base64 >"$wrong")
bad "an unknown pool" "no such pool" pool=nosuch$$ size=16M secret-file="$secret" coordinator="$coord"
bad "a wrong secret" "coordinator $coord" pool="$POOL" size=16M secret-file="$wrong" coordinator="$coord"
bad "a size larger than the pool" "larger than pool $POOL" pool="$POOL" size=1G secret-file="$secret" coordinator="$coord"
bad "no size" "required" pool="$POOL" secret-file="$secret" coordinator="$coord"
bad "too many buffers" "buffers=65" pool="$POOL" size=16M buffers=65 secret-file="$secret" coordinator="$coord"
pools1=$(pools)
[[ $pools1 == "$pools0" ]] || fail "the pools changed after the bad starts: '$pools0' -> '$pools1'"
read -r valid free alloc usable < <(check_pool)
[[ $valid == True ]] && ((alloc == 0 && free == free0)) ||
	fail "after the bad starts: valid $valid, $alloc bytes allocated, free $free (was $free0)"
note "after the bad starts: the pool list and the pool's $free free bytes as before"

# ------------------------------------------------------------ the disk
"$VM" exec --bg "$KIT" 2 -- nbdkit -f -v -i 127.0.0.1 -p "$NBD_PORT" "$PLUGIN" pool="$POOL" size="$DISK_SIZE" \
	secret-file="$secret" coordinator="$coord" mlock=true buffers=$NBD_SLOTS || fail "cannot start nbdkit"
up=
for _ in $(seq 1 120); do
	if g2 30 "nbd-client 127.0.0.1 $NBD_PORT /dev/nbd0 -timeout 30 -block-size 4096 >/dev/null 2>&1"; then
		up=1
		break
	fi
	sleep 0.5
done
[[ -n $up ]] || fail "nbd-client could not connect /dev/nbd0 to nbdkit within 60 s"
size=$(g2 30 "blockdev --getsize64 /dev/nbd0")
(($(to_bytes "$DISK_SIZE") == size)) || fail "/dev/nbd0 is $size bytes, want $DISK_SIZE"
# Never written: zeros (the plugin zeroes a chunk before its first write).
g2 60 "dd if=/dev/nbd0 bs=1M count=4 iflag=direct 2>/dev/null | od -An -tx1 | sort -u" >"$work/zeros"
[[ $(tr -d ' \n' <"$work/zeros") == 00* && $(wc -l <"$work/zeros") -le 2 ]] ||
	fail "a disk never written does not read as zeros: $(head -c 300 "$work/zeros")"
note "/dev/nbd0: $size bytes; its first 4 MiB, never written, read as zeros"

t0=$(date +%s%N)
g2 300 "mkfs.ext4 -q -F /dev/nbd0 && mkdir -p $MNT && mount -t ext4 /dev/nbd0 $MNT" ||
	fail "mkfs.ext4 or mount on /dev/nbd0 failed"
note "mkfs.ext4 and mount in $((($(date +%s%N) - t0) / 1000000)) ms"
t0=$(date +%s%N)
g2 300 "set -e; cd $MNT; mkdir -p a/b c
	i=0; while [ \$i -lt $FILES ]; do
		d=a; [ \$((i % 3)) -eq 1 ] && d=a/b; [ \$((i % 3)) -eq 2 ] && d=c
		head -c $((FILE_KIB * 1024)) /dev/urandom >\$d/f\$i; i=\$((i + 1))
	done
	find . -type f -name 'f*' | sort | xargs sha256sum >$work/sums
	sync" || fail "writing the file tree failed"
wrote_ms=$((($(date +%s%N) - t0) / 1000000))
n_sums=$(wc -l <"$work/sums")
((n_sums == FILES)) || fail "$n_sums sums, want $FILES"
read -r valid free alloc usable < <(check_pool)
((alloc >= FILES * FILE_KIB * 1024)) ||
	fail "the pool holds $alloc bytes allocated after $((FILES * FILE_KIB)) KiB written: the disk is not pool memory"
note "$FILES files, $((FILES * FILE_KIB)) KiB of random bytes in 3 folders, written and synced in $wrote_ms ms; the pool: $alloc bytes allocated (valid $valid)"

# ------------------------------------------------------------ unmount, disconnect, reconnect, verify
g2 120 "umount $MNT && nbd-client -d /dev/nbd0 >/dev/null" || fail "umount or nbd-client -d failed"
g2 60 "nbd-client 127.0.0.1 $NBD_PORT /dev/nbd0 -timeout 30 -block-size 4096 >/dev/null && mount -t ext4 /dev/nbd0 $MNT" ||
	fail "reconnect or mount again failed"
g2 300 "cd $MNT && sha256sum -c $work/sums" >"$work/check.out" 2>&1 ||
	fail "the file tree did not survive the reconnect: $(grep -v ': OK$' "$work/check.out" | head -5)"
ok=$(grep -c ': OK$' "$work/check.out")
((ok == FILES)) || fail "$ok of $FILES sums checked"
note "after umount, nbd-client -d and a reconnect: $ok of $FILES files' sha256 sums check"

# ------------------------------------------------------------ swap on the disk
g2 120 "umount $MNT" || fail "umount before the swap part failed"
t0=$(date +%s%N)
g2 600 "$TOUCH $SWAP_MIB $SWAP_PASSES" >"$work/touch0.out" 2>&1 ||
	fail "swap_touch with enough memory failed: $(cat "$work/touch0.out")"
base_ms=$((($(date +%s%N) - t0) / 1000000))
g2 60 "set -e; mkswap /dev/nbd0 >/dev/null; swapon /dev/nbd0
	grep -q cgroup2 /proc/mounts || mount -t cgroup2 none /sys/fs/cgroup
	grep -qw memory /sys/fs/cgroup/cgroup.subtree_control || echo +memory >/sys/fs/cgroup/cgroup.subtree_control
	mkdir -p $CG; echo $CG_MAX >$CG/memory.max" || fail "mkswap, swapon or the memory cgroup failed"
counters() { # -> "pswpout sent_pkts" on guest 2
	g2 30 "awk '\$1 == \"pswpout\" { print \$2 }' /proc/vmstat | tr '\n' ' '
		cat /sys/class/infiniband/*/ports/1/hw_counters/sent_pkts | awk '{ s += \$1 } END { print s }'"
}
read -r out0 pkts0 < <(counters)
t0=$(date +%s%N)
g2 900 "echo \$\$ >$CG/cgroup.procs && exec $TOUCH $SWAP_MIB $SWAP_PASSES" >"$work/touch1.out" 2>&1 ||
	fail "swap_touch in a $CG_MAX cgroup with swap on /dev/nbd0 failed: $(cat "$work/touch1.out")"
swap_ms=$((($(date +%s%N) - t0) / 1000000))
read -r out1 pkts1 < <(counters)
peak=$(g2 30 "cat $CG/memory.peak 2>/dev/null || echo ?")
want_pages=$(((SWAP_MIB - $(to_bytes $CG_MAX) / 1048576) * 256))
(((out1 - out0) >= want_pages)) ||
	fail "pswpout grew by $((out1 - out0)) pages, want at least $want_pages (the $SWAP_MIB MiB set less the cgroup's $CG_MAX)"
((pkts1 > pkts0)) || fail "guest 2's rxe counters show no packet sent during the swap run"
g2 120 "swapoff /dev/nbd0 && rmdir $CG" || fail "swapoff or the cgroup's removal failed"
note "swap: $(cat "$work/touch1.out") in a $CG_MAX cgroup (memory.peak $peak): $((out1 - out0)) pages swapped out (want >= $want_pages), rxe sent $((pkts1 - pkts0)) packets; $swap_ms ms against $base_ms ms with enough memory ($(cat "$work/touch0.out"))"

# ------------------------------------------------------------ trim: chunks back to the pool
# The kernel passes discards on (the plugin says it can trim). A partial
# one frees nothing (trim is advisory); the whole disk's frees every chunk.
dmax=$(g2 30 "cat /sys/block/nbd0/queue/discard_max_bytes")
((dmax > 0)) || fail "/dev/nbd0 takes no discards (discard_max_bytes $dmax): the plugin's can_trim did not reach the kernel"
read -r _ _ alloc0 _ < <(check_pool)
((alloc0 > 0)) || fail "before trim: the pool has nothing allocated, want the swap's chunks"
g2 60 "blkdiscard -o 1048576 -l 4096 /dev/nbd0" || fail "blkdiscard of 4 KiB failed"
read -r _ _ alloc1 _ < <(check_pool)
((alloc1 == alloc0)) || fail "a 4 KiB discard changed the pool's allocated bytes: $alloc0 -> $alloc1 (a partial trim must free nothing)"
# The first 32 chunks only: the rest stay where ext4 and swap put them,
# on every host (the lost-donor part below needs chunks spread over the
# hosts; a whole-disk trim made its 40 new chunks land on one).
g2 120 "blkdiscard -o 0 -l $((32 << 20)) /dev/nbd0" || fail "blkdiscard of the first 32 MiB failed"
read -r valid _ alloc2 _ < <(check_pool)
freed=$((alloc0 - alloc2))
[[ $valid == True ]] && ((freed > 0 && freed <= 32 << 20 && freed % (1 << 20) == 0)) ||
	fail "after discarding the first 32 MiB: valid $valid, $freed bytes freed (want whole chunks, 1..32 MiB)"
g2 60 "dd if=/dev/nbd0 bs=1M count=32 iflag=direct 2>/dev/null | od -An -tx1 | sort -u" >"$work/zeros2"
[[ $(tr -d ' \n' <"$work/zeros2") == 00* && $(wc -l <"$work/zeros2") -le 2 ]] ||
	fail "after trim the first 32 MiB do not read as zeros: $(head -c 300 "$work/zeros2")"
note "trim: a 4 KiB discard freed nothing ($alloc0 bytes allocated before and after); discarding the first 32 MiB gave back $((freed >> 20)) whole chunks (valid), and they read as zeros again"

# ------------------------------------------------------------ a host's donors die: EIO, never wrong data
# 1 MiB at every PAT_STRIDE-th chunk of the disk: chunks allocated at
# different times (the file system's, the swap's), so on several donors.
head -c $((PAT_MIB << 20)) /dev/urandom >"$work/pattern"
g2 300 "i=0; while [ \$i -lt $PAT_MIB ]; do
		dd if=$work/pattern of=/dev/nbd0 bs=1M count=1 skip=\$i seek=\$((i * $PAT_STRIDE)) oflag=direct conv=fsync,notrunc 2>/dev/null || exit 1
		i=\$((i + 1))
	done" || fail "writing $PAT_MIB MiB to /dev/nbd0 failed"
cli 2 "$work/info.json" pool info --json "$POOL" || fail "pool info: $(cat "$work/info.json.err")"
# The last allocation of each chunk 0..PAT_MIB-1 in nbdkit's log -> its
# donor -> the donor's host; the host holding most of them loses its donors.
read -r victim_host on_victim < <(python3 - "$RMPOOL_VM_SCRATCH/$KIT.log" "$work/info.json" "$PAT_MIB" "$PAT_STRIDE" <<'PY'
import json, re, sys
log, info, n, stride = sys.argv[1], json.load(open(sys.argv[2])), int(sys.argv[3]), int(sys.argv[4])
host = {d["id"]: d["host"] for d in info["donors"]}
donor = {}
for line in open(log, errors="replace"):
    m = re.search(r"chunk (\d+) \(disk bytes \d+\.\.\): pool offset \S+, donor (\d+)", line)
    if m:
        donor[int(m.group(1))] = int(m.group(2))
count = {}
for i in range(n):
    h = host.get(donor.get(i * stride))
    if h:
        count[h] = count.get(h, 0) + 1
# The host with the most of them, but not all: both kinds are wanted.
cands = [h for h in count if count[h] < n] or list(count)
h = max(cands, key=count.get) if cands else "none"
print(h, ",".join(str(i) for i in range(n) if host.get(donor.get(i * stride)) == h) or "-")
PY
)
[[ $victim_host != none && $on_victim != - ]] || fail "nbdkit's log names no donor for the chunks written"
vg=0
for i in 0 1 2; do [[ ${hosts[$i]} == "$victim_host" ]] && vg=$((i + 1)); done
((vg > 0)) || fail "the chunks' host $victim_host is not a guest of this run"
pids=$(donor_pids "$vg" | xargs)
[[ -n $pids ]] || fail "no donor process on guest $vg ($victim_host)"
"$VM" exec --timeout 30 "$vg" -- sh -c "kill -KILL $pids" || fail "cannot SIGKILL the donors on guest $vg"
note "guest $vg's donors (pids $pids) SIGKILLed: they held pattern pieces $on_victim of the $PAT_MIB written (1 MiB at every ${PAT_STRIDE}th chunk)"
sleep 2 # the loss pushed to the consumer (nbdkit) within 1 s (rdma_donor_death)
g2 600 "i=0; while [ \$i -lt $PAT_MIB ]; do
		if dd if=/dev/nbd0 of=/tmp/nbd-chunk-$$ bs=1M count=1 skip=\$((i * $PAT_STRIDE)) iflag=direct 2>/dev/null; then
			if dd if=$work/pattern bs=1M count=1 skip=\$i 2>/dev/null | cmp -s - /tmp/nbd-chunk-$$; then
				echo \"\$i ok\"; else echo \"\$i wrong\"; fi
		else echo \"\$i eio\"; fi
		i=\$((i + 1))
	done; rm -f /tmp/nbd-chunk-$$" >"$work/readback" || fail "reading the chunks back failed to run"
n_ok=$(grep -c ' ok$' "$work/readback" || true)
n_eio=$(grep -c ' eio$' "$work/readback" || true)
n_wrong=$(grep -c ' wrong$' "$work/readback" || true)
((n_wrong == 0)) || fail "$n_wrong chunks read back wrong bytes after the donors' death: $(grep ' wrong$' "$work/readback" | xargs)"
eio_list=$(awk '$2 == "eio" { print $1 }' "$work/readback" | paste -sd, -)
[[ $eio_list == "$on_victim" ]] ||
	fail "the chunks that failed ($eio_list) are not those on the dead host ($on_victim)"
((n_ok > 0 && n_eio > 0)) || fail "want both byte-exact and failing chunks: $n_ok ok, $n_eio EIO"
note "after the donors' death: $n_eio chunks EIO (exactly those on guest $vg), $n_ok byte-exact, 0 wrong"

# ------------------------------------------------------------ the end: the chunks go back
g2 120 "nbd-client -d /dev/nbd0 >/dev/null" || fail "the last disconnect failed"
"$VM" kill "$KIT" TERM || true
rc=0
"$VM" wait --timeout 60 "$KIT" || rc=$?
read -r valid free alloc usable < <(check_pool)
[[ $valid == True ]] && ((alloc == 0)) ||
	fail "after nbdkit exited (status $rc): valid $valid, $alloc bytes still allocated, free $free of $usable"
note "nbdkit stopped (status $rc): its chunks are back (those on the dead donors out of service), $free of $usable bytes free, 0 allocated, valid"
# Both ways of moving a piece ran: the registered slots, and librmpool's
# bounce buffers when all NBD_SLOTS were taken (swap's parallel writes).
read -r via_slot via_bounce < <(sed -n 's/.*pieces moved: \([0-9]*\) through registered buffers, \([0-9]*\) through.*/\1 \2/p' \
	"$RMPOOL_VM_SCRATCH/$KIT.log" | tail -n1)
[[ -n ${via_slot:-} ]] || fail "nbdkit's log has no count of the pieces moved"
((via_slot > 0 && via_bounce > 0)) ||
	fail "want pieces through both the $NBD_SLOTS registered buffers and the bounce buffers: $via_slot and $via_bounce"
note "pieces moved: $via_slot through the $NBD_SLOTS registered buffers, $via_bounce through librmpool's bounce buffers (all slots taken)"
note "PASS"
