#include "telemetry/derived.h"

namespace carpool::telemetry {

const char* bound_name(Bound b) {
  switch (b) {
    case Bound::kOverhead:
      return "overhead";
    case Bound::kMemory:
      return "memory";
    case Bound::kCompute:
      return "compute";
  }
  return "?";
}

DerivedFigures derive(const StepSums& s, const Peaks& peaks, std::optional<double> window_s) {
  DerivedFigures d;
  const double t = window_s ? *window_s : s.active_s;
  if (t > 0) {
    d.busy = s.device_s / t;
    if (*d.busy > 1) d.busy = 1.0;  // clock granularity
    if (peaks.flops_per_s > 0) d.mfu = s.flops / (t * peaks.flops_per_s);
    if (peaks.bandwidth_bytes_per_s > 0) d.mbu = s.bytes / (t * peaks.bandwidth_bytes_per_s);
  }
  if (s.bytes > 0) d.arithmetic_intensity = s.flops / s.bytes;
  if (s.steps > 0 && s.active_s > 0) {
    if (s.device_s / s.active_s < kOverheadBusyThreshold) {
      d.bound = Bound::kOverhead;
    } else if (auto ridge = peaks.ridge_flops_per_byte(); ridge && d.arithmetic_intensity) {
      d.bound = *d.arithmetic_intensity < *ridge ? Bound::kMemory : Bound::kCompute;
    }
  }
  return d;
}

}  // namespace carpool::telemetry
