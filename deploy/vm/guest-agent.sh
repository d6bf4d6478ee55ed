#!/bin/bash
# rmpool-vm exec agent: runs the jobs the host drops into a channel folder.
# It runs inside a guest's chroot (root = overlay of the host's root) or, in
# native mode, directly on the host.
#
# Why files on 9p and not virtio-serial: the run directory is already shared
# with every guest, a file protocol needs no extra device, no daemon on the
# host side and no framing, and exec/wait/kill from any number of host
# processes at once just work (each writes its own files). The cost is
# polling: every FAST seconds for a while after a request (tests send many
# in a row), every SLOW seconds when idle, because under TCG an idle guest
# that polls every 50 ms burns 15-20% of a host core.
#
# Protocol, in CH (= $RMPOOL_VM_DIR/gI/ch):
#   in/ID.job    a bash script written by the host (first line "#out=PATH":
#                where stdout+stderr go), renamed in atomically. The agent
#                runs it once, in its own process group; the host removes it.
#   run/ID.pid   pid (= process group) of the running job.
#   run/ID.rc    its exit status, written once it ends (128+N: signal N).
#   in/ID.kill   the host asks to signal job ID; content: the signal name.
#   in/poweroff  the host asks the agent to end its jobs and exit; the guest
#                then powers off.
# Every exec costs tens of ms of emulated CPU under TCG: the idle loop forks
# nothing (glob + read -t on a fifo), and a job is a forked subshell that
# sources the script and execs the command (no bash, setsid or mv to exec).
set -u
shopt -s nullglob
ch=$1
fast=${2:-0.02}
slow=${3:-0.25}
FAST_FOR_US=3000000 # stay fast for 3 s after the last request
last_request=${EPOCHREALTIME/[.,]/}
mkdir -p "$ch/in" "$ch/run" || exit 1

tick=$(mktemp -u "${TMPDIR:-/tmp}/rmpool-vm-tick.XXXXXX")
mkfifo "$tick" || exit 1
exec {tickfd}<>"$tick"
rm -f "$tick"

declare -A started=()

start_job() {
	local id=$1 job=$ch/in/$1.job hdr out
	started[$id]=1
	IFS= read -r hdr <"$job" || hdr=
	out=${hdr#\#out=}
	[[ $hdr == \#out=* && -n $out ]] || out=$ch/run/$id.out
	# set -m: the job gets its own process group (pgid = its pid), which
	# kill and timeouts signal as a whole. The wrapper's stderr (job
	# control chatter) goes nowhere; the job's goes to OUT.
	(
		set -m
		(
			exec {tickfd}>&-
			set +u
			shopt -u nullglob
			. "$job"
		) >"$out" 2>&1 </dev/null &
		echo $! >"$ch/run/$id.pid"
		wait $!
		echo $? >"$ch/run/$id.rc"
	) 2>/dev/null &
}

# Returns 1 while the job has no pid yet (the request is then kept).
# Sets signalled=1 when a live job got the signal.
signalled=0
signal_job() {
	local id=$1 sig=$2 pid
	[[ -e $ch/run/$id.rc ]] && return 0
	[[ -n ${started[$id]:-} ]] || return 0
	IFS= read -r pid <"$ch/run/$id.pid" 2>/dev/null || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	kill -s "$sig" -- "-$pid" 2>/dev/null && signalled=1
	return 0
}

# TERM every job, KILL the ones still there 2 s later.
end_all_jobs() {
	local f id sig
	for sig in TERM KILL; do
		signalled=0
		for f in "$ch"/run/*.pid; do
			id=${f##*/}
			signal_job "${id%.pid}" "$sig"
		done
		((signalled)) || return 0
		[[ $sig == KILL ]] || read -r -t 2 -u "$tickfd" _ || true
	done
}

while :; do
	for f in "$ch"/in/*; do
		name=${f##*/}
		case $name in
		*.job)
			id=${name%.job}
			[[ -n ${started[$id]:-} ]] || { start_job "$id"; last_request=${EPOCHREALTIME/[.,]/}; }
			;;
		*.kill)
			id=${name%.kill}
			IFS= read -r sig <"$f" || sig=TERM
			signal_job "$id" "${sig:-TERM}" && rm -f "$f"
			;;
		poweroff)
			end_all_jobs
			rm -f "$f"
			exit 0
			;;
		esac
	done
	poll=$slow
	((${EPOCHREALTIME/[.,]/} - last_request < FAST_FOR_US)) && poll=$fast
	read -r -t "$poll" -u "$tickfd" _ || true
done
