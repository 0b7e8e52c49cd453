// Backend conformance suite: runs every Backend op on fresh random inputs over many dtypes and
// awkward shapes and compares each result with a straightforward host reference computed in
// double precision.
//
// The reference dequantizes weights with carpool's dequantize_row (backend/cpu/quants.h), which
// is itself checked bit for bit against the gguf package (tests/golden/quants/). Inputs are
// rounded to the backend's activation dtype before the reference sees them, so a BF16 backend is
// judged only on its arithmetic and output rounding.
//
// Error metric per case: max |out - ref| / max |ref| (normalized max error; NaN or Inf -> fail).
// For matmul the denominator is at least the largest L2 norm of a dot product's terms, so an
// output that cancels to near zero does not inflate the error.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace carpool::conformance {

struct CaseResult {
  std::string op;    // "matmul", "attention", ...
  std::string name;  // shape and dtype details
  double error = 0;  // normalized max error
  double tolerance = 0;
  bool passed = false;
};

// Tolerances on the normalized max error. Defaults depend on the backend's activation dtype.
struct Tolerances {
  double ops = 1e-5;             // norms, rope, swiglu, attention, embed, kv_write
  double matmul_float_w = 1e-5;  // matmul with F32/F16 weights
  double matmul_bf16_w = 1e-5;   // matmul with BF16 weights
  double matmul_quant_w = 1e-5;  // matmul with quantized weights
};

// F32 activations: 1e-5 everywhere; BF16 activations: 2e-2. quantized_activations adds the error
// of 8-bit activation quantization (CPU default path; observed up to 1.2e-2): 3e-2 for
// quantized weights; and of bf16 activations for BF16 weights (the CPU's vdpbf16ps path;
// observed up to 2.3e-3): 1e-2.
Tolerances default_tolerances(DType activation_dtype, bool quantized_activations);

struct Options {
  uint64_t seed = 1234;
  Tolerances tol;
  std::string only_op;  // run only this op ("" = all)
};

// Runs every case on `backend`. The backend must be freshly usable (allocations are freed).
std::vector<CaseResult> run_conformance(Backend& backend, const Options& options);

// One line per case plus a summary; returns the number of failed cases.
int print_results(const std::vector<CaseResult>& results, std::FILE* out);

// Parameters of a Backend::sample_rows row (the uniform apart).
struct DrawParams {
  float temperature = 1.f;
  int top_k = 0;
  float top_p = 1.f;
  float min_p = 0.f;
};
// The probability of each token of the logits row x [vocab] under sample_rows' rule (the host
// sampler's without penalties), computed the plain way: sorts and double sums. The row's scaled
// logits must have a finite maximum and the temperature must be above 0.
std::vector<double> reference_draw(const float* x, int64_t vocab, const DrawParams& p);

}  // namespace carpool::conformance
