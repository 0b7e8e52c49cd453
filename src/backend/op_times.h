// Per-op device time, for profiling a step op by op (`carpool bench --op-times`).
//
// A backend with op timing on records, for every op it runs, the time its device spent on it
// under a key naming the op and its shape ("matmul m1 576->1536"), with the bytes and FLOPs the
// op must move and do where they are known (0 otherwise), so a table can set each op against the
// bandwidth and compute roofs. OpTimeTable is the accumulator both backends use.
//
// Thread-safety: none; the backend's owner thread only.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "backend/dtype.h"

namespace carpool {

struct OpTime {
  std::string op;      // op and shape
  int64_t calls = 0;   // since the last take
  double seconds = 0;  // device time, summed over the calls
  double bytes = 0;    // bytes the calls must move (weights for a matmul), 0 if not counted
  double flops = 0;    // FLOPs of the calls, 0 if not counted
};

// "matmul m{m} {k}->{n} {weight type}{suffix}": the key of a matmul in both backends.
std::string matmul_op_key(int64_t m, int64_t k, int64_t n, DType w, const char* suffix = "");

// What an op's timing scope records besides the time (the backends' OpScope classes derive
// from it): the key and the counted bytes and FLOPs, set by describe() only while timing is on.
class OpDescription {
 public:
  void describe(std::string key, double bytes, double flops) {
    key_ = std::move(key);
    bytes_ = bytes;
    flops_ = flops;
  }

 protected:
  std::string key_;  // empty: the op's name alone
  double bytes_ = 0, flops_ = 0;
};

class OpTimeTable {
 public:
  void add(const std::string& op, double seconds, double bytes, double flops);
  // The totals since the last take, longest first, and a fresh table.
  std::vector<OpTime> take();

 private:
  std::map<std::string, OpTime> by_op_;
};

}  // namespace carpool
