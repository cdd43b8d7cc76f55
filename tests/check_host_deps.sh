#!/bin/bash
# No call cycles between the library's host files: from the objects' symbol
# tables (nm), file A depends on file B when A uses a symbol B defines; the
# graph must sort topologically (tsort). Also: the planner files use no
# OpenCL function and no context (they include host/plan.h only), and no
# header includes itself through another.
# Usage: check_host_deps.sh OBJECT_DIR SOURCE_DIR
set -euo pipefail
objdir=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
shopt -s nullglob
objs=("$objdir"/*.o)
[ ${#objs[@]} -ge 10 ] || { echo "check_host_deps: only ${#objs[@]} objects in $objdir"; exit 1; }
for o in "${objs[@]}"; do
  f=$(basename "$o" .c.o)
  nm --defined-only -g "$o" | awk -v f="$f" 'NF == 3 { print $3, f }' >> "$tmp/defs"
  nm --undefined-only -g "$o" | awk -v f="$f" '{ print $NF, f }' >> "$tmp/uses"
done
sort -u "$tmp/defs" > "$tmp/defs.s"
sort -u "$tmp/uses" > "$tmp/uses.s"
# user -> definer, one edge per pair of distinct files.
join "$tmp/uses.s" "$tmp/defs.s" | awk '$2 != $3 { print $2, $3 }' | sort -u > "$tmp/edges"
if ! tsort "$tmp/edges" > /dev/null 2> "$tmp/loop"; then
  echo "check_host_deps: call cycle between host files:"
  cat "$tmp/loop"
  cat "$tmp/edges"
  exit 1
fi
# The planner: pure.
for f in plan plan_ce plan_attn; do
  bad=$(awk -v f="$f" '$2 == f && ($1 ~ /^cl[A-Z]/ || $1 ~ /^clsm__(fail|cl_fail|malloc|scratch|kernel|program)$/) { print $1 }' "$tmp/uses.s")
  if [ -n "$bad" ]; then
    echo "check_host_deps: host/$f.c calls $bad: planning must not touch OpenCL or the context"
    exit 1
  fi
  if grep -n '#include "internal.h"' "$src/host/$f.c"; then
    echo "check_host_deps: host/$f.c includes internal.h (the context's layout)"
    exit 1
  fi
done
# Headers: the include graph of host/ and kernels/abi.h sorts too.
for h in "$src"/host/*.h "$src"/kernels/abi.h; do
  b=$(basename "$h")
  { grep -o '#include "[^"]*"' "$h" || true; } | sed 's/#include "\(.*\)"/\1/' | while read -r inc; do
    echo "$b $inc"
  done
done > "$tmp/incs"
if [ -s "$tmp/incs" ] && ! tsort "$tmp/incs" > /dev/null 2> "$tmp/loop"; then
  echo "check_host_deps: include cycle:"
  cat "$tmp/loop"
  exit 1
fi
echo "check_host_deps: $(wc -l < "$tmp/edges") file dependencies, no cycle; the planner is pure"
