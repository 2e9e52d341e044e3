// RTP parse and stream tracker: see rtp.h.
#include "decode/rtp.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/bytes.h"

namespace trawl::decode {
namespace {

constexpr uint32_t kFlagFirst = 0x1, kFlagMarker = 0x2, kFlagWrongSeq = 0x4, kFlagPtChange = 0x8,
                   kFlagPtCn = 0x10, kFlagFollowPtCn = 0x20, kFlagWrongTimestamp = 0x40;
constexpr uint8_t kPtCn = 13, kPtCnOld = 19;

size_t mix(size_t h, size_t v) { return h ^ (v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2)); }

size_t hash_ip(const IpAddr& a) {
  uint64_t x, y;
  std::memcpy(&x, a.b.data(), 8);
  std::memcpy(&y, a.b.data() + 8, 8);
  return mix(mix(a.family, x), y);
}

// Well-known ports of other protocols: never RTP by heuristic.
bool reserved_port(uint16_t p) {
  switch (p) {
    case 53: case 67: case 68: case 69: case 123: case 137: case 138: case 161: case 162: case 500: case 514:
    case 520: case 1900: case 2123: case 2152: case 3868: case 4500: case 4729: case 4789: case 5060:
    case 5353: case 5355: case 8472:
      return true;
    default:
      return false;
  }
}

// Nearest extension of a 16/32-bit counter to the previous extended value
// (what Wireshark's RTP dissector does per conversation).
uint64_t extend(uint64_t prev, uint64_t raw, int bits) {
  uint64_t span = uint64_t{1} << bits, half = span >> 1;
  uint64_t v = (prev & ~(span - 1)) | raw;
  if (v + half < prev) v += span;
  else if (prev + half < v) v -= span;
  return v;
}

uint32_t dyn_clock_rate(std::string_view name) {
  // Mime types whose rate is implied when a=rtpmap gives none (RFC 4855 et al.).
  static const std::pair<const char*, uint32_t> kRates[] = {
      {"AMR", 8000},       {"AMR-WB", 16000},   {"BV16", 8000},     {"BV32", 16000},  {"EVRC", 8000},
      {"EVRCB", 8000},     {"EVRCWB", 16000},   {"EVS", 16000},     {"G7221", 16000}, {"G726-16", 8000},
      {"G726-24", 8000},   {"G726-32", 8000},   {"G726-40", 8000},  {"G729D", 8000},  {"G729E", 8000},
      {"GSM-EFR", 8000},   {"H263-1998", 90000}, {"H263-2000", 90000}, {"H264", 90000}, {"MP4V-ES", 90000},
      {"opus", 48000},     {"red", 1000},       {"t140", 1000},     {"telephone-event", 8000}};
  uint32_t best = 0;
  size_t best_len = 0;
  for (const auto& [n, r] : kRates) {
    size_t len = std::strlen(n);
    if (name.size() >= len && strncasecmp(name.data(), n, len) == 0 && len > best_len) {
      best = r;
      best_len = len;
    }
  }
  return best;
}

bool is_mgcp(const L4Packet& p) { return p.sport == 2427 || p.dport == 2427 || p.sport == 2727 || p.dport == 2727; }

}  // namespace

const char* parse_rtp(std::span<const uint8_t> d, RtpHeader& h) {
  ByteReader r(d);
  uint8_t b0 = r.u8();
  uint8_t b1 = r.u8();
  h.seq = r.u16be();
  h.timestamp = r.u32be();
  h.ssrc = r.u32be();
  if (!r.ok()) return "rtp.truncated";
  if ((b0 >> 6) != 2) return "rtp.bad_version";
  h.padding = b0 & 0x20;
  h.extension = b0 & 0x10;
  h.csrc_count = b0 & 0x0f;
  h.marker = b1 & 0x80;
  h.pt = b1 & 0x7f;
  r.skip(size_t{h.csrc_count} * 4);
  if (h.extension) {
    r.skip(2);
    uint16_t words = r.u16be();
    r.skip(size_t{words} * 4);
  }
  if (!r.ok()) return "rtp.truncated";
  h.header_len = r.position();
  h.payload_len = r.remaining();
  if (h.padding) {
    if (h.payload_len == 0) return "rtp.bad_padding";
    uint8_t pad = d[d.size() - 1];
    if (pad == 0 || pad > h.payload_len) return "rtp.bad_padding";
    h.payload_len -= pad;
  }
  return nullptr;
}

uint32_t rtp_static_clock_rate(uint8_t pt) {
  switch (pt) {
    case 0: case 3: case 4: case 5: case 7: case 8: case 9: case 12: case 13: case 15: case 18: return 8000;
    case 6: return 16000;
    case 10: case 11: return 44100;
    case 16: return 11025;
    case 17: return 22050;
    case 14: case 25: case 26: case 28: case 31: case 32: case 33: case 34: return 90000;
    default: return 0;
  }
}

std::string_view rtp_static_name(uint8_t pt) {
  switch (pt) {
    case 0: return "g711U";
    case 3: return "GSM";
    case 4: return "G723";
    case 5: return "DVI4 8k";
    case 6: return "DVI4 16k";
    case 7: return "LPC";
    case 8: return "g711A";
    case 9: return "g722";
    case 10: return "L16 st";
    case 11: return "L16";
    case 12: return "QCELP";
    case 13: return "CN";
    case 14: return "MPA";
    case 15: return "G728";
    case 16: return "DVI4 11k";
    case 17: return "DVI4 22k";
    case 18: return "g729";
    case 25: return "CelB";
    case 26: return "JPEG";
    case 28: return "NV";
    case 31: return "h261";
    case 32: return "MPV";
    case 33: return "MP2T";
    case 34: return "h263";
    default: return "";
  }
}

size_t RtpDecoder::EndpointHash::operator()(const Endpoint& e) const { return mix(hash_ip(e.addr), e.port); }
size_t RtpDecoder::StreamKeyHash::operator()(const StreamKey& k) const {
  EndpointHash h;
  return mix(mix(h(k.src), h(k.dst)), k.ssrc);
}
size_t RtpDecoder::ConvKeyHash::operator()(const ConvKey& k) const {
  EndpointHash h;
  return mix(h(k.a), h(k.b));
}

bool RtpDecoder::wants_udp(const L4Packet& p) const {
  if (p.sport == 5060 || p.dport == 5060) return true;  // SIP: SDP tells where media goes
  if (is_mgcp(p)) return true;                          // MGCP carries SDP too
  return !reserved_port(p.sport) && !reserved_port(p.dport);
}

bool RtpDecoder::wants_stream(uint16_t sport, uint16_t dport, bool sctp, uint32_t) const {
  (void)sctp;
  return sport == 5060 || dport == 5060;
}

void RtpDecoder::on_udp(const L4Packet& p) {
  if (p.sport == 5060 || p.dport == 5060) {
    std::string_view s(reinterpret_cast<const char*>(p.payload.data()), p.payload.size());
    sip_message(s, p.frame_no);
    return;
  }
  if (is_mgcp(p)) {  // MGCP (RFC 3435): an SDP body follows an empty line
    std::string_view s(reinterpret_cast<const char*>(p.payload.data()), p.payload.size());
    size_t at = s.find("\r\n\r\n");
    size_t skip = 4;
    if (at == std::string_view::npos) {
      at = s.find("\n\n");
      skip = 2;
    }
    if (at != std::string_view::npos) sdp_body(s.substr(at + skip), p.frame_no);
    return;
  }
  // Announced by SDP? Wireshark's conversation matches the endpoint as
  // either source or destination.
  const Announced* sdp = nullptr;
  ConvKey conv;
  Endpoint src{p.src, p.sport}, dst{p.dst, p.dport};
  if (!announced_.empty()) {
    auto it = announced_.find(dst);
    if (it != announced_.end()) {
      sdp = &it->second;
      conv.a = dst;
    } else if ((it = announced_.find(src)) != announced_.end()) {
      sdp = &it->second;
      conv.a = src;
    }
  }
  if (!sdp) {
    if (!opt_.heuristic || (p.dport & 1)) return;
    if (p.payload.size() < 12 || (p.payload[0] >> 6) != 2) return;
    // A conversation per address pair, either direction.
    if (std::tie(src.addr, src.port) < std::tie(dst.addr, dst.port)) conv = {src, dst};
    else conv = {dst, src};
  }
  RtpHeader h;
  if (const char* bad = parse_rtp(p.payload, h)) {
    if (sdp) anomalies_.add(bad);  // heuristic candidates that fail are simply not RTP
    return;
  }
  // RTCP sent to an RTP port (payload types 72-76 with the marker bit).
  if (h.marker && h.pt >= 72 && h.pt <= 76) return;
  rtp_packet(p, h, sdp, conv);
}

void RtpDecoder::sip_message(std::string_view msg, uint64_t frame) {
  SipMessage m;
  if (parse_sip(msg, m) != SipParse::kOk) {
    anomalies_.add("sip.not_sip");  // keep-alives, fragments, garbage on 5060
    return;
  }
  if (!m.body.empty()) sdp_body(m.body, frame);
}

void RtpDecoder::sdp_body(std::string_view body, uint64_t frame) {
  if (!parse_sdp(body, sdp_scratch_)) return;
  for (const auto& media : sdp_scratch_) {
    Announced& a = announced_[Endpoint{media.addr, media.port}];
    a.payloads = media.payloads;
    a.frame = frame;
  }
}

void RtpDecoder::on_stream_data(const StreamSegment& s) {
  std::string& buf = sip_buf_[{s.conn_id, s.from_a}];
  if (buf.size() + s.data.size() > (1u << 20)) {
    anomalies_.add("sip.stream_buffer_full");
    buf.clear();
    return;
  }
  buf.append(reinterpret_cast<const char*>(s.data.data()), s.data.size());
  while (!buf.empty()) {
    SipMessage m;
    auto r = parse_sip(buf, m);
    if (r == SipParse::kIncomplete) return;
    if (r == SipParse::kNotSip) {
      anomalies_.add("sip.malformed");
      buf.clear();
      return;
    }
    size_t total = m.header_bytes + m.content_length;
    if (buf.size() < total) return;
    sip_message(std::string_view(buf).substr(0, total), 0);
    buf.erase(0, total);
  }
}

void RtpDecoder::on_stream_gap(uint64_t conn_id, bool from_a) { sip_buf_.erase({conn_id, from_a}); }

void RtpDecoder::on_stream_close(uint64_t conn_id) {
  sip_buf_.erase({conn_id, true});
  sip_buf_.erase({conn_id, false});
}

void RtpDecoder::rtp_packet(const L4Packet& p, const RtpHeader& h, const Announced* sdp, const ConvKey& conv) {
  Conv& c = convs_[conv];
  c.ext_seq = extend(c.ext_seq, h.seq, 16);
  c.ext_ts = extend(c.ext_ts, h.timestamp, 32);
  StreamKey k{{p.src, p.sport}, {p.dst, p.dport}, h.ssrc};
  auto [it, inserted] = streams_.try_emplace(k);
  Stream& s = it->second;
  if (inserted) {
    s.setup = sdp ? "sdp" : "heuristic";
    s.first_frame = p.frame_no;
  }
  s.sdp = sdp;
  analyse(s, p, h, c.ext_seq, c.ext_ts);
  if (opt_.idle_timeout_ns && p.ts_ns > last_sweep_ns_ + 1000000000ull) {
    last_sweep_ns_ = p.ts_ns;
    expire_idle(p.ts_ns);
  }
}

void RtpDecoder::expire_idle(uint64_t now_ns) {
  for (auto it = streams_.begin(); it != streams_.end();) {
    if (now_ns > it->second.last_ts_ns + opt_.idle_timeout_ns) {
      emit(it->first, it->second);
      it = streams_.erase(it);
    } else {
      ++it;
    }
  }
}

// Wireshark 4.0's per-packet stream statistics (ui/tap-rtp-analysis.c,
// rtppacket_analyse), re-derived: times in ms relative to the first frame;
// timestamps "in sequence" when within 2^31 after the stream's first one.
void RtpDecoder::analyse(Stream& s, const L4Packet& p, const RtpHeader& h, uint64_t ext_seq, uint64_t) {
  int64_t rel = static_cast<int64_t>(p.ts_ns - time_origin_ns_);
  double current_time = static_cast<double>(rel / 1000000000) * 1000.0 +
                        static_cast<double>(rel % 1000000000) / 1000000.0;
  s.last_ts_ns = p.ts_ns;
  s.bytes += h.payload_len;
  if (h.marker) ++s.marker_packets;
  // Duplicates: an extended sequence number seen before (window of 1024).
  if (!s.first) {
    if (ext_seq > s.max_ext_seq) {
      uint64_t adv = ext_seq - s.max_ext_seq;
      if (adv >= 1024) s.seen.reset();
      else
        for (uint64_t q = s.max_ext_seq + 1; q <= ext_seq; ++q) s.seen.reset(q & 1023);
      s.max_ext_seq = ext_seq;
    } else if (s.max_ext_seq - ext_seq < 1024 && s.seen.test(ext_seq & 1023)) {
      ++s.duplicates;
    }
  } else {
    s.max_ext_seq = ext_seq;
  }
  s.seen.set(ext_seq & 1023);
  if (s.first) {
    s.start_seq = s.stop_seq = s.seq_num = h.seq;
    s.start_time = s.time = current_time;
    s.first_timestamp = h.timestamp;
    s.last_nominal = 0;
    s.pt = s.reg_pt = s.first_pt = h.pt;
    s.total_nr = 1;
    s.flags = kFlagFirst | (h.marker ? kFlagMarker : 0);
    s.first = false;
    s.first_ts_ns = p.ts_ns;
    return;
  }
  s.flags = 0;
  uint32_t ts = h.timestamp, first_ts = s.first_timestamp;
  bool in_time_sequence = (first_ts <= ts && ts - first_ts < 0x80000000u) ||
                          (first_ts > ts && uint64_t{first_ts} + (0xFFFFFFFFu - ts) < 0x80000000u);
  if (!in_time_sequence) s.flags |= kFlagWrongTimestamp;

  // Sequence number wraps, counted against the first sequence number.
  if (h.seq < s.start_seq && in_time_sequence && !s.under) {
    ++s.seq_cycles;
    s.under = true;
  } else if (h.seq == 0 && s.stop_seq == 65535 && in_time_sequence && !s.under) {
    ++s.seq_cycles;
    s.under = true;
  } else if (h.seq > s.start_seq && in_time_sequence && s.under) {
    s.under = false;
  }

  uint16_t expected_next = static_cast<uint16_t>(s.seq_num + 1);
  if (in_time_sequence && expected_next == h.seq) {
    s.seq_num = h.seq;
  } else if (in_time_sequence && s.seq_num == 65535 && h.seq == 0) {
    s.seq_num = h.seq;
  } else if (in_time_sequence && (uint32_t{s.seq_num} + 1 < h.seq || s.seq_num - h.seq > 0xFF00)) {
    s.seq_num = h.seq;
    ++s.sequence_errors;
    s.flags |= kFlagWrongSeq;
  } else if (uint32_t{s.seq_num} + 1 > h.seq) {
    ++s.sequence_errors;
    s.flags |= kFlagWrongSeq;
  }

  if (h.pt == kPtCn || h.pt == kPtCnOld) s.flags |= kFlagPtCn;
  if (s.pt == kPtCn || s.pt == kPtCnOld) s.flags |= kFlagFollowPtCn;
  if (h.pt != s.pt) s.flags |= kFlagPtChange;
  s.pt = h.pt;

  uint32_t clock_rate = 0;
  if (s.pt < 96) {
    clock_rate = rtp_static_clock_rate(s.pt);
  } else if (s.sdp) {
    for (const auto& pl : s.sdp->payloads) {
      if (pl.pt != s.pt) continue;
      if (strncasecmp(pl.name.c_str(), "telephone-event", 15) == 0) clock_rate = 0;
      else clock_rate = pl.clock_rate ? pl.clock_rate : dyn_clock_rate(pl.name);
      break;
    }
  }
  if (clock_rate / 1000 == 0) clock_rate = 0;  // below 1 kHz the ms conversion is undefined

  double current_jitter = 0;
  if (in_time_sequence) {
    if (clock_rate != 0) {
      s.clock_rate = clock_rate;
      // RFC 3550 A.8: D = (arrival - expected arrival), J += (|D| - J) / 16.
      double nominal = static_cast<double>(static_cast<uint32_t>(ts - first_ts)) / (clock_rate / 1000);
      double expected_time = s.time + (nominal - s.last_nominal);
      double current_diff = std::fabs(current_time - expected_time);
      current_jitter = (15 * s.jitter + current_diff) / 16;
      s.delta = current_time - s.time;
      s.jitter = current_jitter;
      s.last_nominal = nominal;
    } else {
      s.delta = current_time - s.time;
    }
  }
  if (h.marker) s.flags |= kFlagMarker;

  if (!(s.flags & (kFlagFirst | kFlagMarker | kFlagPtCn | kFlagWrongTimestamp | kFlagFollowPtCn))) {
    if (s.delta > s.max_delta) s.max_delta = s.delta;
    if (s.min_delta == -1 || s.delta < s.min_delta) s.min_delta = s.delta;
    double n = static_cast<double>(s.total_nr);
    s.mean_delta = (s.mean_delta * (n - 1) + s.delta) / n;
    if (clock_rate != 0) {
      if (s.jitter > s.max_jitter) s.max_jitter = s.jitter;
      s.mean_jitter = (s.mean_jitter * (n - 1) + current_jitter) / n;
      if (s.min_jitter == -1 || s.jitter < s.min_jitter) s.min_jitter = s.jitter;
    }
  }
  if (!(s.flags & kFlagPtCn)) s.reg_pt = s.pt;
  if (in_time_sequence) s.time = current_time;
  s.stop_seq = h.seq;
  ++s.total_nr;
}

void RtpDecoder::emit(const StreamKey& k, const Stream& s) {
  nlohmann::json j;
  j["kind"] = "rtp";
  j["setup"] = s.setup;
  j["src"] = endpoint_str(k.src.addr, k.src.port);
  j["dst"] = endpoint_str(k.dst.addr, k.dst.port);
  j["src_ip"] = k.src.addr.str();
  j["src_port"] = k.src.port;
  j["dst_ip"] = k.dst.addr.str();
  j["dst_port"] = k.dst.port;
  j["ssrc"] = k.ssrc;
  char hex[16];
  std::snprintf(hex, sizeof hex, "0x%08X", k.ssrc);
  j["ssrc_hex"] = hex;
  j["payload_type"] = s.first_pt;
  std::string pname(rtp_static_name(s.first_pt));
  if (s.sdp && s.first_pt >= 96)
    for (const auto& pl : s.sdp->payloads)
      if (pl.pt == s.first_pt) pname = pl.name;
  j["payload_name"] = pname;
  j["clock_rate"] = s.clock_rate;
  j["first_frame"] = s.first_frame;
  j["first_ts_ns"] = s.first_ts_ns;
  j["last_ts_ns"] = s.last_ts_ns;
  j["first_ts"] = rfc3339_ns(s.first_ts_ns);
  j["last_ts"] = rfc3339_ns(s.last_ts_ns);
  j["start_rel_s"] = s.start_time / 1000.0;
  j["duration_ms"] = static_cast<double>(s.last_ts_ns - s.first_ts_ns) / 1e6;
  // As Wireshark: from the first to the last sequence number seen, wraps counted.
  int64_t expected = static_cast<int64_t>(s.stop_seq) + int64_t{s.seq_cycles} * 65536 - s.start_seq + 1;
  int64_t lost = expected - static_cast<int64_t>(s.total_nr);
  j["packets"] = s.total_nr;
  j["expected"] = expected;
  j["lost"] = lost;
  j["lost_pct"] = expected > 0 ? static_cast<double>(lost) * 100.0 / static_cast<double>(expected) : 0.0;
  j["sequence_errors"] = s.sequence_errors;
  j["duplicates"] = s.duplicates;
  j["marker_packets"] = s.marker_packets;
  j["payload_bytes"] = s.bytes;
  j["min_delta_ms"] = s.min_delta < 0 ? 0.0 : s.min_delta;
  j["mean_delta_ms"] = s.mean_delta;
  j["max_delta_ms"] = s.max_delta;
  j["min_jitter_ms"] = s.min_jitter < 0 ? 0.0 : s.min_jitter;
  j["mean_jitter_ms"] = s.mean_jitter;
  j["max_jitter_ms"] = s.max_jitter;
  sink_(std::move(j));
}

void RtpDecoder::finish() {
  // Output in first-seen order, whatever the hash map's order.
  std::vector<std::pair<uint64_t, const decltype(streams_)::value_type*>> order;
  order.reserve(streams_.size());
  for (const auto& kv : streams_) order.emplace_back(kv.second.first_frame, &kv);
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [frame, kv] : order) emit(kv->first, kv->second);
  streams_.clear();
}

}  // namespace trawl::decode
