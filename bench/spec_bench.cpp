#include "bench/spec_bench.hpp"

#include <time.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iterator>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench/bench_util.hpp"
#include "runtime/engine/engine.hpp"
#include "runtime/engine/factory.hpp"
#include "runtime/checkpoint.hpp"
#include "runtime/model_bundle.hpp"
#include "runtime/text/tokenizer.hpp"

namespace troupe::bench {

namespace {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

// Files of the models' validation split (models/MODEL_CARD.md: sha256 of the path, 1 in 20):
// code the target never trained on.
const char* const k_held_out[] = {"getopt.py",       "py_compile.py", "xml/etree/ElementInclude.py", "types.py",
                                  "unittest/result.py", "html/__init__.py", "secrets.py",             "asynchat.py"};

}  // namespace

const std::vector<std::string>& held_out_python_files() {
  static const std::vector<std::string> files(std::begin(k_held_out), std::end(k_held_out));
  return files;
}

namespace {

struct workload {
  std::string name;
  std::vector<std::vector<token_id>> prompts;  // one per sequence of the largest batch
};

// Lines of `text` from line `from`, as many as fit n_tokens.
std::string lines_within(const tokenizer& tok, const std::vector<std::string>& lines, size_t from, size_t n_tokens) {
  std::string out;
  for (size_t i = from; i < lines.size(); ++i) {
    const std::string next = out + lines[i] + "\n";
    if (tok.encode(next, false, false).size() > n_tokens && !out.empty()) break;
    out = next;
  }
  return out;
}

result<std::vector<workload>> make_workloads(const tokenizer& tok, const std::string& dir, int n) {
  std::vector<std::vector<std::string>> files;
  for (const std::string& f : held_out_python_files()) {
    std::ifstream in(dir + "/" + f);
    if (!in) continue;
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    if (lines.size() > 40) files.push_back(std::move(lines));
  }
  if (files.empty())
    return make_error(fmt::format("no held-out Python file under {} (the models' validation split: getopt.py, "
                                  "py_compile.py, ...); give --code-dir",
                                  dir));
  workload edit{"edit", {}}, cont{"continue", {}};
  for (int i = 0; i < n; ++i) {
    const auto& lines = files[static_cast<size_t>(i) % files.size()];
    // Different places in the file for the sequences that share one.
    const size_t from = (static_cast<size_t>(i / static_cast<int>(files.size())) * 17) % (lines.size() - 30);
    // (a) The code, then its first three lines again: the continuation rewrites what the prompt holds.
    const std::string code = lines_within(tok, lines, from, 160);
    size_t cut = 0;
    for (int l = 0; l < 3 && cut != std::string::npos; ++l) cut = code.find('\n', cut + (l > 0));
    const std::string again = code.substr(0, cut == std::string::npos ? code.size() : cut + 1);
    edit.prompts.push_back(tok.encode(code + "\n\n# The same code, edited:\n" + again, true, false));
    // (b) Held-out code to continue.
    cont.prompts.push_back(tok.encode(lines_within(tok, lines, from, 128), true, false));
  }
  return std::vector<workload>{std::move(edit), std::move(cont)};
}

struct run_figures {
  int64_t tokens = 0;
  int64_t steps = 0;          // target forward passes
  int64_t verifications = 0;  // sequence-steps that verified drafts
  int64_t tree_verifications = 0;  // of those, the ones that verified a tree (spec_tree_width > 1)
  int64_t drafted = 0, accepted = 0;
  double seconds = 0;
  double cpu_seconds = 0;  // this process's CPU time: steadier than wall time on a shared machine
  // Where the time goes, per kind of step (wall seconds). A decode step: no prefill, no draft;
  // a verify step: no prefill, drafts verified (rows: every token computed, drafts included).
  int64_t decode_steps = 0, verify_steps = 0, verify_rows = 0, prefill_steps = 0;
  double decode_forward_s = 0, verify_forward_s = 0, prefill_forward_s = 0;
  double schedule_s = 0;  // engine::schedule(): the scheduler and the drafter (a model drafter's forwards)
  double complete_s = 0;  // engine::complete(): sampling, verification, and a hidden-state drafter's observe
  // The same in this process's CPU time (steadier on a shared machine).
  double decode_forward_cpu = 0, verify_forward_cpu = 0, schedule_cpu = 0, complete_cpu = 0;
  void add(const run_figures& o) {
    tokens += o.tokens;
    steps += o.steps;
    verifications += o.verifications;
    tree_verifications += o.tree_verifications;
    drafted += o.drafted;
    accepted += o.accepted;
    seconds += o.seconds;
    cpu_seconds += o.cpu_seconds;
    decode_steps += o.decode_steps;
    verify_steps += o.verify_steps;
    verify_rows += o.verify_rows;
    prefill_steps += o.prefill_steps;
    decode_forward_s += o.decode_forward_s;
    verify_forward_s += o.verify_forward_s;
    prefill_forward_s += o.prefill_forward_s;
    schedule_s += o.schedule_s;
    complete_s += o.complete_s;
    decode_forward_cpu += o.decode_forward_cpu;
    verify_forward_cpu += o.verify_forward_cpu;
    schedule_cpu += o.schedule_cpu;
    complete_cpu += o.complete_cpu;
  }
};

double per(double a, double b) { return b > 0 ? a / b : 0.0; }

// Tokens per second once the prompts are in: the prefill forwards' time left out (it is the
// same in every mode and dilutes the speed-up of the decoding that speculation changes).
double decode_tps(const run_figures& f) { return per(static_cast<double>(f.tokens), f.seconds - f.prefill_forward_s); }

// The per-step costs of one mode, in milliseconds.
json step_costs(const run_figures& f) {
  return {{"ms_per_token", 1e3 * per(f.seconds, static_cast<double>(f.tokens))},
          {"decode_steps", f.decode_steps},
          {"ms_decode_forward", 1e3 * per(f.decode_forward_s, static_cast<double>(f.decode_steps))},
          {"verify_steps", f.verify_steps},
          {"rows_per_verify", per(static_cast<double>(f.verify_rows), static_cast<double>(f.verify_steps))},
          {"ms_verify_forward", 1e3 * per(f.verify_forward_s, static_cast<double>(f.verify_steps))},
          {"ms_schedule_per_step", 1e3 * per(f.schedule_s, static_cast<double>(f.steps))},
          {"ms_complete_per_step", 1e3 * per(f.complete_s, static_cast<double>(f.steps))},
          {"cpu_ms_decode_forward", 1e3 * per(f.decode_forward_cpu, static_cast<double>(f.decode_steps))},
          {"cpu_ms_verify_forward", 1e3 * per(f.verify_forward_cpu, static_cast<double>(f.verify_steps))},
          {"cpu_ms_schedule_per_step", 1e3 * per(f.schedule_cpu, static_cast<double>(f.steps))},
          {"cpu_ms_complete_per_step", 1e3 * per(f.complete_cpu, static_cast<double>(f.steps))},
          {"prefill_steps", f.prefill_steps},
          {"ms_prefill_forward_total", 1e3 * f.prefill_forward_s}};
}

double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

struct mode {
  std::string drafter;  // "": plain decoding
  int max_draft_len = 0;
  bool adaptive = false;
  std::string draft_dir;
  int threads = 0;
  int tree_width = 1;
  bool one_model = false;  // Eagle: eagle3_one_model true
};

// The engine of a mode. drafter: "" (plain decoding), "NGram", "MTP", "Eagle" or "DraftTarget"
// (draft_dir: the head or the draft model); adaptive: spec_draft_length 0; tree_width:
// spec_tree_width; one_model: Eagle's eagle3_one_model.
result<std::unique_ptr<engine>> make_mode_engine(executor& ex, const model_bundle& m, const mode& md) {
  engine_spec spec;
  spec.prefix_cache = false;  // every run pays the same prefill
  spec.threads = md.threads;
  if (!md.drafter.empty()) {
    spec.decoding_type = md.drafter;
    spec.max_draft_len = md.max_draft_len;
    spec.speculative_model_dir = md.draft_dir;
    if (md.adaptive) spec.spec_draft_length = 0;
    spec.spec_tree_width = md.tree_width;
    spec.eagle3_one_model = md.one_model;
  }
  return make_engine(spec, ex, m.tok.get(), m.name, nullptr, m.weights);
}

// Prompts [first, first + batch) of w through engine e (a mode's: it serves every round of a
// measurement, one after the other, as a server's engine serves requests).
result<run_figures> run_round(executor& ex, engine& eng, const workload& w, size_t first, int batch, int max_tokens) {
  engine* e = &eng;
  for (int i = 0; i < batch; ++i) {
    request r;
    r.id = std::to_string(first + static_cast<size_t>(i));
    r.prompt = w.prompts[first + static_cast<size_t>(i)];
    r.params.temperature = 0;
    r.params.max_tokens = max_tokens;
    r.params.ignore_eos = true;
    TROUPE_CHECK(e->add_request(std::move(r)));
  }
  run_figures fig;
  const auto t0 = clock_type::now();
  const double c0 = process_cpu_seconds();
  const auto since = [](clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); };
  std::vector<float> logits, hidden;
  while (e->has_work()) {
    auto t = clock_type::now();
    double c = process_cpu_seconds();
    step_plan p = e->schedule();
    fig.schedule_s += since(t);
    fig.schedule_cpu += process_cpu_seconds() - c;
    const step_stats st = p.stats;
    for (const scheduled_seq& q : p.seqs) fig.tree_verifications += q.drafted.is_tree();
    double forward_s = -1;
    if (!p.empty()) {
      t = clock_type::now();
      c = process_cpu_seconds();
      TROUPE_CHECK(ex.forward_hidden(p.batch, logits, hidden));
      forward_s = since(t);
      const double forward_cpu = process_cpu_seconds() - c;
      if (st.n_prefill_tokens > 0) {
        ++fig.prefill_steps;
        fig.prefill_forward_s += forward_s;
      } else if (st.n_draft_tokens > 0) {
        ++fig.verify_steps;
        fig.verify_rows += st.n_scheduled_tokens;
        fig.verify_forward_s += forward_s;
        fig.verify_forward_cpu += forward_cpu;
      } else {
        ++fig.decode_steps;
        fig.decode_forward_s += forward_s;
        fig.decode_forward_cpu += forward_cpu;
      }
    }
    t = clock_type::now();
    c = process_cpu_seconds();
    step_output out = e->complete(std::move(p), logits, forward_s, hidden);
    fig.complete_s += since(t);
    fig.complete_cpu += process_cpu_seconds() - c;
    ++fig.steps;
    for (const auto& o : out.outputs) {
      fig.tokens += static_cast<int64_t>(o.tokens.size());
      if (o.n_drafted > 0) ++fig.verifications;
      fig.drafted += o.n_drafted;
      fig.accepted += o.n_draft_accepted;
    }
  }
  fig.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  fig.cpu_seconds = process_cpu_seconds() - c0;
  return fig;
}

// Rounds of `batch` sequences over different prompts, until at least min_sequences ran (batch 1
// then times several prompts, not one), figures summed.
int rounds_for(int batch, int min_sequences) { return std::max(1, (min_sequences + batch - 1) / batch); }

// Every mode over the same rounds, interleaved round by round (each mode's round r, then round
// r + 1): load that comes and goes on a shared machine falls on every mode alike.
result<std::vector<run_figures>> run_modes(executor& ex, const model_bundle& m, const workload& w, int batch,
                                           int min_sequences, int max_tokens, const std::vector<mode>& modes) {
  std::vector<run_figures> all(modes.size());
  // One engine per mode for all its rounds (made before the clocks start): what a drafter and
  // the adaptive chooser learn in one round (the step cost, the drafter's cost and acceptance)
  // serves the next, as in a server; the sequences themselves start afresh every round.
  std::vector<std::unique_ptr<engine>> engines(modes.size());
  for (size_t i = 0; i < modes.size(); ++i) {
    TROUPE_TRY(engines[i], make_mode_engine(ex, m, modes[i]));
  }
  for (int r = 0; r < rounds_for(batch, min_sequences); ++r)
    for (size_t i = 0; i < modes.size(); ++i) {
      TROUPE_TRY(run_figures f, run_round(ex, *engines[i], w, static_cast<size_t>(r) * static_cast<size_t>(batch), batch,
                                          max_tokens));
      all[i].add(f);
    }
  return all;
}

}  // namespace

result<json> run_spec_bench(const spec_bench_options& o) {
  TROUPE_TRY(text_model tm, load_text_model(o.model, o.threads, "the workloads are text"));
  const model_bundle& m = *tm.bundle;
  executor* ex = tm.ex.get();
  int n = 0;
  for (int b : o.batches) n = std::max(n, b * rounds_for(b, o.sequences));
  TROUPE_TRY(std::vector<workload> workloads, make_workloads(*m.tok, o.code_dir, n));
  json out = {{"model", m.name},
              {"executor", ex->describe()},
              {"decoding_type", "NGram (fixed and adaptive); DraftTarget (adaptive) on continue"},
              {"draft_model", o.draft_model},
              {"max_draft_len", o.max_draft_len},
              {"adaptive", "spec_draft_length 0: each step's length chosen up to max_draft_len"},
              {"spec_tree_width", o.tree_width},
              {"max_tokens", o.max_tokens},
              {"sequences", o.sequences},
              {"decode_speedup", "tokens/s with the prefill forwards' time left out, against plain decoding's"},
              {"step_costs", "per mode, summed over the runs of the fastest rep: ms_decode_forward (a plain "
                             "decode step's forward), ms_verify_forward (a verify step's, rows_per_verify rows), "
                             "ms_schedule_per_step (scheduler and drafter, a model drafter's forwards included), "
                             "ms_complete_per_step (sampling, verification, a hidden-state drafter's observe)"},
              {"sampling", "greedy"},
              {"results", json::array()}};
  for (const workload& w : workloads)
    for (int batch : o.batches) {
      run_figures plain, spec, adapt, draft, tree, draft_chain, draft_tree, tree_adapt, draft_tree_adapt;
      const bool trees = o.tree_width > 1;
      const bool with_draft = !o.draft_model.empty() && w.name == "continue";
      for (int rep = 0; rep < std::max(1, o.reps); ++rep) {
        std::vector<mode> modes = {{}, {"NGram", o.max_draft_len, false, "", 0}, {"NGram", o.max_draft_len, true, "", 0}};
        const size_t i_draft = modes.size();
        if (with_draft) modes.push_back({"DraftTarget", o.max_draft_len, true, o.draft_model, o.threads});
        const size_t i_tree = modes.size();
        if (trees) modes.push_back({"NGram", o.max_draft_len, false, "", 0, o.tree_width});
        const size_t i_draft_chain = modes.size();
        if (trees && with_draft) {
          modes.push_back({"DraftTarget", o.max_draft_len, false, o.draft_model, o.threads});
          modes.push_back({"DraftTarget", o.max_draft_len, false, o.draft_model, o.threads, o.tree_width});
        }
        // Trees with the adaptive draft length (each step's depth, and tree or spine, chosen).
        const size_t i_tree_adapt = modes.size();
        if (trees) modes.push_back({"NGram", o.max_draft_len, true, "", 0, o.tree_width});
        if (trees && with_draft) modes.push_back({"DraftTarget", o.max_draft_len, true, o.draft_model, o.threads, o.tree_width});
        TROUPE_TRY(std::vector<run_figures> f, run_modes(*ex, m, w, batch, o.sequences, o.max_tokens, modes));
        if (rep == 0 || f[0].seconds < plain.seconds) plain = f[0];
        if (rep == 0 || f[1].seconds < spec.seconds) spec = f[1];
        if (rep == 0 || f[2].seconds < adapt.seconds) adapt = f[2];
        if (with_draft && (rep == 0 || f[i_draft].seconds < draft.seconds)) draft = f[i_draft];
        if (trees && (rep == 0 || f[i_tree].seconds < tree.seconds)) tree = f[i_tree];
        if (trees && with_draft) {
          if (rep == 0 || f[i_draft_chain].seconds < draft_chain.seconds) draft_chain = f[i_draft_chain];
          if (rep == 0 || f[i_draft_chain + 1].seconds < draft_tree.seconds) draft_tree = f[i_draft_chain + 1];
          if (rep == 0 || f[i_tree_adapt + 1].seconds < draft_tree_adapt.seconds) draft_tree_adapt = f[i_tree_adapt + 1];
        }
        if (trees && (rep == 0 || f[i_tree_adapt].seconds < tree_adapt.seconds)) tree_adapt = f[i_tree_adapt];
      }
      const double tps_adapt = static_cast<double>(adapt.tokens) / adapt.seconds;
      const double cpu_adapt = static_cast<double>(adapt.tokens) / adapt.cpu_seconds;
      const double tps_plain = static_cast<double>(plain.tokens) / plain.seconds;
      const double tps_spec = static_cast<double>(spec.tokens) / spec.seconds;
      const double cpu_plain = static_cast<double>(plain.tokens) / plain.cpu_seconds;
      const double cpu_spec = static_cast<double>(spec.tokens) / spec.cpu_seconds;
      const auto per = [](int64_t a, int64_t b) { return b > 0 ? static_cast<double>(a) / static_cast<double>(b) : 0.0; };
      out["results"].push_back({{"workload", w.name},
                                {"batch", batch},
                                {"tokens_per_s_plain", tps_plain},
                                {"tokens_per_s_ngram", tps_spec},
                                {"speedup", tps_spec / tps_plain},
                                {"tokens_per_cpu_s_plain", cpu_plain},
                                {"tokens_per_cpu_s_ngram", cpu_spec},
                                {"cpu_speedup", cpu_spec / cpu_plain},
                                {"steps_plain", plain.steps},
                                {"steps_ngram", spec.steps},
                                {"mean_accepted_length", per(spec.accepted + spec.verifications, spec.verifications)},
                                {"speculation_rate", 100.0 * per(spec.accepted, spec.drafted)},
                                {"tokens_per_s_ngram_adaptive", tps_adapt},
                                {"speedup_adaptive", tps_adapt / tps_plain},
                                {"cpu_speedup_adaptive", cpu_adapt / cpu_plain},
                                {"steps_ngram_adaptive", adapt.steps},
                                {"drafted_adaptive", adapt.drafted},
                                {"mean_accepted_length_adaptive",
                                 per(adapt.accepted + adapt.verifications, adapt.verifications)},
                                {"speculation_rate_adaptive", 100.0 * per(adapt.accepted, adapt.drafted)},
                                {"decode_speedup", decode_tps(spec) / decode_tps(plain)},
                                {"decode_speedup_adaptive", decode_tps(adapt) / decode_tps(plain)},
                                {"step_costs", {{"plain", step_costs(plain)},
                                                {"ngram", step_costs(spec)},
                                                {"ngram_adaptive", step_costs(adapt)}}}});
      if (with_draft) {
        const double tps_draft = static_cast<double>(draft.tokens) / draft.seconds;
        const double cpu_draft = static_cast<double>(draft.tokens) / draft.cpu_seconds;
        json& r = out["results"].back();
        r["tokens_per_s_draft_target"] = tps_draft;
        r["speedup_draft_target"] = tps_draft / tps_plain;
        r["cpu_speedup_draft_target"] = cpu_draft / cpu_plain;
        r["steps_draft_target"] = draft.steps;
        r["drafted_draft_target"] = draft.drafted;
        r["mean_accepted_length_draft_target"] = per(draft.accepted + draft.verifications, draft.verifications);
        r["speculation_rate_draft_target"] = 100.0 * per(draft.accepted, draft.drafted);
        r["step_costs"]["draft_target"] = step_costs(draft);
        r["decode_speedup_draft_target"] = decode_tps(draft) / decode_tps(plain);
      }
      // Trees against chains of the same drafter and draft length, measured in the same run.
      auto tps = [](const run_figures& f) { return static_cast<double>(f.tokens) / f.seconds; };
      auto cpu = [](const run_figures& f) { return static_cast<double>(f.tokens) / f.cpu_seconds; };
      if (trees) {
        json& r = out["results"].back();
        r["tokens_per_s_ngram_tree"] = tps(tree);
        r["speedup_ngram_tree"] = tps(tree) / tps_plain;
        r["ngram_tree_vs_chain"] = tps(tree) / tps_spec;
        r["cpu_ngram_tree_vs_chain"] = cpu(tree) / cpu_spec;
        r["cpu_speedup_ngram_tree"] = cpu(tree) / cpu_plain;
        r["steps_ngram_tree"] = tree.steps;
        r["mean_accepted_length_ngram_tree"] = per(tree.accepted + tree.verifications, tree.verifications);
        // Trees with the adaptive length, against plain and against adaptive chains.
        r["tokens_per_s_ngram_tree_adaptive"] = tps(tree_adapt);
        r["speedup_ngram_tree_adaptive"] = tps(tree_adapt) / tps_plain;
        r["cpu_speedup_ngram_tree_adaptive"] = cpu(tree_adapt) / cpu_plain;
        r["ngram_tree_adaptive_vs_adaptive"] = tps(tree_adapt) / tps_adapt;
        r["steps_ngram_tree_adaptive"] = tree_adapt.steps;
        r["mean_accepted_length_ngram_tree_adaptive"] =
            per(tree_adapt.accepted + tree_adapt.verifications, tree_adapt.verifications);
        r["tree_share_ngram_tree_adaptive"] = per(tree_adapt.tree_verifications, tree_adapt.verifications);
        r["step_costs"]["ngram_tree_adaptive"] = step_costs(tree_adapt);
      }
      if (trees && with_draft) {
        json& r = out["results"].back();
        r["tokens_per_s_draft_target_chain"] = tps(draft_chain);
        r["tokens_per_s_draft_target_tree"] = tps(draft_tree);
        r["draft_target_tree_vs_chain"] = tps(draft_tree) / tps(draft_chain);
        r["cpu_draft_target_tree_vs_chain"] = cpu(draft_tree) / cpu(draft_chain);
        r["steps_draft_target_chain"] = draft_chain.steps;
        r["steps_draft_target_tree"] = draft_tree.steps;
        r["mean_accepted_length_draft_target_chain"] =
            per(draft_chain.accepted + draft_chain.verifications, draft_chain.verifications);
        r["mean_accepted_length_draft_target_tree"] =
            per(draft_tree.accepted + draft_tree.verifications, draft_tree.verifications);
        r["tokens_per_s_draft_target_tree_adaptive"] = tps(draft_tree_adapt);
        r["speedup_draft_target_tree_adaptive"] = tps(draft_tree_adapt) / tps_plain;
        r["cpu_speedup_draft_target_tree_adaptive"] = cpu(draft_tree_adapt) / cpu_plain;
        r["draft_target_tree_adaptive_vs_adaptive"] = tps(draft_tree_adapt) / tps(draft);
        r["mean_accepted_length_draft_target_tree_adaptive"] =
            per(draft_tree_adapt.accepted + draft_tree_adapt.verifications, draft_tree_adapt.verifications);
        r["tree_share_draft_target_tree_adaptive"] = per(draft_tree_adapt.tree_verifications, draft_tree_adapt.verifications);
      }
    }
  // A head drafter (MTP: the model's own MTP layer; Eagle: an Eagle-3 head) on free
  // continuation, K drafts per step, into out[key + "_results"] with figures named after key.
  auto head_results = [&](const std::string& type, const std::string& key, int k, const std::string& dir) -> status {
    out[key + "_draft_len"] = k;
    if (!dir.empty()) out[key + "_dir"] = dir;
    json& rows = out[key + "_results"] = json::array();
    const workload& w = workloads.at(1);
    for (int batch : o.batches) {
      run_figures plain, spec, adapt, tree_adapt;  // adapt: spec_draft_length 0 with k as the ceiling
      const bool trees = o.tree_width > 1;      // tree_adapt: the same with spec_tree_width
      run_figures one;                          // Eagle: eagle3_one_model true, k drafts per step
      const bool one_model = type == "Eagle";
      const size_t one_at = trees ? 4 : 3;
      for (int rep = 0; rep < std::max(1, o.reps); ++rep) {
        std::vector<mode> modes = {{}, {type, k, false, dir, o.threads}, {type, k, true, dir, o.threads}};
        if (trees) modes.push_back({type, k, true, dir, o.threads, o.tree_width});
        if (one_model) modes.push_back({type, k, false, dir, o.threads, 1, true});
        TROUPE_TRY(std::vector<run_figures> f, run_modes(*ex, m, w, batch, o.sequences, o.max_tokens, modes));
        if (rep == 0 || f[0].seconds < plain.seconds) plain = f[0];
        if (rep == 0 || f[1].seconds < spec.seconds) spec = f[1];
        if (rep == 0 || f[2].seconds < adapt.seconds) adapt = f[2];
        if (trees && (rep == 0 || f[3].seconds < tree_adapt.seconds)) tree_adapt = f[3];
        if (one_model && (rep == 0 || f[one_at].seconds < one.seconds)) one = f[one_at];
      }
      const auto per = [](int64_t a, int64_t b) { return b > 0 ? static_cast<double>(a) / static_cast<double>(b) : 0.0; };
      const double tps_plain = static_cast<double>(plain.tokens) / plain.seconds;
      const double tps_spec = static_cast<double>(spec.tokens) / spec.seconds;
      const double cpu_plain = static_cast<double>(plain.tokens) / plain.cpu_seconds;
      const double cpu_spec = static_cast<double>(spec.tokens) / spec.cpu_seconds;
      rows.push_back({{"workload", w.name},
                      {"batch", batch},
                      {"tokens_per_s_plain", tps_plain},
                      {"tokens_per_s_" + key, tps_spec},
                      {"speedup", tps_spec / tps_plain},
                      {"tokens_per_cpu_s_plain", cpu_plain},
                      {"tokens_per_cpu_s_" + key, cpu_spec},
                      {"cpu_speedup", cpu_spec / cpu_plain},
                      {"steps_plain", plain.steps},
                      {"steps_" + key, spec.steps},
                      {"mean_accepted_length", per(spec.accepted + spec.verifications, spec.verifications)},
                      {"speculation_rate", 100.0 * per(spec.accepted, spec.drafted)},
                      {"decode_speedup", decode_tps(spec) / decode_tps(plain)},
                      {"cpu_speedup_adaptive", (static_cast<double>(adapt.tokens) / adapt.cpu_seconds) / cpu_plain},
                      {"speedup_adaptive", (static_cast<double>(adapt.tokens) / adapt.seconds) / tps_plain},
                      {"mean_accepted_length_adaptive", per(adapt.accepted + adapt.verifications, adapt.verifications)},
                      {"drafted_adaptive", adapt.drafted},
                      {"step_costs", {{"plain", step_costs(plain)}, {key, step_costs(spec)}, {key + "_adaptive", step_costs(adapt)}}}});
      if (trees) {
        json& r = rows.back();
        const double tps_tree = static_cast<double>(tree_adapt.tokens) / tree_adapt.seconds;
        r["speedup_tree_adaptive"] = tps_tree / tps_plain;
        r["cpu_speedup_tree_adaptive"] = (static_cast<double>(tree_adapt.tokens) / tree_adapt.cpu_seconds) / cpu_plain;
        r["tree_adaptive_vs_adaptive"] = tps_tree / (static_cast<double>(adapt.tokens) / adapt.seconds);
        r["mean_accepted_length_tree_adaptive"] =
            per(tree_adapt.accepted + tree_adapt.verifications, tree_adapt.verifications);
        r["tree_share_tree_adaptive"] = per(tree_adapt.tree_verifications, tree_adapt.verifications);
        r["step_costs"][key + "_tree_adaptive"] = step_costs(tree_adapt);
      }
      if (one_model) {  // beside two-model (the rows above): the head's catch-up inside the forward
        json& row = rows.back();
        const double cpu_one = static_cast<double>(one.tokens) / one.cpu_seconds;
        row["tokens_per_s_" + key + "_one_model"] = static_cast<double>(one.tokens) / one.seconds;
        row["tokens_per_cpu_s_" + key + "_one_model"] = cpu_one;
        row["cpu_speedup_one_model"] = cpu_one / cpu_plain;
        row["one_model_vs_two_model_cpu"] = cpu_one / cpu_spec;
        row["speedup_one_model"] = (static_cast<double>(one.tokens) / one.seconds) / tps_plain;
        row["steps_" + key + "_one_model"] = one.steps;
        row["mean_accepted_length_one_model"] = per(one.accepted + one.verifications, one.verifications);
        row["step_costs"][key + "_one_model"] = step_costs(one);
      }
    }
    return {};
  };
  if (o.mtp_draft_len > 0 && m.weights->config().n_nextn_layers <= 0)
    out["mtp_results"] = fmt::format("skipped: {} has no MTP layers", m.name);
  else if (o.mtp_draft_len > 0)
    TROUPE_CHECK(head_results("MTP", "mtp", o.mtp_draft_len, ""));
  // Eagle-3 (its head's directory), as many drafts per step as MTP (3 when MTP is skipped).
  if (!o.eagle_dir.empty()) TROUPE_CHECK(head_results("Eagle", "eagle", o.mtp_draft_len > 0 ? o.mtp_draft_len : 3, o.eagle_dir));
  return out;
}

}  // namespace troupe::bench
