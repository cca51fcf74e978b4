// Proves checkpoints open in both layouts with the right configuration, and that every kind
// of broken model gives an error naming the file and the field or tensor, never a crash.
#include "runtime/checkpoint.hpp"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "runtime/gguf.hpp"
#include "runtime/mapped_file.hpp"
#include "tests/test_data.hpp"

namespace troupe {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::json;

std::string models() { return testing::build_dir() + "/testmodels"; }

// A writable copy of a test model directory.
class broken_model : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("troupe-ckpt-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::copy(models() + "/qwen3-hf-bf16", dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  json config() { return json::parse(std::ifstream(dir_ / "config.json")); }
  void write_config(const json& c) { std::ofstream(dir_ / "config.json") << c.dump(); }
  std::string open_error() {
    auto c = checkpoint::open(dir_.string());
    EXPECT_FALSE(c.ok());
    return c.ok() ? "" : c.message();
  }
  fs::path dir_;
};

TEST(checkpoint, opens_hugging_face_directories) {
  auto c = checkpoint::open(models() + "/qwen3-hf-bf16");
  ASSERT_TRUE(c.ok()) << c.message();
  const model_config& m = c->config();
  EXPECT_EQ(m.arch, architecture::qwen3);
  EXPECT_EQ(m.n_layer, 2);
  EXPECT_EQ(m.head_dim, 32);
  EXPECT_EQ(m.q_dim(), 128);
  EXPECT_TRUE(m.qk_norm);
  EXPECT_FALSE(m.tie_embeddings);
  EXPECT_EQ(c->weights().layers.size(), 2u);
  EXPECT_EQ(c->weights().layers[0].wq.type, dtype::bf16);
  EXPECT_FALSE(c->chat_template().empty());  // Qwen3's, from tokenizer_config.json
  EXPECT_FALSE(c->tokenizer_json_path().empty());
  EXPECT_NE(c->describe().find("Qwen3ForCausalLM, 2 layers"), std::string::npos) << c->describe();
}

TEST(checkpoint, opens_gguf_with_permuted_llama_rope_and_rope_freqs) {
  auto c = checkpoint::open(models() + "/llama3-q8_0.gguf");
  ASSERT_TRUE(c.ok()) << c.message();
  EXPECT_EQ(c->format(), checkpoint_format::gguf);
  EXPECT_EQ(c->config().rope, rope_style::interleaved);
  EXPECT_TRUE(c->config().tie_embeddings);
  EXPECT_EQ(c->weights().rope_freq_factors.size(), 8u);  // head_dim 16
  EXPECT_EQ(c->weights().layers[1].w_down.type, dtype::q8_0);
  EXPECT_NE(c->gguf(), nullptr);
}

TEST(checkpoint, llama3_rope_scaling_matches_the_gguf_factors) {
  auto hf = checkpoint::open(models() + "/llama3-hf-f32");
  auto gg = checkpoint::open(models() + "/llama3-f32.gguf");
  ASSERT_TRUE(hf.ok() && gg.ok());
  auto a = hf->config().rope_inv_freq();
  auto b = gg->config().rope_inv_freq();
  const auto& f = gg->weights().rope_freq_factors;
  ASSERT_EQ(a.size(), f.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i] / f[i], 1e-6 * a[i]);
}

TEST(checkpoint, sharded_safetensors_with_an_index) {
  // Split the single file into per-tensor shards through the index, as large models ship.
  const fs::path dir = fs::temp_directory_path() / ("troupe-sharded-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json"})
    fs::copy(models() + "/llama2-hf-f32/" + f, dir / f);
  const std::string script = R"(
import sys; sys.path.insert(0, sys.argv[1] + '/scripts'); import model_files as mf, json
src, dst = sys.argv[2], sys.argv[3]
t = mf.read_safetensors(src + '/model.safetensors')
names = sorted(t); half = len(names) // 2
mf.write_safetensors(dst + '/model-00001-of-00002.safetensors', {n: t[n] for n in names[:half]})
mf.write_safetensors(dst + '/model-00002-of-00002.safetensors', {n: t[n] for n in names[half:]})
wm = {n: 'model-0000%d-of-00002.safetensors' % (1 if i < half else 2) for i, n in enumerate(names)}
json.dump({'weight_map': wm}, open(dst + '/model.safetensors.index.json', 'w'))
)";
  std::ofstream(dir / "split.py") << script;
  const std::string cmd = testing::python() + " " + (dir / "split.py").string() + " " + testing::source_dir() +
                          " " + models() + "/llama2-hf-f32 " + dir.string();
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  auto c = checkpoint::open(dir.string());
  ASSERT_TRUE(c.ok()) << c.message();
  EXPECT_EQ(c->config().n_layer, 2);
  fs::remove(dir / "model-00002-of-00002.safetensors");
  auto missing = checkpoint::open(dir.string());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("model-00002-of-00002.safetensors"), std::string::npos) << missing.message();
  fs::remove_all(dir);
}

TEST_F(broken_model, unknown_architecture_is_named) {
  json c = config();
  c["architectures"] = {"GPTNeoXForCausalLM"};
  write_config(c);
  const std::string e = open_error();
  EXPECT_NE(e.find("config.json: architecture GPTNeoXForCausalLM is not supported"), std::string::npos) << e;
}

TEST_F(broken_model, missing_config_field_is_named) {
  json c = config();
  c.erase("hidden_size");
  write_config(c);
  const std::string e = open_error();
  EXPECT_NE(e.find("config.json: missing required field hidden_size"), std::string::npos) << e;
}

TEST_F(broken_model, config_field_of_wrong_type_is_named) {
  json c = config();
  c["num_hidden_layers"] = "two";
  write_config(c);
  const std::string e = open_error();
  EXPECT_NE(e.find("num_hidden_layers must be a positive integer"), std::string::npos) << e;
}

TEST_F(broken_model, misshapen_tensor_is_named) {
  json c = config();
  c["intermediate_size"] = 96;  // the file's MLP weights are 128 wide
  write_config(c);
  const std::string e = open_error();
  EXPECT_NE(e.find("model.safetensors: tensor model.layers.0.mlp.gate_proj.weight has shape [128, 64], expected [96, 64]"),
            std::string::npos)
      << e;
}

TEST_F(broken_model, missing_tensor_is_named) {
  json c = config();
  c["num_hidden_layers"] = 3;
  write_config(c);
  const std::string e = open_error();
  EXPECT_NE(e.find("tensor model.layers.2.input_layernorm.weight is missing"), std::string::npos) << e;
}

TEST_F(broken_model, truncated_weights_are_an_error) {
  const fs::path f = dir_ / "model.safetensors";
  fs::resize_file(f, fs::file_size(f) - 1000);
  const std::string e = open_error();
  EXPECT_NE(e.find("model.safetensors: tensor"), std::string::npos) << e;
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
}

TEST_F(broken_model, corrupt_config_json_is_an_error) {
  std::ofstream(dir_ / "config.json") << "{\"architectures\": [";
  const std::string e = open_error();
  EXPECT_NE(e.find("config.json: not valid JSON"), std::string::npos) << e;
}

TEST(checkpoint, truncated_gguf_model_is_an_error) {
  const std::string src = models() + "/qwen2-bf16.gguf";
  const std::string dst = fs::temp_directory_path() / ("troupe-trunc-" + std::to_string(::getpid()) + ".gguf");
  fs::copy_file(src, dst, fs::copy_options::overwrite_existing);
  fs::resize_file(dst, fs::file_size(dst) / 2);
  auto c = checkpoint::open(dst);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.message().find(dst), std::string::npos) << c.message();
  fs::remove(dst);
}

TEST(checkpoint, not_a_model_is_an_error) {
  auto a = checkpoint::open("/nonexistent/model");
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.message().find("no such file or directory"), std::string::npos);
  auto b = checkpoint::open(fs::temp_directory_path().string());
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.message().find("not a model directory"), std::string::npos) << b.message();
}

}  // namespace
}  // namespace troupe
