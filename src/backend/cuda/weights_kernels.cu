// Weight kernels: GGUF block dequantization to BF16, random BF16 weights, dtype conversion.
#include "backend/cuda/device_utils.cuh"

namespace carpool::cuda {
namespace {

__device__ __forceinline__ float h2f(uint16_t h) {
  return __half2float(__ushort_as_half(h));
}

// Unaligned little-endian u16 from bytes (GGUF blocks are packed, so fields may be unaligned).
__device__ __forceinline__ uint16_t u16_at(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}

__device__ __forceinline__ void put(__nv_bfloat16* out, int64_t i, float v) {
  out[i] = __float2bfloat16_rn(v);
}

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K super-block.
__device__ __forceinline__ void k_scale_min(int j, const uint8_t* s, int* sc, int* mn) {
  if (j < 4) {
    *sc = s[j] & 63;
    *mn = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// One thread per group of 32 output elements (a whole *_0/*_1 block, or one K sub-block).
__global__ void dequant_kernel(DType dtype, const uint8_t* raw, int64_t n_groups,
                               __nv_bfloat16* out) {
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < n_groups;
       g += int64_t(gridDim.x) * blockDim.x) {
    __nv_bfloat16* y = out + g * 32;
    switch (dtype) {
      case DType::kQ8_0: {
        const uint8_t* b = raw + g * sizeof(BlockQ8_0);
        float d = h2f(u16_at(b));
        const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
        for (int j = 0; j < 32; ++j) put(y, j, d * qs[j]);
        break;
      }
      case DType::kQ4_0: {
        const uint8_t* b = raw + g * sizeof(BlockQ4_0);
        float d = h2f(u16_at(b));
        const uint8_t* qs = b + 2;
        for (int j = 0; j < 16; ++j) {
          put(y, j, d * (int(qs[j] & 0xF) - 8));
          put(y, j + 16, d * (int(qs[j] >> 4) - 8));
        }
        break;
      }
      case DType::kQ4_1: {
        const uint8_t* b = raw + g * sizeof(BlockQ4_1);
        float d = h2f(u16_at(b)), m = h2f(u16_at(b + 2));
        const uint8_t* qs = b + 4;
        for (int j = 0; j < 16; ++j) {
          put(y, j, d * (qs[j] & 0xF) + m);
          put(y, j + 16, d * (qs[j] >> 4) + m);
        }
        break;
      }
      case DType::kQ5_0:
      case DType::kQ5_1: {
        // Element j < 16: low nibble of qs[j], fifth bit j of qh; element j + 16: high nibble,
        // bit j + 16. Q5_0: d (q - 16); Q5_1: d q + m.
        const bool one = dtype == DType::kQ5_1;
        const uint8_t* b = raw + g * (one ? sizeof(BlockQ5_1) : sizeof(BlockQ5_0));
        float d = h2f(u16_at(b)), m = one ? h2f(u16_at(b + 2)) : 0.f;
        const uint8_t* qhb = b + (one ? 4 : 2);
        const uint32_t qh = uint32_t(qhb[0]) | (uint32_t(qhb[1]) << 8) | (uint32_t(qhb[2]) << 16) |
                            (uint32_t(qhb[3]) << 24);
        const uint8_t* qs = qhb + 4;
        const int off = one ? 0 : 16;
        for (int j = 0; j < 16; ++j) {
          const int lo = int(qs[j] & 0xF) | int(((qh >> j) & 1u) << 4);
          const int hi = int(qs[j] >> 4) | int(((qh >> (j + 16)) & 1u) << 4);
          put(y, j, d * (lo - off) + m);
          put(y, j + 16, d * (hi - off) + m);
        }
        break;
      }
      case DType::kQ4_K: {
        // Super-block of 256 = 8 sub-blocks of 32; sub-blocks 2p and 2p+1 share 32 bytes of qs
        // (low nibbles, then high nibbles).
        const int64_t sb = g / 8;
        const int j = int(g % 8);
        const uint8_t* b = raw + sb * sizeof(BlockQ4_K);
        float d = h2f(u16_at(b)), dmin = h2f(u16_at(b + 2));
        int sc, mn;
        k_scale_min(j, b + 4, &sc, &mn);
        const uint8_t* qs = b + 4 + kKScaleBytes + (j / 2) * 32;
        const int shift = (j % 2) * 4;
        for (int l = 0; l < 32; ++l) put(y, l, d * sc * ((qs[l] >> shift) & 0xF) - dmin * mn);
        break;
      }
      case DType::kQ5_K: {
        const int64_t sb = g / 8;
        const int j = int(g % 8);
        const uint8_t* b = raw + sb * sizeof(BlockQ5_K);
        float d = h2f(u16_at(b)), dmin = h2f(u16_at(b + 2));
        int sc, mn;
        k_scale_min(j, b + 4, &sc, &mn);
        const uint8_t* qh = b + 4 + kKScaleBytes;
        const uint8_t* qs = qh + kQKK / 8 + (j / 2) * 32;
        const int shift = (j % 2) * 4;
        for (int l = 0; l < 32; ++l) {
          int q = ((qs[l] >> shift) & 0xF) | (((qh[l] >> j) & 1) << 4);
          put(y, l, d * sc * q - dmin * mn);
        }
        break;
      }
      case DType::kQ2_K:
      case DType::kQ3_K: {
        // 256 = 2 halves of 128; sub-block r (0..3) of 32 in half h takes bits 2r, 2r+1 of qs
        // bytes [32h, 32h + 32) (Q3_K: bit 4h + r of hmask as the third bit); 16 scales of 16.
        const int64_t sb = g / 8;
        const int j = int(g % 8);
        const int half = j / 4, r = j % 4;
        if (dtype == DType::kQ2_K) {
          const uint8_t* b = raw + sb * sizeof(BlockQ2_K);
          const uint8_t* qs = b + kQKK / 16 + half * 32;
          float d = h2f(u16_at(b + kQKK / 16 + kQKK / 4));
          float dmin = h2f(u16_at(b + kQKK / 16 + kQKK / 4 + 2));
          for (int l = 0; l < 32; ++l) {
            const int sm = b[2 * j + l / 16];
            put(y, l, d * (sm & 0xF) * ((qs[l] >> (2 * r)) & 3) - dmin * (sm >> 4));
          }
        } else {
          const uint8_t* b = raw + sb * sizeof(BlockQ3_K);
          const uint8_t* hmask = b;
          const uint8_t* qs = b + kQKK / 8 + half * 32;
          const uint8_t* packed = b + kQKK / 8 + kQKK / 4;
          float d = h2f(u16_at(packed + kKScaleBytes));
          for (int l = 0; l < 32; ++l) {
            const int s = 2 * j + l / 16;
            const int low = s < 8 ? (packed[s] & 0xF) : (packed[s - 8] >> 4);
            const int sc = low | (((packed[8 + s % 4] >> (2 * (s / 4))) & 3) << 4);
            const int q = ((qs[l] >> (2 * r)) & 3) + 4 * ((hmask[l] >> (4 * half + r)) & 1) - 4;
            put(y, l, d * (sc - 32) * q);
          }
        }
        break;
      }
      case DType::kIQ4_NL:
      case DType::kIQ4_XS: {
        // Nibbles as Q4_0 (low: element l, high: l + 16) index the IQ4 table; IQ4_XS: sub-block j
        // of its super-block has the 6-bit scale ls (w = d (ls - 32) v).
        constexpr int8_t kValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                        1,    13,   25,  38,  53,  69,  89,  113};
        const uint8_t* qs;
        float dl;
        if (dtype == DType::kIQ4_NL) {
          const uint8_t* b = raw + g * sizeof(BlockIQ4_NL);
          dl = h2f(u16_at(b));
          qs = b + 2;
        } else {
          const int64_t sb = g / 8;
          const int j = int(g % 8);
          const uint8_t* b = raw + sb * sizeof(BlockIQ4_XS);
          const int ls =
              ((b[4 + j / 2] >> (4 * (j % 2))) & 0xF) | (((u16_at(b + 2) >> (2 * j)) & 3) << 4);
          dl = h2f(u16_at(b)) * (ls - 32);
          qs = b + 8 + 16 * j;
        }
        for (int l = 0; l < 16; ++l) {
          put(y, l, dl * kValues[qs[l] & 0xF]);
          put(y, l + 16, dl * kValues[qs[l] >> 4]);
        }
        break;
      }
      case DType::kQ6_K: {
        // 256 = 2 halves of 128; in each half, sub-block r (0..3) of 32 takes ql low/high
        // nibbles of bytes [0,32) or [32,64) and 2 bits of qh at shift 2r; 16 scales of 16.
        const int64_t sb = g / 8;
        const int j = int(g % 8);
        const uint8_t* b = raw + sb * sizeof(BlockQ6_K);
        const int half = j / 4, r = j % 4;
        const uint8_t* ql = b + half * 64 + (r % 2) * 32;
        const uint8_t* qh = b + kQKK / 2 + half * 32;
        const int8_t* scales = reinterpret_cast<const int8_t*>(b + kQKK / 2 + kQKK / 4);
        float d = h2f(u16_at(b + kQKK / 2 + kQKK / 4 + kQKK / 16));
        const int nib_shift = (r / 2) * 4;
        for (int l = 0; l < 32; ++l) {
          int q = ((ql[l] >> nib_shift) & 0xF) | (((qh[l] >> (2 * r)) & 3) << 4);
          float s = scales[half * 8 + r * 2 + l / 16];
          put(y, l, d * s * (q - 32));
        }
        break;
      }
      default:
        break;
    }
  }
}

__global__ void convert_kernel(void* out, DType out_dtype, const void* in, DType in_dtype,
                               int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    store_f(out, i, out_dtype, load_f(in, i, in_dtype));
}

__device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

__global__ void random_kernel(__nv_bfloat16* out, int64_t n, uint64_t seed, float scale) {
  const uint64_t key = splitmix64(seed);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    uint64_t r = splitmix64(key ^ static_cast<uint64_t>(i));
    float u = static_cast<float>(r >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    out[i] = __float2bfloat16_rn(scale * (2.f * u - 1.f));
  }
}

}  // namespace

void launch_dequantize_to_bf16(const LaunchCtx& ctx, DType dtype, const void* raw, int64_t n_elems,
                               void* out) {
  if (n_elems == 0) return;
  if (dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16) {
    launch_convert(ctx, out, DType::kBF16, raw, dtype, n_elems);
    return;
  }
  const int64_t n_groups = n_elems / 32;
  dequant_kernel<<<grid_for(n_groups, 256, ctx), 256, 0, ctx.stream>>>(
      dtype, static_cast<const uint8_t*>(raw), n_groups, static_cast<__nv_bfloat16*>(out));
  check_launch(ctx);
}

void launch_random_bf16(const LaunchCtx& ctx, void* out, int64_t n, uint64_t seed, float scale) {
  if (n == 0) return;
  random_kernel<<<grid_for(n, 256, ctx), 256, 0, ctx.stream>>>(static_cast<__nv_bfloat16*>(out), n,
                                                               seed, scale);
  check_launch(ctx);
}

void launch_convert(const LaunchCtx& ctx, void* out, DType out_dtype, const void* in,
                    DType in_dtype, int64_t n) {
  if (n == 0) return;
  convert_kernel<<<grid_for(n, 256, ctx), 256, 0, ctx.stream>>>(out, out_dtype, in, in_dtype, n);
  check_launch(ctx);
}

}  // namespace carpool::cuda
