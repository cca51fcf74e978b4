// draft_tree: tree drafts (speculative_config.spec_tree_width > 1, MLC's tree mode) as plain
// functions over a draft's tokens and parents (step.hpp): building one from candidate
// continuations (a trie: NGram), from a chain plus top-w siblings per position (every model
// drafter, DraftTarget, MTP and Eagle, through draft_pick and draft_of_chain), and trimming one
// to a depth and node budget; the spine and depth the adaptive draft length reads. Verification (the tree attention mask, the walk that
// keeps the longest accepted path, the KV move of that path) lives in the executor, the output
// processor and the engine; nothing here touches KV or samples.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/engine/step.hpp"

namespace troupe {

// spec_tree_width's ceiling (children per node), and a tree's node count ceiling.
inline constexpr int32_t kMaxSpecTreeWidth = 8;
inline constexpr int32_t kMaxTreeNodes = 64;

// The w best ids of row[0, n) (highest first, ties to the lower id): a model drafter's chain
// token and its w - 1 siblings at one position.
std::vector<token_id> draft_top_tokens(const float* row, int64_t n, int32_t w);

// Token i's depth (1 for a child of the root).
std::vector<int32_t> draft_depths(const draft& d);
// The deepest node's depth (a chain: its length; empty: 0).
int32_t draft_depth(const draft& d);

// A trie of continuations, in the order given (the first is the spine): each path is inserted
// from the root, at most `width` children per node, `max_nodes` nodes in all; a path stops
// where it would need a child beyond the width or a node beyond the budget. A single path gives
// a chain (parents empty).
draft draft_tree_of_paths(std::span<const std::vector<token_id>> paths, int32_t width, int32_t max_nodes);

// A chain (spine) with, at each position i, siblings[i] as leaves beside chain token i (same
// parent). Nodes: the chain first (indices 0..k-1), then the leaves.
draft draft_tree_with_siblings(std::span<const token_id> chain, std::span<const std::vector<token_id>> siblings,
                               int32_t max_nodes);

// The one tree builder of the model drafters (DraftTarget, MTP, Eagle): "the chain of argmaxes
// plus the top-w siblings". draft_pick reads one draft position's logits row[0, n): it returns
// the chain's token (the best id, ties to the lower) and, with w > 1 and siblings given, appends
// the w - 1 next best to *siblings (that position's leaves). draft_of_chain then makes the draft
// of the first k positions: the chain with its siblings as leaves (kMaxTreeNodes - 1 nodes at
// most) where every position has its siblings, else the chain alone.
token_id draft_pick(const float* row, int64_t n, int32_t w, std::vector<std::vector<token_id>>* siblings);
draft draft_of_chain(std::span<const token_id> chain, std::span<const std::vector<token_id>> siblings, size_t k);

// The spine's node indices (first children from the root down; a chain: 0..k-1).
std::vector<int32_t> draft_spine_nodes(const draft& d);

// Keeps the nodes of depth <= max_depth, in order, at most max_nodes, and only those whose
// parent is kept (indices renumbered); a tree of one path becomes a chain.
void trim_draft_tree(draft& d, int32_t max_depth, int32_t max_nodes);

// Keeps only the spine (first children from the root down): a chain.
void draft_spine(draft& d);

}  // namespace troupe
