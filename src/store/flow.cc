// Flow extraction: link layer -> IP -> L4, bounds-checked through ByteReader
// positions (every read is checked against the frame length first).
#include "store/flow.h"

#include "core/bytes.h"

namespace trawl::store {
namespace {

constexpr uint16_t kEtherIpv4 = 0x0800;
constexpr uint16_t kEtherIpv6 = 0x86DD;
constexpr uint16_t kEtherVlan = 0x8100;
constexpr uint16_t kEtherQinQ = 0x88A8;
constexpr uint16_t kEtherQinQOld = 0x9100;

uint16_t be16(std::span<const uint8_t> d, size_t off) {
  return static_cast<uint16_t>((d[off] << 8) | d[off + 1]);
}

void l4_ports(FlowKey& k, std::span<const uint8_t> d, size_t off) {
  if (k.proto != 6 && k.proto != 17 && k.proto != 132) return;
  if (d.size() < off + 4) {
    k.kind = FlowKey::kUnknown;  // truncated: libpcap cannot load the ports either
    return;
  }
  k.sport = be16(d, off);
  k.dport = be16(d, off + 2);
  if (k.proto == 17 && (k.dport == 4789 || k.dport == 8472) && d.size() >= off + 16 &&
      (d[off + 8] & 0x08))
    k.vni = (static_cast<uint32_t>(d[off + 12]) << 16) | (d[off + 13] << 8) | d[off + 14];
}

void ip(FlowKey& k, std::span<const uint8_t> d, size_t off, uint16_t ethertype) {
  if (ethertype == kEtherIpv4) {
    if (d.size() < off + 20 || (d[off] >> 4) != 4) return;  // kUnknown
    size_t ihl = (d[off] & 0x0F) * 4u;
    if (ihl < 20 || d.size() < off + ihl) return;
    k.kind = FlowKey::kIpv4;
    k.proto = d[off + 9];
    std::memcpy(k.src.data(), &d[off + 12], 4);
    std::memcpy(k.dst.data(), &d[off + 16], 4);
    uint16_t frag = be16(d, off + 6);
    if (frag & 0x3FFF) {  // MF or offset
      k.flags |= FlowKey::kL4Inexact;
      return;
    }
    l4_ports(k, d, off + ihl);
  } else if (ethertype == kEtherIpv6) {
    if (d.size() < off + 40 || (d[off] >> 4) != 6) return;
    k.kind = FlowKey::kIpv6;
    k.proto = d[off + 6];
    std::memcpy(k.src.data(), &d[off + 8], 16);
    std::memcpy(k.dst.data(), &d[off + 24], 16);
    if (k.proto == 44) {
      k.flags |= FlowKey::kL4Inexact;
      return;
    }
    l4_ports(k, d, off + 40);
  } else {
    k.kind = FlowKey::kNonIp;
    k.sport = ethertype;
    // ARP/RARP: the 4 bytes where libpcap's "arp host" looks (sender and
    // target protocol address of an Ethernet/IPv4 ARP).
    if ((ethertype == 0x0806 || ethertype == 0x8035) && d.size() >= off + 28) {
      k.flags |= FlowKey::kArpAddrs;
      std::memcpy(k.src.data(), &d[off + 14], 4);
      std::memcpy(k.dst.data(), &d[off + 24], 4);
    }
  }
}

}  // namespace

FlowKey extract_flow(uint16_t link_type, std::span<const uint8_t> d) {
  FlowKey k;
  extract_flow(link_type, d, k);
  return k;
}

void extract_flow(uint16_t link_type, std::span<const uint8_t> d, FlowKey& k) {
  k = FlowKey{};
  switch (link_type) {
    case kLinkEthernet: {
      if (d.size() < 14) return;
      size_t off = 12;
      uint16_t et = be16(d, off);
      while (et == kEtherVlan || et == kEtherQinQ || et == kEtherQinQOld) {
        if (d.size() < off + 6) return;
        if (k.vlan == FlowKey::kNoVlan) k.vlan = be16(d, off + 2) & 0x0FFF;
        off += 4;
        et = be16(d, off);
      }
      if (et < 0x0600) {  // 802.3 length field (LLC): not IP
        k.kind = FlowKey::kNonIp;
        k.sport = 0;
        return;
      }
      ip(k, d, off + 2, et);
      return;
    }
    case kLinkSll:
      if (d.size() < 16) return;
      ip(k, d, 16, be16(d, 14));
      return;
    case kLinkSll2:
      if (d.size() < 20) return;
      ip(k, d, 20, be16(d, 0));
      return;
    case kLinkRaw:
    case kLinkIpv4:
    case kLinkIpv6:
      if (d.empty()) return;
      if ((d[0] >> 4) == 4) ip(k, d, 0, kEtherIpv4);
      else if ((d[0] >> 4) == 6) ip(k, d, 0, kEtherIpv6);
      return;
    default:
      return;
  }
}

// ---------------------------------------------------------------- FlowSet

namespace {
uint64_t hash_key(const FlowKey& k) {
  uint64_t w[6];
  std::memcpy(w, &k, sizeof(w));
  uint64_t h = 0x9E3779B97F4A7C15ull;
  for (uint64_t v : w) {
    h ^= v;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
  }
  return h;
}
}  // namespace

FlowSet::FlowSet(size_t capacity) : capacity_(capacity) {
  size_t n = 16;
  while (n < capacity * 2) n <<= 1;
  slots_.assign(n, -1);
  keys_.reserve(capacity);
}

void FlowSet::add(const FlowKey& k) {
  if (last_ < keys_.size() && keys_[last_] == k) return;
  const size_t mask = slots_.size() - 1;
  for (size_t i = hash_key(k) & mask;; i = (i + 1) & mask) {
    int32_t s = slots_[i];
    if (s < 0) {
      if (keys_.size() >= capacity_) {
        overflowed_ = true;
        return;
      }
      slots_[i] = static_cast<int32_t>(keys_.size());
      last_ = keys_.size();
      keys_.push_back(k);
      return;
    }
    if (keys_[static_cast<size_t>(s)] == k) {
      last_ = static_cast<size_t>(s);
      return;
    }
  }
}

void FlowSet::clear() {
  if (!keys_.empty()) std::fill(slots_.begin(), slots_.end(), -1);
  keys_.clear();
  overflowed_ = false;
  last_ = SIZE_MAX;
}

}  // namespace trawl::store
