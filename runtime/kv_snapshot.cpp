#include "runtime/kv_snapshot.hpp"

#include <cstring>

#include <fmt/format.h>
#include <xxhash.h>

namespace troupe {
namespace {

constexpr char kMagic[8] = {'T', 'R', 'P', 'K', 'V', 'S', 'N', '1'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeader = 8 + 4 + 8;

void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
void put_str(std::string& out, const std::string& s) {
  put_u32(out, static_cast<uint32_t>(s.size()));
  out += s;
}

class reader {
 public:
  explicit reader(std::string_view b) : b_(b) {}
  bool u64(uint64_t& v) {
    if (b_.size() - at_ < 8) return false;
    v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(b_[at_ + static_cast<size_t>(i)])) << (8 * i);
    at_ += 8;
    return true;
  }
  bool u32(uint32_t& v) {
    if (b_.size() - at_ < 4) return false;
    v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<uint8_t>(b_[at_ + static_cast<size_t>(i)])) << (8 * i);
    at_ += 4;
    return true;
  }
  bool str(std::string& s) {
    uint32_t n = 0;
    if (!u32(n) || n > b_.size() - at_) return false;
    s.assign(b_.substr(at_, n));
    at_ += n;
    return true;
  }
  size_t left() const { return b_.size() - at_; }

 private:
  std::string_view b_;
  size_t at_ = 0;
};

}  // namespace

std::string encode(const kv_snapshot& s) {
  std::string payload;
  put_str(payload, s.router);
  put_u32(payload, static_cast<uint32_t>(s.workers.size()));
  for (const auto& w : s.workers) {
    put_str(payload, w.name);
    put_str(payload, w.model);
    put_u64(payload, w.instance);
    put_u64(payload, w.salt);
    put_u32(payload, static_cast<uint32_t>(w.block_size));
    put_u64(payload, w.next_event);
    put_u64(payload, w.hashes.size());
    for (uint64_t h : w.hashes) put_u64(payload, h);
  }
  std::string out(kMagic, sizeof kMagic);
  put_u32(out, kVersion);
  put_u64(out, XXH3_64bits(payload.data(), payload.size()));
  out += payload;
  return out;
}

result<kv_snapshot> decode_kv_snapshot(std::string_view b) {
  if (b.size() < kHeader || std::memcmp(b.data(), kMagic, sizeof kMagic) != 0)
    return make_error("not a troupe KV index snapshot (no TRPKVSN1 header)");
  reader head(b.substr(8, 12));
  uint32_t version = 0;
  uint64_t sum = 0;
  (void)head.u32(version);
  (void)head.u64(sum);
  if (version != kVersion) return make_error(fmt::format("KV index snapshot version {} (this troupe reads {})", version, kVersion));
  const std::string_view payload = b.substr(kHeader);
  if (XXH3_64bits(payload.data(), payload.size()) != sum) return make_error("KV index snapshot checksum mismatch (a torn or corrupt file)");
  reader r(payload);
  kv_snapshot s;
  uint32_t n = 0;
  if (!r.str(s.router) || !r.u32(n)) return make_error("KV index snapshot truncated in its header");
  for (uint32_t i = 0; i < n; ++i) {
    kv_snapshot::worker w;
    uint32_t bs = 0;
    uint64_t count = 0;
    if (!r.str(w.name) || !r.str(w.model) || !r.u64(w.instance) || !r.u64(w.salt) || !r.u32(bs) || !r.u64(w.next_event) ||
        !r.u64(count) || count > r.left() / 8)
      return make_error(fmt::format("KV index snapshot truncated in worker {} of {}", i + 1, n));
    w.block_size = static_cast<int32_t>(bs);
    w.hashes.resize(count);
    for (uint64_t& h : w.hashes) (void)r.u64(h);
    s.workers.push_back(std::move(w));
  }
  if (r.left() != 0) return make_error("KV index snapshot has trailing bytes");
  return s;
}

}  // namespace troupe
