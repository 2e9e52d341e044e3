// CRC32C: known vectors, and the SSE4.2 three-stream path against the
// table path at every length class, chained.
#include "core/crc32c.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace trawl {
namespace {

TEST(Crc32c, KnownVectors) {
  EXPECT_EQ(crc32c(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>("123456789"), 9)), 0xE3069283u);
  EXPECT_EQ(crc32c({}), 0u);
  // RFC 3720 appendix B.4.
  std::vector<uint8_t> zeros(32, 0), ones(32, 0xff), inc(32), dec(32);
  for (int i = 0; i < 32; ++i)
    inc[i] = static_cast<uint8_t>(i), dec[i] = static_cast<uint8_t>(31 - i);
  EXPECT_EQ(crc32c(zeros), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones), 0x62A8AB43u);
  EXPECT_EQ(crc32c(inc), 0x46DD794Eu);
  EXPECT_EQ(crc32c(dec), 0x113FDB5Cu);
}

TEST(Crc32c, TableMatchesHardwareAndChains) {
  std::mt19937 rng(7);
  // Includes lengths that take the three-stream path (>= 3 x 4096) and its tail.
  for (size_t n : {0, 1, 7, 8, 9, 63, 64, 65, 1000, 4096 + 3, 12287, 12288, 12289, 3 * 12288 + 5, 1 << 20}) {
    std::vector<uint8_t> b(n);
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    EXPECT_EQ(crc32c(b), crc32c_detail::crc32c_table(b)) << n;
    size_t cut = n / 3;
    auto s = std::span<const uint8_t>(b);
    EXPECT_EQ(crc32c(s.subspan(cut), crc32c(s.first(cut))), crc32c(b)) << n;
  }
}

}  // namespace
}  // namespace trawl
