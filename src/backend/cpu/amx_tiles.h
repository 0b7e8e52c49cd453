// Internal to the CPU backend: what the AMX kernels share about a thread's tile state.
//
// A thread has one tile configuration at a time, loaded by whichever AMX kernel ran last on it
// (gemm_packed_amx.cpp: 8-bit weights; gemm_packed_bf16_amx.cpp: BF16 weights). Each kernel
// names its configurations with its own range of ids and loads one only when this thread's
// current id differs, so that a model mixing weight types never runs a kernel on another's
// configuration.
#pragma once

#include <cstdint>

namespace carpool {

inline constexpr int kAmxConfigInt8 = 1000;  // + rows * 2 + halves
inline constexpr int kAmxConfigBf16 = 2000;  // + rows0 * 32 + rows1

// The id of the configuration this thread last loaded (-1: none).
inline int& amx_loaded_config() {
  thread_local int id = -1;
  return id;
}

// The palette-1 configuration block of ldtilecfg.
struct alignas(64) AmxTileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Tile loads and stores that name the bytes they read or write as asm operands (t: the tile
// number, a literal). The compiler's _tile_stored clobbers all memory, which keeps every local
// whose address a function takes (gemm_packed_amx.cpp's f32 accumulators: 16 vectors) in memory
// instead of registers, and its _tile_loadd names no memory at all, so nothing kept the compiler
// from moving a store to its source past it.
#define CARPOOL_TILE_LOADD(t, base, stride, bytes)                                     \
  __asm__ volatile("tileloadd (%1,%2,1), %%tmm" #t                                     \
                   :                                                                   \
                   : "m"(*reinterpret_cast<const uint8_t(*)[bytes]>(base)), "r"(base), \
                     "r"(static_cast<int64_t>(stride)))
// A tile load whose extent is known only at run time (rows at a run-time stride): it declares
// that it may read any memory, so every store before it stays before it (and values the compiler
// kept in registers are re-read after it, which costs nothing to a kernel whose sums stay in
// tiles).
#define CARPOOL_TILE_LOADD_ANY(t, base, stride)                   \
  __asm__ volatile("tileloadd (%0,%1,1), %%tmm" #t                \
                   :                                              \
                   : "r"(base), "r"(static_cast<int64_t>(stride)) \
                   : "memory")
#define CARPOOL_TILE_STORED(t, base, stride, bytes)                   \
  __asm__ volatile("tilestored %%tmm" #t ", (%1,%2,1)"                \
                   : "=m"(*reinterpret_cast<uint8_t(*)[bytes]>(base)) \
                   : "r"(base), "r"(static_cast<int64_t>(stride)))

}  // namespace carpool
