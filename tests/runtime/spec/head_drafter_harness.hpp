// head_drafter_harness: what the MTP and Eagle-3 engine tests share (both drafters run a head
// over the target's hidden states, runtime/spec/head_chain.hpp): a wrapper that drafts only for
// some sequences (the head keeps the others' rows, and runs nothing for them), one that pauses
// and resumes drafting, the prompts, and a loop that runs
// requests through one engine on the shipped model, stepping schedule / forward / complete by
// hand to count mixed steps, preemptions and drafts, and the head's KV left afterwards.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "runtime/engine/engine.hpp"
#include "runtime/engine/factory.hpp"
#include "runtime/engine/sequence.hpp"
#include "runtime/text/tokenizer.hpp"
#include "tests/runtime/shipped_model_fixture.hpp"

namespace troupe::testing {

struct outcome {
  std::vector<token_id> tokens;
  std::string finish;
};

struct run_totals {
  int64_t drafted = 0, accepted = 0;
  int mixed_steps = 0;  // steps with a verification beside a plain decode or a prefill
  int preempted = 0;
  int tree_steps = 0;   // steps verifying a tree draft (spec_tree_width > 1)
  int moved_steps = 0;  // steps moving an accepted path's KV off a tree's spine
  bool target_leaked = false;
  int32_t head_blocks_after = -1;  // the head layer's KV blocks still held at the end
  size_t head_tracked_after = 0;
  int64_t head_rows = -1;          // rows the head ran, where the drafter counts them
  int64_t fused_rows = -1;         // of those, rows run inside the target's forward (Eagle one-model)
  int64_t catch_up_rows = -1;      // and catch-up rows run after the target's step
};

using draft_log = std::map<std::pair<std::string, int32_t>, std::vector<token_id>>;

// What run() reads of a head drafter once the requests are done.
class head_stats {
 public:
  virtual ~head_stats() = default;
  virtual int32_t head_blocks() const = 0;
  virtual size_t head_tracked() const = 0;
  virtual int64_t head_rows() const = 0;
  virtual int64_t fused_rows() const { return -1; }
  virtual int64_t catch_up_rows() const { return -1; }
};

// The drafter P behind a test's own propose(): everything else (the head's hidden rows, the
// one-model seam, trees, and the counters head_stats reads) forwards to P.
template <class P>
class wrapped_head_proposer : public proposer, public head_stats {
 public:
  explicit wrapped_head_proposer(std::unique_ptr<P> p) : inner_(std::move(p)) {}
  void forget(const sequence& s) override { inner_->forget(s); }
  const char* name() const override { return inner_->name(); }
  bool drafts_trees() const override { return inner_->drafts_trees(); }
  bool wants_hidden() const override { return true; }
  std::vector<int32_t> aux_hidden_layers() const override { return inner_->aux_hidden_layers(); }
  void observe(std::span<const kept_rows> rows, size_t W) override { inner_->observe(rows, W); }
  std::shared_ptr<fused_head> fused() override { return inner_->fused(); }
  void plan_fused(const forward_batch& b, std::span<const sequence* const> seqs) override { inner_->plan_fused(b, seqs); }
  int32_t head_blocks() const override { return inner_->kv_blocks_used(); }
  size_t head_tracked() const override { return inner_->n_tracked(); }
  int64_t head_rows() const override {
    if constexpr (requires(const P& p) { p.rows_run(); })
      return inner_->rows_run();
    else
      return -1;
  }
  int64_t fused_rows() const override {
    if constexpr (requires(const P& p) { p.fused_rows_run(); })
      return inner_->fused_rows_run();
    else
      return -1;
  }
  int64_t catch_up_rows() const override {
    if constexpr (requires(const P& p) { p.catch_up_rows_run(); })
      return inner_->catch_up_rows_run();
    else
      return -1;
  }
  const P& inner() const { return *inner_; }

 protected:
  // P's draft for s, at this wrapper's tree width.
  draft inner_draft(const sequence& s, int32_t max_tokens) {
    inner_->set_tree_width(this->tree_width());
    return inner_->propose(s, max_tokens);
  }

 private:
  std::unique_ptr<P> inner_;
};

// The drafter P, drafting for ids that start with 's' only (the others decode plainly) when
// only_s; it keeps every sequence's head KV in step either way. log: each draft by (id, length).
template <class P>
class only_s_proposer final : public wrapped_head_proposer<P> {
 public:
  only_s_proposer(std::unique_ptr<P> p, bool only_s, draft_log* log = nullptr)
      : wrapped_head_proposer<P>(std::move(p)), only_s_(only_s), log_(log) {}
  draft propose(const sequence& s, int32_t max_tokens) override {
    if (only_s_ && s.id[0] != 's') return {};
    draft d = this->inner_draft(s, max_tokens);
    if (log_) (*log_)[{s.id, s.size()}] = d.tokens;
    return d;
  }

 private:
  bool only_s_;
  draft_log* log_;
};

// The drafter P asked for drafts only at lengths that are multiples of `period` (between them
// the sequence decodes plainly and the head only keeps the target's rows, as when the adaptive
// draft length holds it at 0); its drafts reach the engine when `use`, else every step decodes
// plainly. log: each draft asked, by (id, length).
template <class P>
class paused_proposer final : public wrapped_head_proposer<P> {
 public:
  paused_proposer(std::unique_ptr<P> p, int32_t period, bool use, draft_log* log)
      : wrapped_head_proposer<P>(std::move(p)), period_(period), use_(use), log_(log) {}
  draft propose(const sequence& s, int32_t max_tokens) override {
    if (s.size() % period_ != 0) return {};
    draft d = this->inner_draft(s, max_tokens);
    if (log_) (*log_)[{s.id, s.size()}] = d.tokens;
    return use_ ? d : draft{};
  }

 private:
  int32_t period_;
  bool use_;
  draft_log* log_;
};

class head_drafter_fixture : public shipped_model_fixture {
 protected:
  static std::vector<token_id> encode(const std::string& text) { return bundle_->tok->encode(text, true, false); }

  static std::vector<std::string> texts() {
    return {"import os\nimport sys\n\n\ndef main(argv):\n    for name in argv:\n        path = os.path.join(",
            "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n        self.items",
            "for i in range(10):\n    print(i)\nfor i in range(10):\n    print(",
            "def parse(line):\n    \"\"\"Split a line into fields.\"\"\"\n    fields = line.split(",
            "x = 1\ny = 2\nz = x + y\n",
            "try:\n    import json\nexcept ImportError:\n    json = None\n\n\ndef load(path):\n    with open("};
  }

  // Greedy requests over texts(), max_tokens + i tokens each; with mixed, every second one's id
  // starts with 'p' (an only_s_proposer then leaves it to plain decoding).
  static std::vector<request> requests(int max_tokens, bool mixed) {
    std::vector<request> reqs;
    int i = 0;
    for (const std::string& t : texts()) {
      request r;
      r.id = (mixed && i % 2 ? "p" : "s") + std::to_string(i);
      r.prompt = encode(t);
      r.params.temperature = 0;
      r.params.max_tokens = max_tokens + i;
      r.params.ignore_eos = true;
      reqs.push_back(std::move(r));
      ++i;
    }
    return reqs;
  }

  // Runs every request in one engine (waves one after the other; drafts from prop when given).
  static std::map<std::string, outcome> run(const std::vector<std::vector<request>>& waves,
                                            std::unique_ptr<proposer> prop, run_totals* totals = nullptr,
                                            bool prefix_cache = false, int32_t max_draft_len = 3,
                                            int32_t n_blocks = 512, int32_t tree_width = 1, bool adaptive = false) {
    auto ex = make_executor(n_blocks);
    std::map<std::string, outcome> out;
    if (!ex) return out;
    const proposer* raw = prop.get();
    engine_config c;
    c.prefix_cache = prefix_cache;
    c.max_draft_len = max_draft_len;
    c.spec_tree_width = tree_width;
    c.adaptive_draft_len = adaptive;  // spec_draft_length 0: max_draft_len is the ceiling
    c.model_identity = "troupe-py-7m";
    auto e = engine::create(c, model_info_of(*ex, bundle_->tok.get()), bundle_->tok.get(), std::move(prop));
    EXPECT_TRUE(e.ok()) << e.message();
    if (!e.ok()) return out;
    for (const auto& wave : waves) {
      for (const request& r : wave) EXPECT_TRUE((*e)->add_request(r).ok()) << r.id;
      while ((*e)->has_work()) {
        step_plan plan = (*e)->schedule();
        bool verify = false, other = false;
        for (const scheduled_seq& s : plan.seqs) (s.phase == seq_phase::verify ? verify : other) = true;
        if (totals && verify && other) ++totals->mixed_steps;
        if (totals) {
          totals->preempted += plan.stats.n_preempted;
          for (const scheduled_seq& s : plan.seqs) totals->tree_steps += s.drafted.is_tree();
          totals->moved_steps += !plan.batch.kv_moves.empty();
        }
        std::vector<float> logits, hidden;
        if (!plan.empty()) {
          EXPECT_TRUE(ex->forward_hidden(plan.batch, logits, hidden).ok());
        }
        step_output so = (*e)->complete(std::move(plan), logits, -1, hidden);
        for (const request_output& o : so.outputs) {
          outcome& x = out[o.id];
          x.tokens.insert(x.tokens.end(), o.tokens.begin(), o.tokens.end());
          if (o.finished) x.finish = finish_reason_name(*o.finished);
          if (totals) {
            totals->drafted += o.n_drafted;
            totals->accepted += o.n_draft_accepted;
          }
        }
      }
    }
    if (totals) {
      (*e)->drain_kv_events();
      // Blocks the prefix cache keeps are free to take: every block is free when idle.
      totals->target_leaked = (*e)->kv_blocks_free() != (*e)->kv_blocks_total();
      if (const auto* p = dynamic_cast<const head_stats*>(raw)) {
        totals->head_blocks_after = p->head_blocks();
        totals->head_tracked_after = p->head_tracked();
        totals->head_rows = p->head_rows();
        totals->fused_rows = p->fused_rows();
        totals->catch_up_rows = p->catch_up_rows();
      }
    }
    return out;
  }

  // The equivalences every head drafter keeps; make(k) builds the drafter drafting k tokens.
  template <class Make>
  static std::unique_ptr<proposer> wrap(Make make, int32_t k, bool only_s, draft_log* log = nullptr) {
    using P = typename decltype(make(k))::element_type;
    return std::make_unique<only_s_proposer<P>>(make(k), only_s, log);
  }

  // Batching changes no draft: each sequence's drafts at each length, batched with the others,
  // are the drafts it gets alone (f32 path); and every verification had a draft to verify.
  template <class Make>
  static void expect_batched_drafts_equal_drafts_alone(Make make) {
    const auto reqs = requests(32, false);
    draft_log batched, alone;
    run({reqs}, wrap(make, 3, false, &batched));
    for (const request& r : reqs) run({{r}}, wrap(make, 3, false, &alone));
    EXPECT_EQ(batched.size(), alone.size());
    for (const auto& [key, d] : alone) {
      ASSERT_TRUE(batched.count(key)) << key.first << " at " << key.second;
      EXPECT_EQ(batched.at(key), d) << key.first << " at " << key.second;
      EXPECT_GE(d.size(), 1u) << key.first << " at " << key.second;  // fewer only near max_tokens
    }
  }

  // A head that resumes after pausing drafts what a head asked at every step drafts: the
  // rows kept while it paused are caught up (in one batch) when it is next asked. Reference:
  // every length of plain decoding asked (drafts unused); paused: asked every 5th length, its
  // drafts verified (greedy = plain). A head that pauses runs fewer rows where it can count them.
  template <class Make>
  static void expect_paused_drafts_equal_always_on_drafts(Make make) {
    const auto reqs = requests(40, false);
    draft_log always, paused;
    run_totals ta, tp;
    using P = typename decltype(make(3))::element_type;
    const auto plain = run({reqs}, std::make_unique<paused_proposer<P>>(make(3), 1, false, &always), &ta);
    const auto spec = run({reqs}, std::make_unique<paused_proposer<P>>(make(3), 5, true, &paused), &tp);
    EXPECT_EQ(ta.drafted, 0);
    EXPECT_GT(tp.accepted, 0);
    for (const auto& [id, o] : plain) EXPECT_EQ(spec.at(id).tokens, o.tokens) << id;
    EXPECT_GE(paused.size(), 2 * reqs.size());
    for (const auto& [key, d] : paused) {
      ASSERT_TRUE(always.count(key)) << key.first << " at " << key.second;
      EXPECT_EQ(d, always.at(key)) << key.first << " at " << key.second;
    }
    if (ta.head_rows >= 0) {
      EXPECT_LT(tp.head_rows, ta.head_rows);
    }
    EXPECT_EQ(tp.head_blocks_after, 0);
    EXPECT_EQ(tp.head_tracked_after, 0u);
  }

  // The adaptive draft length's catch-up window (head_chain_options::catch_up_window):
  // make(k, window) with window 4 (and max_pending 6): a head asked every 5th length runs only
  // the latest 4 pending rows before drafting (a paused sequence at 6 pending drops its oldest
  // instead of running them), so it runs fewer rows than the head that catches up every row
  // (window 0); the output stays plain greedy's, its drafts are still accepted, and its KV
  // blocks are all freed.
  template <class Make>
  static void expect_catch_up_window_is_lossless(Make make) {
    const auto reqs = requests(40, false);
    using P = typename decltype(make(3, 0))::element_type;
    run_totals tw, tf;
    const auto plain = run({reqs}, nullptr);
    const auto windowed = run({reqs}, std::make_unique<paused_proposer<P>>(make(3, 4), 5, true, nullptr), &tw);
    const auto full = run({reqs}, std::make_unique<paused_proposer<P>>(make(3, 0), 5, true, nullptr), &tf);
    for (const request& r : reqs) {
      EXPECT_EQ(windowed.at(r.id).tokens, plain.at(r.id).tokens) << r.id;
      EXPECT_EQ(full.at(r.id).tokens, plain.at(r.id).tokens) << r.id;
    }
    EXPECT_GT(tw.accepted, 0);
    ASSERT_GE(tw.head_rows, 0);
    EXPECT_LT(tw.head_rows, tf.head_rows) << "the window runs fewer catch-up rows";
    EXPECT_EQ(tw.head_blocks_after, 0);
    EXPECT_EQ(tw.head_tracked_after, 0u);
    EXPECT_FALSE(tw.target_leaked);
  }

  // Greedy = plain at draft lengths 1, 2, 4, with a second wave of the same prompts: prefix-cache
  // hits, whose cached positions the head never saw (it starts those sequences' entries at the
  // first computed position).
  template <class Make>
  static void expect_greedy_equals_plain_with_prefix_cache_hits(Make make) {
    const auto reqs = requests(24, false);
    std::vector<request> again = reqs;
    for (request& r : again) r.id = "s-again-" + r.id;
    const auto plain = run({reqs, again}, nullptr, nullptr, true);
    for (int32_t k : {1, 2, 4}) {
      run_totals t;
      const auto spec = run({reqs, again}, wrap(make, k, false), &t, true, k);
      for (const auto& [id, o] : plain) EXPECT_EQ(spec.at(id).tokens, o.tokens) << id << " k=" << k;
      EXPECT_GT(t.accepted, 0) << "k=" << k;
      EXPECT_FALSE(t.target_leaked) << "k=" << k;
      EXPECT_EQ(t.head_blocks_after, 0) << "k=" << k;
    }
  }

  // spec_tree_width 3: the chain with the head's two next-best tokens beside each position,
  // verified with the tree mask, beside plain decodes; the accepted path's hidden rows reach the
  // head in order even when the path left the spine.
  template <class Make>
  static void expect_trees_give_plain_greedy_output(Make make) {
    const auto reqs = requests(48, true);
    const auto plain = run({reqs}, nullptr);
    run_totals t;
    const auto spec = run({reqs}, wrap(make, 3, true), &t, false, 3, 512, 3);
    for (const auto& [id, o] : plain) EXPECT_EQ(spec.at(id).tokens, o.tokens) << id;
    EXPECT_GT(t.tree_steps, 0);
    EXPECT_GT(t.mixed_steps, 0);
    EXPECT_GT(t.accepted, 0);
    EXPECT_GT(t.moved_steps, 0) << "the head's second choice was the target's sometimes";
    EXPECT_FALSE(t.target_leaked);
    EXPECT_EQ(t.head_blocks_after, 0);
  }

  // spec_tree_width 3 with the adaptive draft length (spec_draft_length 0): the chooser gives each
  // drafting sequence a depth up to 4 and the tree or its spine each step (trees at the ceiling
  // until the step cost is fitted), beside plain decodes; greedy output is plain greedy.
  template <class Make>
  static void expect_adaptive_trees_give_plain_greedy_output(Make make) {
    const auto reqs = requests(48, true);
    const auto plain = run({reqs}, nullptr);
    run_totals t;
    const auto spec = run({reqs}, wrap(make, 4, true), &t, false, 4, 512, 3, true);
    for (const auto& [id, o] : plain) EXPECT_EQ(spec.at(id).tokens, o.tokens) << id;
    EXPECT_GT(t.tree_steps, 0);
    EXPECT_GT(t.mixed_steps, 0);
    EXPECT_GT(t.accepted, 0);
    EXPECT_FALSE(t.target_leaked);
    EXPECT_EQ(t.head_blocks_after, 0);
  }

  // 20 blocks of 16 tokens for 6 sequences of ~90 tokens: some are preempted and recomputed.
  template <class Make>
  static void expect_greedy_equals_plain_under_preemption(Make make) {
    const auto reqs = requests(60, false);
    const auto plain = run({reqs}, nullptr, nullptr, false, 3, 512);
    run_totals t;
    const auto spec = run({reqs}, wrap(make, 3, false), &t, false, 3, 20);
    for (const auto& [id, o] : plain) EXPECT_EQ(spec.at(id).tokens, o.tokens) << id;
    EXPECT_GT(t.preempted, 0);
    EXPECT_FALSE(t.target_leaked);
    EXPECT_EQ(t.head_blocks_after, 0);
  }
};

}  // namespace troupe::testing
