#include "backend/cpu/quants.h"

#include <cmath>
#include <cstring>

#include "util/check.h"

#if defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>
#define CARPOOL_F16C 1
#if defined(__AVX512F__) && defined(__GNUC__) && !defined(__clang__)
// GCC 12 warns inside its own _mm512_undefined_* (GCC bug 105593, fixed in 13).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#endif

namespace carpool {
namespace {

// Products are written as separate statements with fp-contract off so that the results match
// the reference dequantization (which rounds every product) bit for bit.
#define CARPOOL_NO_FMA __attribute__((optimize("fp-contract=off")))

CARPOOL_NO_FMA void dequant_q4_0(const BlockQ4_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(b[i].d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = d * static_cast<float>((b[i].qs[j] & 0x0f) - 8);
      y[j + kQK / 2] = d * static_cast<float>((b[i].qs[j] >> 4) - 8);
    }
    y += kQK;
  }
}

CARPOOL_NO_FMA void dequant_q4_1(const BlockQ4_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(b[i].d);
    const float m = f16_to_f32(b[i].m);
    for (int j = 0; j < kQK / 2; ++j) {
      const float lo = d * static_cast<float>(b[i].qs[j] & 0x0f);
      const float hi = d * static_cast<float>(b[i].qs[j] >> 4);
      y[j] = lo + m;
      y[j + kQK / 2] = hi + m;
    }
    y += kQK;
  }
}

CARPOOL_NO_FMA void dequant_q5_0(const BlockQ5_0* b, float* y, int64_t nb) {
  int8_t q[kQK];
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(b[i].d);
    q5_values(b[i].qs, b[i].qh, q);
    for (int e = 0; e < kQK; ++e) y[e] = d * static_cast<float>(q[e] - 16);
    y += kQK;
  }
}

CARPOOL_NO_FMA void dequant_q5_1(const BlockQ5_1* b, float* y, int64_t nb) {
  int8_t q[kQK];
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(b[i].d);
    const float m = f16_to_f32(b[i].m);
    q5_values(b[i].qs, b[i].qh, q);
    for (int e = 0; e < kQK; ++e) {
      const float v = d * static_cast<float>(q[e]);
      y[e] = v + m;
    }
    y += kQK;
  }
}

CARPOOL_NO_FMA void dequant_q8_0(const BlockQ8_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(b[i].d);
    for (int j = 0; j < kQK; ++j) y[j] = d * static_cast<float>(b[i].qs[j]);
    y += kQK;
  }
}

// Q2_K: w = (d sc) q - (dmin m) per sub-block of 16 (each factor rounded, as the reference).
CARPOOL_NO_FMA void dequant_q2_k(const BlockQ2_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(b[i].d);
    const float dmin = f16_to_f32(b[i].dmin);
    for (int e = 0; e < kQKK; ++e) {
      const uint8_t sm = b[i].scales[e / 16];
      const float dl = d * static_cast<float>(sm & 0x0f);
      const float ml = dmin * static_cast<float>(sm >> 4);
      const float v = dl * static_cast<float>(k_low2(b[i].qs, e));
      y[e] = v - ml;
    }
    y += kQKK;
  }
}

// Q3_K: w = (d (sc - 32)) (q - 4), q = low two bits + 4 * third bit, per sub-block of 16.
CARPOOL_NO_FMA void dequant_q3_k(const BlockQ3_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(b[i].d);
    uint8_t sc[16];
    q3_k_scales(b[i].scales, sc);
    for (int e = 0; e < kQKK; ++e) {
      const float dl = d * static_cast<float>(sc[e / 16] - 32);
      const int q = k_low2(b[i].qs, e) + 4 * q3_k_high(b[i].hmask, e) - 4;
      y[e] = dl * static_cast<float>(q);
    }
    y += kQKK;
  }
}

CARPOOL_NO_FMA void dequant_iq4_nl(const BlockIQ4_NL* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(b[i].d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = d * static_cast<float>(kIQ4Values[b[i].qs[j] & 0x0f]);
      y[j + kQK / 2] = d * static_cast<float>(kIQ4Values[b[i].qs[j] >> 4]);
    }
    y += kQK;
  }
}

// IQ4_XS: w = (d (ls - 32)) v per sub-block of 32.
CARPOOL_NO_FMA void dequant_iq4_xs(const BlockIQ4_XS* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(b[i].d);
    for (int j = 0; j < 8; ++j) {
      const float dl = d * static_cast<float>(iq4_xs_scale(b[i], j) - 32);
      const uint8_t* qs = b[i].qs + 16 * j;
      for (int l = 0; l < 16; ++l) {
        y[l] = dl * static_cast<float>(kIQ4Values[qs[l] & 0x0f]);
        y[l + 16] = dl * static_cast<float>(kIQ4Values[qs[l] >> 4]);
      }
      y += 32;
    }
  }
}

CARPOOL_NO_FMA void dequant_q4_k(const BlockQ4_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(b[i].d);
    const float dmin = f16_to_f32(b[i].dmin);
    const uint8_t* q = b[i].qs;
    for (int chunk = 0; chunk < 4; ++chunk) {  // 64 elements: two sub-blocks of 32
      uint8_t sc, m;
      k_scale_min(2 * chunk, b[i].scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      k_scale_min(2 * chunk + 1, b[i].scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) {
        const float v = d1 * static_cast<float>(q[l] & 0x0f);
        y[l] = v - m1;
      }
      for (int l = 0; l < 32; ++l) {
        const float v = d2 * static_cast<float>(q[l] >> 4);
        y[l + 32] = v - m2;
      }
      q += 32;
      y += 64;
    }
  }
}

CARPOOL_NO_FMA void dequant_q5_k(const BlockQ5_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(b[i].d);
    const float dmin = f16_to_f32(b[i].dmin);
    const uint8_t* ql = b[i].qs;
    const uint8_t* qh = b[i].qh;
    for (int chunk = 0; chunk < 4; ++chunk) {
      uint8_t sc, m;
      k_scale_min(2 * chunk, b[i].scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      k_scale_min(2 * chunk + 1, b[i].scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      const int bit_lo = 2 * chunk, bit_hi = 2 * chunk + 1;  // high bit of each 5-bit quant
      for (int l = 0; l < 32; ++l) {
        const int q = (ql[l] & 0x0f) | (((qh[l] >> bit_lo) & 1) << 4);
        const float v = d1 * static_cast<float>(q);
        y[l] = v - m1;
      }
      for (int l = 0; l < 32; ++l) {
        const int q = (ql[l] >> 4) | (((qh[l] >> bit_hi) & 1) << 4);
        const float v = d2 * static_cast<float>(q);
        y[l + 32] = v - m2;
      }
      ql += 32;
      y += 64;
    }
  }
}

CARPOOL_NO_FMA void dequant_q6_k(const BlockQ6_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(b[i].d);
    const uint8_t* ql = b[i].ql;
    const uint8_t* qh = b[i].qh;
    const int8_t* sc = b[i].scales;
    for (int half = 0; half < 2; ++half) {  // 128 elements each
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = (d * sc[is + 0]) * static_cast<float>(q1);
        y[l + 32] = (d * sc[is + 2]) * static_cast<float>(q2);
        y[l + 64] = (d * sc[is + 4]) * static_cast<float>(q3);
        y[l + 96] = (d * sc[is + 6]) * static_cast<float>(q4);
      }
      y += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

}  // namespace

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  const DTypeInfo& info = dtype_info(t);
  CARPOOL_CHECK(n >= 0 && n % info.block_elems == 0);
  const int64_t nb = n / info.block_elems;
  switch (t) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::kF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      int64_t i = 0;
#ifdef CARPOOL_F16C
      for (; i + 8 <= n; i += 8) {  // exact conversion, same bits as the scalar code
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
      }
#endif
      for (; i < n; ++i) dst[i] = f16_to_f32(s[i]);
      return;
    }
    case DType::kBF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      int64_t i = 0;
#ifdef CARPOOL_F16C
      for (; i + 8 <= n; i += 8) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
        const __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(w));
      }
#endif
      for (; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      return;
    }
    case DType::kQ4_0:
      return dequant_q4_0(static_cast<const BlockQ4_0*>(src), dst, nb);
    case DType::kQ4_1:
      return dequant_q4_1(static_cast<const BlockQ4_1*>(src), dst, nb);
    case DType::kQ5_0:
      return dequant_q5_0(static_cast<const BlockQ5_0*>(src), dst, nb);
    case DType::kQ5_1:
      return dequant_q5_1(static_cast<const BlockQ5_1*>(src), dst, nb);
    case DType::kQ8_0:
      return dequant_q8_0(static_cast<const BlockQ8_0*>(src), dst, nb);
    case DType::kQ2_K:
      return dequant_q2_k(static_cast<const BlockQ2_K*>(src), dst, nb);
    case DType::kQ3_K:
      return dequant_q3_k(static_cast<const BlockQ3_K*>(src), dst, nb);
    case DType::kIQ4_NL:
      return dequant_iq4_nl(static_cast<const BlockIQ4_NL*>(src), dst, nb);
    case DType::kIQ4_XS:
      return dequant_iq4_xs(static_cast<const BlockIQ4_XS*>(src), dst, nb);
    case DType::kQ4_K:
      return dequant_q4_k(static_cast<const BlockQ4_K*>(src), dst, nb);
    case DType::kQ5_K:
      return dequant_q5_k(static_cast<const BlockQ5_K*>(src), dst, nb);
    case DType::kQ6_K:
      return dequant_q6_k(static_cast<const BlockQ6_K*>(src), dst, nb);
    case DType::kI32:
    case DType::kI8:
      break;
  }
  CARPOOL_CHECK(false && "dequantize_row: unsupported type");
}

void quantize_row_q8a(const float* x, BlockQ8A* dst, int64_t n) {
  CARPOOL_CHECK(n % kQK == 0);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
#if defined(CARPOOL_F16C) && defined(__AVX512F__) && defined(__AVX512BW__)
    {
      // The AVX2 block below in 16-lane vectors: the same exact max, division and
      // round-to-nearest-even, so the same blocks; the int8 narrowing saturates as its packs do.
      // BM_QuantizeQ8a (Xeon VM, 3 alternations): 3.49-3.51 -> 4.15-4.17 G elements/s.
      const __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
      const __m512 mx = _mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1));
      const float d = _mm512_reduce_max_ps(mx) / 127.f;
      const float id = d != 0.f ? 1.f / d : 0.f;
      const __m512 vid = _mm512_set1_ps(id);
      const __m512i q0 = _mm512_cvt_roundps_epi32(_mm512_mul_ps(v0, vid),
                                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m512i q1 = _mm512_cvt_roundps_epi32(_mm512_mul_ps(v1, vid),
                                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst[b].qs), _mm512_cvtsepi32_epi8(q0));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst[b].qs + 16), _mm512_cvtsepi32_epi8(q1));
      dst[b].d = d;
      dst[b].s = d * static_cast<float>(_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1)));
      continue;
    }
#endif
#ifdef CARPOOL_F16C
    {
      // Same arithmetic as the scalar code below (exact max, one division, round to nearest
      // even), so the two give identical blocks.
      __m256 v[4];
      __m256 mx = _mm256_setzero_ps();
      const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
      for (int j = 0; j < 4; ++j) {
        v[j] = _mm256_loadu_ps(xb + 8 * j);
        mx = _mm256_max_ps(mx, _mm256_and_ps(v[j], abs_mask));
      }
      __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
      m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
      m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
      const float d = _mm_cvtss_f32(m4) / 127.f;
      const float id = d != 0.f ? 1.f / d : 0.f;
      const __m256 vid = _mm256_set1_ps(id);
      __m256i sum = _mm256_setzero_si256();
      __m256i q[4];
      for (int j = 0; j < 4; ++j) {
        q[j] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[j], vid),
                                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        sum = _mm256_add_epi32(sum, q[j]);
      }
      // i32 -> i8 (values are within [-127, 127]); packs interleave 128-bit lanes, so restore
      // the element order with a final permute.
      const __m256i p01 = _mm256_packs_epi32(q[0], q[1]);
      const __m256i p23 = _mm256_packs_epi32(q[2], q[3]);
      const __m256i p = _mm256_packs_epi16(p01, p23);
      const __m256i ordered =
          _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst[b].qs), ordered);
      __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
      dst[b].d = d;
      dst[b].s = d * static_cast<float>(_mm_cvtsi128_si32(s4));
      continue;
    }
#endif
    float amax = 0.f;
    for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
    const float d = amax / 127.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    int sum = 0;
    for (int j = 0; j < kQK; ++j) {
      const int q = static_cast<int>(std::nearbyint(xb[j] * id));
      dst[b].qs[j] = static_cast<int8_t>(q);
      sum += q;
    }
    dst[b].d = d;
    dst[b].s = d * static_cast<float>(sum);
  }
}

}  // namespace carpool
