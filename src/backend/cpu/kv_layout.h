// Where the CPU backend keeps one layer of its paged KV cache (alloc_kv). A layer is num_blocks
// records, one per cache block; a record holds one unit per KV head, and a unit that head's keys
// and values of the block's block_size slots, in the order attention reads them:
//
//   record b = unit 0 | unit 1 | ... | unit n_kv_heads - 1          (record_bytes apart)
//   unit h   = K: head_dim columns of block_size keys (column-major) | K scales |
//              V: block_size rows of head_dim values (row-major)   | V scales
//
// (scales: int8 caches only, block_size f32 each). Attention folds a sequence block after block,
// head after head, K then V, so it reads each record from front to back, and a task that takes
// one KV head (a long context split over the threads) reads one contiguous unit per block. On
// the 2-vCPU VM, against K and V in two tensors: decode attention 15-20% faster at batch 1 x
// 2048 and 3-4% at batch 16 x 1024; at batch 16 x 160 faster or slower by a few percent with the
// VM's phase (bench/RESULTS.md, 2026-11-28). K
// column-major lets one vector load read one dimension of consecutive keys, the scales in key
// order likewise. The layer's K tensor points at record 0, its V tensor at record 0's V of head 0.
#pragma once

#include <cstdint>

#include "backend/dtype.h"

namespace carpool {

struct KvLayout {
  DType dtype = DType::kF16;  // kF32, kF16 or kI8
  int block_size = 0;
  int n_kv_heads = 0;
  int head_dim = 0;

  int64_t cols() const { return int64_t{n_kv_heads} * head_dim; }
  int64_t elem() const { return dtype == DType::kF32 ? 4 : dtype == DType::kF16 ? 2 : 1; }
  // One head's keys (or values) of a block (padded to whole floats, so that scales after them are
  // aligned), and their scales (int8 caches only).
  int64_t values_bytes() const { return (int64_t{block_size} * head_dim * elem() + 3) / 4 * 4; }
  int64_t scales_bytes() const { return dtype == DType::kI8 ? int64_t{block_size} * 4 : 0; }
  // Bytes from one head's unit to the next, and from one block's record to the next (whole
  // cache lines).
  int64_t unit_bytes() const { return 2 * (values_bytes() + scales_bytes()); }
  int64_t record_bytes() const { return (n_kv_heads * unit_bytes() + 63) / 64 * 64; }
  // Within a unit: where its K scales, V and V scales begin.
  int64_t k_scales_begin() const { return values_bytes(); }
  int64_t v_begin() const { return values_bytes() + scales_bytes(); }
  int64_t v_scales_begin() const { return 2 * values_bytes() + scales_bytes(); }

  // Bytes from the start of a layer (its K tensor's data) to the unit of (slot's block, head).
  int64_t unit_at(int64_t slot, int64_t head) const {
    return slot / block_size * record_bytes() + head * unit_bytes();
  }
  // Byte offsets of (slot, col): of K from the K tensor's data (the layer's start), of V from
  // the V tensor's data (v_begin() after it).
  int64_t k_at(int64_t slot, int64_t col) const {
    return unit_at(slot, col / head_dim) +
           (col % head_dim * block_size + slot % block_size) * elem();
  }
  int64_t v_at(int64_t slot, int64_t col) const {
    return unit_at(slot, col / head_dim) + (slot % block_size * head_dim + col % head_dim) * elem();
  }
  // Byte offset of the scale of (slot, KV head `head`) from the layer's K scales (k_scales_begin()
  // after its start) or V scales (v_scales_begin() after it).
  int64_t scale_at(int64_t slot, int head) const {
    return unit_at(slot, head) + slot % block_size * 4;
  }
};

// One layer of a cache from CpuBackend::alloc_kv, for the ops that read and write it.
struct KvLayer {
  KvLayout layout;
  char* k = nullptr;  // the layer's start (record 0, unit 0, its K)
  char* v = nullptr;  // record 0, unit 0, its V
  // int8 caches: record 0, unit 0, its K and V scales; null for float caches.
  float* k_scales = nullptr;
  float* v_scales = nullptr;

  float& k_scale(int64_t slot, int head) const { return scale(k_scales, slot, head); }
  float& v_scale(int64_t slot, int head) const { return scale(v_scales, slot, head); }

 private:
  float& scale(float* scales, int64_t slot, int head) const {
    return *reinterpret_cast<float*>(reinterpret_cast<char*>(scales) + layout.scale_at(slot, head));
  }
};

// The layer whose records begin at `records` (alloc_kv's allocation, where its K tensor points).
inline KvLayer kv_layer_at(const KvLayout& layout, char* records) {
  KvLayer layer;
  layer.layout = layout;
  layer.k = records;
  layer.v = records + layout.v_begin();
  if (layout.dtype == DType::kI8) {
    layer.k_scales = reinterpret_cast<float*>(records + layout.k_scales_begin());
    layer.v_scales = reinterpret_cast<float*>(records + layout.v_scales_begin());
  }
  return layer;
}

}  // namespace carpool
