// Backend: owns device memory and runs the ops of a transformer forward pass.
//
// The model's forward is written once against this interface. Every op is enqueued in order on
// the backend's single stream; nothing in model or engine code may assume a Tensor is readable by
// the host. The host reads results with download(), which waits for all earlier work. The CPU
// backend (backend/cpu/) is the reference every other backend is checked against.
//
// Thread-safety: a Backend is used by one thread at a time (the engine loop).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/dtype.h"
#include "backend/op_times.h"
#include "util/status.h"

namespace carpool {

// A 2-D, row-major, contiguous view of backend memory. Does not own the memory.
struct Tensor {
  void* data = nullptr;  // backend memory (host memory on CPU, device memory on CUDA)
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;  // contiguous dimension; quantized types: multiple of the block size

  size_t row_bytes() const { return dtype_row_bytes(dtype, cols); }
  size_t bytes() const { return row_bytes() * static_cast<size_t>(rows); }
  int64_t numel() const { return rows * cols; }
  // Rows [start, start + n) of this tensor.
  Tensor rows_view(int64_t start, int64_t n) const {
    Tensor t = *this;
    t.data = static_cast<char*>(data) + row_bytes() * static_cast<size_t>(start);
    t.rows = n;
    return t;
  }
};

// A weight as found in a model file, in host memory (often memory-mapped).
struct HostWeight {
  DType dtype = DType::kF32;
  const void* data = nullptr;  // rows * row_bytes(dtype, cols) bytes
  int64_t rows = 0;
  int64_t cols = 0;
};

// How RoPE pairs the elements of a head.
enum class RopeStyle {
  kNeox,         // pairs (i, i + head_dim/2): Hugging Face "rotate_half", Qwen2 GGUF
  kInterleaved,  // pairs (2i, 2i+1): Llama-family GGUF files (q/k rows permuted by the converter)
};

// Paged KV cache geometry. Each layer has a K and a V tensor of
// [num_blocks * block_size, n_kv_heads * head_dim] elements; a token's slot = block * block_size +
// offset. Where a slot's values sit is the backend's choice (Backend::kv_cache_row reads them
// back): CUDA keeps slot s in row s of both; the CPU keeps each block's K and V together and K
// column-major (backend/cpu/kv_layout.h), so a cache tensor's memory is not always its
// [rows, cols] shape, and only the backend's own ops touch it.
struct KvCacheConfig {
  int n_layers = 0;
  int num_blocks = 0;
  int block_size = 16;
  int n_kv_heads = 0;
  int head_dim = 0;
};

struct KvCache {
  KvCacheConfig config;
  std::vector<Tensor> k;  // [n_layers] of [num_blocks * block_size, n_kv_heads * head_dim]
  std::vector<Tensor> v;  // same shape as k
};

// Per-step description of a ragged batch for attention. All tensors are I32 in backend memory.
// Sequence s owns tokens [query_start[s], query_start[s+1]) of the flattened batch; those are its
// last q_len positions, so token j of s sits at position kv_len[s] - q_len + j and attends
// causally to KV positions [0, that position]. Its KV lives in the blocks of block_tables row s.
struct AttentionMeta {
  int n_tokens = 0;
  int n_seqs = 0;
  int max_q_len = 0;           // max over sequences of q_len (host-known, for launch configuration)
  int max_kv_len = 0;          // max over sequences of kv_len
  int max_blocks_per_seq = 0;  // row length of block_tables
  int block_size = 16;         // tokens per KV block (the cache's KvCacheConfig::block_size)
  Tensor query_start;          // [1, n_seqs + 1]
  Tensor kv_len;               // [1, n_seqs] context length including this step's tokens
  Tensor block_tables;         // [n_seqs, max_blocks_per_seq]
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  float scale = 0.f;  // usually 1/sqrt(head_dim)
};

struct BackendMemoryInfo {
  size_t total_bytes = 0;  // device memory (CPU: physical RAM)
  size_t free_bytes = 0;
  size_t weights_bytes = 0;  // held by load_weight
  size_t kv_bytes = 0;       // held by alloc_kv
  size_t other_bytes = 0;    // activations, workspace
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string name() const = 0;         // "cpu", "cuda"
  virtual std::string device_name() const = 0;  // "AMD EPYC 9B14 (2 threads)", "NVIDIA H200"
  // Type the backend uses for activations (CPU: F32; CUDA: BF16). Logits are always F32.
  virtual DType activation_dtype() const = 0;
  // Element type of the caches alloc_kv makes (default: the activation type; the CPU backend
  // keeps f16 unless asked for f32 or int8).
  virtual DType kv_cache_dtype() const { return activation_dtype(); }
  virtual BackendMemoryInfo memory_info() const = 0;

  // --- memory ---
  // Uninitialized tensor; freed by free() or when the backend is destroyed.
  virtual Result<Tensor> alloc(DType dtype, int64_t rows, int64_t cols) = 0;
  virtual void free(Tensor& t) = 0;
  // Makes a weight usable by matmul/embed/rmsnorm. The backend may keep the host memory (CPU,
  // zero copy: `w.data` must then outlive the backend) or convert it (CUDA: to BF16).
  virtual Result<Tensor> load_weight(const HostWeight& w) = 0;
  // A weight of random values uniform in [-scale, scale] from `seed`, for synthetic models
  // (benchmarks without downloads). Backends may create it in place (CUDA: on the device).
  // The default implementation generates the bytes on the host (quantized types: random valid
  // blocks), keeps them for the backend's lifetime, and calls load_weight.
  virtual Result<Tensor> alloc_random_weight(DType dtype, int64_t rows, int64_t cols, uint64_t seed,
                                             float scale);
  virtual Result<KvCache> alloc_kv(const KvCacheConfig& config) = 0;
  // The values that cache tensor `cache` (a K or V of a KvCache from alloc_kv) holds for `slot`,
  // as attention reads them (an int8 cache's scales applied), for code that reads a cache back
  // (tests). Default: row `slot` of a row-major f32, f16 or bf16 tensor, downloaded.
  virtual std::vector<float> kv_cache_row(const Tensor& cache, int64_t slot);
  // Releases a cache from alloc_kv. Default: free() on each layer's K and V tensor.
  virtual void free_kv(KvCache& kv) {
    for (Tensor& t : kv.k) free(t);
    for (Tensor& t : kv.v) free(t);
    kv.k.clear();
    kv.v.clear();
  }
  // Host -> backend copy of `bytes` bytes into the start of dst (ordered on the stream).
  virtual void upload(Tensor dst, const void* host, size_t bytes) = 0;
  // Backend -> host copy; waits for all earlier work.
  virtual void download(void* host, const Tensor& src, size_t bytes) = 0;
  virtual void synchronize() = 0;

  // --- ops (shapes in comments; n = tokens in the step) ---
  // out[n, d] = table[ids[i], :] (converted to out.dtype).  ids: I32 [1, n].
  virtual void embed(Tensor out, const Tensor& table, const Tensor& ids) = 0;
  // out[n, d] = x / rms(x) * w.  w: [1, d] (F32 or the weight dtype).
  virtual void rmsnorm(Tensor out, const Tensor& x, const Tensor& w, float eps) = 0;
  // residual[n, d] += x; out = rmsnorm(residual) * w.  (fused residual add + norm)
  virtual void add_rmsnorm(Tensor residual, const Tensor& x, const Tensor& w, Tensor out,
                           float eps) = 0;
  // out[m, n] = x[m, k] @ w[n, k]^T (+ bias[1, n] when bias != nullptr). w: any weight dtype.
  // out may be F32 even when activations are not (logits).
  virtual void matmul(Tensor out, const Tensor& x, const Tensor& w, const Tensor* bias) = 0;
  // In place on x[n, n_heads * head_dim]: rotate each head by its token's position.
  // positions: I32 [1, n]; inv_freq: F32 [1, head_dim / 2] (rope scaling already applied).
  virtual void rope(Tensor x, const Tensor& positions, const Tensor& inv_freq, int n_heads,
                    int head_dim, RopeStyle style) = 0;
  // Writes k, v [n, n_kv_heads * head_dim] into the cache at slots (I32 [1, n]) of one layer.
  virtual void kv_write(Tensor k_cache, Tensor v_cache, const Tensor& k, const Tensor& v,
                        const Tensor& slots) = 0;
  // out[n, n_heads * head_dim] = causal softmax(q k^T * scale) v over paged KV, GQA by
  // n_heads / n_kv_heads.  q: [n, n_heads * head_dim].
  virtual void attention(Tensor out, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                         const AttentionMeta& meta) = 0;
  // out[m, f] = silu(gate) * up.
  virtual void swiglu(Tensor out, const Tensor& gate, const Tensor& up) = 0;
  // out[m, d] = x[idx[i], :].  idx: I32 [1, m].
  virtual void gather_rows(Tensor out, const Tensor& x, const Tensor& idx) = 0;

  // --- fused ops (optional: the defaults compose the ops above, so results are identical) ---
  // rope(q, n_heads), rope(k, n_kv_heads), then kv_write(k_cache, v_cache, k, v, slots).
  virtual void rope_kv_write(Tensor q, Tensor k, const Tensor& v, Tensor k_cache, Tensor v_cache,
                             const Tensor& positions, const Tensor& inv_freq, const Tensor& slots,
                             int n_heads, int n_kv_heads, int head_dim, RopeStyle style) {
    rope(q, positions, inv_freq, n_heads, head_dim, style);
    rope(k, positions, inv_freq, n_kv_heads, head_dim, style);
    kv_write(k_cache, v_cache, k, v, slots);
  }

  // --- fused projections (optional) ---
  // A backend that returns true gets its weights wq|wk|wv and w_gate|w_up stacked row-wise from
  // load_weight_concat, runs one matmul per stack, and reads q, k, v (or gate, up) as column
  // slices of the result through rope_kv_write_qkv and swiglu_fused. It should override both ops:
  // their defaults move the data through the host (correct, but slow, and they may not run
  // inside a graph recording).
  virtual bool prefers_fused_projections() const { return false; }
  // Whether load_weight_concat takes parts of different dtypes (a backend that converts weights
  // to one type). Where not, the model stacks only the parts that share one dtype and keeps the
  // others separate.
  virtual bool stacks_mixed_weight_types() const { return false; }
  // One weight [sum of rows, cols] holding `parts` one after another, as load_weight would make of
  // a single tensor with those rows. Every part must have the same cols. The default concatenates
  // the raw bytes on the host (kept for the backend's lifetime) and calls load_weight, so it
  // needs every part in the same dtype; a backend that converts weights may accept mixed types.
  virtual Result<Tensor> load_weight_concat(std::span<const HostWeight> parts);
  // qkv[n, q_dim + 2 * kv_dim] holds each token's q | k | v (q_dim = n_heads * head_dim, kv_dim =
  // n_kv_heads * head_dim). q_out[n, q_dim] = q rotated; k rotated and v are written to the cache
  // at slots, as rope_kv_write would. qkv itself is left unchanged.
  virtual void rope_kv_write_qkv(Tensor q_out, const Tensor& qkv, Tensor k_cache, Tensor v_cache,
                                 const Tensor& positions, const Tensor& inv_freq,
                                 const Tensor& slots, int n_heads, int n_kv_heads, int head_dim,
                                 RopeStyle style);
  // out[m, f] = silu(gate_up[:, :f]) * gate_up[:, f:2f].  gate_up: [m, 2f].
  virtual void swiglu_fused(Tensor out, const Tensor& gate_up);

  // --- sampling on the device (optional) ---
  // out[r, 0] = the greedy token of logits row r: the index of its largest value, ties to the
  // lowest index (torch.argmax), exactly what the host sampler picks at temperature 0
  // (std::max_element). NaN follows std::max_element too: a NaN never beats an earlier value, and
  // a NaN at index 0 is never beaten, so a row whose first logit is NaN gives 0 and any other row
  // gives the lowest index of its largest non-NaN value. -0 and +0 are equal.
  // out: I32 [rows, 1]; logits: [rows, vocab] F32 (CUDA also F16/BF16), vocab >= 1.
  // Enqueued on the stream like any op (graph-safe). Returns false, doing nothing, where the
  // backend does not implement it (the default): the caller then samples on the host.
  virtual bool argmax_rows(Tensor /*out*/, const Tensor& /*logits*/) { return false; }
  // Floats per row of sample_rows' params: temperature (0: greedy, as argmax_rows), top_k (0:
  // off), top_p (1: off), min_p (0: off), and the row's uniform draw u in [0, 1).
  static constexpr int kRowSamplingFloats = 5;
  // out[r, 0] = a token drawn from logits row r as the host sampler (engine/sampler.h) draws
  // without penalties: logits over temperature, top-k (ties to the lower id), softmax over what
  // is left, min-p and top-p (the smallest heaviest-first prefix reaching top_p of that mass,
  // ties to the lower id); then the kept tokens in id order, the one whose cumulative weight
  // first passes u times their total. Same distribution as the host; a given u may pick another
  // token than the host's walk does. A row with NaN or infinite scaled logits gives the first of
  // its largest. params: F32 [rows, kRowSamplingFloats]; out, logits as argmax_rows. Enqueued on
  // the stream; false, doing nothing, where the backend does not implement it (zero rows: does
  // nothing and says whether it does).
  virtual bool sample_rows(Tensor /*out*/, const Tensor& /*logits*/, const Tensor& /*params*/) {
    return false;
  }

  // --- host work between steps (optional) ---
  // Calls fn(begin, end, worker) over disjoint chunks covering [0, n) on the host threads the
  // backend keeps (the CPU backend: its compute threads, idle between steps; CUDA: a pool of host
  // threads), worker < host_workers() naming the calling thread, and returns when every chunk is
  // done. For per-row host work such as sampling. Default: one chunk on the calling thread.
  virtual int host_workers() const { return 1; }
  virtual void host_parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn) {
    if (n > 0) fn(0, n, 0);
  }

  // --- step graphs (optional) ---
  // A backend with graphs records the ops that `enqueue` enqueues the first time(s) it sees
  // (owner, key) and later replays the recording instead of calling `enqueue`. A recording holds
  // every tensor address and every host-side argument of those ops as they were when recorded,
  // so the caller must choose keys such that equal keys mean identical calls, and change only the
  // contents of backend memory between replays (upload() before run_graph, never inside
  // `enqueue`). Ops inside `enqueue` run in order with the rest of the stream, as if called
  // directly. Backends with graphs also skip kv_write rows whose slot is negative (rows that pad
  // a batch up to a recorded size).
  // Default (no graphs): calls enqueue().
  virtual bool graphs_enabled() const { return false; }
  virtual void set_graphs_enabled(bool /*on*/) {}
  virtual void run_graph(const void* /*owner*/, uint64_t /*key*/,
                         const std::function<void()>& enqueue) {
    enqueue();
  }
  // Forgets every recording of `owner` (before the memory they refer to is freed or reused).
  virtual void drop_graphs(const void* /*owner*/) {}

  // --- device time of a step (optional) ---
  // begin_device_timing() before a step's first op and end_device_timing() after its last mark
  // the stream; device_time_ns(), called once the step's results were downloaded, is the time
  // the device's own clock saw between the two marks (CUDA events), so host work between steps
  // is not counted. Sampling ops on the device (argmax_rows, sample_rows) enqueued after the end
  // mark count as the step's device time too. -1 where there is no separate device clock (the CPU
  // backend runs every op on the calling thread: its wall time is the device time) or no complete
  // pair of marks.
  virtual void begin_device_timing() {}
  virtual void end_device_timing() {}
  virtual int64_t device_time_ns() { return -1; }

  // --- device time per op (optional, profiling; op_times.h) ---
  // While on, every op records its device time; take_op_times() returns the totals since the
  // last take (waiting for the device) and starts afresh. Steps must run without graphs (a
  // replayed graph is one unit to the device clock). Empty where unsupported.
  virtual void set_op_timing(bool /*on*/) {}
  virtual std::vector<OpTime> take_op_times() { return {}; }

  // Whether ops return before the device has run them (a GPU stream): host work placed between
  // enqueueing a step and reading its results then overlaps the device. False on the CPU,
  // whose ops run on the calling thread.
  virtual bool asynchronous() const { return false; }

 private:
  std::vector<std::unique_ptr<uint8_t[]>> random_weights_;  // host bytes behind default weights
  // Copies the column range [col0, col0 + out.cols) of every row of src into out, through the
  // host (the defaults of the fused ops). src and out have the same dtype, not quantized.
  void copy_columns(Tensor out, const Tensor& src, int64_t col0);
};

}  // namespace carpool
