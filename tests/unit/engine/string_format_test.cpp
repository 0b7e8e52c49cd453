// The string formats structured output enforces: whole values, prefixes that can still become
// one, and calendar and clock ranges (a value these accept, Python's datetime parses).
#include "engine/string_format.h"

#include <gtest/gtest.h>

#include <string>

namespace carpool {
namespace {

using F = StringFormat;

// Every prefix of a whole value is a prefix, and the value is complete.
void expect_whole(F f, const std::string& v) {
  for (size_t n = 0; n <= v.size(); ++n) {
    EXPECT_TRUE(format_prefix_ok(f, v.substr(0, n))) << v.substr(0, n);
  }
  EXPECT_TRUE(format_complete(f, v)) << v;
}

TEST(StringFormat, Names) {
  EXPECT_EQ(string_format_named("date"), F::kDate);
  EXPECT_EQ(string_format_named("time"), F::kTime);
  EXPECT_EQ(string_format_named("date-time"), F::kDateTime);
  EXPECT_EQ(string_format_named("uuid"), F::kUuid);
  EXPECT_EQ(string_format_named("email"), F::kNone);
  EXPECT_EQ(string_format_named("Date"), F::kNone);
}

TEST(StringFormat, Dates) {
  for (const char* v :
       {"2024-02-29", "2000-02-29", "0001-01-01", "9999-12-31", "2023-04-30", "1999-11-09"}) {
    expect_whole(F::kDate, v);
  }
  // Not dates: a year 0, month 13 or 00, day 00, the 29th of February outside leap years
  // (1900 was not one), the 31st of a 30-day month, other separators, extra bytes.
  for (const char* v :
       {"0000-01-01", "2024-13-01", "2024-00-10", "2024-01-00", "2023-02-29", "1900-02-29",
        "2023-04-31", "2024/01/01", "2024-1-01", "2024-01-011", "24-01-01"}) {
    EXPECT_FALSE(format_complete(F::kDate, v)) << v;
  }
  // Prefixes that no date continues: the month's tens 2, February's day tens 3, a 4th of 30-day
  // months' 31.
  for (const char* v : {"2024-2", "2024-02-3", "2023-06-31", "0000", "2024-01-4", "x"}) {
    EXPECT_FALSE(format_prefix_ok(F::kDate, v)) << v;
  }
  EXPECT_TRUE(format_prefix_ok(F::kDate, "2024-1"));
  EXPECT_TRUE(format_prefix_ok(F::kDate, "2024-01-3"));
  EXPECT_FALSE(format_complete(F::kDate, "2024-01-3"));
}

TEST(StringFormat, TimesAndDateTimes) {
  for (const char* v :
       {"00:00:00Z", "23:59:59Z", "12:30:00.5Z", "12:30:00.123456+05:30", "08:00:00-08:00"}) {
    expect_whole(F::kTime, v);
  }
  for (const char* v : {"24:00:00Z", "12:60:00Z", "12:00:60Z", "12:00:00", "12:00:00.Z",
                        "12:00:00.1234567Z", "12:00:00+24:00", "12:00:00+05", "12:00Z"}) {
    EXPECT_FALSE(format_complete(F::kTime, v)) << v;
  }
  expect_whole(F::kDateTime, "2024-02-29T23:59:59.999Z");
  expect_whole(F::kDateTime, "1970-01-01T00:00:00+00:00");
  for (const char* v : {"2024-02-29 23:59:59Z", "2024-02-29T23:59:59", "2024-02-30T00:00:00Z"}) {
    EXPECT_FALSE(format_complete(F::kDateTime, v)) << v;
  }
  EXPECT_FALSE(format_prefix_ok(F::kDateTime, "2024-02-29t"));
  EXPECT_TRUE(format_prefix_ok(F::kDateTime, "2024-02-29T2"));
  EXPECT_FALSE(format_prefix_ok(F::kDateTime, "2024-02-29T3"));
}

TEST(StringFormat, Uuids) {
  expect_whole(F::kUuid, "123e4567-e89b-12d3-a456-426614174000");
  expect_whole(F::kUuid, "ABCDEF01-2345-6789-ABCD-EF0123456789");
  for (const char* v :
       {"123e4567e89b12d3a456426614174000", "123e4567-e89b-12d3-a456-42661417400",
        "123e4567-e89b-12d3-a456-4266141740000", "g23e4567-e89b-12d3-a456-426614174000"}) {
    EXPECT_FALSE(format_complete(F::kUuid, v)) << v;
  }
  EXPECT_FALSE(format_prefix_ok(F::kUuid, "123e4567e"));
}

}  // namespace
}  // namespace carpool
