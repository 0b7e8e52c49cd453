// Conformance cases for argmax_rows (greedy sampling on the device): every row's index must equal
// the host sampler's choice exactly, so the error is the count of rows that differ (tolerance 0).
// Rows mix the hard cases: equal maxima at several positions (first, middle, last), all-negative
// rows, -inf (also a row of only -inf), NaN after the first element and at index 0, a maximum
// in the last element only, constant rows; vocab 1, primes and sizes just past a power of two.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "conformance/harness.h"

namespace carpool::conformance {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// The host sampler's greedy rule (std::max_element, Backend::argmax_rows): a NaN at index 0
// wins; otherwise the largest non-NaN value, the lowest index among equals.
int32_t reference_argmax(const float* x, int64_t vocab) {
  if (std::isnan(x[0])) return 0;
  int64_t best = 0;
  for (int64_t i = 1; i < vocab; ++i) {
    if (!std::isnan(x[i]) && x[i] > x[best]) best = i;
  }
  return static_cast<int32_t>(best);
}

// Fills row `r` of `vocab` values with pattern r % 9 (see the top of the file).
void fill_row(Rng& rng, int64_t r, float* x, int64_t vocab) {
  for (int64_t i = 0; i < vocab; ++i) x[i] = rng.normal(3.f);
  auto at = [&](double frac) {
    return static_cast<int64_t>(frac * static_cast<double>(vocab - 1));
  };
  switch (r % 9) {
    case 0:  // random
      break;
    case 1:  // one maximum repeated in the middle and at the end
      for (double f : {0.3, 0.7, 1.0}) x[at(f)] = 100.f;
      break;
    case 2:  // every value negative; the maximum repeated, first copy at index 0
      for (int64_t i = 0; i < vocab; ++i) x[i] = -50.f - std::fabs(x[i]);
      x[0] = -1.f;
      x[at(0.5)] = -1.f;
      break;
    case 3:  // many -inf, index 0 included; one finite maximum
      for (int64_t i = 0; i < vocab; i += 2) x[i] = -kInf;
      x[at(0.6)] = 42.f;
      break;
    case 4:  // only -inf
      for (int64_t i = 0; i < vocab; ++i) x[i] = -kInf;
      break;
    case 5:  // NaNs after index 0, one of them before the maximum
      for (double f : {0.1, 0.5, 0.9}) x[at(f)] = kNaN;
      x[at(0.8)] = 77.f;
      break;
    case 6:  // NaN at index 0 (std::max_element keeps it)
      x[0] = kNaN;
      x[at(0.5)] = 1000.f;
      break;
    case 7:  // the maximum at the last index only
      x[vocab - 1] = 500.f;
      break;
    case 8:  // constant: every index ties, 0 wins
      for (int64_t i = 0; i < vocab; ++i) x[i] = 0.25f;
      break;
  }
}

void argmax_case(Backend& b, Rng& rng, DType dtype, int64_t rows, int64_t vocab,
                 std::vector<CaseResult>& out) {
  Scratch s(b);
  std::vector<float> x(static_cast<size_t>(rows * vocab));
  for (int64_t r = 0; r < rows; ++r) fill_row(rng, r, x.data() + r * vocab, vocab);
  Tensor logits = s.floats(dtype, x, rows, vocab);  // x now holds the stored values
  Tensor ids = s.alloc(DType::kI32, rows, 1);
  const std::string name = format("%s r%lld v%lld", std::string(dtype_name(dtype)).c_str(),
                                  static_cast<long long>(rows), static_cast<long long>(vocab));
  if (!b.argmax_rows(ids, logits)) return;  // not implemented by this backend
  std::vector<int32_t> got(static_cast<size_t>(rows));
  b.download(got.data(), ids, got.size() * sizeof(int32_t));
  int wrong = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (got[static_cast<size_t>(r)] != reference_argmax(x.data() + r * vocab, vocab)) ++wrong;
  }
  out.push_back(make_result("argmax_rows", name, wrong, 0));
}

}  // namespace

void run_sampling_cases(Backend& b, Rng& rng, std::vector<CaseResult>& out) {
  // Logits are F32 on every backend; the activation dtype where a backend accepts it.
  std::vector<DType> types = {DType::kF32};
  if (b.activation_dtype() != DType::kF32) types.push_back(b.activation_dtype());
  const std::pair<int64_t, int64_t> shapes[] = {{1, 1},     {9, 1},          {9, 7},     {9, 1024},
                                                {10, 1025}, {18, 49152 + 7}, {9, 128256}};
  for (DType t : types) {
    for (auto [rows, vocab] : shapes) argmax_case(b, rng, t, rows, vocab, out);
  }
}

}  // namespace carpool::conformance
