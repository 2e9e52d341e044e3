// One-line packet summaries in the spirit of `tcpdump -n` (not its exact
// output): link layer (Ethernet, 802.1Q/802.1ad VLANs, Linux cooked v1,
// raw IP), ARP, IPv4/IPv6 and TCP/UDP/ICMP/ICMPv6, e.g.
//   "IP 10.0.0.1.5060 > 10.0.0.2.5060: UDP, length 412"
//   "vlan 10, IP6 2001:db8::1.443 > 2001:db8::2.51000: Flags [S.], length 0"
// Every byte is read through ByteReader; truncated packets say so.
// Pure function; thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace trawl::live {

std::string summarize_packet(uint16_t link_type, std::span<const uint8_t> data, uint32_t orig_len);

}  // namespace trawl::live
