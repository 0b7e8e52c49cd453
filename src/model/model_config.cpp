#include "model/model_config.h"

#include <cmath>
#include <functional>
#include <string_view>

namespace carpool {
namespace {

// Bounds generous enough for every published Llama-family model and tight enough that products
// of two of them (vocab * hidden, hidden * ff) and parameter counts stay far from overflow.
constexpr int64_t kMaxVocab = int64_t{1} << 22;   // 4M (largest published vocabularies ~256k)
constexpr int64_t kMaxHidden = int64_t{1} << 16;  // 65536
constexpr int64_t kMaxFf = int64_t{1} << 18;
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxHeads = 1024;
constexpr int64_t kMaxHeadDim = 1024;
constexpr int64_t kMaxPosition = int64_t{1} << 24;

Status range_error(const char* field, int64_t v, int64_t lo, int64_t hi) {
  return Status::error("model config: " + std::string(field) + " = " + std::to_string(v) +
                       " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
}

}  // namespace

Status ModelConfig::validate() const {
  struct Field {
    const char* name;
    int64_t value;
    int64_t lo, hi;
  };
  const Field fields[] = {
      {"vocab_size", vocab_size, 1, kMaxVocab},
      {"hidden_size", hidden_size, 1, kMaxHidden},
      {"intermediate_size", intermediate_size, 1, kMaxFf},
      {"n_layers", n_layers, 1, kMaxLayers},
      {"n_heads", n_heads, 1, kMaxHeads},
      {"n_kv_heads", n_kv_heads, 1, kMaxHeads},
      {"head_dim", head_dim, 2, kMaxHeadDim},
      {"max_position", max_position, 1, kMaxPosition},
  };
  for (const Field& f : fields) {
    if (f.value < f.lo || f.value > f.hi) return range_error(f.name, f.value, f.lo, f.hi);
  }
  if (n_heads % n_kv_heads != 0) {
    return Status::error("model config: n_heads " + std::to_string(n_heads) +
                         " is not a multiple of n_kv_heads " + std::to_string(n_kv_heads));
  }
  if (head_dim % 2 != 0) {
    return Status::error("model config: head_dim " + std::to_string(head_dim) +
                         " is odd (RoPE rotates pairs)");
  }
  if (n_heads * head_dim > 4 * kMaxHidden) {
    return Status::error("model config: n_heads * head_dim = " +
                         std::to_string(n_heads * head_dim) + " is too large");
  }
  if (!(std::isfinite(rms_eps) && rms_eps > 0.f && rms_eps < 1.f)) {
    return Status::error("model config: rms_eps must be in (0, 1)");
  }
  if (!(std::isfinite(rope_theta) && rope_theta > 1.f)) {
    return Status::error("model config: rope_theta must be finite and > 1");
  }
  if (rope_scaling.enabled) {
    const RopeScaling& r = rope_scaling;
    if (!(std::isfinite(r.factor) && r.factor >= 1.f && r.factor <= 1024.f)) {
      return Status::error("model config: rope scaling factor must be in [1, 1024]");
    }
    if (!(std::isfinite(r.low_freq_factor) && std::isfinite(r.high_freq_factor) &&
          r.low_freq_factor > 0.f && r.high_freq_factor > r.low_freq_factor)) {
      return Status::error(
          "model config: rope scaling needs 0 < low_freq_factor < high_freq_factor");
    }
    if (r.original_max_position < 1 || r.original_max_position > kMaxPosition) {
      return range_error("rope original_max_position", r.original_max_position, 1, kMaxPosition);
    }
  }
  return Status::ok();
}

int64_t ModelConfig::parameter_count() const {
  const int64_t q_dim = n_heads * head_dim;
  const int64_t kv_dim = n_kv_heads * head_dim;
  int64_t per_layer = hidden_size * q_dim                    // q
                      + 2 * hidden_size * kv_dim             // k, v
                      + q_dim * hidden_size                  // o
                      + 3 * hidden_size * intermediate_size  // gate, up, down
                      + 2 * hidden_size;                     // attn_norm, ffn_norm
  if (qkv_bias) per_layer += q_dim + 2 * kv_dim;
  const int64_t embeddings = vocab_size * hidden_size * (tied_embeddings ? 1 : 2);
  return embeddings + n_layers * per_layer + hidden_size;  // + output_norm
}

int64_t ModelConfig::kv_bytes_per_token(int kv_bytes_per_elem) const {
  return 2 * n_layers * n_kv_heads * head_dim * kv_bytes_per_elem;
}

int64_t ModelConfig::kv_bytes_per_token(DType kv_dtype) const {
  return 2 * n_layers * static_cast<int64_t>(kv_cache_row_bytes(kv_dtype, n_kv_heads, head_dim));
}

namespace {

// Published hyper-parameters (each model's config.json on the Hugging Face hub).
struct Preset {
  std::string_view name;
  std::function<ModelConfig()> make;
};

ModelConfig llama3(std::string name, int64_t hidden, int64_t ff, int64_t layers, int64_t heads,
                   int64_t head_dim, float rope_factor, bool tied) {
  ModelConfig c;
  c.architecture = "llama";
  c.name = std::move(name);
  c.vocab_size = 128256;
  c.hidden_size = hidden;
  c.intermediate_size = ff;
  c.n_layers = layers;
  c.n_heads = heads;
  c.n_kv_heads = 8;
  c.head_dim = head_dim;
  c.max_position = 131072;
  c.rms_eps = 1e-5f;
  c.rope_theta = 500000.f;
  c.rope_scaling = {true, rope_factor, 1.f, 4.f, 8192};
  c.tied_embeddings = tied;
  return c;
}

ModelConfig plain(std::string arch, std::string name, int64_t vocab, int64_t hidden, int64_t ff,
                  int64_t layers, int64_t heads, int64_t kv_heads, int64_t max_pos, float eps,
                  float theta, bool tied) {
  ModelConfig c;
  c.architecture = std::move(arch);
  c.name = std::move(name);
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = ff;
  c.n_layers = layers;
  c.n_heads = heads;
  c.n_kv_heads = kv_heads;
  c.head_dim = hidden / heads;
  c.max_position = max_pos;
  c.rms_eps = eps;
  c.rope_theta = theta;
  c.tied_embeddings = tied;
  c.qkv_bias = c.architecture == "qwen2";
  return c;
}

const Preset kPresets[] = {
    {"llama-3.1-8b", [] { return llama3("Llama-3.1-8B", 4096, 14336, 32, 32, 128, 8.f, false); }},
    {"llama-3.2-1b", [] { return llama3("Llama-3.2-1B", 2048, 8192, 16, 32, 64, 32.f, true); }},
    {"llama-3.2-3b", [] { return llama3("Llama-3.2-3B", 3072, 8192, 28, 24, 128, 32.f, true); }},
    {"llama-2-7b",
     [] {
       return plain("llama", "Llama-2-7b", 32000, 4096, 11008, 32, 32, 32, 4096, 1e-5f, 10000.f,
                    false);
     }},
    // TinyLlama-1.1B: a ~1B Llama-2-architecture model (GQA 32/4), handy for CPU benchmarks.
    {"llama-1b",
     [] {
       return plain("llama", "TinyLlama-1.1B", 32000, 2048, 5632, 22, 32, 4, 2048, 1e-5f, 10000.f,
                    false);
     }},
    {"tinyllama-1.1b",
     [] {
       return plain("llama", "TinyLlama-1.1B", 32000, 2048, 5632, 22, 32, 4, 2048, 1e-5f, 10000.f,
                    false);
     }},
    // Mistral-7B-v0.3 (no sliding window, 32768-token vocabulary).
    {"mistral-7b",
     [] {
       return plain("mistral", "Mistral-7B-v0.3", 32768, 4096, 14336, 32, 32, 8, 32768, 1e-5f, 1e6f,
                    false);
     }},
    {"qwen2.5-7b",
     [] {
       return plain("qwen2", "Qwen2.5-7B-Instruct", 152064, 3584, 18944, 28, 28, 4, 32768, 1e-6f,
                    1e6f, false);
     }},
    {"qwen2.5-1.5b",
     [] {
       return plain("qwen2", "Qwen2.5-1.5B-Instruct", 151936, 1536, 8960, 28, 12, 2, 32768, 1e-6f,
                    1e6f, true);
     }},
    {"qwen2.5-0.5b",
     [] {
       return plain("qwen2", "Qwen2.5-0.5B-Instruct", 151936, 896, 4864, 24, 14, 2, 32768, 1e-6f,
                    1e6f, true);
     }},
    {"smollm2-135m",
     [] {
       return plain("llama", "SmolLM2-135M", 49152, 576, 1536, 30, 9, 3, 8192, 1e-5f, 100000.f,
                    true);
     }},
    {"smollm2-360m",
     [] {
       return plain("llama", "SmolLM2-360M", 49152, 960, 2560, 32, 15, 5, 8192, 1e-5f, 100000.f,
                    true);
     }},
    {"smollm2-1.7b",
     [] {
       return plain("llama", "SmolLM2-1.7B", 49152, 2048, 8192, 24, 32, 32, 8192, 1e-5f, 130000.f,
                    true);
     }},
};

}  // namespace

Result<ModelConfig> named_config(const std::string& name) {
  std::string known;
  for (const Preset& p : kPresets) {
    if (p.name == name) return p.make();
    if (!known.empty()) known += ", ";
    known += p.name;
  }
  return Status::error("unknown model config '" + name + "' (known: " + known + ")");
}

}  // namespace carpool
