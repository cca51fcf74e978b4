#!/usr/bin/env bash
# Configures and builds troupe into build/ (or $TROUPE_BUILD_DIR). Extra arguments go to cmake.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${TROUPE_BUILD_DIR:-$here/build}
jobs=${TROUPE_JOBS:-$(nproc)}
gen=()
command -v ninja >/dev/null && [ ! -f "$build/CMakeCache.txt" ] && gen=(-G Ninja)
cmake -S "$here" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTROUPE_WERROR=ON "$@"
cmake --build "$build" -j "$jobs"
