#!/usr/bin/env bash
# Install the Debian packages rmpool needs (build, tests, the Soft-RoCE
# qemu harness), only the missing ones. Run as root; safe to re-run.
# --bench: also the benchmarks' own (deploy/bench-packages.txt: fio),
# which neither the build nor the tests need.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lists=("$here/packages.txt" "$here/vm/packages.txt")
case ${1:-} in
'') ;;
--bench) lists+=("$here/bench-packages.txt") ;;
-h | --help) echo "usage: install-deps.sh [--bench]   (Debian packages to build and test rmpool; --bench: and to benchmark it)"; exit 0 ;;
*) echo "install-deps: unknown option '$1' (usage: install-deps.sh [--bench])" >&2; exit 2 ;;
esac

wanted=$(cat "${lists[@]}" | sed 's/#.*//' | tr -s ' \t' '\n' | grep -v '^$' | sort -u)
missing=()
for p in $wanted; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[[ "$status" == *"install ok installed"* ]] || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
	echo "install-deps: all $(wc -w <<<"$wanted") packages present"
	exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
	echo "install-deps: missing packages: ${missing[*]}" >&2
	echo "install-deps: run as root (or: sudo apt-get install ${missing[*]})" >&2
	exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || { echo "install-deps: apt-get update failed" >&2; exit 1; }
# No service starts on this machine while packages are installed: the
# guests' openssh-server (deploy/vm/packages.txt) must not start an sshd
# here. A policy-rc.d that refuses them, unless the machine has its own.
pol=/usr/sbin/policy-rc.d
made_pol=0
if [[ ! -e $pol ]]; then
	printf '#!/bin/sh\n# rmpool: no service starts while packages are installed\nexit 101\n' >"$pol" && chmod 0755 "$pol" && made_pol=1
fi
rc=0
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
((made_pol == 0)) || rm -f "$pol"
((rc == 0)) || { echo "install-deps: apt-get install ${missing[*]} failed" >&2; exit 1; }
echo "install-deps: done"
