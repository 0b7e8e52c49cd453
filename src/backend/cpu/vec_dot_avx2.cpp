// AVX2 versions of the quantized dot products (weight row x 8-bit activation blocks). Each
// block's integer dot product is formed with maddubs/madd exactly as the scalar code forms it,
// so the two paths differ only in the order of the f32 accumulation.
#include "backend/cpu/vec_dot_internal.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include "util/check.h"

namespace carpool {
namespace {

inline float fp16(uint16_t h) {
  return _cvtsh_ss(h);
}

inline float hsum(__m256 v) {
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

// 16 bytes of nibbles -> 32 bytes: low nibbles (elements 0..15), then high nibbles (16..31).
inline __m256i unpack_nibbles(const uint8_t* qs) {
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i v = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
  return _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
}

// Eight i32 partial sums of u[j] * s[j] (u unsigned bytes <= 127 * 2 fits the i16 pairs).
inline __m256i dot_u8_s8(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

// Eight i32 partial sums of a[j] * b[j] for signed bytes (a != -128 or b != -128 jointly).
inline __m256i dot_s8_s8(__m256i a, __m256i b) {
  return dot_u8_s8(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}

inline __m256i load32(const int8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

float dot_q4_0(const BlockQ4_0* w, const BlockQ8A* x, int64_t nb) {
  __m256 acc = _mm256_setzero_ps();
  const __m256i eight = _mm256_set1_epi8(8);
  for (int64_t i = 0; i < nb; ++i) {
    const __m256i q = _mm256_sub_epi8(unpack_nibbles(w[i].qs), eight);
    const __m256 s = _mm256_cvtepi32_ps(dot_s8_s8(q, load32(x[i].qs)));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(w[i].d) * x[i].d), s, acc);
  }
  return hsum(acc);
}

float dot_q4_1(const BlockQ4_1* w, const BlockQ8A* x, int64_t nb) {
  __m256 acc = _mm256_setzero_ps();
  float mins = 0.f;
  for (int64_t i = 0; i < nb; ++i) {
    const __m256 s = _mm256_cvtepi32_ps(dot_u8_s8(unpack_nibbles(w[i].qs), load32(x[i].qs)));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(w[i].d) * x[i].d), s, acc);
    mins += fp16(w[i].m) * x[i].s;
  }
  return hsum(acc) + mins;
}

float dot_q8_0(const BlockQ8_0* w, const BlockQ8A* x, int64_t nb) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const __m256 s = _mm256_cvtepi32_ps(dot_s8_s8(load32(w[i].qs), load32(x[i].qs)));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(w[i].d) * x[i].d), s, acc);
  }
  return hsum(acc);
}

// Q4_K and Q5_K share the layout of scales and low nibbles; Q5_K adds one high bit per quant.
template <bool kFiveBit, typename Block>
float dot_k45(const Block* w, const BlockQ8A* x, int64_t nb) {
  __m256 acc = _mm256_setzero_ps();
  float mins = 0.f;
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i one = _mm256_set1_epi8(1);
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16(w[i].d);
    float sum_m = 0.f;
    __m256i qh;
    if constexpr (kFiveBit) qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qh));
    for (int chunk = 0; chunk < 4; ++chunk) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qs + 32 * chunk));
      for (int half = 0; half < 2; ++half) {
        const int j = 2 * chunk + half;
        __m256i qj =
            half == 0 ? _mm256_and_si256(q, low4) : _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
        if constexpr (kFiveBit) {
          const __m256i bit = _mm256_and_si256(_mm256_srli_epi16(qh, j), one);
          qj = _mm256_or_si256(qj, _mm256_slli_epi16(bit, 4));
        }
        uint8_t sc, m;
        k_scale_min(j, w[i].scales, &sc, &m);
        const BlockQ8A& xb = x[i * 8 + j];
        const __m256 s = _mm256_cvtepi32_ps(dot_u8_s8(qj, load32(xb.qs)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d * xb.d * static_cast<float>(sc)), s, acc);
        sum_m += xb.s * static_cast<float>(m);
      }
    }
    mins += fp16(w[i].dmin) * sum_m;
  }
  return hsum(acc) - mins;
}

float dot_q6_k(const BlockQ6_K* w, const BlockQ8A* x, int64_t nb) {
  __m256 acc = _mm256_setzero_ps();
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i two = _mm256_set1_epi8(3);
  const __m256i off = _mm256_set1_epi8(32);
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16(w[i].d);
    const uint8_t* ql = w[i].ql;
    const uint8_t* qh = w[i].qh;
    for (int half = 0; half < 2; ++half) {
      const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
      const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh));
      __m256i q[4];
      q[0] = _mm256_or_si256(_mm256_and_si256(l0, low4),
                             _mm256_slli_epi16(_mm256_and_si256(h, two), 4));
      q[1] = _mm256_or_si256(_mm256_and_si256(l1, low4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), two), 4));
      q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), two), 4));
      q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), two), 4));
      for (int g = 0; g < 4; ++g) {
        const int j = half * 4 + g;  // activation block within the super-block
        const int8_t* sc = w[i].scales + 2 * j;
        const __m256i qs = _mm256_sub_epi8(q[g], off);
        const __m256i xs = load32(x[i * 8 + j].qs);
        const __m256i prod =
            _mm256_maddubs_epi16(_mm256_sign_epi8(qs, qs), _mm256_sign_epi8(xs, qs));
        // Lanes 0..7 hold elements 0..15 (scale sc[0]), lanes 8..15 elements 16..31 (sc[1]).
        const __m256i scales = _mm256_set_m128i(_mm_set1_epi16(sc[1]), _mm_set1_epi16(sc[0]));
        const __m256 s = _mm256_cvtepi32_ps(_mm256_madd_epi16(prod, scales));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d * x[i * 8 + j].d), s, acc);
      }
      ql += 64;
      qh += 32;
    }
  }
  return hsum(acc);
}

}  // namespace

bool vec_dot_q8a_simd(DType t, const void* w_row, const BlockQ8A* x, int64_t nb, float* out) {
  switch (t) {
    case DType::kQ4_0:
      *out = dot_q4_0(static_cast<const BlockQ4_0*>(w_row), x, nb);
      return true;
    case DType::kQ4_1:
      *out = dot_q4_1(static_cast<const BlockQ4_1*>(w_row), x, nb);
      return true;
    case DType::kQ8_0:
      *out = dot_q8_0(static_cast<const BlockQ8_0*>(w_row), x, nb);
      return true;
    case DType::kQ4_K:
      *out = dot_k45<false>(static_cast<const BlockQ4_K*>(w_row), x, nb);
      return true;
    case DType::kQ5_K:
      *out = dot_k45<true>(static_cast<const BlockQ5_K*>(w_row), x, nb);
      return true;
    case DType::kQ6_K:
      *out = dot_q6_k(static_cast<const BlockQ6_K*>(w_row), x, nb);
      return true;
    default:
      return false;
  }
}

}  // namespace carpool

#else

namespace carpool {
bool vec_dot_q8a_simd(DType, const void*, const BlockQ8A*, int64_t, float*) {
  return false;
}
}  // namespace carpool

#endif
