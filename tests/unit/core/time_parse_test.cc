#include "core/time_parse.h"

#include <gtest/gtest.h>

namespace trawl {
namespace {

constexpr uint64_t kS = 1'000'000'000ull;
constexpr uint64_t kNow = 1'795'320'900ull * kS;  // 2026-11-22T04:15:00Z

TEST(TimeParse, RelativeAndNow) {
  EXPECT_EQ(*parse_time("now", kNow), kNow);
  EXPECT_EQ(*parse_time("-15m", kNow), kNow - 900 * kS);
  EXPECT_EQ(*parse_time("-2h", kNow), kNow - 7200 * kS);
  EXPECT_EQ(*parse_time("-1h30m", kNow), kNow - 5400 * kS);
  EXPECT_EQ(*parse_time("-500ms", kNow), kNow - kS / 2);
  EXPECT_FALSE(parse_time("-15x", kNow).ok());
  EXPECT_FALSE(parse_time("-", kNow).ok());
}

TEST(TimeParse, Rfc3339AndRelatives) {
  EXPECT_EQ(*parse_time("2026-11-22T04:15:00Z", kNow), kNow);
  EXPECT_EQ(*parse_time("2026-11-22t04:15:00z", kNow), kNow);
  EXPECT_EQ(*parse_time("2026-11-22T05:15:00+01:00", kNow), kNow);
  EXPECT_EQ(*parse_time("2026-11-22T04:15:00.25Z", kNow), kNow + kS / 4);
  EXPECT_EQ(*parse_time("2026-11-22T04:15:00.123456789Z", kNow), kNow + 123456789);
  EXPECT_EQ(*parse_time("2026-11-22 04:15", kNow), kNow);
  EXPECT_EQ(*parse_time("2026-11-22", kNow), kNow - (4 * 3600 + 15 * 60) * kS);
  EXPECT_FALSE(parse_time("2026-13-22T04:15:00Z", kNow).ok());
  EXPECT_FALSE(parse_time("2026-11-22T04:15:00Zjunk", kNow).ok());
  EXPECT_FALSE(parse_time("yesterday", kNow).ok());
}

TEST(TimeParse, EpochSeconds) {
  EXPECT_EQ(*parse_time("1795320900", kNow), kNow);
  EXPECT_EQ(*parse_time("1795320900.5", kNow), kNow + kS / 2);
  EXPECT_FALSE(parse_time("17953209x", kNow).ok());
}

TEST(TimeParse, Durations) {
  EXPECT_EQ(*parse_duration("30s"), 30 * kS);
  EXPECT_EQ(*parse_duration("1d"), 86400 * kS);
  EXPECT_FALSE(parse_duration("30").ok());
  EXPECT_FALSE(parse_duration("").ok());
}

constexpr uint64_t kNow2 = 1'763'807'400'000'000'000ull;  // 2025-11-22T10:30:00Z

TEST(TimeParseQueryForms, Rfc3339) {
  EXPECT_EQ(*parse_time("2025-11-22T10:30:00Z", kNow2), kNow2);
  EXPECT_EQ(*parse_time("2025-11-22T10:30:00.5Z", kNow2), kNow2 + 500'000'000);
  EXPECT_EQ(*parse_time("2025-11-22T10:30:00.123456789Z", kNow2), kNow2 + 123'456'789);
  EXPECT_EQ(*parse_time("2025-11-22T11:30:00+01:00", kNow2), kNow2);
  EXPECT_EQ(*parse_time("2025-11-22T08:00:00-02:30", kNow2), kNow2);
  EXPECT_EQ(*parse_time("2025-11-22 10:30:00z", kNow2), kNow2);
  EXPECT_EQ(*parse_time("1970-01-01T00:00:00Z", kNow2), 0u);
}

TEST(TimeParseQueryForms, RelativeNowAndEpoch) {
  EXPECT_EQ(*parse_time("now", kNow2), kNow2);
  EXPECT_EQ(*parse_time("-15m", kNow2), kNow2 - 900'000'000'000ull);
  EXPECT_EQ(*parse_time("-2h", kNow2), kNow2 - 7200'000'000'000ull);
  EXPECT_EQ(*parse_time("-1.5s", kNow2), kNow2 - 1'500'000'000ull);
  EXPECT_EQ(*parse_time("-250ms", kNow2), kNow2 - 250'000'000ull);
  EXPECT_EQ(*parse_time("-1d", kNow2), kNow2 - 86400'000'000'000ull);
  EXPECT_EQ(*parse_time("1763807400", kNow2), kNow2);
  EXPECT_EQ(*parse_time("1763807400.25", kNow2), kNow2 + 250'000'000);
}

TEST(TimeParseQueryForms, Rejects) {
  for (const char* bad : {"", "yesterday", "-15", "-m", "2025-13-01T00:00:00Z",
                          "2025-11-22T10:30:00Zx", "2025-11-22T10:30:00.Z", "12abc", "-5x"}) {
    auto r = parse_time(bad, kNow2);
    EXPECT_FALSE(r.ok()) << bad;
  }
}

TEST(TimeParseQueryForms, ZonelessMeansUtc) {
  EXPECT_EQ(*parse_time("2025-11-22T10:30:00", kNow2), kNow2);
}

}  // namespace
}  // namespace trawl
