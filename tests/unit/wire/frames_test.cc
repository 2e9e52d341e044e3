#include "wire/frames.h"

#include <gtest/gtest.h>

#include <random>

namespace trawl::wire {
namespace {

std::vector<InterfaceInfo> two_ifaces() {
  return {{"eth0", 1, 262144}, {"veth-x", 113, 65535}};
}

// Feeds bytes through a FrameDecoder in chunks of `chunk` and collects frames.
std::vector<std::pair<FrameType, std::vector<uint8_t>>> split(std::span<const uint8_t> bytes, size_t chunk) {
  FrameDecoder d(16);
  std::vector<std::pair<FrameType, std::vector<uint8_t>>> out;
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t n = std::min(chunk, bytes.size() - pos);
    auto w = d.writable(n);
    std::memcpy(w.data(), bytes.data() + pos, n);
    d.commit(n);
    pos += n;
    for (;;) {
      auto f = d.next();
      EXPECT_TRUE(f.ok());
      if (!f.ok() || !f->has_value()) break;
      out.emplace_back((*f)->type, std::vector<uint8_t>((*f)->body.begin(), (*f)->body.end()));
    }
  }
  return out;
}

TEST(Frames, ControlRoundTrip) {
  std::vector<uint8_t> buf;
  encode(buf, Hello{1, "edge1", "host-a", "trawl 0.1.0", 42, 7});
  encode(buf, Welcome{1, 99, 1 << 20});
  encode(buf, Ack{12345678901234ull});
  encode(buf, ErrorMsg{ErrorCode::kRefused, "go away"});
  encode_ping(buf);
  for (size_t chunk : {1ul, 3ul, 7ul, 4096ul}) {
    auto frames = split(buf, chunk);
    ASSERT_EQ(frames.size(), 5u);
    auto h = decode_hello(frames[0].second);
    ASSERT_TRUE(h.ok());
    EXPECT_EQ(h->agent_name, "edge1");
    EXPECT_EQ(h->hostname, "host-a");
    EXPECT_EQ(h->spool_id, 42u);
    EXPECT_EQ(h->last_seq, 7u);
    auto w = decode_welcome(frames[1].second);
    ASSERT_TRUE(w.ok());
    EXPECT_EQ(w->durable_seq, 99u);
    EXPECT_EQ(decode_ack(frames[2].second)->seq, 12345678901234ull);
    auto e = decode_error(frames[3].second);
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(e->code, ErrorCode::kRefused);
    EXPECT_EQ(e->text, "go away");
    EXPECT_EQ(frames[4].first, FrameType::kPing);
  }
}

TEST(Frames, BatchRoundTrip) {
  auto ifaces = two_ifaces();
  BatchBuilder b;
  b.reset(77, ifaces);
  std::vector<uint8_t> jumbo(9014);
  for (size_t i = 0; i < jumbo.size(); ++i) jumbo[i] = static_cast<uint8_t>(i * 7);
  std::vector<uint8_t> small = {1, 2, 3};
  b.add_packet(0, 1'000'000'001, 60, small);
  b.add_packet(1, 1'000'000'002, 9014, jumbo);
  b.add_stats({1, 5, 100, 2, 1, 3});
  b.add_gap({0xffff, 10, 20, 30, 4000, GapReason::kSpoolFull});
  EXPECT_EQ(b.packets(), 2u);
  EXPECT_EQ(b.packet_bytes(), 9017u);
  auto frame = b.finish(5, 123);
  auto frames = split(frame, 1000);
  ASSERT_EQ(frames.size(), 1u);
  ASSERT_EQ(frames[0].first, FrameType::kBatch);
  auto v = BatchView::parse(frames[0].second);
  ASSERT_TRUE(v.ok()) << v.error().message();
  EXPECT_EQ(v->spool_id(), 77u);
  EXPECT_EQ(v->seq(), 5u);
  EXPECT_EQ(v->sealed_ns(), 123u);
  EXPECT_EQ(v->interfaces(), ifaces);
  std::vector<PacketView> pkts;
  std::vector<InterfaceStats> stats;
  std::vector<Gap> gaps;
  v->for_each([&](const PacketView& p) { pkts.push_back(p); },
              [&](const InterfaceStats& s) { stats.push_back(s); },
              [&](const Gap& g) { gaps.push_back(g); });
  ASSERT_EQ(pkts.size(), 2u);
  EXPECT_EQ(pkts[0].ts_ns, 1'000'000'001u);
  EXPECT_EQ(pkts[0].orig_len, 60u);
  EXPECT_TRUE(std::equal(pkts[1].data.begin(), pkts[1].data.end(), jumbo.begin(), jumbo.end()));
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].kernel_drops, 2u);
  EXPECT_EQ(stats[0].agent_drops, 3u);
  ASSERT_EQ(gaps.size(), 1u);
  EXPECT_EQ(gaps[0].packets, 30u);
  EXPECT_EQ(gaps[0].reason, GapReason::kSpoolFull);
}

TEST(Frames, RejectsBadHeaders) {
  FrameDecoder d;
  auto w = d.writable(8);
  const uint8_t garbage[8] = {'G', 'E', 'T', ' ', '/', ' ', 'H', 'T'};
  std::memcpy(w.data(), garbage, 8);
  d.commit(8);
  auto f = d.next();
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.error().message().find("magic"), std::string::npos);

  std::vector<uint8_t> big = {'T', 'W', 3, 0, 0xff, 0xff, 0xff, 0x7f};  // BATCH of 2 GiB
  FrameDecoder d2;
  std::memcpy(d2.writable(8).data(), big.data(), 8);
  d2.commit(8);
  auto f2 = d2.next();
  ASSERT_FALSE(f2.ok());
  EXPECT_NE(f2.error().message().find("exceeds the cap"), std::string::npos);

  std::vector<uint8_t> unknown = {'T', 'W', 99, 0, 0, 0, 0, 0};
  FrameDecoder d3;
  std::memcpy(d3.writable(8).data(), unknown.data(), 8);
  d3.commit(8);
  EXPECT_FALSE(d3.next().ok());
}

TEST(Frames, BatchRejectsEveryTruncation) {
  auto ifaces = two_ifaces();
  BatchBuilder b;
  b.reset(1, ifaces);
  std::vector<uint8_t> data(100, 0xab);
  b.add_packet(0, 1, 100, data);
  b.add_stats({0, 1, 2, 3, 4, 5});
  b.add_gap({1, 1, 2, 3, 4, GapReason::kKernelDrop});
  auto frame = b.finish(1, 1);
  auto body = frame.subspan(kFrameHeaderBytes);
  ASSERT_TRUE(BatchView::parse(body).ok());
  for (size_t n = 0; n < body.size(); ++n) {
    EXPECT_FALSE(BatchView::parse(body.first(n)).ok()) << n;
  }
}

TEST(Frames, BatchRejectsLies) {
  auto ifaces = two_ifaces();
  BatchBuilder b;
  b.reset(1, ifaces);
  std::vector<uint8_t> data(100, 0xab);
  b.add_packet(0, 1, 100, data);
  auto frame = b.finish(1, 1);
  std::vector<uint8_t> body(frame.begin() + kFrameHeaderBytes, frame.end());
  size_t rec = body.size() - 100 - kPacketRecordHeader;
  auto bad_iface = body;
  bad_iface[rec + 2] = 5;
  EXPECT_FALSE(BatchView::parse(bad_iface).ok());
  auto caplen_over_orig = body;
  caplen_over_orig[rec + 8] = 50;  // orig_len 50 < caplen 100
  EXPECT_FALSE(BatchView::parse(caplen_over_orig).ok());
  auto bad_kind = body;
  bad_kind[rec] = 9;
  EXPECT_FALSE(BatchView::parse(bad_kind).ok());
  auto extra = body;
  extra.push_back(0);
  EXPECT_FALSE(BatchView::parse(extra).ok());
}

TEST(Frames, RandomBytesNeverCrash) {
  std::mt19937_64 rng(1);
  for (int i = 0; i < 20000; ++i) {
    std::vector<uint8_t> junk(rng() % 200);
    for (auto& c : junk) c = static_cast<uint8_t>(rng());
    (void)BatchView::parse(junk);
    (void)decode_hello(junk);
    (void)decode_error(junk);
  }
}

}  // namespace
}  // namespace trawl::wire
