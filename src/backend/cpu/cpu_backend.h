// The CPU backend: the reference every other backend is checked against, and the default.
//
// Activations, logits and the KV cache are F32. Weights stay where load_weight found them (zero
// copy; the host memory, often a file mapping, must outlive the backend). Matmul supports every
// weight dtype: F32/F16/BF16 rows are converted to f32 and multiplied in f32 (fast mode, BF16
// weights with AVX512_BF16: activations rounded to bf16, as llama.cpp does); quantized rows are
// dotted with activations quantized to 8 bits per block of 32 (integer dot products, about 0.5%
// relative error from the activation rounding), or, with quantize_activations = false,
// dequantized to f32 first (exact up to f32 summation order).
//
// Matmul kernels are chosen at run time from CPUID (cpu_features.h: AVX-512 with VNNI, AVX2, or
// portable C++; the environment variable CARPOOL_CPU_ISA caps the level): tiled kernels that
// unpack each weight block once per tile of 4 or 8 activation rows (gemm_q8a.h, gemm_float.h).
// With AVX-512 VNNI, Q4_0/Q4_1/Q8_0/Q4_K/Q5_K/Q6_K weights are repacked at their first matmul
// so that one instruction serves 16 weight rows (packed_weights.h, gemm_packed.h), and with
// AVX-512 so are F32/F16/BF16 weights (gemm_packed_float.h: FMAs as outer products; in the fast
// mode BF16 weights take bf16 activations and vdpbf16ps where the CPU has it); the copy
// counts as weight memory (the file's pages of a packed tensor are no longer read; an embedding
// table also used as the output matrix keeps both). CARPOOL_CPU_PACK=0 turns packing off. A row's
// result does not depend on how many rows share its matmul (batch invariance).
//
// Every op runs synchronously on the calling thread plus a persistent pool of worker threads, so
// download() and synchronize() have nothing to wait for.
//
// Thread-safety: like every Backend, used by one thread at a time.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/gemm_packed.h"
#include "backend/cpu/kv_layout.h"
#include "backend/cpu/packed_weights.h"
#include "backend/cpu/quants.h"
#include "util/thread_pool.h"

namespace carpool {

struct CpuBackendOptions {
  int n_threads = 0;  // 0: one per hardware thread
  // Quantized matmul with 8-bit activations and integer dot products (fast), or with weights
  // dequantized to f32 (exact reference).
  bool quantize_activations = true;
  // Element type of the KV cache: kF16 (half the memory and the bytes each decode step streams;
  // values rounded to f16 as they are written, arithmetic in f32), kF32 (the exact reference) or
  // kI8 (a quarter of f32's memory and bytes, plus 4 bytes per token and KV head: each head's
  // values as int8 with one f32 scale, max |x| / 127, rounded as written; arithmetic in f32).
  // Unset: kF16 with quantize_activations, kF32 without.
  std::optional<DType> kv_dtype = std::nullopt;
  // Ask the model for fused projections (Backend::prefers_fused_projections): one matmul for
  // q|k|v and one for gate|up, each with one activation quantization and one hand-off to the
  // threads, and the rotation and cache write of q and k in one pass. Off when
  // CARPOOL_CPU_FUSED=0 is set when the backend starts (A/B runs).
  bool fused_projections = true;
};

std::unique_ptr<Backend> make_cpu_backend(const CpuBackendOptions& options = {});

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const CpuBackendOptions& options);
  ~CpuBackend() override;

  std::string name() const override { return "cpu"; }
  std::string device_name() const override;
  DType activation_dtype() const override { return DType::kF32; }
  DType kv_cache_dtype() const override { return *options_.kv_dtype; }
  BackendMemoryInfo memory_info() const override;

  Result<Tensor> alloc(DType dtype, int64_t rows, int64_t cols) override;
  void free(Tensor& t) override;
  Result<Tensor> load_weight(const HostWeight& w) override;
  // Parts that lie back to back in memory (GGUF files sort tensor names, so ffn_gate is followed
  // by ffn_up) are used in place; others are copied once into memory owned by the backend (for
  // q|k|v of a GGUF file: about a ninth of an 8B model's weights). A copy of at least 2 MiB that
  // will only be read packed (rows a multiple of 16, packing applies) is packed at once and its
  // pages are given back (host_release_pages).
  Result<Tensor> load_weight_concat(std::span<const HostWeight> parts) override;
  bool prefers_fused_projections() const override { return options_.fused_projections; }
  Result<KvCache> alloc_kv(const KvCacheConfig& config) override;
  // Each block's K and V (and an int8 cache's scales) in one record (kv_layout.h).
  std::vector<float> kv_cache_row(const Tensor& cache, int64_t slot) override;
  void upload(Tensor dst, const void* host, size_t bytes) override;
  void download(void* host, const Tensor& src, size_t bytes) override;
  void synchronize() override {}

  void embed(Tensor out, const Tensor& table, const Tensor& ids) override;
  void rmsnorm(Tensor out, const Tensor& x, const Tensor& w, float eps) override;
  void add_rmsnorm(Tensor residual, const Tensor& x, const Tensor& w, Tensor out,
                   float eps) override;
  void matmul(Tensor out, const Tensor& x, const Tensor& w, const Tensor* bias) override;
  void rope(Tensor x, const Tensor& positions, const Tensor& inv_freq, int n_heads, int head_dim,
            RopeStyle style) override;
  void kv_write(Tensor k_cache, Tensor v_cache, const Tensor& k, const Tensor& v,
                const Tensor& slots) override;
  void attention(Tensor out, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                 const AttentionMeta& meta) override;
  void swiglu(Tensor out, const Tensor& gate, const Tensor& up) override;
  // One pass over the tokens: each token's cos/sin once, q and k rotated, k and v written to the
  // cache (bitwise the results of rope, rope and kv_write).
  void rope_kv_write(Tensor q, Tensor k, const Tensor& v, Tensor k_cache, Tensor v_cache,
                     const Tensor& positions, const Tensor& inv_freq, const Tensor& slots,
                     int n_heads, int n_kv_heads, int head_dim, RopeStyle style) override;
  void rope_kv_write_qkv(Tensor q_out, const Tensor& qkv, Tensor k_cache, Tensor v_cache,
                         const Tensor& positions, const Tensor& inv_freq, const Tensor& slots,
                         int n_heads, int n_kv_heads, int head_dim, RopeStyle style) override;
  void swiglu_fused(Tensor out, const Tensor& gate_up) override;
  void gather_rows(Tensor out, const Tensor& x, const Tensor& idx) override;
  bool argmax_rows(Tensor out, const Tensor& logits) override;  // cpu_sampling.cpp
  int host_workers() const override { return pool_.n_threads(); }
  void host_parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn) override {
    pool_.parallel_for(n, 1, [&fn](int64_t b, int64_t e, int t) { fn(b, e, t); });
  }
  // Ops run on the calling thread (with the pool): an op's wall time is its device time.
  void set_op_timing(bool on) override { op_timing_ = on; }
  std::vector<OpTime> take_op_times() override { return op_times_.take(); }

 private:
  // Times one op while op timing is on (a steady clock around the op's body); the key and the
  // counted bytes and FLOPs are given by describe(), and only built when on() is true.
  class OpScope : public OpDescription {
   public:
    OpScope(CpuBackend& b, const char* op);
    ~OpScope();
    OpScope(const OpScope&) = delete;
    OpScope& operator=(const OpScope&) = delete;
    bool on() const { return b_ != nullptr; }

   private:
    CpuBackend* b_;
    const char* op_;
    int64_t t0_ns_ = 0;
  };
  bool op_timing_ = false;
  OpTimeTable op_times_;

  // Per-thread f32 scratch of at least `floats` elements; grows (rarely) outside parallel code.
  void reserve_scratch(size_t floats);
  float* scratch(int thread_index) { return scratch_[static_cast<size_t>(thread_index)].data(); }
  // silu(gate) * up over rows, reading gate and up with their row strides (swiglu and
  // swiglu_fused).
  void swiglu_rows(float* out, const float* gate, const float* up, int64_t rows, int64_t cols,
                   int64_t in_stride);
  // The rotation of q and k and the cache write of k and v for every token; q is read at
  // q_in (row stride q_in_stride) and written rotated to q_out, k and v read with row stride
  // kv_stride (rope_kv_write and rope_kv_write_qkv).
  struct RopeKvArgs {
    const float* q_in = nullptr;
    float* q_out = nullptr;
    int64_t q_in_stride = 0, q_out_stride = 0;
    const float* k = nullptr;
    float* k_out = nullptr;  // null: k is left as it was
    const float* v = nullptr;
    int64_t kv_stride = 0;
    int64_t n = 0;
  };
  void rope_kv_rows(const RopeKvArgs& a, Tensor k_cache, Tensor v_cache, const Tensor& positions,
                    const Tensor& inv_freq, const Tensor& slots, int n_heads, int n_kv_heads,
                    int head_dim, RopeStyle style);
  // `w` as f32: its data when F32, else dequantized into norm_weight_.
  const float* weight_as_f32(const Tensor& w);
  // The packed copy of quantized weight w (packed_weights.h), made at its first matmul; null
  // where packing does not apply (type, shape, instruction set, exact mode).
  const PackedWeight* packed_for(const Tensor& w);
  // Whether matmul packs a [rows, cols] weight of type t (packed_for would give it a copy).
  bool packs(DType t, int64_t rows, int64_t cols) const;

  CpuBackendOptions options_;
  ThreadPool pool_;
  std::vector<std::vector<float>> scratch_;  // [n_threads][scratch size]
  std::vector<BlockQ8A> x_q8_;               // quantized activations for matmul
  std::vector<BlockQ8A> x_q8u_;              // the same plus 128, for VNNI kernels (gemm_q8a.h)
  std::vector<float> x_q8ds_;                // their d and s as arrays, for K-type kernels
  std::vector<int32_t> x_q8sum_;             // the sum of each block's quants, for packed kernels
  AmxActivations x_amx_;                     // the same activations laid out for AMX tiles
  std::vector<uint32_t> x_bf16_;             // bf16 activation pairs, for packed BF16 weights
  std::vector<float> norm_weight_;           // dequantized norm weights
  std::vector<float> bias_f32_;              // an f16/bf16 bias widened for matmul

  struct Allocation {
    size_t bytes = 0;
    bool kv = false;  // from alloc_kv(): a layer's records, which its K and V tensors share
    int refs = 1;     // tensors still to be freed (2 for a KV layer: its K and its V)
  };
  // A cache tensor from alloc_kv: its layer's layout and memory (kv_layout.h).
  struct KvSide {
    KvLayout layout;
    char* records = nullptr;  // the layer's allocation: record 0, where its K tensor points
    int64_t rows = 0;         // slots (num_blocks * block_size)
  };
  // The layer of a K and a V tensor from one alloc_kv layer (checked).
  KvLayer kv_layer(const Tensor& k_cache, const Tensor& v_cache) const;
  // Drops one reference to an allocation, freeing it with its last.
  void release(void* p);
  std::unordered_map<void*, Allocation> allocations_;     // alloc()/alloc_kv() memory
  std::unordered_map<const void*, KvSide> kv_sides_;      // by K's and V's data pointers
  std::unordered_map<const void*, PackedWeight> packed_;  // by the weight's data pointer
  // Q5_0 weights, re-encoded as Q8_0 by load_weight (exact); the host copy is owned here.
  Result<Tensor> load_q5_0_as_q8_0(const HostWeight& w);
  std::vector<std::unique_ptr<uint8_t[], PackedWeight::Free>> owned_weights_;
  size_t packed_bytes_ = 0;
  size_t weights_bytes_ = 0;
  size_t kv_bytes_ = 0;
  size_t other_bytes_ = 0;
};

}  // namespace carpool
