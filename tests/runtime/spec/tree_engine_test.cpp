// Proves tree drafts (speculative_config.spec_tree_width > 1) on the project's own models, on
// the f32 path (EXACT): the tree attention mask gives every node the logits its root-to-node
// path gets as a chain of its own, and the KV move of an accepted path leaves the cache as a
// chain would have; greedy output with NGram and DraftTarget trees is plain greedy decoding
// token for token, with tree, chain and plain sequences batched in the same steps, with
// prefix-cache hits and preemption; seeded sampling with trees is reproducible; and under
// random trees, random acceptance, aborts and preemption every request ends, no KV block
// leaks and the KV events replay to the cached set (drafts never enter it).
#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>

#include <gtest/gtest.h>

#include "runtime/engine/draft_tree.hpp"
#include "runtime/engine/engine.hpp"
#include "runtime/engine/factory.hpp"
#include "runtime/engine/sequence.hpp"
#include "runtime/spec/ngram_proposer.hpp"
#include "runtime/text/tokenizer.hpp"
#include "tests/runtime/shipped_model_fixture.hpp"
#include "tests/test_data.hpp"

namespace troupe {
namespace {

struct outcome {
  std::vector<token_id> tokens;
  std::string text;
  std::string finish;
  usage use;
};

struct totals {
  int64_t drafted = 0, accepted = 0;
  int tree_steps = 0;    // steps that verified a tree
  int mixed_steps = 0;   // steps with a tree beside a chain verification or a plain decode/prefill
  int moved_steps = 0;   // steps whose batch moved an accepted path off the spine
  int preempted = 0;
  bool leaked = false;
};

// Wraps a tree drafter: ids starting with 't' get its tree, 's' its spine (a chain), the rest
// nothing (plain decoding). corrupt > 0: node tokens replaced at random and subtrees cut at
// random (random acceptance).
class mixed final : public proposer {
 public:
  mixed(std::unique_ptr<proposer> inner, double corrupt = 0, unsigned seed = 0)
      : inner_(std::move(inner)), corrupt_(corrupt), rng_(seed) {}
  draft propose(const sequence& s, int32_t k) override {
    const sequence* one[] = {&s};
    const int32_t ks[] = {k};
    return std::move(propose_batch(one, ks)[0]);
  }
  std::vector<draft> propose_batch(std::span<const sequence* const> seqs, std::span<const int32_t> k) override {
    inner_->set_tree_width(tree_width());
    std::vector<draft> out = inner_->propose_batch(seqs, k);
    std::uniform_real_distribution<double> u(0, 1);
    for (size_t i = 0; i < seqs.size(); ++i) {
      const char c = seqs[i]->id[0];
      draft& d = out[i];
      if (c == 's') draft_spine(d);
      else if (c == 'p') d = {};
      if (corrupt_ > 0 && !d.empty()) {
        for (token_id& t : d.tokens)
          if (u(rng_) < corrupt_) t = static_cast<token_id>(rng_() % 8000);
        trim_draft_tree(d, 1 + static_cast<int32_t>(rng_() % 8), 1 + static_cast<int32_t>(rng_() % d.tokens.size()));
      }
    }
    return out;
  }
  void forget(const sequence& s) override { inner_->forget(s); }
  bool drafts_trees() const override { return true; }
  const char* name() const override { return inner_->name(); }

 private:
  std::unique_ptr<proposer> inner_;
  double corrupt_;
  std::mt19937 rng_;
};

class tree_engine : public testing::shipped_model_fixture {
 protected:
  static std::vector<token_id> encode(const std::string& text) { return bundle_->tok->encode(text, true, false); }

  static std::vector<std::string> texts() {
    const std::string f = "def add_item(self, key, value):\n    if key in self.items:\n        self.items[key].append(value)\n"
                          "    else:\n        self.items[key] = [value]\n    return self.items[key]\n\n";
    const std::string g = "def remove_item(self, key):\n    if key in self.items:\n        del self.items[key]\n"
                          "    return None\n\n";
    return {f + g + "# The same methods, again:\n" + f.substr(0, 30),
            "import os\nimport sys\n\n\ndef main(argv):\n    for name in argv:\n        path = os.path.join(",
            "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n        self.items",
            f + g + f.substr(0, 45) + g.substr(0, 20),
            "for i in range(10):\n    print(i)\nfor j in range(10):\n    print(j)\nfor i in range(",
            "def parse(line):\n    \"\"\"Split a line into fields.\"\"\"\n    fields = line.split(",
            "x = 1\ny = 2\nz = x + y\nw = x + z\n",
            "try:\n    import json\nexcept ImportError:\n    json = None\n\n\ndef load(path):\n    with open("};
  }

  static std::vector<request> requests(int32_t max_tokens, const std::string& kinds = "tsp") {
    std::vector<request> out;
    const auto t = texts();
    for (size_t i = 0; i < t.size(); ++i) {
      request r;
      r.id = std::string(1, kinds[i % kinds.size()]) + std::to_string(i);
      r.prompt = encode(t[i]);
      r.params.temperature = 0;
      r.params.max_tokens = max_tokens;
      out.push_back(std::move(r));
    }
    return out;
  }

  static std::unique_ptr<proposer> ngram() {
    engine_spec es;
    es.decoding_type = "NGram";
    auto p = make_proposer(es);
    EXPECT_TRUE(p.ok()) << p.message();
    return p.ok() ? std::move(*p) : nullptr;
  }
  static std::unique_ptr<proposer> draft_model(const executor& target) {
    engine_spec es;
    es.decoding_type = "DraftTarget";
    es.speculative_model_dir = testing::source_dir() + "/models/troupe-py-draft";
    es.threads = 2;
    const engine_model_info info = model_info_of(target, bundle_->tok.get());
    auto p = make_proposer(es, bundle_->tok.get(), &info);
    EXPECT_TRUE(p.ok()) << p.message();
    return p.ok() ? std::move(*p) : nullptr;
  }

  struct run_opts {
    int32_t width = 3;
    int32_t max_draft_len = 4;
    bool prefix_cache = false;
    int32_t n_blocks = 512;
    int32_t max_batch_size = 256;
    int32_t max_num_tokens = 8192;
    bool draft_target = false;
    double corrupt = 0;
    unsigned seed = 0;
    bool adaptive = false;  // spec_draft_length 0: the chooser picks each depth, tree or spine
  };

  // Every request in one engine (prop: none for plain decoding), the second wave after the first.
  std::map<std::string, outcome> run(const std::vector<request>& reqs, bool speculate, const run_opts& o,
                                     totals* t = nullptr, const std::vector<request>& second_wave = {}) {
    auto ex = make_executor(o.n_blocks);
    std::map<std::string, outcome> out;
    if (!ex) return out;
    engine_config c;
    c.prefix_cache = o.prefix_cache;
    c.max_draft_len = o.max_draft_len;
    c.spec_tree_width = o.width;
    c.adaptive_draft_len = o.adaptive;
    c.max_batch_size = o.max_batch_size;
    c.max_num_tokens = o.max_num_tokens;
    c.model_identity = "troupe-py-7m";
    std::unique_ptr<proposer> prop;
    if (speculate) prop = std::make_unique<mixed>(o.draft_target ? draft_model(*ex) : ngram(), o.corrupt, o.seed);
    auto e = engine::create(c, model_info_of(*ex, bundle_->tok.get()), bundle_->tok.get(), std::move(prop));
    EXPECT_TRUE(e.ok()) << e.message();
    if (!e.ok()) return out;
    for (const auto& wave : {reqs, second_wave}) {
      for (const request& r : wave) EXPECT_TRUE((*e)->add_request(r).ok()) << r.id;
      while ((*e)->has_work()) {
        step_plan plan = (*e)->schedule();
        bool tree = false, other = false;
        for (const scheduled_seq& s : plan.seqs) (s.drafted.is_tree() ? tree : other) = true;
        if (t) {
          t->tree_steps += tree;
          t->mixed_steps += tree && other;
          t->moved_steps += !plan.batch.kv_moves.empty();
          t->preempted += plan.stats.n_preempted;
        }
        std::vector<float> logits;
        if (!plan.empty()) {
          EXPECT_TRUE(ex->forward(plan.batch, logits).ok());
        }
        step_output so = (*e)->complete(std::move(plan), logits, -1);
        for (const request_output& r : so.outputs) {
          outcome& x = out[r.id];
          x.tokens.insert(x.tokens.end(), r.tokens.begin(), r.tokens.end());
          x.text += r.text;
          if (r.finished) {
            x.finish = finish_reason_name(*r.finished);
            x.use = r.use;
          }
          if (t) {
            t->drafted += r.n_drafted;
            t->accepted += r.n_draft_accepted;
          }
        }
      }
    }
    if (t) t->leaked = (*e)->kv_blocks_free() != (*e)->kv_blocks_total();
    return out;
  }
};

void expect_same(const std::map<std::string, outcome>& got, const std::map<std::string, outcome>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [id, w] : want) {
    const outcome& g = got.at(id);
    EXPECT_EQ(g.tokens, w.tokens) << id;
    EXPECT_EQ(g.text, w.text) << id;
    EXPECT_EQ(g.finish, w.finish) << id;
  }
}

// The largest |a - b| over two rows, and whether their argmaxes agree.
void expect_close_rows(std::span<const float> a, std::span<const float> b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size());
  float diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::fabs(a[i] - b[i]));
  EXPECT_LT(diff, 2e-3f) << what;
  EXPECT_EQ(std::max_element(a.begin(), a.end()) - a.begin(), std::max_element(b.begin(), b.end()) - b.begin()) << what;
}

TEST_F(tree_engine, the_tree_mask_gives_each_node_the_logits_of_its_own_path_and_moved_kv_is_a_chains) {
  const std::vector<token_id> prompt = encode(texts()[0]);
  ASSERT_GT(prompt.size(), 40u);
  const auto n_past = static_cast<int32_t>(29);  // the nodes straddle a 16-token block boundary
  const std::vector<token_id> past(prompt.begin(), prompt.begin() + n_past);
  const token_id root = prompt[static_cast<size_t>(n_past)];
  // Root (row 0), then nodes: parents in row indices; two branches of depth 3 and leaves.
  const std::vector<token_id> nodes = {prompt[30], prompt[31], 17, 404, prompt[32], 9, 1200, prompt[33]};
  const std::vector<int32_t> node_parent = {-1, 0, -1, 0, 1, 2, 2, 4};  // draft indices, -1: root
  const auto V = static_cast<size_t>(bundle_->weights->config().n_vocab);
  std::vector<int32_t> blocks = {0, 1, 2, 3};

  auto tree_ex = make_executor(8);
  ASSERT_TRUE(tree_ex);
  std::vector<float> logits;
  forward_batch b;
  b.add(0, past, blocks, 0);
  ASSERT_TRUE(tree_ex->forward(b, logits).ok());
  b.clear();
  std::vector<token_id> toks = {root};
  toks.insert(toks.end(), nodes.begin(), nodes.end());
  std::vector<int32_t> parents = {-1};
  for (int32_t p : node_parent) parents.push_back(p + 1);
  b.add(n_past, toks, blocks, static_cast<int32_t>(toks.size()));
  b.set_tree(parents);
  // A plain sequence in the same batch (other blocks) is not disturbed by the mask.
  b.add(0, past, std::vector<int32_t>{4, 5}, 1);
  std::vector<float> tree_logits;
  ASSERT_TRUE(tree_ex->forward(b, tree_logits).ok());

  for (size_t row = 0; row < toks.size(); ++row) {
    std::vector<token_id> path;  // root .. this node
    for (auto r = static_cast<int32_t>(row); r >= 0; r = parents[static_cast<size_t>(r)]) {
      path.insert(path.begin(), toks[static_cast<size_t>(r)]);
      if (r == 0) break;
    }
    auto chain_ex = make_executor(8);
    forward_batch c;
    std::vector<token_id> all = past;
    all.insert(all.end(), path.begin(), path.end());
    c.add(0, all, blocks, 1);
    std::vector<float> chain_logits;
    ASSERT_TRUE(chain_ex->forward(c, chain_logits).ok());
    expect_close_rows(std::span<const float>(tree_logits).subspan(row * V, V), chain_logits,
                      "node row " + std::to_string(row));
  }
  {
    forward_batch c;
    auto chain_ex = make_executor(8);
    c.add(0, past, blocks, 1);
    std::vector<float> chain_logits;
    ASSERT_TRUE(chain_ex->forward(c, chain_logits).ok());
    expect_close_rows(std::span<const float>(tree_logits).last(V), chain_logits, "the plain sequence beside the tree");
  }

  // Accept root -> node 0 -> node 1 -> node 4 -> node 7 (rows 1, 2, 5, 8): rows 5 and 8 move to
  // slots n_past + 3 and n_past + 4; the next token then sees what a chain would have written.
  const std::vector<int32_t> path_rows = {1, 2, 5, 8};
  forward_batch next;
  for (size_t d = 0; d < path_rows.size(); ++d) {
    const int32_t src = n_past + path_rows[d], dst = n_past + 1 + static_cast<int32_t>(d);
    next.kv_moves.push_back(blocks[static_cast<size_t>(src / 16)] * 16 + src % 16);
    next.kv_moves.push_back(blocks[static_cast<size_t>(dst / 16)] * 16 + dst % 16);
  }
  const token_id after = 77;
  next.add(n_past + 5, std::vector<token_id>{after}, blocks, 1);
  std::vector<float> moved_logits;
  ASSERT_TRUE(tree_ex->forward(next, moved_logits).ok());
  std::vector<token_id> all = past;
  all.push_back(root);
  for (int32_t r : path_rows) all.push_back(toks[static_cast<size_t>(r)]);
  all.push_back(after);
  auto chain_ex = make_executor(8);
  forward_batch c;
  c.add(0, all, blocks, 1);
  std::vector<float> chain_logits;
  ASSERT_TRUE(chain_ex->forward(c, chain_logits).ok());
  expect_close_rows(moved_logits, chain_logits, "the token after a moved path");
}

TEST_F(tree_engine, ngram_trees_give_plain_greedy_output_beside_chains_and_plain_decodes) {
  const auto reqs = requests(96);
  const auto plain = run(reqs, false, {});
  totals t;
  expect_same(run(reqs, true, {}, &t), plain);
  EXPECT_GT(t.tree_steps, 0);
  EXPECT_GT(t.mixed_steps, 0) << "trees shared steps with chains and plain decodes";
  EXPECT_GT(t.accepted, 0);
  EXPECT_GT(t.moved_steps, 0) << "some accepted path left the spine";
  EXPECT_FALSE(t.leaked);
  // Every sequence a tree, width 2 and 4.
  for (int32_t w : {2, 4}) {
    run_opts o;
    o.width = w;
    totals all;
    expect_same(run(requests(96, "t"), true, o, &all), run(requests(96, "t"), false, o));
    EXPECT_FALSE(all.leaked) << w;
  }
}

TEST_F(tree_engine, draft_model_trees_give_plain_greedy_output_beside_chains_and_plain_decodes) {
  const auto reqs = requests(64);
  const auto plain = run(reqs, false, {});
  run_opts o;
  o.draft_target = true;
  totals t;
  expect_same(run(reqs, true, o, &t), plain);
  EXPECT_GT(t.tree_steps, 0);
  EXPECT_GT(t.mixed_steps, 0);
  EXPECT_GT(t.accepted, 0);
  EXPECT_GT(t.moved_steps, 0) << "the draft model's second choice was the target's sometimes";
  EXPECT_FALSE(t.leaked);
}

// spec_draft_length 0 with spec_tree_width 3: each step the chooser gives each 't' sequence a
// depth and a tree or its spine (trees at the ceiling until the step cost is fitted), beside
// spines ('s') and plain decodes ('p'); greedy output stays plain greedy decoding, NGram and
// DraftTarget, and under preemption.
TEST_F(tree_engine, adaptive_draft_length_with_trees_gives_plain_greedy_output) {
  for (bool draft_target : {false, true}) {
    const auto reqs = requests(draft_target ? 48 : 96);
    const auto plain = run(reqs, false, {});
    run_opts o;
    o.adaptive = true;
    o.max_draft_len = 6;
    o.draft_target = draft_target;
    totals t;
    expect_same(run(reqs, true, o, &t), plain);
    EXPECT_GT(t.tree_steps, 0) << draft_target;
    EXPECT_GT(t.accepted, 0) << draft_target;
    EXPECT_FALSE(t.leaked) << draft_target;
  }
  run_opts small;
  small.adaptive = true;
  small.n_blocks = 20;
  small.max_batch_size = 8;
  small.max_num_tokens = 128;
  const auto reqs = requests(64, "t");
  totals p;
  expect_same(run(reqs, true, small, &p), run(reqs, false, {}));
  EXPECT_GT(p.preempted, 0) << "the cache was under pressure";
  EXPECT_GT(p.tree_steps, 0);
  EXPECT_FALSE(p.leaked);
}

TEST_F(tree_engine, prefix_cache_hits_and_preemption_keep_greedy_output) {
  const std::string shared = texts()[0] + texts()[2] + "\n\n";
  std::vector<request> first, second;
  for (int i = 0; i < 6; ++i) {
    request r;
    r.id = std::string(1, "tsp"[i % 3]) + std::to_string(i);
    r.prompt = encode(shared + texts()[static_cast<size_t>(i) + 1]);
    r.params.temperature = 0;
    r.params.max_tokens = 48;
    (i < 2 ? first : second).push_back(std::move(r));
  }
  std::vector<request> all = first;
  all.insert(all.end(), second.begin(), second.end());
  const auto cold = run(all, false, {});
  run_opts o;
  o.prefix_cache = true;
  totals t;
  const auto warm = run(first, true, o, &t, second);
  expect_same(warm, cold);
  for (const request& r : second) EXPECT_GT(warm.at(r.id).use.cached_tokens, 0) << r.id << " hit the prefix cache";
  EXPECT_GT(t.accepted, 0);
  EXPECT_FALSE(t.leaked);

  // A cache too small for the batch: sequences are preempted and recompute.
  run_opts small;
  small.n_blocks = 40;
  small.max_batch_size = 8;
  small.max_num_tokens = 128;
  totals p;
  expect_same(run(all, true, small, &p), cold);
  EXPECT_GT(p.preempted, 0) << "the cache was under pressure";
  EXPECT_GT(p.tree_steps, 0);
  EXPECT_FALSE(p.leaked);
}

TEST_F(tree_engine, seeded_sampling_with_trees_is_reproducible) {
  auto reqs = requests(48, "t");
  for (size_t i = 0; i < reqs.size(); ++i) {
    reqs[i].params.temperature = 0.8f;
    reqs[i].params.seed = 100 + i;
  }
  totals t;
  const auto a = run(reqs, true, {}, &t);
  expect_same(run(reqs, true, {}), a);
  EXPECT_GT(t.accepted, 0);
  EXPECT_FALSE(t.leaked);
}

TEST_F(tree_engine, random_trees_leak_no_block_under_preemption_and_aborts) {
  for (unsigned seed = 0; seed < 2; ++seed) {
    auto ex = make_executor(24);  // 384 tokens: preemption under load
    ASSERT_TRUE(ex);
    engine_config c;
    c.max_batch_size = 6;
    c.max_num_tokens = 96;
    c.max_draft_len = 6;
    c.spec_tree_width = 1 + static_cast<int32_t>(seed % 3) + 1;
    c.model_identity = "troupe-py-7m";
    auto e = engine::create(c, model_info_of(*ex, bundle_->tok.get()), bundle_->tok.get(),
                            std::make_unique<mixed>(ngram(), 0.3, seed));
    ASSERT_TRUE(e.ok()) << e.message();
    std::mt19937 rng(seed);
    const auto t = texts();
    std::set<uint64_t> replay;
    std::set<std::string> accepted, ended;
    int id = 0, preempted = 0, moved = 0, export_refused = 0;
    bool move_pending = false;  // export_kv refused a request after the last step
    for (int step = 0; step < 3000 && (step < 120 || (*e)->has_work()); ++step) {
      if (step < 120 && rng() % 2 == 0) {
        request r;
        r.id = std::string(1, "tsp"[rng() % 3]) + std::to_string(id++);
        r.prompt = encode(t[rng() % t.size()]);
        r.params.max_tokens = 1 + static_cast<int32_t>(rng() % 100);
        r.params.temperature = rng() % 2 ? 0.0f : 0.8f;
        r.params.seed = rng();
        if ((*e)->add_request(r).ok()) accepted.insert(r.id);
      }
      if (step % 23 == 7 && id > 0) {
        const std::string victim = std::string(1, "tsp"[rng() % 3]) + std::to_string(rng() % static_cast<unsigned>(id));
        if ((*e)->abort(victim)) ended.insert(victim);
      }
      step_plan plan = (*e)->schedule();
      moved += !plan.batch.kv_moves.empty();
      // A request refused for a pending move has it in this step's forward (unless it was
      // aborted or preempted meanwhile: then no move is owed).
      if (move_pending && plan.stats.n_preempted == 0 && step % 23 != 7) {
        EXPECT_FALSE(plan.batch.kv_moves.empty()) << "seed " << seed << " step " << step;
      }
      preempted += plan.stats.n_preempted;
      std::vector<float> logits;
      if (!plan.empty()) {
        ASSERT_TRUE(ex->forward(plan.batch, logits).ok());
      }
      step_output so = (*e)->complete(std::move(plan), logits, -1);
      for (const request_output& o : so.outputs) {
        if (o.finished) {
          EXPECT_TRUE(ended.insert(o.id).second) << o.id << " ended twice";
        }
      }
      // Disaggregated hand-off reads a request's blocks between steps: never while an accepted
      // tree path still waits to be moved into place (and reading changes nothing below).
      move_pending = false;
      for (const std::string& rid : accepted) {
        if (ended.count(rid)) continue;
        auto kv = (*e)->export_kv(rid);
        if (!kv.ok() && kv.message().find("not yet moved into place") != std::string::npos) {
          ++export_refused;
          move_pending = true;
        }
      }
      for (const kv_event& ev : (*e)->drain_kv_events()) {
        if (ev.type == kv_event::kind::block_stored) replay.insert(ev.block_hashes.begin(), ev.block_hashes.end());
        if (ev.type == kv_event::kind::block_removed)
          for (uint64_t x : ev.block_hashes) replay.erase(x);
        if (ev.type == kv_event::kind::all_blocks_cleared) replay.clear();
      }
      ASSERT_EQ(std::vector<uint64_t>(replay.begin(), replay.end()), (*e)->cached_block_hashes()) << "seed " << seed;
    }
    EXPECT_FALSE((*e)->has_work()) << "seed " << seed;
    EXPECT_EQ(ended, accepted) << "seed " << seed << ": every accepted request ends";
    EXPECT_EQ((*e)->kv_blocks_free(), (*e)->kv_blocks_total()) << "seed " << seed << ": no block leaked";
    EXPECT_GT(preempted, 0) << "seed " << seed << ": the cache was under pressure";
    EXPECT_GT(moved, 0) << "seed " << seed << ": some accepted path was moved";
    EXPECT_GT(export_refused, 0) << "seed " << seed << ": export_kv met a pending move";
  }
}

TEST_F(tree_engine, trees_are_refused_where_they_cannot_act) {
  auto ex = make_executor(64);
  ASSERT_TRUE(ex);
  engine_config c;
  c.max_draft_len = 4;
  c.spec_tree_width = 2;
  c.adaptive_draft_len = true;
  auto adaptive = engine::create(c, model_info_of(*ex, nullptr), nullptr, ngram());
  EXPECT_TRUE(adaptive.ok()) << "trees go with the adaptive draft length: " << adaptive.message();
  c.adaptive_draft_len = false;
  c.spec_tree_width = 9;
  auto wide = engine::create(c, model_info_of(*ex, nullptr), nullptr, ngram());
  ASSERT_FALSE(wide.ok());
  EXPECT_NE(wide.message().find("must be between 1 and 8"), std::string::npos) << wide.message();
  // A drafter that drafts chains only (the default of the interface: MTP, Eagle).
  class chain_only final : public proposer {
   public:
    draft propose(const sequence&, int32_t) override { return {}; }
    const char* name() const override { return "MTP"; }
  };
  c.spec_tree_width = 2;
  auto mtp = engine::create(c, model_info_of(*ex, nullptr), nullptr, std::make_unique<chain_only>());
  ASSERT_FALSE(mtp.ok());
  EXPECT_NE(mtp.message().find("decoding_type MTP drafts chains only"), std::string::npos) << mtp.message();
}

}  // namespace
}  // namespace troupe
