// GpuProbe: one GPU's hardware counters through NVML, sampled by the probe thread about once a
// second (never on the step loop).
//
// Every figure is optional: a missing library, an unsupported query or a failed call leaves it
// unset, and it is shown as unavailable, never as zero. Ratios are 0..1.
//   util_gpu      NVML utilization.gpu: fraction of the sample period in which any kernel ran
//                 (overstates: one tiny kernel counts as busy)
//   util_memory   NVML utilization.memory: fraction of time device memory was read or written
//   sm_util, sm_occupancy, tensor_util, dram_bw_util: GPM (Hopper and newer), over the interval
//                 between this sample and the previous one, so the first sample has none.
//
// Thread-safety: one thread at a time (the probe thread).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "telemetry/nvml_api.h"
#include "util/status.h"

namespace carpool::telemetry {

struct GpuReading {
  int index = 0;
  std::string name;  // "NVIDIA H200"
  std::optional<double> util_gpu, util_memory;
  std::optional<double> memory_used_bytes, memory_total_bytes;
  std::optional<double> power_watts, sm_clock_hz;
  std::optional<double> sm_util, sm_occupancy, tensor_util, dram_bw_util;  // GPM
};

class GpuProbe {
 public:
  // Initializes NVML through `api` and opens device `index`. Error: init fails, no such device.
  static Result<std::unique_ptr<GpuProbe>> open(NvmlApi api, int index);
  ~GpuProbe();
  GpuProbe(const GpuProbe&) = delete;
  GpuProbe& operator=(const GpuProbe&) = delete;

  const std::string& name() const { return name_; }
  bool gpm_supported() const { return gpm_supported_; }
  GpuReading sample();

 private:
  GpuProbe(NvmlApi api, int index) : api_(std::move(api)), index_(index) {}
  void sample_gpm(GpuReading& r);

  NvmlApi api_;
  int index_ = 0;
  nvml::Device device_ = nullptr;
  std::string name_;
  bool gpm_supported_ = false;
  nvml::GpmSample samples_[2] = {nullptr, nullptr};
  int next_ = 0;  // which buffer the next sample goes to
  bool have_previous_ = false;
  std::unique_ptr<nvml::GpmMetricsGet> metrics_;  // large (13 KB): on the heap, allocated once
};

}  // namespace carpool::telemetry
