// GSMTAP header parse and counts: see gsmtap.h.
#include "decode/gsmtap.h"

#include "core/bytes.h"

namespace trawl::decode {

const char* parse_gsmtap(std::span<const uint8_t> d, GsmtapHeader& h) {
  ByteReader r(d);
  h.version = r.u8();
  uint8_t words = r.u8();
  h.type = r.u8();
  h.timeslot = r.u8();
  uint16_t arfcn = r.u16be();
  h.signal_dbm = static_cast<int8_t>(r.u8());
  h.snr_db = static_cast<int8_t>(r.u8());
  h.frame_number = r.u32be();
  h.sub_type = r.u8();
  h.antenna = r.u8();
  h.sub_slot = r.u8();
  r.skip(1);
  if (!r.ok()) return "gsmtap.truncated";
  if (h.version != 2 && h.version != 3) return "gsmtap.bad_version";
  h.hdr_len_bytes = static_cast<uint8_t>(words * 4);
  if (h.hdr_len_bytes < 16 || h.hdr_len_bytes > d.size()) return "gsmtap.bad_header_length";
  h.pcs = arfcn & 0x8000;
  h.uplink = arfcn & 0x4000;
  h.arfcn = arfcn & 0x3fff;
  h.payload_len = d.size() - h.hdr_len_bytes;
  return nullptr;
}

std::string_view gsmtap_type_name(uint8_t type) {
  switch (type) {
    case 0x01: return "um";
    case 0x02: return "abis";
    case 0x03: return "um_burst";
    case 0x04: return "sim";
    case 0x05: return "tetra_i1";
    case 0x06: return "tetra_i1_burst";
    case 0x07: return "wmx_burst";
    case 0x08: return "gb_llc";
    case 0x09: return "gb_sndcp";
    case 0x0a: return "gmr1_um";
    case 0x0b: return "umts_rlc_mac";
    case 0x0c: return "umts_rrc";
    case 0x0d: return "lte_rrc";
    case 0x0e: return "lte_mac";
    case 0x0f: return "lte_mac_framed";
    case 0x10: return "osmocore_log";
    case 0x11: return "qc_diag";
    case 0x12: return "lte_nas";
    case 0x13: return "e1_t1";
    case 0x14: return "gsm_rlp";
    default: return "unknown";
  }
}

void GsmtapDecoder::on_udp(const L4Packet& p) {
  GsmtapHeader h;
  if (const char* bad = parse_gsmtap(p.payload, h)) {
    anomalies_.add(bad);
    return;
  }
  ++frames_;
  ++by_type_[h.type];
  ++by_type_sub_[{h.type, h.sub_type}];
  if (!opt_.per_frame) return;
  nlohmann::json j;
  j["kind"] = "gsmtap";
  j["ts_ns"] = p.ts_ns;
  j["ts"] = rfc3339_ns(p.ts_ns);
  j["frame"] = p.frame_no;
  j["src"] = endpoint_str(p.src, p.sport);
  j["dst"] = endpoint_str(p.dst, p.dport);
  j["version"] = h.version;
  j["hdr_len"] = h.hdr_len_bytes;
  j["type"] = h.type;
  j["type_name"] = gsmtap_type_name(h.type);
  j["sub_type"] = h.sub_type;
  j["timeslot"] = h.timeslot;
  j["arfcn"] = h.arfcn;
  j["uplink"] = h.uplink;
  j["pcs"] = h.pcs;
  j["signal_dbm"] = h.signal_dbm;
  j["snr_db"] = h.snr_db;
  j["frame_number"] = h.frame_number;
  j["antenna"] = h.antenna;
  j["sub_slot"] = h.sub_slot;
  j["payload_len"] = h.payload_len;
  sink_(std::move(j));
}

void GsmtapDecoder::finish() {
  nlohmann::json j;
  j["kind"] = "gsmtap_counts";
  j["frames"] = frames_;
  auto& types = j["by_type"] = nlohmann::json::array();
  for (auto [t, n] : by_type_) types.push_back({{"type", t}, {"type_name", gsmtap_type_name(t)}, {"frames", n}});
  auto& subs = j["by_type_sub_type"] = nlohmann::json::array();
  for (auto [ts, n] : by_type_sub_) subs.push_back({{"type", ts.first}, {"sub_type", ts.second}, {"frames", n}});
  sink_(std::move(j));
}

}  // namespace trawl::decode
