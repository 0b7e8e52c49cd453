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

// The int8 KV cache: the ops that write and read it, against references that read the values the
// cache holds (each KV head rounded to int8 with its scale).
TEST(CpuConformance, Int8KvCache) {
  CpuBackendOptions opts;
  opts.n_threads = 2;
  opts.kv_dtype = DType::kI8;
  std::unique_ptr<Backend> backend = make_cpu_backend(opts);
  for (const char* op : {"attention", "kv_write"}) {
    conformance::Options options;
    options.tol = conformance::default_tolerances(backend->activation_dtype(), true);
    options.only_op = op;
    std::vector<conformance::CaseResult> results = conformance::run_conformance(*backend, options);
    ASSERT_GT(results.size(), 2u) << op;
    EXPECT_EQ(conformance::print_results(results, stdout), 0) << op;
    for (const auto& r : results)
      EXPECT_TRUE(r.passed) << r.op << " " << r.name << " err " << r.error;
  }
}

TEST(CpuConformance, SingleThread) {
  CpuBackendOptions opts;
  opts.n_threads = 1;
  run_suite(opts);
}

}  // namespace
}  // namespace carpool
