#include "telemetry/gpu_probe.h"

#include <cstring>

namespace carpool::telemetry {
namespace {

std::string nvml_error(const NvmlApi& api, nvml::Return r) {
  const char* s = api.error_string ? api.error_string(r) : nullptr;
  return s ? std::string(s) : "NVML error " + std::to_string(r);
}

}  // namespace

Result<std::unique_ptr<GpuProbe>> GpuProbe::open(NvmlApi api, int index) {
  if (!api.init || !api.device_get_count || !api.device_get_handle_by_index)
    return Status::error("NVML function table incomplete");
  nvml::Return r = api.init();
  if (r != nvml::kSuccess) return Status::error("nvmlInit failed: " + nvml_error(api, r));
  std::unique_ptr<GpuProbe> p(new GpuProbe(std::move(api), index));
  unsigned int count = 0;
  r = p->api_.device_get_count(&count);
  if (r != nvml::kSuccess || index < 0 || static_cast<unsigned int>(index) >= count)
    return Status::error("no NVML device " + std::to_string(index) + " (" + std::to_string(count) +
                         " found)");
  r = p->api_.device_get_handle_by_index(static_cast<unsigned int>(index), &p->device_);
  if (r != nvml::kSuccess)
    return Status::error("nvmlDeviceGetHandleByIndex failed: " + nvml_error(p->api_, r));
  if (p->api_.device_get_name) {
    char buf[128] = {};
    if (p->api_.device_get_name(p->device_, buf, sizeof(buf) - 1) == nvml::kSuccess) p->name_ = buf;
  }
  const NvmlApi& a = p->api_;
  if (a.gpm_query_device_support && a.gpm_sample_alloc && a.gpm_sample_free && a.gpm_sample_get &&
      a.gpm_metrics_get) {
    nvml::GpmSupport support{nvml::kGpmSupportVersion, 0};
    if (a.gpm_query_device_support(p->device_, &support) == nvml::kSuccess &&
        support.isSupportedDevice) {
      if (a.gpm_sample_alloc(&p->samples_[0]) == nvml::kSuccess &&
          a.gpm_sample_alloc(&p->samples_[1]) == nvml::kSuccess) {
        p->gpm_supported_ = true;
        p->metrics_ = std::make_unique<nvml::GpmMetricsGet>();
      }
    }
  }
  return p;
}

GpuProbe::~GpuProbe() {
  for (nvml::GpmSample& s : samples_)
    if (s && api_.gpm_sample_free) api_.gpm_sample_free(s);
  if (api_.shutdown) api_.shutdown();
}

GpuReading GpuProbe::sample() {
  GpuReading r;
  r.index = index_;
  r.name = name_;
  if (api_.device_get_utilization_rates) {
    nvml::Utilization u{};
    if (api_.device_get_utilization_rates(device_, &u) == nvml::kSuccess) {
      r.util_gpu = u.gpu / 100.0;
      r.util_memory = u.memory / 100.0;
    }
  }
  if (api_.device_get_memory_info) {
    nvml::Memory m{};
    if (api_.device_get_memory_info(device_, &m) == nvml::kSuccess) {
      r.memory_used_bytes = static_cast<double>(m.used);
      r.memory_total_bytes = static_cast<double>(m.total);
    }
  }
  if (api_.device_get_power_usage) {
    unsigned int mw = 0;
    if (api_.device_get_power_usage(device_, &mw) == nvml::kSuccess) r.power_watts = mw / 1000.0;
  }
  if (api_.device_get_clock_info) {
    unsigned int mhz = 0;
    if (api_.device_get_clock_info(device_, nvml::kClockSm, &mhz) == nvml::kSuccess)
      r.sm_clock_hz = mhz * 1e6;
  }
  if (gpm_supported_) sample_gpm(r);
  return r;
}

void GpuProbe::sample_gpm(GpuReading& r) {
  nvml::GpmSample current = samples_[next_];
  if (api_.gpm_sample_get(device_, current) != nvml::kSuccess) {
    have_previous_ = false;  // the pair is broken; start again next time
    return;
  }
  const bool had_previous = have_previous_;
  nvml::GpmSample previous = samples_[1 - next_];
  next_ = 1 - next_;
  have_previous_ = true;
  if (!had_previous) return;

  static constexpr unsigned int kIds[] = {nvml::kGpmMetricSmUtil, nvml::kGpmMetricSmOccupancy,
                                          nvml::kGpmMetricAnyTensorUtil,
                                          nvml::kGpmMetricDramBwUtil};
  nvml::GpmMetricsGet& m = *metrics_;
  std::memset(&m, 0, sizeof(m));
  m.version = nvml::kGpmMetricsGetVersion;
  m.numMetrics = 4;
  m.sample1 = previous;
  m.sample2 = current;
  for (unsigned int i = 0; i < 4; ++i) m.metrics[i].metricId = kIds[i];
  if (api_.gpm_metrics_get(&m) != nvml::kSuccess) return;
  std::optional<double>* outs[] = {&r.sm_util, &r.sm_occupancy, &r.tensor_util, &r.dram_bw_util};
  for (unsigned int i = 0; i < 4; ++i) {
    const nvml::GpmMetric& g = m.metrics[i];
    if (g.nvmlReturn == nvml::kSuccess && g.value >= 0) *outs[i] = g.value / 100.0;
  }
}

}  // namespace carpool::telemetry
