#include "live/formats.h"

#include <gtest/gtest.h>

namespace trawl::live {
namespace {

TEST(Formats, PcapFileHeaderIsClassicLittleEndian) {
  auto h = pcap_file_header(kPcapMagicUsec, 262144, 1);
  const uint8_t want[24] = {0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 1, 0, 0, 0};
  EXPECT_EQ(0, memcmp(h.data(), want, 24));
  auto n = pcap_file_header(kPcapMagicNsec, 65535, 113);
  EXPECT_EQ(n[0], 0x4d);
  EXPECT_EQ(n[1], 0x3c);
  EXPECT_EQ(n[16], 0xff);
  EXPECT_EQ(n[17], 0xff);
  EXPECT_EQ(n[20], 113);
}

TEST(Formats, RecordHeaderMicroAndNanoseconds) {
  uint64_t ts = 1'700'000'000'123'456'789ull;
  auto us = pcap_record_header(ts, 60, 1514, false);
  const uint8_t want_us[16] = {0x00, 0xf1, 0x53, 0x65, 0x40, 0xe2, 0x01, 0x00, 60, 0, 0, 0, 0xea, 0x05, 0, 0};
  EXPECT_EQ(0, memcmp(us.data(), want_us, 16));  // 1700000000 s, 123456 us
  auto ns = pcap_record_header(ts, 60, 1514, true);
  uint32_t frac = ns[4] | ns[5] << 8 | ns[6] << 16 | uint32_t{ns[7]} << 24;
  EXPECT_EQ(frac, 123'456'789u);
}

TEST(Formats, RecordHeaderWrittenInPlaceMatchesTheArrayForm) {
  uint64_t ts = 1'700'000'000'123'456'789ull;
  for (bool nsec : {false, true}) {
    uint8_t buf[20];
    memset(buf, 0xAA, sizeof buf);
    uint8_t* end = put_pcap_record_header(buf + 2, ts, 60, 1514, nsec);
    EXPECT_EQ(end, buf + 18);
    auto want = pcap_record_header(ts, 60, 1514, nsec);
    EXPECT_EQ(0, memcmp(buf + 2, want.data(), 16));
    EXPECT_EQ(buf[1], 0xAA);  // nothing outside its 16 bytes
    EXPECT_EQ(buf[18], 0xAA);
  }
}

TEST(Formats, V2MetaRoundTripAndLayout) {
  InterfaceInfo iface{"eth0", 1, 9000};
  PacketView p;
  p.ts_ns = 0x0102030405060708ull;
  p.orig_len = 1514;
  std::vector<uint8_t> out;
  append_v2_meta(out, iface, 3, 77, p);
  ASSERT_EQ(out.size(), v2_meta_size(iface));
  ASSERT_EQ(out.size(), 36u);
  EXPECT_EQ(out[0], 2);
  EXPECT_EQ(out[2], 3);   // iface index
  EXPECT_EQ(out[4], 1);   // link type
  EXPECT_EQ(out[6], 4);   // name length
  EXPECT_EQ(out[8], 0x08);  // ts_ns little-endian
  EXPECT_EQ(out[16], 77);   // seq
  EXPECT_EQ(std::string(out.begin() + 32, out.end()), "eth0");
  V2Meta m;
  ASSERT_TRUE(parse_v2_meta(out, m));
  EXPECT_EQ(m.iface, 3);
  EXPECT_EQ(m.ts_ns, p.ts_ns);
  EXPECT_EQ(m.seq, 77u);
  EXPECT_EQ(m.orig_len, 1514u);
  EXPECT_EQ(m.snaplen, 9000u);
  EXPECT_EQ(m.iface_name, "eth0");
  out.pop_back();
  EXPECT_FALSE(parse_v2_meta(out, m));
}

TEST(Formats, Topics) {
  EXPECT_EQ(data_topic(1, "edge1"), "data.v1.edge1");
  EXPECT_EQ(data_topic(2, "edge1"), "data.v2.edge1");
  EXPECT_EQ(event_topic(1, "closingtracefile", "edge1"), "event.v1.closingtracefile.edge1");
  EXPECT_EQ(event_topic(2, "gap", "e"), "event.v2.gap.e");
}

}  // namespace
}  // namespace trawl::live
