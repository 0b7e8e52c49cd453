// ModelSource from a GGUF file: hyper-parameters from "{arch}.*" metadata, weights as views.
#include <string>

#include "formats/gguf.h"
#include "model/model_source.h"

namespace carpool {
namespace {

Result<int64_t> arch_int(const GgufFile& f, const std::string& arch, const char* key) {
  return f.get_int(arch + "." + key);
}

}  // namespace

Result<ModelSource> load_gguf_model(std::shared_ptr<GgufFile> file) {
  const GgufFile& f = *file;
  auto arch_r = f.get_string("general.architecture");
  if (!arch_r) return arch_r.status();
  std::string arch(arch_r.value());
  if (arch != "llama" && arch != "qwen2" && arch != "mistral") {
    return Status::error("gguf: architecture '" + arch +
                         "' is not supported (llama, mistral and qwen2 are)");
  }
  ModelSource src;
  src.format = "gguf";
  ModelConfig& c = src.config;
  c.architecture = arch;
  if (auto n = f.get_string("general.name")) c.name = std::string(n.value());
  CARPOOL_ASSIGN_OR_RETURN(c.n_layers, arch_int(f, arch, "block_count"));
  CARPOOL_ASSIGN_OR_RETURN(c.hidden_size, arch_int(f, arch, "embedding_length"));
  CARPOOL_ASSIGN_OR_RETURN(c.intermediate_size, arch_int(f, arch, "feed_forward_length"));
  CARPOOL_ASSIGN_OR_RETURN(c.n_heads, arch_int(f, arch, "attention.head_count"));
  c.n_kv_heads = c.n_heads;
  if (f.find(arch + ".attention.head_count_kv")) {
    CARPOOL_ASSIGN_OR_RETURN(c.n_kv_heads, arch_int(f, arch, "attention.head_count_kv"));
  }
  if (auto ctx = arch_int(f, arch, "context_length")) c.max_position = ctx.value();
  if (auto eps = f.get_float(arch + ".attention.layer_norm_rms_epsilon")) {
    c.rms_eps = static_cast<float>(eps.value());
  }
  if (auto theta = f.get_float(arch + ".rope.freq_base")) {
    c.rope_theta = static_cast<float>(theta.value());
  }
  c.head_dim = c.n_heads > 0 ? c.hidden_size / c.n_heads : 0;
  if (f.find(arch + ".attention.key_length")) {
    CARPOOL_ASSIGN_OR_RETURN(c.head_dim, arch_int(f, arch, "attention.key_length"));
  }
  // llama.cpp's converter permutes Q/K rows of Llama-family weights for interleaved RoPE;
  // Qwen2 keeps Hugging Face's layout (rotate-half).
  c.rope_style = arch == "qwen2" ? RopeStyle::kNeox : RopeStyle::kInterleaved;

  for (const GgufTensorInfo& t : f.tensors()) {
    if (t.dims.size() > 2) {
      return Status::error("gguf: tensor '" + t.name + "' has more than 2 dimensions");
    }
    src.weights[t.name] = HostWeight{t.dtype, t.data, t.rows(), t.cols()};
  }
  auto emb = src.weights.find("token_embd.weight");
  if (emb == src.weights.end()) return Status::error("gguf: missing tensor 'token_embd.weight'");
  c.vocab_size = emb->second.rows;
  if (auto v = arch_int(f, arch, "vocab_size"); v && v.value() != c.vocab_size) {
    return Status::error("gguf: " + arch + ".vocab_size " + std::to_string(v.value()) +
                         " does not match token_embd rows " + std::to_string(c.vocab_size));
  }
  c.tied_embeddings = src.weights.count("output.weight") == 0;
  c.qkv_bias = src.weights.count("blk.0.attn_q.bias") != 0;
  CARPOOL_RETURN_IF_ERROR(c.validate());
  src.keepalive = file;
  return src;
}

}  // namespace carpool
