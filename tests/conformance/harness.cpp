#include "conformance/harness.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <limits>

#include "backend/cpu/quants.h"
#include "util/check.h"

namespace carpool::conformance {

Scratch::~Scratch() {
  for (Tensor& t : owned_) backend_.free(t);
}

Tensor Scratch::alloc(DType dtype, int64_t rows, int64_t cols) {
  Result<Tensor> t = backend_.alloc(dtype, rows, cols);
  CARPOOL_CHECK(t.is_ok());
  owned_.push_back(*t);
  return *t;
}

Tensor Scratch::ints(const std::vector<int32_t>& values) {
  Tensor t = alloc(DType::kI32, 1, static_cast<int64_t>(values.size()));
  backend_.upload(t, values.data(), values.size() * sizeof(int32_t));
  return t;
}

Tensor Scratch::activations(std::vector<float>& values, int64_t rows, int64_t cols) {
  return floats(backend_.activation_dtype(), values, rows, cols);
}

Tensor Scratch::floats(DType dtype, std::vector<float>& values, int64_t rows, int64_t cols) {
  CARPOOL_CHECK(static_cast<int64_t>(values.size()) == rows * cols);
  Tensor t = alloc(dtype, rows, cols);
  if (dtype == DType::kF32) {
    backend_.upload(t, values.data(), values.size() * sizeof(float));
    return t;
  }
  CARPOOL_CHECK(dtype == DType::kF16 || dtype == DType::kBF16);
  std::vector<uint16_t> half(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    half[i] = dtype == DType::kF16 ? f32_to_f16(values[i]) : f32_to_bf16(values[i]);
    values[i] = dtype == DType::kF16 ? f16_to_f32(half[i]) : bf16_to_f32(half[i]);
  }
  backend_.upload(t, half.data(), half.size() * sizeof(uint16_t));
  return t;
}

std::vector<float> Scratch::read(const Tensor& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  if (t.dtype == DType::kF32) {
    backend_.download(out.data(), t, t.bytes());
    return out;
  }
  if (t.dtype == DType::kI8) {
    std::vector<int8_t> q(out.size());
    backend_.download(q.data(), t, t.bytes());
    for (size_t i = 0; i < out.size(); ++i) out[i] = q[i];
    return out;
  }
  CARPOOL_CHECK(t.dtype == DType::kF16 || t.dtype == DType::kBF16);
  std::vector<uint16_t> half(out.size());
  backend_.download(half.data(), t, t.bytes());
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = t.dtype == DType::kF16 ? f16_to_f32(half[i]) : bf16_to_f32(half[i]);
  }
  return out;
}

std::vector<float> Rng::normals(int64_t n, float stddev) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) {
    do {
      x = normal(stddev);
    } while (x == 0.f);
  }
  return v;
}

float round_to(DType t, float v) {
  switch (t) {
    case DType::kF32:
      return v;
    case DType::kF16:
      return f16_to_f32(f32_to_f16(v));
    case DType::kBF16:
      return bf16_to_f32(f32_to_bf16(v));
    default:
      break;
  }
  CARPOOL_CHECK(false && "round_to: not a float type");
  return v;
}

void round_kv_rows(DType t, std::vector<float>& rows, int head_dim) {
  if (t != DType::kI8) {
    for (float& v : rows) v = round_to(t, v);
    return;
  }
  for (size_t h0 = 0; h0 + static_cast<size_t>(head_dim) <= rows.size(); h0 += head_dim) {
    float* x = rows.data() + h0;
    float amax = 0.f;
    for (int e = 0; e < head_dim; ++e) amax = std::max(amax, std::fabs(x[e]));
    const float scale = amax / 127.f;
    for (int e = 0; e < head_dim; ++e) x[e] = std::nearbyint(x[e] * (127.f / amax)) * scale;
  }
}

double normalized_max_error(const std::vector<float>& out, const std::vector<double>& ref,
                            double scale_floor) {
  if (out.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) return std::numeric_limits<double>::infinity();
    max_diff = std::max(max_diff, std::fabs(static_cast<double>(out[i]) - ref[i]));
    max_ref = std::max(max_ref, std::fabs(ref[i]));
  }
  return max_diff / std::max({max_ref, scale_floor, 1e-30});
}

std::string format(const char* fmt, ...) {
  char buf[256];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(buf, sizeof(buf), fmt, args);
  va_end(args);
  return buf;
}

CaseResult make_result(std::string op, std::string name, double error, double tolerance) {
  CaseResult r;
  r.op = std::move(op);
  r.name = std::move(name);
  r.error = error;
  r.tolerance = tolerance;
  r.passed = error <= tolerance;  // false for NaN
  return r;
}

namespace {

void put_f16(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16(v);
  std::memcpy(p, &h, sizeof(h));
}

}  // namespace

std::vector<uint8_t> random_weight_bytes(Rng& rng, DType t, int64_t rows, int64_t cols) {
  const size_t row_bytes = dtype_row_bytes(t, cols);
  std::vector<uint8_t> bytes(row_bytes * static_cast<size_t>(rows));
  if (t == DType::kF16 || t == DType::kBF16) {
    for (size_t i = 0; i < bytes.size() / 2; ++i) {
      const float v = rng.normal(0.5f);
      const uint16_t h = t == DType::kF16 ? f32_to_f16(v) : f32_to_bf16(v);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
    return bytes;
  }
  if (t == DType::kF32) {
    for (size_t i = 0; i < bytes.size() / 4; ++i) {
      const float v = rng.normal(0.5f);
      std::memcpy(bytes.data() + 4 * i, &v, 4);
    }
    return bytes;
  }
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng.integer(0, 255));
  // Overwrite the f16 scale fields with moderate values (random bytes could be Inf/NaN).
  const DTypeInfo& info = dtype_info(t);
  const size_t n_blocks = bytes.size() / static_cast<size_t>(info.block_bytes);
  for (size_t i = 0; i < n_blocks; ++i) {
    uint8_t* blk = bytes.data() + i * static_cast<size_t>(info.block_bytes);
    switch (t) {
      case DType::kQ4_0:
      case DType::kQ8_0:
        put_f16(blk, rng.uniform(-0.1f, 0.1f));
        break;
      case DType::kIQ4_NL:
        put_f16(blk, rng.uniform(-0.01f, 0.01f));
        break;
      case DType::kIQ4_XS:
        put_f16(blk, rng.uniform(-0.0005f, 0.0005f));
        break;
      case DType::kQ5_0:
        put_f16(blk, rng.uniform(-0.05f, 0.05f));
        break;
      case DType::kQ5_1:
      case DType::kQ4_1:
        put_f16(blk, rng.uniform(0.001f, 0.1f));
        put_f16(blk + 2, rng.uniform(-0.5f, 0.5f));
        break;
      case DType::kQ4_K:
      case DType::kQ5_K:
        put_f16(blk, rng.uniform(0.0005f, 0.005f));
        put_f16(blk + 2, rng.uniform(0.0005f, 0.01f));
        break;
      case DType::kQ6_K:
        put_f16(blk + offsetof(BlockQ6_K, d), rng.uniform(-0.002f, 0.002f));
        break;
      case DType::kQ2_K:
        put_f16(blk + offsetof(BlockQ2_K, d), rng.uniform(0.0005f, 0.005f));
        put_f16(blk + offsetof(BlockQ2_K, dmin), rng.uniform(0.0005f, 0.01f));
        break;
      case DType::kQ3_K:
        put_f16(blk + offsetof(BlockQ3_K, d), rng.uniform(-0.002f, 0.002f));
        break;
      default:
        CARPOOL_CHECK(false && "random_weight_bytes: unsupported type");
    }
  }
  return bytes;
}

std::vector<CaseResult> run_conformance(Backend& backend, const Options& options) {
  Rng rng(options.seed);
  std::vector<CaseResult> results;
  const std::string& only = options.only_op;
  if (only.empty() || only == "matmul") run_matmul_cases(backend, rng, options.tol, results);
  if (only.empty() || only == "attention") run_attention_cases(backend, rng, options.tol, results);
  run_row_op_cases(backend, rng, options.tol, only, results);
  if (only.empty() || only == "argmax_rows" || only == "sample_rows") {
    run_sampling_cases(backend, rng, results);
  }
  return results;
}

Tolerances default_tolerances(DType activation_dtype, bool quantized_activations) {
  Tolerances t;
  if (activation_dtype != DType::kF32) {
    t.ops = 2e-2;
    t.matmul_float_w = 2e-2;
    t.matmul_bf16_w = 2e-2;
    t.matmul_quant_w = 2e-2;
  }
  if (quantized_activations) {
    t.matmul_quant_w = std::max(t.matmul_quant_w, 3e-2);
    t.matmul_bf16_w = std::max(t.matmul_bf16_w, 1e-2);
  }
  return t;
}

int print_results(const std::vector<CaseResult>& results, std::FILE* out) {
  int failed = 0;
  for (const CaseResult& r : results) {
    std::fprintf(out, "%-4s %-12s %-56s err %.3e  tol %.1e\n", r.passed ? "ok" : "FAIL",
                 r.op.c_str(), r.name.c_str(), r.error, r.tolerance);
    if (!r.passed) ++failed;
  }
  std::fprintf(out, "conformance: %zu cases, %d failed\n", results.size(), failed);
  return failed;
}

}  // namespace carpool::conformance
