// Derived utilization figures of one time bucket, from the sums the step loop recorded.
//
//   busy                  device seconds ÷ bucket seconds (all time, idle included)
//   mfu                   FLOPs ÷ (bucket seconds × peak FLOP/s)
//   mbu                   bytes (weights + KV read + KV write) ÷ (bucket seconds × peak B/s)
// Per phase (steps with any prefill chunk count as "prefill", the others as "decode"), the same
// figures divide by the time the loop spent on that phase's steps instead of the bucket:
//   busy.<phase>          device seconds ÷ active seconds of those steps
//   mfu.<phase>, mbu.<phase>
// and for all steps together and each phase:
//   arithmetic_intensity  FLOPs ÷ bytes, to compare with the ridge point peak FLOP/s ÷ peak B/s
//   bound                 "overhead" when the device was busy less than half the loop's active
//                         time (it waits for the host between steps); else "memory" when the
//                         intensity is below the ridge point, "compute" above it; none without
//                         steps (idle).
#pragma once

#include <optional>
#include <string>

#include "telemetry/peaks.h"

namespace carpool::telemetry {

constexpr double kOverheadBusyThreshold = 0.5;

enum class Bound { kOverhead, kMemory, kCompute };
const char* bound_name(Bound b);  // "overhead", "memory", "compute"

// Sums over a bucket, for all steps or one phase.
struct StepSums {
  double steps = 0;
  double flops = 0;
  double bytes = 0;  // weights + KV read + KV write
  double device_s = 0;
  double active_s = 0;  // step time plus the host gaps between busy steps
};

struct DerivedFigures {
  std::optional<double> busy, mfu, mbu, arithmetic_intensity;
  std::optional<Bound> bound;
};

// `window_s`: the bucket width for whole-time figures; nullopt: per-phase figures (divide by
// active_s). MFU/MBU are unavailable when the peak is unknown; everything is unavailable when
// the divisor is zero.
DerivedFigures derive(const StepSums& sums, const Peaks& peaks, std::optional<double> window_s);

}  // namespace carpool::telemetry
