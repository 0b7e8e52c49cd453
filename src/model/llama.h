// LlamaModel: the Llama-family forward pass (Llama 2/3.x, Mistral, Qwen2/2.5, SmolLM2),
// written once against Backend. RMSNorm, RoPE (with Llama 3 scaling), grouped-query attention
// over a paged KV cache, SwiGLU, tied or separate output embedding, optional QKV bias.
//
// Thread-safety: one thread at a time (the engine loop). Owns its workspace; the caller owns the
// Backend (which must outlive the model) and the KV cache.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "model/model_config.h"
#include "model/model_source.h"
#include "util/status.h"

namespace carpool {

// Sizes the model's workspace; forward() rejects batches beyond them.
struct ModelLimits {
  int max_batch_tokens = 512;    // tokens per step (prefill chunk plus decode tokens)
  int max_seqs = 64;             // sequences per step
  int max_blocks_per_seq = 512;  // block-table row length (max context / block size)
  int max_logit_rows = 64;       // rows that need logits per step
};

// One step's ragged batch, host side. Sequence s owns tokens [query_start[s], query_start[s+1]);
// they are its last q_len positions (see AttentionMeta).
struct ForwardBatch {
  std::span<const int32_t> token_ids;     // [n_tokens]
  std::span<const int32_t> positions;     // [n_tokens]
  std::span<const int32_t> slots;         // [n_tokens] KV slot (block * block_size + offset)
  std::span<const int32_t> query_start;   // [n_seqs + 1]
  std::span<const int32_t> kv_len;        // [n_seqs] context length after this step
  std::span<const int32_t> block_tables;  // [n_seqs * max_blocks_per_seq]
  int max_blocks_per_seq = 0;
  std::span<const int32_t> logit_rows;  // [n_logits] token indices whose logits are wanted
};

// How a pure-decode step (every sequence has one new token) is padded so the backend can replay
// a recorded graph of it (Backend::run_graph). Everything a recording depends on follows from
// these fields, so equal keys mean identical op calls:
//   rows: the batch padded to a bucket (1, 2, 4, ..., 256, or the limits' cap): sequences,
//     tokens and logit rows; padding rows read block 0 and write no KV (slot -1);
//   kv_bucket: the attention's max_kv_len, rounded up to 2^k or 1.5 * 2^k (at least 256, at most
//     the limits' context); each sequence's real length is read from device memory;
//   blocks_per_seq: block-table row length, enough for kv_bucket tokens.
struct DecodeGraphShape {
  int rows = 0;  // 0: run this step directly (no graph)
  int kv_bucket = 0;
  int blocks_per_seq = 0;
  uint64_t key = 0;
};
constexpr int kMaxGraphBatch = 256;
constexpr int kMinGraphKvBucket = 256;
// The shape for `n_seqs` single-token sequences whose longest context is max_kv_len tokens.
DecodeGraphShape decode_graph_shape(int n_seqs, int max_kv_len, int block_size,
                                    const ModelLimits& limits);

// Bytes of the loaded weights by role, as the backend holds them (for roofline accounting).
struct WeightRoleBytes {
  int64_t embedding = 0;  // token_embd
  int64_t attention = 0;  // wq, wk, wv, wo and the q/k/v biases, all layers
  int64_t ffn = 0;        // w_gate, w_up, w_down, all layers
  int64_t norms = 0;      // attn_norm, ffn_norm, output_norm
  int64_t output = 0;     // output projection; 0 when tied to the embedding
};

class LlamaModel {
 public:
  // Uploads the source's weights to the backend after checking every shape against the config.
  static Result<std::unique_ptr<LlamaModel>> load(Backend& backend, const ModelSource& source,
                                                  const ModelLimits& limits);
  // Random weights of `dtype` for any config (benchmarks without downloads).
  static Result<std::unique_ptr<LlamaModel>> synthetic(Backend& backend, const ModelConfig& config,
                                                       DType dtype, uint64_t seed,
                                                       const ModelLimits& limits);
  ~LlamaModel();

  const ModelConfig& config() const { return config_; }
  const ModelLimits& limits() const { return limits_; }
  Backend& backend() { return backend_; }
  size_t weight_bytes() const { return weight_bytes_; }
  const WeightRoleBytes& weight_role_bytes() const { return role_bytes_; }

  // KV cache for `num_blocks` blocks of `block_size` tokens, in the backend's memory.
  Result<KvCache> alloc_kv_cache(int num_blocks, int block_size);

  // Runs one step. Returns logits [n_logits, vocab] (F32, backend memory, valid until the next
  // call). The batch is checked against the limits and the cache geometry first.
  Result<Tensor> forward(const ForwardBatch& batch, const KvCache& kv);

  // Logits for more rows of the last forward()'s batch, from the final hidden states it left in
  // the workspace (no second forward): for scoring prompt tokens (prompt logprobs), whose every
  // position needs logits while a step samples only one per sequence. rows: [n] token indices
  // of that batch, 1 <= n <= limits().max_logit_rows. Returns [n, vocab] (F32, backend memory)
  // in the buffer forward() returns, so download forward()'s logits first; valid until the next
  // call of either. Each row's logits are the ones forward() would give for that row.
  Result<Tensor> row_logits(std::span<const int32_t> rows);

 private:
  // With fused projections (Backend::prefers_fused_projections) wq/wk/wv, bq/bk/bv and
  // w_gate/w_up stay empty and wqkv [q_dim + 2 kv_dim, hidden], bqkv [1, q_dim + 2 kv_dim] and
  // w_gate_up [2 ff, hidden] hold them stacked row-wise; otherwise the fused ones stay empty.
  // Each stack is decided per layer (a null wqkv.data or w_gate_up.data: separate weights), as a
  // backend may stack only parts of one type (Backend::stacks_mixed_weight_types).
  struct Layer {
    Tensor attn_norm, wq, wk, wv, wo, bq, bk, bv, ffn_norm, w_gate, w_up, w_down;
    Tensor wqkv, bqkv, w_gate_up;
  };
  LlamaModel(Backend& backend, const ModelConfig& config, const ModelLimits& limits);
  Status alloc_workspace();
  // Loads one layer's attention and FFN projections from the source, fused or not (fused_).
  Status load_projections(const ModelSource& src, int64_t i, Layer& l);
  Status check_batch(const ForwardBatch& batch, const KvCache& kv) const;

  Backend& backend_;
  ModelConfig config_;
  ModelLimits limits_;
  bool fused_ = false;  // one matmul for q|k|v and one for gate|up (see Layer)
  size_t weight_bytes_ = 0;
  WeightRoleBytes role_bytes_;
  void count_weight(const std::string& name, const Tensor& t);
  Tensor tok_embd_, output_norm_, output_;  // output_ aliases tok_embd_ when tied
  std::vector<Layer> layers_;
  std::vector<Tensor> owned_;  // workspace tensors to free

  // Workspace, sized by limits_ (rows = max_batch_tokens unless noted).
  Tensor x_;                // [T, hidden] residual stream
  Tensor xn_;               // [T, hidden] normalized
  Tensor q_, k_, v_;        // [T, n_heads*hd], [T, n_kv*hd], [T, n_kv*hd] (k_, v_: unfused)
  Tensor qkv_;              // [T, (n_heads + 2 n_kv)*hd] fused only
  Tensor gate_up_;          // [T, 2 ff] fused only
  Tensor attn_;             // [T, n_heads*hd]
  Tensor proj_;             // [T, hidden] attention or FFN output before the residual add
  Tensor gate_, up_, act_;  // [T, ff] (gate_, up_: unfused)
  Tensor sel_;              // [max_logit_rows, hidden]
  Tensor logits_;           // [max_logit_rows, vocab] F32
  Tensor inv_freq_;         // [1, hd/2] F32
  Tensor ids_, pos_, slots_, qstart_, kvlen_, btab_, lrows_;  // I32 step inputs
  int64_t last_batch_tokens_ = 0;  // rows of xn_ the last forward() filled (row_logits reads them)

  // Graph steps: padded host copies of the step inputs, and the KV cache the recordings write
  // (a different cache drops them).
  struct PaddedInputs {
    std::vector<int32_t> ids, pos, slots, qstart, kvlen, btab, lrows;
  };
  PaddedInputs padded_;
  std::vector<const void*> graph_kv_;
};

// RoPE inverse frequencies for a config, [head_dim / 2], with Llama 3 scaling or explicit
// per-frequency factors (GGUF rope_freqs.weight) applied.
std::vector<float> rope_inv_freq(const ModelConfig& config, std::span<const float> freq_factors);

}  // namespace carpool
