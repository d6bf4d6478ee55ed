#!/bin/bash
# verify-units.sh - `systemd-analyze verify` on the rmpool units.
#
# Usage: verify-units.sh SERVER_BINARY AGENT_BINARY
# verify insists that ExecStart= names an existing executable, and the units
# point at the installed paths (/usr/local/sbin/rmpool-server,
# /usr/local/bin/rmpool-donor), which a build tree does not have. So each
# unit is copied to a temporary folder with only the ExecStart binary
# replaced by the freshly built one, and that copy is verified; the rest of
# the unit is checked as shipped. Any warning fails the test (verify prints
# warnings and may still exit 0).
set -euo pipefail

HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
server_bin=${1:?usage: verify-units.sh SERVER_BINARY AGENT_BINARY}
agent_bin=${2:?usage: verify-units.sh SERVER_BINARY AGENT_BINARY}

fail() {
	echo "verify-units: FAIL: $*" >&2
	exit 1
}
command -v systemd-analyze >/dev/null || fail "systemd-analyze not found (Debian: systemd)"
for b in "$server_bin" "$agent_bin"; do
	[[ -x $b ]] || fail "$b is not an executable (build it first)"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

copy_unit() { # UNIT INSTALLED_PATH BUILT_PATH
	local unit=$1 installed=$2 built=$3
	grep -q "^ExecStart=$installed " "$HERE/$unit" || fail "$unit: ExecStart is not $installed"
	sed "s|^ExecStart=$installed |ExecStart=$built |" "$HERE/$unit" >"$tmp/$unit"
}
copy_unit rmpool-server.service /usr/local/sbin/rmpool-server "$(readlink -f "$server_bin")"
copy_unit rmpool-agent.service /usr/local/bin/rmpool-donor "$(readlink -f "$agent_bin")"

status=0
for unit in rmpool-server.service rmpool-agent.service; do
	out=$(cd "$tmp" && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no "$tmp/$unit" 2>&1) || status=$?
	# Lines about other units (the host's own, in a container) are not ours.
	ours=$(grep -F "$unit" <<<"$out" || true)
	if ((status != 0)) || [[ -n $ours ]]; then
		printf '%s\n' "$out" >&2
		fail "$unit does not verify (status $status)"
	fi
	for key in LimitMEMLOCK=infinity Restart=on-failure EnvironmentFile=/etc/rmpool/secret.env; do
		grep -q "^$key\$" "$HERE/$unit" || fail "$unit: no $key"
	done
	echo "verify-units: $unit OK"
done
