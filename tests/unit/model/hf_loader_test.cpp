// load_hf_model: the tiny golden models written by transformers (config values, canonical names,
// shapes, and every tensor's bytes against the reference's checksums), then hostile folders.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/model_source.h"
#include "util/mapped_file.h"

namespace carpool {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

std::string golden_dir(const std::string& model) {
  return std::string(CARPOOL_SOURCE_DIR) + "/tests/golden/models/" + model;
}

// Hugging Face name -> canonical name, written independently of the loader's table.
std::string canonical(const std::string& hf) {
  static const std::map<std::string, std::string> kTop = {
      {"model.embed_tokens.weight", "token_embd.weight"},
      {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"}};
  static const std::map<std::string, std::string> kLayer = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.q_proj.bias", "attn_q.bias"},
      {"self_attn.k_proj.bias", "attn_k.bias"},
      {"self_attn.v_proj.bias", "attn_v.bias"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"}};
  if (auto it = kTop.find(hf); it != kTop.end()) return it->second;
  const std::string prefix = "model.layers.";
  if (hf.rfind(prefix, 0) != 0) return "";
  size_t dot = hf.find('.', prefix.size());
  std::string layer = hf.substr(prefix.size(), dot - prefix.size());
  auto it = kLayer.find(hf.substr(dot + 1));
  return it == kLayer.end() ? "" : "blk." + layer + "." + it->second;
}

// Every tensor the reference stored maps to a loaded weight with the same first element and sum.
void check_tensors_against_golden(const ModelSource& src, const std::string& model) {
  auto text = read_file(golden_dir(model) + "/golden.json", 1 << 22);
  ASSERT_TRUE(text.is_ok()) << text.error();
  Json golden = Json::parse(text.value());
  size_t checked = 0;
  for (const auto& [hf_name, check] : golden["tensor_checks"].items()) {
    const std::string name = canonical(hf_name);
    ASSERT_FALSE(name.empty()) << hf_name;
    auto it = src.weights.find(name);
    ASSERT_NE(it, src.weights.end()) << name;
    const HostWeight& w = it->second;
    ASSERT_EQ(w.dtype, DType::kF32) << name;
    const int64_t n = w.rows * w.cols;
    std::vector<float> v(static_cast<size_t>(n));
    std::memcpy(v.data(), w.data, v.size() * sizeof(float));
    double sum = 0;
    for (float x : v) sum += x;
    EXPECT_EQ(v[0], check[0].get<float>()) << name;
    EXPECT_NEAR(sum, check[1].get<double>(), 1e-9 * (1.0 + std::fabs(sum)) + 1e-9) << name;
    ++checked;
  }
  EXPECT_EQ(checked, src.weights.size()) << "every loaded weight is covered by the fixture";
}

void expect_shape(const ModelSource& src, const std::string& name, int64_t rows, int64_t cols) {
  auto it = src.weights.find(name);
  ASSERT_NE(it, src.weights.end()) << name;
  EXPECT_EQ(it->second.rows, rows) << name;
  EXPECT_EQ(it->second.cols, cols) << name;
}

TEST(HfLoader, LoadsTinyLlama3) {
  auto r = load_hf_model(golden_dir("tiny-llama3"));
  ASSERT_TRUE(r.is_ok()) << r.error();
  const ModelSource& src = r.value();
  const ModelConfig& c = src.config;
  EXPECT_EQ(src.format, "safetensors");
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.vocab_size, 311);
  EXPECT_EQ(c.hidden_size, 96);
  EXPECT_EQ(c.intermediate_size, 112);
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.max_position, 256);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope_theta, 500000.f);
  EXPECT_TRUE(c.rope_scaling.enabled);
  EXPECT_FLOAT_EQ(c.rope_scaling.factor, 8.f);
  EXPECT_FLOAT_EQ(c.rope_scaling.low_freq_factor, 1.f);
  EXPECT_FLOAT_EQ(c.rope_scaling.high_freq_factor, 4.f);
  EXPECT_EQ(c.rope_scaling.original_max_position, 32);
  EXPECT_EQ(c.rope_style, RopeStyle::kNeox);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.tied_embeddings);
  EXPECT_EQ(c.name, "tiny-llama3");  // no _name_or_path: the folder name

  EXPECT_EQ(src.weights.size(), 3u + 2u * 9u);
  expect_shape(src, "token_embd.weight", 311, 96);
  expect_shape(src, "output.weight", 311, 96);
  expect_shape(src, "output_norm.weight", 1, 96);
  expect_shape(src, "blk.1.attn_q.weight", 64, 96);  // n_heads * head_dim != hidden
  expect_shape(src, "blk.1.attn_k.weight", 32, 96);
  expect_shape(src, "blk.1.attn_v.weight", 32, 96);
  expect_shape(src, "blk.1.attn_output.weight", 96, 64);
  expect_shape(src, "blk.0.ffn_gate.weight", 112, 96);
  expect_shape(src, "blk.0.ffn_down.weight", 96, 112);
  expect_shape(src, "blk.0.attn_norm.weight", 1, 96);
  check_tensors_against_golden(src, "tiny-llama3");
}

TEST(HfLoader, LoadsTinyQwen2WithBiasAndTiedEmbeddings) {
  auto r = load_hf_model(golden_dir("tiny-qwen2") + "/");
  ASSERT_TRUE(r.is_ok()) << r.error();
  const ModelSource& src = r.value();
  EXPECT_EQ(src.config.architecture, "qwen2");
  EXPECT_TRUE(src.config.qkv_bias);
  EXPECT_TRUE(src.config.tied_embeddings);
  EXPECT_FALSE(src.config.rope_scaling.enabled);
  EXPECT_FLOAT_EQ(src.config.rope_theta, 1e6f);
  EXPECT_FLOAT_EQ(src.config.rms_eps, 1e-6f);
  EXPECT_EQ(src.weights.count("output.weight"), 0u);
  expect_shape(src, "token_embd.weight", 293, 64);
  expect_shape(src, "blk.0.attn_q.bias", 1, 64);
  expect_shape(src, "blk.0.attn_k.bias", 1, 32);
  expect_shape(src, "blk.1.attn_v.bias", 1, 32);
  EXPECT_EQ(src.weights.count("blk.0.attn_output.bias"), 0u);
  check_tensors_against_golden(src, "tiny-qwen2");
}

TEST(HfLoader, LoadsShardedTinyMistral) {
  auto r = load_hf_model(golden_dir("tiny-mistral"));
  ASSERT_TRUE(r.is_ok()) << r.error();
  const ModelSource& src = r.value();
  EXPECT_EQ(src.config.architecture, "mistral");
  EXPECT_EQ(src.config.n_kv_heads, 1);
  EXPECT_EQ(src.config.head_dim, 32);
  EXPECT_EQ(src.config.n_layers, 3);
  // Sliding-window attention is not implemented: context capped at the window.
  EXPECT_EQ(src.config.max_position, 128);
  expect_shape(src, "blk.2.attn_q.weight", 128, 72);
  expect_shape(src, "blk.2.attn_k.weight", 32, 72);
  expect_shape(src, "blk.2.attn_output.weight", 72, 128);
  check_tensors_against_golden(src, "tiny-mistral");
}

// --- hostile folders ---

struct Tensor {
  std::string name;
  std::string dtype = "F32";
  std::vector<int64_t> shape;
};

void write_safetensors(const fs::path& path, const std::vector<Tensor>& tensors) {
  Json header = Json::object();
  uint64_t offset = 0;
  for (const Tensor& t : tensors) {
    uint64_t n = t.dtype == "F32" ? 4 : t.dtype == "I8" ? 1 : 2;
    for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
    header[t.name] = {
        {"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h += ' ';
  std::ofstream out(path, std::ios::binary);
  uint64_t len = h.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>(len >> (8 * i)));
  out << h << std::string(offset, '\0');
}

// A valid 1-layer llama: hidden 8, 2 heads of 4, 1 kv head, ff 12, vocab 10.
const char* kConfig = R"({"architectures":["LlamaForCausalLM"],"vocab_size":10,"hidden_size":8,
    "intermediate_size":12,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,
    "rms_norm_eps":1e-5,"rope_theta":10000.0,"tie_word_embeddings":false})";

std::vector<Tensor> valid_tensors() {
  return {{"model.embed_tokens.weight", "F32", {10, 8}},
          {"model.norm.weight", "F32", {8}},
          {"lm_head.weight", "F32", {10, 8}},
          {"model.layers.0.input_layernorm.weight", "F32", {8}},
          {"model.layers.0.post_attention_layernorm.weight", "F32", {8}},
          {"model.layers.0.self_attn.q_proj.weight", "F32", {8, 8}},
          {"model.layers.0.self_attn.k_proj.weight", "F32", {4, 8}},
          {"model.layers.0.self_attn.v_proj.weight", "F32", {4, 8}},
          {"model.layers.0.self_attn.o_proj.weight", "F32", {8, 8}},
          {"model.layers.0.mlp.gate_proj.weight", "F32", {12, 8}},
          {"model.layers.0.mlp.up_proj.weight", "F32", {12, 8}},
          {"model.layers.0.mlp.down_proj.weight", "F32", {8, 12}}};
}

class HfLoaderHostile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("hf_loader_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    write("config.json", kConfig);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& file, const std::string& text) {
    std::ofstream(dir_ / file) << text;
  }
  // Loads and expects an error naming every fragment, on one line.
  void expect_error(std::initializer_list<const char*> fragments) {
    auto r = load_hf_model(dir_.string());
    ASSERT_FALSE(r.is_ok());
    EXPECT_EQ(r.error().find('\n'), std::string::npos) << r.error();
    for (const char* f : fragments) EXPECT_NE(r.error().find(f), std::string::npos) << r.error();
  }
  fs::path dir_;
};

TEST_F(HfLoaderHostile, ValidSyntheticFolderLoads) {
  write_safetensors(dir_ / "model.safetensors", valid_tensors());
  auto r = load_hf_model(dir_.string());
  ASSERT_TRUE(r.is_ok()) << r.error();
  EXPECT_EQ(r->weights.size(), 12u);
}

TEST_F(HfLoaderHostile, AcceptsHalfPrecisionWeights) {
  auto tensors = valid_tensors();
  tensors[5].dtype = "BF16";
  tensors[6].dtype = "F16";
  write_safetensors(dir_ / "model.safetensors", tensors);
  auto r = load_hf_model(dir_.string());
  ASSERT_TRUE(r.is_ok()) << r.error();
  EXPECT_EQ(r->weights.at("blk.0.attn_q.weight").dtype, DType::kBF16);
  EXPECT_EQ(r->weights.at("blk.0.attn_k.weight").dtype, DType::kF16);
}

TEST_F(HfLoaderHostile, MissingTensor) {
  auto tensors = valid_tensors();
  tensors.erase(tensors.begin() + 7);
  write_safetensors(dir_ / "model.safetensors", tensors);
  expect_error({"missing tensor", "model.layers.0.self_attn.v_proj.weight"});
}

TEST_F(HfLoaderHostile, WrongShape) {
  auto tensors = valid_tensors();
  tensors[6].shape = {8, 8};  // k_proj as if n_kv_heads == n_heads
  write_safetensors(dir_ / "model.safetensors", tensors);
  expect_error({"k_proj.weight", "[8, 8]", "expected [4, 8]"});
}

TEST_F(HfLoaderHostile, UnsupportedDtype) {
  auto tensors = valid_tensors();
  tensors[1].dtype = "I8";
  write_safetensors(dir_ / "model.safetensors", tensors);
  expect_error({"model.norm.weight", "'I8'"});
}

TEST_F(HfLoaderHostile, UnexpectedTensor) {
  auto tensors = valid_tensors();
  tensors.push_back({"model.layers.0.self_attn.o_proj.bias", "F32", {8}});
  write_safetensors(dir_ / "model.safetensors", tensors);
  expect_error({"unexpected tensor", "o_proj.bias"});
}

TEST_F(HfLoaderHostile, MissingFiles) {
  expect_error({"model.safetensors"});
  fs::remove(dir_ / "config.json");
  expect_error({"config.json"});
}

TEST_F(HfLoaderHostile, BadConfig) {
  write_safetensors(dir_ / "model.safetensors", valid_tensors());
  write("config.json", R"({"architectures":["LlamaForCausalLM"],"vocab_size":10})");
  expect_error({"config.json", "missing required field 'hidden_size'"});
  write("config.json", "{not json");
  expect_error({"config.json", "invalid JSON"});
  // Heads that do not divide: caught by ModelConfig::validate.
  std::string bad = kConfig;
  bad.replace(bad.find("\"num_key_value_heads\":1"), 23, "\"num_key_value_heads\":3");
  write("config.json", bad);
  expect_error({"config.json", "n_kv_heads"});
}

TEST_F(HfLoaderHostile, ShardedFolder) {
  auto tensors = valid_tensors();
  std::vector<Tensor> a(tensors.begin(), tensors.begin() + 6),
      b(tensors.begin() + 6, tensors.end());
  write_safetensors(dir_ / "a.safetensors", a);
  write_safetensors(dir_ / "b.safetensors", b);
  Json map = Json::object();
  for (const auto& t : a) map[t.name] = "a.safetensors";
  for (const auto& t : b) map[t.name] = "b.safetensors";
  write("model.safetensors.index.json", Json{{"weight_map", map}}.dump());
  auto r = load_hf_model(dir_.string());
  ASSERT_TRUE(r.is_ok()) << r.error();
  EXPECT_EQ(r->weights.size(), 12u);

  // The index names a tensor in the wrong shard.
  Json wrong = map;
  wrong["lm_head.weight"] = "b.safetensors";
  write("model.safetensors.index.json", Json{{"weight_map", wrong}}.dump());
  expect_error({"'lm_head.weight'", "not in its shard", "'b.safetensors'"});

  // A shard the index lists is missing.
  Json missing = map;
  missing["lm_head.weight"] = "c.safetensors";
  write("model.safetensors.index.json", Json{{"weight_map", missing}}.dump());
  expect_error({"c.safetensors"});

  // A shard holds a tensor the index does not list / the same tensor twice.
  write_safetensors(dir_ / "b.safetensors", tensors);
  write("model.safetensors.index.json", Json{{"weight_map", map}}.dump());
  expect_error({"also appears in another shard"});

  // Every shard is validated, even when its tensors are not needed.
  write_safetensors(dir_ / "b.safetensors", b);
  std::ofstream(dir_ / "c.safetensors") << "garbage";
  Json extra = map;
  extra["model.layers.0.self_attn.rotary_emb.inv_freq"] = "c.safetensors";
  write("model.safetensors.index.json", Json{{"weight_map", extra}}.dump());
  expect_error({"c.safetensors"});

  write("model.safetensors.index.json", R"({"weight_map":{"lm_head.weight":"../b.safetensors"}})");
  expect_error({"plain file name"});
}

}  // namespace
}  // namespace carpool
