#!/bin/bash
# Runs a program under Oclgrind (the OpenCL simulator) with its data-race
# and API checks, the GPU family forced; fails on any report. Exits 77
# (CTest: skipped, with this message) when Oclgrind is not installed.
# Usage: check_oclgrind.sh PROGRAM [ARGS...]
set -u
if ! command -v oclgrind > /dev/null; then
  echo "check_oclgrind: oclgrind is not installed (Debian package oclgrind): skipped"
  exit 77
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
CLSM_DEVICE=Oclgrind CLSM_FAMILY=gpu timeout 600 \
  oclgrind --data-races --check-api --num-threads 1 --max-errors 20 "$@" > "$log" 2>&1
rc=$?
cat "$log"
if [ $rc -ne 0 ]; then
  echo "check_oclgrind: the program failed under Oclgrind (exit $rc)"
  exit 1
fi
if grep -qiE "data race|invalid (read|write)|out-of-bounds|uninitialized|barrier divergence|oclgrind - .*error" "$log"; then
  echo "check_oclgrind: Oclgrind reported errors"
  exit 1
fi
grep -q "Oclgrind" "$log" || { echo "check_oclgrind: the program did not run on Oclgrind"; exit 1; }
echo "check_oclgrind: no report"
