// Builds raw IPv4/UDP and TCP packets and classic pcap bytes for tests.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/bytes.h"

namespace trawl::decode::testing {

inline std::vector<uint8_t> ipv4_udp(uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport,
                                     std::span<const uint8_t> payload) {
  std::vector<uint8_t> out;
  ByteWriter w(out);
  w.u8(0x45);
  w.u8(0);
  w.u16be(static_cast<uint16_t>(20 + 8 + payload.size()));
  w.u16be(1);
  w.u16be(0);
  w.u8(64);
  w.u8(17);
  w.u16be(0);
  w.u32be(src);
  w.u32be(dst);
  w.u16be(sport);
  w.u16be(dport);
  w.u16be(static_cast<uint16_t>(8 + payload.size()));
  w.u16be(0);
  w.bytes(payload);
  return out;
}

inline std::vector<uint8_t> rtp(uint8_t pt, uint16_t seq, uint32_t ts, uint32_t ssrc, size_t payload = 160) {
  std::vector<uint8_t> out;
  ByteWriter w(out);
  w.u8(0x80);
  w.u8(pt);
  w.u16be(seq);
  w.u32be(ts);
  w.u32be(ssrc);
  w.zeros(payload);
  return out;
}

// Classic little-endian microsecond pcap.
class PcapBuilder {
 public:
  explicit PcapBuilder(uint32_t link_type) {
    ByteWriter w(bytes);
    w.u32le(0xa1b2c3d4);
    w.u16le(2);
    w.u16le(4);
    w.u32le(0);
    w.u32le(0);
    w.u32le(65535);
    w.u32le(link_type);
  }
  void add(uint64_t ts_us, std::span<const uint8_t> data) {
    ByteWriter w(bytes);
    w.u32le(static_cast<uint32_t>(ts_us / 1000000));
    w.u32le(static_cast<uint32_t>(ts_us % 1000000));
    w.u32le(static_cast<uint32_t>(data.size()));
    w.u32le(static_cast<uint32_t>(data.size()));
    w.bytes(data);
  }
  std::vector<uint8_t> bytes;
};

}  // namespace trawl::decode::testing
