#include <gtest/gtest.h>

#include "query/time_spec.h"

namespace trawl::query {
namespace {

constexpr uint64_t kNow = 1'763'807'400'000'000'000ull;  // 2025-11-22T10:30:00Z

TEST(TimeSpec, Rfc3339) {
  EXPECT_EQ(*parse_time("2025-11-22T10:30:00Z", kNow), kNow);
  EXPECT_EQ(*parse_time("2025-11-22T10:30:00.5Z", kNow), kNow + 500'000'000);
  EXPECT_EQ(*parse_time("2025-11-22T10:30:00.123456789Z", kNow), kNow + 123'456'789);
  EXPECT_EQ(*parse_time("2025-11-22T11:30:00+01:00", kNow), kNow);
  EXPECT_EQ(*parse_time("2025-11-22T08:00:00-02:30", kNow), kNow);
  EXPECT_EQ(*parse_time("2025-11-22 10:30:00z", kNow), kNow);
  EXPECT_EQ(*parse_time("1970-01-01T00:00:00Z", kNow), 0u);
}

TEST(TimeSpec, RelativeNowAndEpoch) {
  EXPECT_EQ(*parse_time("now", kNow), kNow);
  EXPECT_EQ(*parse_time("-15m", kNow), kNow - 900'000'000'000ull);
  EXPECT_EQ(*parse_time("-2h", kNow), kNow - 7200'000'000'000ull);
  EXPECT_EQ(*parse_time("-1.5s", kNow), kNow - 1'500'000'000ull);
  EXPECT_EQ(*parse_time("-250ms", kNow), kNow - 250'000'000ull);
  EXPECT_EQ(*parse_time("-1d", kNow), kNow - 86400'000'000'000ull);
  EXPECT_EQ(*parse_time("1763807400", kNow), kNow);
  EXPECT_EQ(*parse_time("1763807400.25", kNow), kNow + 250'000'000);
}

TEST(TimeSpec, Rejects) {
  for (const char* bad : {"", "yesterday", "-15", "-m", "2025-11-22T10:30:00", "2025-13-01T00:00:00Z",
                          "2025-11-22T10:30:00Zx", "2025-11-22T10:30:00.Z", "12abc", "-5x"}) {
    auto r = parse_time(bad, kNow);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_NE(r.error().message().find("invalid time"), std::string::npos);
    }
  }
}

}  // namespace
}  // namespace trawl::query
