#!/usr/bin/env bash
# Builds troupe's libFuzzer targets with clang (ASan + UBSan) and runs each for a while.
#   scripts/fuzz.sh [SECONDS_PER_TARGET=60] [TARGET ...]
# Targets: gguf safetensors tokenizer chat_template openai_request config_yaml llm_config_json json_schema
# tool_calls.
# Corpora grow in fuzz-corpus/<target> (git-ignored); crashes are written there too.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(gguf safetensors tokenizer chat_template openai_request config_yaml llm_config_json
                                     json_schema tool_calls)
data=${TROUPE_TEST_DATA:-$HOME/.cache/troupe/testdata}
out=build-fuzz
mkdir -p "$out" fuzz-corpus
flags=(-std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I.)
httplib_flags=$(pkg-config --cflags cpp-httplib)

sources() {
  case "$1" in
    gguf) echo tests/fuzz/gguf_fuzz.cpp runtime/gguf.cpp runtime/mapped_file.cpp runtime/tensor.cpp runtime/model_config.cpp ;;
    safetensors) echo tests/fuzz/safetensors_fuzz.cpp runtime/safetensors.cpp runtime/mapped_file.cpp runtime/tensor.cpp ;;
    tokenizer) echo tests/fuzz/tokenizer_fuzz.cpp runtime/text/tokenizer*.cpp runtime/text/pre_tokenizer.cpp runtime/text/unicode*.cpp \
                    runtime/gguf.cpp runtime/mapped_file.cpp runtime/tensor.cpp ;;
    chat_template) echo tests/fuzz/chat_template_fuzz.cpp runtime/text/chat_template.cpp runtime/text/jinja_*.cpp ;;
    openai_request) echo tests/fuzz/openai_request_fuzz.cpp actors/openai_api_*.cpp runtime/sampler.cpp \
                         runtime/structured/*.cpp runtime/text/tokenizer*.cpp runtime/text/pre_tokenizer.cpp \
                         runtime/text/unicode*.cpp runtime/gguf.cpp runtime/mapped_file.cpp runtime/tensor.cpp ;;
    json_schema) echo tests/fuzz/json_schema_fuzz.cpp runtime/structured/*.cpp runtime/text/tokenizer*.cpp \
                      runtime/text/pre_tokenizer.cpp runtime/text/unicode*.cpp runtime/gguf.cpp runtime/mapped_file.cpp \
                      runtime/tensor.cpp ;;
    tool_calls) echo tests/fuzz/tool_calls_fuzz.cpp runtime/structured/tool_calls.cpp ;;
    config_yaml) echo tests/fuzz/config_yaml_fuzz.cpp config/*.cpp ;;
    llm_config_json) echo tests/fuzz/llm_config_json_fuzz.cpp config/*.cpp ;;
    *) echo "unknown fuzz target $1" >&2; exit 2 ;;
  esac
}
libs() {
  case "$1" in
    tokenizer) echo -lpcre2-8 -lxxhash -lfmt ;;
    openai_request|json_schema) echo -lsimdjson -lfmt -lpcre2-8 -lxxhash ;;
    config_yaml|llm_config_json) echo -lyaml-cpp -lfmt ;;
    *) echo -lfmt ;;
  esac
}
seeds() {
  case "$1" in
    gguf) echo "$data/vocab" ;;
    safetensors) echo tests/fuzz/seeds/safetensors ;;
    config_yaml) echo tests/fuzz/seeds/config_yaml tests/config/data ;;
    llm_config_json) echo tests/fuzz/seeds/llm_config_json ;;
    openai_request) echo tests/fuzz/seeds/openai_request ;;
    json_schema) echo tests/fuzz/seeds/json_schema ;;
    tool_calls) echo tests/fuzz/seeds/tool_calls ;;
    *) ;;
  esac
}
dict() {
  case "$1" in
    config_yaml|llm_config_json) echo -dict=tests/fuzz/config.dict ;;
    openai_request) echo -dict=tests/fuzz/openai_request.dict ;;
  esac
}

status=0
for t in "${targets[@]}"; do
  echo "fuzz: building $t"
  # shellcheck disable=SC2046
  clang++ "${flags[@]}" $httplib_flags $(sources "$t") $(libs "$t") -o "$out/${t}_fuzz"
  mkdir -p "fuzz-corpus/$t"
  existing=()
  for s in $(seeds "$t"); do [ -e "$s" ] && existing+=("$s"); done
  echo "fuzz: running $t for ${secs}s"
  # shellcheck disable=SC2046
  if ! (cd "fuzz-corpus/$t" && TROUPE_TEST_DATA="$data" "../../$out/${t}_fuzz" -max_total_time="$secs" -max_len=65536 \
          -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 $(dict "$t" | sed 's|=|=../../|') . \
          $(for s in "${existing[@]}"; do case "$s" in /*) echo "$s";; *) echo "../../$s";; esac; done) \
          2>&1 | tail -n 12); then
    echo "fuzz: $t FAILED" >&2
    status=1
  fi
done
exit $status
