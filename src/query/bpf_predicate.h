// A conservative reading of a BPF filter expression, used to pick candidate
// index blocks before libpcap decides each packet.
//
// parse_bpf_predicate() understands the common primitives: [ip|ip6]
// [src|dst|src or dst|src and dst] host ADDR / net ADDR[/LEN]; [tcp|udp|sctp]
// [src|dst] port N / portrange A-B; tcp, udp, sctp, icmp, icmp6, ip, ip6;
// combined with and/&&, or/||, not/!, parentheses. Anything else (host
// names, port names, ether/arp/vlan/mpls/…, byte offsets, libpcap's implicit
// qualifier reuse as in "host a or b") makes the whole predicate "matches
// every block": never wrong, only slower.
//
// eval() is three-valued over one indexed flow: kFalse only when no packet
// of that flow can match the filter as libpcap evaluates it (e.g. VLAN-
// tagged frames do not match "host X" without the `vlan` keyword); kMaybe
// when the index does not know. A block is a candidate unless every flow
// in it evaluates to kFalse. Pure values; thread-safe after construction.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "store/flow.h"
#include "store/segment_index.h"

namespace trawl::query {

enum class Tri : uint8_t { kFalse, kTrue, kMaybe };

struct BpfNode {
  enum Op : uint8_t { kAnd, kOr, kNot, kHost, kNet, kPort, kProto, kFamily };
  Op op = kAnd;
  std::vector<BpfNode> kids;
  uint8_t dir = 0;      // 0 src or dst, 1 src, 2 dst, 3 src and dst
  uint8_t family = 0;   // 0 any, 4, 6
  bool explicit_family = false;  // "ip host", "ip6 net": not ARP
  int proto = -1;       // kPort: L4 restriction (6/17/132) or -1; kProto: 1,6,17,58,132
  std::array<uint8_t, 16> addr{};
  unsigned prefix = 0;  // bits (host: 32 or 128)
  uint16_t port_lo = 0, port_hi = 0;
};

class BpfPredicate {
 public:
  // Never fails: unknown syntax gives a predicate that matches everything.
  static BpfPredicate parse(std::string_view filter);
  bool matches_all() const { return all_; }
  Tri eval(const store::FlowKey& f) const;
  bool block_may_match(const store::IndexBlock& b) const;
  const std::string& why_all() const { return why_all_; }  // for --explain / debugging

 private:
  Tri eval(const BpfNode& n, const store::FlowKey& f) const;
  Tri eval_summary(const BpfNode& n, const store::FlowSummary& s) const;
  bool all_ = true;
  std::string why_all_;
  BpfNode root_;
};

}  // namespace trawl::query
