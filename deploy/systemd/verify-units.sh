#!/bin/bash
# verify-units.sh - the generated rmpool units and example configs, checked
# as shipped.
#
# Usage: verify-units.sh BUILD_DEPLOY_DIR SERVER_BINARY AGENT_BINARY
#   BUILD_DEPLOY_DIR is the build tree's deploy/ (CMake's configure_file
#   output: systemd/*.service, *.conf.example).
#
# For each unit:
#   - `systemd-analyze verify`, on a copy whose ExecStart names the freshly
#     built binary (verify insists the executable exists, and the unit names
#     the installed path); any warning about the unit fails;
#   - the keys the daemons rely on (Type=notify, ExecReload, ordering after
#     rdma-hw.target, LimitMEMLOCK=infinity, the RDMA devices and address
#     families), none that would delete the server's /dev/shm objects
#     (DynamicUser, RemoveIPC, PrivateIPC) or hide /dev/infiniband
#     (PrivateDevices), and no path outside the install prefix's;
#   - `systemd-analyze security --offline=yes` exposure at most 3.0
#     (printed).
# For each example config: the daemon reads it as the unit would (--config),
# and the first thing it cannot do is open the secret file the config
# names - so every key parses, and the secret file is the one the unit's
# install notes create.
set -euo pipefail

usage="usage: verify-units.sh BUILD_DEPLOY_DIR SERVER_BINARY AGENT_BINARY"
dir=${1:?$usage}
server_bin=${2:?$usage}
agent_bin=${3:?$usage}
MAX_EXPOSURE=3.0

fail() {
	echo "verify-units: FAIL: $*" >&2
	exit 1
}
command -v systemd-analyze >/dev/null || fail "systemd-analyze not found (Debian: systemd)"
for b in "$server_bin" "$agent_bin"; do
	[[ -x $b ]] || fail "$b is not an executable (build it first)"
done
for f in systemd/rmpool-server.service systemd/rmpool-agent.service rmpool-server.conf.example \
	rmpool-agent.conf.example; do
	[[ -f $dir/$f ]] || fail "$dir/$f is missing (run cmake)"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

exec_path() { # UNIT -> the binary ExecStart names
	sed -n 's/^ExecStart=\([^ ]*\) .*/\1/p' "$dir/systemd/$1"
}
conf_path() { # UNIT -> the file --config names
	sed -n 's/^ExecStart=.* --config \([^ ]*\).*/\1/p' "$dir/systemd/$1"
}

check_unit() { # UNIT BUILT_BINARY
	local unit=$1 built=$2 installed out status=0 key exposure
	installed=$(exec_path "$unit")
	[[ $installed == /* ]] || fail "$unit: ExecStart names no absolute path"
	[[ $(basename "$installed") == $(basename "$built") ]] || fail "$unit: ExecStart runs $installed"
	sed "s|^ExecStart=$installed |ExecStart=$(readlink -f "$built") |" "$dir/systemd/$unit" >"$tmp/$unit"
	out=$(cd "$tmp" && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no "$tmp/$unit" 2>&1) || status=$?
	# Lines about other units (the host's own, in a container) are not ours.
	if ((status != 0)) || grep -qF "$unit" <<<"$out"; then
		printf '%s\n' "$out" >&2
		fail "$unit does not verify (status $status)"
	fi
	# shellcheck disable=SC2016 # $MAINPID is systemd's, literal here
	for key in Type=notify 'ExecReload=/bin/kill -HUP $MAINPID' LimitMEMLOCK=infinity \
		Restart=on-failure 'DeviceAllow=/dev/infiniband/rdma_cm rw' \
		'DeviceAllow=char-infiniband_verbs rw' \
		'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_IB' CapabilityBoundingSet=; do
		grep -qxF "$key" "$dir/systemd/$unit" || fail "$unit: no $key"
	done
	grep -qE '^After=.*\<rdma-hw\.target\>' "$dir/systemd/$unit" || fail "$unit: not after rdma-hw.target"
	for key in DynamicUser RemoveIPC PrivateIPC PrivateDevices EnvironmentFile=/etc/rmpool/secret.env; do
		! grep -q "^$key" "$dir/systemd/$unit" || fail "$unit: sets ${key%%=*}"
	done
	exposure=$(SYSTEMD_LOG_LEVEL=err systemd-analyze security --offline=yes "$tmp/$unit" 2>&1 |
		sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	[[ -n $exposure ]] || fail "$unit: systemd-analyze security printed no exposure"
	awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e <= m) }' ||
		fail "$unit: exposure $exposure, above $MAX_EXPOSURE"
	echo "verify-units: $unit OK (exposure $exposure)"
}

# DAEMON_ARGS... -> the daemon's output when run on an example config; it
# must fail at the secret file the config names, and nowhere before.
check_conf() { # NAME CONF_IN_UNIT COMMAND...
	local name=$1 want=$2 out status=0 secret
	shift 2
	secret=$(sed -n 's/^secret-file = //p' "$dir/$name")
	[[ $secret == "$(dirname "$want")/secret" ]] ||
		fail "$name: secret-file is '$secret', the units' install notes create $(dirname "$want")/secret"
	[[ ! -e $secret ]] || fail "$secret exists on this machine: cannot tell its refusal from a start"
	out=$(env -u RMPOOL_SECRET timeout 20 "$@" --config "$dir/$name" 2>&1) || status=$?
	((status != 0)) || fail "$name: the daemon started without its secret file"
	grep -qF "secret file \"$secret\": cannot open" <<<"$out" ||
		fail "$name: the daemon did not get as far as the secret file (status $status): $out"
	echo "verify-units: $name OK (read to its secret file $secret)"
}

check_unit rmpool-server.service "$server_bin"
check_unit rmpool-agent.service "$agent_bin"
check_conf rmpool-server.conf.example "$(conf_path rmpool-server.service)" "$server_bin" \
	--state-dir "$tmp/state" --http-port 0
check_conf rmpool-agent.conf.example "$(conf_path rmpool-agent.service)" "$agent_bin" --agent
# Both units read their config from the same directory as the secret.
[[ $(dirname "$(conf_path rmpool-server.service)") == $(dirname "$(conf_path rmpool-agent.service)") ]] ||
	fail "the units read their configs from different directories"
