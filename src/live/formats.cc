#include "live/formats.h"

#include <cstring>

#include "core/bytes.h"

namespace trawl::live {
namespace {

void put_le(uint8_t* p, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

}  // namespace

std::array<uint8_t, kPcapFileHeaderBytes> pcap_file_header(uint32_t magic, uint32_t snaplen, uint32_t link_type) {
  std::array<uint8_t, kPcapFileHeaderBytes> h{};
  put_le(&h[0], magic, 4);
  put_le(&h[4], 2, 2);
  put_le(&h[6], 4, 2);
  // thiszone and sigfigs stay 0
  put_le(&h[16], snaplen, 4);
  put_le(&h[20], link_type, 4);
  return h;
}

uint8_t* put_pcap_record_header(uint8_t* out, uint64_t ts_ns, uint32_t caplen, uint32_t orig_len, bool nsec) {
  uint64_t sec = ts_ns / 1'000'000'000ull;
  uint64_t frac = ts_ns % 1'000'000'000ull;
  put_le(out, static_cast<uint32_t>(sec), 4);
  put_le(out + 4, static_cast<uint32_t>(nsec ? frac : frac / 1000), 4);
  put_le(out + 8, caplen, 4);
  put_le(out + 12, orig_len, 4);
  return out + kPcapRecordHeaderBytes;
}

std::array<uint8_t, kPcapRecordHeaderBytes> pcap_record_header(uint64_t ts_ns, uint32_t caplen, uint32_t orig_len,
                                                               bool nsec) {
  std::array<uint8_t, kPcapRecordHeaderBytes> h{};
  put_pcap_record_header(h.data(), ts_ns, caplen, orig_len, nsec);
  return h;
}

size_t v2_meta_size(const InterfaceInfo& iface) { return kV2MetaFixedBytes + std::min<size_t>(iface.name.size(), 0xffff); }

uint8_t* put_v2_meta(uint8_t* p, const InterfaceInfo& iface, uint16_t iface_index, uint64_t seq,
                     const PacketView& pkt) {
  auto name = std::string_view(iface.name).substr(0, 0xffff);
  p[0] = kV2Version;
  p[1] = 0;
  put_le(p + 2, iface_index, 2);
  put_le(p + 4, iface.link_type, 2);
  put_le(p + 6, name.size(), 2);
  put_le(p + 8, pkt.ts_ns, 8);
  put_le(p + 16, seq, 8);
  put_le(p + 24, pkt.orig_len, 4);
  put_le(p + 28, iface.snaplen, 4);
  std::memcpy(p + kV2MetaFixedBytes, name.data(), name.size());
  return p + kV2MetaFixedBytes + name.size();
}

void append_v2_meta(std::vector<uint8_t>& out, const InterfaceInfo& iface, uint16_t iface_index, uint64_t seq,
                    const PacketView& p) {
  size_t at = out.size();
  out.resize(at + v2_meta_size(iface));
  put_v2_meta(out.data() + at, iface, iface_index, seq, p);
}

bool parse_v2_meta(std::span<const uint8_t> bytes, V2Meta& out) {
  ByteReader r(bytes);
  if (r.u8() != kV2Version) return false;
  r.u8();
  out.iface = r.u16le();
  out.link_type = r.u16le();
  uint16_t name_len = r.u16le();
  out.ts_ns = r.u64le();
  out.seq = r.u64le();
  out.orig_len = r.u32le();
  out.snaplen = r.u32le();
  out.iface_name = r.str(name_len);
  return r.ok();
}

std::string data_topic(int version, std::string_view agent) {
  std::string t = version == 1 ? "data.v1." : "data.v2.";
  t += agent;
  return t;
}

std::string event_topic(int version, std::string_view event, std::string_view agent) {
  std::string t = version == 1 ? "event.v1." : "event.v2.";
  t += event;
  t += '.';
  t += agent;
  return t;
}

}  // namespace trawl::live
