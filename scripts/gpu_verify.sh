#!/usr/bin/env bash
# Verifies the CUDA backend on a machine with a Hopper GPU (sm_90), which the machines that
# build troupe do not have: builds with nvcc, runs every CUDA test (each must run, not skip),
# then `troupe bench engine --device cuda` and the PyTorch floor at the same shapes, keeping
# their output in OUT (default: <build>/gpu-results).
#
#   scripts/gpu_verify.sh [OUT]        TROUPE_BUILD_DIR=... to build elsewhere than build-cuda
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${TROUPE_BUILD_DIR:-$here/build-cuda}
out=${1:-$build/gpu-results}
mkdir -p "$out"
nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
cmake -S "$here" -B "$build" -G Ninja -DTROUPE_WERROR=ON -DTROUPE_CUDA=ON
cmake --build "$build" -j"$(nproc)"

# The kernels against the CPU, the executor against the CPU executor on every test model, the
# stream actor, the command line. On a GPU none may skip.
ctest --test-dir "$build" -R 'cuda|device_flag|make_reference' --output-on-failure 2>&1 | tee "$out/ctest-cuda.txt"
if grep -q 'Skipped\|SKIPPED' "$out/ctest-cuda.txt"; then
  echo "gpu_verify: CUDA tests were skipped: is the GPU visible to this process?" >&2
  exit 1
fi

# Figures: Llama-3-8B's shape, random bf16 weights made on the device.
"$build/cli/troupe" bench engine --device cuda --prompt-tokens 512 >"$out/bench-engine-cuda-512.json"
"$build/cli/troupe" bench engine --device cuda --prompt-tokens 2048 --batches 1 >"$out/bench-engine-cuda-2048.json"
"$build/cli/troupe" generate --device cuda --prompt 'Once upon a time' --max-tokens 32 --temperature 0 --json \
  >"$out/generate-cuda.json"
python3 "$here/scripts/torch_bench.py" --prompt-tokens 512 >"$out/torch-bench-512.json" ||
  echo "gpu_verify: the PyTorch floor did not run (is a CUDA build of torch installed?)" >&2
echo "gpu_verify: results in $out"
