// Decapsulation shared by every decoder: link layer -> IP -> UDP/TCP/SCTP,
// through tunnels. One frame in, zero or more innermost transport packets
// out (to an L4Handler, synchronously).
//
// Link types are a table (Ethernet, Linux SLL/SLL2, raw IP, BSD loopback
// NULL/LOOP, IPv4/IPv6); Ethernet walks 802.1Q/802.1ad/QinQ tags and MPLS
// labels. Tunnels: VXLAN on UDP 4789 and Linux's 8472, GRE (RFC 2784/2890),
// GTP-U (UDP 2152, G-PDU). IPv4 and IPv6 fragments are reassembled in a
// bounded table (max_fragment_sets sets of at most 64 KiB, dropped after
// fragment_timeout_ns of capture time; overflow and timeouts are counted).
//
// Malformed input is counted as a named anomaly ("ip.bad_header_length")
// and never throws. All reads go through ByteReader. The L4Packet handed to
// the handler points into the frame (or the reassembly buffer) and is valid
// only during the call. Not thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "decode/anomalies.h"
#include "decode/capture_reader.h"

namespace trawl::decode {

struct IpAddr {
  uint8_t family = 0;  // 4 or 6
  std::array<uint8_t, 16> b{};
  bool operator==(const IpAddr&) const = default;
  auto operator<=>(const IpAddr&) const = default;
  std::string str() const;
};
// "1.2.3.4:53", "[2001:db8::1]:53".
std::string endpoint_str(const IpAddr& a, uint16_t port);

constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;
constexpr uint8_t kProtoSctp = 132;

struct L4Packet {
  uint64_t ts_ns = 0;
  uint64_t frame_no = 0;  // 1-based frame number in the input
  IpAddr src, dst;
  uint8_t proto = 0;
  uint16_t sport = 0, dport = 0;
  std::span<const uint8_t> payload;  // transport payload (captured bytes)
  uint32_t payload_wire_len = 0;     // payload length the headers announce
  uint32_t tcp_seq = 0;
  uint8_t tcp_flags = 0;  // FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10
  uint8_t tunnel_depth = 0;
};

class L4Handler {
 public:
  virtual ~L4Handler() = default;
  virtual void on_l4(const L4Packet& p) = 0;
};

class Decapsulator {
 public:
  struct Options {
    size_t max_fragment_sets = 1024;
    uint64_t fragment_timeout_ns = 30ull * 1000000000ull;
    int max_tunnel_depth = 4;
  };
  explicit Decapsulator(L4Handler& out) : Decapsulator(out, Options{}) {}
  Decapsulator(L4Handler& out, Options opt) : out_(out), opt_(opt) {}

  void decode(const Frame& f);
  const Anomalies& anomalies() const { return anomalies_; }
  uint64_t frames() const { return frame_no_; }

 private:
  void link(uint32_t link_type, std::span<const uint8_t> d);
  void ethernet(std::span<const uint8_t> d, int depth);
  void by_ethertype(uint16_t type, std::span<const uint8_t> d, int depth);
  void ip_guess(std::span<const uint8_t> d, int depth);  // by version nibble
  void ipv4(std::span<const uint8_t> d, int depth);
  void ipv6(std::span<const uint8_t> d, int depth);
  void transport(const IpAddr& src, const IpAddr& dst, uint8_t proto, std::span<const uint8_t> d,
                 uint32_t wire_len, int depth);
  void gre(std::span<const uint8_t> d, int depth);
  void gtpu(std::span<const uint8_t> d, int depth);
  bool deeper(int depth);

  struct FragKey {
    IpAddr src, dst;
    uint32_t id;
    uint8_t proto;
    auto operator<=>(const FragKey&) const = default;
  };
  struct FragSet {
    uint64_t first_ts_ns = 0;
    std::vector<uint8_t> data;
    std::vector<std::pair<uint32_t, uint32_t>> have;  // [start, end) ranges received
    uint32_t total = 0;                                // known once the last fragment arrived
    bool have_last = false;
  };
  // Returns true (and fills reasm_) when the set is complete.
  bool add_fragment(const FragKey& k, uint32_t offset, bool more, std::span<const uint8_t> d);
  void expire_fragments();

  L4Handler& out_;
  Options opt_;
  Anomalies anomalies_;
  uint64_t frame_no_ = 0;
  uint64_t ts_ns_ = 0;
  std::map<FragKey, FragSet> frags_;
  std::vector<uint8_t> reasm_;  // last completed datagram (reused)
};

}  // namespace trawl::decode
