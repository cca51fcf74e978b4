// Proves `troupe config validate|migrate FILE` by running the built troupe binary.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/cli/run_command.hpp"

namespace {

namespace fs = std::filesystem;

using troupe::testing::run_result;

std::string slurp(const fs::path& p) { return troupe::testing::read_file(p); }

class cli_config_test : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("troupe_cli_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    // A Hugging Face cache with Qwen/Qwen3-4B, the migration page's model.
    const std::string commit = "0123456789abcdef0123456789abcdef01234567";
    fs::path repo = dir_ / "hub" / "models--Qwen--Qwen3-4B";
    fs::create_directories(repo / "refs");
    fs::create_directories(repo / "snapshots" / commit);
    std::ofstream(repo / "refs" / "main") << commit;
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Runs troupe with the test's HF cache; stdout and stderr are captured separately.
  run_result troupe(const std::string& args) {
    return troupe::testing::run_command("HF_HUB_CACHE='" + (dir_ / "hub").string() + "' '" +
                                        troupe::testing::troupe_binary() + "' " + args);
  }
  std::string data(const std::string& name) {
    return troupe::testing::source_dir() + "/tests/config/data/" + name;
  }
  std::string write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return (dir_ / name).string();
  }

  fs::path dir_;
};

TEST_F(cli_config_test, validate_prints_valid_and_exits_zero) {
  const std::string f = data("migrate_page_v2.yaml");
  auto r = troupe("config validate " + f);
  EXPECT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_EQ(r.out, f + ": valid\n");
}

TEST_F(cli_config_test, validate_prints_every_error_with_its_line_and_exits_nonzero) {
  const std::string f = data("migrate_page_v1.yaml");
  auto r = troupe("config validate " + f);
  EXPECT_EQ(r.rc, 1);
  for (const char* line :
       {":2:3: Field trt_llm.inference_stack is not set: troupe runs the v2 inference stack "
        "(BIS-LLM) only\n",
        ":3:5: Field trt_llm.build.base_model is not allowed to be set when using v2 inference "
        "stack\n  fix: Remove. v2 auto-detects from the checkpoint.\n",
        ":7:5: Field trt_llm.build.max_seq_len is not allowed to be set when using v2 inference "
        "stack\n",
        ":11:5: Field trt_llm.build.tensor_parallel_count is not allowed to be set when using v2 "
        "inference stack\n",
        ":12:5: Field trt_llm.build.plugin_configuration is not allowed to be set when using v2 "
        "inference stack\n",
        ":18:5: trt_llm.runtime.enable_chunked_context: unknown field; v2 calls it "
        "enable_chunked_prefill\n"})
    EXPECT_NE(r.out.find(f + line), std::string::npos) << line << "\n" << r.out;
  EXPECT_NE(r.out.find(f + ": 9 errors\n"), std::string::npos) << r.out;
}

TEST_F(cli_config_test, validate_looks_up_the_checkpoint_unless_told_not_to) {
  const std::string f = write("c.yaml",
                              "trt_llm:\n  inference_stack: v2\n  build:\n"
                              "    checkpoint_repository:\n      repo: org/missing\n");
  auto r = troupe("config validate " + f);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("trt_llm.build.checkpoint_repository.repo: org/missing is not in the "
                       "local Hugging Face cache: looked for " +
                       (dir_ / "hub" / "models--org--missing").string() +
                       " (hub cache " + (dir_ / "hub").string() + ", from HF_HUB_CACHE)"),
            std::string::npos)
      << r.out;
  auto schema = troupe("config validate --schema-only " + f);
  EXPECT_EQ(schema.rc, 0) << schema.out;
  EXPECT_EQ(schema.out, f + ": valid\n");

  fs::create_directories(dir_ / "weights");
  const std::string local = write("l.yaml",
                                  "trt_llm:\n  inference_stack: v2\n  build:\n"
                                  "    checkpoint_repository:\n      source: LOCAL\n"
                                  "      repo: weights\n");
  EXPECT_EQ(troupe("config validate " + local).rc, 0);  // relative to the file
}

TEST_F(cli_config_test, migrate_prints_the_golden_v2_file_and_notes) {
  auto r = troupe("config migrate " + data("migrate_page_v1.yaml"));
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, slurp(data("migrate_page_v2.yaml")));
  EXPECT_NE(r.err.find("note: step 1: added inference_stack: v2 at the top of trt_llm\n"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("note: step 7: replaced enable_chunked_context: true with "
                       "enable_chunked_prefill: true\n"),
            std::string::npos);
  EXPECT_NE(r.err.find("note: comments and layout: kept"), std::string::npos);
  // And the printed file is valid, checkpoint included.
  const std::string out = write("v2.yaml", r.out);
  EXPECT_EQ(troupe("config validate " + out).rc, 0);
}

TEST_F(cli_config_test, migrate_converts_concurrency_with_the_averages_given) {
  auto def = troupe("config migrate " + data("migrate_comments_v1.yaml"));
  EXPECT_EQ(def.rc, 0) << def.err;
  EXPECT_EQ(def.out, slurp(data("migrate_comments_v2.yaml")));
  EXPECT_NE(def.err.find("ASSUMING requests average 4000 input and 1000 output tokens"),
            std::string::npos);
  auto kib = troupe("config migrate --avg-input-tokens 4096 --avg-output-tokens 1024 " +
                    data("migrate_comments_v1.yaml"));
  EXPECT_EQ(kib.rc, 0) << kib.err;
  EXPECT_NE(kib.out.find("target_in_flight_tokens: 51200"), std::string::npos) << kib.out;
  auto bad = troupe("config migrate --avg-input-tokens lots " + data("migrate_comments_v1.yaml"));
  EXPECT_EQ(bad.rc, 2);
}

TEST_F(cli_config_test, migrate_writes_a_file_and_reports_what_is_left_to_fix) {
  const std::string out = (dir_ / "out.yaml").string();
  auto r = troupe("config migrate -o " + out + " " + data("migrate_page_v1.yaml"));
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(slurp(out), slurp(data("migrate_page_v2.yaml")));

  const std::string f = write("typo.yaml",
                              "trt_llm:\n  build:\n    checkpoint_repository:\n      repo: a/b\n"
                              "  runtime:\n    max_batch_sise: 8\n");
  auto left = troupe("config migrate " + f);
  EXPECT_EQ(left.rc, 1);
  EXPECT_NE(left.err.find("the migrated file still has 1 error:\n<migrated>:7:5: "
                          "trt_llm.runtime.max_batch_sise: unknown field; did you mean "
                          "max_batch_size?"),
            std::string::npos)
      << left.err;
}

TEST_F(cli_config_test, usage_errors_exit_two) {
  EXPECT_EQ(troupe("config").rc, 2);
  EXPECT_EQ(troupe("config validate").rc, 2);
  EXPECT_EQ(troupe("config frobnicate x.yaml").rc, 2);
  auto missing = troupe("config validate " + (dir_ / "nope.yaml").string());
  EXPECT_EQ(missing.rc, 2);
  EXPECT_NE(missing.err.find("cannot read"), std::string::npos);
}

}  // namespace
