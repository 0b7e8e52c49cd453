// Runs the backend conformance suite on the CPU backend in both matmul modes.
#include "conformance/conformance.h"

#include <gtest/gtest.h>

#include <cstdio>

#include "backend/cpu/cpu_backend.h"

namespace carpool {
namespace {

void run_suite(const CpuBackendOptions& opts) {
  std::unique_ptr<Backend> backend = make_cpu_backend(opts);
  conformance::Options options;
  options.tol =
      conformance::default_tolerances(backend->activation_dtype(), opts.quantize_activations);
  std::vector<conformance::CaseResult> results = conformance::run_conformance(*backend, options);
  ASSERT_GT(results.size(), 100u);
  const int failed = conformance::print_results(results, stdout);
  EXPECT_EQ(failed, 0);
  for (const auto& r : results)
    EXPECT_TRUE(r.passed) << r.op << " " << r.name << " err " << r.error;
}

TEST(CpuConformance, ExactMatmulTwoThreads) {
  CpuBackendOptions opts;
  opts.n_threads = 2;
  opts.quantize_activations = false;
  run_suite(opts);
}

TEST(CpuConformance, QuantizedActivationsThreeThreads) {
  CpuBackendOptions opts;
  opts.n_threads = 3;
  opts.quantize_activations = true;
  run_suite(opts);
}

TEST(CpuConformance, SingleThread) {
  CpuBackendOptions opts;
  opts.n_threads = 1;
  run_suite(opts);
}

}  // namespace
}  // namespace carpool
