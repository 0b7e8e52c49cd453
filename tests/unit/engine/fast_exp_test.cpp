// exp_nonpositive against std::exp (double) over [-87, 0], its ends, NaN and +inf.
#include "engine/fast_exp.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace carpool {
namespace {

TEST(FastExp, MatchesStdExpOverTheRange) {
  double worst = 0;
  for (int i = 0; i <= 870000; ++i) {
    const float x = -static_cast<float>(i) * 1e-4f;
    const double want = std::exp(static_cast<double>(x));
    const double got = exp_nonpositive(x);
    worst = std::max(worst, std::fabs(got - want) / want);
  }
  EXPECT_LT(worst, 2e-7);  // 9.7e-8 measured
}

TEST(FastExp, EndsOfTheRange) {
  EXPECT_EQ(exp_nonpositive(0.f), 1.f);
  EXPECT_EQ(exp_nonpositive(-88.f), 0.f);
  EXPECT_EQ(exp_nonpositive(-std::numeric_limits<float>::infinity()), 0.f);
  EXPECT_GT(exp_nonpositive(-86.9f), 0.f);
  EXPECT_EQ(exp_nonpositive(std::numeric_limits<float>::quiet_NaN()), 0.f);
  EXPECT_EQ(exp_nonpositive(std::numeric_limits<float>::infinity()), 1.f);
}

}  // namespace
}  // namespace carpool
