// CudaBackend's declaration, for the backend's own files, its tools and tests (includes CUDA
// headers; model and engine code use cuda_backend.h instead).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/kernels.h"
#include "util/thread_pool.h"

namespace carpool::cuda {

class CudaBackend final : public Backend {
 public:
  // Use make_cuda_backend(); init() does the fallible set-up.
  explicit CudaBackend(const CudaBackendOptions& options) : options_(options) {}
  ~CudaBackend() override;
  Status init();

  std::string name() const override { return "cuda"; }
  std::string device_name() const override { return device_name_; }
  DType activation_dtype() const override { return DType::kBF16; }
  BackendMemoryInfo memory_info() const override;

  Result<Tensor> alloc(DType dtype, int64_t rows, int64_t cols) override;
  void free(Tensor& t) override;
  Result<Tensor> load_weight(const HostWeight& w) override;
  Result<Tensor> load_weight_concat(std::span<const HostWeight> parts) override;
  Result<Tensor> alloc_random_weight(DType dtype, int64_t rows, int64_t cols, uint64_t seed,
                                     float scale) override;
  Result<KvCache> alloc_kv(const KvCacheConfig& config) override;
  void upload(Tensor dst, const void* host, size_t bytes) override;
  void download(void* host, const Tensor& src, size_t bytes) override;
  void synchronize() override;

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
  void gather_rows(Tensor out, const Tensor& x, const Tensor& idx) override;
  bool argmax_rows(Tensor out, const Tensor& logits) override;
  bool sample_rows(Tensor out, const Tensor& logits, const Tensor& params) override;
  // Host work between steps (host sampling of many rows) on a pool of host threads, started at
  // first use: one per hardware thread, at most 16.
  int host_workers() const override;
  void host_parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn) override;
  void rope_kv_write(Tensor q, Tensor k, const Tensor& v, Tensor k_cache, Tensor v_cache,
                     const Tensor& positions, const Tensor& inv_freq, const Tensor& slots,
                     int n_heads, int n_kv_heads, int head_dim, RopeStyle style) override;
  // Fused projections (cuda_ops.cpp): one kernel each, reading q|k|v and gate|up column slices.
  bool prefers_fused_projections() const override { return options_.fused_projections; }
  bool stacks_mixed_weight_types() const override { return true; }  // all converted to bf16
  void rope_kv_write_qkv(Tensor q_out, const Tensor& qkv, Tensor k_cache, Tensor v_cache,
                         const Tensor& positions, const Tensor& inv_freq, const Tensor& slots,
                         int n_heads, int n_kv_heads, int head_dim, RopeStyle style) override;
  void swiglu_fused(Tensor out, const Tensor& gate_up) override;

  // Step graphs (cuda_graphs.cpp): a key's first call runs directly (lazy set-up of kernels,
  // cuBLAS and scratch sizes happens outside any recording), the second records and replays,
  // later ones replay.
  bool graphs_enabled() const override { return graphs_on_ && !options_.debug_sync; }
  void set_graphs_enabled(bool on) override;
  void run_graph(const void* owner, uint64_t key, const std::function<void()>& enqueue) override;
  void drop_graphs(const void* owner) override;
  void begin_device_timing() override;
  void end_device_timing() override;
  int64_t device_time_ns() override;
  // Device sampling ops (enqueued by the runner after end_device_timing()) are device work of the
  // same step: mark_sampling_begin() / mark_sampling_end() around their launches add a span that
  // device_time_ns() counts too (only after a complete step pair; not while recording a graph).
  void mark_sampling_begin();
  void mark_sampling_end();
  // For tools and tests: recordings held, and replays so far.
  size_t graph_count() const;
  uint64_t graph_replays() const { return graph_replays_; }

  // For tools and benchmarks: the stream every op is enqueued on, and the launch context.
  cudaStream_t stream() const { return ctx_.stream; }
  const LaunchCtx& launch_ctx() const { return ctx_; }
  cublasHandle_t cublas() const { return cublas_; }
  bool asynchronous() const override { return true; }  // one stream, ops enqueued
  // Op timing (cuda_op_times.cpp): CUDA events around each op; steps must run without graphs.
  void set_op_timing(bool on) override { op_timing_ = on; }
  std::vector<OpTime> take_op_times() override;
  // A/B switch for tools: run every attention call on the generic kernel.
  void set_generic_attention(bool on) { ctx_.generic_attention = on; }
  void set_simt_decode_attention(bool on) { ctx_.simt_decode_attention = on; }
  // A/B switch for tools: small-batch matmuls on the streaming kernel (true) or cuBLAS.
  void set_small_batch_gemv(CudaBackendOptions::Gemv mode) { options_.small_batch_gemv = mode; }
  void set_prefill_pairs(bool on) { ctx_.prefill_pairs = on; }
  void set_gemv_rows_m1(int rows) { ctx_.gemv_rows_m1 = rows; }
  // Decode attention CTAs of `warps` warps, contexts split for `ctas_per_sm` CTAs per SM.
  void set_decode_shape(int warps, int ctas_per_sm) {
    ctx_.decode_warps = warps;
    ctx_.decode_ctas_per_sm = ctas_per_sm;
  }

 private:
  enum class Kind { kWeight, kKv, kOther };
  Result<Tensor> alloc_kind(DType dtype, int64_t rows, int64_t cols, Kind kind);
  // Checks a host weight's type and shape for load_weight.
  static Status check_host_weight(const HostWeight& w);
  // Converts `w` to BF16 into dst (w.rows * w.cols elements of device memory); synchronizes.
  Status fill_weight(const HostWeight& w, void* dst);
  // A device buffer of at least `bytes` for slot `i`, reused across calls (grows, never shrinks).
  void* scratch(int i, size_t bytes);
  // x as BF16: x itself, or a converted copy in scratch slot `slot`.
  const void* as_bf16(const Tensor& x, int slot);

  struct Allocation {
    size_t bytes;
    Kind kind;
  };
  CudaBackendOptions options_;
  std::unique_ptr<ThreadPool> host_pool_;  // host_parallel_for's threads
  LaunchCtx ctx_;
  cublasHandle_t cublas_ = nullptr;
  std::string device_name_;
  std::unordered_map<void*, Allocation> allocations_;
  size_t bytes_by_kind_[3] = {0, 0, 0};
  static constexpr int kScratchSlots = 4;
  void* scratch_ptr_[kScratchSlots] = {};
  size_t scratch_bytes_[kScratchSlots] = {};
  void* cublas_workspace_ = nullptr;
  void* staging_ = nullptr;
  // Pinned host ring for upload(): each upload is copied into it and DMA'd asynchronously. The
  // stream is idle after every download()/synchronize(), so the ring restarts there; an upload
  // that does not fit waits for the stream, and the ring doubles (rarely, at most to its cap).
  uint8_t* upload_ring_ = nullptr;
  size_t upload_ring_bytes_ = 0;
  size_t upload_ring_used_ = 0;
  bool upload_ring_failed_ = false;  // cudaHostAlloc failed once: pageable copies from then on
  void release_upload_ring();

  // Graphs by (owner, key). A recording holds scratch addresses: a scratch buffer that grows
  // drops every recording (scratch_generation_ counts growths; a buffer replaced while recording
  // is kept in retired_scratch_ until the recording is discarded).
  struct GraphEntry {
    cudaGraphExec_t exec = nullptr;
    int calls = 0;
    bool failed = false;  // recording not possible: always run directly
  };
  std::map<std::pair<const void*, uint64_t>, GraphEntry> graphs_;
  bool graphs_on_ = true;
  bool capturing_ = false;
  uint64_t scratch_generation_ = 0;
  uint64_t graph_replays_ = 0;
  std::vector<void*> retired_scratch_;
  // Step timing events (created at first use); timing_marks_ counts the marks of the current
  // pair: 1 after begin, 2 after end.
  cudaEvent_t timing_begin_ = nullptr;
  cudaEvent_t timing_end_ = nullptr;
  int timing_marks_ = 0;
  cudaEvent_t sampling_begin_ = nullptr;  // the sampling span of the current step
  cudaEvent_t sampling_end_ = nullptr;
  bool sampling_span_ = false;
  void drop_all_graphs();
  void free_retired_scratch();

  // Op timing (set_op_timing, cuda_op_times.cpp): an event pair around each op while on and not
  // recording a graph; take_op_times() reads the pairs after the stream drains.
  class OpScope : public OpDescription {
   public:
    OpScope(CudaBackend& b, const char* op);
    ~OpScope();
    OpScope(const OpScope&) = delete;
    OpScope& operator=(const OpScope&) = delete;
    bool on() const { return b_ != nullptr; }

   private:
    CudaBackend* b_;
    const char* op_;
    cudaEvent_t begin_ = nullptr;
  };
  struct PendingOp {
    std::string key;
    double bytes = 0, flops = 0;
    cudaEvent_t begin = nullptr, end = nullptr;
  };
  cudaEvent_t op_event();  // a spare event, or a new one
  bool op_timing_ = false;
  std::vector<PendingOp> pending_ops_;
  std::vector<cudaEvent_t> spare_events_;
  OpTimeTable op_times_;
};

}  // namespace carpool::cuda
