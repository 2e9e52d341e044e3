// Link layer -> IP -> transport, through tunnels. See decap.h.
#include "decode/decap.h"

#include <arpa/inet.h>

#include <algorithm>

#include "core/bytes.h"

namespace trawl::decode {
namespace {

std::span<const uint8_t> rest(ByteReader& r) { return r.bytes(r.remaining()); }

}  // namespace

std::string IpAddr::str() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family == 4) {
    inet_ntop(AF_INET, b.data(), buf, sizeof buf);
  } else if (family == 6) {
    inet_ntop(AF_INET6, b.data(), buf, sizeof buf);
  } else {
    return "?";
  }
  return buf;
}

std::string endpoint_str(const IpAddr& a, uint16_t port) {
  if (a.family == 6) return "[" + a.str() + "]:" + std::to_string(port);
  return a.str() + ":" + std::to_string(port);
}

void Decapsulator::decode(const Frame& f) {
  ++frame_no_;
  ts_ns_ = f.ts_ns;
  link(f.link_type, f.data);
  if (!frags_.empty() && (frame_no_ & 0xff) == 0) expire_fragments();
}

// Link-type table: LINKTYPE_* -> how to find the network layer.
void Decapsulator::link(uint32_t lt, std::span<const uint8_t> d) {
  ByteReader r(d);
  switch (lt) {
    case 1:  // Ethernet
      ethernet(d, 0);
      return;
    case 113: {  // Linux SLL: type(2) arphrd(2) addrlen(2) addr(8) protocol(2)
      r.skip(14);
      uint16_t proto = r.u16be();
      if (!r.ok()) return anomalies_.add("link.sll_truncated");
      by_ethertype(proto, rest(r), 0);
      return;
    }
    case 276: {  // Linux SLL2: protocol(2) reserved(2) ifindex(4) arphrd(2) type(1) addrlen(1) addr(8)
      uint16_t proto = r.u16be();
      r.skip(18);
      if (!r.ok()) return anomalies_.add("link.sll2_truncated");
      by_ethertype(proto, rest(r), 0);
      return;
    }
    case 101:  // LINKTYPE_RAW
    case 12:   // DLT_RAW on OpenBSD-era files
    case 14:
      ip_guess(d, 0);
      return;
    case 228:
      ipv4(d, 0);
      return;
    case 229:
      ipv6(d, 0);
      return;
    case 0: {  // BSD NULL: address family in the capturing host's byte order
      uint32_t fam = r.u32le();
      if (!r.ok()) return anomalies_.add("link.null_truncated");
      if (fam > 0xffff) fam = __builtin_bswap32(fam);
      if (fam == 2) return ipv4(rest(r), 0);
      if (fam == 10 || fam == 24 || fam == 28 || fam == 30) return ipv6(rest(r), 0);
      // Some writers put an Ethernet type in the low half (big-endian).
      ByteReader be(d);
      uint32_t raw = be.u32be();
      if ((raw & 0xffff) == 0x0800) return ipv4(rest(r), 0);
      if ((raw & 0xffff) == 0x86dd) return ipv6(rest(r), 0);
      return anomalies_.add("link.null_unknown_family");
    }
    case 108: {  // OpenBSD LOOP: family big-endian
      uint32_t fam = r.u32be();
      if (!r.ok()) return anomalies_.add("link.null_truncated");
      if (fam == 2) return ipv4(rest(r), 0);
      if (fam == 10 || fam == 24 || fam == 28 || fam == 30) return ipv6(rest(r), 0);
      return anomalies_.add("link.null_unknown_family");
    }
    default:
      anomalies_.add("link.unsupported_type");
  }
}

void Decapsulator::ethernet(std::span<const uint8_t> d, int depth) {
  ByteReader r(d);
  r.skip(12);
  uint16_t type = r.u16be();
  if (!r.ok()) return anomalies_.add("eth.truncated");
  if (type <= 1500) return;  // 802.3 length: LLC (STP, CDP, ...), nothing for us
  by_ethertype(type, rest(r), depth);
}

void Decapsulator::by_ethertype(uint16_t type, std::span<const uint8_t> d, int depth) {
  ByteReader r(d);
  // VLAN tags (802.1Q, 802.1ad, old QinQ 0x9100), any number.
  for (int tags = 0; type == 0x8100 || type == 0x88a8 || type == 0x9100; ++tags) {
    if (tags > 8) return anomalies_.add("vlan.too_many_tags");
    r.skip(2);
    type = r.u16be();
    if (!r.ok()) return anomalies_.add("vlan.truncated");
  }
  switch (type) {
    case 0x0800:
      return ipv4(rest(r), depth);
    case 0x86dd:
      return ipv6(rest(r), depth);
    case 0x8847:
    case 0x8848: {  // MPLS: skip labels to the bottom of the stack, guess IP
      for (int i = 0; i < 16; ++i) {
        uint32_t label = r.u32be();
        if (!r.ok()) return anomalies_.add("mpls.truncated");
        if (label & 0x100) return ip_guess(rest(r), depth);
      }
      return anomalies_.add("mpls.too_many_labels");
    }
    default:
      return;  // ARP, LLDP, ...
  }
}

void Decapsulator::ip_guess(std::span<const uint8_t> d, int depth) {
  if (d.empty()) return anomalies_.add("ip.truncated");
  ByteReader r(d);
  uint8_t v = r.u8() >> 4;
  if (v == 4) return ipv4(d, depth);
  if (v == 6) return ipv6(d, depth);
  anomalies_.add("ip.bad_version");
}

void Decapsulator::ipv4(std::span<const uint8_t> d, int depth) {
  ByteReader r(d);
  uint8_t vihl = r.u8();
  r.skip(1);
  uint16_t total = r.u16be();
  uint16_t id = r.u16be();
  uint16_t frag = r.u16be();
  r.skip(1);
  uint8_t proto = r.u8();
  r.skip(2);
  IpAddr src, dst;
  src.family = dst.family = 4;
  auto s = r.bytes(4), t = r.bytes(4);
  if (!r.ok()) return anomalies_.add("ip.truncated");
  if ((vihl >> 4) != 4) return anomalies_.add("ip.bad_version");
  size_t hlen = size_t{vihl & 0x0fu} * 4;
  if (hlen < 20) return anomalies_.add("ip.bad_header_length");
  if (total < hlen) return anomalies_.add("ip.bad_total_length");
  std::copy(s.begin(), s.end(), src.b.begin());
  std::copy(t.begin(), t.end(), dst.b.begin());
  ByteReader body(d);
  body.skip(hlen);
  if (!body.ok()) return anomalies_.add("ip.bad_header_length");
  size_t avail = body.remaining();
  size_t want = total - hlen;
  if (want > avail) anomalies_.add("ip.truncated");  // snaplen or a lying total length
  auto payload = body.bytes(std::min(want, avail));
  uint32_t offset = uint32_t{frag & 0x1fffu} * 8;
  bool more = frag & 0x2000;
  if (offset != 0 || more) {
    if (want > avail) return anomalies_.add("ip.fragment_truncated");
    FragKey k{src, dst, id, proto};
    if (!add_fragment(k, offset, more, payload)) return;
    std::vector<uint8_t> whole = std::move(reasm_);
    transport(src, dst, proto, whole, static_cast<uint32_t>(whole.size()), depth);
    reasm_ = std::move(whole);
    return;
  }
  transport(src, dst, proto, payload, static_cast<uint32_t>(want), depth);
}

void Decapsulator::ipv6(std::span<const uint8_t> d, int depth) {
  ByteReader r(d);
  uint32_t vtf = r.u32be();
  uint16_t plen = r.u16be();
  uint8_t next = r.u8();
  r.skip(1);
  IpAddr src, dst;
  src.family = dst.family = 6;
  auto s = r.bytes(16), t = r.bytes(16);
  if (!r.ok()) return anomalies_.add("ipv6.truncated");
  if ((vtf >> 28) != 6) return anomalies_.add("ip.bad_version");
  std::copy(s.begin(), s.end(), src.b.begin());
  std::copy(t.begin(), t.end(), dst.b.begin());
  size_t avail = r.remaining();
  if (plen > avail) anomalies_.add("ipv6.truncated");
  ByteReader p(r.bytes(std::min<size_t>(plen, avail)));
  uint32_t wire = plen;
  // Extension headers.
  for (int i = 0; i < 16; ++i) {
    if (next == 0 || next == 43 || next == 60) {  // hop-by-hop, routing, destination options
      uint8_t nh = p.u8();
      uint8_t len = p.u8();
      p.skip(size_t{len} * 8 + 6);
      if (!p.ok()) return anomalies_.add("ipv6.bad_extension_header");
      wire -= std::min<uint32_t>(wire, uint32_t{len} * 8 + 8);
      next = nh;
    } else if (next == 51) {  // AH
      uint8_t nh = p.u8();
      uint8_t len = p.u8();
      p.skip(size_t{len} * 4 + 6);
      if (!p.ok()) return anomalies_.add("ipv6.bad_extension_header");
      wire -= std::min<uint32_t>(wire, uint32_t{len} * 4 + 8);
      next = nh;
    } else if (next == 44) {  // fragment
      uint8_t nh = p.u8();
      p.skip(1);
      uint16_t off = p.u16be();
      uint32_t id = p.u32be();
      if (!p.ok()) return anomalies_.add("ipv6.bad_extension_header");
      auto payload = rest(p);
      uint32_t offset = off & 0xfff8u;
      bool more = off & 1;
      if (offset == 0 && !more) {  // atomic fragment
        next = nh;
        p = ByteReader(payload);
        wire -= std::min<uint32_t>(wire, 8);
        continue;
      }
      if (plen > avail) return anomalies_.add("ip.fragment_truncated");
      FragKey k{src, dst, id, nh};
      if (!add_fragment(k, offset, more, payload)) return;
      std::vector<uint8_t> whole = std::move(reasm_);
      transport(src, dst, nh, whole, static_cast<uint32_t>(whole.size()), depth);
      reasm_ = std::move(whole);
      return;
    } else {
      break;
    }
  }
  transport(src, dst, next, rest(p), wire, depth);
}

bool Decapsulator::add_fragment(const FragKey& k, uint32_t offset, bool more, std::span<const uint8_t> d) {
  auto it = frags_.find(k);
  if (it == frags_.end()) {
    if (frags_.size() >= opt_.max_fragment_sets) {
      // Evict the oldest set: memory stays bounded whatever arrives.
      auto oldest = std::min_element(frags_.begin(), frags_.end(), [](const auto& a, const auto& b) {
        return a.second.first_ts_ns < b.second.first_ts_ns;
      });
      frags_.erase(oldest);
      anomalies_.add("ip.fragments_evicted");
    }
    it = frags_.emplace(k, FragSet{}).first;
    it->second.first_ts_ns = ts_ns_;
  }
  FragSet& fs = it->second;
  uint64_t end = uint64_t{offset} + d.size();
  if (end > 65535 + 8 || (more && d.size() % 8 != 0)) {
    frags_.erase(it);
    anomalies_.add("ip.bad_fragment");
    return false;
  }
  if (!more) {
    if (fs.have_last && fs.total != end) {
      frags_.erase(it);
      anomalies_.add("ip.fragment_overlap");
      return false;
    }
    fs.have_last = true;
    fs.total = static_cast<uint32_t>(end);
  }
  if (fs.data.size() < end) fs.data.resize(end);
  std::copy(d.begin(), d.end(), fs.data.begin() + offset);
  fs.have.emplace_back(offset, static_cast<uint32_t>(end));
  if (!fs.have_last) return false;
  // Complete when the received ranges cover [0, total).
  std::sort(fs.have.begin(), fs.have.end());
  uint32_t covered = 0;
  for (auto [a, b] : fs.have) {
    if (a > covered) return false;
    covered = std::max(covered, b);
  }
  if (covered < fs.total) return false;
  reasm_.assign(fs.data.begin(), fs.data.begin() + fs.total);
  frags_.erase(it);
  return true;
}

void Decapsulator::expire_fragments() {
  for (auto it = frags_.begin(); it != frags_.end();) {
    if (ts_ns_ > it->second.first_ts_ns + opt_.fragment_timeout_ns) {
      anomalies_.add("ip.fragments_timed_out");
      it = frags_.erase(it);
    } else {
      ++it;
    }
  }
}

bool Decapsulator::deeper(int depth) {
  if (depth + 1 > opt_.max_tunnel_depth) {
    anomalies_.add("tunnel.too_deep");
    return false;
  }
  return true;
}

void Decapsulator::transport(const IpAddr& src, const IpAddr& dst, uint8_t proto, std::span<const uint8_t> d,
                             uint32_t wire_len, int depth) {
  L4Packet p;
  p.ts_ns = ts_ns_;
  p.frame_no = frame_no_;
  p.src = src;
  p.dst = dst;
  p.proto = proto;
  p.tunnel_depth = static_cast<uint8_t>(depth);
  ByteReader r(d);
  switch (proto) {
    case kProtoUdp: {
      p.sport = r.u16be();
      p.dport = r.u16be();
      uint16_t len = r.u16be();
      r.skip(2);
      if (!r.ok()) return anomalies_.add("udp.truncated");
      if (len < 8) return anomalies_.add("udp.bad_length");
      if (len - 8u > r.remaining()) anomalies_.add("udp.truncated");
      p.payload = r.bytes(std::min<size_t>(len - 8u, r.remaining()));
      p.payload_wire_len = len - 8u;
      // Tunnels carried in UDP.
      if (p.dport == 4789 || p.dport == 8472) {
        ByteReader v(p.payload);
        uint8_t flags = v.u8();
        v.skip(7);
        if (v.ok() && (flags & 0x08)) {
          if (deeper(depth)) ethernet(rest(v), depth + 1);
          return;
        }
        if (!v.ok()) return anomalies_.add("vxlan.truncated");
      }
      if (p.dport == 2152 || p.sport == 2152) {
        if (deeper(depth)) gtpu(p.payload, depth + 1);
        return;
      }
      out_.on_l4(p);
      return;
    }
    case kProtoTcp: {
      p.sport = r.u16be();
      p.dport = r.u16be();
      p.tcp_seq = r.u32be();
      r.skip(4);
      uint8_t off = r.u8();
      p.tcp_flags = r.u8();
      r.skip(6);
      if (!r.ok()) return anomalies_.add("tcp.truncated");
      size_t hlen = static_cast<size_t>(off >> 4) * 4;
      if (hlen < 20) return anomalies_.add("tcp.bad_header_length");
      r.skip(hlen - 20);
      if (!r.ok()) return anomalies_.add("tcp.truncated");
      p.payload = rest(r);
      p.payload_wire_len = wire_len >= hlen ? static_cast<uint32_t>(wire_len - hlen) : 0;
      if (p.payload.size() < p.payload_wire_len) anomalies_.add("tcp.truncated_payload");
      out_.on_l4(p);
      return;
    }
    case kProtoSctp: {
      p.sport = r.u16be();
      p.dport = r.u16be();
      r.skip(8);
      if (!r.ok()) return anomalies_.add("sctp.truncated");
      p.payload = rest(r);
      p.payload_wire_len = wire_len >= 12 ? wire_len - 12 : 0;
      out_.on_l4(p);
      return;
    }
    case 47:
      if (deeper(depth)) gre(d, depth + 1);
      return;
    case 1:    // ICMP
    case 58:   // ICMPv6: handed on (no ports) so tunnel contents can be counted
      p.payload = d;
      p.payload_wire_len = wire_len;
      out_.on_l4(p);
      return;
    case 4:  // IP in IP
      if (deeper(depth)) ipv4(d, depth + 1);
      return;
    case 41:
      if (deeper(depth)) ipv6(d, depth + 1);
      return;
    default:
      return;
  }
}

void Decapsulator::gre(std::span<const uint8_t> d, int depth) {
  ByteReader r(d);
  uint16_t flags = r.u16be();
  uint16_t type = r.u16be();
  if (!r.ok()) return anomalies_.add("gre.truncated");
  if ((flags & 0x7) != 0) return anomalies_.add("gre.unsupported_version");
  if (flags & 0x8000) r.skip(4);  // checksum + reserved
  if (flags & 0x2000) r.skip(4);  // key
  if (flags & 0x1000) r.skip(4);  // sequence
  if (!r.ok()) return anomalies_.add("gre.truncated");
  if (type == 0x6558) return ethernet(rest(r), depth);
  by_ethertype(type, rest(r), depth);
}

// GTP-U (3GPP TS 29.281): only G-PDUs (type 255) carry user packets.
void Decapsulator::gtpu(std::span<const uint8_t> d, int depth) {
  ByteReader r(d);
  uint8_t flags = r.u8();
  uint8_t type = r.u8();
  uint16_t len = r.u16be();
  r.skip(4);  // TEID
  if (!r.ok()) return anomalies_.add("gtp.truncated");
  if ((flags >> 5) != 1 || !(flags & 0x10)) return anomalies_.add("gtp.bad_version");
  if (type != 255) return;  // echo, error indication, end marker
  ByteReader body(r.bytes(std::min<size_t>(len, r.remaining())));
  if (flags & 0x07) {
    body.skip(3);  // sequence number, N-PDU number
    uint8_t next = body.u8();
    for (int i = 0; next != 0 && i < 16; ++i) {
      uint8_t elen = body.u8();
      if (elen == 0) return anomalies_.add("gtp.bad_extension");
      body.skip(size_t{elen} * 4 - 2);
      next = body.u8();
    }
    if (!body.ok()) return anomalies_.add("gtp.truncated");
  }
  ip_guess(rest(body), depth);
}

}  // namespace trawl::decode
