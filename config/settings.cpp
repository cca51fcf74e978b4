// settings: names of the enumerations as written in config files.
#include "config/settings.hpp"

namespace troupe::config {

std::string_view to_string(prefill_mode m) {
  return m == prefill_mode::hybrid ? "hybrid" : "chunked";
}

std::string_view to_string(prefix_cache_mode m) {
  return m == prefix_cache_mode::radix ? "radix" : "disable";
}

std::string_view to_string(checkpoint_source s) {
  switch (s) {
    case checkpoint_source::hf: return "HF";
    case checkpoint_source::local: return "LOCAL";
    case checkpoint_source::gcs: return "GCS";
    case checkpoint_source::s3: return "S3";
    case checkpoint_source::azure: return "AZURE";
    case checkpoint_source::remote_url: return "REMOTE_URL";
    case checkpoint_source::baseten_training: return "BASETEN_TRAINING";
  }
  return "HF";
}

std::string_view to_string(quantization_type q) {
  switch (q) {
    case quantization_type::no_quant: return "no_quant";
    case quantization_type::fp8: return "fp8";
    case quantization_type::fp8_kv: return "fp8_kv";
    case quantization_type::fp4: return "fp4";
    case quantization_type::fp4_kv: return "fp4_kv";
    case quantization_type::fp4_mlp_only: return "fp4_mlp_only";
  }
  return "no_quant";
}

std::string_view to_string(queue_policy p) { return p == queue_policy::wspt ? "wspt" : "fcfs"; }

std::string_view to_string(decoding_type t) {
  switch (t) {
    case decoding_type::eagle: return "Eagle";
    case decoding_type::mtp: return "MTP";
    case decoding_type::ngram: return "NGram";
    case decoding_type::draft_target: return "DraftTarget";
  }
  return "NGram";
}

}  // namespace troupe::config
