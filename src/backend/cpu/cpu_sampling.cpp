// CpuBackend: sampling ops (argmax_rows: greedy tokens without copying the logits out).
#include <algorithm>

#include "backend/cpu/cpu_backend.h"
#include "util/argmax.h"
#include "util/check.h"

namespace carpool {

bool CpuBackend::argmax_rows(Tensor out, const Tensor& logits) {
  const OpScope scope(*this, "argmax_rows");
  CARPOOL_CHECK(logits.dtype == DType::kF32 && logits.cols >= 1);
  CARPOOL_CHECK(out.dtype == DType::kI32 && out.rows == logits.rows && out.cols == 1);
  const float* x = static_cast<const float*>(logits.data);
  int32_t* ids = static_cast<int32_t*>(out.data);
  const int64_t vocab = logits.cols;
  // first_of_largest is the host sampler's own greedy choice (std::max_element's index, NaN
  // handling included).
  pool_.parallel_for(logits.rows, 1, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) {
      ids[r] = first_of_largest(x + r * vocab, static_cast<size_t>(vocab));
    }
  });
  return true;
}

}  // namespace carpool
