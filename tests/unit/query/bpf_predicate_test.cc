// The predicate never says "no" where libpcap could say "yes": checked
// against libpcap itself over synthetic packets, plus the parse cases.
#include <gtest/gtest.h>
#include <pcap/pcap.h>

#include <random>

#include "query/bpf_predicate.h"

namespace trawl::query {
namespace {

using store::FlowKey;

FlowKey v4(std::array<uint8_t, 4> s, std::array<uint8_t, 4> d, uint8_t proto, uint16_t sp, uint16_t dp) {
  FlowKey k;
  k.kind = FlowKey::kIpv4;
  std::copy(s.begin(), s.end(), k.src.begin());
  std::copy(d.begin(), d.end(), k.dst.begin());
  k.proto = proto;
  k.sport = sp;
  k.dport = dp;
  return k;
}

TEST(BpfPredicate, ParsesCommonPrimitives) {
  for (const char* f : {"host 10.0.0.1", "src host 10.0.0.1", "dst net 10.0.0.0/8", "net 192.168",
                        "tcp port 80", "udp dst port 53", "portrange 5060-5070", "tcp", "udp or sctp",
                        "icmp", "icmp6", "ip6", "not tcp", "host 10.0.0.1 and (port 80 or port 443)",
                        "host 2001:db8::1", "src or dst host 10.0.0.1", "src and dst net 10.0.0.0/8",
                        "ip host 1.2.3.4 && !udp", "ip6 net 2001:db8::/32", "src 10.0.0.1"}) {
    auto p = BpfPredicate::parse(f);
    EXPECT_FALSE(p.matches_all()) << f << ": " << p.why_all();
  }
}

TEST(BpfPredicate, UnknownSyntaxMatchesEverything) {
  for (const char* f : {"", "host example.com", "port http", "vlan and host 10.0.0.1", "ether host 0:1:2:3:4:5",
                        "host 10.0.0.1 or 10.0.0.2", "tcp[13] & 2 != 0", "arp", "len > 100", "mpls",
                        "proto 17", "net 10.0.0.0 mask 255.0.0.0", "(host 10.0.0.1", "greater 100"}) {
    EXPECT_TRUE(BpfPredicate::parse(f).matches_all()) << f;
  }
}

TEST(BpfPredicate, EvaluatesFlows) {
  auto f = v4({10, 0, 0, 1}, {192, 168, 1, 2}, 6, 1234, 80);
  auto ev = [&](const char* e) { return BpfPredicate::parse(e).eval(f); };
  EXPECT_EQ(ev("host 10.0.0.1"), Tri::kTrue);
  EXPECT_EQ(ev("dst host 10.0.0.1"), Tri::kFalse);
  EXPECT_EQ(ev("src and dst net 10.0.0.0/8"), Tri::kFalse);
  EXPECT_EQ(ev("net 192.168.0.0/16"), Tri::kTrue);
  EXPECT_EQ(ev("tcp port 80"), Tri::kTrue);
  EXPECT_EQ(ev("udp port 80"), Tri::kFalse);
  EXPECT_EQ(ev("src port 80"), Tri::kFalse);
  EXPECT_EQ(ev("portrange 1000-2000"), Tri::kTrue);
  EXPECT_EQ(ev("not tcp"), Tri::kFalse);
  EXPECT_EQ(ev("ip6"), Tri::kFalse);
  EXPECT_EQ(ev("host 10.0.0.9 or port 80"), Tri::kTrue);
  EXPECT_EQ(ev("host 2001:db8::1"), Tri::kFalse);
  FlowKey tagged = f;
  tagged.vlan = 10;
  EXPECT_EQ(BpfPredicate::parse("host 10.0.0.1").eval(tagged), Tri::kFalse);   // libpcap sees 0x8100
  EXPECT_EQ(BpfPredicate::parse("not host 10.0.0.1").eval(tagged), Tri::kTrue);
  FlowKey frag = f;
  frag.flags = FlowKey::kL4Inexact;
  EXPECT_EQ(BpfPredicate::parse("not port 80").eval(frag), Tri::kMaybe);
  FlowKey arp;
  arp.kind = FlowKey::kNonIp;
  arp.sport = 0x0806;
  EXPECT_EQ(BpfPredicate::parse("host 10.0.0.1").eval(arp), Tri::kMaybe);  // also "arp host"
  EXPECT_EQ(BpfPredicate::parse("tcp").eval(arp), Tri::kFalse);
  EXPECT_EQ(BpfPredicate::parse("tcp").eval(FlowKey{}), Tri::kMaybe);  // unknown flow
}

// For random flows turned into Ethernet frames, whenever libpcap accepts
// the frame the predicate must not have said kFalse, and kTrue must agree.
TEST(BpfPredicate, NeverExcludesWhatLibpcapMatches) {
  const char* filters[] = {"host 10.0.0.1", "not host 10.0.0.1", "src net 10.0.0.0/24 and not dst port 80",
                           "tcp port 80 or udp port 53", "not (tcp or udp)", "icmp", "ip6 or sctp",
                           "portrange 50-90 and not src host 10.0.0.2", "dst host 10.0.0.2 or not ip"};
  pcap_t* dead = pcap_open_dead(DLT_EN10MB, 65535);
  std::mt19937 rng(7);
  for (const char* text : filters) {
    bpf_program prog;
    ASSERT_EQ(pcap_compile(dead, &prog, text, 1, PCAP_NETMASK_UNKNOWN), 0) << text;
    auto pred = BpfPredicate::parse(text);
    ASSERT_FALSE(pred.matches_all()) << text;
    store::IndexBlock block;
    bool block_lib = false;
    for (int i = 0; i < 3000; ++i) {
      std::vector<uint8_t> fr(12, 0);
      bool vlan = rng() % 5 == 0;
      if (vlan) fr.insert(fr.end(), {0x81, 0x00, 0x00, 0x0A});
      uint8_t protos[] = {1, 6, 17, 132, 47};
      uint8_t proto = protos[rng() % 5];
      bool frag = rng() % 8 == 0;
      int kind = rng() % 6;  // 0: ARP, 1: IPv6, else IPv4
      if (kind == 0) {
        fr.insert(fr.end(), {0x08, 0x06});
        std::vector<uint8_t> arp = {0, 1, 8, 0, 6, 4, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0,
                                    static_cast<uint8_t>(1 + rng() % 3), 0, 0, 0, 0, 0, 0, 10, 0, 0, 1};
        fr.insert(fr.end(), arp.begin(), arp.end());
      } else if (kind == 1) {
        fr.insert(fr.end(), {0x86, 0xDD});
        std::vector<uint8_t> h(40, 0);
        h[0] = 0x60;
        h[6] = frag ? 44 : proto == 1 ? 58 : proto;
        h[8] = 0x20;
        h[23] = static_cast<uint8_t>(rng() % 3);
        fr.insert(fr.end(), h.begin(), h.end());
        if (frag) fr.insert(fr.end(), {proto, 0, 0, 0, 0, 0, 0, 1});
        std::vector<uint8_t> l4 = {0, static_cast<uint8_t>(rng() % 100), 0, static_cast<uint8_t>(rng() % 100)};
        l4.resize(20, 0);
        fr.insert(fr.end(), l4.begin(), l4.end());
      } else {
        fr.insert(fr.end(), {0x08, 0x00});
        uint16_t fo = frag ? (rng() % 2 ? 0x2000 : 0x0010) : 0;
        std::vector<uint8_t> h = {0x45, 0, 0, 40, 0, 0, static_cast<uint8_t>(fo >> 8), static_cast<uint8_t>(fo),
                                  64, proto, 0, 0, 10, 0, 0, static_cast<uint8_t>(1 + rng() % 3),
                                  10, 0, static_cast<uint8_t>(rng() % 2), static_cast<uint8_t>(1 + rng() % 3)};
        fr.insert(fr.end(), h.begin(), h.end());
        std::vector<uint8_t> l4 = {0, static_cast<uint8_t>(rng() % 100), 0, static_cast<uint8_t>(rng() % 100)};
        l4.resize(20, 0);
        fr.insert(fr.end(), l4.begin(), l4.end());
      }
      pcap_pkthdr h{};
      h.caplen = h.len = static_cast<bpf_u_int32>(fr.size());
      bool lib = pcap_offline_filter(&prog, &h, fr.data()) != 0;
      const auto flow = store::extract_flow(store::kLinkEthernet, fr);
      Tri t = pred.eval(flow);
      // Blocks of 16 frames: flows + summary, as the index has them.
      block.flows.push_back(flow);
      block.summary.add(flow);
      ++block.packets;
      block_lib = block_lib || lib;
      if (block.packets == 16) {
        if (block_lib) {
          EXPECT_TRUE(pred.block_may_match(block)) << text << " block ending at frame " << i;
        }
        block = store::IndexBlock{};
        block_lib = false;
      }
      if (lib) {
        EXPECT_NE(t, Tri::kFalse) << text << " frame " << i;
      }
      if (t == Tri::kTrue) {
        EXPECT_TRUE(lib) << text << " frame " << i;
      }
    }
    pcap_freecode(&prog);
  }
  pcap_close(dead);
}

}  // namespace
}  // namespace trawl::query
