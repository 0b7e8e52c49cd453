// Random walks through a JSON-mode state (JsonState or SchemaState) over a vocabulary of single
// bytes, for the no-dead-end tests: at every step some token must be allowed, the end exactly
// when the object is closed, and the picked byte accepted.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "engine/json_constraint.h"

namespace carpool {

// Id 0: the end; id b + 1: byte b.
inline TokenBytes single_byte_vocab() {
  TokenBytes v;
  v.text.resize(257);
  for (int b = 0; b < 256; ++b) {
    v.text[static_cast<size_t>(b + 1)] = std::string(1, static_cast<char>(b));
  }
  v.end_ids = {0};
  v.index();
  return v;
}

// `walks` walks of at most `steps` bytes from `start`; at each step a random allowed byte, or,
// where `favour(g)` says so, one from `favoured` when it is allowed. *closed: walks that closed
// the object. Check HasFatalFailure() after.
template <class State>
void random_walks(const State& start, const std::string& favoured,
                  const std::function<bool(std::mt19937&)>& favour, int walks, int steps,
                  uint32_t seed, int* closed) {
  const TokenBytes v = single_byte_vocab();
  std::mt19937 g(seed);
  *closed = 0;
  for (int walk = 0; walk < walks; ++walk) {
    State s = start;
    for (int step = 0; step < steps; ++step) {
      std::vector<float> logits(v.text.size(), 0.f);
      mask_tokens(s, v, logits);
      std::vector<int32_t> ok;
      for (size_t i = 0; i < logits.size(); ++i) {
        if (std::isfinite(logits[i])) ok.push_back(static_cast<int32_t>(i));
      }
      ASSERT_FALSE(ok.empty());
      ASSERT_EQ(std::isfinite(logits[0]), s.complete());
      if (s.complete()) {
        ASSERT_EQ(ok, std::vector<int32_t>{0});  // closed: the end only
        ++*closed;
        break;
      }
      int32_t pick = ok[g() % ok.size()];
      if (favour(g)) {
        const int32_t f = static_cast<uint8_t>(favoured[g() % favoured.size()]) + 1;
        if (std::isfinite(logits[static_cast<size_t>(f)])) pick = f;
      }
      ASSERT_TRUE(s.feed(v.text[static_cast<size_t>(pick)]));
    }
  }
}

}  // namespace carpool
