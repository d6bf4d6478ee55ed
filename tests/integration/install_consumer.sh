#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# install_consumer.sh - rmpool as an outside project sees it.
#
# Usage: install_consumer.sh BUILD_DIR SOURCE_DIR CC CMAKE
#
# Installs the build into a temporary prefix (cmake --install --prefix),
# then:
#   1. the headers, rmpool.pc and the CMake package are there;
#   2. librmpool.so exports exactly the functions rmpool.h (RMP_API) and
#      rmpool/heap.h declare, each under the symbol version RMPOOL_1.0
#      (client/librmpool.map), and nothing else;
#   3. librmpool.a links on its own: what it leaves undefined is found in
#      the libraries rmpool.pc names (printed per library);
#   4. tests/integration/consumer/consumer.c is built four ways,
#      pkg-config and CMake (find_package(rmpool)), each linked against
#      the shared and the static library, and each one runs (the static
#      ones must not need librmpool.so).
# No RDMA device and no coordinator needed.
set -euo pipefail

build=${1:?usage: install_consumer.sh BUILD_DIR SOURCE_DIR CC CMAKE}
src=${2:?}
cc=${3:?}
cmake=${4:?}
consumer=$src/tests/integration/consumer

fail() {
	echo "install_consumer: FAIL: $*" >&2
	exit 1
}
note() { echo "install_consumer: $*"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Lines of sorted list $1 that are not in sorted list $2 (comm -23),
# through files: no process substitution, since /dev/fd is missing in the
# CI's 1-vCPU guest.
only_in() {
	printf '%s\n' "$1" >"$tmp/only_a"
	printf '%s\n' "$2" >"$tmp/only_b"
	comm -23 "$tmp/only_a" "$tmp/only_b"
}
prefix=$tmp/prefix

"$cmake" --install "$build" --prefix "$prefix" >"$tmp/install.log" ||
	{ cat "$tmp/install.log" >&2; fail "cmake --install"; }
# Nothing outside the prefix: an install into a scratch prefix that
# writes elsewhere (an absolute DESTINATION) changes the machine.
outside=$(sed -n 's/^-- \(Installing\|Up-to-date\): //p' "$tmp/install.log" | grep -v "^$prefix/" || true)
[[ -z $outside ]] || fail "cmake --install --prefix $prefix wrote outside it: $(echo "$outside" | tr '\n' ' ')"

# 1. what an outside project needs
libdir=$(dirname "$(find "$prefix" -name rmpool.pc -path '*/pkgconfig/*' | head -n 1)")
libdir=${libdir%/pkgconfig}
[[ -d $libdir ]] || fail "no rmpool.pc installed"
for f in include/rmpool.h include/rmpool/heap.h include/rmpool/version.h; do
	[[ -f $prefix/$f ]] || fail "$f not installed"
done
for f in librmpool.a librmpool.so librmpool.so.1 cmake/rmpool/rmpoolConfig.cmake \
	cmake/rmpool/rmpoolConfigVersion.cmake; do
	[[ -e $libdir/$f ]] || fail "${libdir#"$prefix"/}/$f not installed"
done
note "installed: $(cd "$prefix" && find . -type f -o -type l | sed 's|^\./||' | sort | tr '\n' ' ')"

# 2. the exported symbols are the declared API, versioned
declared=$( (sed -n 's/^RMP_API .*[ *]\(rmp_[a-z0-9_]*\)(.*/\1/p' "$prefix/include/rmpool.h"
	sed -n 's/^[a-z].*[ *]\(rmp_heap_[a-z0-9_]*\)(.*/\1/p' "$prefix/include/rmpool/heap.h") | sort)
exported=$(nm -D --defined-only "$libdir/librmpool.so" | awk '$2 ~ /^[TDBRW]$/ {print $3}' | sort)
unversioned=$(grep -v '@@RMPOOL_1\.0$' <<<"$exported" || true)
[[ -z $unversioned ]] || fail "exported without the version RMPOOL_1.0: $unversioned"
exported=${exported//@@RMPOOL_1.0/}
if [[ $declared != "$exported" ]]; then
	printf '%s\n' "$declared" >"$tmp/declared"
	printf '%s\n' "$exported" >"$tmp/exported"
	diff "$tmp/declared" "$tmp/exported" | sed 's/^/  /' >&2
	fail "librmpool.so exports other symbols than the headers declare (< declared, > exported)"
fi
note "librmpool.so: $(wc -l <<<"$exported") functions exported, all @@RMPOOL_1.0, the headers' list exactly"

# 3. the archive's own undefined symbols, resolved by the .pc's libraries
export PKG_CONFIG_PATH=$libdir/pkgconfig
defined=$(nm --defined-only "$libdir/librmpool.a" 2>/dev/null | awk 'NF == 3 {print $3}' | sort -u)
undefined=$(nm -u "$libdir/librmpool.a" 2>/dev/null | awk 'NF == 2 && $1 == "U" {print $2}' | sort -u)
external=$(only_in "$undefined" "$defined")
static_libs=$(pkg-config --static --libs rmpool)
left=$external
summary=""
for lib in $(pkg-config --static --libs-only-l rmpool | tr ' ' '\n' | grep -v '^-lrmpool$' | awk 'NF && !seen[$0]++') -lc; do
	so=$("$cc" -print-file-name="lib${lib#-l}.so")
	[[ $so == /* ]] || continue
	so=$(readlink -f "$so")
	# a linker script (libc.so): take the libraries it names
	if ! file -L "$so" | grep -q ELF; then
		so=$(grep -o '/[^ )]*\.so[^ )]*' "$so" | tr '\n' ' ')
	fi
	# shellcheck disable=SC2086 # several files for libc
	have=$(nm -D --defined-only $so 2>/dev/null | awk '{print $NF}' | sed 's/@.*//' | sort -u)
	n_before=$(grep -c . <<<"$left" || true)
	left=$(only_in "$left" "$have")
	n_after=$(grep -c . <<<"$left" || true)
	summary+=" ${lib#-l}:$((n_before - n_after))"
done
# what the compiler links in by itself: libgcc (__popcountdi2) and the
# linker's own _GLOBAL_OFFSET_TABLE_
have=$( (nm --defined-only "$("$cc" -print-libgcc-file-name)" 2>/dev/null | awk 'NF == 3 {print $3}'
	echo _GLOBAL_OFFSET_TABLE_) | sort -u)
n_before=$(grep -c . <<<"$left" || true)
left=$(only_in "$left" "$have")
summary+=" libgcc+ld:$((n_before - $(grep -c . <<<"$left" || true)))"
[[ -z $left ]] || fail "librmpool.a leaves symbols nothing on its link line defines: $(tr '\n' ' ' <<<"$left")"
note "librmpool.a: $(grep -c . <<<"$external") external symbols, all resolved by the libraries rmpool.pc names (${summary# }); link line: $static_libs"

# 4. the consumer, four ways
run() { # NAME BINARY
	local out
	out=$(LD_LIBRARY_PATH=$libdir "$2") || { echo "$out"; fail "$1: the consumer failed"; }
	grep -q '^consumer: ok$' <<<"$out" || { echo "$out"; fail "$1: no ok line"; }
	while IFS= read -r line; do echo "  [$1] $line"; done <<<"$out"
}
needs_so() { readelf -d "$1" | grep -q 'NEEDED.*librmpool\.so'; }

# shellcheck disable=SC2046 # pkg-config output is a list of words
"$cc" -o "$tmp/pc_shared" "$consumer/consumer.c" $(pkg-config --cflags --libs rmpool) ||
	fail "pkg-config shared: build"
needs_so "$tmp/pc_shared" || fail "pkg-config shared: not linked to librmpool.so"
run pkg-config/shared "$tmp/pc_shared"

# shellcheck disable=SC2046
"$cc" -o "$tmp/pc_static" "$consumer/consumer.c" $(pkg-config --cflags rmpool) \
	-L"$libdir" -l:librmpool.a $(pkg-config --static --libs rmpool | sed 's/\(^\| \)-lrmpool\( \|$\)/ /') ||
	fail "pkg-config static: build"
needs_so "$tmp/pc_static" && fail "pkg-config static: still needs librmpool.so"
run pkg-config/static "$tmp/pc_static"

"$cmake" -S "$consumer" -B "$tmp/cm" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
	>"$tmp/cm.log" 2>&1 || { cat "$tmp/cm.log" >&2; fail "CMake consumer: configure"; }
"$cmake" --build "$tmp/cm" >>"$tmp/cm.log" 2>&1 || { cat "$tmp/cm.log" >&2; fail "CMake consumer: build"; }
needs_so "$tmp/cm/consumer_shared" || fail "CMake shared: not linked to librmpool.so"
needs_so "$tmp/cm/consumer_static" && fail "CMake static: still needs librmpool.so"
run cmake/shared "$tmp/cm/consumer_shared"
run cmake/static "$tmp/cm/consumer_static"
note "PASS: installed tree used through pkg-config and CMake, shared and static"
