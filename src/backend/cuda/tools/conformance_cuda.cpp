// carpool-conformance-cuda: runs the backend conformance suite, plus the CUDA-specific cases, on
// the CUDA backend and prints one line per case and a summary; --json writes every case.
//
//   carpool-conformance-cuda [--json FILE] [--only OP] [--seed N] [--device N] [--no-debug-sync]
//
// Exit status: 0 all passed, 1 some case failed, 2 no usable GPU or bad arguments.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "backend/cuda/cuda_backend.h"
#include "conformance/conformance.h"
#include "cuda_extra_cases.h"
#include "json_writer.h"

using namespace carpool;

namespace {

bool write_json(const std::string& path, const std::string& device, const std::string& error,
                const std::vector<conformance::CaseResult>& results, double seconds) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return false;
  int failed = 0;
  for (const auto& r : results) failed += !r.passed;
  std::fprintf(f, "{\"tool\": \"carpool-conformance-cuda\", \"device\": %s, \"error\": %s,\n",
               cuda_tools::json_string(device).c_str(),
               error.empty() ? "null" : cuda_tools::json_string(error).c_str());
  std::fprintf(f, " \"cases\": %zu, \"failed\": %d, \"seconds\": %.2f, \"results\": [\n",
               results.size(), failed, seconds);
  for (size_t i = 0; i < results.size(); ++i) {
    const auto& r = results[i];
    std::fprintf(
        f, "  {\"op\": %s, \"case\": %s, \"error\": %s, \"tolerance\": %s, \"passed\": %s}%s\n",
        cuda_tools::json_string(r.op).c_str(), cuda_tools::json_string(r.name).c_str(),
        cuda_tools::json_number(r.error).c_str(), cuda_tools::json_number(r.tolerance).c_str(),
        r.passed ? "true" : "false", i + 1 < results.size() ? "," : "");
  }
  std::fprintf(f, "]}\n");
  return std::fclose(f) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_path, only;
  uint64_t seed = 1234;
  CudaBackendOptions opts;
  opts.debug_sync = true;  // a fault names the launch that caused it
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--json")
      json_path = next();
    else if (a == "--only")
      only = next();
    else if (a == "--seed")
      seed = std::strtoull(next().c_str(), nullptr, 10);
    else if (a == "--device")
      opts.device = std::atoi(next().c_str());
    else if (a == "--no-debug-sync")
      opts.debug_sync = false;
    else {
      std::fprintf(stderr,
                   "usage: carpool-conformance-cuda [--json FILE] [--only OP] [--seed N] "
                   "[--device N] [--no-debug-sync]\n");
      return 2;
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto backend = make_cuda_backend(opts);
  if (!backend) {
    std::fprintf(stderr, "carpool-conformance-cuda: %s\n", backend.error().c_str());
    if (!json_path.empty()) write_json(json_path, "", backend.error(), {}, 0);
    return 2;
  }
  Backend& b = **backend;
  std::printf("device: %s\n", b.device_name().c_str());
  conformance::Options o;
  o.seed = seed;
  o.only_op = only;
  o.tol = conformance::default_tolerances(b.activation_dtype(), false);
  std::vector<conformance::CaseResult> results = conformance::run_conformance(b, o);
  std::vector<conformance::CaseResult> extra = cuda_tools::run_cuda_extra_cases(b, seed, o.tol.ops);
  if (only.empty() || only == "attention-big" || only == "attention-ref")
    cuda_tools::run_attention_big_cases(b, seed, extra);
  for (auto& r : extra)
    if (only.empty() || r.op == only) results.push_back(std::move(r));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int failed = conformance::print_results(results, stdout);
  std::printf("conformance: %zu cases, %d failed, %.1f s on %s\n", results.size(), failed, secs,
              b.device_name().c_str());
  if (!json_path.empty() && !write_json(json_path, b.device_name(), "", results, secs)) {
    std::fprintf(stderr, "cannot write %s\n", json_path.c_str());
  }
  return failed == 0 ? 0 : 1;
}
