#include "telemetry/nvml_api.h"

#include <dlfcn.h>

namespace carpool::telemetry {
namespace {

template <typename Fn>
void resolve(void* handle, const char* name, Fn*& out) {
  out = reinterpret_cast<Fn*>(dlsym(handle, name));
}

}  // namespace

Result<NvmlApi> load_nvml(const std::string& path) {
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* err = dlerror();
    return Status::error("NVML not available: " + std::string(err ? err : path));
  }
  NvmlApi api;
  api.library = std::shared_ptr<void>(handle, [](void* h) { dlclose(h); });
  resolve(handle, "nvmlInit_v2", api.init);
  resolve(handle, "nvmlShutdown", api.shutdown);
  resolve(handle, "nvmlErrorString", api.error_string);
  resolve(handle, "nvmlDeviceGetCount_v2", api.device_get_count);
  resolve(handle, "nvmlDeviceGetHandleByIndex_v2", api.device_get_handle_by_index);
  resolve(handle, "nvmlDeviceGetName", api.device_get_name);
  resolve(handle, "nvmlDeviceGetMemoryInfo", api.device_get_memory_info);
  resolve(handle, "nvmlDeviceGetUtilizationRates", api.device_get_utilization_rates);
  resolve(handle, "nvmlDeviceGetPowerUsage", api.device_get_power_usage);
  resolve(handle, "nvmlDeviceGetClockInfo", api.device_get_clock_info);
  resolve(handle, "nvmlGpmQueryDeviceSupport", api.gpm_query_device_support);
  resolve(handle, "nvmlGpmSampleAlloc", api.gpm_sample_alloc);
  resolve(handle, "nvmlGpmSampleFree", api.gpm_sample_free);
  resolve(handle, "nvmlGpmSampleGet", api.gpm_sample_get);
  resolve(handle, "nvmlGpmMetricsGet", api.gpm_metrics_get);
  if (!api.init || !api.shutdown || !api.device_get_count || !api.device_get_handle_by_index)
    return Status::error("NVML library " + path + " lacks nvmlInit_v2 or device functions");
  return api;
}

}  // namespace carpool::telemetry
