// Dot products of weight rows with activations. Scalar code is the portable path; AVX2 versions
// replace the inner loops where the compiler targets AVX2 (the build uses -march=native).
#include <cstring>

#include "backend/cpu/quants.h"
#include "backend/cpu/vec_dot_internal.h"
#include "util/check.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define CARPOOL_AVX2 1
#endif

namespace carpool {
namespace {

// sum_j a[j] * b[j] over 32 int8 pairs.
inline int dot32_i8(const int8_t* a, const int8_t* b) {
  int sum = 0;
  for (int j = 0; j < kQK; ++j) sum += a[j] * b[j];
  return sum;
}

inline int dot16_i8(const int8_t* a, const int8_t* b) {
  int sum = 0;
  for (int j = 0; j < 16; ++j) sum += a[j] * b[j];
  return sum;
}

float dot_q4_0(const BlockQ4_0* w, const BlockQ8A* x, int64_t nb) {
  float acc = 0.f;
  int8_t q[kQK];
  for (int64_t i = 0; i < nb; ++i) {
    for (int j = 0; j < kQK / 2; ++j) {
      q[j] = static_cast<int8_t>((w[i].qs[j] & 0x0f) - 8);
      q[j + kQK / 2] = static_cast<int8_t>((w[i].qs[j] >> 4) - 8);
    }
    acc += f16_to_f32(w[i].d) * x[i].d * static_cast<float>(dot32_i8(q, x[i].qs));
  }
  return acc;
}

float dot_q4_1(const BlockQ4_1* w, const BlockQ8A* x, int64_t nb) {
  float acc = 0.f;
  int8_t q[kQK];
  for (int64_t i = 0; i < nb; ++i) {
    for (int j = 0; j < kQK / 2; ++j) {
      q[j] = static_cast<int8_t>(w[i].qs[j] & 0x0f);
      q[j + kQK / 2] = static_cast<int8_t>(w[i].qs[j] >> 4);
    }
    acc += f16_to_f32(w[i].d) * x[i].d * static_cast<float>(dot32_i8(q, x[i].qs)) +
           f16_to_f32(w[i].m) * x[i].s;
  }
  return acc;
}

float dot_q5_0(const BlockQ5_0* w, const BlockQ8A* x, int64_t nb) {
  float acc = 0.f;
  int8_t q[kQK];
  for (int64_t i = 0; i < nb; ++i) {
    q5_values(w[i].qs, w[i].qh, q);
    for (int8_t& v : q) v = static_cast<int8_t>(v - 16);
    acc += f16_to_f32(w[i].d) * x[i].d * static_cast<float>(dot32_i8(q, x[i].qs));
  }
  return acc;
}

float dot_q5_1(const BlockQ5_1* w, const BlockQ8A* x, int64_t nb) {
  float acc = 0.f;
  int8_t q[kQK];
  for (int64_t i = 0; i < nb; ++i) {
    q5_values(w[i].qs, w[i].qh, q);
    acc += f16_to_f32(w[i].d) * x[i].d * static_cast<float>(dot32_i8(q, x[i].qs)) +
           f16_to_f32(w[i].m) * x[i].s;
  }
  return acc;
}

float dot_q8_0(const BlockQ8_0* w, const BlockQ8A* x, int64_t nb) {
  float acc = 0.f;
  for (int64_t i = 0; i < nb; ++i) {
    acc += f16_to_f32(w[i].d) * x[i].d * static_cast<float>(dot32_i8(w[i].qs, x[i].qs));
  }
  return acc;
}

inline int sum16_i8(const int8_t* a) {
  int sum = 0;
  for (int j = 0; j < 16; ++j) sum += a[j];
  return sum;
}

// Q2_K: sixteen sub-blocks of 16 with 4-bit scales and mins; activation block j covers sub-blocks
// 2j and 2j+1: sum = d * sum_j dx_j * sum_h sc_h isum_h - dmin * sum_j dx_j * sum_h m_h xsum_h.
float dot_q2_k(const BlockQ2_K* w, const BlockQ8A* x, int64_t nb) {
  float acc = 0.f;
  int8_t q[kQKK];
  for (int64_t i = 0; i < nb; ++i) {
    for (int e = 0; e < kQKK; ++e) q[e] = static_cast<int8_t>(k_low2(w[i].qs, e));
    float sum_d = 0.f, sum_m = 0.f;
    for (int j = 0; j < 8; ++j) {
      const BlockQ8A& xb = x[i * 8 + j];
      int isum = 0, msum = 0;
      for (int h = 0; h < 2; ++h) {
        const uint8_t sm = w[i].scales[2 * j + h];
        isum += (sm & 0x0f) * dot16_i8(q + 32 * j + 16 * h, xb.qs + 16 * h);
        msum += (sm >> 4) * sum16_i8(xb.qs + 16 * h);
      }
      sum_d += xb.d * static_cast<float>(isum);
      sum_m += xb.d * static_cast<float>(msum);
    }
    acc += f16_to_f32(w[i].d) * sum_d - f16_to_f32(w[i].dmin) * sum_m;
  }
  return acc;
}

// Q3_K: sixteen sub-blocks of 16 with 6-bit scales (minus 32) and values q - 4 in -4..3.
float dot_q3_k(const BlockQ3_K* w, const BlockQ8A* x, int64_t nb) {
  float acc = 0.f;
  int8_t q[kQKK];
  uint8_t sc[16];
  for (int64_t i = 0; i < nb; ++i) {
    for (int e = 0; e < kQKK; ++e) {
      q[e] = static_cast<int8_t>(k_low2(w[i].qs, e) + 4 * q3_k_high(w[i].hmask, e) - 4);
    }
    q3_k_scales(w[i].scales, sc);
    float sum = 0.f;
    for (int j = 0; j < 8; ++j) {
      const BlockQ8A& xb = x[i * 8 + j];
      const int isum = (sc[2 * j] - 32) * dot16_i8(q + 32 * j, xb.qs) +
                       (sc[2 * j + 1] - 32) * dot16_i8(q + 32 * j + 16, xb.qs + 16);
      sum += xb.d * static_cast<float>(isum);
    }
    acc += f16_to_f32(w[i].d) * sum;
  }
  return acc;
}

// IQ4_NL and IQ4_XS: table values; IQ4_XS's sub-blocks of 32 match the activation blocks.
inline void iq4_values(const uint8_t* qs, int8_t* q) {
  for (int j = 0; j < kQK / 2; ++j) {
    q[j] = kIQ4Values[qs[j] & 0x0f];
    q[j + kQK / 2] = kIQ4Values[qs[j] >> 4];
  }
}

float dot_iq4_nl(const BlockIQ4_NL* w, const BlockQ8A* x, int64_t nb) {
  float acc = 0.f;
  int8_t q[kQK];
  for (int64_t i = 0; i < nb; ++i) {
    iq4_values(w[i].qs, q);
    acc += f16_to_f32(w[i].d) * x[i].d * static_cast<float>(dot32_i8(q, x[i].qs));
  }
  return acc;
}

float dot_iq4_xs(const BlockIQ4_XS* w, const BlockQ8A* x, int64_t nb) {
  float acc = 0.f;
  int8_t q[kQK];
  for (int64_t i = 0; i < nb; ++i) {
    float sum = 0.f;
    for (int j = 0; j < 8; ++j) {
      iq4_values(w[i].qs + 16 * j, q);
      const BlockQ8A& xb = x[i * 8 + j];
      sum += xb.d * static_cast<float>((iq4_xs_scale(w[i], j) - 32) * dot32_i8(q, xb.qs));
    }
    acc += f16_to_f32(w[i].d) * sum;
  }
  return acc;
}

// Q4_K / Q5_K: eight sub-blocks of 32, each with a 6-bit scale and min; one activation block
// per sub-block: sum = d * sum_j sc_j * dx_j * isum_j - dmin * sum_j m_j * s_j.
float dot_q4_k(const BlockQ4_K* w, const BlockQ8A* x, int64_t nb) {
  float acc = 0.f;
  int8_t q[kQK];
  for (int64_t i = 0; i < nb; ++i) {
    float sum_d = 0.f, sum_m = 0.f;
    for (int j = 0; j < 8; ++j) {
      const uint8_t* qs = w[i].qs + (j / 2) * 32;
      const int shift = (j % 2) * 4;
      for (int l = 0; l < 32; ++l) q[l] = static_cast<int8_t>((qs[l] >> shift) & 0x0f);
      uint8_t sc, m;
      k_scale_min(j, w[i].scales, &sc, &m);
      const BlockQ8A& xb = x[i * 8 + j];
      sum_d += xb.d * static_cast<float>(sc * dot32_i8(q, xb.qs));
      sum_m += xb.s * static_cast<float>(m);
    }
    acc += f16_to_f32(w[i].d) * sum_d - f16_to_f32(w[i].dmin) * sum_m;
  }
  return acc;
}

float dot_q5_k(const BlockQ5_K* w, const BlockQ8A* x, int64_t nb) {
  float acc = 0.f;
  int8_t q[kQK];
  for (int64_t i = 0; i < nb; ++i) {
    float sum_d = 0.f, sum_m = 0.f;
    for (int j = 0; j < 8; ++j) {
      const uint8_t* qs = w[i].qs + (j / 2) * 32;
      const int shift = (j % 2) * 4;
      for (int l = 0; l < 32; ++l) {
        q[l] = static_cast<int8_t>(((qs[l] >> shift) & 0x0f) | (((w[i].qh[l] >> j) & 1) << 4));
      }
      uint8_t sc, m;
      k_scale_min(j, w[i].scales, &sc, &m);
      const BlockQ8A& xb = x[i * 8 + j];
      sum_d += xb.d * static_cast<float>(sc * dot32_i8(q, xb.qs));
      sum_m += xb.s * static_cast<float>(m);
    }
    acc += f16_to_f32(w[i].d) * sum_d - f16_to_f32(w[i].dmin) * sum_m;
  }
  return acc;
}

// Q6_K: sixteen sub-blocks of 16 with int8 scales; activation block j covers sub-blocks 2j, 2j+1.
float dot_q6_k(const BlockQ6_K* w, const BlockQ8A* x, int64_t nb) {
  float acc = 0.f;
  int8_t q[kQKK];
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* ql = w[i].ql;
    const uint8_t* qh = w[i].qh;
    for (int half = 0; half < 2; ++half) {
      int8_t* y = q + half * 128;
      for (int l = 0; l < 32; ++l) {
        y[l] = static_cast<int8_t>(((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32);
        y[l + 32] = static_cast<int8_t>(((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32);
        y[l + 64] = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        y[l + 96] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
      }
      ql += 64;
      qh += 32;
    }
    float sum = 0.f;
    for (int j = 0; j < 8; ++j) {
      const BlockQ8A& xb = x[i * 8 + j];
      const int isum = w[i].scales[2 * j] * dot16_i8(q + 32 * j, xb.qs) +
                       w[i].scales[2 * j + 1] * dot16_i8(q + 32 * j + 16, xb.qs + 16);
      sum += xb.d * static_cast<float>(isum);
    }
    acc += f16_to_f32(w[i].d) * sum;
  }
  return acc;
}

}  // namespace

float vec_dot_q8a(DType t, const void* w_row, const BlockQ8A* x, int64_t n) {
  const DTypeInfo& info = dtype_info(t);
  CARPOOL_CHECK(n % info.block_elems == 0);
  float out;
  if (vec_dot_q8a_simd(t, w_row, x, n / info.block_elems, &out)) return out;
  return vec_dot_q8a_scalar(t, w_row, x, n);
}

float vec_dot_q8a_scalar(DType t, const void* w_row, const BlockQ8A* x, int64_t n) {
  const DTypeInfo& info = dtype_info(t);
  CARPOOL_CHECK(n % info.block_elems == 0);
  const int64_t nb = n / info.block_elems;
  switch (t) {
    case DType::kQ4_0:
      return dot_q4_0(static_cast<const BlockQ4_0*>(w_row), x, nb);
    case DType::kQ4_1:
      return dot_q4_1(static_cast<const BlockQ4_1*>(w_row), x, nb);
    case DType::kQ5_0:
      return dot_q5_0(static_cast<const BlockQ5_0*>(w_row), x, nb);
    case DType::kQ5_1:
      return dot_q5_1(static_cast<const BlockQ5_1*>(w_row), x, nb);
    case DType::kQ8_0:
      return dot_q8_0(static_cast<const BlockQ8_0*>(w_row), x, nb);
    case DType::kQ2_K:
      return dot_q2_k(static_cast<const BlockQ2_K*>(w_row), x, nb);
    case DType::kQ3_K:
      return dot_q3_k(static_cast<const BlockQ3_K*>(w_row), x, nb);
    case DType::kIQ4_NL:
      return dot_iq4_nl(static_cast<const BlockIQ4_NL*>(w_row), x, nb);
    case DType::kIQ4_XS:
      return dot_iq4_xs(static_cast<const BlockIQ4_XS*>(w_row), x, nb);
    case DType::kQ4_K:
      return dot_q4_k(static_cast<const BlockQ4_K*>(w_row), x, nb);
    case DType::kQ5_K:
      return dot_q5_k(static_cast<const BlockQ5_K*>(w_row), x, nb);
    case DType::kQ6_K:
      return dot_q6_k(static_cast<const BlockQ6_K*>(w_row), x, nb);
    default:
      break;
  }
  CARPOOL_CHECK(false && "vec_dot_q8a: not a quantized type");
  return 0.f;
}

float vec_dot_f32(const float* a, const float* b, int64_t n) {
  int64_t i = 0;
  float sum = 0.f;
#ifdef CARPOOL_AVX2
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
    acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
  }
  for (; i + 8 <= n; i += 8) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  }
  const __m256 acc = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  sum = _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
#else
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  }
  for (int j = 0; j < 8; ++j) sum += acc[j];
#endif
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

}  // namespace carpool
