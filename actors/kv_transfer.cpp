#include "actors/kv_transfer.hpp"

#include <atomic>
#include <cstdlib>

namespace troupe::kv_transfer {
namespace {

uint64_t env_bytes(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const unsigned long long n = std::strtoull(v, &end, 10);
  return end && *end == 0 && n > 0 ? static_cast<uint64_t>(n) : fallback;
}

std::atomic<uint64_t> in_flight{0};

}  // namespace

uint64_t chunk_bytes() {
  static const uint64_t n = env_bytes("TROUPE_KV_CHUNK_BYTES", kChunkBytes);
  return n;
}
uint64_t transfer_credit_bytes() {
  static const uint64_t n = env_bytes("TROUPE_KV_TRANSFER_CREDIT_BYTES", kTransferCreditBytes);
  return n;
}
uint64_t node_credit_bytes() {
  static const uint64_t n = env_bytes("TROUPE_KV_NODE_CREDIT_BYTES", kNodeCreditBytes);
  return n;
}
double stall_timeout_s() {
  static const double s = [] {
    const char* v = std::getenv("TROUPE_KV_TRANSFER_TIMEOUT_S");
    if (!v || !*v) return kStallTimeoutS;
    const double x = std::atof(v);
    return x > 0 ? x : kStallTimeoutS;
  }();
  return s;
}

bool try_acquire_node_credit(uint64_t n) {
  uint64_t cur = in_flight.load();
  for (;;) {
    if (cur != 0 && cur + n > node_credit_bytes()) return false;
    if (in_flight.compare_exchange_weak(cur, cur + n)) return true;
  }
}
void release_node_credit(uint64_t n) { in_flight.fetch_sub(n); }
uint64_t node_bytes_in_flight() { return in_flight.load(); }

bool valid_role(const std::string& role) { return role == kAggregated || role == kPrefill || role == kDecode; }

}  // namespace troupe::kv_transfer
