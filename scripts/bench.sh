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
run engine "$troupe" bench engine
TROUPE_BF16_DOT=split run engine-bf16-split "$troupe" bench engine --batches 1 8 32
run engine-q8_0 "$troupe" bench engine --dtype q8_0 --batches 1 8 32
run shared-prefix "$troupe" bench engine --workload shared-prefix
run mixed "$troupe" bench engine --workload mixed
run serve "$troupe" bench serve --model models/troupe-py-7m --concurrency 64 --duration 30
echo "wrote $out" >&2
