// The part of NVML carpool uses, declared here from the public nvml.h layout so that the binary
// never links against NVML: load_nvml() opens the library with dlopen at run time, and a machine
// without a GPU simply has no NVML. Tests fill an NvmlApi with their own functions.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "util/status.h"

namespace carpool::telemetry {

namespace nvml {

using Return = int;  // nvmlReturn_t
constexpr Return kSuccess = 0;
constexpr Return kErrorNotSupported = 3;
using Device = struct DeviceOpaque*;        // nvmlDevice_t
using GpmSample = struct GpmSampleOpaque*;  // nvmlGpmSample_t

struct Memory {  // nvmlMemory_t
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};
struct Utilization {  // nvmlUtilization_t: percent of the last sample period
  unsigned int gpu;
  unsigned int memory;
};
constexpr int kClockSm = 1;  // NVML_CLOCK_SM

// GPM (Hopper and newer).
constexpr unsigned int kGpmSupportVersion = 1;
constexpr unsigned int kGpmMetricsGetVersion = 1;
constexpr unsigned int kGpmMetricSmUtil = 2;         // NVML_GPM_METRIC_SM_UTIL (%)
constexpr unsigned int kGpmMetricSmOccupancy = 3;    // NVML_GPM_METRIC_SM_OCCUPANCY (%)
constexpr unsigned int kGpmMetricAnyTensorUtil = 5;  // NVML_GPM_METRIC_ANY_TENSOR_UTIL (%)
constexpr unsigned int kGpmMetricDramBwUtil = 10;    // NVML_GPM_METRIC_DRAM_BW_UTIL (%)
// NVML_GPM_METRIC_MAX differs between driver versions (98 .. 333); the library reads only
// numMetrics entries, and a larger array than any version's is harmless.
constexpr int kGpmMetricArray = 333;

struct GpmSupport {  // nvmlGpmSupport_t
  unsigned int version;
  unsigned int isSupportedDevice;
};
struct GpmMetric {  // nvmlGpmMetric_t
  unsigned int metricId;
  Return nvmlReturn;
  double value;
  struct {
    char* shortName;
    char* longName;
    char* unit;
  } metricInfo;
};
struct GpmMetricsGet {  // nvmlGpmMetricsGet_t
  unsigned int version;
  unsigned int numMetrics;
  GpmSample sample1;
  GpmSample sample2;
  GpmMetric metrics[kGpmMetricArray];
};

}  // namespace nvml

// Function table. A null entry means the symbol is missing (older drivers lack GPM).
struct NvmlApi {
  nvml::Return (*init)() = nullptr;      // nvmlInit_v2
  nvml::Return (*shutdown)() = nullptr;  // nvmlShutdown
  const char* (*error_string)(nvml::Return) = nullptr;
  nvml::Return (*device_get_count)(unsigned int*) = nullptr;  // nvmlDeviceGetCount_v2
  nvml::Return (*device_get_handle_by_index)(unsigned int, nvml::Device*) = nullptr;  // _v2
  nvml::Return (*device_get_name)(nvml::Device, char*, unsigned int) = nullptr;
  nvml::Return (*device_get_memory_info)(nvml::Device, nvml::Memory*) = nullptr;
  nvml::Return (*device_get_utilization_rates)(nvml::Device, nvml::Utilization*) = nullptr;
  nvml::Return (*device_get_power_usage)(nvml::Device, unsigned int* milliwatts) = nullptr;
  nvml::Return (*device_get_clock_info)(nvml::Device, int type, unsigned int* mhz) = nullptr;
  nvml::Return (*gpm_query_device_support)(nvml::Device, nvml::GpmSupport*) = nullptr;
  nvml::Return (*gpm_sample_alloc)(nvml::GpmSample*) = nullptr;
  nvml::Return (*gpm_sample_free)(nvml::GpmSample) = nullptr;
  nvml::Return (*gpm_sample_get)(nvml::Device, nvml::GpmSample) = nullptr;
  nvml::Return (*gpm_metrics_get)(nvml::GpmMetricsGet*) = nullptr;

  std::shared_ptr<void> library;  // the dlopen handle (dlclose on release); null for fakes
};

// dlopen(path) and resolve the table. Errors: the library is missing, or nvmlInit_v2 or another
// required (non-GPM) symbol is absent. Does not call init().
Result<NvmlApi> load_nvml(const std::string& path = "libnvidia-ml.so.1");

}  // namespace carpool::telemetry
