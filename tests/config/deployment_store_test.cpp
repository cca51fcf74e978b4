// Proves the deployment store and the Management API handlers: create, list, get, delete,
// every field error in a 400 body, restart, and crashes in the middle of writes.
#include "config/deployment_store.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>
#include <tuple>

#include <nlohmann/json.hpp>

#include "config/management_api.hpp"

namespace troupe::config {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kCommit = "0123456789abcdef0123456789abcdef01234567";

class store_test : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("troupe_store_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::path repo = root_ / "hub" / "models--Qwen--Qwen3-4B";
    fs::create_directories(repo / "refs");
    fs::create_directories(repo / "snapshots" / kCommit);
    std::ofstream(repo / "refs" / "main") << kCommit;
    fs::create_directories(root_ / "local-model");
  }
  void TearDown() override { fs::remove_all(root_); }

  store_options options() const {
    store_options o;
    o.state_dir = (root_ / "state").string();
    o.hf_cache = {(root_ / "hub").string(), "HF_HUB_CACHE"};
    o.base_dir = root_.string();
    return o;
  }
  deployment_store open_store() {
    auto s = deployment_store::open(options());
    EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.message());
    return std::move(s.value());
  }
  std::string deployments_dir() const { return (root_ / "state" / "deployments").string(); }

  fs::path root_;
};

TEST_F(store_test, create_list_get_delete) {
  deployment_store store = open_store();
  management_api api(store);
  auto created = api.create(R"({"model": "Qwen/Qwen3-4B", "llm_config": {
      "runtime": {"max_batch_size": 32, "max_num_tokens": 2048},
      "b10_routing_config": {"router_queue_policy": "wspt"}}})");
  ASSERT_EQ(created.status, 201) << created.body;
  json d = json::parse(created.body);
  const std::string id = d["id"];
  EXPECT_EQ(id.rfind("dpl-", 0), 0u);
  EXPECT_EQ(d["name"], "qwen3-4b");  // from the model
  EXPECT_EQ(d["model_path"], (root_ / "hub" / "models--Qwen--Qwen3-4B" / "snapshots" / kCommit).string());
  EXPECT_EQ(d["commit"], kCommit);
  EXPECT_EQ(d["llm_config"]["runtime"]["max_batch_size"], 32);
  EXPECT_EQ(d["llm_config"]["runtime"]["max_seq_len"], 32768);  // defaults filled in
  EXPECT_EQ(d["llm_config"]["runtime"]["served_model_name"], "qwen3-4b");
  EXPECT_EQ(d["llm_config"]["b10_routing_config"]["router_queue_policy"], "wspt");
  EXPECT_EQ(d["llm_config"]["b10_routing_config"]["router_overlap_score_weight"], 3.5);
  EXPECT_EQ(d["settings"]["active"], json({"runtime", "b10_routing_config", "speculative_config", "is_disaggregated", "b10_disagg_config", "autoscaling_settings"}));  // KV-aware routing acts on it
  EXPECT_EQ(d["settings"]["not_yet_active"], json::array());
  EXPECT_TRUE(fs::exists(deployments_dir() + "/" + id + ".json"));

  auto local = api.create(R"({"name": "tiny", "model": "./local-model"})");
  ASSERT_EQ(local.status, 201) << local.body;
  EXPECT_EQ(json::parse(local.body)["model_path"], (root_ / "local-model").string());

  json list = json::parse(api.list().body);
  ASSERT_EQ(list["data"].size(), 2u);
  EXPECT_EQ(list["data"][0]["id"], id);
  EXPECT_EQ(list["data"][1]["name"], "tiny");

  EXPECT_EQ(api.get(id).status, 200);
  EXPECT_EQ(json::parse(api.get("tiny").body)["name"], "tiny");  // by name too

  auto removed = api.remove(id);
  ASSERT_EQ(removed.status, 200) << removed.body;
  EXPECT_EQ(json::parse(removed.body)["deleted"], true);
  EXPECT_FALSE(fs::exists(deployments_dir() + "/" + id + ".json"));
  EXPECT_EQ(api.get(id).status, 404);
  auto again = api.remove(id);
  EXPECT_EQ(again.status, 404);
  EXPECT_EQ(json::parse(again.body)["error"]["code"], "deployment_not_found");
  EXPECT_EQ(json::parse(api.list().body)["data"].size(), 1u);
}

TEST_F(store_test, bad_request_returns_every_field_error) {
  deployment_store store = open_store();
  management_api api(store);
  auto r = api.create(R"({"modle": "Qwen/Qwen3-4B", "llm_config": {
      "b10_disagg_config": {"prefill_workers_per_replica": 1, "decode_workers_per_replica": 1},
      "speculative_config": {"decoding_type": "Eagle"},
      "autoscaling_settings": {"concurrency_target": 10}}})");
  ASSERT_EQ(r.status, 400);
  json body = json::parse(r.body);
  EXPECT_EQ(body["error"]["type"], "invalid_request_error");
  EXPECT_EQ(body["error"]["code"], "invalid_llm_config");
  EXPECT_EQ(body["error"]["param"], "model");
  std::vector<std::string> fields;
  for (const auto& e : body["errors"]) fields.push_back(e["field"]);
  EXPECT_EQ(fields, (std::vector<std::string>{
                        "model", "llm_config.b10_disagg_config",
                        "llm_config.speculative_config.speculative_model_dir",
                        "llm_config.autoscaling_settings.concurrency_target", "modle"}));
  EXPECT_EQ(body["errors"][4]["message"], "modle: unknown field; did you mean model?");
  EXPECT_TRUE(body["errors"][3].contains("fix"));
  EXPECT_TRUE(json::parse(api.list().body)["data"].empty());

  // Error bodies are valid JSON even when the input is not UTF-8 (fuzzer find).
  auto bytes = api.create("{\"model\": \xff\xfe}");
  EXPECT_EQ(bytes.status, 400);
  EXPECT_NO_THROW(json::parse(bytes.body));
  EXPECT_NO_THROW(error_body({{"x\xff", "bad \xc0\x80 \xed\xa0\x80 bytes"}}, "t", "c").dump());

  auto not_json = api.create("{\"model\": ");
  EXPECT_EQ(not_json.status, 400);
  EXPECT_EQ(json::parse(not_json.body)["errors"][0]["message"].get<std::string>().rfind(
                "JSON syntax error", 0),
            0u);
}

TEST_F(store_test, a_model_that_is_not_there_is_a_field_error_saying_where_it_looked) {
  deployment_store store = open_store();
  management_api api(store);
  auto r = api.create(R"({"model": "meta-llama/Llama-3.1-8B"})");
  ASSERT_EQ(r.status, 400);
  json body = json::parse(r.body);
  EXPECT_EQ(body["errors"][0]["field"], "model");
  EXPECT_NE(body["errors"][0]["message"].get<std::string>().find(
                "looked for " + (root_ / "hub" / "models--meta-llama--Llama-3.1-8B").string()),
            std::string::npos)
      << r.body;
  auto rev = api.create(R"({"model": "./local-model", "revision": "dev"})");
  EXPECT_EQ(rev.status, 400);
  EXPECT_EQ(json::parse(rev.body)["errors"][0]["field"], "revision");
}

TEST_F(store_test, names_are_unique_and_checked) {
  deployment_store store = open_store();
  management_api api(store);
  ASSERT_EQ(api.create(R"({"name": "m", "model": "Qwen/Qwen3-4B"})").status, 201);
  auto dup = api.create(R"({"name": "m", "model": "./local-model"})");
  EXPECT_EQ(dup.status, 409);
  EXPECT_EQ(json::parse(dup.body)["error"]["code"], "name_taken");
  auto bad = api.create(R"({"name": "no spaces", "model": "./local-model"})");
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(json::parse(bad.body)["errors"][0]["field"], "name");
}

TEST_F(store_test, settings_say_what_is_active_and_what_is_only_stored) {
  deployment_store store = open_store();
  management_api api(store);
  auto r = api.create(R"({"model": "Qwen/Qwen3-4B", "llm_config": {
      "b10_routing_config": {"router_temperature": 0.1},
      "is_disaggregated": true,
      "b10_disagg_config": {"prefill_workers_per_replica": 1, "decode_workers_per_replica": 2},
      "speculative_config": {"decoding_type": "ngram", "max_draft_len": 4}}})");
  ASSERT_EQ(r.status, 201) << r.body;
  json d = json::parse(r.body);
  EXPECT_EQ(d["settings"]["active"],
            json({"runtime", "b10_routing_config", "speculative_config", "is_disaggregated", "b10_disagg_config",
                  "autoscaling_settings"}));
  EXPECT_EQ(d["settings"]["not_yet_active"], json::array());
  EXPECT_EQ(d["warnings"].size(), 0u);
  // Settings are kept in full.
  EXPECT_EQ(d["llm_config"]["speculative_config"]["decoding_type"], "NGram");
  EXPECT_EQ(d["llm_config"]["speculative_config"]["max_draft_len"], 4);
  EXPECT_EQ(d["llm_config"]["b10_disagg_config"]["decode_workers_per_replica"], 2);
  // Autoscaling a disaggregated deployment (by replication unit) is taken, on creation and on PATCH.
  auto both = api.create(R"({"model": "Qwen/Qwen3-4B", "name": "both", "llm_config": {
      "is_disaggregated": true,
      "b10_disagg_config": {"prefill_workers_per_replica": 1, "decode_workers_per_replica": 1},
      "autoscaling_settings": {"target_in_flight_tokens": 80000, "max_replica": 4}}})");
  ASSERT_EQ(both.status, 201) << both.body;
  EXPECT_EQ(json::parse(both.body)["llm_config"]["autoscaling_settings"]["max_replica"], 4);
  auto patch = api.update(d["id"].get<std::string>(), R"({"autoscaling_settings": {"target_in_flight_tokens": 1000}})");
  EXPECT_EQ(patch.status, 200) << patch.body;
}

TEST_F(store_test, what_is_not_built_or_does_not_fit_is_refused_naming_the_field) {
  deployment_store store = open_store();
  management_api api(store);
  // A head directory that does not exist: refused by name, eagle3_one_model true or not (both
  // are built).
  for (const auto& [spec, field, says] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {R"({"decoding_type": "eagle", "speculative_model_dir": "/models/eagle", "eagle3_one_model": true})",
            "llm_config.speculative_config.speculative_model_dir", "no such directory"},
           {R"({"decoding_type": "eagle", "speculative_model_dir": "/models/eagle"})",
            "llm_config.speculative_config.speculative_model_dir", "no such directory"}}) {
    auto r = api.create(std::string(R"({"model": "Qwen/Qwen3-4B", "llm_config": {"speculative_config": )") + spec + "}}");
    EXPECT_EQ(r.status, 400) << r.body;
    json e = json::parse(r.body);
    EXPECT_EQ(e["error"]["param"], field) << r.body;
    EXPECT_NE(e["error"]["message"].get<std::string>().find(says), std::string::npos) << r.body;
  }
  EXPECT_TRUE(store.list().empty()) << "nothing refused is stored";
  EXPECT_EQ(api.create(R"({"model": "Qwen/Qwen3-4B", "llm_config": {"speculative_config":
      {"decoding_type": "NGram", "max_matching_ngram_size": 3, "min_matching_ngram_size": 2}}})").status, 201);
}

TEST_F(store_test, spec_tree_width_round_trips_and_is_refused_where_it_cannot_act_naming_the_field) {
  deployment_store store = open_store();
  management_api api(store);
  for (const char* spec : {R"({"decoding_type": "NGram", "spec_tree_width": 9})",
                           R"({"decoding_type": "NGram", "spec_tree_width": 0})"}) {
    auto r = api.create(std::string(R"({"model": "Qwen/Qwen3-4B", "llm_config": {"speculative_config": )") + spec + "}}");
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_EQ(json::parse(r.body)["error"]["param"], "llm_config.speculative_config.spec_tree_width") << r.body;
  }
  EXPECT_TRUE(store.list().empty()) << "nothing refused is stored";
  auto r = api.create(R"({"model": "Qwen/Qwen3-4B", "llm_config": {"speculative_config":
      {"decoding_type": "NGram", "max_draft_len": 4, "spec_tree_width": 3}}})");
  ASSERT_EQ(r.status, 201) << r.body;
  const json d = json::parse(r.body);
  EXPECT_EQ(d["llm_config"]["speculative_config"]["spec_tree_width"], 3);
  const json listed = json::parse(api.get(d["id"].get<std::string>()).body);
  EXPECT_EQ(listed["llm_config"]["speculative_config"]["spec_tree_width"], 3);
  // Trees with the adaptive draft length (spec_draft_length 0) are accepted and kept.
  auto adaptive = api.create(R"({"model": "Qwen/Qwen3-4B", "name": "adaptive-trees", "llm_config": {"speculative_config":
      {"decoding_type": "NGram", "max_draft_len": 4, "spec_tree_width": 3, "spec_draft_length": 0}}})");
  ASSERT_EQ(adaptive.status, 201) << adaptive.body;
  const json a = json::parse(adaptive.body);
  EXPECT_EQ(a["llm_config"]["speculative_config"]["spec_tree_width"], 3);
  EXPECT_EQ(a["llm_config"]["speculative_config"]["spec_draft_length"], 0);
}

TEST_F(store_test, mtp_is_checked_against_the_models_mtp_layers_naming_the_field) {
  deployment_store store = open_store();
  management_api api(store);
  auto mtp = [&](int layers) {
    return api.create(R"({"model": "./local-model", "llm_config": {"speculative_config": {"decoding_type": "MTP", )"
                      R"("num_nextn_predict_layers": )" + std::to_string(layers) + "}}}");
  };
  std::ofstream(root_ / "local-model" / "config.json") << R"({"num_hidden_layers": 6})";
  auto none = mtp(1);
  EXPECT_EQ(none.status, 400) << none.body;
  EXPECT_EQ(json::parse(none.body)["error"]["param"], "llm_config.speculative_config.num_nextn_predict_layers");
  EXPECT_NE(none.body.find("has no MTP layers"), std::string::npos) << none.body;
  std::ofstream(root_ / "local-model" / "config.json") << R"({"num_hidden_layers": 6, "num_nextn_predict_layers": 1})";
  auto two = mtp(2);
  EXPECT_EQ(two.status, 400) << two.body;
  EXPECT_NE(two.body.find("2 asked, but the model"), std::string::npos) << two.body;
  EXPECT_TRUE(store.list().empty()) << "nothing refused is stored";
  EXPECT_EQ(mtp(1).status, 201);
}

TEST_F(store_test, deployments_survive_a_restart) {
  std::string id;
  {
    deployment_store store = open_store();
    deployment d;
    auto req = parse_deployment_request(R"({"name": "keep", "model": "Qwen/Qwen3-4B",
        "llm_config": {"runtime": {"kv_cache_memory": "4GiB", "prefill_mode": "chunked"},
                       "speculative_config": {"decoding_type": "MTP", "num_nextn_predict_layers": 1}}})");
    ASSERT_TRUE(req.ok()) << format_errors(req.errors);
    ASSERT_TRUE(store.create(req.value, &d).ok());
    id = d.id;
  }
  deployment_store reopened = open_store();
  EXPECT_TRUE(reopened.load_warnings().empty());
  auto d = reopened.get(id);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->name, "keep");
  EXPECT_EQ(d->commit, kCommit);
  EXPECT_EQ(d->runtime.engine.kv_memory.bytes, 4ull << 30);
  EXPECT_EQ(d->runtime.engine.prefill, prefill_mode::chunked);
  ASSERT_TRUE(d->llm.speculative);
  EXPECT_EQ(d->llm.speculative->type, decoding_type::mtp);
  management_api api(reopened);
  EXPECT_EQ(api.create(R"({"name": "keep", "model": "./local-model"})").status, 409);
}

TEST_F(store_test, autoscaling_settings_change_on_a_running_deployment_and_survive_a_restart) {
  std::string id;
  {
    deployment_store store = open_store();
    management_api api(store);
    auto r = api.create(R"({"name": "scaled", "model": "./local-model", "llm_config": {
        "b10_routing_config": {"router_temperature": 0.1},
        "autoscaling_settings": {"target_in_flight_tokens": 80000, "max_replica": 2}}})");
    ASSERT_EQ(r.status, 201) << r.body;
    id = json::parse(r.body)["id"];
    auto u = api.update("scaled", R"({"autoscaling_settings": {"target_in_flight_tokens": 1000, "min_replica": 2, "max_replica": 4}})");
    ASSERT_EQ(u.status, 200) << u.body;
    json d = json::parse(u.body);
    EXPECT_EQ(d["llm_config"]["autoscaling_settings"]["target_in_flight_tokens"], 1000);
    EXPECT_EQ(d["llm_config"]["autoscaling_settings"]["max_replica"], 4);
    EXPECT_EQ(d["llm_config"]["b10_routing_config"]["router_temperature"], 0.1);  // the rest is kept
    // Validated as a new request's block, with the same messages; nothing else may change.
    auto bad = api.update(id, R"({"autoscaling_settings": {"min_replica": 3, "max_replica": 2}})");
    EXPECT_EQ(bad.status, 400);
    EXPECT_EQ(json::parse(bad.body)["errors"][0]["field"], "llm_config.autoscaling_settings.min_replica") << bad.body;
    auto other = api.update(id, R"({"autoscaling_settings": {}, "b10_routing_config": {}})");
    EXPECT_EQ(other.status, 400);
    EXPECT_EQ(json::parse(other.body)["errors"][0]["field"], "b10_routing_config") << other.body;
    EXPECT_EQ(api.update("nobody", R"({"autoscaling_settings": {}})").status, 404);
  }
  deployment_store reopened = open_store();
  auto d = reopened.get(id);
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->llm.has_autoscaling);
  EXPECT_EQ(d->llm.autoscaling.target_in_flight_tokens, 1000);
  EXPECT_EQ(d->llm.autoscaling.min_replica, 2);
  EXPECT_EQ(d->llm.autoscaling.max_replica, 4);
}

TEST_F(store_test, leftovers_of_an_interrupted_write_are_dropped_and_complete_files_kept) {
  std::string id;
  {
    deployment_store store = open_store();
    deployment d;
    ASSERT_TRUE(store.create(parse_deployment_request(R"({"model": "./local-model"})").value, &d).ok());
    id = d.id;
  }
  // A crash after the temp file was written, before the rename: half a record.
  const std::string tmp = deployments_dir() + "/.dpl-00000000000000aa.json.tmp-123-0";
  std::ofstream(tmp) << R"({"version": 1, "id": "dpl-00000000000000aa", "na)";
  // And one torn record that did reach its final name (cannot happen with our writes, but a
  // disk can): it is skipped with a warning, not trusted, not deleted.
  std::ofstream(deployments_dir() + "/dpl-00000000000000bb.json") << "{\"version\": 1, \"id";
  deployment_store reopened = open_store();
  EXPECT_FALSE(fs::exists(tmp));
  ASSERT_EQ(reopened.load_warnings().size(), 2u);
  EXPECT_NE(reopened.load_warnings()[0].find("left by an interrupted write"), std::string::npos);
  EXPECT_NE(reopened.load_warnings()[1].find("dpl-00000000000000bb.json"), std::string::npos);
  ASSERT_EQ(reopened.list().size(), 1u);
  EXPECT_EQ(reopened.list()[0].id, id);
  EXPECT_TRUE(fs::exists(deployments_dir() + "/dpl-00000000000000bb.json"));
}

TEST_F(store_test, records_are_revalidated_when_loaded) {
  deployment_store store = open_store();
  deployment d;
  ASSERT_TRUE(store.create(parse_deployment_request(R"({"model": "./local-model"})").value, &d).ok());
  const std::string path = deployments_dir() + "/" + d.id + ".json";
  json rec = json::parse(std::ifstream(path));
  rec["llm_config"] = {{"speculative_config", {{"decoding_type", "Eagle"}}}};
  std::ofstream(path) << rec.dump();
  deployment_store reopened = open_store();
  EXPECT_TRUE(reopened.list().empty());
  ASSERT_EQ(reopened.load_warnings().size(), 1u);
  EXPECT_NE(reopened.load_warnings()[0].find("speculative_model_dir: required when decoding_type "
                                             "is Eagle"),
            std::string::npos);
}

// A real crash: a child process creates deployments and reports each one once create()
// returned; the parent kills it with SIGKILL at an arbitrary moment, then reopens the store.
// Every acknowledged deployment must be there and every file must be whole.
TEST_F(store_test, sigkill_during_writes_loses_nothing_acknowledged) {
  for (int round = 0; round < 4; ++round) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::close(fds[0]);
      auto s = deployment_store::open(options());
      if (!s.ok()) ::_exit(3);
      for (int i = 0;; ++i) {
        auto req = parse_deployment_request(
            "{\"name\": \"r" + std::to_string(round) + "-" + std::to_string(i) +
            "\", \"model\": \"./local-model\", \"llm_config\": {\"runtime\": {\"max_batch_size\": " +
            std::to_string(1 + i % 100) + "}}}");
        deployment d;
        if (!s.value().create(req.value, &d).ok()) ::_exit(4);
        std::string line = d.id + "\n";
        if (::write(fds[1], line.data(), line.size()) < 0) ::_exit(5);
      }
    }
    ::close(fds[1]);
    std::set<std::string> acked;
    std::string buf;
    char chunk[256];
    const size_t want = 10 + static_cast<size_t>(round) * 7;
    while (acked.size() < want) {
      ssize_t n = ::read(fds[0], chunk, sizeof chunk);
      ASSERT_GT(n, 0) << "the writer died";
      buf.append(chunk, static_cast<size_t>(n));
      for (size_t nl; (nl = buf.find('\n')) != std::string::npos; buf.erase(0, nl + 1))
        acked.insert(buf.substr(0, nl));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(300 * round));
    ::kill(child, SIGKILL);
    int st = 0;
    ::waitpid(child, &st, 0);
    ASSERT_TRUE(WIFSIGNALED(st));
    ::close(fds[0]);

    deployment_store reopened = open_store();
    for (const auto& w : reopened.load_warnings())
      EXPECT_NE(w.find("left by an interrupted write"), std::string::npos) << w;
    std::set<std::string> loaded;
    for (const auto& d : reopened.list()) loaded.insert(d.id);
    for (const auto& id : acked) EXPECT_TRUE(loaded.count(id)) << "lost acknowledged " << id;
    for (const auto& e : fs::directory_iterator(deployments_dir()))
      EXPECT_FALSE(e.path().filename().string().rfind(".", 0) == 0) << e.path();
  }
}

}  // namespace
}  // namespace troupe::config
