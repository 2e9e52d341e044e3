// Flow extraction over hand-built frames: Ethernet, VLAN, QinQ, IPv4, IPv6,
// TCP/UDP/SCTP ports, VXLAN VNI, fragments, ARP, SLL, raw IP, truncation.
#include <gtest/gtest.h>

#include "store/flow.h"

namespace trawl::store {
namespace {

std::vector<uint8_t> eth(std::vector<uint16_t> tags, uint16_t ethertype, std::vector<uint8_t> payload) {
  std::vector<uint8_t> f(12, 0xAA);
  for (size_t i = 0; i + 1 < tags.size(); i += 2) {
    f.push_back(static_cast<uint8_t>(tags[i] >> 8));
    f.push_back(static_cast<uint8_t>(tags[i]));
    f.push_back(static_cast<uint8_t>(tags[i + 1] >> 8));
    f.push_back(static_cast<uint8_t>(tags[i + 1]));
  }
  f.push_back(static_cast<uint8_t>(ethertype >> 8));
  f.push_back(static_cast<uint8_t>(ethertype));
  f.insert(f.end(), payload.begin(), payload.end());
  return f;
}

std::vector<uint8_t> ipv4(uint8_t proto, std::vector<uint8_t> l4, uint16_t frag = 0) {
  std::vector<uint8_t> p = {0x45, 0, 0, 0, 0, 0, static_cast<uint8_t>(frag >> 8), static_cast<uint8_t>(frag),
                            64, proto, 0, 0, 10, 0, 0, 1, 192, 168, 1, 2};
  p.insert(p.end(), l4.begin(), l4.end());
  return p;
}

std::vector<uint8_t> ports(uint16_t s, uint16_t d, size_t extra = 16) {
  std::vector<uint8_t> p = {static_cast<uint8_t>(s >> 8), static_cast<uint8_t>(s), static_cast<uint8_t>(d >> 8),
                            static_cast<uint8_t>(d)};
  p.resize(4 + extra, 0);
  return p;
}

TEST(Flow, Ipv4TcpOverEthernet) {
  auto k = extract_flow(kLinkEthernet, eth({}, 0x0800, ipv4(6, ports(1234, 80))));
  EXPECT_EQ(k.kind, FlowKey::kIpv4);
  EXPECT_EQ(k.proto, 6);
  EXPECT_EQ(k.sport, 1234);
  EXPECT_EQ(k.dport, 80);
  EXPECT_EQ(k.src[0], 10);
  EXPECT_EQ(k.dst[3], 2);
  EXPECT_EQ(k.vlan, FlowKey::kNoVlan);
  EXPECT_EQ(k.vni, FlowKey::kNoVni);
}

TEST(Flow, VlanAndQinQKeepTheOuterId) {
  auto k = extract_flow(kLinkEthernet, eth({0x8100, 100}, 0x0800, ipv4(17, ports(53, 5353))));
  EXPECT_EQ(k.vlan, 100);
  EXPECT_EQ(k.kind, FlowKey::kIpv4);
  EXPECT_EQ(k.dport, 5353);
  auto q = extract_flow(kLinkEthernet, eth({0x88A8, 7, 0x8100, 200}, 0x0800, ipv4(132, ports(2905, 2905))));
  EXPECT_EQ(q.vlan, 7);
  EXPECT_EQ(q.proto, 132);
  EXPECT_EQ(q.sport, 2905);
}

TEST(Flow, VxlanVni) {
  auto l4 = ports(40000, 4789, 16);
  l4[8] = 0x08;  // flags: VNI valid
  l4[12] = 0x12;
  l4[13] = 0x34;
  l4[14] = 0x56;
  auto k = extract_flow(kLinkEthernet, eth({}, 0x0800, ipv4(17, l4)));
  EXPECT_EQ(k.vni, 0x123456u);
  l4[8] = 0;
  EXPECT_EQ(extract_flow(kLinkEthernet, eth({}, 0x0800, ipv4(17, l4))).vni, FlowKey::kNoVni);
}

TEST(Flow, FragmentsHaveNoPorts) {
  auto k = extract_flow(kLinkEthernet, eth({}, 0x0800, ipv4(6, ports(1, 2), 0x2000)));
  EXPECT_TRUE(k.flags & FlowKey::kL4Inexact);
  EXPECT_EQ(k.sport, 0);
}

TEST(Flow, Ipv6) {
  std::vector<uint8_t> p(40, 0);
  p[0] = 0x60;
  p[6] = 17;
  p[8] = 0x20;
  p[39] = 1;
  auto l4 = ports(5060, 5061);
  p.insert(p.end(), l4.begin(), l4.end());
  auto k = extract_flow(kLinkEthernet, eth({}, 0x86DD, p));
  EXPECT_EQ(k.kind, FlowKey::kIpv6);
  EXPECT_EQ(k.src[0], 0x20);
  EXPECT_EQ(k.dst[15], 1);
  EXPECT_EQ(k.sport, 5060);
  p[6] = 44;  // fragment header
  EXPECT_TRUE(extract_flow(kLinkEthernet, eth({}, 0x86DD, p)).flags & FlowKey::kL4Inexact);
}

TEST(Flow, NonIpSllRawAndTruncated) {
  auto arp = extract_flow(kLinkEthernet, eth({}, 0x0806, std::vector<uint8_t>(28)));
  EXPECT_EQ(arp.kind, FlowKey::kNonIp);
  EXPECT_EQ(arp.sport, 0x0806);
  std::vector<uint8_t> sll(14, 0);
  sll.push_back(0x08);
  sll.push_back(0x00);
  auto ip = ipv4(6, ports(1, 2));
  sll.insert(sll.end(), ip.begin(), ip.end());
  EXPECT_EQ(extract_flow(kLinkSll, sll).kind, FlowKey::kIpv4);
  EXPECT_EQ(extract_flow(kLinkRaw, ip).dport, 2);
  auto cut = eth({}, 0x0800, ipv4(6, ports(1, 2)));
  cut.resize(14 + 20 + 2);
  EXPECT_EQ(extract_flow(kLinkEthernet, cut).kind, FlowKey::kUnknown);
  EXPECT_EQ(extract_flow(kLinkEthernet, std::vector<uint8_t>(5)).kind, FlowKey::kUnknown);
  EXPECT_EQ(extract_flow(999, ip).kind, FlowKey::kUnknown);
}

TEST(Flow, SetDeduplicatesAndOverflows) {
  FlowSet s(3);
  FlowKey a, b, c, d;
  b.sport = 1;
  c.sport = 2;
  d.sport = 3;
  for (int i = 0; i < 3; ++i) {
    s.add(a);
    s.add(b);
  }
  EXPECT_EQ(s.size(), 2u);
  s.add(c);
  EXPECT_FALSE(s.overflowed());
  s.add(d);
  EXPECT_TRUE(s.overflowed());
  s.clear();
  EXPECT_EQ(s.size(), 0u);
  EXPECT_FALSE(s.overflowed());
}

}  // namespace
}  // namespace trawl::store
