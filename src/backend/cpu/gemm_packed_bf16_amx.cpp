// AMX-BF16 kernel for packed BF16 weights with bf16 activation pairs (gemm_packed_float.h).
//
// The packed BF16 layout (packed_weights.h: per pair of elements, the group's 16 rows side by
// side, 64 bytes) is the B operand layout of tdpbf16ps, so 16 consecutive pair blocks of a group
// are one B tile (32 elements x 16 columns, 1 KB) and 16 activation rows' next 16 pairs are one A
// tile (rows of x_bf16, read in place). A C tile of 16 x 16 f32 sums then accumulates over the
// whole row before it is stored: unlike 8-bit blocks, bf16 products need no per-block scaling, so
// the tile unit does nearly all the work. Tiles per step: 2 A (two chunks of 16 rows), 2 B (two
// groups) and 4 C.
//
// Per output column the sum runs over the pairs in the same order whatever the batch: a column's
// result depends only on its weight row and activation row. Pairs past the row's end are read
// from zeroed copies (a tile load reads whole tiles), which add zeros.
// The tile unit rounds and flushes denormals as AMX does, so results differ in the last bits from
// the vdpbf16ps kernel; on a machine with AMX this kernel serves every batch size, so answers do
// not depend on the batch either way.
#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cpu/gemm_packed_float.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512bf16,amx-tile,amx-bf16")
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "backend/cpu/amx_tiles.h"
#include "backend/cpu/cpu_features.h"

namespace carpool {
namespace {

constexpr int kPairsPerStep = 16;  // one tile's K: 16 pairs, 32 elements

// Tiles 0, 1: A (rows0 / rows1 activation rows x 64 bytes); 2, 3: B (16 pair rows x 64 bytes);
// 4, 5: C of A tile 0 and 6, 7: C of A tile 1 (that many rows x 16 f32). A chunk of fewer than
// 16 rows (the last) gets tiles of its size, so no row past the batch is read.
void configure(int rows0, int rows1) {
  const int want = kAmxConfigBf16 + rows0 * 32 + rows1;
  if (amx_loaded_config() == want) return;
  AmxTileConfig c;
  const int rows[8] = {rows0, rows1, 16, 16, rows0, rows0, rows1, rows1};
  for (int t = 0; t < 8; ++t) {
    c.rows[t] = static_cast<uint8_t>(rows[t]);
    c.colsb[t] = 64;
  }
  _tile_loadconfig(&c);
  amx_loaded_config() = want;
}

// One chunk's activation rows (16, or fewer in the last chunk) as A tiles: from `rows` (row stride
// `stride` words), with `tail` pairs in the last step (0: none) read from a zeroed copy.
struct AOperand {
  const uint32_t* rows = nullptr;
  size_t stride = 0;               // words
  const uint32_t* tail = nullptr;  // [16][kPairsPerStep] words, or null
};

// A group's pair blocks as B tiles, the last step's from a zeroed copy when the row is not a
// whole number of steps.
struct BOperand {
  const uint8_t* pairs = nullptr;  // [blocks][64 bytes]
  const uint8_t* tail = nullptr;   // [kPairsPerStep][64 bytes], or null
};

// Stores C tile sums for the first `rows` rows into y (columns j0 .. j0 + 15), plus bias.
inline void store(const float (&c)[16 * 16], int rows, float* y, int64_t ldy, const float* bias,
                  int64_t j0) {
  const __m512 b = bias != nullptr ? _mm512_loadu_ps(bias + j0) : _mm512_setzero_ps();
  for (int r = 0; r < rows; ++r) {
    _mm512_storeu_ps(y + r * ldy + j0, _mm512_add_ps(_mm512_loadu_ps(c + 16 * r), b));
  }
}

// Steps ahead that the first chunks over a group ask for its bytes (the weights stream from
// memory once per call; 4 to 32 steps ahead, into L1 or L2, or no software prefetch at all read
// the same within noise at one row).
constexpr int64_t kPrefetchSteps = 4;

// kRows chunks (1 or 2) x kGroups groups (1 or 2) over `steps` whole steps plus the tail step;
// prefetch: the first chunks over these groups (the weights are not in the caches yet).
template <int kRows, int kGroups>
void block(const AOperand (&a)[2], const BOperand (&b)[2], int64_t steps, bool tail, bool prefetch,
           float (&c)[4][16 * 16]) {
  // (The tile intrinsics take register numbers as literals.)
  _tile_zero(4);
  if constexpr (kGroups == 2) _tile_zero(5);
  if constexpr (kRows == 2) _tile_zero(6);
  if constexpr (kRows == 2 && kGroups == 2) _tile_zero(7);
  const size_t a_stride = a[0].stride * 4;
  for (int64_t s = 0; s <= steps; ++s) {
    if (s == steps && !tail) break;
    const bool last = s == steps;
    const size_t ao = static_cast<size_t>(s) * kPairsPerStep;
    const size_t bo = static_cast<size_t>(s) * kPairsPerStep * 64;
    if (prefetch && s + kPrefetchSteps < steps) {
      const size_t ahead = bo + kPrefetchSteps * kPairsPerStep * 64;
      for (int gi = 0; gi < kGroups; ++gi) {
        for (int o = 0; o < kPairsPerStep * 64; o += 64) {
          _mm_prefetch(reinterpret_cast<const char*>(b[gi].pairs + ahead + o), _MM_HINT_T0);
        }
      }
    }
    if (last) {
      CARPOOL_TILE_LOADD_ANY(0, a[0].tail, kPairsPerStep * 4);
    } else {
      CARPOOL_TILE_LOADD_ANY(0, a[0].rows + ao, a_stride);
    }
    CARPOOL_TILE_LOADD_ANY(2, last ? b[0].tail : b[0].pairs + bo, 64);
    _tile_dpbf16ps(4, 0, 2);
    if constexpr (kGroups == 2) {
      CARPOOL_TILE_LOADD_ANY(3, last ? b[1].tail : b[1].pairs + bo, 64);
      _tile_dpbf16ps(5, 0, 3);
    }
    if constexpr (kRows == 2) {
      if (last) {
        CARPOOL_TILE_LOADD_ANY(1, a[1].tail, kPairsPerStep * 4);
      } else {
        CARPOOL_TILE_LOADD_ANY(1, a[1].rows + ao, a_stride);
      }
      _tile_dpbf16ps(6, 1, 2);
      if constexpr (kGroups == 2) _tile_dpbf16ps(7, 1, 3);
    }
  }
  _tile_stored(4, c[0], 64);
  if constexpr (kGroups == 2) _tile_stored(5, c[1], 64);
  if constexpr (kRows == 2) _tile_stored(6, c[2], 64);
  if constexpr (kRows == 2 && kGroups == 2) _tile_stored(7, c[3], 64);
}

void run(const GemmPackedFloatArgs& args, int64_t g0, int64_t g1) {
  const PackedWeight& w = *args.w;
  const int64_t pairs = w.blocks;
  const int64_t steps = pairs / kPairsPerStep;
  const int tail = static_cast<int>(pairs % kPairsPerStep);
  const int64_t chunks = (args.m + 15) / 16;
  // Zeroed copies of each chunk's and group's tail pairs.
  thread_local std::vector<uint32_t> a_tail;
  thread_local std::vector<uint8_t> b_tail;
  auto chunk_rows = [&](int64_t c) {
    return static_cast<int>(std::min<int64_t>(16, args.m - 16 * c));
  };
  auto a_operand = [&](int64_t c, uint32_t* tail_buf) {
    AOperand op;
    op.rows = args.x_bf16 + 16 * c * pairs;
    op.stride = static_cast<size_t>(pairs);
    if (tail != 0) {
      std::memset(tail_buf, 0, 16 * kPairsPerStep * 4);
      for (int r = 0; r < chunk_rows(c); ++r) {
        std::memcpy(tail_buf + r * kPairsPerStep, op.rows + r * pairs + steps * kPairsPerStep,
                    static_cast<size_t>(tail) * 4);
      }
      op.tail = tail_buf;
    }
    return op;
  };
  auto b_operand = [&](int64_t g, uint8_t* tail_buf) {
    BOperand op;
    op.pairs = w.group(g);
    if (tail != 0) {
      std::memset(tail_buf, 0, kPairsPerStep * 64);
      std::memcpy(tail_buf, op.pairs + steps * kPairsPerStep * 64, static_cast<size_t>(tail) * 64);
      op.tail = tail_buf;
    }
    return op;
  };
  // The A tails of every chunk, made once (a chunk's tail is read for every group).
  a_tail.resize(static_cast<size_t>(chunks) * 16 * kPairsPerStep);
  thread_local std::vector<AOperand> a_ops;
  a_ops.resize(static_cast<size_t>(chunks));
  for (int64_t c = 0; c < chunks; ++c) {
    a_ops[c] = a_operand(c, a_tail.data() + c * 16 * kPairsPerStep);
  }
  b_tail.resize(2 * kPairsPerStep * 64);
  alignas(64) float c[4][16 * 16];
  for (int64_t g = g0; g < g1; g += 2) {
    const int groups = g + 1 < g1 ? 2 : 1;
    const BOperand b[2] = {
        b_operand(g, b_tail.data()),
        groups == 2 ? b_operand(g + 1, b_tail.data() + kPairsPerStep * 64) : BOperand{}};
    for (int64_t ch = 0; ch < chunks; ch += 2) {
      const int rows_chunks = ch + 1 < chunks ? 2 : 1;
      const AOperand a[2] = {a_ops[ch], rows_chunks == 2 ? a_ops[ch + 1] : AOperand{}};
      configure(chunk_rows(ch), rows_chunks == 2 ? chunk_rows(ch + 1) : 16);
      const bool pf = ch == 0;
      if (rows_chunks == 2 && groups == 2) {
        block<2, 2>(a, b, steps, tail != 0, pf, c);
      } else if (rows_chunks == 2) {
        block<2, 1>(a, b, steps, tail != 0, pf, c);
      } else if (groups == 2) {
        block<1, 2>(a, b, steps, tail != 0, pf, c);
      } else {
        block<1, 1>(a, b, steps, tail != 0, pf, c);
      }
      for (int rc = 0; rc < rows_chunks; ++rc) {
        const int64_t r0 = 16 * (ch + rc);
        const int rows = chunk_rows(ch + rc);
        for (int gc = 0; gc < groups; ++gc) {
          store(c[2 * rc + gc], rows, args.y + r0 * args.ldy, args.ldy, args.bias,
                (g + gc) * kPackRows);
        }
      }
    }
  }
}

}  // namespace

bool gemm_packed_bf16_amx(const GemmPackedFloatArgs& a, int64_t g0, int64_t g1) {
  if (a.w->type != DType::kBF16 || a.x_bf16 == nullptr || !cpu_amx_bf16()) return false;
  run(a, g0, g1);
  return true;
}

}  // namespace carpool
#pragma GCC pop_options

#else

namespace carpool {
bool gemm_packed_bf16_amx(const GemmPackedFloatArgs&, int64_t, int64_t) {
  return false;
}
}  // namespace carpool

#endif
