// CudaBackend ops: shape and type checks on the host, then a kernel launch or a cuBLAS call on the
// backend's stream. Shapes are documented in backend/backend.h.
#include <cublas_v2.h>

#include <algorithm>
#include <thread>
#include <utility>

#include "backend/cuda/cuda_backend_impl.h"
#include "backend/cuda/cuda_check.h"
#include "util/check.h"

namespace carpool::cuda {
namespace {

bool is_float_type(DType t) {
  return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16;
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::kF32:
      return CUDA_R_32F;
    case DType::kF16:
      return CUDA_R_16F;
    case DType::kBF16:
      return CUDA_R_16BF;
    default:
      CARPOOL_CHECK(false && "no cuBLAS type");
  }
  return CUDA_R_32F;
}

const int32_t* i32(const Tensor& t) {
  CARPOOL_CHECK(t.dtype == DType::kI32);
  return static_cast<const int32_t*>(t.data);
}

// Scratch slots (see CudaBackend::scratch).
constexpr int kScratchX = 0;
constexpr int kScratchW = 1;
constexpr int kScratchAttention = 2;

}  // namespace

void CudaBackend::embed(Tensor out, const Tensor& table, const Tensor& ids) {
  const OpScope scope(*this, "embed");
  CARPOOL_CHECK(is_float_type(out.dtype) && out.rows == ids.numel() && out.cols == table.cols);
  const void* tab = table.data;
  DType tab_dtype = table.dtype;
  if (!is_float_type(table.dtype)) {  // quantized table not from load_weight
    tab = as_bf16(table, kScratchW);
    tab_dtype = DType::kBF16;
  }
  launch_embed(ctx_, out.data, out.dtype, tab, tab_dtype, table.rows, i32(ids), out.rows, out.cols);
}

void CudaBackend::rmsnorm(Tensor out, const Tensor& x, const Tensor& w, float eps) {
  const OpScope scope(*this, "rmsnorm");
  CARPOOL_CHECK(is_float_type(out.dtype) && is_float_type(x.dtype) && is_float_type(w.dtype));
  CARPOOL_CHECK(out.rows == x.rows && out.cols == x.cols && w.numel() == x.cols);
  launch_rmsnorm(ctx_, out.data, out.dtype, x.data, x.dtype, nullptr, DType::kF32, w.data, w.dtype,
                 x.rows, x.cols, eps);
}

void CudaBackend::add_rmsnorm(Tensor residual, const Tensor& x, const Tensor& w, Tensor out,
                              float eps) {
  const OpScope scope(*this, "add_rmsnorm");
  CARPOOL_CHECK(is_float_type(residual.dtype) && is_float_type(x.dtype) && is_float_type(w.dtype) &&
                is_float_type(out.dtype));
  CARPOOL_CHECK(residual.rows == x.rows && residual.cols == x.cols && out.rows == x.rows &&
                out.cols == x.cols && w.numel() == x.cols);
  launch_rmsnorm(ctx_, out.data, out.dtype, x.data, x.dtype, residual.data, residual.dtype, w.data,
                 w.dtype, x.rows, x.cols, eps);
}

void CudaBackend::matmul(Tensor out, const Tensor& x, const Tensor& w, const Tensor* bias) {
  CARPOOL_CHECK(x.cols == w.cols && out.rows == x.rows && out.cols == w.rows);
  CARPOOL_CHECK(is_float_type(out.dtype) && is_float_type(x.dtype));
  const int64_t m = x.rows, n = w.rows, k = x.cols;
  if (m == 0 || n == 0) return;
  OpScope scope(*this, "matmul");
  const void* xb = as_bf16(x, kScratchX);
  const void* wb = as_bf16(w, kScratchW);
  using Gemv = CudaBackendOptions::Gemv;
  const Gemv mode = options_.small_batch_gemv;
  const bool gemv = (mode == Gemv::kAll || (mode == Gemv::kAuto && m == 1 && n >= k)) &&
                    gemv_bf16_fits(m, k, wb, xb) && (bias == nullptr || is_float_type(bias->dtype));
  if (scope.on()) {
    scope.describe(matmul_op_key(m, k, n, w.dtype, gemv ? " gemv" : " cublas"),
                   static_cast<double>(n) * static_cast<double>(k) * 2.0,
                   2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k));
  }
  if (gemv) {
    if (bias != nullptr) CARPOOL_CHECK(bias->numel() == n);
    launch_gemv_bf16(ctx_, out.data, out.dtype, xb, wb, bias != nullptr ? bias->data : nullptr,
                     bias != nullptr ? bias->dtype : DType::kF32, m, n, k);
    return;
  }
  // Row-major out[m, n] = x[m, k] w[n, k]^T is column-major out^T[n, m] = w^T... i.e. cuBLAS
  // sees w as a column-major k x n matrix (transposed) and x as column-major k x m.
  const float alpha = 1.f, beta = 0.f;
  CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n),
                            static_cast<int>(m), static_cast<int>(k), &alpha, wb, CUDA_R_16BF,
                            static_cast<int>(k), xb, CUDA_R_16BF, static_cast<int>(k), &beta,
                            out.data, cuda_type(out.dtype), static_cast<int>(n), CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
  if (ctx_.debug_sync) CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
  if (bias != nullptr) {
    CARPOOL_CHECK(bias->numel() == n);
    if (is_float_type(bias->dtype)) {
      launch_add_bias(ctx_, out.data, out.dtype, bias->data, bias->dtype, m, n);
    } else {  // x's scratch is free again once the GEMM is enqueued
      launch_add_bias(ctx_, out.data, out.dtype, as_bf16(*bias, kScratchX), DType::kBF16, m, n);
    }
  }
}

void CudaBackend::rope(Tensor x, const Tensor& positions, const Tensor& inv_freq, int n_heads,
                       int head_dim, RopeStyle style) {
  const OpScope scope(*this, "rope");
  CARPOOL_CHECK(is_float_type(x.dtype) && x.cols == int64_t(n_heads) * head_dim);
  CARPOOL_CHECK(head_dim % 2 == 0 && positions.numel() == x.rows);
  CARPOOL_CHECK(inv_freq.dtype == DType::kF32 && inv_freq.numel() >= head_dim / 2);
  launch_rope(ctx_, x.data, x.dtype, i32(positions), static_cast<const float*>(inv_freq.data),
              x.rows, n_heads, head_dim, style == RopeStyle::kInterleaved);
}

void CudaBackend::kv_write(Tensor k_cache, Tensor v_cache, const Tensor& k, const Tensor& v,
                           const Tensor& slots) {
  const OpScope scope(*this, "kv_write");
  CARPOOL_CHECK(k_cache.dtype == v_cache.dtype && is_float_type(k_cache.dtype));
  CARPOOL_CHECK(k.dtype == v.dtype && is_float_type(k.dtype));
  CARPOOL_CHECK(k.cols == k_cache.cols && v.cols == v_cache.cols && k.cols == v.cols);
  CARPOOL_CHECK(k.rows == v.rows && slots.numel() == k.rows && k_cache.rows == v_cache.rows);
  launch_kv_write(ctx_, k_cache.data, v_cache.data, k_cache.dtype, k_cache.rows, k.data, v.data,
                  k.dtype, i32(slots), k.rows, k.cols);
}

void CudaBackend::rope_kv_write(Tensor q, Tensor k, const Tensor& v, Tensor k_cache, Tensor v_cache,
                                const Tensor& positions, const Tensor& inv_freq,
                                const Tensor& slots, int n_heads, int n_kv_heads, int head_dim,
                                RopeStyle style) {
  const OpScope scope(*this, "rope_kv_write");
  CARPOOL_CHECK(q.dtype == k.dtype && is_float_type(q.dtype) && is_float_type(v.dtype));
  CARPOOL_CHECK(k_cache.dtype == v_cache.dtype && is_float_type(k_cache.dtype));
  CARPOOL_CHECK(head_dim % 2 == 0 && q.cols == int64_t(n_heads) * head_dim);
  CARPOOL_CHECK(k.cols == int64_t(n_kv_heads) * head_dim && v.cols == k.cols);
  CARPOOL_CHECK(k_cache.cols == k.cols && v_cache.cols == k.cols && k_cache.rows == v_cache.rows);
  CARPOOL_CHECK(q.rows == k.rows && v.rows == k.rows && positions.numel() == q.rows &&
                slots.numel() == q.rows);
  CARPOOL_CHECK(inv_freq.dtype == DType::kF32 && inv_freq.numel() >= head_dim / 2);
  launch_rope_kv_write(ctx_, q.data, k.data, q.dtype, v.data, v.dtype, k_cache.data, v_cache.data,
                       k_cache.dtype, k_cache.rows, i32(positions),
                       static_cast<const float*>(inv_freq.data), i32(slots), q.rows, n_heads,
                       n_kv_heads, head_dim, style == RopeStyle::kInterleaved);
}

void CudaBackend::rope_kv_write_qkv(Tensor q_out, const Tensor& qkv, Tensor k_cache, Tensor v_cache,
                                    const Tensor& positions, const Tensor& inv_freq,
                                    const Tensor& slots, int n_heads, int n_kv_heads, int head_dim,
                                    RopeStyle style) {
  const OpScope scope(*this, "rope_kv_write_qkv");
  const int64_t q_dim = int64_t(n_heads) * head_dim, kv_dim = int64_t(n_kv_heads) * head_dim;
  CARPOOL_CHECK(is_float_type(q_out.dtype) && is_float_type(qkv.dtype));
  CARPOOL_CHECK(k_cache.dtype == v_cache.dtype && is_float_type(k_cache.dtype));
  CARPOOL_CHECK(head_dim % 2 == 0 && q_out.cols == q_dim && qkv.cols == q_dim + 2 * kv_dim);
  CARPOOL_CHECK(k_cache.cols == kv_dim && v_cache.cols == kv_dim && k_cache.rows == v_cache.rows);
  CARPOOL_CHECK(q_out.rows == qkv.rows && positions.numel() == qkv.rows &&
                slots.numel() == qkv.rows);
  CARPOOL_CHECK(inv_freq.dtype == DType::kF32 && inv_freq.numel() >= head_dim / 2);
  launch_rope_kv_write_qkv(ctx_, q_out.data, q_out.dtype, qkv.data, qkv.dtype, k_cache.data,
                           v_cache.data, k_cache.dtype, k_cache.rows, i32(positions),
                           static_cast<const float*>(inv_freq.data), i32(slots), qkv.rows, n_heads,
                           n_kv_heads, head_dim, style == RopeStyle::kInterleaved);
}

void CudaBackend::attention(Tensor out, const Tensor& q, const Tensor& k_cache,
                            const Tensor& v_cache, const AttentionMeta& meta) {
  const OpScope scope(*this, "attention");
  CARPOOL_CHECK(k_cache.dtype == DType::kBF16 && v_cache.dtype == DType::kBF16);
  CARPOOL_CHECK(is_float_type(q.dtype) && is_float_type(out.dtype));
  CARPOOL_CHECK(meta.n_heads > 0 && meta.n_kv_heads > 0 && meta.n_heads % meta.n_kv_heads == 0);
  CARPOOL_CHECK(meta.head_dim > 0 && meta.head_dim <= kMaxHeadDim && meta.head_dim % 2 == 0);
  CARPOOL_CHECK(q.rows == meta.n_tokens && q.cols == int64_t(meta.n_heads) * meta.head_dim);
  CARPOOL_CHECK(out.rows == q.rows && out.cols == q.cols);
  CARPOOL_CHECK(k_cache.cols == int64_t(meta.n_kv_heads) * meta.head_dim);
  CARPOOL_CHECK(meta.block_tables.numel() >= int64_t(meta.n_seqs) * meta.max_blocks_per_seq);
  CARPOOL_CHECK(meta.block_size > 0 && k_cache.rows % meta.block_size == 0);
  CARPOOL_CHECK(meta.query_start.numel() >= meta.n_seqs + 1 && meta.kv_len.numel() >= meta.n_seqs);
  if (meta.n_tokens == 0 || meta.n_seqs == 0) return;
  AttentionLaunch a;
  a.q = q.data;
  a.q_dtype = q.dtype;
  a.out = out.data;
  a.out_dtype = out.dtype;
  a.k_cache = k_cache.data;
  a.v_cache = v_cache.data;
  a.query_start = i32(meta.query_start);
  a.kv_len = i32(meta.kv_len);
  a.block_tables = i32(meta.block_tables);
  a.n_tokens = meta.n_tokens;
  a.n_seqs = meta.n_seqs;
  a.max_blocks_per_seq = meta.max_blocks_per_seq;
  a.block_size = meta.block_size;
  a.n_heads = meta.n_heads;
  a.n_kv_heads = meta.n_kv_heads;
  a.head_dim = meta.head_dim;
  a.max_kv_len = meta.max_kv_len;
  a.max_q_len = meta.max_q_len;
  a.scale = meta.scale;
  const int64_t ws = attention_workspace_floats(ctx_, a);
  float* workspace =
      ws > 0 ? static_cast<float*>(scratch(kScratchAttention, static_cast<size_t>(ws) * 4))
             : nullptr;
  launch_attention(ctx_, a, workspace);
}

void CudaBackend::swiglu(Tensor out, const Tensor& gate, const Tensor& up) {
  const OpScope scope(*this, "swiglu");
  CARPOOL_CHECK(gate.dtype == up.dtype && is_float_type(gate.dtype) && is_float_type(out.dtype));
  CARPOOL_CHECK(gate.rows == up.rows && gate.cols == up.cols && out.rows == gate.rows &&
                out.cols == gate.cols);
  launch_swiglu(ctx_, out.data, out.dtype, gate.data, up.data, gate.dtype, gate.rows, gate.cols);
}

void CudaBackend::swiglu_fused(Tensor out, const Tensor& gate_up) {
  const OpScope scope(*this, "swiglu_fused");
  CARPOOL_CHECK(is_float_type(gate_up.dtype) && is_float_type(out.dtype));
  CARPOOL_CHECK(gate_up.rows == out.rows && gate_up.cols == 2 * out.cols);
  launch_swiglu_fused(ctx_, out.data, out.dtype, gate_up.data, gate_up.dtype, out.rows, out.cols);
}

void CudaBackend::gather_rows(Tensor out, const Tensor& x, const Tensor& idx) {
  const OpScope scope(*this, "gather_rows");
  CARPOOL_CHECK(is_float_type(out.dtype) && is_float_type(x.dtype));
  CARPOOL_CHECK(out.rows == idx.numel() && out.cols == x.cols);
  launch_gather_rows(ctx_, out.data, out.dtype, x.data, x.dtype, x.rows, i32(idx), out.rows,
                     out.cols);
}

bool CudaBackend::argmax_rows(Tensor out, const Tensor& logits) {
  const OpScope scope(*this, "argmax_rows");
  CARPOOL_CHECK(is_float_type(logits.dtype) && logits.cols >= 1 && logits.cols <= INT32_MAX);
  CARPOOL_CHECK(out.dtype == DType::kI32 && out.rows == logits.rows && out.cols == 1);
  mark_sampling_begin();
  launch_argmax_rows(ctx_, static_cast<int32_t*>(out.data), logits.data, logits.dtype, logits.rows,
                     logits.cols);
  mark_sampling_end();
  return true;
}

bool CudaBackend::sample_rows(Tensor out, const Tensor& logits, const Tensor& params) {
  const OpScope scope(*this, "sample_rows");
  if (!options_.device_sampling) return false;
  CARPOOL_CHECK(is_float_type(logits.dtype) && logits.cols >= 1 && logits.cols <= INT32_MAX);
  CARPOOL_CHECK(out.dtype == DType::kI32 && out.rows == logits.rows && out.cols == 1);
  CARPOOL_CHECK(params.dtype == DType::kF32 && params.rows == logits.rows &&
                params.cols == kRowSamplingFloats);
  mark_sampling_begin();
  launch_sample_rows(ctx_, static_cast<int32_t*>(out.data), logits.data, logits.dtype, logits.rows,
                     logits.cols, static_cast<const float*>(params.data));
  mark_sampling_end();
  return true;
}

int CudaBackend::host_workers() const {
  return static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 16u));
}

void CudaBackend::host_parallel_for(int64_t n,
                                    const std::function<void(int64_t, int64_t, int)>& fn) {
  if (!host_pool_) host_pool_ = std::make_unique<ThreadPool>(host_workers());
  host_pool_->parallel_for(n, 1, [&fn](int64_t b, int64_t e, int t) { fn(b, e, t); });
}

}  // namespace carpool::cuda
