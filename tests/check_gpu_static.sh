#!/bin/bash
# The GPU family without a GPU: every program the library builds for a GPU
# (row ops, cross-entropy with the sharded phases, attention, the
# register-held rows variants; every dtype pair), exactly as
# `clsoftmax program --family gpu --index K` prints it
# with its build options, compiled by clang-15 with libclc to PTX, then by
# CUDA's ptxas for sm_90 (H100/H200). Fails when a program does not compile
# or assemble (an unresolved helper, say), when a work-group row kernel or
# a register-held variant (at its register cap) spills or uses a stack
# frame, or when a variant lacks 16-byte loads or divides in 64 bits;
# prints registers, stack and spills of every kernel; the register-held
# variants also for AMD gfx90a / gfx940 (no scratch, no spills). Exits 77 (CTest: skipped, with the reason) when clang-15, libclc
# or ptxas is missing.
# Usage: check_gpu_static.sh CLSOFTMAX_TOOL [OUT_DIR]
set -u
tool=$1
out=${2:-$(mktemp -d)}
mkdir -p "$out"
CLANG=${CLANG:-clang-15}
PTXAS=${PTXAS:-$(command -v ptxas || echo /usr/local/cuda/bin/ptxas)}
CLC=${CLC:-/usr/lib/clc/nvptx64--nvidiacl.bc}
AMDCLC=${AMDCLC:-/usr/lib/clc/amdgcn--amdhsa.bc}
for need in "$CLANG" "$PTXAS"; do
  command -v "$need" > /dev/null || [ -x "$need" ] ||
    { echo "check_gpu_static: $need not found: skipped"; exit 77; }
done
[ -f "$CLC" ] || { echo "check_gpu_static: $CLC not found (Debian package libclc-15): skipped"; exit 77; }
# Every dtype pair an operation takes: input, output.
pairs="float32:float32 float16:float16 bfloat16:bfloat16 float64:float64 float16:float32 bfloat16:float32"
fail=0
table="$out/table.txt"
amdtable="$out/amd.txt"
: > "$table"
: > "$amdtable"
nprog=0
regbad=""
for pair in $pairs; do
  count=$("$tool" program --family gpu --dtype "${pair%:*}" --out "${pair#*:}" --list | wc -l)
  [ "$count" -ge 3 ] || { echo "check_gpu_static: $pair lists $count programs"; fail=1; }
  for k in $(seq 0 $((count - 1))); do
    if ! "$tool" program --family gpu --dtype "${pair%:*}" --out "${pair#*:}" --index $k > "$out/prog.cl"; then
      echo "check_gpu_static: clsoftmax program fails for $pair index $k"; fail=1; continue
    fi
    p=$("$tool" program --family gpu --dtype "${pair%:*}" --out "${pair#*:}" --list | awk -v k=$k '$1 == k { print $2 }')
    opts=$(head -n 1 "$out/prog.cl" | sed 's|^// build options: ||')
    mv "$out/prog.cl" "$out/$p.cl"
    nprog=$((nprog + 1))
    if ! "$CLANG" -x cl $opts -Xclang -finclude-default-header -O3 \
        -target nvptx64-unknown-nvidiacl -march=sm_80 \
        -Xclang -mlink-bitcode-file -Xclang "$CLC" -S -o "$out/$p.ptx" "$out/$p.cl" \
        2> "$out/$p.clang.log"; then
      echo "check_gpu_static: $p does not compile:"; head -20 "$out/$p.clang.log"; fail=1; continue
    fi
    # A register-held rows variant of a 1024-lane group is capped as NVIDIA
    # devices build it (-cl-nv-maxrregcount=64): it must then fit with no
    # spill; it holds its rows in 16-byte loads (ld.global.v4, or .v2 of
    # doubles) unless it is the scalar variant, and divides in 32 bits only.
    cap=$(sed -n 's/.*-DCLSM_REG_WG=\([0-9]*\).*/\1/p' <<< "$opts")
    ptxcap=""
    if [ -n "$cap" ]; then
      [ "$cap" -gt 256 ] && ptxcap="-maxrregcount=$((65536 / cap))"
      vw=$(sed -n 's/.*-DCLSM_REG_V=\([0-9]*\).*/\1/p' <<< "$opts")
      if [ "$vw" != 1 ] && ! grep -q 'ld.global.v[24]\.\|ld.global.nc.v[24]\.' "$out/$p.ptx"; then
        regbad="$regbad $p(no 16-byte loads)"
      fi
      if grep -q 'div\.[su]64\|rem\.[su]64' "$out/$p.ptx"; then regbad="$regbad $p(64-bit division)"; fi
    fi
    if ! "$PTXAS" -arch=sm_90 -v $ptxcap -o /dev/null "$out/$p.ptx" > "$out/$p.ptxas" 2>&1; then
      echo "check_gpu_static: ptxas rejects $p:"; grep -v "^ptxas info" "$out/$p.ptxas" | head; fail=1
      continue
    fi
    # "Compiling entry function 'clsm_x'", then "N bytes stack frame, N bytes
    # spill stores, N bytes spill loads", then "Used N registers".
    awk -v p="$p" '
      /Compiling entry function/ { match($0, /'"'"'[^'"'"']*'"'"'/); k = substr($0, RSTART + 1, RLENGTH - 2) }
      /bytes stack frame/ { stack[k] = $5; spill[k] = $9 }
      /Used [0-9]+ registers/ { for (i = 1; i <= NF; ++i) if ($i == "Used") regs[k] = $(i + 1) }
      END { for (k in regs) printf "%-22s %-34s regs %4s stack %4s spill %4s\n", p, k, regs[k], stack[k] + 0, spill[k] + 0 }
    ' "$out/$p.ptxas" | sort >> "$table"
    # The register-held variants for AMD CDNA2 / CDNA3 (64-wide wavefronts;
    # gfx940 is clang-15's nearest to MI300's gfx942): no scratch, no VGPR
    # or SGPR spill.
    if [ -n "$cap" ] && [ -f "$AMDCLC" ]; then
      for cpu in gfx90a gfx940; do
        "$CLANG" -x cl $opts -Xclang -finclude-default-header -O3 -target amdgcn-amd-amdhsa \
          -mcpu=$cpu -nogpulib -Xclang -mlink-bitcode-file -Xclang "$AMDCLC" \
          -Rpass-analysis=kernel-resource-usage -c -o /dev/null "$out/$p.cl" > "$out/$p.$cpu.log" 2>&1 ||
          { echo "check_gpu_static: $p does not compile for $cpu"; fail=1; continue; }
        awk -v p="$p" -v cpu="$cpu" '
          /Function Name:/ { k = $(NF - 1) }
          /VGPRs: / && !/Spill/ { v[k] = $(NF - 1) }
          /ScratchSize/ { sc[k] = $(NF - 1) }
          /VGPRs Spill:/ { vs[k] = $(NF - 1) }
          /SGPRs Spill:/ { ss[k] = $(NF - 1) }
          END { for (k in v) printf "%s %s %s vgprs %s scratch %s spills %s\n", cpu, p, k, v[k], sc[k], vs[k] + ss[k] }
        ' "$out/$p.$cpu.log" >> "$amdtable"
      done
    fi
  done
done
cat "$table"
if [ -f "$AMDCLC" ]; then
  sort "$amdtable"
  amdbad=$(awk '$7 > 0 || $9 > 0' "$amdtable")
  [ -z "$amdbad" ] || { echo "check_gpu_static: register-held variants with scratch or spills on AMD:"; echo "$amdbad"; fail=1; }
  [ "$(wc -l < "$amdtable")" -ge 160 ] || { echo "check_gpu_static: only $(wc -l < "$amdtable") AMD kernels"; fail=1; }
else
  echo "check_gpu_static: $AMDCLC not found: the AMD resource check is skipped"
fi
# The GPU family's work-group row kernels (and the sharded phases', and
# the register-held rows variants at their cap) keep their rows in
# registers and local memory: no stack, no spill, in any dtype.
bad=$(awk '($2 ~ /^clsm_((softmax|backward)_rows|(ce|sm)_shard_[a-z]+)_wg$/ || $2 ~ /_reg$/) && ($6 > 0 || $8 > 0)' "$table")
if [ -n "$bad" ]; then
  echo "check_gpu_static: work-group row kernels with a stack frame or spills:"; echo "$bad"; fail=1
fi
if [ -n "$regbad" ]; then echo "check_gpu_static: register-held rows variants:$regbad"; fail=1; fi
nreg=$(awk '$2 ~ /_reg$/' "$table" | wc -l)
[ "$nreg" -ge 80 ] || { echo "check_gpu_static: only $nreg register-held rows kernels assembled"; fail=1; }
n=$(wc -l < "$table")
[ "$n" -ge 100 ] || { echo "check_gpu_static: only $n kernels assembled"; fail=1; }
[ $fail = 0 ] && echo "check_gpu_static: $n kernels of $nprog programs assemble for sm_90"
exit $fail
