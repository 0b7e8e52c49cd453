// Checks for CUDA runtime and cuBLAS calls. Internal to the CUDA backend (includes CUDA headers).
//
// CUDA_CHECK / CUBLAS_CHECK: for calls whose failure is a bug or a lost device (inside ops, which
// return void): print the call, the error and file:line, then abort.
// CUDA_TRY: for set-up calls that may fail for ordinary reasons (no device, out of memory): return
// a carpool::Status error from the enclosing function.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "util/status.h"

namespace carpool::cuda {

[[noreturn]] inline void cuda_fail(const char* what, const char* err, const char* file, int line) {
  std::fprintf(stderr, "carpool: CUDA error at %s:%d: %s: %s\n", file, line, what, err);
  std::abort();
}

inline Status cuda_status(cudaError_t e, const char* what) {
  return Status::error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(e));
}

}  // namespace carpool::cuda

#define CUDA_CHECK(call)                                                             \
  do {                                                                               \
    cudaError_t _e = (call);                                                         \
    if (_e != cudaSuccess)                                                           \
      ::carpool::cuda::cuda_fail(#call, cudaGetErrorString(_e), __FILE__, __LINE__); \
  } while (0)

#define CUBLAS_CHECK(call)                                                              \
  do {                                                                                  \
    cublasStatus_t _s = (call);                                                         \
    if (_s != CUBLAS_STATUS_SUCCESS)                                                    \
      ::carpool::cuda::cuda_fail(#call, cublasGetStatusString(_s), __FILE__, __LINE__); \
  } while (0)

#define CUDA_TRY(call)                                                     \
  do {                                                                     \
    cudaError_t _e = (call);                                               \
    if (_e != cudaSuccess) return ::carpool::cuda::cuda_status(_e, #call); \
  } while (0)

// After every kernel launch: launch-configuration errors always; with `sync` (debug mode) also
// wait for the kernel so a fault is reported at the launch that caused it.
#define CUDA_CHECK_LAUNCH(stream, sync)                  \
  do {                                                   \
    CUDA_CHECK(cudaGetLastError());                      \
    if (sync) CUDA_CHECK(cudaStreamSynchronize(stream)); \
  } while (0)
