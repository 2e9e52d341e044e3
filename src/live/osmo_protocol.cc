#include "live/osmo_protocol.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "core/bytes.h"

namespace trawl::live::osmo {
namespace {

constexpr uint32_t kMagicUsec = 0xa1b2c3d4;
constexpr uint32_t kMagicNsec = 0xa1b23c4d;

uint32_t read32(ByteReader& r, bool swapped) { return swapped ? r.u32be() : r.u32le(); }

void put32(std::vector<uint8_t>& out, uint32_t v, bool swapped) {
  ByteWriter w(out);
  if (swapped) w.u32be(v);
  else w.u32le(v);
}

void put16(std::vector<uint8_t>& out, uint16_t v, bool swapped) {
  ByteWriter w(out);
  if (swapped) w.u16be(v);
  else w.u16le(v);
}

}  // namespace

std::string_view to_string(Malformed m) {
  switch (m) {
    case Malformed::kUnknownType: return "osmo_unknown_type";
    case Malformed::kBadLinkHeader: return "osmo_bad_link_header";
    case Malformed::kDataBeforeLink: return "osmo_data_before_link_header";
    case Malformed::kShortRecord: return "osmo_short_record";
    case Malformed::kCaplenOverPayload: return "osmo_caplen_over_payload";
    case Malformed::kCaplenOverMax: return "osmo_caplen_over_max";
    case Malformed::kCount: break;
  }
  return "osmo_unknown";
}

const Message* OsmoDecoder::next(std::optional<OsmoError>& err) {
  for (;;) {
    ByteReader r(buf_.readable());
    uint8_t type = r.u8();
    r.u8();  // spare
    uint16_t len = r.u16be();
    if (!r.ok()) return nullptr;
    if (type != kTypeLinkHeader && type != kTypeData) {
      err = OsmoError{Malformed::kUnknownType, fmt::format("message type {}", type)};
      return nullptr;
    }
    auto payload = r.bytes(len);
    if (!r.ok()) return nullptr;
    buf_.consume(kMessageHeaderBytes + len);  // payload stays valid until the next writable()
    if (parse(type, payload, err)) return &msg_;
    if (err) return nullptr;
  }
}

bool OsmoDecoder::parse(uint8_t type, std::span<const uint8_t> payload, std::optional<OsmoError>& err) {
  if (type == kTypeLinkHeader) {
    if (payload.size() != 24) {
      err = OsmoError{Malformed::kBadLinkHeader, fmt::format("link header of {} bytes, want 24", payload.size())};
      return false;
    }
    ByteReader r(payload);
    uint32_t magic = r.u32le();
    LinkHeader h;
    if (magic == kMagicUsec || magic == kMagicNsec) {
      h.swapped = false;
    } else if (__builtin_bswap32(magic) == kMagicUsec || __builtin_bswap32(magic) == kMagicNsec) {
      h.swapped = true;
      magic = __builtin_bswap32(magic);
    } else {
      err = OsmoError{Malformed::kBadLinkHeader, fmt::format("unknown pcap magic 0x{:08x}", magic)};
      return false;
    }
    h.nsec = magic == kMagicNsec;
    r.skip(12);  // version, thiszone, sigfigs
    h.snaplen = read32(r, h.swapped);
    h.link_type = read32(r, h.swapped) & 0xffff;  // the upper bits are FCS flags
    link_ = h;
    msg_.kind = Message::Kind::kLink;
    msg_.link = h;
    msg_.packet = {};
    return true;
  }
  if (!link_) {
    err = OsmoError{Malformed::kDataBeforeLink, "data message before any link header"};
    return false;
  }
  if (payload.size() < 16) {
    err = OsmoError{Malformed::kShortRecord, fmt::format("data payload of {} bytes, shorter than a record header", payload.size())};
    return false;
  }
  const LinkHeader& link = *link_;
  ByteReader r(payload);
  uint32_t sec = read32(r, link.swapped);
  uint32_t frac = read32(r, link.swapped);
  uint32_t caplen = read32(r, link.swapped);
  uint32_t len = read32(r, link.swapped);
  if (caplen > payload.size() - 16) {
    err = OsmoError{Malformed::kCaplenOverPayload,
                    fmt::format("record caplen {} but {} bytes follow", caplen, payload.size() - 16)};
    return false;
  }
  uint32_t max = max_caplen_;
  if (link.snaplen != 0 && link.snaplen < max) max = link.snaplen;
  if (caplen > max) {
    err = OsmoError{Malformed::kCaplenOverMax, fmt::format("record caplen {} over the maximum {}", caplen, max)};
    return false;
  }
  uint64_t frac_ns = link.nsec ? frac : uint64_t{frac} * 1000;
  msg_.kind = Message::Kind::kPacket;
  msg_.link = link;
  msg_.packet.ts_ns = uint64_t{sec} * 1'000'000'000ull + frac_ns;
  msg_.packet.orig_len = std::max(len, caplen);
  msg_.packet.data = r.bytes(caplen);
  return true;
}

void append_message_header(std::vector<uint8_t>& out, uint8_t type, uint16_t payload_len) {
  out.push_back(type);
  out.push_back(0);
  out.push_back(static_cast<uint8_t>(payload_len >> 8));
  out.push_back(static_cast<uint8_t>(payload_len));
}

void append_link_header(std::vector<uint8_t>& out, uint32_t snaplen, uint32_t link_type, bool nsec, bool swapped) {
  append_message_header(out, kTypeLinkHeader, 24);
  put32(out, nsec ? kMagicNsec : kMagicUsec, swapped);
  put16(out, 2, swapped);
  put16(out, 4, swapped);
  put32(out, 0, swapped);
  put32(out, 0, swapped);
  put32(out, snaplen, swapped);
  put32(out, link_type, swapped);
}

void append_data(std::vector<uint8_t>& out, uint64_t ts_ns, uint32_t orig_len, std::span<const uint8_t> data,
                 bool nsec, bool swapped) {
  append_message_header(out, kTypeData, static_cast<uint16_t>(16 + data.size()));
  put32(out, static_cast<uint32_t>(ts_ns / 1'000'000'000ull), swapped);
  uint64_t frac = ts_ns % 1'000'000'000ull;
  put32(out, static_cast<uint32_t>(nsec ? frac : frac / 1000), swapped);
  put32(out, static_cast<uint32_t>(data.size()), swapped);
  put32(out, orig_len, swapped);
  out.insert(out.end(), data.begin(), data.end());
}

}  // namespace trawl::live::osmo
