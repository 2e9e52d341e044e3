// Byte formats of the live channel (docs/live.md): classic pcap file header
// and record (osmo-pcap v1 data messages, PCAP-over-IP), trawl's v2 packet
// metadata, and the ZeroMQ topics of both versions. Pure functions that
// append to a caller-owned vector (no allocation once it has grown) or write
// into a fixed array; no I/O, no state, thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/packet.h"

namespace trawl::live {

constexpr uint32_t kPcapMagicUsec = 0xa1b2c3d4;
constexpr uint32_t kPcapMagicNsec = 0xa1b23c4d;
constexpr size_t kPcapFileHeaderBytes = 24;
constexpr size_t kPcapRecordHeaderBytes = 16;

// 24-byte classic pcap file header, little-endian (this host's order on
// every platform trawl runs on): magic, version 2.4, thiszone 0, sigfigs 0,
// snaplen, link type.
std::array<uint8_t, kPcapFileHeaderBytes> pcap_file_header(uint32_t magic, uint32_t snaplen, uint32_t link_type);

// 16-byte record header: seconds, then microseconds (nsec = false) or
// nanoseconds (nsec = true), caplen, orig_len; little-endian.
std::array<uint8_t, kPcapRecordHeaderBytes> pcap_record_header(uint64_t ts_ns, uint32_t caplen, uint32_t orig_len,
                                                               bool nsec);
// The same, written straight into out (a packet path: no 16-byte temporary
// whose wide reload would wait for its narrow stores); returns out + 16.
uint8_t* put_pcap_record_header(uint8_t* out, uint64_t ts_ns, uint32_t caplen, uint32_t orig_len, bool nsec);

// v2 packet metadata (the second part of a data.v2 message), little-endian:
//   u8 version (2), u8 flags (0), u16 iface index, u16 link_type,
//   u16 name_len, u64 ts_ns, u64 batch seq, u32 orig_len, u32 snaplen,
//   name_len bytes of interface name.
// The captured bytes are the third part (caplen = its size).
constexpr uint8_t kV2Version = 2;
constexpr size_t kV2MetaFixedBytes = 32;
size_t v2_meta_size(const InterfaceInfo& iface);
void append_v2_meta(std::vector<uint8_t>& out, const InterfaceInfo& iface, uint16_t iface_index, uint64_t seq,
                    const PacketView& p);
// The same written at p (v2_meta_size(iface) bytes); returns the end.
uint8_t* put_v2_meta(uint8_t* p, const InterfaceInfo& iface, uint16_t iface_index, uint64_t seq, const PacketView& pkt);

struct V2Meta {
  uint16_t iface = 0;
  uint16_t link_type = 0;
  uint64_t ts_ns = 0;
  uint64_t seq = 0;
  uint32_t orig_len = 0;
  uint32_t snaplen = 0;
  std::string_view iface_name;  // points into the parsed bytes
};
// false when the bytes are not a v2 metadata part (short, wrong version).
bool parse_v2_meta(std::span<const uint8_t> bytes, V2Meta& out);

// Topics. Subscribers filter by prefix, so the version comes right after
// the kind: "data.v1.edge1", "event.v1.connect.edge1", "data.v2.edge1",
// "event.v2.gap.edge1".
std::string data_topic(int version, std::string_view agent);
std::string event_topic(int version, std::string_view event, std::string_view agent);

}  // namespace trawl::live
