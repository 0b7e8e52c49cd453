// CudaBackend: device selection, memory, weight loading, transfers. Ops are in cuda_ops.cpp.
#include "backend/cuda/cuda_backend.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "backend/cuda/cuda_backend_impl.h"
#include "backend/cuda/cuda_check.h"
#include "util/check.h"

namespace carpool {

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return 0;
  }
  return n;
}

Result<std::unique_ptr<Backend>> make_cuda_backend(const CudaBackendOptions& options) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    if (e != cudaSuccess) cudaGetLastError();
    return Status::error(std::string("no CUDA device (") +
                         (e != cudaSuccess ? cudaGetErrorString(e) : "device count is 0") + ")");
  }
  if (options.device < 0 || options.device >= n) {
    return Status::error("no CUDA device " + std::to_string(options.device) + " (found " +
                         std::to_string(n) + ")");
  }
  auto backend = std::make_unique<cuda::CudaBackend>(options);
  CARPOOL_RETURN_IF_ERROR(backend->init());
  return std::unique_ptr<Backend>(std::move(backend));
}

namespace cuda {
namespace {

bool is_float_type(DType t) {
  return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16;
}

}  // namespace

Status CudaBackend::init() {
  CUDA_TRY(cudaSetDevice(options_.device));
  cudaDeviceProp prop{};
  CUDA_TRY(cudaGetDeviceProperties(&prop, options_.device));
  device_name_ = prop.name;
  if (prop.major < 8) {
    return Status::error(device_name_ + " has compute capability " + std::to_string(prop.major) +
                         "." + std::to_string(prop.minor) + "; the CUDA backend needs 8.0+ (BF16)");
  }
  ctx_.sm_count = prop.multiProcessorCount;
  ctx_.debug_sync = options_.debug_sync;
  if (const char* e = std::getenv("CARPOOL_CUDA_ATTENTION"); e != nullptr) {
    ctx_.generic_attention = std::strcmp(e, "generic") == 0;
    ctx_.simt_decode_attention = std::strcmp(e, "simt") == 0;
  }
  if (const char* e = std::getenv("CARPOOL_CUDA_FUSED"); e != nullptr && std::strcmp(e, "0") == 0)
    options_.fused_projections = false;
  ctx_.sampling_ctas = prop.major >= 9 ? 2 : 1;  // clusters need compute capability 9.0
  if (const char* e = std::getenv("CARPOOL_CUDA_SAMPLING"); e != nullptr) {
    if (std::strcmp(e, "0") == 0) options_.device_sampling = false;
    if (std::strcmp(e, "block") == 0) ctx_.sampling_ctas = 1;
    if (std::strcmp(e, "cluster4") == 0 && prop.major >= 9) ctx_.sampling_ctas = 4;
  }
  if (const char* e = std::getenv("CARPOOL_CUDA_PDL"); e != nullptr && std::strcmp(e, "1") == 0)
    ctx_.pdl = prop.major >= 9;
  if (const char* e = std::getenv("CARPOOL_CUDA_DECODE_CTAS"); e != nullptr) {
    const int v = std::atoi(e);
    if (v >= 1 && v <= 64) ctx_.decode_ctas_per_sm = v;
  }
  if (const char* e = std::getenv("CARPOOL_CUDA_GEMV_ROWS"); e != nullptr) {
    const int v = std::atoi(e);
    if (v == 1 || v == 2 || v == 4) ctx_.gemv_rows_m1 = v;
  }
  if (const char* e = std::getenv("CARPOOL_CUDA_DECODE_WARPS"); e != nullptr) {
    const int v = std::atoi(e);
    if (v == 2 || v == 4) ctx_.decode_warps = v;
  }
  if (const char* e = std::getenv("CARPOOL_CUDA_DECODE_PREFETCH"); e != nullptr)
    ctx_.decode_block_prefetch = std::strcmp(e, "1") == 0;
  if (const char* e = std::getenv("CARPOOL_CUDA_PREFILL"); e != nullptr)
    ctx_.prefill_pairs = std::strcmp(e, "single") != 0;
  if (const char* e = std::getenv("CARPOOL_CUDA_GEMV"); e != nullptr) {
    if (std::strcmp(e, "0") == 0) options_.small_batch_gemv = CudaBackendOptions::Gemv::kOff;
    if (std::strcmp(e, "all") == 0) options_.small_batch_gemv = CudaBackendOptions::Gemv::kAll;
  }
  // The decode-attention split plan's residency figures, asked now rather than in the middle of
  // recording a step graph.
  for (int hd : {64, 128})
    for (int w : {2, 4}) decode_attention_mma_ctas_per_sm(hd, w);
  graphs_on_ = options_.graphs;
  if (const char* e = std::getenv("CARPOOL_CUDA_GRAPHS"); e != nullptr && std::strcmp(e, "0") == 0)
    graphs_on_ = false;
  CUDA_TRY(cudaStreamCreateWithFlags(&ctx_.stream, cudaStreamNonBlocking));
  cublasStatus_t s = cublasCreate(&cublas_);
  if (s != CUBLAS_STATUS_SUCCESS)
    return Status::error(std::string("cuBLAS: cublasCreate: ") + cublasGetStatusString(s));
  s = cublasSetStream(cublas_, ctx_.stream);
  if (s == CUBLAS_STATUS_SUCCESS && options_.cublas_workspace_bytes > 0) {
    CUDA_TRY(cudaMalloc(&cublas_workspace_, options_.cublas_workspace_bytes));
    s = cublasSetWorkspace(cublas_, cublas_workspace_, options_.cublas_workspace_bytes);
  }
  if (s != CUBLAS_STATUS_SUCCESS)
    return Status::error(std::string("cuBLAS set-up: ") + cublasGetStatusString(s));
  return Status::ok();
}

CudaBackend::~CudaBackend() {
  // Teardown must not abort: report failures and go on.
  if (ctx_.stream != nullptr) cudaStreamSynchronize(ctx_.stream);
  for (auto& [key, g] : graphs_)
    if (g.exec != nullptr) cudaGraphExecDestroy(g.exec);
  for (void* p : retired_scratch_) cudaFree(p);
  if (upload_ring_ != nullptr) cudaFreeHost(upload_ring_);
  for (auto& [ptr, a] : allocations_) cudaFree(ptr);
  for (void* p : scratch_ptr_)
    if (p != nullptr) cudaFree(p);
  if (staging_ != nullptr) cudaFree(staging_);
  if (cublas_ != nullptr) cublasDestroy(cublas_);
  if (cublas_workspace_ != nullptr) cudaFree(cublas_workspace_);
  if (timing_begin_ != nullptr) cudaEventDestroy(timing_begin_);
  if (timing_end_ != nullptr) cudaEventDestroy(timing_end_);
  if (sampling_begin_ != nullptr) cudaEventDestroy(sampling_begin_);
  if (sampling_end_ != nullptr) cudaEventDestroy(sampling_end_);
  for (const PendingOp& p : pending_ops_) {
    cudaEventDestroy(p.begin);
    cudaEventDestroy(p.end);
  }
  for (cudaEvent_t e : spare_events_) cudaEventDestroy(e);
  if (ctx_.stream != nullptr) cudaStreamDestroy(ctx_.stream);
}

BackendMemoryInfo CudaBackend::memory_info() const {
  BackendMemoryInfo info;
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
    info.free_bytes = free_b;
    info.total_bytes = total_b;
  }
  info.weights_bytes = bytes_by_kind_[static_cast<int>(Kind::kWeight)];
  info.kv_bytes = bytes_by_kind_[static_cast<int>(Kind::kKv)];
  info.other_bytes =
      bytes_by_kind_[static_cast<int>(Kind::kOther)] + options_.cublas_workspace_bytes;
  for (size_t b : scratch_bytes_) info.other_bytes += b;
  if (staging_ != nullptr) info.other_bytes += options_.staging_bytes;
  return info;
}

Result<Tensor> CudaBackend::alloc_kind(DType dtype, int64_t rows, int64_t cols, Kind kind) {
  const DTypeInfo& di = dtype_info(dtype);
  if (rows < 0 || cols < 0 || cols % di.block_elems != 0)
    return Status::error("cuda alloc: bad shape [" + std::to_string(rows) + ", " +
                         std::to_string(cols) + "] for " + std::string(di.name));
  const uint64_t blocks = static_cast<uint64_t>(cols / di.block_elems);
  if (rows > 0 && blocks > 0 &&
      blocks > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(di.block_bytes) /
                   static_cast<uint64_t>(rows))
    return Status::error("cuda alloc: size overflows");
  Tensor t;
  t.dtype = dtype;
  t.rows = rows;
  t.cols = cols;
  const size_t bytes = t.bytes();
  if (bytes == 0) return t;
  cudaError_t e = cudaMalloc(&t.data, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return Status::error("cuda alloc of " + std::to_string(bytes) +
                         " bytes failed: " + cudaGetErrorString(e));
  }
  allocations_[t.data] = Allocation{bytes, kind};
  bytes_by_kind_[static_cast<int>(kind)] += bytes;
  return t;
}

Result<Tensor> CudaBackend::alloc(DType dtype, int64_t rows, int64_t cols) {
  return alloc_kind(dtype, rows, cols, Kind::kOther);
}

void CudaBackend::free(Tensor& t) {
  if (t.data == nullptr) return;
  auto it = allocations_.find(t.data);
  CARPOOL_CHECK(it != allocations_.end());  // only whole tensors from this backend
  CUDA_CHECK(cudaFree(t.data));
  bytes_by_kind_[static_cast<int>(it->second.kind)] -= it->second.bytes;
  allocations_.erase(it);
  t.data = nullptr;
}

Status CudaBackend::check_host_weight(const HostWeight& w) {
  auto info = dtype_info(static_cast<uint32_t>(w.dtype));
  if (!info || !dtype_is_weight(w.dtype))
    return Status::error("cuda load_weight: unsupported type id " +
                         std::to_string(static_cast<uint32_t>(w.dtype)));
  if (w.rows < 0 || w.cols <= 0 || w.cols % info->block_elems != 0)
    return Status::error("cuda load_weight: bad shape for " + std::string(info->name));
  if (w.data == nullptr && w.rows > 0) return Status::error("cuda load_weight: no data");
  return Status::ok();
}

Result<Tensor> CudaBackend::load_weight(const HostWeight& w) {
  CARPOOL_RETURN_IF_ERROR(check_host_weight(w));
  CARPOOL_ASSIGN_OR_RETURN(Tensor out, alloc_kind(DType::kBF16, w.rows, w.cols, Kind::kWeight));
  if (out.data == nullptr) return out;
  if (Status st = fill_weight(w, out.data); !st.is_ok()) {
    free(out);
    return st;
  }
  return out;
}

Result<Tensor> CudaBackend::load_weight_concat(std::span<const HostWeight> parts) {
  // Each part is converted into its own rows of one BF16 tensor, so the types may differ (GGUF
  // files often keep attn_v in a wider type than attn_q and attn_k).
  if (parts.empty()) return Status::error("cuda load_weight_concat: no parts");
  int64_t rows = 0;
  for (const HostWeight& p : parts) {
    CARPOOL_RETURN_IF_ERROR(check_host_weight(p));
    if (p.cols != parts[0].cols)
      return Status::error("cuda load_weight_concat: parts differ in width");
    rows += p.rows;
  }
  CARPOOL_ASSIGN_OR_RETURN(Tensor out,
                           alloc_kind(DType::kBF16, rows, parts[0].cols, Kind::kWeight));
  if (out.data == nullptr) return out;
  int64_t row0 = 0;
  for (const HostWeight& p : parts) {
    if (p.rows > 0) {
      if (Status st = fill_weight(p, out.rows_view(row0, p.rows).data); !st.is_ok()) {
        free(out);
        return st;
      }
    }
    row0 += p.rows;
  }
  return out;
}

Status CudaBackend::fill_weight(const HostWeight& w, void* dst) {
  Tensor out{dst, DType::kBF16, w.rows, w.cols};
  const size_t row_bytes = dtype_row_bytes(w.dtype, w.cols);
  if (w.dtype == DType::kBF16) {
    CUDA_TRY(cudaMemcpyAsync(out.data, w.data, out.bytes(), cudaMemcpyHostToDevice, ctx_.stream));
    CUDA_TRY(cudaStreamSynchronize(ctx_.stream));
    return Status::ok();
  }
  // Raw bytes go through a staging buffer a chunk of rows at a time, then a kernel converts them.
  const size_t staging_bytes = std::max(options_.staging_bytes, row_bytes);
  if (staging_ == nullptr || staging_bytes > options_.staging_bytes) {
    if (staging_ != nullptr) {
      CUDA_TRY(cudaStreamSynchronize(ctx_.stream));
      CUDA_TRY(cudaFree(staging_));
      staging_ = nullptr;
    }
    options_.staging_bytes = staging_bytes;
    CUDA_TRY(cudaMalloc(&staging_, staging_bytes));
  }
  const int64_t rows_per_chunk = static_cast<int64_t>(staging_bytes / row_bytes);
  const auto* src = static_cast<const uint8_t*>(w.data);
  for (int64_t r = 0; r < w.rows; r += rows_per_chunk) {
    const int64_t n = std::min(rows_per_chunk, w.rows - r);
    // The previous chunk's kernel must finish reading staging first. The copy goes on the
    // stream so the kernel is ordered after it (a pageable cudaMemcpy may return before its DMA).
    CUDA_TRY(cudaStreamSynchronize(ctx_.stream));
    CUDA_TRY(cudaMemcpyAsync(staging_, src + static_cast<size_t>(r) * row_bytes,
                             static_cast<size_t>(n) * row_bytes, cudaMemcpyHostToDevice,
                             ctx_.stream));
    launch_dequantize_to_bf16(ctx_, w.dtype, staging_, n * w.cols,
                              static_cast<uint16_t*>(out.data) + r * w.cols);
  }
  CUDA_TRY(cudaStreamSynchronize(ctx_.stream));
  return Status::ok();
}

Result<Tensor> CudaBackend::alloc_random_weight(DType dtype, int64_t rows, int64_t cols,
                                                uint64_t seed, float scale) {
  // Created directly on the device as BF16, whatever `dtype` asks for: every weight type becomes
  // BF16 on this backend anyway, and an 8B model is made in seconds instead of minutes.
  auto info = dtype_info(static_cast<uint32_t>(dtype));
  if (!info || !dtype_is_weight(dtype) || rows < 0 || cols <= 0 || cols % info->block_elems != 0)
    return Status::error("cuda alloc_random_weight: bad type or shape");
  CARPOOL_ASSIGN_OR_RETURN(Tensor out, alloc_kind(DType::kBF16, rows, cols, Kind::kWeight));
  launch_random_bf16(ctx_, out.data, out.numel(), seed, scale);
  return out;
}

Result<KvCache> CudaBackend::alloc_kv(const KvCacheConfig& c) {
  if (c.n_layers <= 0 || c.num_blocks <= 0 || c.block_size <= 0 || c.n_kv_heads <= 0 ||
      c.head_dim <= 0)
    return Status::error("cuda alloc_kv: bad cache geometry");
  if (c.head_dim > kMaxHeadDim || c.head_dim % 2 != 0)
    return Status::error("cuda alloc_kv: head_dim must be even and at most " +
                         std::to_string(kMaxHeadDim));
  KvCache kv;
  kv.config = c;
  const int64_t rows = int64_t(c.num_blocks) * c.block_size;
  const int64_t cols = int64_t(c.n_kv_heads) * c.head_dim;
  for (int l = 0; l < c.n_layers; ++l) {
    for (auto* list : {&kv.k, &kv.v}) {
      auto t = alloc_kind(DType::kBF16, rows, cols, Kind::kKv);
      if (!t) {
        for (Tensor& x : kv.k) free(x);
        for (Tensor& x : kv.v) free(x);
        return t.status();
      }
      list->push_back(*t);
    }
  }
  return kv;
}

namespace {
constexpr size_t kUploadRingInitial = size_t{1} << 20;  // per-step metadata is a few KiB
constexpr size_t kUploadRingMax = size_t{64} << 20;
constexpr size_t kUploadAlign = 256;
}  // namespace

void CudaBackend::release_upload_ring() {
  if (upload_ring_ != nullptr) CUDA_CHECK(cudaFreeHost(upload_ring_));
  upload_ring_ = nullptr;
  upload_ring_bytes_ = upload_ring_used_ = 0;
}

void CudaBackend::upload(Tensor dst, const void* host, size_t bytes) {
  CARPOOL_CHECK(!capturing_);  // a recording would replay this step's bytes forever
  CARPOOL_CHECK(bytes <= dst.bytes());
  if (bytes == 0) return;
  if (upload_ring_failed_ || bytes > kUploadRingMax / 2) {
    // Pageable source: the copy is staged by the driver before this call returns.
    CUDA_CHECK(cudaMemcpyAsync(dst.data, host, bytes, cudaMemcpyHostToDevice, ctx_.stream));
    return;
  }
  const size_t need = (bytes + kUploadAlign - 1) / kUploadAlign * kUploadAlign;
  if (upload_ring_used_ + need > upload_ring_bytes_) {
    // Earlier copies from the ring may still be in flight: wait for them, then reuse the ring,
    // grown (to the cap) so that this many uploads between two waits fit next time.
    CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
    const size_t wanted = upload_ring_used_ + need;
    upload_ring_used_ = 0;
    if (upload_ring_ == nullptr ||
        (wanted > upload_ring_bytes_ && upload_ring_bytes_ < kUploadRingMax)) {
      size_t grown = std::max(kUploadRingInitial, upload_ring_bytes_ * 2);
      while (grown < wanted && grown < kUploadRingMax) grown *= 2;
      grown = std::min(grown, kUploadRingMax);  // >= need: bytes <= kUploadRingMax / 2
      release_upload_ring();
      if (cudaHostAlloc(reinterpret_cast<void**>(&upload_ring_), grown, cudaHostAllocDefault) !=
          cudaSuccess) {
        cudaGetLastError();
        upload_ring_ = nullptr;
        upload_ring_failed_ = true;
        CUDA_CHECK(cudaMemcpyAsync(dst.data, host, bytes, cudaMemcpyHostToDevice, ctx_.stream));
        return;
      }
      upload_ring_bytes_ = grown;
    }
  }
  uint8_t* slot = upload_ring_ + upload_ring_used_;
  std::memcpy(slot, host, bytes);
  upload_ring_used_ += need;
  CUDA_CHECK(cudaMemcpyAsync(dst.data, slot, bytes, cudaMemcpyHostToDevice, ctx_.stream));
}

void CudaBackend::download(void* host, const Tensor& src, size_t bytes) {
  CARPOOL_CHECK(!capturing_);
  CARPOOL_CHECK(bytes <= src.bytes());
  if (bytes > 0)
    CUDA_CHECK(cudaMemcpyAsync(host, src.data, bytes, cudaMemcpyDeviceToHost, ctx_.stream));
  CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
  upload_ring_used_ = 0;  // the stream is idle: every copy out of the ring has finished
}

void CudaBackend::synchronize() {
  CARPOOL_CHECK(!capturing_);
  CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
  upload_ring_used_ = 0;
}

void CudaBackend::begin_device_timing() {
  CARPOOL_CHECK(!capturing_);
  if (timing_begin_ == nullptr) {
    CUDA_CHECK(cudaEventCreate(&timing_begin_));
    CUDA_CHECK(cudaEventCreate(&timing_end_));
  }
  CUDA_CHECK(cudaEventRecord(timing_begin_, ctx_.stream));
  timing_marks_ = 1;
  sampling_span_ = false;
}

void CudaBackend::end_device_timing() {
  CARPOOL_CHECK(!capturing_);
  if (timing_marks_ != 1) return;  // no begin
  CUDA_CHECK(cudaEventRecord(timing_end_, ctx_.stream));
  timing_marks_ = 2;
}

void CudaBackend::mark_sampling_begin() {
  if (timing_marks_ != 2 || capturing_) return;
  if (sampling_begin_ == nullptr) {
    CUDA_CHECK(cudaEventCreate(&sampling_begin_));
    CUDA_CHECK(cudaEventCreate(&sampling_end_));
  }
  CUDA_CHECK(cudaEventRecord(sampling_begin_, ctx_.stream));
}

void CudaBackend::mark_sampling_end() {
  if (timing_marks_ != 2 || capturing_ || sampling_begin_ == nullptr) return;
  CUDA_CHECK(cudaEventRecord(sampling_end_, ctx_.stream));
  sampling_span_ = true;  // one span per step: the runner samples with one op
}

int64_t CudaBackend::device_time_ns() {
  if (timing_marks_ != 2) return -1;
  timing_marks_ = 0;
  CUDA_CHECK(cudaEventSynchronize(timing_end_));  // normally complete: the results were downloaded
  float ms = 0.f;
  if (cudaEventElapsedTime(&ms, timing_begin_, timing_end_) != cudaSuccess) return -1;
  if (sampling_span_) {
    sampling_span_ = false;
    float sampling_ms = 0.f;
    CUDA_CHECK(cudaEventSynchronize(sampling_end_));
    if (cudaEventElapsedTime(&sampling_ms, sampling_begin_, sampling_end_) == cudaSuccess)
      ms += sampling_ms;
  }
  return static_cast<int64_t>(static_cast<double>(ms) * 1e6);
}

void* CudaBackend::scratch(int i, size_t bytes) {
  CARPOOL_CHECK(i >= 0 && i < kScratchSlots);
  if (bytes > scratch_bytes_[i]) {
    ++scratch_generation_;  // recordings that use this slot refer to the old buffer
    if (scratch_ptr_[i] != nullptr) {
      if (capturing_) {
        retired_scratch_.push_back(scratch_ptr_[i]);  // no sync or free while recording
      } else {
        CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
        drop_all_graphs();
        CUDA_CHECK(cudaFree(scratch_ptr_[i]));
      }
    }
    const size_t grown = std::max(bytes, scratch_bytes_[i] * 2);
    CUDA_CHECK(cudaMalloc(&scratch_ptr_[i], grown));
    scratch_bytes_[i] = grown;
  }
  return scratch_ptr_[i];
}

const void* CudaBackend::as_bf16(const Tensor& x, int slot) {
  if (x.dtype == DType::kBF16) return x.data;
  void* buf = scratch(slot, static_cast<size_t>(x.numel()) * 2);
  if (is_float_type(x.dtype)) {
    launch_convert(ctx_, buf, DType::kBF16, x.data, x.dtype, x.numel());
  } else {
    // A quantized tensor still in file layout (not from load_weight): dequantize it.
    launch_dequantize_to_bf16(ctx_, x.dtype, x.data, x.numel(), buf);
  }
  return buf;
}

}  // namespace cuda
}  // namespace carpool
