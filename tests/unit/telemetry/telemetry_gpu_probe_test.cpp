// The NVML/GPM probe against a test double of NVML (a function table filled with fakes).
#include <gtest/gtest.h>

#include <vector>

#include "telemetry/gpu_probe.h"

namespace carpool::telemetry {
namespace {

// --- the fake NVML: global state the fake functions read and write ---
struct FakeNvml {
  nvml::Return init_result = nvml::kSuccess;
  unsigned int count = 1;
  nvml::Return util_result = nvml::kSuccess;
  bool gpm_device = true;
  int inits = 0, shutdowns = 0, allocs = 0, frees = 0, gets = 0;
  std::vector<nvml::GpmSample> got;  // samples passed to SampleGet, in order
  nvml::GpmSample last_sample1 = nullptr, last_sample2 = nullptr;
  unsigned int last_num_metrics = 0;
};
FakeNvml g;
nvml::Device const kDevice = reinterpret_cast<nvml::Device>(0x1000);
int sample_storage[8];

nvml::Return fake_init() {
  ++g.inits;
  return g.init_result;
}
nvml::Return fake_shutdown() {
  ++g.shutdowns;
  return nvml::kSuccess;
}
nvml::Return fake_count(unsigned int* n) {
  *n = g.count;
  return nvml::kSuccess;
}
nvml::Return fake_handle(unsigned int i, nvml::Device* d) {
  if (i >= g.count) return 2;  // NVML_ERROR_INVALID_ARGUMENT
  *d = kDevice;
  return nvml::kSuccess;
}
nvml::Return fake_name(nvml::Device d, char* buf, unsigned int len) {
  EXPECT_EQ(d, kDevice);
  snprintf(buf, len, "NVIDIA H200");
  return nvml::kSuccess;
}
nvml::Return fake_memory(nvml::Device, nvml::Memory* m) {
  *m = {150'000'000'000ULL, 100'000'000'000ULL, 50'000'000'000ULL};
  return nvml::kSuccess;
}
nvml::Return fake_util(nvml::Device, nvml::Utilization* u) {
  if (g.util_result != nvml::kSuccess) return g.util_result;
  *u = {34, 7};
  return nvml::kSuccess;
}
nvml::Return fake_power(nvml::Device, unsigned int* mw) {
  *mw = 123'456;
  return nvml::kSuccess;
}
nvml::Return fake_clock(nvml::Device, int type, unsigned int* mhz) {
  if (type != nvml::kClockSm) return nvml::kErrorNotSupported;
  *mhz = 1980;
  return nvml::kSuccess;
}
nvml::Return fake_gpm_support(nvml::Device, nvml::GpmSupport* s) {
  EXPECT_EQ(s->version, nvml::kGpmSupportVersion);
  s->isSupportedDevice = g.gpm_device ? 1 : 0;
  return nvml::kSuccess;
}
nvml::Return fake_alloc(nvml::GpmSample* s) {
  *s = reinterpret_cast<nvml::GpmSample>(&sample_storage[g.allocs++]);
  return nvml::kSuccess;
}
nvml::Return fake_free(nvml::GpmSample) {
  ++g.frees;
  return nvml::kSuccess;
}
nvml::Return fake_sample_get(nvml::Device d, nvml::GpmSample s) {
  EXPECT_EQ(d, kDevice);
  ++g.gets;
  g.got.push_back(s);
  return nvml::kSuccess;
}
nvml::Return fake_metrics_get(nvml::GpmMetricsGet* m) {
  EXPECT_EQ(m->version, nvml::kGpmMetricsGetVersion);
  g.last_sample1 = m->sample1;
  g.last_sample2 = m->sample2;
  g.last_num_metrics = m->numMetrics;
  for (unsigned int i = 0; i < m->numMetrics; ++i) {
    nvml::GpmMetric& x = m->metrics[i];
    x.nvmlReturn = nvml::kSuccess;
    switch (x.metricId) {
      case nvml::kGpmMetricSmUtil:
        x.value = 98.9;
        break;
      case nvml::kGpmMetricSmOccupancy:
        x.nvmlReturn = nvml::kErrorNotSupported;
        break;
      case nvml::kGpmMetricAnyTensorUtil:
        x.value = 0.0;
        break;
      case nvml::kGpmMetricDramBwUtil:
        x.value = 88.6;
        break;
      default:
        ADD_FAILURE() << "unexpected metric " << x.metricId;
    }
  }
  return nvml::kSuccess;
}

NvmlApi fake_api(bool with_gpm = true) {
  NvmlApi a;
  a.init = fake_init;
  a.shutdown = fake_shutdown;
  a.device_get_count = fake_count;
  a.device_get_handle_by_index = fake_handle;
  a.device_get_name = fake_name;
  a.device_get_memory_info = fake_memory;
  a.device_get_utilization_rates = fake_util;
  a.device_get_power_usage = fake_power;
  a.device_get_clock_info = fake_clock;
  if (with_gpm) {
    a.gpm_query_device_support = fake_gpm_support;
    a.gpm_sample_alloc = fake_alloc;
    a.gpm_sample_free = fake_free;
    a.gpm_sample_get = fake_sample_get;
    a.gpm_metrics_get = fake_metrics_get;
  }
  return a;
}

class TelemetryGpuProbe : public ::testing::Test {
 protected:
  void SetUp() override { g = FakeNvml{}; }
};

TEST_F(TelemetryGpuProbe, MissingLibraryIsAnError) {
  auto api = load_nvml("libcarpool-no-such-nvml.so.1");
  ASSERT_FALSE(api.is_ok());
  EXPECT_NE(api.error().find("NVML not available"), std::string::npos);
}

TEST_F(TelemetryGpuProbe, ReadsNvmlAndGpmOverPairsOfSamples) {
  {
    auto probe = GpuProbe::open(fake_api(), 0);
    ASSERT_TRUE(probe.is_ok()) << probe.error();
    EXPECT_EQ((*probe)->name(), "NVIDIA H200");
    EXPECT_TRUE((*probe)->gpm_supported());
    EXPECT_EQ(g.allocs, 2);

    const GpuReading first = (*probe)->sample();
    EXPECT_EQ(first.name, "NVIDIA H200");
    EXPECT_DOUBLE_EQ(*first.util_gpu, 0.34);
    EXPECT_DOUBLE_EQ(*first.util_memory, 0.07);
    EXPECT_DOUBLE_EQ(*first.memory_used_bytes, 50e9);
    EXPECT_DOUBLE_EQ(*first.memory_total_bytes, 150e9);
    EXPECT_DOUBLE_EQ(*first.power_watts, 123.456);
    EXPECT_DOUBLE_EQ(*first.sm_clock_hz, 1.98e9);
    // One GPM sample is not an interval: no GPM figures yet.
    EXPECT_FALSE(first.sm_util.has_value());
    EXPECT_FALSE(first.dram_bw_util.has_value());

    const GpuReading second = (*probe)->sample();
    ASSERT_EQ(g.got.size(), 2u);
    EXPECT_NE(g.got[0], g.got[1]);        // two buffers
    EXPECT_EQ(g.last_sample1, g.got[0]);  // earlier sample first
    EXPECT_EQ(g.last_sample2, g.got[1]);
    EXPECT_EQ(g.last_num_metrics, 4u);
    EXPECT_DOUBLE_EQ(*second.sm_util, 0.989);
    EXPECT_DOUBLE_EQ(*second.dram_bw_util, 0.886);
    ASSERT_TRUE(second.tensor_util.has_value());  // a real zero stays a zero
    EXPECT_EQ(*second.tensor_util, 0.0);
    EXPECT_FALSE(second.sm_occupancy.has_value());  // unsupported metric: unavailable

    const GpuReading third = (*probe)->sample();  // the buffers alternate
    ASSERT_EQ(g.got.size(), 3u);
    EXPECT_EQ(g.got[2], g.got[0]);
    EXPECT_EQ(g.last_sample1, g.got[1]);
    EXPECT_EQ(g.last_sample2, g.got[2]);
    EXPECT_TRUE(third.sm_util.has_value());
  }
  EXPECT_EQ(g.frees, 2);
  EXPECT_EQ(g.shutdowns, 1);
}

TEST_F(TelemetryGpuProbe, UnsupportedQueriesAreUnavailableNotZero) {
  g.util_result = nvml::kErrorNotSupported;
  g.gpm_device = false;
  auto probe = GpuProbe::open(fake_api(), 0);
  ASSERT_TRUE(probe.is_ok());
  EXPECT_FALSE((*probe)->gpm_supported());
  (*probe)->sample();
  const GpuReading r = (*probe)->sample();
  EXPECT_FALSE(r.util_gpu.has_value());
  EXPECT_FALSE(r.util_memory.has_value());
  EXPECT_FALSE(r.sm_util.has_value());
  EXPECT_TRUE(r.memory_used_bytes.has_value());
  EXPECT_EQ(g.gets, 0);
}

TEST_F(TelemetryGpuProbe, OlderDriverWithoutGpmSymbols) {
  auto probe = GpuProbe::open(fake_api(/*with_gpm=*/false), 0);
  ASSERT_TRUE(probe.is_ok());
  EXPECT_FALSE((*probe)->gpm_supported());
  EXPECT_FALSE((*probe)->sample().sm_util.has_value());
}

TEST_F(TelemetryGpuProbe, InitFailureAndMissingDevice) {
  g.init_result = 9;  // NVML_ERROR_DRIVER_NOT_LOADED
  EXPECT_FALSE(GpuProbe::open(fake_api(), 0).is_ok());
  EXPECT_EQ(g.shutdowns, 0);
  g.init_result = nvml::kSuccess;
  auto none = GpuProbe::open(fake_api(), 3);
  ASSERT_FALSE(none.is_ok());
  EXPECT_NE(none.error().find("no NVML device 3"), std::string::npos);
  EXPECT_EQ(g.shutdowns, 1);  // initialized, then shut down again
}

}  // namespace
}  // namespace carpool::telemetry
