// The CUDA backend: a Backend on one NVIDIA GPU. Activations and the KV cache are BF16; every
// weight type is dequantized to BF16 when loaded; matmuls run on cuBLAS with F32 accumulation.
//
// This header includes no CUDA headers, so model and engine code may include it. The library is
// only built where a CUDA compiler was found (CARPOOL_HAVE_CUDA); on a machine without a GPU or
// driver, make_cuda_backend() returns an error and nothing else happens.
#pragma once

#include <cstddef>
#include <memory>

#include "backend/backend.h"
#include "util/status.h"

namespace carpool {

struct CudaBackendOptions {
  int device = 0;  // CUDA device ordinal
  // Wait for every kernel after its launch, so an asynchronous fault is reported (with file and
  // line) by the launch that caused it. For tests and conformance runs; slow.
  bool debug_sync = false;
  size_t cublas_workspace_bytes = size_t{32} << 20;
  size_t staging_bytes = size_t{64} << 20;  // device buffer for raw weight bytes being converted
  // Record and replay step graphs (Backend::run_graph). Off with debug_sync, or when the
  // environment variable CARPOOL_CUDA_GRAPHS=0 is set when the backend starts (A/B runs).
  bool graphs = true;
  // Ask the model for fused projections (Backend::prefers_fused_projections): one matmul for
  // q|k|v and one for gate|up. Off when CARPOOL_CUDA_FUSED=0 is set when the backend starts.
  bool fused_projections = true;
  // Draw sampled rows on the device (Backend::sample_rows). Off (the runner then samples them on
  // the host) when CARPOOL_CUDA_SAMPLING=0 is set when the backend starts (A/B runs).
  bool device_sampling = true;
  // Which matmuls run on the streaming kernel of gemv_kernels.cu instead of cuBLAS. kAuto: one
  // activation row with at least as many outputs as inputs (q|k|v, o, gate|up, the LM head),
  // where it matched or beat cuBLAS on an H200; with more rows, or fewer outputs than inputs
  // (down), cuBLAS was faster in the same run (bench/RESULTS.md). kAll: every shape it takes (up
  // to 8 rows); kOff: none. CARPOOL_CUDA_GEMV=0 / all set kOff / kAll when the backend starts.
  enum class Gemv { kOff, kAuto, kAll };
  Gemv small_batch_gemv = Gemv::kAuto;
};

// A backend on options.device, or an error such as "no CUDA device (...)".
Result<std::unique_ptr<Backend>> make_cuda_backend(const CudaBackendOptions& options = {});

// Number of usable CUDA devices; 0 where there is no driver or GPU. Never fails.
int cuda_device_count();

}  // namespace carpool
