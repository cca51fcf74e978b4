#!/usr/bin/env bash
# Runs the CPU benchmarks behind the README's performance section and keeps their JSON.
#   scripts/bench.sh [OUT_DIR]     (default: bench-results/<date>; needs a build in build/)
# Run it on a quiet machine: the figures are ratios within one run, and anything else running
# on the cores skews them.
set -euo pipefail
cd "$(dirname "$0")/.."
troupe=build/cli/troupe
out=${1:-bench-results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
run() {  # name, command...
  local name=$1; shift
  echo "== $name: $*" >&2
  "$@" >"$out/$name.json"
}
# bf16 (fast path), with q8_0 and q4_K batch-1 decode and one thread beside it, in one run
run engine "$troupe" bench engine --compare-dtypes q8_0,q4_k --compare-threads
run engine-f32-precision "$troupe" bench engine --precision f32 --batches 1,32
run engine-q4_k "$troupe" bench engine --dtype q4_k --batches 1,8,32
# the bf16 GEMM against oneDNN and libxsmm (built where libdnnl-dev and libxsmm-dev are installed)
if [ -x build/bench/troupe_gemm_libraries ]; then
  run gemm-libraries build/bench/troupe_gemm_libraries --threads 1
  run gemm-libraries-2-threads build/bench/troupe_gemm_libraries --threads 2
fi
# the CPU attention kernel alone, one thread's CPU time per layer
run attention-kernels build/bench/troupe_attention_kernels
# the fast-path matmul per weight type at TinyLlama's shapes, one thread's CPU time, weights cold
run quant-kernels build/bench/troupe_quant_kernels --types bf16,q8_0,q4_K,q5_K,q6_K --rows 1,8,32 \
  --shapes 5632x2048,2048x5632 --cold 1
run shared-prefix "$troupe" bench engine --workload shared-prefix
run mixed "$troupe" bench engine --workload mixed
run serve "$troupe" bench serve --model models/troupe-py-7m --concurrency 64 --duration 30
echo "wrote $out" >&2
