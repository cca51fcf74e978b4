// bench_model: writes a random-weight Llama in a Hugging Face directory (config.json,
// model.safetensors in bf16, the project's own tokenizer), for serving benchmarks that need
// a model whose prefill costs enough to see and that `troupe serve` can load from disk.
#pragma once

#include <string>

#include "runtime/result.hpp"

namespace troupe::bench {

// "troupe-bench-22m": 6 layers, hidden 512, 8 heads (2 KV heads), ffn 1536, the 8192-token
// vocabulary of models/troupe-py-7m, 2048 positions: about 22 M parameters. Written once
// into dir (kept if it is there already); its path.
[[nodiscard]] result<std::string> write_bench_model(const std::string& dir);

}  // namespace troupe::bench
