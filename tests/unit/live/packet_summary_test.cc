#include "live/packet_summary.h"

#include <gtest/gtest.h>

namespace trawl::live {
namespace {

std::vector<uint8_t> eth_ipv4_udp() {
  std::vector<uint8_t> p = {
      0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00,                                // Ethernet
      0x45, 0, 0, 32, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,                // IPv4
      0x13, 0xc4, 0x13, 0xc4, 0, 12, 0, 0, 'a', 'b', 'c', 'd'};                           // UDP 5060
  return p;
}

TEST(PacketSummary, EthernetIpv4Udp) {
  auto p = eth_ipv4_udp();
  EXPECT_EQ(summarize_packet(1, p, static_cast<uint32_t>(p.size())), "IP 10.0.0.1.5060 > 10.0.0.2.5060: UDP, length 4");
}

TEST(PacketSummary, VlanTcpSyn) {
  std::vector<uint8_t> p = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x81, 0x00, 0x00, 0x0a, 0x08, 0x00,
                            0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 192, 168, 1, 1, 192, 168, 1, 2,
                            0x01, 0xbb, 0xc3, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(summarize_packet(1, p, 58), "vlan 10, IP 192.168.1.1.443 > 192.168.1.2.50000: Flags [S], seq 1, length 0");
}

TEST(PacketSummary, TruncatedAndUnknown) {
  auto p = eth_ipv4_udp();
  p.resize(20);
  EXPECT_EQ(summarize_packet(1, p, 60), "IP (truncated)");
  EXPECT_EQ(summarize_packet(147, p, 60), "link type 147, length 60");
  std::vector<uint8_t> arp = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 6, 7, 8, 9, 10, 11, 0x08, 0x06,
                              0, 1, 0x08, 0, 6, 4, 0, 1, 6, 7, 8, 9, 10, 11, 10, 0, 0, 1,
                              0, 0, 0, 0, 0, 0, 10, 0, 0, 9};
  EXPECT_EQ(summarize_packet(1, arp, 42), "ARP, Request who-has 10.0.0.9 tell 10.0.0.1");
}

}  // namespace
}  // namespace trawl::live
