// Conformance cases for argmax_rows (greedy sampling on the device): every row's index must equal
// the host sampler's choice exactly, so the error is the count of rows that differ (tolerance 0).
// Rows mix the hard cases: equal maxima at several positions (first, middle, last), all-negative
// rows, -inf (also a row of only -inf), NaN after the first element and at index 0, a maximum
// in the last element only, constant rows; vocab 1, primes and sizes just past a power of two.
//
// And for sample_rows (temperature, top-k, top-p, min-p draws on the device): N rows of the same
// logits with the stratified draws u = (j + 0.5) / N. The device takes the kept tokens in id
// order, so token i is drawn for the u inside its interval of the cumulative distribution: about
// N p_i times, p from the reference below (the host sampler's rule, computed the plain way).
// The error is the largest |count - N p| over the tokens, plus N for every draw outside the
// reference's kept set (tolerance 2: the interval ends, and f32 against f64 weights).
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "conformance/conformance.h"
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

// `rows` rows of the logits x [vocab] drawn with p and the stratified uniforms.
void draw_case(Backend& b, const std::string& name, const std::vector<float>& x,
               const DrawParams& p, int64_t rows, std::vector<CaseResult>& out) {
  const int64_t vocab = static_cast<int64_t>(x.size());
  Scratch s(b);
  std::vector<float> all(static_cast<size_t>(rows * vocab));
  std::vector<float> params(static_cast<size_t>(rows * Backend::kRowSamplingFloats));
  for (int64_t r = 0; r < rows; ++r) {
    std::copy(x.begin(), x.end(), all.begin() + r * vocab);
    float* f = &params[static_cast<size_t>(r * Backend::kRowSamplingFloats)];
    f[0] = p.temperature;
    f[1] = static_cast<float>(p.top_k);
    f[2] = p.top_p;
    f[3] = p.min_p;
    f[4] = static_cast<float>((static_cast<double>(r) + 0.5) / static_cast<double>(rows));
  }
  Tensor logits = s.floats(DType::kF32, all, rows, vocab);
  Tensor par = s.floats(DType::kF32, params, rows, Backend::kRowSamplingFloats);
  Tensor ids = s.alloc(DType::kI32, rows, 1);
  if (!b.sample_rows(ids, logits, par)) return;  // not implemented by this backend
  std::vector<int32_t> got(static_cast<size_t>(rows));
  b.download(got.data(), ids, got.size() * sizeof(int32_t));
  const std::vector<double> prob = reference_draw(x.data(), vocab, p);
  std::vector<int64_t> count(static_cast<size_t>(vocab), 0);
  double error = 0;
  for (int32_t t : got) {
    if (t < 0 || t >= vocab || prob[static_cast<size_t>(t)] == 0) {
      error += static_cast<double>(rows);  // outside the kept set
    } else {
      ++count[static_cast<size_t>(t)];
    }
  }
  double worst = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    worst = std::max(
        worst, std::fabs(static_cast<double>(count[i]) - static_cast<double>(rows) * prob[i]));
  }
  out.push_back(make_result("sample_rows", name, error + worst, 2));
}

void run_draw_cases(Backend& b, Rng& rng, std::vector<CaseResult>& out) {
  // A model-like row: Gaussian logits and a few well above them.
  auto model_like = [&](int64_t vocab) {
    std::vector<float> x(static_cast<size_t>(vocab));
    for (float& v : x) v = rng.normal(2.f);
    for (int i = 0; i < 6; ++i) x[static_cast<size_t>((i * 401) % vocab)] += 9.f - i;
    return x;
  };
  const std::vector<float> x = model_like(3001);
  const struct {
    const char* name;
    DrawParams p;
  } cases[] = {
      {"t1", {1.f, 0, 1.f, 0.f}},
      {"t0.7 k50", {0.7f, 50, 1.f, 0.f}},
      {"t1 p0.9", {1.f, 0, 0.9f, 0.f}},
      {"t1.3 min0.05", {1.3f, 0, 1.f, 0.05f}},
      {"t0.8 k200 p0.8 min0.01", {0.8f, 200, 0.8f, 0.01f}},
      {"t1 k1", {1.f, 1, 1.f, 0.f}},
      {"t2 p0.3", {2.f, 0, 0.3f, 0.f}},
  };
  for (const auto& c : cases) draw_case(b, std::string("v3001 ") + c.name, x, c.p, 4096, out);
  // Ties: logits on a coarse grid, so that the top-k and top-p boundaries fall inside runs of
  // equal values, which go in id order; NaN and -inf entries are never drawn.
  std::vector<float> grid = model_like(2000);
  for (float& v : grid) v = std::round(v);
  grid[3] = kNaN;
  grid[1500] = -kInf;
  draw_case(b, "v2000 ties k100", grid, {1.f, 100, 1.f, 0.f}, 4096, out);
  draw_case(b, "v2000 ties p0.5", grid, {1.f, 0, 0.5f, 0.f}, 4096, out);
  draw_case(b, "v2000 ties k300 p0.7", grid, {0.9f, 300, 0.7f, 0.f}, 4096, out);
  // Large vocabularies: fewer rows (the counts still bound each token's share).
  draw_case(b, "v49159 t1", model_like(49152 + 7), {1.f, 0, 1.f, 0.f}, 512, out);
  draw_case(b, "v128256 k40 p0.9", model_like(128256), {1.f, 40, 0.9f, 0.f}, 512, out);
  // A row with +inf: the first +inf, as the host; temperature 0: the argmax.
  std::vector<float> inf_row = model_like(777);
  inf_row[100] = kInf;
  inf_row[600] = kInf;
  {
    Scratch s(b);
    std::vector<float> rows_x(inf_row);
    rows_x.insert(rows_x.end(), x.begin(), x.begin() + 777);  // row 1: greedy
    std::vector<float> params = {1.f, 0.f, 1.f, 0.f, 0.9f, 0.f, 0.f, 1.f, 0.f, 0.3f};
    Tensor logits = s.floats(DType::kF32, rows_x, 2, 777);
    Tensor par = s.floats(DType::kF32, params, 2, Backend::kRowSamplingFloats);
    Tensor ids = s.alloc(DType::kI32, 2, 1);
    if (b.sample_rows(ids, logits, par)) {
      int32_t got[2];
      b.download(got, ids, sizeof got);
      const int wrong = (got[0] != 100) + (got[1] != reference_argmax(rows_x.data() + 777, 777));
      out.push_back(make_result("sample_rows", "infinite logit, greedy row", wrong, 0));
    }
  }
}

}  // namespace

std::vector<double> reference_draw(const float* x, int64_t vocab, const DrawParams& p) {
  const float inv_t = 1.f / p.temperature;
  std::vector<float> s(static_cast<size_t>(vocab));
  for (int64_t i = 0; i < vocab; ++i) s[i] = std::isnan(x[i]) ? -kInf : x[i] * inv_t;
  std::vector<int64_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return s[a] > s[b]; });
  if (p.top_k > 0 && p.top_k < vocab) order.resize(static_cast<size_t>(p.top_k));
  const double max = s[order[0]];
  std::vector<double> w(static_cast<size_t>(vocab), 0.0);
  double z = 0;
  for (int64_t i : order) z += w[i] = std::exp(static_cast<double>(s[i]) - max);
  std::vector<int64_t> kept;
  for (int64_t i : order) {
    if (w[i] > 0 && w[i] >= p.min_p) kept.push_back(i);
  }
  if (p.top_p < 1.f) {
    std::stable_sort(kept.begin(), kept.end(),
                     [&](int64_t a, int64_t b) { return w[a] > w[b] || (w[a] == w[b] && a < b); });
    const double target = static_cast<double>(p.top_p) * z;
    double cum = 0;
    size_t n = 0;
    while (n < kept.size() && cum < target) cum += w[kept[n++]];
    kept.resize(n);
  }
  std::vector<double> prob(static_cast<size_t>(vocab), 0.0);
  double total = 0;
  for (int64_t i : kept) total += w[i];
  for (int64_t i : kept) prob[i] = w[i] / total;
  return prob;
}

void run_sampling_cases(Backend& b, Rng& rng, std::vector<CaseResult>& out) {
  // Logits are F32 on every backend; the activation dtype where a backend accepts it.
  std::vector<DType> types = {DType::kF32};
  if (b.activation_dtype() != DType::kF32) types.push_back(b.activation_dtype());
  const std::pair<int64_t, int64_t> shapes[] = {{1, 1},     {9, 1},          {9, 7},     {9, 1024},
                                                {10, 1025}, {18, 49152 + 7}, {9, 128256}};
  for (DType t : types) {
    for (auto [rows, vocab] : shapes) argmax_case(b, rng, t, rows, vocab, out);
  }
  run_draw_cases(b, rng, out);
}

}  // namespace carpool::conformance
