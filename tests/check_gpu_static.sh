#!/bin/bash
# The GPU family without a GPU: every program the library builds for a GPU
# (row ops and cross-entropy, every dtype pair), compiled as a GPU device
# gets it (no CPU-family defines) by clang-15 with libclc to PTX, then by
# CUDA's ptxas for sm_90 (H100/H200). Fails when a program does not compile
# or assemble (an unresolved helper, say) or when a work-group row kernel
# spills or uses a stack frame; prints registers, stack and spills of every
# kernel. Exits 77 (CTest: skipped, with the reason) when clang-15, libclc
# or ptxas is missing.
# Usage: check_gpu_static.sh SOURCE_DIR [OUT_DIR]
set -u
src=$1
out=${2:-$(mktemp -d)}
mkdir -p "$out"
CLANG=${CLANG:-clang-15}
PTXAS=${PTXAS:-$(command -v ptxas || echo /usr/local/cuda/bin/ptxas)}
CLC=${CLC:-/usr/lib/clc/nvptx64--nvidiacl.bc}
for need in "$CLANG" "$PTXAS"; do
  command -v "$need" > /dev/null || [ -x "$need" ] ||
    { echo "check_gpu_static: $need not found: skipped"; exit 77; }
done
[ -f "$CLC" ] || { echo "check_gpu_static: $CLC not found (Debian package libclc-15): skipped"; exit 77; }
declare -A dtypes=([f32]="-DCLSM_X_F32 -DCLSM_Y_F32" [f16]="-DCLSM_X_F16 -DCLSM_Y_F16"
  [bf16]="-DCLSM_X_BF16 -DCLSM_Y_BF16" [f64]="-DCLSM_X_F64 -DCLSM_Y_F64"
  [f16_f32]="-DCLSM_X_F16 -DCLSM_Y_F32" [bf16_f32]="-DCLSM_X_BF16 -DCLSM_Y_F32")
declare -A groups=([row]="abi.h common.cl softmax.cl backward.cl" [ce]="abi.h common.cl ce.cl shard.cl"
  [attn]="abi.h common.cl attn.cl")
fail=0
table="$out/table.txt"
: > "$table"
for g in row ce attn; do
  cat $(for f in ${groups[$g]}; do echo "$src/kernels/$f"; done) > "$out/$g.cl"
  for d in f32 f16 bf16 f64 f16_f32 bf16_f32; do
    p="$g.$d"
    # host/program.c's options for a GPU device.
    if ! "$CLANG" -x cl -cl-std=CL1.2 -Xclang -finclude-default-header -O3 \
        -DCLSM_INNER_VECTORS=32 ${dtypes[$d]} -target nvptx64-unknown-nvidiacl -march=sm_80 \
        -Xclang -mlink-bitcode-file -Xclang "$CLC" -S -o "$out/$p.ptx" "$out/$g.cl" \
        2> "$out/$p.clang.log"; then
      echo "check_gpu_static: $p does not compile:"; head -20 "$out/$p.clang.log"; fail=1; continue
    fi
    if ! "$PTXAS" -arch=sm_90 -v -o /dev/null "$out/$p.ptx" > "$out/$p.ptxas" 2>&1; then
      echo "check_gpu_static: ptxas rejects $p:"; grep -v "^ptxas info" "$out/$p.ptxas" | head; fail=1
      continue
    fi
    # "Compiling entry function 'clsm_x'", then "N bytes stack frame, N bytes
    # spill stores, N bytes spill loads", then "Used N registers".
    awk -v p="$p" '
      /Compiling entry function/ { match($0, /'"'"'[^'"'"']*'"'"'/); k = substr($0, RSTART + 1, RLENGTH - 2) }
      /bytes stack frame/ { stack[k] = $5; spill[k] = $9 }
      /Used [0-9]+ registers/ { for (i = 1; i <= NF; ++i) if ($i == "Used") regs[k] = $(i + 1) }
      END { for (k in regs) printf "%-10s %-34s regs %4s stack %4s spill %4s\n", p, k, regs[k], stack[k] + 0, spill[k] + 0 }
    ' "$out/$p.ptxas" | sort >> "$table"
  done
done
cat "$table"
# The GPU family's work-group row kernels keep their rows in registers and
# local memory: no stack, no spill, in any dtype.
bad=$(awk '$2 ~ /^clsm_(softmax|backward)_rows_wg$/ && ($6 > 0 || $8 > 0)' "$table")
if [ -n "$bad" ]; then
  echo "check_gpu_static: work-group row kernels with a stack frame or spills:"; echo "$bad"; fail=1
fi
n=$(wc -l < "$table")
[ "$n" -ge 100 ] || { echo "check_gpu_static: only $n kernels assembled"; fail=1; }
[ $fail = 0 ] && echo "check_gpu_static: $n kernels of $((${#groups[@]} * ${#dtypes[@]})) programs assemble for sm_90"
exit $fail
