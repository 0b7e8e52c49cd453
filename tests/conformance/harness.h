// Internal helpers of the conformance suite: random data, host <-> backend transfers in the
// backend's activation dtype, error metric. Not a public API.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "conformance/conformance.h"

namespace carpool::conformance {

// Owns backend tensors made during one case and frees them at scope exit.
class Scratch {
 public:
  explicit Scratch(Backend& b) : backend_(b) {}
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  Tensor alloc(DType dtype, int64_t rows, int64_t cols);
  // An I32 tensor [1, n] holding `values`.
  Tensor ints(const std::vector<int32_t>& values);
  // A tensor of the activation dtype holding `values` [rows, cols]; `values` is rounded in place
  // to what the backend stores, so the reference uses exactly the backend's inputs.
  Tensor activations(std::vector<float>& values, int64_t rows, int64_t cols);
  // A tensor of `dtype` (F32/F16/BF16) with `values`, rounded in place likewise.
  Tensor floats(DType dtype, std::vector<float>& values, int64_t rows, int64_t cols);
  // Reads a F32/F16/BF16 tensor back as f32 (I8: the integers, without their scales).
  std::vector<float> read(const Tensor& t);

  Backend& backend() { return backend_; }

 private:
  Backend& backend_;
  std::vector<Tensor> owned_;
};

class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  float normal(float stddev = 1.f) { return std::normal_distribution<float>(0.f, stddev)(gen_); }
  float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(gen_); }
  int64_t integer(int64_t lo, int64_t hi) {  // [lo, hi]
    return std::uniform_int_distribution<int64_t>(lo, hi)(gen_);
  }
  // n values ~ N(0, stddev^2), none exactly zero.
  std::vector<float> normals(int64_t n, float stddev = 1.f);
  std::mt19937_64& gen() { return gen_; }

 private:
  std::mt19937_64 gen_;
};

// Rounds v to what a tensor of dtype t (F32/F16/BF16) stores.
float round_to(DType t, float v);

// Rounds rows of K or V (whole heads of head_dim values each) to what a KV cache of type t holds:
// round_to for float caches; for I8 (the CPU's int8 cache) each head as int8 with scale
// max |x| / 127, to nearest (ties to even), times the scale.
void round_kv_rows(DType t, std::vector<float>& rows, int head_dim);

// max |out - ref| / max(max |ref|, scale_floor); +inf when out has a NaN/Inf or the sizes
// differ. scale_floor keeps cancellation (a reference value near zero) from inflating the error.
double normalized_max_error(const std::vector<float>& out, const std::vector<double>& ref,
                            double scale_floor = 0);

// printf-style formatting for case names.
std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

CaseResult make_result(std::string op, std::string name, double error, double tolerance);

// Random but valid bytes for `rows` rows of `cols` elements of a quantized or 16-bit type: scale
// fields are finite f16 values of moderate size, so every row dequantizes to finite numbers.
std::vector<uint8_t> random_weight_bytes(Rng& rng, DType t, int64_t rows, int64_t cols);

// Per-op case groups (each appends to `out`).
void run_matmul_cases(Backend& b, Rng& rng, const Tolerances& tol, std::vector<CaseResult>& out);
void run_attention_cases(Backend& b, Rng& rng, const Tolerances& tol, std::vector<CaseResult>& out);
// argmax_rows (sampling_cases.cpp); nothing where the backend does not implement it.
void run_sampling_cases(Backend& b, Rng& rng, std::vector<CaseResult>& out);
void run_row_op_cases(Backend& b, Rng& rng, const Tolerances& tol, const std::string& only_op,
                      std::vector<CaseResult>& out);

}  // namespace carpool::conformance
