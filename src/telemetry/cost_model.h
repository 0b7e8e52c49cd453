// Analytic cost of one engine step: FLOPs and bytes moved, from the model config and the step's
// shape. The engine builds a CostModel once per model and calls compute_step_cost() per step
// (O(1): a few dozen multiplications, no allocation).
//
// FLOPs (PaLM, appendix B, with exact causal counting):
//   matmuls    2 · N_matmul · tokens            N_matmul = per-layer q,k,v,o,gate,up,down weights
//   attention  4 · L · H · Q · pairs            pairs = Σ_seq Σ_new-token keys it attends to;
//                                                a sequence with q new tokens and context c after
//                                                the step has q·c − q·(q−1)/2 pairs
//   logits     2 · vocab · hidden · logit_rows  only the rows that need logits
// Bytes (what the step must move at least once through device memory):
//   weights      every layer matrix and norm once per step; the output matrix when any row needs
//                logits; from the token embedding only the gathered rows (unless tied: then the
//                table is read in full as the output matrix)
//   kv read      kv_bytes_per_token · Σ_seq c (each sequence reads its whole context once)
//   kv write     kv_bytes_per_token · tokens
//   activations  estimate of unfused activation traffic (each op reads its inputs and writes its
//                outputs once): per token per layer (17·d + 4·q_dim + 2·kv_dim + 6·ff) elements,
//                plus the F32 logits. Reported apart; MBU and arithmetic intensity use
//                weights + KV read + KV write (the bytes that must come from DRAM).
#pragma once

#include <cstdint>

#include "backend/dtype.h"
#include "model/model_config.h"

namespace carpool::telemetry {

// Bytes of the weights, by tensor type (role), as stored on the device.
struct WeightBytes {
  int64_t embedding = 0;  // token embedding table [vocab, hidden]
  int64_t attention = 0;  // all layers: wq, wk, wv, wo (+ q/k/v bias)
  int64_t ffn = 0;        // all layers: w_gate, w_up, w_down
  int64_t norms = 0;      // all layers' attn_norm, ffn_norm, plus output_norm
  int64_t output = 0;     // output projection [vocab, hidden]; 0 when tied to the embedding
  int64_t total() const { return embedding + attention + ffn + norms + output; }
};

// Element types by role, for weight_bytes_from_dtypes().
struct WeightDTypes {
  DType embedding = DType::kBF16;
  DType attention = DType::kBF16;
  DType ffn = DType::kBF16;
  DType norms = DType::kBF16;  // also the q/k/v biases
  DType output = DType::kBF16;
};

// The bytes each role takes at these types (rows of each matrix stored with dtype_row_bytes).
// Precondition: config.validate() is OK and each matrix's row length is a multiple of its type's
// block size (true of every loadable model).
WeightBytes weight_bytes_from_dtypes(const ModelConfig& config, const WeightDTypes& dtypes);

// Built once per model. Plain numbers; copyable.
struct CostModel {
  int64_t n_layers = 0, hidden = 0, n_heads = 0, head_dim = 0, q_dim = 0, kv_dim = 0, ff = 0,
          vocab = 0;
  bool tied_embeddings = false;
  int64_t matmul_params_per_token = 0;  // N_matmul over all layers (no embedding, no output)
  WeightBytes weights;
  int64_t embedding_row_bytes = 0;  // weights.embedding / vocab
  int64_t kv_bytes_per_token = 0;   // K and V, all layers
  int64_t act_bytes_per_elem = 4;   // activations (CPU f32: 4; CUDA bf16: 2)
};

// `weights`: actual bytes per role (weight_bytes_from_dtypes, or what the loader counted);
// `kv_dtype`: the cache's element type (kv_cache_row_bytes).
CostModel make_cost_model(const ModelConfig& config, const WeightBytes& weights, DType kv_dtype,
                          int act_bytes_per_elem);

// One phase's share of a step (prefill chunks or decode tokens), as sums over its sequences.
struct PhaseShape {
  int64_t tokens = 0;          // new tokens computed this step
  int64_t seqs = 0;            // sequences
  int64_t attn_pairs = 0;      // Σ (query, key) pairs attended (see header comment)
  int64_t kv_read_tokens = 0;  // Σ context length after the step
  int64_t logit_rows = 0;      // rows whose logits are computed
};

// The step's plan reduced to numbers. Build it with add_sequence() (no allocation).
struct StepShape {
  PhaseShape prefill;
  PhaseShape decode;

  // A sequence computing `q_len` new tokens whose context is `kv_len` tokens after the step
  // (kv_len >= q_len >= 1). `prefill`: the tokens are prompt tokens (a prefill chunk).
  // `needs_logits`: one logit row (last chunk of a prompt, or a decode token).
  void add_sequence(int64_t q_len, int64_t kv_len, bool prefill, bool needs_logits);
  int64_t tokens() const { return prefill.tokens + decode.tokens; }
  int64_t seqs() const { return prefill.seqs + decode.seqs; }
};

// FLOPs and bytes of a step (or of a phase).
struct StepCost {
  double flops_matmul = 0, flops_attention = 0, flops_logits = 0;
  double bytes_weights = 0, bytes_kv_read = 0, bytes_kv_write = 0, bytes_activations = 0;

  double flops() const { return flops_matmul + flops_attention + flops_logits; }
  // The bytes MBU and arithmetic intensity use: weights + KV read + KV write.
  double bytes() const { return bytes_weights + bytes_kv_read + bytes_kv_write; }
  StepCost& operator+=(const StepCost& o);
};

StepCost compute_step_cost(const CostModel& model, const StepShape& shape);

}  // namespace carpool::telemetry
