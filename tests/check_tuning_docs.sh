#!/bin/sh
# Every tuning variable the library reads (host/*.c: getenv, env_int,
# env_word) has a row in docs/design.md's table, and every row names one.
set -eu
src=${1:-.}
read_vars=$(grep -ohE '(getenv|env_int|env_word)\("CLSM_[A-Z0-9_]+"' "$src"/host/*.c |
  sed -E 's/.*"(CLSM_[A-Z0-9_]+)"/\1/' | sort -u)
doc_vars=$(grep -oE '^\| `CLSM_[A-Z0-9_]+`' "$src/docs/design.md" | sed -E 's/.*`(CLSM_[A-Z0-9_]+)`/\1/' | sort -u)
status=0
for v in $read_vars; do
  echo "$doc_vars" | grep -qx "$v" || { echo "docs/design.md has no row for $v"; status=1; }
done
for v in $doc_vars; do
  [ "$v" = CLSM_BENCH_ONLY ] && continue # read by the tool's bench
  echo "$read_vars" | grep -qx "$v" || { echo "docs/design.md lists $v, which host/ does not read"; status=1; }
done
[ -n "$read_vars" ] || { echo "no variables found in $src/host"; status=1; }
exit $status
