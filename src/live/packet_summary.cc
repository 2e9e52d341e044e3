#include "live/packet_summary.h"

#include <arpa/inet.h>

#include <fmt/format.h>

#include "core/bytes.h"

namespace trawl::live {
namespace {

std::string ipv4(std::span<const uint8_t> a) {
  if (a.size() < 4) return "?";
  return fmt::format("{}.{}.{}.{}", a[0], a[1], a[2], a[3]);
}

std::string ipv6(std::span<const uint8_t> a) {
  if (a.size() < 16) return "?";
  char buf[INET6_ADDRSTRLEN];
  if (!inet_ntop(AF_INET6, a.data(), buf, sizeof buf)) return "?";
  return buf;
}

std::string tcp_flags(uint8_t f) {
  std::string s;
  if (f & 0x01) s += 'F';
  if (f & 0x02) s += 'S';
  if (f & 0x04) s += 'R';
  if (f & 0x08) s += 'P';
  if (f & 0x20) s += 'U';
  if (f & 0x10) s += '.';
  if (s.empty()) s = "none";
  return s;
}

// Transport summary after "src > dst" addresses.
std::string l4(uint8_t proto, ByteReader r, const std::string& src, const std::string& dst, size_t payload_len,
               bool v6) {
  if (proto == 6) {
    uint16_t sp = r.u16be(), dp = r.u16be();
    uint32_t seq = r.u32be();
    r.u32be();
    uint8_t off = r.u8();
    uint8_t flags = r.u8();
    if (!r.ok()) return fmt::format("{} > {}: tcp (truncated)", src, dst);
    size_t hl = (off >> 4) * 4u;
    size_t len = payload_len > hl ? payload_len - hl : 0;
    return fmt::format("{}.{} > {}.{}: Flags [{}], seq {}, length {}", src, sp, dst, dp, tcp_flags(flags), seq, len);
  }
  if (proto == 17) {
    uint16_t sp = r.u16be(), dp = r.u16be(), ulen = r.u16be();
    if (!r.ok()) return fmt::format("{} > {}: udp (truncated)", src, dst);
    return fmt::format("{}.{} > {}.{}: UDP, length {}", src, sp, dst, dp, ulen >= 8 ? ulen - 8 : 0);
  }
  if (proto == 1 || (v6 && proto == 58)) {
    uint8_t type = r.u8(), code = r.u8();
    if (!r.ok()) return fmt::format("{} > {}: ICMP (truncated)", src, dst);
    const char* what = nullptr;
    if (!v6 && type == 8) what = "echo request";
    if (!v6 && type == 0) what = "echo reply";
    if (!v6 && type == 3) what = "unreachable";
    if (v6 && type == 128) what = "echo request";
    if (v6 && type == 129) what = "echo reply";
    if (v6 && type == 135) what = "neighbor solicitation";
    if (v6 && type == 136) what = "neighbor advertisement";
    if (what) return fmt::format("{} > {}: {} {}, length {}", src, dst, v6 ? "ICMP6" : "ICMP", what, payload_len);
    return fmt::format("{} > {}: {} type {} code {}, length {}", src, dst, v6 ? "ICMP6" : "ICMP", type, code,
                       payload_len);
  }
  return fmt::format("{} > {}: ip-proto-{}, length {}", src, dst, proto, payload_len);
}

std::string ip(ByteReader r) {
  ByteReader peek = r;
  uint8_t vhl = peek.u8();
  if (!peek.ok()) return "IP (truncated)";
  if ((vhl >> 4) == 4) {
    uint8_t ihl = vhl & 15;
    r.u8();
    r.u8();
    uint16_t total = r.u16be();
    r.u16be();
    uint16_t frag = r.u16be();
    r.u8();
    uint8_t proto = r.u8();
    r.u16be();
    auto src = ipv4(r.bytes(4)), dst = ipv4(r.bytes(4));
    if (!r.ok() || ihl < 5) return "IP (truncated)";
    r.skip((ihl - 5) * 4u);
    size_t payload = total > ihl * 4 ? total - ihl * 4u : 0;
    if ((frag & 0x1fff) != 0) return fmt::format("IP {} > {}: ip-proto-{} (fragment), length {}", src, dst, proto, payload);
    return "IP " + l4(proto, r, src, dst, payload, false);
  }
  if ((vhl >> 4) == 6) {
    r.u32be();
    uint16_t plen = r.u16be();
    uint8_t next = r.u8();
    r.u8();
    auto src = ipv6(r.bytes(16)), dst = ipv6(r.bytes(16));
    if (!r.ok()) return "IP6 (truncated)";
    // Skip the common extension headers (hop-by-hop, routing, destination options).
    for (int i = 0; i < 4 && (next == 0 || next == 43 || next == 60); ++i) {
      uint8_t nn = r.u8();
      uint8_t len = r.u8();
      r.skip(6 + len * 8u);
      plen = plen > 8 + len * 8 ? static_cast<uint16_t>(plen - 8 - len * 8) : 0;
      next = nn;
    }
    if (next == 44) return fmt::format("IP6 {} > {}: fragment, length {}", src, dst, plen);
    return "IP6 " + l4(next, r, src, dst, plen, true);
  }
  return fmt::format("IP version {} (bad)", vhl >> 4);
}

std::string arp(ByteReader r) {
  r.u16be();
  uint16_t ptype = r.u16be();
  uint8_t hlen = r.u8(), plen = r.u8();
  uint16_t op = r.u16be();
  auto sha = r.bytes(hlen);
  auto spa = r.bytes(plen);
  r.bytes(hlen);
  auto tpa = r.bytes(plen);
  if (!r.ok()) return "ARP (truncated)";
  if (ptype != 0x0800 || plen != 4) return fmt::format("ARP, op {}", op);
  if (op == 1) return fmt::format("ARP, Request who-has {} tell {}", ipv4(tpa), ipv4(spa));
  if (op == 2) {
    std::string mac;
    for (size_t i = 0; i < sha.size(); ++i) mac += fmt::format("{}{:02x}", i ? ":" : "", sha[i]);
    return fmt::format("ARP, Reply {} is-at {}", ipv4(spa), mac);
  }
  return fmt::format("ARP, op {}", op);
}

std::string by_ethertype(uint16_t type, ByteReader r, std::string prefix) {
  for (int i = 0; i < 4 && (type == 0x8100 || type == 0x88a8); ++i) {
    uint16_t tci = r.u16be();
    type = r.u16be();
    prefix += fmt::format("vlan {}, ", tci & 0x0fff);
  }
  if (!r.ok()) return prefix + "(truncated)";
  if (type == 0x0800 || type == 0x86dd) return prefix + ip(r);
  if (type == 0x0806) return prefix + arp(r);
  return prefix + fmt::format("ethertype 0x{:04x}, length {}", type, r.remaining());
}

}  // namespace

std::string summarize_packet(uint16_t link_type, std::span<const uint8_t> data, uint32_t orig_len) {
  ByteReader r(data);
  std::string s;
  switch (link_type) {
    case 1: {  // Ethernet
      r.skip(12);
      uint16_t type = r.u16be();
      if (!r.ok()) return fmt::format("Ethernet (truncated), length {}", orig_len);
      if (type < 0x0600) return fmt::format("802.3, length {}", orig_len);
      return by_ethertype(type, r, "");
    }
    case 113: {  // Linux cooked v1
      r.skip(14);
      uint16_t type = r.u16be();
      if (!r.ok()) return fmt::format("SLL (truncated), length {}", orig_len);
      return by_ethertype(type, r, "");
    }
    case 101:  // raw IP
    case 228:
    case 229:
      return ip(r);
    case 0: {  // BSD loopback: host-order address family
      r.skip(4);
      return ip(r);
    }
    default:
      return fmt::format("link type {}, length {}", link_type, orig_len);
  }
}

}  // namespace trawl::live
