#include "runtime/engine/draft_tree.hpp"

#include <algorithm>
#include <numeric>

namespace troupe {

std::vector<token_id> draft_top_tokens(const float* row, int64_t n, int32_t w) {
  std::vector<token_id> ids(static_cast<size_t>(n));
  std::iota(ids.begin(), ids.end(), 0);
  const auto k = static_cast<size_t>(std::clamp<int64_t>(w, 0, n));
  std::partial_sort(ids.begin(), ids.begin() + static_cast<ptrdiff_t>(k), ids.end(), [row](token_id a, token_id b) {
    return row[a] > row[b] || (row[a] == row[b] && a < b);
  });
  ids.resize(k);
  return ids;
}

std::vector<int32_t> draft_depths(const draft& d) {
  std::vector<int32_t> depth(d.tokens.size());
  for (size_t i = 0; i < d.tokens.size(); ++i) {
    const int32_t p = d.is_tree() ? d.parents[i] : static_cast<int32_t>(i) - 1;
    depth[i] = p < 0 ? 1 : depth[static_cast<size_t>(p)] + 1;
  }
  return depth;
}

int32_t draft_depth(const draft& d) {
  if (!d.is_tree()) return static_cast<int32_t>(d.tokens.size());
  const std::vector<int32_t> depth = draft_depths(d);
  return depth.empty() ? 0 : *std::max_element(depth.begin(), depth.end());
}

namespace {
// A chain's parents are implied; a tree whose every node is its predecessor's child is one.
void chain_if_path(draft& d) {
  for (size_t i = 0; i < d.parents.size(); ++i)
    if (d.parents[i] != static_cast<int32_t>(i) - 1) return;
  d.parents.clear();
}
}  // namespace

draft draft_tree_of_paths(std::span<const std::vector<token_id>> paths, int32_t width, int32_t max_nodes) {
  draft d;
  std::vector<std::vector<int32_t>> children(1);  // children[0]: the root's; children[i + 1]: node i's
  for (const auto& path : paths) {
    int32_t at = -1;
    for (token_id t : path) {
      auto& kids = children[static_cast<size_t>(at + 1)];
      const auto hit = std::find_if(kids.begin(), kids.end(), [&](int32_t c) { return d.tokens[static_cast<size_t>(c)] == t; });
      if (hit != kids.end()) {
        at = *hit;
        continue;
      }
      if (static_cast<int32_t>(kids.size()) >= width || static_cast<int32_t>(d.tokens.size()) >= max_nodes) break;
      const auto id = static_cast<int32_t>(d.tokens.size());
      kids.push_back(id);
      d.tokens.push_back(t);
      d.parents.push_back(at);
      children.emplace_back();
      at = id;
    }
  }
  chain_if_path(d);
  return d;
}

draft draft_tree_with_siblings(std::span<const token_id> chain, std::span<const std::vector<token_id>> siblings,
                               int32_t max_nodes) {
  draft d;
  for (size_t i = 0; i < chain.size() && static_cast<int32_t>(i) < max_nodes; ++i) {
    d.tokens.push_back(chain[i]);
    d.parents.push_back(static_cast<int32_t>(i) - 1);
  }
  const size_t k = d.tokens.size();
  for (size_t i = 0; i < k && i < siblings.size(); ++i)
    for (token_id t : siblings[i]) {
      if (static_cast<int32_t>(d.tokens.size()) >= max_nodes) break;
      if (t == chain[i]) continue;
      d.tokens.push_back(t);
      d.parents.push_back(static_cast<int32_t>(i) - 1);
    }
  chain_if_path(d);
  return d;
}

token_id draft_pick(const float* row, int64_t n, int32_t w, std::vector<std::vector<token_id>>* siblings) {
  if (w <= 1 || !siblings) return static_cast<token_id>(std::max_element(row, row + n) - row);
  std::vector<token_id> top = draft_top_tokens(row, n, w);
  const token_id best = top.front();
  top.erase(top.begin());
  siblings->push_back(std::move(top));
  return best;
}

draft draft_of_chain(std::span<const token_id> chain, std::span<const std::vector<token_id>> siblings, size_t k) {
  k = std::min(k, chain.size());
  if (k > 0 && siblings.size() >= k) return draft_tree_with_siblings(chain.first(k), siblings.first(k), kMaxTreeNodes - 1);
  draft d;
  d.tokens.assign(chain.begin(), chain.begin() + static_cast<ptrdiff_t>(k));
  return d;
}

std::vector<int32_t> draft_spine_nodes(const draft& d) {
  std::vector<int32_t> spine;
  int32_t at = -1;
  for (size_t i = 0; i < d.tokens.size(); ++i)
    if (!d.is_tree() || d.parents[i] == at) {
      at = static_cast<int32_t>(i);
      spine.push_back(at);
    }
  return spine;
}

void trim_draft_tree(draft& d, int32_t max_depth, int32_t max_nodes) {
  if (!d.is_tree()) {
    const auto n = static_cast<size_t>(std::max(0, std::min(max_depth, max_nodes)));
    if (d.tokens.size() > n) d.tokens.resize(n);
    return;
  }
  const std::vector<int32_t> depth = draft_depths(d);
  std::vector<int32_t> renum(d.tokens.size(), -2);
  draft out;
  for (size_t i = 0; i < d.tokens.size(); ++i) {
    const int32_t p = d.parents[i];
    if (depth[i] > max_depth || static_cast<int32_t>(out.tokens.size()) >= max_nodes) continue;
    if (p >= 0 && renum[static_cast<size_t>(p)] < 0) continue;
    renum[i] = static_cast<int32_t>(out.tokens.size());
    out.tokens.push_back(d.tokens[i]);
    out.parents.push_back(p < 0 ? -1 : renum[static_cast<size_t>(p)]);
  }
  chain_if_path(out);
  d.tokens = std::move(out.tokens);
  d.parents = std::move(out.parents);
}

void draft_spine(draft& d) {
  if (!d.is_tree()) return;
  std::vector<token_id> spine;
  for (int32_t i : draft_spine_nodes(d)) spine.push_back(d.tokens[static_cast<size_t>(i)]);
  d.tokens = std::move(spine);
  d.parents.clear();
}

}  // namespace troupe
