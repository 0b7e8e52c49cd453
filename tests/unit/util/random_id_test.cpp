#include "util/random_id.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <thread>

namespace carpool {
namespace {

bool lower_hex(const std::string& s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

TEST(RandomId, IsTwentyFourLowercaseHexDigitsAndDoesNotRepeat) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = random_hex_id();
    ASSERT_EQ(id.size(), 24u) << id;
    ASSERT_TRUE(lower_hex(id)) << id;
    ASSERT_TRUE(seen.insert(id).second) << "repeated: " << id;
  }
}

TEST(RandomId, ThreadsDrawDifferentIds) {
  std::string a, b;
  std::thread t1([&] { a = random_hex_id(); });
  std::thread t2([&] { b = random_hex_id(); });
  t1.join();
  t2.join();
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace carpool
