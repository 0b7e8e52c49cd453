#include "telemetry/cost_model.h"

namespace carpool::telemetry {
namespace {

int64_t matrix_bytes(DType t, int64_t rows, int64_t cols) {
  return rows * static_cast<int64_t>(dtype_row_bytes(t, cols));
}

}  // namespace

WeightBytes weight_bytes_from_dtypes(const ModelConfig& c, const WeightDTypes& t) {
  const int64_t d = c.hidden_size;
  const int64_t q_dim = c.n_heads * c.head_dim;
  const int64_t kv_dim = c.n_kv_heads * c.head_dim;
  const int64_t ff = c.intermediate_size;
  WeightBytes w;
  w.embedding = matrix_bytes(t.embedding, c.vocab_size, d);
  // Weights are stored [out, in]: rows = output features, cols = input features.
  int64_t attn_layer = matrix_bytes(t.attention, q_dim, d) +
                       2 * matrix_bytes(t.attention, kv_dim, d) +
                       matrix_bytes(t.attention, d, q_dim);
  if (c.qkv_bias)
    attn_layer += matrix_bytes(t.norms, 1, q_dim) + 2 * matrix_bytes(t.norms, 1, kv_dim);
  w.attention = c.n_layers * attn_layer;
  w.ffn = c.n_layers * (2 * matrix_bytes(t.ffn, ff, d) + matrix_bytes(t.ffn, d, ff));
  w.norms = (2 * c.n_layers + 1) * matrix_bytes(t.norms, 1, d);
  w.output = c.tied_embeddings ? 0 : matrix_bytes(t.output, c.vocab_size, d);
  return w;
}

CostModel make_cost_model(const ModelConfig& c, const WeightBytes& weights, DType kv_dtype,
                          int act_bytes_per_elem) {
  CostModel m;
  m.n_layers = c.n_layers;
  m.hidden = c.hidden_size;
  m.n_heads = c.n_heads;
  m.head_dim = c.head_dim;
  m.q_dim = c.n_heads * c.head_dim;
  m.kv_dim = c.n_kv_heads * c.head_dim;
  m.ff = c.intermediate_size;
  m.vocab = c.vocab_size;
  m.tied_embeddings = c.tied_embeddings;
  const int64_t per_layer =
      m.hidden * m.q_dim + 2 * m.hidden * m.kv_dim + m.q_dim * m.hidden + 3 * m.hidden * m.ff;
  m.matmul_params_per_token = m.n_layers * per_layer;
  m.weights = weights;
  m.embedding_row_bytes = c.vocab_size > 0 ? weights.embedding / c.vocab_size : 0;
  m.kv_bytes_per_token = c.kv_bytes_per_token(kv_dtype);
  m.act_bytes_per_elem = act_bytes_per_elem;
  return m;
}

void StepShape::add_sequence(int64_t q_len, int64_t kv_len, bool is_prefill, bool needs_logits) {
  PhaseShape& p = is_prefill ? prefill : decode;
  p.tokens += q_len;
  p.seqs += 1;
  // Token j (0-based) of the chunk sits at position kv_len - q_len + j and sees that many + 1
  // keys: Σ_j (kv_len - q_len + j + 1) = q·c − q·(q−1)/2.
  p.attn_pairs += q_len * kv_len - q_len * (q_len - 1) / 2;
  p.kv_read_tokens += kv_len;
  if (needs_logits) p.logit_rows += 1;
}

StepCost& StepCost::operator+=(const StepCost& o) {
  flops_matmul += o.flops_matmul;
  flops_attention += o.flops_attention;
  flops_logits += o.flops_logits;
  bytes_weights += o.bytes_weights;
  bytes_kv_read += o.bytes_kv_read;
  bytes_kv_write += o.bytes_kv_write;
  bytes_activations += o.bytes_activations;
  return *this;
}

StepCost compute_step_cost(const CostModel& m, const StepShape& s) {
  const double tokens = static_cast<double>(s.tokens());
  const double pairs = static_cast<double>(s.prefill.attn_pairs + s.decode.attn_pairs);
  const double kv_read = static_cast<double>(s.prefill.kv_read_tokens + s.decode.kv_read_tokens);
  const double rows = static_cast<double>(s.prefill.logit_rows + s.decode.logit_rows);
  const double L = static_cast<double>(m.n_layers);
  StepCost c;
  if (tokens <= 0) return c;
  c.flops_matmul = 2.0 * static_cast<double>(m.matmul_params_per_token) * tokens;
  c.flops_attention = 4.0 * L * static_cast<double>(m.n_heads * m.head_dim) * pairs;
  c.flops_logits = 2.0 * static_cast<double>(m.vocab * m.hidden) * rows;

  const WeightBytes& w = m.weights;
  double weights = static_cast<double>(w.attention + w.ffn + w.norms);
  weights += tokens * static_cast<double>(m.embedding_row_bytes);  // gathered rows
  if (rows > 0) weights += static_cast<double>(m.tied_embeddings ? w.embedding : w.output);
  c.bytes_weights = weights;
  c.bytes_kv_read = kv_read * static_cast<double>(m.kv_bytes_per_token);
  c.bytes_kv_write = tokens * static_cast<double>(m.kv_bytes_per_token);
  const double per_token_layer =
      static_cast<double>(17 * m.hidden + 4 * m.q_dim + 2 * m.kv_dim + 6 * m.ff);
  c.bytes_activations = tokens * L * per_token_layer * static_cast<double>(m.act_bytes_per_elem) +
                        rows * static_cast<double>(m.vocab) * 4.0;
  return c;
}

}  // namespace carpool::telemetry
