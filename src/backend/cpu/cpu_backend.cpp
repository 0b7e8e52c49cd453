// CpuBackend: construction, memory and transfers. The ops live in cpu_*.cpp beside this file.
#include "backend/cpu/cpu_backend.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <new>
#include <string>
#include <thread>
#include <utility>

#include "backend/cpu/cpu_features.h"
#include "util/check.h"
#include "util/host_memory.h"

namespace carpool {
namespace {

// Largest single allocation we attempt (guards against overflowing size arithmetic).
constexpr size_t kMaxAllocBytes = size_t{1} << 46;

int resolve_threads(int requested) {
  if (requested > 0) return requested;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos && colon + 2 <= line.size()) return line.substr(colon + 2);
    }
  }
  return "CPU";
}

void* aligned_bytes(size_t bytes) {
  return host_alloc(bytes);
}

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const CpuBackendOptions& options) {
  return std::make_unique<CpuBackend>(options);
}

CpuBackend::CpuBackend(const CpuBackendOptions& options)
    : options_(options), pool_(resolve_threads(options.n_threads)) {
  options_.n_threads = pool_.n_threads();
  if (!options_.kv_dtype) {
    options_.kv_dtype = options_.quantize_activations ? DType::kF16 : DType::kF32;
  }
  CARPOOL_CHECK(options_.kv_dtype == DType::kF32 || options_.kv_dtype == DType::kF16 ||
                options_.kv_dtype == DType::kI8);
  if (const char* e = std::getenv("CARPOOL_CPU_FUSED"); e != nullptr && std::string(e) == "0") {
    options_.fused_projections = false;
  }
  scratch_.resize(static_cast<size_t>(pool_.n_threads()));
}

CpuBackend::~CpuBackend() {
  for (auto& [ptr, bytes] : allocations_) std::free(ptr);
}

std::string CpuBackend::device_name() const {
  // The kernels' instruction set too: what a user checks first when a figure looks off.
  std::string kernels = cpu_isa_name(cpu_isa());
  if (cpu_amx_int8()) kernels += " + amx_int8";
  if (cpu_amx_bf16()) kernels += " + amx_bf16";
  return cpu_model_name() + " (" + std::to_string(pool_.n_threads()) + " threads, " + kernels +
         " kernels)";
}

BackendMemoryInfo CpuBackend::memory_info() const {
  BackendMemoryInfo info;
  const long page = sysconf(_SC_PAGESIZE);
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long avail = sysconf(_SC_AVPHYS_PAGES);
  if (page > 0 && pages > 0) info.total_bytes = static_cast<size_t>(page) * pages;
  if (page > 0 && avail > 0) info.free_bytes = static_cast<size_t>(page) * avail;
  info.weights_bytes = weights_bytes_ + packed_bytes_;
  info.kv_bytes = kv_bytes_;
  size_t workspace = (x_q8_.capacity() + x_q8u_.capacity()) * sizeof(BlockQ8A) +
                     norm_weight_.capacity() * 4 + x_q8ds_.capacity() * 4 +
                     x_q8sum_.capacity() * 4 + x_amx_.qs.capacity() +
                     (x_amx_.d.capacity() + x_amx_.s.capacity()) * 4 + x_amx_.sum.capacity() * 4;
  for (const auto& s : scratch_) workspace += s.capacity() * sizeof(float);
  info.other_bytes = other_bytes_ + workspace;
  return info;
}

Result<Tensor> CpuBackend::alloc(DType dtype, int64_t rows, int64_t cols) {
  const DTypeInfo& info = dtype_info(dtype);
  if (rows < 0 || cols < 0 || cols % info.block_elems != 0) {
    return Status::error("cpu alloc: bad shape [" + std::to_string(rows) + ", " +
                         std::to_string(cols) + "] for " + std::string(info.name));
  }
  const size_t row_bytes = dtype_row_bytes(dtype, cols);
  if (rows > 0 && row_bytes > kMaxAllocBytes / static_cast<size_t>(rows)) {
    return Status::error("cpu alloc: tensor too large");
  }
  const size_t bytes = row_bytes * static_cast<size_t>(rows);
  void* p = aligned_bytes(bytes);
  if (p == nullptr)
    return Status::error("cpu alloc: out of memory for " + std::to_string(bytes) + " bytes");
  allocations_[p] = Allocation{bytes};
  other_bytes_ += bytes;
  Tensor t;
  t.data = p;
  t.dtype = dtype;
  t.rows = rows;
  t.cols = cols;
  return t;
}

void CpuBackend::free(Tensor& t) {
  if (t.data == nullptr) return;
  if (const auto side = kv_sides_.find(t.data); side != kv_sides_.end()) {
    char* records = side->second.records;
    kv_sides_.erase(side);
    release(records);
  } else {
    // A KV layer's memory goes with its K and V tensors, each freed once (not a copy twice).
    const auto it = allocations_.find(t.data);
    CARPOOL_CHECK(it != allocations_.end() && !it->second.kv);
    release(t.data);
  }
  t.data = nullptr;
}

void CpuBackend::release(void* p) {
  auto it = allocations_.find(p);
  CARPOOL_CHECK(it != allocations_.end());  // only memory from alloc()/alloc_kv() is freed
  if (--it->second.refs > 0) return;
  size_t& counter = it->second.kv ? kv_bytes_ : other_bytes_;
  counter -= std::min(counter, it->second.bytes);
  std::free(it->first);
  allocations_.erase(it);
}

Result<Tensor> CpuBackend::load_weight(const HostWeight& w) {
  if (!dtype_is_weight(w.dtype)) {
    return Status::error("cpu load_weight: unsupported weight type");
  }
  if (w.rows < 0 || w.cols < 0 || w.cols % dtype_info(w.dtype).block_elems != 0 ||
      (w.data == nullptr && w.rows != 0 && w.cols != 0)) {
    return Status::error("cpu load_weight: bad weight shape");
  }
  // Q5_0 has only packed kernels: a matrix with rows past its last group of 16 (or one that
  // will not be packed) is re-encoded as Q8_0 for the other kernels.
  if (w.dtype == DType::kQ5_0 && w.rows > 0 && w.cols > 0 &&
      (w.rows % kPackRows != 0 || !packs(w.dtype, w.rows, w.cols))) {
    return load_q5_0_as_q8_0(w);
  }
  Tensor t;
  t.data = const_cast<void*>(w.data);  // never written: weights are only read by the ops
  // A packed copy made for an earlier weight at the same address is stale.
  if (auto it = packed_.find(w.data); it != packed_.end()) {
    packed_bytes_ -= it->second.bytes();
    packed_.erase(it);
  }
  t.dtype = w.dtype;
  t.rows = w.rows;
  t.cols = w.cols;
  weights_bytes_ += t.bytes();
  return t;
}

Result<Tensor> CpuBackend::load_weight_concat(std::span<const HostWeight> parts) {
  if (parts.empty()) return Status::error("cpu load_weight_concat: no parts");
  const DType dtype = parts[0].dtype;
  const int64_t cols = parts[0].cols;
  if (!dtype_is_weight(dtype) || cols <= 0 || cols % dtype_info(dtype).block_elems != 0) {
    return Status::error("cpu load_weight_concat: bad weight type or shape");
  }
  const size_t row_bytes = dtype_row_bytes(dtype, cols);
  int64_t rows = 0;
  bool in_place = true;  // every part starts where the one before it ends
  for (size_t i = 0; i < parts.size(); ++i) {
    const HostWeight& p = parts[i];
    if (p.dtype != dtype) return Status::error("cpu load_weight_concat: parts differ in type");
    if (p.cols != cols || p.rows <= 0 || p.data == nullptr) {
      return Status::error("cpu load_weight_concat: parts differ in width or are empty");
    }
    if (static_cast<size_t>(p.rows) > kMaxAllocBytes / row_bytes ||
        rows > std::numeric_limits<int64_t>::max() - p.rows) {
      return Status::error("cpu load_weight_concat: weight too large");
    }
    if (i > 0) {
      const HostWeight& prev = parts[i - 1];
      in_place = in_place &&
                 static_cast<const char*>(prev.data) + row_bytes * static_cast<size_t>(prev.rows) ==
                     static_cast<const char*>(p.data);
    }
    rows += p.rows;
  }
  if (static_cast<size_t>(rows) > kMaxAllocBytes / row_bytes) {
    return Status::error("cpu load_weight_concat: weight too large");
  }
  if (in_place) return load_weight(HostWeight{dtype, parts[0].data, rows, cols});
  const size_t bytes = row_bytes * static_cast<size_t>(rows);
  std::unique_ptr<uint8_t[], PackedWeight::Free> buf(static_cast<uint8_t*>(host_alloc(bytes)));
  if (!buf) return Status::error("cpu load_weight_concat: out of host memory");
  size_t off = 0;
  for (const HostWeight& p : parts) {
    const size_t n = row_bytes * static_cast<size_t>(p.rows);
    std::memcpy(buf.get() + off, p.data, n);
    off += n;
  }
  auto t = load_weight(HostWeight{dtype, buf.get(), rows, cols});
  if (!t) return t;
  // load_weight keeps pointing at the bytes, except where it made its own copy (some Q5_0).
  if (t->data != buf.get()) return t;
  // Where every row will be read from the packed copy (no rows past the last group of 16, and
  // packing applies in this mode), pack now and give the copy's pages back: only its address is
  // still used, as the packed copy's key.
  if (t->rows % kPackRows == 0) {
    const PackedWeight* p = packed_for(*t);
    if (p != nullptr && p->groups * kPackRows == t->rows && host_release_pages(buf.get(), bytes)) {
      weights_bytes_ -= t->bytes();
    }
  }
  owned_weights_.push_back(std::move(buf));
  return t;
}

Result<Tensor> CpuBackend::load_q5_0_as_q8_0(const HostWeight& w) {
  // Q5_0 (w = d (q - 16), q in 0..31) is Q8_0 with the same d and q - 16 as the byte: exact, and
  // the Q8_0 kernels (packed, VNNI) then serve it. 34 bytes per block instead of 22.
  const int64_t nb = w.rows * (w.cols / kQK);
  const size_t bytes = static_cast<size_t>(nb) * sizeof(BlockQ8_0);
  auto* out = static_cast<BlockQ8_0*>(host_alloc(bytes));
  if (out == nullptr) return Status::error("cpu load_weight: out of host memory for a Q5_0 copy");
  const auto* in = static_cast<const BlockQ5_0*>(w.data);
  for (int64_t b = 0; b < nb; ++b) {
    out[b].d = in[b].d;
    q5_values(in[b].qs, in[b].qh, out[b].qs);
    for (int8_t& q : out[b].qs) q = static_cast<int8_t>(q - 16);
  }
  owned_weights_.emplace_back(reinterpret_cast<uint8_t*>(out));
  Tensor t;
  t.data = out;
  t.dtype = DType::kQ8_0;
  t.rows = w.rows;
  t.cols = w.cols;
  weights_bytes_ += t.bytes();
  return t;
}

Result<KvCache> CpuBackend::alloc_kv(const KvCacheConfig& config) {
  if (config.n_layers <= 0 || config.num_blocks <= 0 || config.block_size <= 0 ||
      config.n_kv_heads <= 0 || config.head_dim <= 0) {
    return Status::error("cpu alloc_kv: every KV cache dimension must be positive");
  }
  const KvLayout layout{*options_.kv_dtype, config.block_size, config.n_kv_heads, config.head_dim};
  const auto max_bytes = static_cast<int64_t>(kMaxAllocBytes);
  if (layout.cols() > max_bytes || int64_t{config.block_size} * layout.cols() > max_bytes / 16 ||
      layout.record_bytes() > max_bytes / config.num_blocks) {
    return Status::error("cpu alloc_kv: cache too large");
  }
  const int64_t rows = static_cast<int64_t>(config.num_blocks) * config.block_size;
  const size_t bytes = static_cast<size_t>(layout.record_bytes()) * config.num_blocks;
  KvCache cache;
  cache.config = config;
  for (int l = 0; l < config.n_layers; ++l) {
    auto* records = static_cast<char*>(aligned_bytes(bytes));
    if (records == nullptr) {
      free_kv(cache);
      return Status::error("cpu alloc_kv: out of memory for " + std::to_string(bytes) + " bytes");
    }
    // Fresh cache memory is zeroed so that a stray read is deterministic.
    std::memset(records, 0, bytes);
    allocations_[records] = Allocation{bytes, true, 2};
    kv_bytes_ += bytes;
    for (char* data : {records, records + layout.v_begin()}) {
      kv_sides_[data] = KvSide{layout, records, rows};
      (data == records ? cache.k : cache.v)
          .push_back(Tensor{data, layout.dtype, rows, layout.cols()});
    }
  }
  return cache;
}

KvLayer CpuBackend::kv_layer(const Tensor& k_cache, const Tensor& v_cache) const {
  const auto k = kv_sides_.find(k_cache.data), v = kv_sides_.find(v_cache.data);
  // A K and the V of the same alloc_kv layer.
  CARPOOL_CHECK(k != kv_sides_.end() && k->second.records == k_cache.data);
  CARPOOL_CHECK(v != kv_sides_.end() && v->second.records == k_cache.data &&
                v_cache.data != k_cache.data);
  const KvLayout& l = k->second.layout;
  // With the shape alloc_kv gave them: every slot an op is checked against lies in the layer.
  for (const Tensor* t : {&k_cache, &v_cache}) {
    CARPOOL_CHECK(t->dtype == l.dtype && t->cols == l.cols() && t->rows == k->second.rows);
  }
  return kv_layer_at(l, k->second.records);
}

std::vector<float> CpuBackend::kv_cache_row(const Tensor& cache, int64_t slot) {
  const auto side = kv_sides_.find(cache.data);
  CARPOOL_CHECK(side != kv_sides_.end());  // a K or V from alloc_kv
  CARPOOL_CHECK(slot >= 0 && slot < cache.rows);
  const KvLayout& l = side->second.layout;
  char* records = side->second.records;
  const bool is_k = cache.data == records;
  const KvLayer layer = kv_layer_at(l, records);
  std::vector<float> row(static_cast<size_t>(l.cols()));
  for (int64_t c = 0; c < l.cols(); ++c) {
    const char* at = is_k ? layer.k + l.k_at(slot, c) : layer.v + l.v_at(slot, c);
    float x = 0.f;
    if (l.dtype == DType::kF32) {
      std::memcpy(&x, at, 4);
    } else if (l.dtype == DType::kF16) {
      uint16_t h;
      std::memcpy(&h, at, 2);
      x = f16_to_f32(h);
    } else {
      const int head = static_cast<int>(c / l.head_dim);
      x = static_cast<float>(*reinterpret_cast<const int8_t*>(at)) *
          (is_k ? layer.k_scale(slot, head) : layer.v_scale(slot, head));
    }
    row[static_cast<size_t>(c)] = x;
  }
  return row;
}

void CpuBackend::upload(Tensor dst, const void* host, size_t bytes) {
  CARPOOL_CHECK(bytes <= dst.bytes());
  if (bytes > 0) std::memcpy(dst.data, host, bytes);
}

void CpuBackend::download(void* host, const Tensor& src, size_t bytes) {
  CARPOOL_CHECK(bytes <= src.bytes());
  if (bytes > 0) std::memcpy(host, src.data, bytes);
}

void CpuBackend::reserve_scratch(size_t floats) {
  for (auto& s : scratch_) {
    if (s.size() < floats) s.resize(floats);
  }
}

const float* CpuBackend::weight_as_f32(const Tensor& w) {
  if (w.dtype == DType::kF32) return static_cast<const float*>(w.data);
  if (norm_weight_.size() < static_cast<size_t>(w.numel())) norm_weight_.resize(w.numel());
  dequantize_row(w.dtype, w.data, norm_weight_.data(), w.numel());
  return norm_weight_.data();
}

namespace {
int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

CpuBackend::OpScope::OpScope(CpuBackend& b, const char* op)
    : b_(b.op_timing_ ? &b : nullptr), op_(op) {
  if (b_ != nullptr) t0_ns_ = steady_ns();
}

CpuBackend::OpScope::~OpScope() {
  if (b_ == nullptr) return;
  const double seconds = static_cast<double>(steady_ns() - t0_ns_) * 1e-9;
  b_->op_times_.add(key_.empty() ? std::string(op_) : key_, seconds, bytes_, flops_);
}

}  // namespace carpool
