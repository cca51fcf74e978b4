#!/usr/bin/env bash
# Runs every test: installs what is missing (idempotent), builds, runs ctest.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${TROUPE_BUILD_DIR:-$here/build}
"$here/scripts/setup.sh" --no-build
"$here/scripts/build.sh"
ctest --test-dir "$build" --output-on-failure -j "${TROUPE_JOBS:-$(nproc)}" "$@"
