#include "store/segment_name.h"

#include <gtest/gtest.h>

namespace trawl::store {
namespace {

TEST(SegmentName, FormatsUtcWithNanoseconds) {
  // 2026-11-22T10:30:00.123456789Z
  const uint64_t t = 1'795'343'400'123'456'789ull;
  EXPECT_EQ(format_segment_stamp(t), "20261122T103000.123456789Z");
  EXPECT_EQ(format_utc_ns(t), "2026-11-22T10:30:00.123456789Z");
  EXPECT_EQ(segment_file_name("edge1", t), "edge1-20261122T103000.123456789Z.pcapng");
  EXPECT_EQ(format_segment_stamp(0), "19700101T000000.000000000Z");
}

TEST(SegmentName, ParsesWhatItFormats) {
  for (uint64_t t : {0ull, 951'782'400'000'000'001ull /* 2000-02-29 */, 1'795'343'400'123'456'789ull,
                     4'102'444'799'999'999'999ull}) {
    auto s = format_segment_stamp(t);
    EXPECT_EQ(parse_segment_stamp(s), t) << s;
  }
  EXPECT_FALSE(parse_segment_stamp("20260231T000000.000000000Z"));
  EXPECT_FALSE(parse_segment_stamp("20261122T103000.12345678Z"));
  EXPECT_FALSE(parse_segment_stamp("2026112XT103000.123456789Z"));
}

TEST(SegmentName, ParsesOnlyThisAgentsFiles) {
  auto sealed = parse_segment_file_name("edge1", "edge1-20261122T103000.123456789Z.pcapng");
  ASSERT_TRUE(sealed);
  EXPECT_TRUE(sealed->sealed);
  EXPECT_EQ(sealed->start_ns, 1'795'343'400'123'456'789ull);
  auto part = parse_segment_file_name("edge1", "edge1-20261122T103000.123456789Z.pcapng.part");
  ASSERT_TRUE(part);
  EXPECT_FALSE(part->sealed);
  EXPECT_FALSE(parse_segment_file_name("edge2", "edge1-20261122T103000.123456789Z.pcapng"));
  EXPECT_FALSE(parse_segment_file_name("edge", "edge1-20261122T103000.123456789Z.pcapng"));
  EXPECT_FALSE(parse_segment_file_name("edge1", "edge1-20261122T103000.123456789Z.pcapng.idx"));
  EXPECT_FALSE(parse_segment_file_name("edge1", "edge1-20261122T103000.123456789Z.pcap"));
}

TEST(SegmentName, LexicographicOrderIsTimeOrder) {
  uint64_t a = 1'795'343'400'123'456'789ull;
  EXPECT_LT(segment_file_name("e", a), segment_file_name("e", a + 1));
  EXPECT_LT(segment_file_name("e", a), segment_file_name("e", a + 86'400'000'000'000ull));
}

}  // namespace
}  // namespace trawl::store
