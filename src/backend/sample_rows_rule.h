// The algorithm of Backend::sample_rows for one row, written once against a "block" of threads
// that split the row's ids into contiguous chunks: the CUDA kernel instantiates it with a
// thread block (CUB reductions and scans), and the CPU unit tests with a sequential emulation of
// the same chunks, so that the rule itself (thresholds, ties, the draw) is tested on any machine.
// No CUDA header here: the file compiles as plain C++ and as CUDA device code.
//
// The rule (the host sampler's, engine/sampler.h, without penalties): logits scaled by
// 1 / temperature (NaN as -inf); if their largest is not finite, the first of the largest.
// Otherwise top-k keeps the k largest scaled logits (ties to the lower id), the weights are
// exp(s - max), z is their sum over what top-k kept, min-p keeps weights of at least min_p
// (the largest weighs 1), and top-p keeps the smallest heaviest-first prefix (ties to the lower
// id) whose weight reaches top_p * z (everything min-p kept if it holds less). The draw takes
// the kept tokens in id order: the first whose cumulative weight passes u times their total.
// Temperature 0 (or below): the first of the largest logits, NaN skipped unless at index 0 (as
// std::max_element and Backend::argmax_rows).
//
// Thresholds are found by a kWays-way search over bit patterns: each pass over the row tests
// kWays - 1 thresholds at once (kWays 2 is bisection: 32 passes over keys of the scaled logits
// for top-k, about 30 over the weights for top-p; kWays 16 needs 8 of each). Ties at a threshold
// are resolved in id order by one scan. Every pass is a map over the chunks and a block-wide
// reduction. Every kWays finds the largest bit pattern whose count or mass reaches the target;
// counts are exact, masses are double sums whose grouping differs between passes, so where a
// mass lies within rounding of the target two kWays can settle one bit pattern apart.
//
// A block B provides, each called by every thread of the block together (and returning the same
// value to all):
//   float load(int64_t i)              the row's logit i
//   float exp(float x)                 exp(x) for x <= 0 (0 at -inf); the same value each call
//   float max_f(fn), double sum_d(fn), int64_t sum_l(fn), min_l(fn), max_l(fn):
//                                      fn(i0, i1) of each chunk [i0, i1), combined
//   int64_t nth_match(n, pred)         the n-th id (from 1) in id order with pred(i); -1 if fewer
//   int64_t draw(r, w)                 the first id in id order at which the running sum of w(i)
//                                      (0: not kept) passes r; -1 if none does
//   void sums<N>(fn, T out[N])         fn(i0, i1, T acc[N]) adds chunk [i0, i1)'s terms to acc
//                                      (zeroed per chunk); out[j] = the sum over chunks, in an
//                                      order that is the same on every call (T: int64_t, double)
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define CARPOOL_HD __host__ __device__
#else
#define CARPOOL_HD
#endif
// Loops over a kernel's per-thread arrays, unrolled so that they stay in registers (the host
// compilers unroll what they choose).
#if defined(__CUDA_ARCH__)
#define CARPOOL_UNROLL _Pragma("unroll")
#else
#define CARPOOL_UNROLL
#endif

namespace carpool::sample_rule {

CARPOOL_HD inline uint32_t float_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}
CARPOOL_HD inline float bits_float(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
CARPOOL_HD inline bool is_nan(float f) {
  return f != f;
}
CARPOOL_HD inline bool is_finite(float f) {
  return f == f && f - f == 0.f;
}
CARPOOL_HD inline float neg_inf() {
  return bits_float(0xff800000u);
}
// Larger float, larger key; -0 as +0 (no NaN comes here).
CARPOOL_HD inline uint32_t order_key(float f) {
  const uint32_t b = float_bits(f == 0.f ? 0.f : f);
  return (b & 0x80000000u) != 0 ? ~b : (b | 0x80000000u);
}

// One row: its parameters and the filters as they are decided.
struct Row {
  float inv_t = 1.f;
  float max = 0.f;  // of the scaled logits
  // top-k: key > key_k, or key == key_k and id <= cut_k (all: key_k 0, cut_k INT64_MAX).
  uint32_t key_k = 0;
  int64_t cut_k = INT64_MAX;
  float min_p = 0.f;
  // top-p: weight > w_p, or weight == w_p and id <= cut_p (all: w_p -1).
  float w_p = -1.f;
  int64_t cut_p = INT64_MAX;

  CARPOOL_HD float scale(float l) const { return is_nan(l) ? neg_inf() : l * inv_t; }
  CARPOOL_HD bool in_top_k(int64_t i, float s) const {
    const uint32_t k = order_key(s);
    return k > key_k || (k == key_k && i <= cut_k);
  }
  // After top-k and min-p (w: the weight of scaled logit s).
  CARPOOL_HD bool in_min_p(int64_t i, float s, float w) const {
    return w > 0.f && w >= min_p && in_top_k(i, s);
  }
  CARPOOL_HD bool kept(int64_t i, float s, float w) const {
    return in_min_p(i, s, w) && (w > w_p || (w == w_p && i <= cut_p));
  }
};

template <class B>
CARPOOL_HD int64_t greedy(B& b) {
  if (is_nan(b.load(0))) return 0;  // std::max_element keeps it
  const float m = b.max_f([&](int64_t i0, int64_t i1) {
    float v = neg_inf();
    for (int64_t i = i0; i < i1; ++i) {
      const float l = b.load(i);
      if (l > v) v = l;  // NaN never is
    }
    return v;
  });
  return b.min_l([&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      if (b.load(i) == m) return i;
    }
    return int64_t{INT64_MAX};
  });
}

// The largest x in [lo, hi) with reaches(value(x)), where value is non-increasing in x and
// reaches(value(lo)) holds (reaches(value(hi)) does not). value(x) for kWays thresholds at once:
// pass(lo, hi, step, nb, out) fills out[j] = value(lo + j * step) for 1 <= j < nb.
template <int kWays, class T, class Pass, class Reaches>
CARPOOL_HD uint64_t search_largest(uint64_t lo, uint64_t hi, Pass pass, Reaches reaches) {
  static_assert(kWays >= 2, "at least bisection");
  while (hi - lo > 1) {
    const uint64_t width = hi - lo;
    const int nb = width < uint64_t{kWays} ? static_cast<int>(width) : kWays;
    const uint64_t step = width / static_cast<uint64_t>(nb);
    T v[kWays];
    pass(lo, hi, step, nb, v);
    int j = nb - 1;
    while (j > 0 && !reaches(v[j])) --j;
    const uint64_t next_lo = lo + static_cast<uint64_t>(j) * step;
    hi = j + 1 < nb ? next_lo + step : hi;
    lo = next_lo;
  }
  return lo;
}

// The token of one row (see the top of the file). u in [0, 1). kWays: thresholds per pass of
// the searches (2: bisection).
template <int kWays = 2, class B>
CARPOOL_HD int64_t sample(B& b, int64_t vocab, float temperature, int64_t top_k, float top_p,
                          float min_p, double u) {
  if (!(temperature > 0.f)) return greedy(b);
  Row row;
  row.inv_t = 1.f / temperature;
  row.min_p = min_p;
  const float m = b.max_f([&](int64_t i0, int64_t i1) {
    float v = neg_inf();
    for (int64_t i = i0; i < i1; ++i) {
      const float s = row.scale(b.load(i));
      if (s > v) v = s;
    }
    return v;
  });
  if (!is_finite(m)) {  // all -inf, or some +inf: the first of the largest, as the host
    return b.min_l([&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        if (row.scale(b.load(i)) == m) return i;
      }
      return int64_t{INT64_MAX};
    });
  }
  row.max = m;
  auto scaled = [&](int64_t i) { return row.scale(b.load(i)); };
  auto weight = [&](float s) { return b.exp(s - row.max); };

  // top-k: the largest key with at least k keys at or above it, then its ties in id order.
  if (top_k > 0 && top_k < vocab) {
    // count(key >= 0) >= k > count(key >= 2^32) = 0
    auto counts = [&](uint64_t lo, uint64_t /*hi*/, uint64_t step, int nb, int64_t* out) {
      b.template sums<kWays>(
          [&](int64_t i0, int64_t i1, int64_t* acc) {
            for (int64_t i = i0; i < i1; ++i) {
              const uint64_t k = order_key(scaled(i));
              // (a loop of constant length: acc stays in registers on the device)
              CARPOOL_UNROLL
              for (int j = 1; j < kWays; ++j)
                acc[j] += j < nb && k >= lo + static_cast<uint64_t>(j) * step;
            }
          },
          out);
    };
    const uint32_t key = static_cast<uint32_t>(search_largest<kWays, int64_t>(
        0, uint64_t{1} << 32, counts, [&](int64_t c) { return c >= top_k; }));
    const int64_t above = b.sum_l([&](int64_t i0, int64_t i1) {
      int64_t n = 0;
      for (int64_t i = i0; i < i1; ++i) n += order_key(scaled(i)) > key;
      return n;
    });
    row.cut_k = b.nth_match(top_k - above, [&](int64_t i) { return order_key(scaled(i)) == key; });
    row.key_k = key;
  }

  // The softmax over what top-k left (those min-p then drops included).
  const double z = b.sum_d([&](int64_t i0, int64_t i1) {
    double a = 0;
    for (int64_t i = i0; i < i1; ++i) {
      const float s = scaled(i);
      if (row.in_top_k(i, s)) a += weight(s);
    }
    return a;
  });

  // top-p over what min-p left: the largest weight t whose tokens at least t heavy hold
  // top_p * z, then the ties at t in id order until the prefix does.
  if (top_p < 1.f) {
    const double target = static_cast<double>(top_p) * z;
    auto mass_at_least = [&](float t) {
      return b.sum_d([&](int64_t i0, int64_t i1) {
        double a = 0;
        for (int64_t i = i0; i < i1; ++i) {
          const float s = scaled(i), w = weight(s);
          if (w >= t && row.in_min_p(i, s, w)) a += w;
        }
        return a;
      });
    };
    if (mass_at_least(0.f) >= target) {
      // mass(0) >= target > mass(bits of the next float after 1) = 0; weights are >= 0, so
      // their bit patterns order as they do.
      // Weights at or above hi count for every threshold of the pass: they go to acc[0], added
      // to the others at the end; those below lo + step count for none.
      auto masses = [&](uint64_t lo, uint64_t hi, uint64_t step, int nb, double* out) {
        b.template sums<kWays>(
            [&](int64_t i0, int64_t i1, double* acc) {
              for (int64_t i = i0; i < i1; ++i) {
                const float s = scaled(i), w = weight(s);
                const uint64_t x = float_bits(w);
                if (x < lo + step || !row.in_min_p(i, s, w)) continue;
                if (x >= hi) {
                  acc[0] += w;
                  continue;
                }
                CARPOOL_UNROLL
                for (int j = 1; j < kWays; ++j)
                  acc[j] += j < nb && x >= lo + static_cast<uint64_t>(j) * step
                                ? static_cast<double>(w)
                                : 0.0;
              }
            },
            out);
        for (int j = 1; j < nb; ++j) out[j] += out[0];
      };
      const float t = bits_float(static_cast<uint32_t>(search_largest<kWays, double>(
          0, uint64_t{float_bits(1.f)} + 1, masses, [&](double m) { return m >= target; })));
      const double heavier = b.sum_d([&](int64_t i0, int64_t i1) {
        double a = 0;
        for (int64_t i = i0; i < i1; ++i) {
          const float s = scaled(i), w = weight(s);
          if (w > t && row.in_min_p(i, s, w)) a += w;
        }
        return a;
      });
      auto tied = [&](int64_t i) {
        const float s = scaled(i), w = weight(s);
        return w == t && row.in_min_p(i, s, w);
      };
      const int64_t n_tied = b.sum_l([&](int64_t i0, int64_t i1) {
        int64_t n = 0;
        for (int64_t i = i0; i < i1; ++i) n += tied(i);
        return n;
      });
      if (t > 0.f && n_tied > 0) {
        // The host adds tied weights one at a time until the prefix reaches the target.
        const double need = (target - heavier) / t;
        int64_t n =
            need < 1 ? 1
                     : (need > static_cast<double>(n_tied) ? n_tied : static_cast<int64_t>(need));
        while (n > 1 && heavier + static_cast<double>(n - 1) * t >= target) --n;
        while (n < n_tied && heavier + static_cast<double>(n) * t < target) ++n;
        row.cut_p = b.nth_match(n, tied);
        row.w_p = t;
      }
    }
  }

  // The draw: kept tokens in id order, the first whose cumulative weight passes u * total.
  auto kept_weight = [&](int64_t i) {
    const float s = scaled(i), w = weight(s);
    return row.kept(i, s, w) ? static_cast<double>(w) : 0.0;
  };
  const double total = b.sum_d([&](int64_t i0, int64_t i1) {
    double a = 0;
    for (int64_t i = i0; i < i1; ++i) a += kept_weight(i);
    return a;
  });
  const int64_t pick = b.draw(u * total, kept_weight);
  if (pick >= 0) return pick;
  // u * total at or past the total (rounding): the last kept token.
  return b.max_l([&](int64_t i0, int64_t i1) {
    for (int64_t i = i1 - 1; i >= i0; --i) {
      if (kept_weight(i) > 0) return i;
    }
    return int64_t{-1};
  });
}

}  // namespace carpool::sample_rule
