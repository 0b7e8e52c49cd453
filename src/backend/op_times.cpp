#include "backend/op_times.h"

#include <algorithm>
#include <cstdio>
#include <string_view>

namespace carpool {

std::string matmul_op_key(int64_t m, int64_t k, int64_t n, DType w, const char* suffix) {
  char buf[128];
  const std::string_view t = dtype_name(w);
  std::snprintf(buf, sizeof buf, "matmul m%lld %lld->%lld %.*s%s", static_cast<long long>(m),
                static_cast<long long>(k), static_cast<long long>(n), static_cast<int>(t.size()),
                t.data(), suffix);
  return buf;
}

void OpTimeTable::add(const std::string& op, double seconds, double bytes, double flops) {
  OpTime& t = by_op_[op];
  if (t.calls == 0) t.op = op;
  ++t.calls;
  t.seconds += seconds;
  t.bytes += bytes;
  t.flops += flops;
}

std::vector<OpTime> OpTimeTable::take() {
  std::vector<OpTime> out;
  out.reserve(by_op_.size());
  for (auto& [op, t] : by_op_) out.push_back(std::move(t));
  by_op_.clear();
  std::stable_sort(out.begin(), out.end(),
                   [](const OpTime& a, const OpTime& b) { return a.seconds > b.seconds; });
  return out;
}

}  // namespace carpool
