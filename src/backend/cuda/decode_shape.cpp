// decode_shape: the CTA shape and context split of the decode attention launch (kernels.h).
#include <algorithm>

#include "backend/cuda/kernels.h"

namespace carpool::cuda {

DecodeShape decode_shape(const DecodeShapeInput& in) {
  DecodeShape out;
  const int64_t sms = std::max(in.sm_count, 1);
  auto slots = [&](int warps) {
    const int per_sm =
        in.ctas_per_sm > 0 ? in.ctas_per_sm : std::max(warps == 4 ? in.resident4 : in.resident2, 1);
    return int64_t{per_sm} * sms;
  };
  out.warps = in.warps == 2 || in.warps == 4 ? in.warps : (in.ctas <= slots(4) ? 4 : 2);
  int64_t splits = 1;
  if (in.ctas > 0) splits = std::min(slots(out.warps) / in.ctas, std::max<int64_t>(in.tiles, 1));
  out.splits = static_cast<int>(std::clamp<int64_t>(splits, 1, 1024));
  return out;
}

}  // namespace carpool::cuda
