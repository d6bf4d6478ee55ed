#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# build-deb.sh - the Debian packages, built from debian/ and checked with
# lintian.
#
# Usage: deploy/build-deb.sh [OUT_DIR]        (default: ./build-deb)
#
# dpkg-buildpackage writes its results next to the source tree, so the
# tree (without .git and build directories) is copied to OUT_DIR/src and
# built there: the .deb, .changes and .buildinfo files land in OUT_DIR.
# The build runs the unit tests only (debian/rules). Then lintian checks
# the result and this script fails on any lintian error (warnings and
# notes are printed, with a summary). Needs the build dependencies of
# debian/control (deploy/install-deps.sh installs them). Uses at most 2
# jobs unless DEB_BUILD_OPTIONS says otherwise.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/build-deb}" && cd "${1:-$root/build-deb}" && pwd)

fail() {
	echo "build-deb: FAIL: $*" >&2
	exit 1
}
note() { echo "build-deb: $*"; }

for tool in dpkg-buildpackage dh help2man lintian; do
	command -v "$tool" >/dev/null || fail "$tool missing (run deploy/install-deps.sh)"
done

# The version is written in common/include/rmpool/version.h; the
# changelog's must be the same (native package: no Debian revision).
v() { sed -n "s/^#define RMPOOL_VERSION_$1 \([0-9]*\)$/\1/p" "$root/common/include/rmpool/version.h"; }
version="$(v MAJOR).$(v MINOR).$(v PATCH)"
deb_version=$(dpkg-parsechangelog -l "$root/debian/changelog" -S Version)
[[ $deb_version == "$version" ]] ||
	fail "debian/changelog says $deb_version, rmpool/version.h says $version: add a changelog entry (dch -v $version)"

rm -rf "$out/src" "$out"/*.deb "$out"/*.changes "$out"/*.buildinfo
mkdir -p "$out/src"
tar -C "$root" --exclude=./.git --exclude='./build*' --exclude=./debian/build -cf - . |
	tar -C "$out/src" -xf -
note "building rmpool $version in $out/src"
export DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS:-parallel=2}
(cd "$out/src" && dpkg-buildpackage -us -uc -b) >"$out/build.log" 2>&1 ||
	{ tail -n 60 "$out/build.log" >&2; fail "dpkg-buildpackage (whole log: $out/build.log)"; }
grep -E '^[0-9]+% tests passed' "$out/build.log" | sed 's/^/build-deb: unit tests: /' || true

changes=$(ls "$out"/rmpool_"${version}"_*.changes)
note "packages:"
for deb in "$out"/*.deb; do
	printf '  %-44s %8s  %s\n' "$(basename "$deb")" "$(du -k "$deb" | cut -f1)K" \
		"$(dpkg-deb -f "$deb" Description | head -n 1)"
done

# lintian: errors fail; the tags it prints are the summary's lines.
set +e
lintian --display-info --pedantic --fail-on error "$changes" >"$out/lintian.log" 2>&1
rc=$?
set -e
cat "$out/lintian.log"
summary=""
for t in E W I P; do
	summary+=" $t:$(grep -c "^$t: " "$out/lintian.log" || true)"
done
note "lintian (E error, W warning, I info, P pedantic):$summary"
((rc == 0)) || fail "lintian found errors (exit $rc)"
note "PASS"
