#include "live/osmo_protocol.h"

#include <gtest/gtest.h>

#include <cstring>

namespace trawl::live::osmo {
namespace {

struct Out {
  std::vector<Message> msgs;
  std::vector<std::vector<uint8_t>> datas;
  std::optional<OsmoError> err;
};

// Feeds the stream in chunks of `chunk` bytes.
Out run(const std::vector<uint8_t>& in, size_t chunk = 1 << 20, uint32_t max = 65535) {
  OsmoDecoder d(max);
  Out o;
  for (size_t off = 0; off < in.size() && !o.err; off += chunk) {
    size_t n = std::min(chunk, in.size() - off);
    auto w = d.writable(n);
    memcpy(w.data(), in.data() + off, n);
    d.commit(n);
    while (auto m = d.next(o.err)) {
      o.msgs.push_back(*m);
      o.datas.emplace_back(m->packet.data.begin(), m->packet.data.end());
    }
  }
  return o;
}

std::vector<uint8_t> pkt(size_t n, uint8_t fill) { return std::vector<uint8_t>(n, fill); }

TEST(Osmo, BothByteOrdersAndResolutions) {
  for (bool swapped : {false, true}) {
    for (bool nsec : {false, true}) {
      std::vector<uint8_t> in;
      append_link_header(in, 9000, 1, nsec, swapped);
      append_data(in, 1'700'000'000'123'456'789ull, 1514, pkt(60, 0xaa), nsec, swapped);
      append_data(in, 1'700'000'001'000'000'000ull, 100, pkt(100, 0xbb), nsec, swapped);
      for (size_t chunk : {size_t{1}, size_t{7}, size_t{1} << 20}) {
        auto o = run(in, chunk);
        ASSERT_FALSE(o.err) << o.err->detail;
        ASSERT_EQ(o.msgs.size(), 3u);
        EXPECT_EQ(o.msgs[0].kind, Message::Kind::kLink);
        EXPECT_EQ(o.msgs[0].link.snaplen, 9000u);
        EXPECT_EQ(o.msgs[0].link.link_type, 1u);
        EXPECT_EQ(o.msgs[0].link.swapped, swapped);
        EXPECT_EQ(o.msgs[0].link.nsec, nsec);
        EXPECT_EQ(o.msgs[1].packet.ts_ns, nsec ? 1'700'000'000'123'456'789ull : 1'700'000'000'123'456'000ull);
        EXPECT_EQ(o.msgs[1].packet.orig_len, 1514u);
        EXPECT_EQ(o.datas[1], pkt(60, 0xaa));
        EXPECT_EQ(o.datas[2], pkt(100, 0xbb));
      }
    }
  }
}

TEST(Osmo, LinkHeaderAgainAfterReconnect) {
  std::vector<uint8_t> in;
  append_link_header(in, 65535, 1);
  append_data(in, 0, 60, pkt(60, 1));
  append_link_header(in, 65535, 113);
  append_data(in, 0, 60, pkt(60, 2));
  auto o = run(in);
  ASSERT_FALSE(o.err);
  ASSERT_EQ(o.msgs.size(), 4u);
  EXPECT_EQ(o.msgs[3].link.link_type, 113u);
}

Malformed reason_of(const std::vector<uint8_t>& in, uint32_t max = 65535) {
  auto o = run(in, 1 << 20, max);
  EXPECT_TRUE(o.err.has_value());
  return o.err ? o.err->reason : Malformed::kCount;
}

TEST(Osmo, EveryMalformedCase) {
  std::vector<uint8_t> in;
  append_message_header(in, 2, 0);
  EXPECT_EQ(reason_of(in), Malformed::kUnknownType);

  in.clear();
  append_message_header(in, kTypeLinkHeader, 20);
  in.insert(in.end(), 20, 0);
  EXPECT_EQ(reason_of(in), Malformed::kBadLinkHeader);

  in.clear();
  append_message_header(in, kTypeLinkHeader, 24);
  in.insert(in.end(), 24, 0x55);  // no known magic
  EXPECT_EQ(reason_of(in), Malformed::kBadLinkHeader);

  in.clear();
  append_data(in, 0, 60, pkt(60, 0));
  EXPECT_EQ(reason_of(in), Malformed::kDataBeforeLink);

  in.clear();
  append_link_header(in, 65535, 1);
  append_message_header(in, kTypeData, 15);
  in.insert(in.end(), 15, 0);
  EXPECT_EQ(reason_of(in), Malformed::kShortRecord);

  in.clear();
  append_link_header(in, 65535, 1);
  append_data(in, 0, 60, pkt(60, 0));
  in[24 + 4 + 4 + 8] = 61;  // caplen 61 > 60 bytes that follow
  EXPECT_EQ(reason_of(in), Malformed::kCaplenOverPayload);

  in.clear();
  append_link_header(in, 65535, 1);
  append_data(in, 0, 2000, pkt(2000, 0));
  EXPECT_EQ(reason_of(in, 1500), Malformed::kCaplenOverMax);

  in.clear();
  append_link_header(in, 1000, 1);  // the client's own snaplen is a maximum too
  append_data(in, 0, 2000, pkt(1001, 0));
  EXPECT_EQ(reason_of(in), Malformed::kCaplenOverMax);
}

TEST(Osmo, GoodMessagesBeforeABadOneAreDelivered) {
  std::vector<uint8_t> in;
  append_link_header(in, 65535, 1);
  append_data(in, 0, 60, pkt(60, 1));
  append_message_header(in, 9, 0);
  auto o = run(in);
  EXPECT_EQ(o.msgs.size(), 2u);
  ASSERT_TRUE(o.err);
  EXPECT_EQ(o.err->reason, Malformed::kUnknownType);
}

TEST(Osmo, TruncatedStreamIsJustIncomplete) {
  std::vector<uint8_t> in;
  append_link_header(in, 65535, 1);
  append_data(in, 0, 60, pkt(60, 1));
  in.pop_back();
  auto o = run(in);
  EXPECT_FALSE(o.err);
  EXPECT_EQ(o.msgs.size(), 1u);
}

}  // namespace
}  // namespace trawl::live::osmo
