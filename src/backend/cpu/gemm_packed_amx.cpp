// AMX-INT8 kernels for packed weights (gemm_packed.h).
//
// A group block's parts (packed_weights.h: per part, 16 weight rows x 4 bytes side by side) are
// already the B operand layout of a tile multiply, so per block (or K-quant sub-block) of 32
// elements one tdpbsud forms the exact integer sums of 16 activation rows (A: signed bytes, the
// rows' BlockQ8A quants) with the group's 16 weight rows (B: unsigned bytes). The VNNI kernels
// spend eight vpdpbusd per activation row and block on the same sums. The 16 x 16 sums are stored
// and scaled by the same f32 operations, in the same order, as gemm_packed_kernels.inc does per
// column, so this path and the AVX-512 one agree bit for bit and a column's result still does not
// depend on the batch.
//
// The activation rows come regathered in chunks of 16 (AmxActivations: a tile load reads
// consecutive bytes; rows past the batch are zeros, since a tile load always reads the configured
// rows). Per group, the weights are unpacked once into a thread's buffer (unpack_group; Q8_0's
// parts are read in place), then every chunk runs over them (8 rows for a last chunk of at most
// 8).
//
// Tiles (palette 1), whole blocks: 0 A (R x 32 bytes), 2 B (8 x 64 bytes), 4 C (R x 16 int32).
// Q6_K and Q3_K (sums per half block of 16): 0, 1 A of the two halves (R x 16 bytes), 2, 3 B
// (4 x 64), 4, 5 C. A thread loads a configuration only when it differs from the one it last
// loaded.
#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cpu/gemm_packed.h"

namespace carpool {

int32_t gemm_packed_amx_sum_factor(DType t) {
  switch (t) {
    case DType::kQ4_0:
      return -8;
    case DType::kQ5_0:
      return -16;
    case DType::kQ6_K:
      return -32;
    case DType::kQ3_K:
      return -4;
    case DType::kQ8_0:
    case DType::kIQ4_NL:
    case DType::kIQ4_XS:
      return -128;  // their parts hold the values plus 128
    default:
      return 1;
  }
}

void amx_reset(AmxActivations& x, DType t, int64_t m, int64_t blocks) {
  const int sums = gemm_packed_sums_per_block(t);
  x.m = m;
  x.blocks = blocks;
  x.sums = sums;
  x.factor = gemm_packed_amx_sum_factor(t);
  const int64_t chunks = (m + 15) / 16;
  const size_t slots = static_cast<size_t>(chunks * blocks * 16);
  x.qs.resize(slots * 32);
  x.d.resize(slots);
  x.s.resize(slots);
  x.sum.resize(slots * static_cast<size_t>(sums));
  for (int64_t r = m; r < chunks * 16; ++r) {
    for (int64_t i = 0; i < blocks; ++i) {
      const size_t o = static_cast<size_t>(((r / 16) * blocks + i) * 16 + r % 16);
      std::memset(x.qs.data() + 32 * o, 0, 32);
      x.d[o] = 0.f;
      x.s[o] = 0.f;
      for (int h = 0; h < sums; ++h) x.sum[o * sums + h] = 0;
    }
  }
}

void amx_put_row(AmxActivations& x, int64_t r, const BlockQ8A* row, const int32_t* row_sums) {
  const int sums = x.sums;
  for (int64_t i = 0; i < x.blocks; ++i) {
    const size_t o = static_cast<size_t>(((r / 16) * x.blocks + i) * 16 + r % 16);
    std::memcpy(x.qs.data() + 32 * o, row[i].qs, 32);
    x.d[o] = row[i].d;
    x.s[o] = row[i].s;
    for (int h = 0; h < sums; ++h) x.sum[o * sums + h] = x.factor * row_sums[i * sums + h];
  }
}

}  // namespace carpool

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,amx-tile,amx-int8")
// GCC 12 warns inside its own _mm512_undefined_* (GCC bug 105593, fixed in 13).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "backend/cpu/amx_tiles.h"
#include "backend/cpu/cpu_features.h"

namespace carpool {
namespace {
#include "backend/cpu/gemm_packed_avx512_ops.inc"
#include "backend/cpu/gemm_packed_kernels.inc"

// Fewer activation rows than this go to the AVX-512 kernels (same results): on the Xeon VM the
// tile work and the per-block f32 scaling did not overlap, so tiles only paid where the unpacked
// weights serve many chunks of rows (prefill): at 16 rows the b16 decode step was slower.
constexpr int64_t kAmxMinRows = 64;

template <DType T>
constexpr bool kHalves = T == DType::kQ6_K || T == DType::kQ3_K;

// Loads the configuration for R activation rows (halves: Q6_K / Q3_K) unless it is loaded.
void configure(int rows, bool halves) {
  const int want = kAmxConfigInt8 + rows * 2 + (halves ? 1 : 0);
  if (amx_loaded_config() == want) return;
  AmxTileConfig c;
  const int a_bytes = halves ? 16 : 32;
  for (int t = 0; t < 2; ++t) {
    c.rows[t] = static_cast<uint8_t>(rows);
    c.colsb[t] = static_cast<uint16_t>(a_bytes);
    c.rows[2 + t] = static_cast<uint8_t>(a_bytes / 4);
    c.colsb[2 + t] = 64;
    c.rows[4 + t] = static_cast<uint8_t>(rows);
    c.colsb[4 + t] = 64;
  }
  _tile_loadconfig(&c);
  amx_loaded_config() = want;
}

// Sub-block s's 8 parts of unsigned weight bytes (the B tile): Q8_0's in the packed group
// itself, the other types' in the group's unpacked copy.
template <DType T>
inline const uint8_t* b_parts(const uint8_t* group, const uint8_t* ubuf, int64_t s,
                              size_t block_bytes) {
  if constexpr (T == DType::kQ8_0) {
    return group + static_cast<size_t>(s) * block_bytes;
  } else {
    return ubuf + static_cast<size_t>(s) * kUnpackedSubBytes;
  }
}

// A chunk of 16 activation rows regathered per sub-block s, so that a tile load reads 16
// consecutive 32-byte rows and a sub-block's scales share a cache line: qs [subs][16][32],
// d and s [subs][16], sums [subs][16][sums per block]. Rows past the batch are zeros.
struct Chunk {
  const int8_t* qs = nullptr;
  const float* d = nullptr;
  const float* s = nullptr;
  const int32_t* sums = nullptr;
};

// One sub-block's sums (c: R rows of 16 int32, c1: the second half's for Q6_K / Q3_K) scaled into
// acc, with the f32 operations of the matching VNNI tile. gb: the group block holding sub-block
// j; s: the sub-block's index in the row.
template <DType T, int R>
inline void scale_into(const uint8_t* gb, int j, const int32_t* c, const int32_t* c1,
                       const Chunk& x, int64_t s, VecF (&acc)[R]) {
  const float* xd = x.d + 16 * s;
  if constexpr (T == DType::kQ4_K || T == DType::kQ5_K) {
    const uint8_t* sc = gb + 32 * 64;
    const uint8_t* scales = sc + 64;
    const VecF dsc = vmul(vload_u8f(scales + 16 * j), vload_f16(sc));
    const VecF dm = vmul(vload_u8f(scales + 16 * (8 + j)), vload_f16(sc + 32));
    const float* xs = x.s + 16 * s;
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const VecF isum = vcvt(vload(reinterpret_cast<const uint8_t*>(c + 16 * r)));
      acc[r] = vfmadd(vmul(isum, vset1_f(xd[r])), dsc, acc[r]);
      acc[r] = vfnmadd(dm, vset1_f(xs[r]), acc[r]);
    }
  } else if constexpr (kHalves<T>) {
    const uint8_t* tail = gb + kK16Tail<T>;
    const VecF d = vload_f16(tail);
    const uint8_t* scales = tail + 32;
    const VecI sc0 = vload_s8_32(scales + 16 * (2 * j));
    const VecI sc1 = vload_s8_32(scales + 16 * (2 * j + 1));
    const int32_t* xsum = x.sums + 32 * s;
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const VecI s0 =
          vadd_i(vload(reinterpret_cast<const uint8_t*>(c + 16 * r)), vset1_32(xsum[2 * r]));
      const VecI s1 =
          vadd_i(vload(reinterpret_cast<const uint8_t*>(c1 + 16 * r)), vset1_32(xsum[2 * r + 1]));
      const VecI si = vadd_i(vmul32(s0, sc0), vmul32(s1, sc1));
      acc[r] = vfmadd(vmul(vcvt(si), vset1_f(xd[r])), d, acc[r]);
    }
  } else if constexpr (T == DType::kQ2_K) {
    const uint8_t* tail = gb + kQ2KTail;
    const VecF d = vload_f16(tail);
    const VecF dmin = vload_f16(tail + 32);
    const uint8_t* sm = q2_k_scales_at(gb, j, 0);
    const VecF m0 = vmul(vcvt(vsrl32(vload_u8_32(sm), 4)), dmin);
    const VecF m1 = vmul(vcvt(vsrl32(vload_u8_32(sm + kPackRows), 4)), dmin);
    const int32_t* xsum = x.sums + 32 * s;
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const VecF isum = vcvt(vload(reinterpret_cast<const uint8_t*>(c + 16 * r)));
      acc[r] = vfmadd(vmul(isum, vset1_f(xd[r])), d, acc[r]);
      acc[r] = vfnmadd(m0, vset1_f(xd[r] * static_cast<float>(xsum[2 * r])), acc[r]);
      acc[r] = vfnmadd(m1, vset1_f(xd[r] * static_cast<float>(xsum[2 * r + 1])), acc[r]);
    }
  } else {
    VecF dw;
    if constexpr (T == DType::kIQ4_XS) {
      const uint8_t* tail = gb + 32 * 64;
      dw = vmul(vload_s8f(tail + 2 * kPackRows + kPackRows * j), vload_f16(tail));
    } else {
      dw = vload_f16(gb + kScalesAt<T>);
    }
    VecF mw = vset1_f(0.f);
    if constexpr (kHasMin<T>) mw = vload_f16(gb + kScalesAt<T> + 32);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      VecI si = vload(reinterpret_cast<const uint8_t*>(c + 16 * r));
      if constexpr (kOffset<T> != 0) si = vadd_i(si, vset1_32(x.sums[16 * s + r]));
      acc[r] = vfmadd(vmul(vcvt(si), vset1_f(xd[r])), dw, acc[r]);
      if constexpr (kHasMin<T>) acc[r] = vfmadd(mw, vset1_f(x.s[16 * s + r]), acc[r]);
    }
  }
}

// Columns of group g for the R activation rows of chunk x, stored for the first `rows` of them
// at y (row stride ldy).
// next: the packed bytes of the group to come, fetched into the caches block by block while this
// one computes (the tile loads do not get the stream going by themselves), or null.
//
// Per sub-block the tiles form its sums and store them to a ring of four buffers; the vector
// units scale the sums of the sub-block two steps back, whose stores have long retired (vector
// loads of a tile store still in flight wait for it). The accumulators stay in registers (the
// tile stores name their bytes, the rows are stored by an unrolled loop): with them in memory,
// Q4_1 at 512 rows took 39-42 ns per 16 x 16 x 32 sums, 34-36 ns after (one thread, Xeon VM).
template <DType T, int R>
void chunk(const PackedWeight& w, int64_t g, const uint8_t* ubuf, const Chunk& x, int rows,
           float* y, int64_t ldy, const float* bias, const uint8_t* next) {
  constexpr int kSub = kSubBlocks<T>;
  const int64_t subs = w.blocks * kSub;
  const uint8_t* group = w.group(g);
  alignas(64) int32_t c[4][2][16 * 16];  // [sub-block % 4][half]: R rows of 16 sums
  VecF acc[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) acc[r] = vset1_f(0.f);
  for (int64_t s = 0; s < subs + 2; ++s) {
    if (s < subs) {
      if (next != nullptr && s % kSub == 0) {
        prefetch_block(next + static_cast<size_t>(s / kSub) * w.block_bytes, w.block_bytes);
      }
      const uint8_t* p = b_parts<T>(group, ubuf, s, w.block_bytes);
      int32_t(&cs)[2][16 * 16] = c[s & 3];
      // (The tile numbers are literals in the instructions.)
      if constexpr (kHalves<T>) {
        const int8_t* h = x.qs + 512 * s;
        CARPOOL_TILE_LOADD(0, h, 32, 512);
        CARPOOL_TILE_LOADD(1, h + 16, 32, 496);
        CARPOOL_TILE_LOADD(2, p, 64, 256);
        CARPOOL_TILE_LOADD(3, p + 4 * 64, 64, 256);
        _tile_zero(4);
        _tile_zero(5);
        _tile_dpbsud(4, 0, 2);
        _tile_dpbsud(5, 1, 3);
        CARPOOL_TILE_STORED(4, cs[0], 64, 1024);
        CARPOOL_TILE_STORED(5, cs[1], 64, 1024);
      } else {
        CARPOOL_TILE_LOADD(0, x.qs + 512 * s, 32, 512);
        CARPOOL_TILE_LOADD(2, p, 64, 512);
        _tile_zero(4);
        _tile_dpbsud(4, 0, 2);
        CARPOOL_TILE_STORED(4, cs[0], 64, 1024);
      }
    }
    if (s >= 2) {
      const int64_t su = s - 2;
      const uint8_t* gb = group + static_cast<size_t>(su / kSub) * w.block_bytes;
      scale_into<T, R>(gb, static_cast<int>(su % kSub), c[su & 3][0], c[su & 3][1], x, su, acc);
    }
  }
  const int64_t j0 = g * kPackRows;
  const VecF b = bias != nullptr ? vloadu_f(bias + j0) : vset1_f(0.f);
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    if (r < rows) vstoreu_f(y + r * ldy + j0, vadd_f(acc[r], b));
  }
}

template <DType T>
void run_amx(const GemmPackedArgs& a, int64_t g0, int64_t g1) {
  const PackedWeight& w = *a.w;
  const AmxActivations& x = *a.amx;
  const int64_t slots = x.blocks * 16;  // per chunk
  // Chunks of activation rows in panels that stay in L2 while the groups pass over them.
  const int64_t panel_chunks =
      std::max<int64_t>(1, (int64_t{512} << 10) / std::max<int64_t>(1, slots * 44));
  // Two buffers of unpacked weights: the next group is unpacked before this one is multiplied,
  // so the tile loads never wait for the unpacking's stores to drain.
  thread_local std::vector<uint8_t> unpacked;
  const size_t group_bytes = static_cast<size_t>(w.blocks * kSubBlocks<T>) * kUnpackedSubBytes;
  if constexpr (T != DType::kQ8_0) unpacked.resize(2 * group_bytes);
  const int64_t chunks = (x.m + 15) / 16;
  for (int64_t c0 = 0; c0 < chunks; c0 += panel_chunks) {
    const int64_t c1 = std::min(chunks, c0 + panel_chunks);
    if constexpr (T != DType::kQ8_0) {
      unpack_group<T>(w.group(g0), w.blocks, w.block_bytes, unpacked.data());
    }
    for (int64_t g = g0; g < g1; ++g) {
      uint8_t* ubuf = unpacked.data() + static_cast<size_t>((g - g0) & 1) * group_bytes;
      if constexpr (T != DType::kQ8_0) {
        if (g + 1 < g1) {
          unpack_group<T>(w.group(g + 1), w.blocks, w.block_bytes,
                          unpacked.data() + static_cast<size_t>((g + 1 - g0) & 1) * group_bytes);
        }
      }
      // The group whose bytes are read next from memory: Q8_0's tiles read g + 1 in place, the
      // others unpack g + 2 next.
      const int64_t ahead = g + (T == DType::kQ8_0 ? 1 : 2);
      const uint8_t* next = ahead < g1 ? w.group(ahead) : nullptr;
      for (int64_t c = c0; c < c1; ++c) {
        const size_t o = static_cast<size_t>(c * slots);
        const Chunk xc{x.qs.data() + 32 * o, x.d.data() + o, x.s.data() + o,
                       x.sums > 0 ? x.sum.data() + o * x.sums : nullptr};
        const int rows = static_cast<int>(std::min<int64_t>(16, x.m - 16 * c));
        float* y = a.y + 16 * c * a.ldy;
        const uint8_t* pf = c == c0 ? next : nullptr;
        if (rows <= 8) {
          configure(8, kHalves<T>);
          chunk<T, 8>(w, g, ubuf, xc, rows, y, a.ldy, a.bias, pf);
        } else {
          configure(16, kHalves<T>);
          chunk<T, 16>(w, g, ubuf, xc, rows, y, a.ldy, a.bias, pf);
        }
      }
    }
  }
}

}  // namespace

bool gemm_packed_amx_takes(DType t, int64_t m) {
  return m >= kAmxMinRows && packable(t) && !packable_float(t) && cpu_amx_int8();
}

bool gemm_packed_amx(const GemmPackedArgs& a, int64_t g0, int64_t g1) {
  if (a.amx == nullptr || a.amx->m != a.m || !gemm_packed_amx_takes(a.w->type, a.m)) return false;
  switch (a.w->type) {
    case DType::kQ4_0:
      run_amx<DType::kQ4_0>(a, g0, g1);
      return true;
    case DType::kQ4_1:
      run_amx<DType::kQ4_1>(a, g0, g1);
      return true;
    case DType::kQ5_0:
      run_amx<DType::kQ5_0>(a, g0, g1);
      return true;
    case DType::kQ5_1:
      run_amx<DType::kQ5_1>(a, g0, g1);
      return true;
    case DType::kQ8_0:
      run_amx<DType::kQ8_0>(a, g0, g1);
      return true;
    case DType::kIQ4_NL:
      run_amx<DType::kIQ4_NL>(a, g0, g1);
      return true;
    case DType::kQ2_K:
      run_amx<DType::kQ2_K>(a, g0, g1);
      return true;
    case DType::kQ3_K:
      run_amx<DType::kQ3_K>(a, g0, g1);
      return true;
    case DType::kQ4_K:
      run_amx<DType::kQ4_K>(a, g0, g1);
      return true;
    case DType::kQ5_K:
      run_amx<DType::kQ5_K>(a, g0, g1);
      return true;
    case DType::kQ6_K:
      run_amx<DType::kQ6_K>(a, g0, g1);
      return true;
    case DType::kIQ4_XS:
      run_amx<DType::kIQ4_XS>(a, g0, g1);
      return true;
    default:
      return false;
  }
}

}  // namespace carpool
#pragma GCC pop_options

#else

namespace carpool {
bool gemm_packed_amx_takes(DType, int64_t) {
  return false;
}
bool gemm_packed_amx(const GemmPackedArgs&, int64_t, int64_t) {
  return false;
}
}  // namespace carpool

#endif
