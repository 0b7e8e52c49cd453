#include "model/llama.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "util/check.h"

namespace carpool {
namespace {

std::string layer_name(int64_t i, const char* what) {
  return "blk." + std::to_string(i) + "." + what;
}

// Finds `name` in the source with exactly [rows, cols], or explains what is wrong.
Result<HostWeight> expect(const ModelSource& src, const std::string& name, int64_t rows,
                          int64_t cols) {
  auto it = src.weights.find(name);
  if (it == src.weights.end()) return Status::error("model: missing tensor '" + name + "'");
  const HostWeight& w = it->second;
  if (w.rows != rows || w.cols != cols) {
    return Status::error("model: tensor '" + name + "' has shape [" + std::to_string(w.rows) +
                         ", " + std::to_string(w.cols) + "], expected [" + std::to_string(rows) +
                         ", " + std::to_string(cols) + "]");
  }
  return w;
}

}  // namespace

std::vector<float> rope_inv_freq(const ModelConfig& c, std::span<const float> freq_factors) {
  const int64_t half = c.head_dim / 2;
  std::vector<float> inv(half);
  for (int64_t i = 0; i < half; ++i) {
    // Same expression order as the reference: base ** (2i / dim), in f32.
    float exponent = static_cast<float>(2 * i) / static_cast<float>(c.head_dim);
    inv[i] = 1.0f / std::pow(c.rope_theta, exponent);
  }
  if (!freq_factors.empty()) {
    for (int64_t i = 0; i < half; ++i) inv[i] /= freq_factors[i];
    return inv;
  }
  if (c.rope_scaling.enabled) {
    // Llama 3 scaling: long wavelengths divided by `factor`, short ones kept, a smooth blend
    // between (Hugging Face _compute_llama3_parameters).
    const RopeScaling& s = c.rope_scaling;
    const float old_ctx = static_cast<float>(s.original_max_position);
    const float low_wavelen = old_ctx / s.low_freq_factor;
    const float high_wavelen = old_ctx / s.high_freq_factor;
    for (int64_t i = 0; i < half; ++i) {
      float wavelen = 2.f * static_cast<float>(M_PI) / inv[i];
      float f = wavelen > low_wavelen ? inv[i] / s.factor : inv[i];
      if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
        float smooth =
            (old_ctx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1.f - smooth) * f / s.factor + smooth * f;
      }
      inv[i] = f;
    }
  }
  return inv;
}

void LlamaModel::count_weight(const std::string& name, const Tensor& t) {
  const int64_t b = static_cast<int64_t>(t.bytes());
  weight_bytes_ += t.bytes();
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  if (has("token_embd")) {
    role_bytes_.embedding += b;
  } else if (name == "output.weight") {
    role_bytes_.output += b;
  } else if (has("norm")) {
    role_bytes_.norms += b;
  } else if (has("attn_")) {
    role_bytes_.attention += b;
  } else {
    role_bytes_.ffn += b;
  }
}

LlamaModel::LlamaModel(Backend& backend, const ModelConfig& config, const ModelLimits& limits)
    : backend_(backend), config_(config), limits_(limits) {}

LlamaModel::~LlamaModel() {
  backend_.drop_graphs(this);  // recordings refer to the workspace freed next
  for (Tensor& t : owned_) backend_.free(t);
}

Result<std::unique_ptr<LlamaModel>> LlamaModel::load(Backend& backend, const ModelSource& src,
                                                     const ModelLimits& limits) {
  const ModelConfig& c = src.config;
  CARPOOL_RETURN_IF_ERROR(c.validate());
  std::unique_ptr<LlamaModel> m(new LlamaModel(backend, c, limits));
  const int64_t hd = c.head_dim, q_dim = c.n_heads * hd;
  auto upload = [&](const std::string& name, int64_t rows, int64_t cols, Tensor* out) -> Status {
    auto w = expect(src, name, rows, cols);
    if (!w) return w.status();
    auto t = backend.load_weight(w.value());
    if (!t) return Status::error("model: loading '" + name + "': " + t.error());
    *out = t.value();
    m->count_weight(name, *out);
    return Status::ok();
  };
  CARPOOL_RETURN_IF_ERROR(upload("token_embd.weight", c.vocab_size, c.hidden_size, &m->tok_embd_));
  CARPOOL_RETURN_IF_ERROR(upload("output_norm.weight", 1, c.hidden_size, &m->output_norm_));
  if (c.tied_embeddings) {
    m->output_ = m->tok_embd_;
  } else {
    CARPOOL_RETURN_IF_ERROR(upload("output.weight", c.vocab_size, c.hidden_size, &m->output_));
  }
  // Fused projections need biases that can be stacked element-wise (not block-quantized).
  m->fused_ = backend.prefers_fused_projections();
  for (int64_t i = 0; m->fused_ && c.qkv_bias && i < c.n_layers; ++i) {
    for (const char* b : {"attn_q.bias", "attn_k.bias", "attn_v.bias"}) {
      auto it = src.weights.find(layer_name(i, b));
      if (it != src.weights.end() && dtype_is_quantized(it->second.dtype)) m->fused_ = false;
    }
  }
  m->layers_.resize(c.n_layers);
  for (int64_t i = 0; i < c.n_layers; ++i) {
    Layer& l = m->layers_[i];
    CARPOOL_RETURN_IF_ERROR(
        upload(layer_name(i, "attn_norm.weight"), 1, c.hidden_size, &l.attn_norm));
    CARPOOL_RETURN_IF_ERROR(m->load_projections(src, i, l));
    CARPOOL_RETURN_IF_ERROR(
        upload(layer_name(i, "attn_output.weight"), c.hidden_size, q_dim, &l.wo));
    CARPOOL_RETURN_IF_ERROR(
        upload(layer_name(i, "ffn_norm.weight"), 1, c.hidden_size, &l.ffn_norm));
    CARPOOL_RETURN_IF_ERROR(
        upload(layer_name(i, "ffn_down.weight"), c.hidden_size, c.intermediate_size, &l.w_down));
  }
  CARPOOL_RETURN_IF_ERROR(m->alloc_workspace());
  std::vector<float> factors;
  if (auto it = src.weights.find("rope_freqs.weight"); it != src.weights.end()) {
    const HostWeight& w = it->second;
    if (w.dtype != DType::kF32 || w.rows * w.cols != hd / 2) {
      return Status::error("model: tensor 'rope_freqs.weight' must be f32 with head_dim/2 values");
    }
    const float* p = static_cast<const float*>(w.data);
    factors.assign(p, p + hd / 2);
  }
  std::vector<float> inv = rope_inv_freq(c, factors);
  backend.upload(m->inv_freq_, inv.data(), inv.size() * sizeof(float));
  return m;
}

Status LlamaModel::load_projections(const ModelSource& src, int64_t i, Layer& l) {
  const ModelConfig& c = config_;
  const int64_t h = c.hidden_size, ff = c.intermediate_size;
  const int64_t q_dim = c.n_heads * c.head_dim, kv_dim = c.n_kv_heads * c.head_dim;
  struct Part {
    const char* what;
    int64_t rows, cols;
    Tensor* unfused;
  };
  // Finds every part (checking its shape), then loads them one by one or stacked as `name`.
  auto find = [&](std::initializer_list<Part> parts, std::vector<HostWeight>* host) -> Status {
    for (const Part& p : parts) {
      auto w = expect(src, layer_name(i, p.what), p.rows, p.cols);
      if (!w) return w.status();
      host->push_back(w.value());
    }
    return Status::ok();
  };
  // Whether parts can be stacked: the backend converts (any types), or they share one type.
  auto stackable = [&](const std::vector<HostWeight>& host) {
    if (backend_.stacks_mixed_weight_types()) return true;
    for (const HostWeight& w : host) {
      if (w.dtype != host[0].dtype) return false;
    }
    return true;
  };
  auto load = [&](std::initializer_list<Part> parts, const std::vector<HostWeight>& found,
                  bool stack, const char* fused_name, bool as_bias, Tensor* fused) -> Status {
    std::vector<HostWeight> host = found;
    if (!stack) {
      size_t k = 0;
      for (const Part& p : parts) {
        auto t = backend_.load_weight(host[k++]);
        if (!t)
          return Status::error("model: loading '" + layer_name(i, p.what) + "': " + t.error());
        *p.unfused = t.value();
        count_weight(layer_name(i, p.what), *p.unfused);
      }
      return Status::ok();
    }
    int64_t total = 0;
    for (HostWeight& w : host) {
      if (as_bias) std::swap(w.rows, w.cols);  // [1, n] has the bytes of [n, 1]: stack as rows
      total += w.rows;
    }
    auto t = backend_.load_weight_concat(host);
    if (!t)
      return Status::error("model: loading '" + layer_name(i, fused_name) + "': " + t.error());
    *fused = t.value();
    if (as_bias) fused->rows = 1, fused->cols = total;  // back to [1, sum n]
    count_weight(layer_name(i, fused_name), *fused);
    return Status::ok();
  };
  // Each stack is fused or not on its own: a backend that keeps the file's types (the CPU) fuses
  // q|k|v only where the three share one (Q4_K_M files keep attn_v wider in some layers).
  const std::initializer_list<Part> qkv = {{"attn_q.weight", q_dim, h, &l.wq},
                                           {"attn_k.weight", kv_dim, h, &l.wk},
                                           {"attn_v.weight", kv_dim, h, &l.wv}};
  const std::initializer_list<Part> qkv_bias = {{"attn_q.bias", 1, q_dim, &l.bq},
                                                {"attn_k.bias", 1, kv_dim, &l.bk},
                                                {"attn_v.bias", 1, kv_dim, &l.bv}};
  const std::initializer_list<Part> gate_up = {{"ffn_gate.weight", ff, h, &l.w_gate},
                                               {"ffn_up.weight", ff, h, &l.w_up}};
  std::vector<HostWeight> w_qkv, b_qkv, w_gate_up;
  CARPOOL_RETURN_IF_ERROR(find(qkv, &w_qkv));
  if (c.qkv_bias) CARPOOL_RETURN_IF_ERROR(find(qkv_bias, &b_qkv));
  CARPOOL_RETURN_IF_ERROR(find(gate_up, &w_gate_up));
  const bool stack_qkv = fused_ && stackable(w_qkv) && (!c.qkv_bias || stackable(b_qkv));
  CARPOOL_RETURN_IF_ERROR(load(qkv, w_qkv, stack_qkv, "attn_qkv.weight", false, &l.wqkv));
  if (c.qkv_bias) {
    CARPOOL_RETURN_IF_ERROR(load(qkv_bias, b_qkv, stack_qkv, "attn_qkv.bias", true, &l.bqkv));
  }
  return load(gate_up, w_gate_up, fused_ && stackable(w_gate_up), "ffn_gate_up.weight", false,
              &l.w_gate_up);
}

Result<std::unique_ptr<LlamaModel>> LlamaModel::synthetic(Backend& backend, const ModelConfig& c,
                                                          DType dtype, uint64_t seed,
                                                          const ModelLimits& limits) {
  CARPOOL_RETURN_IF_ERROR(c.validate());
  std::unique_ptr<LlamaModel> m(new LlamaModel(backend, c, limits));
  const int64_t hd = c.head_dim, q_dim = c.n_heads * hd, kv_dim = c.n_kv_heads * hd;
  uint64_t counter = seed * 1000003ull;
  // Uniform(-s, s) with s = 1/sqrt(fan_in) keeps activations O(1) through the layers.
  auto rand = [&](const char* name, DType t, int64_t rows, int64_t cols, float scale,
                  Tensor* out) -> Status {
    auto r = backend.alloc_random_weight(t, rows, cols, ++counter, scale);
    if (!r) return r.status();
    *out = r.value();
    m->count_weight(name, *out);
    return Status::ok();
  };
  auto ones = [&](int64_t n, Tensor* out) -> Status {
    // Norm weights start at 1, as in a freshly initialized model.
    std::vector<float> v(n, 1.f);
    auto t = backend.alloc(DType::kF32, 1, n);
    if (!t) return t.status();
    backend.upload(t.value(), v.data(), v.size() * sizeof(float));
    *out = t.value();
    m->owned_.push_back(*out);
    m->count_weight("norm", *out);
    return Status::ok();
  };
  const float s_h = 1.f / std::sqrt(static_cast<float>(c.hidden_size));
  const float s_ff = 1.f / std::sqrt(static_cast<float>(c.intermediate_size));
  // The embedding stays readable by row for any dtype; quantized types need block-aligned rows.
  CARPOOL_RETURN_IF_ERROR(
      rand("token_embd", dtype, c.vocab_size, c.hidden_size, 1.f, &m->tok_embd_));
  CARPOOL_RETURN_IF_ERROR(ones(c.hidden_size, &m->output_norm_));
  if (c.tied_embeddings) {
    m->output_ = m->tok_embd_;
  } else {
    CARPOOL_RETURN_IF_ERROR(
        rand("output.weight", dtype, c.vocab_size, c.hidden_size, s_h, &m->output_));
  }
  // Fused projections: the stacked weight drawn as one (same scale as its parts).
  m->fused_ = backend.prefers_fused_projections();
  const int64_t ff = c.intermediate_size, qkv_dim = q_dim + 2 * kv_dim;
  m->layers_.resize(c.n_layers);
  for (Layer& l : m->layers_) {
    CARPOOL_RETURN_IF_ERROR(ones(c.hidden_size, &l.attn_norm));
    if (m->fused_) {
      CARPOOL_RETURN_IF_ERROR(rand("attn_qkv", dtype, qkv_dim, c.hidden_size, s_h, &l.wqkv));
    } else {
      CARPOOL_RETURN_IF_ERROR(rand("attn_q", dtype, q_dim, c.hidden_size, s_h, &l.wq));
      CARPOOL_RETURN_IF_ERROR(rand("attn_k", dtype, kv_dim, c.hidden_size, s_h, &l.wk));
      CARPOOL_RETURN_IF_ERROR(rand("attn_v", dtype, kv_dim, c.hidden_size, s_h, &l.wv));
    }
    CARPOOL_RETURN_IF_ERROR(rand("attn_output", dtype, c.hidden_size, q_dim, s_h, &l.wo));
    if (c.qkv_bias && m->fused_) {
      CARPOOL_RETURN_IF_ERROR(rand("attn_qkv.bias", DType::kF32, 1, qkv_dim, 0.1f, &l.bqkv));
    } else if (c.qkv_bias) {
      CARPOOL_RETURN_IF_ERROR(rand("attn_q.bias", DType::kF32, 1, q_dim, 0.1f, &l.bq));
      CARPOOL_RETURN_IF_ERROR(rand("attn_k.bias", DType::kF32, 1, kv_dim, 0.1f, &l.bk));
      CARPOOL_RETURN_IF_ERROR(rand("attn_v.bias", DType::kF32, 1, kv_dim, 0.1f, &l.bv));
    }
    CARPOOL_RETURN_IF_ERROR(ones(c.hidden_size, &l.ffn_norm));
    if (m->fused_) {
      CARPOOL_RETURN_IF_ERROR(rand("ffn_gate_up", dtype, 2 * ff, c.hidden_size, s_h, &l.w_gate_up));
    } else {
      CARPOOL_RETURN_IF_ERROR(rand("ffn_gate", dtype, ff, c.hidden_size, s_h, &l.w_gate));
      CARPOOL_RETURN_IF_ERROR(rand("ffn_up", dtype, ff, c.hidden_size, s_h, &l.w_up));
    }
    CARPOOL_RETURN_IF_ERROR(
        rand("ffn_down", dtype, c.hidden_size, c.intermediate_size, s_ff, &l.w_down));
  }
  CARPOOL_RETURN_IF_ERROR(m->alloc_workspace());
  std::vector<float> inv = rope_inv_freq(c, {});
  backend.upload(m->inv_freq_, inv.data(), inv.size() * sizeof(float));
  return m;
}

Status LlamaModel::alloc_workspace() {
  const ModelConfig& c = config_;
  const int64_t T = limits_.max_batch_tokens, L = limits_.max_logit_rows;
  const int64_t q_dim = c.n_heads * c.head_dim, kv_dim = c.n_kv_heads * c.head_dim;
  if (T <= 0 || L <= 0 || limits_.max_seqs <= 0 || limits_.max_blocks_per_seq <= 0) {
    return Status::error("model: limits must be positive");
  }
  const DType act = backend_.activation_dtype();
  auto a = [&](DType t, int64_t rows, int64_t cols, Tensor* out) -> Status {
    auto r = backend_.alloc(t, rows, cols);
    if (!r) return Status::error("model: workspace: " + r.error());
    *out = r.value();
    owned_.push_back(*out);
    return Status::ok();
  };
  CARPOOL_RETURN_IF_ERROR(a(act, T, c.hidden_size, &x_));
  CARPOOL_RETURN_IF_ERROR(a(act, T, c.hidden_size, &xn_));
  CARPOOL_RETURN_IF_ERROR(a(act, T, q_dim, &q_));
  // The buffers of the stacked projections, of the separate ones, or both (layers may differ).
  bool any_qkv = false, any_split_qkv = false, any_gate_up = false, any_split_gate_up = false;
  for (const Layer& l : layers_) {
    (l.wqkv.data != nullptr ? any_qkv : any_split_qkv) = true;
    (l.w_gate_up.data != nullptr ? any_gate_up : any_split_gate_up) = true;
  }
  if (any_qkv) CARPOOL_RETURN_IF_ERROR(a(act, T, q_dim + 2 * kv_dim, &qkv_));
  if (any_gate_up) CARPOOL_RETURN_IF_ERROR(a(act, T, 2 * c.intermediate_size, &gate_up_));
  if (any_split_qkv) {
    CARPOOL_RETURN_IF_ERROR(a(act, T, kv_dim, &k_));
    CARPOOL_RETURN_IF_ERROR(a(act, T, kv_dim, &v_));
  }
  if (any_split_gate_up) {
    CARPOOL_RETURN_IF_ERROR(a(act, T, c.intermediate_size, &gate_));
    CARPOOL_RETURN_IF_ERROR(a(act, T, c.intermediate_size, &up_));
  }
  CARPOOL_RETURN_IF_ERROR(a(act, T, q_dim, &attn_));
  CARPOOL_RETURN_IF_ERROR(a(act, T, c.hidden_size, &proj_));
  CARPOOL_RETURN_IF_ERROR(a(act, T, c.intermediate_size, &act_));
  CARPOOL_RETURN_IF_ERROR(a(act, L, c.hidden_size, &sel_));
  CARPOOL_RETURN_IF_ERROR(a(DType::kF32, L, c.vocab_size, &logits_));
  CARPOOL_RETURN_IF_ERROR(a(DType::kF32, 1, c.head_dim / 2, &inv_freq_));
  CARPOOL_RETURN_IF_ERROR(a(DType::kI32, 1, T, &ids_));
  CARPOOL_RETURN_IF_ERROR(a(DType::kI32, 1, T, &pos_));
  CARPOOL_RETURN_IF_ERROR(a(DType::kI32, 1, T, &slots_));
  CARPOOL_RETURN_IF_ERROR(a(DType::kI32, 1, limits_.max_seqs + 1, &qstart_));
  CARPOOL_RETURN_IF_ERROR(a(DType::kI32, 1, limits_.max_seqs, &kvlen_));
  CARPOOL_RETURN_IF_ERROR(a(DType::kI32, limits_.max_seqs, limits_.max_blocks_per_seq, &btab_));
  CARPOOL_RETURN_IF_ERROR(a(DType::kI32, 1, L, &lrows_));
  return Status::ok();
}

Result<KvCache> LlamaModel::alloc_kv_cache(int num_blocks, int block_size) {
  KvCacheConfig kc;
  kc.n_layers = static_cast<int>(config_.n_layers);
  kc.num_blocks = num_blocks;
  kc.block_size = block_size;
  kc.n_kv_heads = static_cast<int>(config_.n_kv_heads);
  kc.head_dim = static_cast<int>(config_.head_dim);
  if (num_blocks <= 0 || block_size <= 0) return Status::error("kv cache: sizes must be positive");
  return backend_.alloc_kv(kc);
}

Status LlamaModel::check_batch(const ForwardBatch& b, const KvCache& kv) const {
  const size_t n = b.token_ids.size();
  const size_t n_seqs = b.kv_len.size();
  if (n == 0) return Status::error("forward: empty batch");
  if (n > static_cast<size_t>(limits_.max_batch_tokens))
    return Status::error("forward: too many tokens");
  if (n_seqs == 0 || n_seqs > static_cast<size_t>(limits_.max_seqs))
    return Status::error("forward: bad sequence count");
  if (b.positions.size() != n || b.slots.size() != n || b.query_start.size() != n_seqs + 1) {
    return Status::error("forward: inconsistent batch arrays");
  }
  if (b.max_blocks_per_seq <= 0 || b.max_blocks_per_seq > limits_.max_blocks_per_seq ||
      b.block_tables.size() != n_seqs * static_cast<size_t>(b.max_blocks_per_seq)) {
    return Status::error("forward: bad block tables");
  }
  if (b.logit_rows.empty() || b.logit_rows.size() > static_cast<size_t>(limits_.max_logit_rows)) {
    return Status::error("forward: bad logit row count");
  }
  const int64_t n_slots = static_cast<int64_t>(kv.config.num_blocks) * kv.config.block_size;
  for (size_t i = 0; i < n; ++i) {
    if (b.token_ids[i] < 0 || b.token_ids[i] >= config_.vocab_size)
      return Status::error("forward: token id out of range");
    if (b.slots[i] < 0 || b.slots[i] >= n_slots) return Status::error("forward: slot out of range");
  }
  for (int32_t r : b.logit_rows) {
    if (r < 0 || static_cast<size_t>(r) >= n)
      return Status::error("forward: logit row out of range");
  }
  if (b.query_start[0] != 0 || static_cast<size_t>(b.query_start[n_seqs]) != n) {
    return Status::error("forward: query_start must span the batch");
  }
  for (size_t s = 0; s < n_seqs; ++s) {
    int32_t q_len = b.query_start[s + 1] - b.query_start[s];
    if (q_len <= 0 || b.kv_len[s] < q_len ||
        b.kv_len[s] > static_cast<int64_t>(b.max_blocks_per_seq) * kv.config.block_size) {
      return Status::error("forward: sequence lengths inconsistent");
    }
  }
  for (int32_t blk : b.block_tables) {
    if (blk < 0 || blk >= kv.config.num_blocks)
      return Status::error("forward: block id out of range");
  }
  return Status::ok();
}

DecodeGraphShape decode_graph_shape(int n_seqs, int max_kv_len, int block_size,
                                    const ModelLimits& limits) {
  DecodeGraphShape g;
  const int cap =
      std::min({limits.max_seqs, limits.max_logit_rows, limits.max_batch_tokens, kMaxGraphBatch});
  const int64_t max_ctx = int64_t(limits.max_blocks_per_seq) * block_size;
  if (n_seqs < 1 || n_seqs > cap || max_kv_len < 1 || block_size < 1 || block_size > 0xffff ||
      max_kv_len > max_ctx || max_ctx > (int64_t{1} << 30)) {
    return g;
  }
  int rows = 1;
  while (rows < n_seqs) rows *= 2;
  g.rows = std::min(rows, cap);
  int64_t pow2 = kMinGraphKvBucket, kv = pow2;  // 256, 384, 512, 768, 1024, 1536, ...
  while (kv < max_kv_len) {
    if (kv == pow2) {
      kv = pow2 + pow2 / 2;
    } else {
      pow2 *= 2;
      kv = pow2;
    }
  }
  g.kv_bucket = static_cast<int>(std::min(kv, max_ctx));
  g.blocks_per_seq = (g.kv_bucket + block_size - 1) / block_size;
  g.key = static_cast<uint64_t>(g.rows) | static_cast<uint64_t>(g.kv_bucket) << 16 |
          static_cast<uint64_t>(block_size) << 48;
  return g;
}

Result<Tensor> LlamaModel::forward(const ForwardBatch& b, const KvCache& kv) {
  last_batch_tokens_ = 0;
  CARPOOL_RETURN_IF_ERROR(check_batch(b, kv));
  const ModelConfig& c = config_;
  const int64_t n_real = static_cast<int64_t>(b.token_ids.size());
  const int n_seqs_real = static_cast<int>(b.kv_len.size());
  const int64_t n_logits_real = static_cast<int64_t>(b.logit_rows.size());
  Backend& be = backend_;

  // --- step shape: run directly, or pad a pure-decode step to a recorded graph's shape ---
  int max_q_len = 0, max_kv_len = 0;
  for (int s = 0; s < n_seqs_real; ++s) {
    max_q_len = std::max(max_q_len, b.query_start[s + 1] - b.query_start[s]);
    max_kv_len = std::max(max_kv_len, b.kv_len[s]);
  }
  DecodeGraphShape graph;
  if (be.graphs_enabled() && max_q_len == 1) {
    graph = decode_graph_shape(n_seqs_real, max_kv_len, kv.config.block_size, limits_);
  }
  const bool use_graph = graph.rows > 0;
  if (use_graph) {
    std::vector<const void*> kv_ptrs;
    for (size_t li = 0; li < kv.k.size(); ++li) {
      kv_ptrs.push_back(kv.k[li].data);
      kv_ptrs.push_back(kv.v[li].data);
    }
    if (kv_ptrs != graph_kv_) {  // recordings write the cache they were made with
      be.drop_graphs(this);
      graph_kv_ = std::move(kv_ptrs);
    }
  }
  // Rows the ops run on: tokens = sequences = logit rows when padded.
  const int64_t n = use_graph ? graph.rows : n_real;
  const int n_seqs = use_graph ? graph.rows : n_seqs_real;
  const int64_t n_logits = use_graph ? graph.rows : n_logits_real;

  // --- step inputs (uploaded before the ops: a graph replays with what is in these buffers) ---
  std::span<const int32_t> in_ids = b.token_ids, in_pos = b.positions, in_slots = b.slots;
  std::span<const int32_t> in_qs = b.query_start, in_kvl = b.kv_len, in_btab = b.block_tables;
  std::span<const int32_t> in_lrows = b.logit_rows;
  int blocks_per_seq = b.max_blocks_per_seq;
  if (use_graph) {
    // Padding rows: token 0 at position 0 of a one-token context in block 0, KV not written.
    PaddedInputs& p = padded_;
    const int rows = graph.rows, real = n_seqs_real, bps = graph.blocks_per_seq;
    p.ids.assign(b.token_ids.begin(), b.token_ids.end());
    p.ids.resize(rows, 0);
    p.pos.assign(b.positions.begin(), b.positions.end());
    p.pos.resize(rows, 0);
    p.slots.assign(b.slots.begin(), b.slots.end());
    p.slots.resize(rows, -1);
    p.kvlen.assign(b.kv_len.begin(), b.kv_len.end());
    p.kvlen.resize(rows, 1);
    p.qstart.resize(rows + 1);
    for (int s = 0; s <= rows; ++s) p.qstart[s] = s;
    p.lrows.assign(b.logit_rows.begin(), b.logit_rows.end());
    p.lrows.resize(rows, 0);
    // Block tables re-laid with rows of bps entries; a sequence uses ceil(kv_len / block_size)
    // <= bps of them, and every entry copied is a checked block id.
    p.btab.assign(static_cast<size_t>(rows) * bps, 0);
    const int copy = std::min(bps, b.max_blocks_per_seq);
    for (int s = 0; s < real; ++s) {
      const int32_t* src = b.block_tables.data() + static_cast<size_t>(s) * b.max_blocks_per_seq;
      std::copy(src, src + copy, p.btab.begin() + static_cast<size_t>(s) * bps);
    }
    in_ids = p.ids, in_pos = p.pos, in_slots = p.slots, in_qs = p.qstart, in_kvl = p.kvlen;
    in_btab = p.btab, in_lrows = p.lrows;
    blocks_per_seq = bps;
    max_kv_len = graph.kv_bucket;
  }
  Tensor ids = ids_, pos = pos_, slots = slots_;
  ids.cols = pos.cols = slots.cols = n;
  be.upload(ids, in_ids.data(), n * sizeof(int32_t));
  be.upload(pos, in_pos.data(), n * sizeof(int32_t));
  be.upload(slots, in_slots.data(), n * sizeof(int32_t));
  AttentionMeta meta;
  meta.n_tokens = static_cast<int>(n);
  meta.n_seqs = n_seqs;
  meta.max_blocks_per_seq = blocks_per_seq;
  meta.max_q_len = max_q_len;
  meta.max_kv_len = max_kv_len;
  meta.query_start = qstart_;
  meta.query_start.cols = n_seqs + 1;
  meta.kv_len = kvlen_;
  meta.kv_len.cols = n_seqs;
  meta.block_tables = btab_;
  meta.block_tables.rows = n_seqs;
  meta.block_tables.cols = blocks_per_seq;
  be.upload(meta.query_start, in_qs.data(), (n_seqs + 1) * sizeof(int32_t));
  be.upload(meta.kv_len, in_kvl.data(), n_seqs * sizeof(int32_t));
  be.upload(meta.block_tables, in_btab.data(), in_btab.size() * sizeof(int32_t));
  Tensor lrows = lrows_;
  lrows.cols = n_logits;
  be.upload(lrows, in_lrows.data(), n_logits * sizeof(int32_t));
  meta.n_heads = static_cast<int>(c.n_heads);
  meta.n_kv_heads = static_cast<int>(c.n_kv_heads);
  meta.head_dim = static_cast<int>(c.head_dim);
  meta.scale = 1.f / std::sqrt(static_cast<float>(c.head_dim));
  meta.block_size = kv.config.block_size;

  Tensor x = x_.rows_view(0, n), xn = xn_.rows_view(0, n);
  Tensor q = q_.rows_view(0, n), k = k_.rows_view(0, n), v = v_.rows_view(0, n);
  Tensor attn = attn_.rows_view(0, n), proj = proj_.rows_view(0, n);
  Tensor gate = gate_.rows_view(0, n), up = up_.rows_view(0, n), act = act_.rows_view(0, n);
  Tensor qkv = qkv_.rows_view(0, n), gate_up = gate_up_.rows_view(0, n);
  Tensor sel = sel_.rows_view(0, n_logits), logits = logits_.rows_view(0, n_logits);
  const int nh = static_cast<int>(c.n_heads), nkv = static_cast<int>(c.n_kv_heads);
  const int hd = static_cast<int>(c.head_dim);

  // The ops of the step. Everything they use is fixed by the graph key (see DecodeGraphShape).
  auto enqueue = [&] {
    // --- embedding, then the first layer's norm ---
    be.embed(x, tok_embd_, ids);
    be.rmsnorm(xn, x, layers_[0].attn_norm, c.rms_eps);
    for (size_t li = 0; li < layers_.size(); ++li) {
      const Layer& l = layers_[li];
      // --- attention ---
      if (l.wqkv.data != nullptr) {
        be.matmul(qkv, xn, l.wqkv, c.qkv_bias ? &l.bqkv : nullptr);
        be.rope_kv_write_qkv(q, qkv, kv.k[li], kv.v[li], pos, inv_freq_, slots, nh, nkv, hd,
                             c.rope_style);
      } else {
        be.matmul(q, xn, l.wq, c.qkv_bias ? &l.bq : nullptr);
        be.matmul(k, xn, l.wk, c.qkv_bias ? &l.bk : nullptr);
        be.matmul(v, xn, l.wv, c.qkv_bias ? &l.bv : nullptr);
        be.rope_kv_write(q, k, v, kv.k[li], kv.v[li], pos, inv_freq_, slots, nh, nkv, hd,
                         c.rope_style);
      }
      be.attention(attn, q, kv.k[li], kv.v[li], meta);
      be.matmul(proj, attn, l.wo, nullptr);
      be.add_rmsnorm(x, proj, l.ffn_norm, xn, c.rms_eps);
      // --- feed-forward (SwiGLU) ---
      if (l.w_gate_up.data != nullptr) {
        be.matmul(gate_up, xn, l.w_gate_up, nullptr);
        be.swiglu_fused(act, gate_up);
      } else {
        be.matmul(gate, xn, l.w_gate, nullptr);
        be.matmul(up, xn, l.w_up, nullptr);
        be.swiglu(act, gate, up);
      }
      be.matmul(proj, act, l.w_down, nullptr);
      const Tensor& next_norm = li + 1 < layers_.size() ? layers_[li + 1].attn_norm : output_norm_;
      be.add_rmsnorm(x, proj, next_norm, xn, c.rms_eps);
    }
    // --- logits for the rows that need them ---
    be.gather_rows(sel, xn, lrows);
    be.matmul(logits, sel, output_, nullptr);
  };
  if (use_graph) {
    be.run_graph(this, graph.key, enqueue);
  } else {
    enqueue();
  }
  last_batch_tokens_ = n_real;  // a padded graph step leaves the real rows first in xn_
  return logits_.rows_view(0, n_logits_real);
}

Result<Tensor> LlamaModel::row_logits(std::span<const int32_t> rows) {
  if (last_batch_tokens_ == 0) return Status::error("row_logits: no forward to read from");
  if (rows.empty() || rows.size() > static_cast<size_t>(limits_.max_logit_rows)) {
    return Status::error("row_logits: bad row count");
  }
  for (int32_t r : rows) {
    if (r < 0 || r >= last_batch_tokens_) return Status::error("row_logits: row out of range");
  }
  const int64_t n = static_cast<int64_t>(rows.size());
  Tensor lrows = lrows_;
  lrows.cols = n;
  backend_.upload(lrows, rows.data(), n * sizeof(int32_t));
  Tensor xn = xn_.rows_view(0, last_batch_tokens_);
  Tensor sel = sel_.rows_view(0, n), logits = logits_.rows_view(0, n);
  // --- the same two ops as forward()'s logits ---
  backend_.gather_rows(sel, xn, lrows);
  backend_.matmul(logits, sel, output_, nullptr);
  return logits;
}

}  // namespace carpool
