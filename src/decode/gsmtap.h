// GSMTAP (Osmocom; UDP 4729) pseudo-header: radio traces from modems and
// Osmocom tools. parse_gsmtap() is the pure parse function (version 2 and
// 3 headers). GsmtapDecoder emits one record per frame (header fields, so
// traces can be filtered) and, at finish(), one summary with counts per
// type and per (type, sub-type). Not thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>

#include "decode/anomalies.h"
#include "decode/decoder.h"

namespace trawl::decode {

struct GsmtapHeader {
  uint8_t version = 0;
  uint8_t hdr_len_bytes = 0;
  uint8_t type = 0;
  uint8_t timeslot = 0;
  uint16_t arfcn = 0;  // without the PCS/uplink flag bits
  bool pcs = false;
  bool uplink = false;
  int8_t signal_dbm = 0;
  int8_t snr_db = 0;
  uint32_t frame_number = 0;
  uint8_t sub_type = 0;
  uint8_t antenna = 0;
  uint8_t sub_slot = 0;
  size_t payload_len = 0;
};

// nullptr on success, else "gsmtap.truncated", "gsmtap.bad_version",
// "gsmtap.bad_header_length".
const char* parse_gsmtap(std::span<const uint8_t> d, GsmtapHeader& h);
std::string_view gsmtap_type_name(uint8_t type);

class GsmtapDecoder : public Decoder {
 public:
  struct Options {
    bool per_frame = true;  // a record per frame (else only the summary)
  };
  GsmtapDecoder(Sink sink, Options opt) : sink_(std::move(sink)), opt_(opt) {}
  std::string_view name() const override { return "gsmtap"; }
  bool wants_udp(const L4Packet& p) const override { return p.dport == 4729 || p.sport == 4729; }
  void on_udp(const L4Packet& p) override;
  void finish() override;
  std::vector<std::pair<std::string, uint64_t>> anomalies() const override { return anomalies_.list(); }

 private:
  Sink sink_;
  Options opt_;
  Anomalies anomalies_;
  uint64_t frames_ = 0;
  std::map<uint8_t, uint64_t> by_type_;
  std::map<std::pair<uint8_t, uint8_t>, uint64_t> by_type_sub_;
};

}  // namespace trawl::decode
