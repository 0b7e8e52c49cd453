// Conformance cases specific to the CUDA backend, beyond the shared suite: weights dequantized on
// the device (every GGUF type, compared with the host dequantizer), device-made random weights,
// decode attention over long contexts (the split-KV path the suite's short contexts never reach),
// and matmuls at a model's real widths. Same result type and metric as the suite.
#pragma once

#include <vector>

#include "backend/backend.h"
#include "conformance/conformance.h"

namespace carpool::cuda_tools {

std::vector<conformance::CaseResult> run_cuda_extra_cases(Backend& b, uint64_t seed,
                                                          double tolerance);

// Attention at realistic sizes against an f32 device reference (attention_big_cases.cpp); ops
// "attention-ref" and "attention-big", kept out of `--only attention` (slow under a sanitizer).
void run_attention_big_cases(Backend& b, uint64_t seed, std::vector<conformance::CaseResult>& out);

// Fused projections (fused_projection_cases.cpp): load_weight_concat, rope_kv_write_qkv and
// swiglu_fused against the unfused ops on the same inputs.
void run_fused_projection_cases(Backend& b, uint64_t seed,
                                std::vector<conformance::CaseResult>& out);

}  // namespace carpool::cuda_tools
