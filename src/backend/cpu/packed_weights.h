// Internal to the CPU backend: weight matrices repacked at first use so that one AVX-512
// instruction (VNNI for quantized types, an FMA or vdpbf16ps for float types) serves 16 weight
// rows (output columns) at once.
//
// The tiled kernels of gemm_q8a.h keep the file's layout: each weight row's block is dotted with
// an activation block into 8 partial sums that are then scaled and summed per row, so most of the
// instructions go to per-row float work. In the packed layout, weight rows are taken in groups of
// 16 and, per block of 32 elements, the group's bytes are interleaved by 4 (one 32-bit lane per
// row): vpdpbusd with four activation bytes broadcast to every lane then advances all 16 rows'
// integer sums at once, the block's scales are one vector per group, and the output of 16
// columns is one vector per activation row, with no horizontal sums.
//
// Layout of a group (16 rows j0..j0+15), block after block (i = 0 .. k/32 - 1):
//   Q4_0, Q4_1: 4 x 64 bytes: byte 4*l + b of part t is byte 4t + b of row j0+l's qs (low nibble:
//               element 4t + b, high nibble: element 16 + 4t + b); then 16 f16 d (Q4_1: and 16
//               f16 m).
//   Q8_0:       8 x 64 bytes: byte 4*l + b of part t is element 4t + b of row j0+l plus 128 (as
//               unsigned); then 16 f16 d.
//   Q5_0, Q5_1: the low four bits as Q4_0's 4 x 64 bytes; then the fifth bits as 8 masks of 64
//               bits (mask u for the values unpacked as part u, elements 4u + b: bit 4*l + b is
//               the fifth bit of that element of row j0+l); then 16 f16 d (Q5_1: and 16 f16 m).
//               (Q5_0 matrices whose rows are not all in groups reach the CPU backend as Q8_0:
//               load_weight re-encodes them exactly.)
//   Q4_K:       per super-block of 256: 32 x 64 bytes: byte 4*l + b of part 8c + t is byte
//               32c + 4t + b of row j0+l's qs (low nibble: sub-block 2c, high: 2c + 1); then 16
//               f16 d, 16 f16 dmin, and the 6-bit scales [8][16] and mins [8][16] as bytes.
//   Q5_K:       as Q4_K, then the fifth bits as 64 masks of 64 bits, [sub-block j][part t]:
//               bit 4*l + b is bit 4 of the value whose low bits part t holds at byte 4*l + b
//               (one masked byte add per part restores it).
//   Q6_K:       32 x 64 bytes of ql and 16 x 64 bytes of qh interleaved by 4 bytes, 16 f16 d,
//               and the int8 scales [16][16].
//   Q2_K, Q3_K: 16 x 64 bytes of qs interleaved by 4 bytes (part 8h + t holds bytes 32h + 4t ..
//               +3: bits 2c, 2c + 1 are elements of sub-block 4h + c). Q2_K: then 16 f16 d, 16
//               f16 dmin and the scale-and-min bytes [16][16]; Q3_K: then the third bits as
//               Q5_K's 64 masks, 16 f16 d and the scales minus 32 as int8 [16][16].
//   IQ4_NL:     as Q4_0 (the nibbles index the IQ4 table).
//   IQ4_XS:     per super-block, 32 parts as Q4_0's (sub-block j: parts 4j .. 4j + 3), 16 f16 d,
//               and the 6-bit scales minus 32 as int8 [8][16].
//   F32, F16:   one "block" per element i: element i of the 16 rows side by side (64 or 32
//               bytes), so one vector load gives 16 output columns' weights for one k.
//   BF16:       one block per pair of elements: elements 2i, 2i+1 of row j0+l at lane l (64
//               bytes), the operand layout of vdpbf16ps; an odd-length row ends with a zero.
// Rows past the last full group are not packed: callers run the unpacked kernels on them.
//
// Thread-safety: pure functions; a PackedWeight is immutable after pack_weight().
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "backend/dtype.h"

namespace carpool {

inline constexpr int kPackRows = 16;  // weight rows per group

struct PackedWeight {
  DType type = DType::kF32;
  int64_t groups = 0;      // full groups of kPackRows rows; rows [groups * 16, n) stay unpacked
  int64_t cols = 0;        // elements per row
  int64_t blocks = 0;      // weight blocks per row (32 elements; 256 for the K types; float
                           // types: 1 element, BF16 a pair)
  size_t block_bytes = 0;  // bytes of one group's block
  struct Free {
    void operator()(uint8_t* p) const;
  };
  std::unique_ptr<uint8_t[], Free> data;  // [groups][blocks][block_bytes], 64-byte aligned

  const uint8_t* group(int64_t g) const {
    return data.get() + static_cast<size_t>(g) * static_cast<size_t>(blocks) * block_bytes;
  }
  size_t bytes() const { return static_cast<size_t>(groups * blocks) * block_bytes; }
};

// True for the weight types that have a packed layout; packable_float: F32, F16 and BF16 (used
// by gemm_packed_float.h with f32 or bf16 activations, not 8-bit ones).
bool packable(DType t);
bool packable_float(DType t);

// Bytes of one group's block for type t (packable(t)).
size_t packed_block_bytes(DType t);

// An empty PackedWeight of the right size for a [rows, cols] matrix of type t (packable(t),
// cols a multiple of the type's block elements); fill it with pack_groups.
PackedWeight make_packed(DType t, int64_t rows, int64_t cols);

// Packs groups [g0, g1) of the weight rows at w (row stride row_bytes) into p.
void pack_groups(PackedWeight& p, const void* w, size_t row_bytes, int64_t g0, int64_t g1);

}  // namespace carpool
