#!/bin/bash
# setup-rxe.sh - Soft-RoCE (rdma_rxe) on a real host, for rmpool.
#
# Loads rdma_rxe (and rdma_ucm, which rdma_cm programs need), adds an rxe
# device on a network interface, and checks it with ibv_devinfo. Idempotent:
# an interface that already has an rxe device is left alone. For hosts whose
# kernel has rdma_rxe; machines without it use deploy/vm/rmpool-vm instead.
set -euo pipefail

prog=${0##*/}
DEV_PREFIX=rxe

usage() {
	cat <<USAGE
Usage: $prog [--name DEV] [IFACE]
       $prog --help

Set up Soft-RoCE for rmpool on this host (run as root):
  1. modprobe rdma_rxe and rdma_ucm (the kernel must have them: CONFIG_RDMA_RXE)
  2. rdma link add DEV type rxe netdev IFACE, unless IFACE already has an rxe
     device (then nothing is changed)
  3. check that ibv_devinfo shows DEV with its port ACTIVE

IFACE defaults to the interface of the default route. DEV defaults to rxe0
(or the next free rxeN). Needs iproute2's 'rdma' and ibverbs-utils'
'ibv_devinfo' (Debian: apt-get install iproute2 rdma-core ibverbs-utils).
Also remember 'ulimit -l unlimited' (or LimitMEMLOCK=infinity in systemd
units) for the processes that register memory.

Exit status: 0 done (or already set up), 1 failure, 2 usage.
USAGE
}

say() { printf '%s: %s\n' "$prog" "$*"; }
die() {
	printf '%s: error: %s\n' "$prog" "$*" >&2
	exit 1
}

name=
iface=
while (($#)); do
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	--name)
		(($# >= 2)) || { usage >&2; exit 2; }
		name=$2
		shift 2
		;;
	--name=*)
		name=${1#--name=}
		shift
		;;
	-*)
		printf '%s: unknown option %s\n' "$prog" "$1" >&2
		usage >&2
		exit 2
		;;
	*)
		[[ -z $iface ]] || { printf '%s: one interface only\n' "$prog" >&2; exit 2; }
		iface=$1
		shift
		;;
	esac
done

((EUID == 0)) || die "must run as root (modprobe and 'rdma link add' need it)"
for tool in modprobe rdma ip ibv_devinfo; do
	command -v "$tool" >/dev/null ||
		die "'$tool' not found (Debian: apt-get install kmod iproute2 rdma-core ibverbs-utils)"
done

if [[ -z $iface ]]; then
	iface=$(ip -o route show default 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit } }')
	[[ -n $iface ]] || die "no default route to take the interface from: give IFACE (see 'ip link')"
	say "interface $iface (from the default route)"
fi
[[ -e /sys/class/net/$iface ]] || die "no network interface '$iface' (see 'ip link')"
[[ $iface != lo ]] || die "rxe needs an Ethernet-like interface, not lo"

# 1. modules
for mod in rdma_rxe rdma_ucm; do
	if [[ -d /sys/module/$mod ]]; then
		say "module $mod already loaded"
	else
		modprobe "$mod" 2>/dev/null ||
			die "modprobe $mod failed: this kernel has no $mod (CONFIG_RDMA_RXE); use deploy/vm/rmpool-vm"
		say "loaded module $mod"
	fi
done
# rxe asks the crypto API for crc32; without a provider 'rdma link add' fails
# with ENOENT. Built in on most kernels; try the module, ignore if absent.
modprobe crc32_generic 2>/dev/null || true

# 2. the link
existing=$(rdma link show 2>/dev/null | awk -v ifc="$iface" '$0 ~ ("netdev " ifc "( |$)") { split($2, a, "/"); print a[1]; exit }')
if [[ -n $existing ]]; then
	dev=$existing
	say "interface $iface already has RDMA device $dev: nothing to add"
else
	if [[ -z $name ]]; then
		n=0
		while [[ -e /sys/class/infiniband/$DEV_PREFIX$n ]]; do n=$((n + 1)); done
		name=$DEV_PREFIX$n
	fi
	[[ ! -e /sys/class/infiniband/$name ]] || die "device $name exists on another interface; pick --name"
	out=$(rdma link add "$name" type rxe netdev "$iface" 2>&1) ||
		die "rdma link add $name type rxe netdev $iface: ${out:-failed} (is crc32 available? dmesg may say more)"
	dev=$name
	say "added RDMA device $dev on $iface"
fi

# 3. check
for _ in 1 2 3 4 5 6 7 8 9 10; do
	state=$(ibv_devinfo -d "$dev" 2>/dev/null | awk '$1 == "state:" { print $2; exit }')
	[[ $state == PORT_ACTIVE ]] && break
	sleep 0.5
done
ibv_devinfo -d "$dev" >/dev/null 2>&1 || die "ibv_devinfo does not see $dev (is rdma-core's rxe provider installed?)"
[[ ${state:-} == PORT_ACTIVE ]] ||
	die "$dev on $iface: port state is '${state:-unknown}', not PORT_ACTIVE (is $iface up? 'ip link set $iface up')"
addr=$(ip -o -4 addr show dev "$iface" | awk '{ print $4; exit }')
if [[ -n $addr ]]; then
	say "$dev on $iface is ACTIVE (IPv4 $addr: rmpool's rdma_cm endpoints bind there)"
else
	say "$dev on $iface is ACTIVE"
fi
[[ -n $addr ]] || say "warning: $iface has no IPv4 address; rdma_cm needs one"
