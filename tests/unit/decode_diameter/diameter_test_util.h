// Builders for hand-made Diameter messages in tests.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string_view>
#include <vector>

#include "core/bytes.h"
#include "decode/diameter.h"

namespace trawl::decode::test {

using Bytes = std::vector<uint8_t>;

inline Bytes avp(uint32_t code, const Bytes& data, uint8_t flags = kAvpFlagM, uint32_t vendor = 0) {
  Bytes out;
  ByteWriter w(out);
  if (vendor) flags |= kAvpFlagV;
  uint32_t len = static_cast<uint32_t>(data.size()) + (vendor ? 12 : 8);
  w.u32be(code);
  w.u8(flags);
  w.u8(static_cast<uint8_t>(len >> 16));
  w.u16be(static_cast<uint16_t>(len));
  if (vendor) w.u32be(vendor);
  w.bytes(data);
  while (out.size() % 4) out.push_back(0);
  return out;
}
inline Bytes u32(uint32_t v) {
  Bytes b;
  ByteWriter(b).u32be(v);
  return b;
}
inline Bytes text(std::string_view s) { return Bytes(s.begin(), s.end()); }
inline Bytes avp_u32(uint32_t code, uint32_t v, uint8_t flags = kAvpFlagM, uint32_t vendor = 0) {
  return avp(code, u32(v), flags, vendor);
}
inline Bytes avp_str(uint32_t code, std::string_view s, uint8_t flags = kAvpFlagM,
                     uint32_t vendor = 0) {
  return avp(code, text(s), flags, vendor);
}
inline Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}
inline Bytes avp_group(uint32_t code, std::initializer_list<Bytes> members,
                       uint8_t flags = kAvpFlagM, uint32_t vendor = 0) {
  return avp(code, cat(members), flags, vendor);
}
inline Bytes message(uint32_t code, uint8_t flags, uint32_t app, uint32_t hbh, uint32_t e2e,
                     std::initializer_list<Bytes> avps) {
  Bytes body = cat(avps);
  Bytes out;
  ByteWriter w(out);
  uint32_t len = static_cast<uint32_t>(body.size()) + 20;
  w.u8(1);
  w.u8(static_cast<uint8_t>(len >> 16));
  w.u16be(static_cast<uint16_t>(len));
  w.u8(flags);
  w.u8(static_cast<uint8_t>(code >> 16));
  w.u16be(static_cast<uint16_t>(code));
  w.u32be(app);
  w.u32be(hbh);
  w.u32be(e2e);
  w.bytes(body);
  return out;
}

// Well-formed DWR / DWA (RFC 6733 5.5).
inline Bytes dwr(uint32_t hbh, uint32_t e2e = 7) {
  return message(280, kCmdFlagR, 0, hbh, e2e,
                 {avp_str(264, "peer-a.example"), avp_str(296, "example"), avp_u32(278, 1)});
}
inline Bytes dwa(uint32_t hbh, uint32_t e2e = 7, uint32_t result = 2001) {
  return message(280, 0, 0, hbh, e2e,
                 {avp_u32(268, result), avp_str(264, "peer-b.example"), avp_str(296, "example")});
}

}  // namespace trawl::decode::test
