#include "runtime/packed_weights.hpp"

#include "runtime/weight_matrix_of.hpp"

namespace troupe {

cpu::weight_matrix packed_weights::matrix(const tensor_view& t, cpu::precision prec, cpu::thread_pool* pool) {
  cpu::weight_matrix m = weight_matrix_of(t);
  if (m.type != cpu::wtype::bf16 || !cpu::uses_packed_bf16(prec) || m.n_out <= 0 || m.n_in <= 0) return m;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = packed_.find(m.data);
  if (it == packed_.end()) it = packed_.emplace(m.data, cpu::packed_bf16(m, pool)).first;
  m.packed = it->second.data();
  return m;
}

size_t packed_weights::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const auto& [data, p] : packed_) n += p.bytes();
  return n;
}

std::shared_ptr<packed_weights> packed_weights_of(const std::shared_ptr<const checkpoint>& m) {
  static std::mutex mu;
  static std::unordered_map<const checkpoint*, std::weak_ptr<packed_weights>> stores;
  std::lock_guard<std::mutex> lock(mu);
  for (auto it = stores.begin(); it != stores.end();)  // forget stores nothing holds any more
    it = it->second.expired() ? stores.erase(it) : std::next(it);
  std::weak_ptr<packed_weights>& w = stores[m.get()];
  std::shared_ptr<packed_weights> s = w.lock();
  if (!s) {
    s = std::make_shared<packed_weights>(m);
    w = s;
  }
  return s;
}

}  // namespace troupe
