// Index format: journal and sealed layouts round-trip; a journal cut
// anywhere yields a prefix of its blocks; any flipped byte in a head is
// caught; a flipped byte in a flow table fails only that table's check.
#include <gtest/gtest.h>

#include <algorithm>

#include "store/crc32c.h"
#include "store/segment_index.h"

namespace trawl::store {
namespace {

IndexBlock block(uint64_t off, int flows) {
  IndexBlock b;
  b.file_offset = off;
  b.file_size = 1000;
  b.raw_offset = off * 3;
  b.raw_size = 3000;
  b.first_ts = 100 + off;
  b.last_ts = 200 + off;
  b.packets = 7;
  b.data_crc = 0xABCD;
  if (off == 0) b.new_interfaces = {{1, 262144, "eth0"}, {113, 65535, "any"}};
  for (int i = 0; i < flows; ++i) {
    FlowKey k;
    k.kind = i % 2 ? FlowKey::kIpv6 : FlowKey::kIpv4;
    k.proto = 6;
    k.sport = static_cast<uint16_t>(1000 + i);
    k.dport = 80;
    k.src[0] = static_cast<uint8_t>(i);
    b.flows.push_back(k);
    b.summary.add(k);
  }
  return b;
}

TEST(SegmentIndex, JournalAndSealedLayoutsRoundTrip) {
  SegmentIndex idx;
  idx.compressed = true;
  idx.block_bytes = 2u << 20;
  for (int i = 0; i < 3; ++i) idx.blocks.push_back(block(1000 * i, 50 + i));
  for (const auto& b : idx.blocks) idx.packets += b.packets;
  std::vector<uint8_t> journal;
  encode_index_header(journal, true, idx.block_bytes);
  for (const auto& b : idx.blocks) encode_index_block(journal, b);
  auto j = decode_index(journal, true);
  ASSERT_TRUE(j.ok()) << j.error().message();
  EXPECT_EQ(j->blocks, idx.blocks);
  EXPECT_FALSE(j->complete);
  EXPECT_FALSE(decode_index(journal, false).ok()) << "a sealed index needs END";

  auto sealed = encode_sealed_index(idx, 3000);
  auto s = decode_index(sealed, false);
  ASSERT_TRUE(s.ok()) << s.error().message();
  EXPECT_TRUE(s->complete);
  EXPECT_EQ(s->segment_size, 3000u);
  EXPECT_EQ(s->blocks, idx.blocks);
  EXPECT_EQ(s->covered_end(), 3000u);
  // Re-encoding a decoded (lazy) index gives the same bytes.
  EXPECT_EQ(encode_sealed_index(*s, 3000), sealed);
}

TEST(SegmentIndex, JournalCutAnywhereIsAPrefix) {
  std::vector<uint8_t> journal;
  encode_index_header(journal, false, 4096);
  for (int i = 0; i < 4; ++i) encode_index_block(journal, block(1000 * i, 20));
  size_t last = 0;
  for (size_t cut = kIndexHeaderBytes; cut <= journal.size(); ++cut) {
    auto j = decode_index(std::span(journal).first(cut), true);
    ASSERT_TRUE(j.ok()) << cut << ": " << j.error().message();
    ASSERT_GE(j->blocks.size(), last);
    last = j->blocks.size();
  }
  EXPECT_EQ(last, 4u);
  EXPECT_FALSE(decode_index(std::span(journal).first(10), true).ok());
}

TEST(SegmentIndex, CorruptionIsDetected) {
  SegmentIndex idx;
  for (int i = 0; i < 2; ++i) idx.blocks.push_back(block(1000 * i, 30));
  auto sealed = encode_sealed_index(idx, 2000);
  const auto good = decode_index(sealed, false);
  ASSERT_TRUE(good.ok());
  const size_t tables = sealed.size() - 2 * 30 * 46;
  for (size_t i = 0; i < sealed.size(); i += 7) {
    auto bad = sealed;
    bad[i] ^= 0x40;
    auto r = decode_index(bad, false);
    if (i < tables) {
      EXPECT_FALSE(r.ok()) << "flipped byte " << i << " in the heads went unnoticed";
    } else {
      ASSERT_TRUE(r.ok()) << i;
      size_t failed = 0;
      for (const auto& b : r->blocks) failed += !b.for_each_flow([](const FlowKey&) {});
      EXPECT_EQ(failed, 1u) << "flipped byte " << i << " in a flow table";
    }
  }
}

// The indexer adds flows a few packets late (kept pending so that a just
// built key is not read back at once): every block still lists every flow,
// whatever the packet count against that window, in first-seen order.
TEST(BlockIndexer, RecordsEveryFlowOfTheBlock) {
  auto udp_frame = [](uint16_t sport) {
    std::vector<uint8_t> f(14 + 20 + 8, 0);
    f[12] = 0x08;  // IPv4
    f[14] = 0x45;
    f[14 + 9] = 17;
    f[14 + 12] = 10;
    f[14 + 15] = 1;
    f[14 + 16] = 10;
    f[14 + 19] = 2;
    f[34] = static_cast<uint8_t>(sport >> 8);
    f[35] = static_cast<uint8_t>(sport);
    f[37] = 53;
    return f;
  };
  for (int n : {1, 15, 16, 17, 33, 100}) {
    BlockIndexer ix;
    ix.start(0, 0);
    for (int i = 0; i < n; ++i) {
      auto f = udp_frame(static_cast<uint16_t>(2000 + i % 40));  // repeats after 40
      ix.packet(kLinkEthernet, 1000 + static_cast<uint64_t>(i), f);
    }
    IndexBlock b = ix.finish(100, 100, 0);
    ASSERT_EQ(b.packets, static_cast<uint32_t>(n));
    ASSERT_EQ(b.flows.size(), static_cast<size_t>(std::min(n, 40))) << n << " packets";
    for (size_t i = 0; i < b.flows.size(); ++i) {
      EXPECT_EQ(b.flows[i].sport, 2000 + i);
      EXPECT_EQ(b.flows[i].dport, 53);
      EXPECT_EQ(b.flows[i].kind, FlowKey::kIpv4);
    }
    // The next block starts empty: nothing pending carries over.
    ix.start(100, 100);
    auto f = udp_frame(9);
    ix.packet(kLinkEthernet, 5, f);
    IndexBlock next = ix.finish(200, 200, 0);
    ASSERT_EQ(next.flows.size(), 1u);
    EXPECT_EQ(next.flows[0].sport, 9);
  }
}

TEST(Crc32c, KnownValue) {
  const char* s = "123456789";
  EXPECT_EQ(crc32c({reinterpret_cast<const uint8_t*>(s), 9}), 0xE3069283u);
}

}  // namespace
}  // namespace trawl::store
