// Flow keys for the segment index: what a packet's outer headers say about
// it, extracted cheaply on the collector's hot path (no allocation, no
// copies beyond the key), and a per-block set of them.
//
// extract_flow() walks link layer (Ethernet with VLAN/QinQ tags, Linux SLL
// and SLL2, raw IP) -> IPv4/IPv6 -> TCP/UDP/SCTP ports, and the VXLAN VNI
// of UDP port 4789/8472. It records what libpcap's filter programs look at,
// so that the query can decide exactly, for most flows, whether a BPF
// primitive can match (docs/storage.md "Flows"):
//   - the outermost VLAN ID (libpcap without the `vlan` keyword sees only
//     ethertype 0x8100 there, and the IP fields are those behind the tags),
//   - IPv6: the next-header field of the fixed header (ports only when it is
//     TCP/UDP/SCTP), like libpcap's `port`;
//   - fragments (IPv4 MF/offset, IPv6 fragment header) are flagged
//     kL4Inexact: their ports are not recorded.
//   - ARP/RARP: the sender/target protocol addresses (what "host X" also
//     matches);
// Anything it cannot parse becomes Kind::kUnknown (the query then treats the
// flow as "may match anything"). Pure functions; FlowSet is not thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace trawl::store {

struct FlowKey {
  enum Kind : uint8_t { kUnknown = 0, kNonIp = 1, kIpv4 = 4, kIpv6 = 6 };
  static constexpr uint8_t kL4Inexact = 0x01;  // fragment: no ports; proto check loose
  static constexpr uint8_t kArpAddrs = 0x02;   // kNonIp ARP/RARP: src/dst hold its IPv4 addresses
  static constexpr uint16_t kNoVlan = 0xFFFF;
  static constexpr uint32_t kNoVni = 0xFFFFFFFF;

  uint8_t kind = kUnknown;
  uint8_t flags = 0;
  uint8_t proto = 0;        // IPv4 protocol / IPv6 next header
  uint8_t reserved = 0;
  uint16_t vlan = kNoVlan;  // outermost VLAN ID
  uint16_t sport = 0;       // kNonIp: the ethertype
  uint16_t dport = 0;
  uint16_t reserved2 = 0;
  uint32_t vni = kNoVni;
  std::array<uint8_t, 16> src{};  // IPv4 in the first 4 bytes
  std::array<uint8_t, 16> dst{};

  bool operator==(const FlowKey& o) const { return std::memcmp(this, &o, sizeof(FlowKey)) == 0; }
};
static_assert(sizeof(FlowKey) == 48);

// Link types (LINKTYPE_* values found in pcapng IDBs).
constexpr uint16_t kLinkEthernet = 1;
constexpr uint16_t kLinkRaw = 101;
constexpr uint16_t kLinkSll = 113;
constexpr uint16_t kLinkSll2 = 276;
constexpr uint16_t kLinkIpv4 = 228;
constexpr uint16_t kLinkIpv6 = 229;

FlowKey extract_flow(uint16_t link_type, std::span<const uint8_t> frame);
// The same, written in place (no copy of a just-built key: see BlockIndexer).
void extract_flow(uint16_t link_type, std::span<const uint8_t> frame, FlowKey& out);

// Deduplicating set of flows with a fixed capacity (open addressing, no
// allocation after construction). When full, overflowed() turns true and
// further flows are not recorded (the index then marks the block "all
// flows", which the query treats as matching anything).
class FlowSet {
 public:
  explicit FlowSet(size_t capacity = 4096);
  void add(const FlowKey& k);
  void clear();
  bool overflowed() const { return overflowed_; }
  size_t size() const { return keys_.size(); }
  const std::vector<FlowKey>& keys() const { return keys_; }  // insertion order

 private:
  std::vector<int32_t> slots_;  // index into keys_, -1 empty
  std::vector<FlowKey> keys_;
  size_t capacity_;
  bool overflowed_ = false;
  size_t last_ = SIZE_MAX;  // cache: consecutive packets of one flow
};

}  // namespace trawl::store
