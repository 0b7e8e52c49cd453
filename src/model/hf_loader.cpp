// ModelSource from a Hugging Face model folder: config.json plus model.safetensors, or the shards
// that model.safetensors.index.json lists. Weights stay in the memory-mapped shards.
#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "formats/hf_config.h"
#include "formats/json_util.h"
#include "formats/safetensors.h"
#include "model/model_source.h"
#include "util/mapped_file.h"

namespace carpool {
namespace {

std::string join(const std::string& dir, const std::string& file) {
  if (dir.empty() || dir.back() == '/') return dir + file;
  return dir + "/" + file;
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

Result<ModelConfig> to_model_config(const HfModelConfig& h, const std::string& dir) {
  ModelConfig c;
  c.architecture = h.architecture;
  c.name = h.name;
  if (c.name.empty()) {
    std::string d = dir;
    while (d.size() > 1 && d.back() == '/') d.pop_back();
    auto slash = d.rfind('/');
    c.name = slash == std::string::npos ? d : d.substr(slash + 1);
  }
  c.vocab_size = h.vocab_size;
  c.hidden_size = h.hidden_size;
  c.intermediate_size = h.intermediate_size;
  c.n_layers = h.num_hidden_layers;
  c.n_heads = h.num_attention_heads;
  c.n_kv_heads = h.num_key_value_heads;
  c.head_dim = h.head_dim;
  c.max_position = h.max_position_embeddings;
  // Sliding-window attention is not implemented; up to the window it equals full attention, so
  // the usable context is capped there rather than computing wrong results past it.
  if (h.sliding_window && *h.sliding_window < c.max_position) c.max_position = *h.sliding_window;
  c.rms_eps = static_cast<float>(h.rms_norm_eps);
  c.rope_theta = static_cast<float>(h.rope_theta);
  if (h.rope_llama3) {
    c.rope_scaling.enabled = true;
    c.rope_scaling.factor = static_cast<float>(h.rope_factor);
    c.rope_scaling.low_freq_factor = static_cast<float>(h.rope_low_freq_factor);
    c.rope_scaling.high_freq_factor = static_cast<float>(h.rope_high_freq_factor);
    c.rope_scaling.original_max_position = h.rope_original_max_position;
  }
  c.rope_style = RopeStyle::kNeox;  // Hugging Face q/k rows are in rotate-half order
  c.qkv_bias = h.attention_bias;
  c.tied_embeddings = h.tie_word_embeddings;
  Status st = c.validate();
  if (!st) return Status::error("config.json: " + st.message());
  return c;
}

// One expected weight: Hugging Face name, canonical name, and shape as [rows, cols]
// (1-D tensors: rows = 0 marks "shape is [cols]").
struct ExpectedWeight {
  std::string hf_name;
  std::string name;
  int64_t rows;  // 0 for 1-D tensors
  int64_t cols;
};

std::vector<ExpectedWeight> expected_weights(const ModelConfig& c) {
  const int64_t h = c.hidden_size, ff = c.intermediate_size;
  const int64_t q = c.n_heads * c.head_dim, kv = c.n_kv_heads * c.head_dim;
  std::vector<ExpectedWeight> w;
  w.push_back({"model.embed_tokens.weight", "token_embd.weight", c.vocab_size, h});
  w.push_back({"model.norm.weight", "output_norm.weight", 0, h});
  if (!c.tied_embeddings) w.push_back({"lm_head.weight", "output.weight", c.vocab_size, h});
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string hf = "model.layers." + std::to_string(i) + ".";
    const std::string blk = "blk." + std::to_string(i) + ".";
    w.push_back({hf + "input_layernorm.weight", blk + "attn_norm.weight", 0, h});
    w.push_back({hf + "post_attention_layernorm.weight", blk + "ffn_norm.weight", 0, h});
    w.push_back({hf + "self_attn.q_proj.weight", blk + "attn_q.weight", q, h});
    w.push_back({hf + "self_attn.k_proj.weight", blk + "attn_k.weight", kv, h});
    w.push_back({hf + "self_attn.v_proj.weight", blk + "attn_v.weight", kv, h});
    w.push_back({hf + "self_attn.o_proj.weight", blk + "attn_output.weight", h, q});
    if (c.qkv_bias) {
      w.push_back({hf + "self_attn.q_proj.bias", blk + "attn_q.bias", 0, q});
      w.push_back({hf + "self_attn.k_proj.bias", blk + "attn_k.bias", 0, kv});
      w.push_back({hf + "self_attn.v_proj.bias", blk + "attn_v.bias", 0, kv});
    }
    w.push_back({hf + "mlp.gate_proj.weight", blk + "ffn_gate.weight", ff, h});
    w.push_back({hf + "mlp.up_proj.weight", blk + "ffn_up.weight", ff, h});
    w.push_back({hf + "mlp.down_proj.weight", blk + "ffn_down.weight", h, ff});
  }
  return w;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// Tensors that checkpoints may carry and carpool does not need.
bool ignorable(const std::string& hf_name, const ModelConfig& c) {
  if (hf_name.size() >= 20 && hf_name.ends_with("rotary_emb.inv_freq")) return true;
  return c.tied_embeddings && hf_name == "lm_head.weight";
}

struct Shards {
  std::vector<SafetensorsFile> files;
  std::map<std::string, const SafetensorsTensor*> tensors;  // HF name -> tensor in files
};

Result<std::shared_ptr<Shards>> open_shards(const std::string& dir) {
  auto shards = std::make_shared<Shards>();
  const std::string index_path = join(dir, "model.safetensors.index.json");
  HfSafetensorsIndex index;
  std::vector<std::string> names;
  if (file_exists(index_path)) {
    CARPOOL_ASSIGN_OR_RETURN(std::string text, read_file(index_path, kMaxHfJsonBytes));
    auto parsed = parse_hf_safetensors_index(text);
    if (!parsed) return Status::error(join(dir, parsed.error()));
    index = std::move(parsed).value();
    names = index.shards;
  } else {
    names.push_back("model.safetensors");
  }
  shards->files.reserve(names.size());
  for (const std::string& name : names) {
    CARPOOL_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::open(join(dir, name)));
    shards->files.push_back(std::move(f));
  }
  // files no longer grows, so pointers into it stay valid.
  for (size_t i = 0; i < shards->files.size(); ++i) {
    for (const SafetensorsTensor& t : shards->files[i].tensors()) {
      if (!shards->tensors.emplace(t.name, &t).second) {
        return Status::error(join(dir, names[i]) + ": tensor " + quote_name(t.name) +
                             " also appears in another shard");
      }
    }
  }
  for (const auto& [tensor, shard] : index.weight_map) {
    size_t i = std::lower_bound(names.begin(), names.end(), shard) - names.begin();
    if (!shards->files[i].find(tensor)) {
      return Status::error(join(dir, "model.safetensors.index.json") + ": tensor " +
                           quote_name(tensor) + " is not in its shard " + quote_name(shard));
    }
  }
  if (!index.weight_map.empty() && index.weight_map.size() != shards->tensors.size()) {
    return Status::error(join(dir, "model.safetensors.index.json") + ": lists " +
                         std::to_string(index.weight_map.size()) + " tensors but the shards hold " +
                         std::to_string(shards->tensors.size()));
  }
  return shards;
}

}  // namespace

Result<ModelSource> load_hf_model(const std::string& dir) {
  const std::string config_path = join(dir, "config.json");
  CARPOOL_ASSIGN_OR_RETURN(std::string config_text, read_file(config_path, kMaxHfJsonBytes));
  auto hf = parse_hf_config(config_text);
  if (!hf) return Status::error(join(dir, hf.error()));
  auto config = to_model_config(hf.value(), dir);
  if (!config) return Status::error(join(dir, config.error()));

  CARPOOL_ASSIGN_OR_RETURN(std::shared_ptr<Shards> shards, open_shards(dir));

  ModelSource src;
  src.format = "safetensors";
  src.config = std::move(config).value();
  const std::vector<ExpectedWeight> expected = expected_weights(src.config);
  std::map<std::string, bool> used;
  for (const ExpectedWeight& e : expected) {
    auto it = shards->tensors.find(e.hf_name);
    if (it == shards->tensors.end()) {
      return Status::error(dir + ": missing tensor '" + e.hf_name + "'");
    }
    const SafetensorsTensor& t = *it->second;
    const std::vector<int64_t> want =
        e.rows == 0 ? std::vector<int64_t>{e.cols} : std::vector<int64_t>{e.rows, e.cols};
    if (t.shape != want) {
      return Status::error(dir + ": tensor '" + e.hf_name + "' has shape " + shape_str(t.shape) +
                           ", expected " + shape_str(want));
    }
    const size_t elem = static_cast<size_t>(dtype_info(t.dtype).block_bytes);
    if (reinterpret_cast<uintptr_t>(t.data) % elem != 0) {
      return Status::error(dir + ": tensor '" + e.hf_name + "' data is not aligned to its " +
                           std::to_string(elem) + "-byte elements");
    }
    src.weights[e.name] = HostWeight{t.dtype, t.data, e.rows == 0 ? 1 : e.rows, e.cols};
    used[e.hf_name] = true;
  }
  for (const auto& [name, _] : shards->tensors) {
    if (!used.count(name) && !ignorable(name, src.config)) {
      return Status::error(dir + ": unexpected tensor " + quote_name(name) + " for a " +
                           src.config.architecture + " model with this config");
    }
  }
  src.keepalive = shards;
  return src;
}

Result<ModelConfig> model_config_from_hf_json(std::string_view json_text) {
  auto h = parse_hf_config(json_text);
  if (!h) return h.status();
  return to_model_config(h.value(), "config.json");
}

}  // namespace carpool
