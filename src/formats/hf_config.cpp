#include "formats/hf_config.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "formats/json_util.h"

namespace carpool {
namespace {

using Json = nlohmann::json;

constexpr int kMaxConfigDepth = 16;

Status cfg_err(const std::string& msg) {
  return Status::error("config.json: " + msg);
}

// Integer field in [lo, hi]; nullopt when absent or null.
Result<std::optional<int64_t>> opt_int(const Json& j, const char* key, int64_t lo, int64_t hi,
                                       const char* file = "config.json") {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::optional<int64_t>();
  const std::string where = std::string(file) + ": '" + key + "'";
  if (!it->is_number_integer()) return Status::error(where + " is not an integer");
  int64_t v = 0;
  if (it->is_number_unsigned()) {
    uint64_t u = it->get<uint64_t>();
    if (u > static_cast<uint64_t>(hi)) {
      return Status::error(where + " = " + std::to_string(u) + " is out of range [" +
                           std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    v = static_cast<int64_t>(u);
  } else {
    v = it->get<int64_t>();
  }
  if (v < lo || v > hi) {
    return Status::error(where + " = " + std::to_string(v) + " is out of range [" +
                         std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return std::optional<int64_t>(v);
}

Result<int64_t> req_int(const Json& j, const char* key, int64_t lo, int64_t hi) {
  CARPOOL_ASSIGN_OR_RETURN(auto v, opt_int(j, key, lo, hi));
  if (!v) return cfg_err(std::string("missing required field '") + key + "'");
  return *v;
}

// Finite number field (integer or float); nullopt when absent or null.
Result<std::optional<double>> opt_num(const Json& j, const char* key,
                                      const char* file = "config.json") {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::optional<double>();
  const std::string where = std::string(file) + ": '" + key + "'";
  if (!it->is_number()) return Status::error(where + " is not a number");
  double v = it->get<double>();
  if (!std::isfinite(v)) return Status::error(where + " is not finite");
  return std::optional<double>(v);
}

Result<std::optional<bool>> opt_bool(const Json& j, const char* key,
                                     const char* file = "config.json") {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::optional<bool>();
  if (!it->is_boolean()) {
    return Status::error(std::string(file) + ": '" + key + "' is not a boolean");
  }
  return std::optional<bool>(it->get<bool>());
}

Result<std::optional<std::string>> opt_str(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) return cfg_err(std::string("'") + key + "' is not a string");
  return std::optional<std::string>(it->get<std::string>());
}

Result<std::string> detect_architecture(const Json& j) {
  auto arch_it = j.find("architectures");
  if (arch_it != j.end() && !arch_it->is_null()) {
    if (!arch_it->is_array() || arch_it->empty() || !(*arch_it)[0].is_string()) {
      return cfg_err("'architectures' is not a non-empty list of strings");
    }
    const auto& a = (*arch_it)[0].get_ref<const std::string&>();
    if (a == "LlamaForCausalLM") return std::string("llama");
    if (a == "MistralForCausalLM") return std::string("mistral");
    if (a == "Qwen2ForCausalLM") return std::string("qwen2");
    return cfg_err("unsupported architecture " + quote_name(a) +
                   " (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)");
  }
  CARPOOL_ASSIGN_OR_RETURN(auto model_type, opt_str(j, "model_type"));
  if (!model_type) return cfg_err("missing 'architectures' and 'model_type'");
  if (*model_type == "llama" || *model_type == "mistral" || *model_type == "qwen2") {
    return *model_type;
  }
  return cfg_err("unsupported model_type " + quote_name(*model_type));
}

// Rope parameters: transformers 4.x writes "rope_theta" and "rope_scaling"; 5.x writes
// "rope_parameters" holding both. Either form is accepted.
Status parse_rope(const Json& j, HfModelConfig& c) {
  const Json* scaling = nullptr;
  auto params_it = j.find("rope_parameters");
  if (params_it != j.end() && !params_it->is_null()) {
    if (!params_it->is_object()) return cfg_err("'rope_parameters' is not an object");
    scaling = &*params_it;
    CARPOOL_ASSIGN_OR_RETURN(auto theta, opt_num(*params_it, "rope_theta"));
    if (theta) c.rope_theta = *theta;
  }
  CARPOOL_ASSIGN_OR_RETURN(auto theta, opt_num(j, "rope_theta"));
  if (theta) c.rope_theta = *theta;
  if (!(c.rope_theta > 0)) return cfg_err("'rope_theta' must be positive");

  auto scaling_it = j.find("rope_scaling");
  if (scaling_it != j.end() && !scaling_it->is_null()) {
    if (!scaling_it->is_object()) return cfg_err("'rope_scaling' is not an object");
    scaling = &*scaling_it;
  }
  if (!scaling) return Status::ok();

  std::string type = "default";
  for (const char* key : {"rope_type", "type"}) {
    auto it = scaling->find(key);
    if (it != scaling->end() && !it->is_null()) {
      if (!it->is_string())
        return cfg_err(std::string("rope scaling '") + key + "' is not a string");
      type = it->get<std::string>();
      break;
    }
  }
  if (type == "default") return Status::ok();
  if (type != "llama3") {
    return cfg_err("unsupported rope scaling type " + quote_name(type) + " (supported: llama3)");
  }
  c.rope_llama3 = true;
  CARPOOL_ASSIGN_OR_RETURN(auto factor, opt_num(*scaling, "factor"));
  CARPOOL_ASSIGN_OR_RETURN(auto low, opt_num(*scaling, "low_freq_factor"));
  CARPOOL_ASSIGN_OR_RETURN(auto high, opt_num(*scaling, "high_freq_factor"));
  CARPOOL_ASSIGN_OR_RETURN(auto orig,
                           opt_int(*scaling, "original_max_position_embeddings", 1, kMaxHfDim));
  if (!factor || !low || !high || !orig) {
    return cfg_err(
        "llama3 rope scaling needs factor, low_freq_factor, high_freq_factor and "
        "original_max_position_embeddings");
  }
  c.rope_factor = *factor;
  c.rope_low_freq_factor = *low;
  c.rope_high_freq_factor = *high;
  c.rope_original_max_position = *orig;
  return Status::ok();
}

}  // namespace

Result<HfModelConfig> parse_hf_config(std::string_view json_text) {
  if (json_text.size() > kMaxHfJsonBytes) return cfg_err("file is too large");
  Json j;
  CARPOOL_RETURN_IF_ERROR(parse_json_strict(json_text, kMaxConfigDepth, "config.json", j));
  if (!j.is_object()) return cfg_err("top level is not an object");

  HfModelConfig c;
  CARPOOL_ASSIGN_OR_RETURN(c.architecture, detect_architecture(j));
  CARPOOL_ASSIGN_OR_RETURN(auto name, opt_str(j, "_name_or_path"));
  if (name) c.name = *name;

  CARPOOL_ASSIGN_OR_RETURN(c.vocab_size, req_int(j, "vocab_size", 1, kMaxHfDim));
  CARPOOL_ASSIGN_OR_RETURN(c.hidden_size, req_int(j, "hidden_size", 1, kMaxHfDim));
  CARPOOL_ASSIGN_OR_RETURN(c.intermediate_size, req_int(j, "intermediate_size", 1, kMaxHfDim));
  CARPOOL_ASSIGN_OR_RETURN(c.num_hidden_layers, req_int(j, "num_hidden_layers", 1, kMaxHfDim));
  CARPOOL_ASSIGN_OR_RETURN(c.num_attention_heads, req_int(j, "num_attention_heads", 1, kMaxHfDim));
  CARPOOL_ASSIGN_OR_RETURN(auto kv, opt_int(j, "num_key_value_heads", 1, kMaxHfDim));
  c.num_key_value_heads = kv ? *kv : c.num_attention_heads;
  CARPOOL_ASSIGN_OR_RETURN(auto head_dim, opt_int(j, "head_dim", 1, kMaxHfDim));
  if (head_dim) {
    c.head_dim = *head_dim;
  } else {
    if (c.hidden_size % c.num_attention_heads != 0) {
      return cfg_err("hidden_size " + std::to_string(c.hidden_size) +
                     " is not divisible by num_attention_heads " +
                     std::to_string(c.num_attention_heads) + " and head_dim is not given");
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  // Defaults of the transformers config classes.
  const int64_t default_max_pos = c.architecture == "mistral" ? 4096 * 32
                                  : c.architecture == "qwen2" ? 32768
                                                              : 2048;
  CARPOOL_ASSIGN_OR_RETURN(auto max_pos, opt_int(j, "max_position_embeddings", 1, kMaxHfDim));
  c.max_position_embeddings = max_pos ? *max_pos : default_max_pos;

  CARPOOL_ASSIGN_OR_RETURN(auto eps, opt_num(j, "rms_norm_eps"));
  if (eps) c.rms_norm_eps = *eps;
  if (!(c.rms_norm_eps > 0 && c.rms_norm_eps < 1))
    return cfg_err("'rms_norm_eps' must be in (0, 1)");
  CARPOOL_RETURN_IF_ERROR(parse_rope(j, c));

  CARPOOL_ASSIGN_OR_RETURN(auto tie, opt_bool(j, "tie_word_embeddings"));
  c.tie_word_embeddings = tie.value_or(false);

  CARPOOL_ASSIGN_OR_RETURN(auto act, opt_str(j, "hidden_act"));
  if (act && *act != "silu")
    return cfg_err("unsupported hidden_act " + quote_name(*act) + " (silu only)");
  CARPOOL_ASSIGN_OR_RETURN(auto mlp_bias, opt_bool(j, "mlp_bias"));
  if (mlp_bias.value_or(false)) return cfg_err("'mlp_bias' true is not supported");

  CARPOOL_ASSIGN_OR_RETURN(auto attention_bias, opt_bool(j, "attention_bias"));
  if (c.architecture == "qwen2") {
    c.attention_bias = true;  // Qwen2 always has q/k/v biases and no o_proj bias
    CARPOOL_ASSIGN_OR_RETURN(auto swa, opt_bool(j, "use_sliding_window"));
    if (swa.value_or(false)) return cfg_err("'use_sliding_window' true is not supported");
    auto types_it = j.find("layer_types");
    if (types_it != j.end() && !types_it->is_null()) {
      if (!types_it->is_array()) return cfg_err("'layer_types' is not a list");
      for (const auto& t : *types_it) {
        if (!t.is_string() || t.get_ref<const std::string&>() != "full_attention") {
          return cfg_err("'layer_types' other than full_attention are not supported");
        }
      }
    }
  } else if (attention_bias.value_or(false)) {
    // Llama's attention_bias also puts a bias on o_proj, which carpool's layer does not have.
    return cfg_err("'attention_bias' true is not supported for " + c.architecture);
  }
  if (c.architecture == "mistral") {
    CARPOOL_ASSIGN_OR_RETURN(c.sliding_window, opt_int(j, "sliding_window", 1, kMaxHfDim));
  }
  return c;
}

Result<HfSafetensorsIndex> parse_hf_safetensors_index(std::string_view json_text) {
  const char* file = "model.safetensors.index.json";
  auto err = [&](const std::string& msg) { return Status::error(std::string(file) + ": " + msg); };
  if (json_text.size() > kMaxHfJsonBytes) return err("file is too large");
  Json j;
  CARPOOL_RETURN_IF_ERROR(parse_json_strict(json_text, 8, file, j));
  if (!j.is_object()) return err("top level is not an object");
  auto map_it = j.find("weight_map");
  if (map_it == j.end()) return err("missing 'weight_map'");
  if (!map_it->is_object()) return err("'weight_map' is not an object");
  if (map_it->empty()) return err("'weight_map' is empty");
  HfSafetensorsIndex index;
  std::set<std::string> shards;
  for (const auto& [tensor, shard] : map_it->items()) {
    if (!shard.is_string())
      return err("shard of tensor " + quote_name(tensor) + " is not a string");
    const auto& s = shard.get_ref<const std::string&>();
    if (s.empty() || s == "." || s == ".." || s.find('/') != std::string::npos ||
        s.find('\\') != std::string::npos || s.find('\0') != std::string::npos) {
      return err("shard name " + quote_name(s) + " of tensor " + quote_name(tensor) +
                 " is not a plain file name");
    }
    index.weight_map.emplace(tensor, s);
    shards.insert(s);
  }
  index.shards.assign(shards.begin(), shards.end());
  return index;
}

Result<HfGenerationConfig> parse_hf_generation_config(std::string_view json_text) {
  const char* file = "generation_config.json";
  auto err = [&](const std::string& msg) { return Status::error(std::string(file) + ": " + msg); };
  if (json_text.size() > kMaxHfJsonBytes) return err("file is too large");
  Json j;
  CARPOOL_RETURN_IF_ERROR(parse_json_strict(json_text, kMaxConfigDepth, file, j));
  if (!j.is_object()) return err("top level is not an object");
  HfGenerationConfig g;
  constexpr int64_t kMaxId = INT32_MAX;
  auto eos_it = j.find("eos_token_id");
  if (eos_it != j.end() && !eos_it->is_null()) {
    auto add = [&](const Json& v) -> Status {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > kMaxId) {
        return err("'eos_token_id' holds a value that is not a token id");
      }
      g.eos_token_ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
      return Status::ok();
    };
    if (eos_it->is_array()) {
      if (eos_it->size() > 1024) return err("'eos_token_id' lists too many ids");
      for (const auto& v : *eos_it) CARPOOL_RETURN_IF_ERROR(add(v));
    } else {
      CARPOOL_RETURN_IF_ERROR(add(*eos_it));
    }
  }
  CARPOOL_ASSIGN_OR_RETURN(auto bos, opt_int(j, "bos_token_id", 0, kMaxId, file));
  if (bos) g.bos_token_id = static_cast<int32_t>(*bos);
  CARPOOL_ASSIGN_OR_RETURN(auto top_k, opt_int(j, "top_k", 0, kMaxId, file));
  if (top_k) g.top_k = static_cast<int32_t>(*top_k);
  CARPOOL_ASSIGN_OR_RETURN(auto temperature, opt_num(j, "temperature", file));
  if (temperature) {
    if (*temperature < 0 || *temperature > 100)
      return err("'temperature' is out of range [0, 100]");
    g.temperature = static_cast<float>(*temperature);
  }
  CARPOOL_ASSIGN_OR_RETURN(auto top_p, opt_num(j, "top_p", file));
  if (top_p) {
    if (*top_p < 0 || *top_p > 1) return err("'top_p' is out of range [0, 1]");
    g.top_p = static_cast<float>(*top_p);
  }
  CARPOOL_ASSIGN_OR_RETURN(auto rep, opt_num(j, "repetition_penalty", file));
  if (rep) {
    if (*rep <= 0 || *rep > 100) return err("'repetition_penalty' is out of range (0, 100]");
    g.repetition_penalty = static_cast<float>(*rep);
  }
  CARPOOL_ASSIGN_OR_RETURN(auto do_sample, opt_bool(j, "do_sample", file));
  g.do_sample = do_sample;
  return g;
}

}  // namespace carpool
