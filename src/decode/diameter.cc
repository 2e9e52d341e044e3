// Diameter (RFC 6733): message parsing, dictionary validation, and the
// transaction tracker. Per message: frame (TCP/SCTP) -> parse header ->
// walk AVPs against the command's grammar -> match request/answer -> emit.
#include "decode/diameter.h"

#include <algorithm>
#include <cstdio>
#include <ctime>

#include "core/bytes.h"

namespace trawl::decode {

std::string_view diameter_anomaly_name(DiameterAnomaly a) {
  switch (a) {
    case DiameterAnomaly::kHeaderTruncated: return "diameter.header_truncated";
    case DiameterAnomaly::kBadVersion: return "diameter.bad_version";
    case DiameterAnomaly::kBadMessageLength: return "diameter.bad_message_length";
    case DiameterAnomaly::kBadCommandFlags: return "diameter.bad_command_flags";
    case DiameterAnomaly::kAvpTruncated: return "diameter.avp_truncated";
    case DiameterAnomaly::kAvpBadLength: return "diameter.avp_bad_length";
    case DiameterAnomaly::kAvpLengthForType: return "diameter.avp_length_for_type";
    case DiameterAnomaly::kAvpDepthExceeded: return "diameter.avp_depth_exceeded";
    case DiameterAnomaly::kUnknownCommand: return "diameter.unknown_command";
    case DiameterAnomaly::kUnknownMandatoryAvp: return "diameter.unknown_mandatory_avp";
    case DiameterAnomaly::kMissingRequiredAvp: return "diameter.missing_required_avp";
    case DiameterAnomaly::kAvpTooMany: return "diameter.avp_occurs_too_many_times";
    case DiameterAnomaly::kFixedAvpPosition: return "diameter.fixed_avp_position";
    case DiameterAnomaly::kAvpNotAllowed: return "diameter.avp_not_allowed";
    case DiameterAnomaly::kStreamGarbage: return "diameter.stream_garbage";
    case DiameterAnomaly::kMessageTooLong: return "diameter.message_too_long";
    case DiameterAnomaly::kStreamGap: return "diameter.stream_gap";
    case DiameterAnomaly::kStreamTruncated: return "diameter.stream_truncated";
    case DiameterAnomaly::kSctpPartial: return "diameter.sctp_partial_message";
    case DiameterAnomaly::kDuplicateRequest: return "diameter.duplicate_request";
    case DiameterAnomaly::kAnswerCommandMismatch: return "diameter.answer_command_mismatch";
    case DiameterAnomaly::kTooManyPending: return "diameter.too_many_pending";
    case DiameterAnomaly::kCount: break;
  }
  return "diameter.unknown";
}

// --- parsing ------------------------------------------------------------------

bool DiameterAvpReader::next(DiameterAvp& avp) {
  if (error_ || pos_ >= data_.size()) return false;
  ByteReader r(data_.subspan(pos_));
  avp.code = r.u32be();
  avp.flags = r.u8();
  uint32_t len = (uint32_t{r.u8()} << 16) | r.u16be();
  if (!r.ok()) {
    error_ = DiameterAnomaly::kAvpTruncated;
    return false;
  }
  bool vendor = avp.flags & kAvpFlagV;
  size_t header = vendor ? 12 : 8;
  if (len < header) {
    error_ = DiameterAnomaly::kAvpBadLength;
    return false;
  }
  avp.vendor = vendor ? r.u32be() : 0;
  avp.data = r.bytes(len - header);
  if (!r.ok()) {
    error_ = DiameterAnomaly::kAvpTruncated;
    return false;
  }
  // Padding to 4 bytes; the last AVP of a container may omit it.
  size_t padded = (size_t{len} + 3) & ~size_t{3};
  pos_ = std::min(data_.size(), pos_ + padded);
  return true;
}

DiameterMessage parse_diameter(std::span<const uint8_t> data) {
  DiameterMessage m;
  ByteReader r(data);
  DiameterHeader& h = m.header;
  h.version = r.u8();
  h.length = (uint32_t{r.u8()} << 16) | r.u16be();
  h.flags = r.u8();
  h.command_code = (uint32_t{r.u8()} << 16) | r.u16be();
  h.application_id = r.u32be();
  h.hop_by_hop = r.u32be();
  h.end_to_end = r.u32be();
  if (!r.ok()) {
    m.anomalies.add(DiameterAnomaly::kHeaderTruncated);
    return m;
  }
  m.header_ok = true;
  if (h.version != 1) m.anomalies.add(DiameterAnomaly::kBadVersion);
  if ((h.flags & 0x0f) || (h.request() && h.error()))
    m.anomalies.add(DiameterAnomaly::kBadCommandFlags);
  size_t end = data.size();
  if (h.length < kDiameterHeaderBytes || h.length % 4 != 0 || h.length > data.size()) {
    m.anomalies.add(DiameterAnomaly::kBadMessageLength);
  }
  if (h.length >= kDiameterHeaderBytes && h.length <= data.size()) end = h.length;
  m.avps = data.subspan(kDiameterHeaderBytes, end - kDiameterHeaderBytes);
  DiameterAvpReader avps(m.avps);
  DiameterAvp avp;
  while (avps.next(avp)) {
  }
  if (avps.error()) m.anomalies.add(*avps.error());
  return m;
}

// --- validation -----------------------------------------------------------------

namespace {

std::string_view as_text(std::span<const uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

uint32_t be32(std::span<const uint8_t> b) {
  ByteReader r(b);
  return r.u32be();
}

bool length_fits_type(AvpType t, std::span<const uint8_t> d) {
  switch (t) {
    case AvpType::kInteger32:
    case AvpType::kUnsigned32:
    case AvpType::kFloat32:
    case AvpType::kEnumerated:
    case AvpType::kTime: return d.size() == 4;
    case AvpType::kInteger64:
    case AvpType::kUnsigned64:
    case AvpType::kFloat64: return d.size() == 8;
    case AvpType::kAddress: {
      if (d.size() < 2) return false;
      uint16_t family = static_cast<uint16_t>((d[0] << 8) | d[1]);
      if (family == 1) return d.size() == 6;
      if (family == 2) return d.size() == 18;
      return true;
    }
    default: return true;
  }
}

constexpr uint32_t kCodeSessionId = 263;
constexpr uint32_t kCodeOriginHost = 264;
constexpr uint32_t kCodeOriginRealm = 296;
constexpr uint32_t kCodeDestinationHost = 293;
constexpr uint32_t kCodeDestinationRealm = 283;
constexpr uint32_t kCodeResultCode = 268;
constexpr uint32_t kCodeExperimentalResult = 297;
constexpr uint32_t kCodeExperimentalResultCode = 298;
constexpr uint32_t kCodeVendorId = 266;
constexpr uint32_t kCodeFailedAvp = 279;

class Validator {
 public:
  Validator(const DiameterDictionary& dict, DiameterAnomalies& out,
            std::vector<std::string>* details)
      : dict_(dict), out_(out), details_(details) {}

  // Walks the AVPs in data against grammar (nullptr: anything goes, only
  // framing, types and unknown mandatory AVPs are checked).
  void walk(std::span<const uint8_t> data, const Grammar* grammar, std::string_view owner,
            int depth, DiameterSummary* top) {
    // Occurrences per rule; grammars have at most 256 rules (dictionary limit).
    std::array<uint16_t, 256> counts;  // NOLINT: only the first rules.size() are used
    if (grammar) std::fill_n(counts.begin(), grammar->rules.size(), uint16_t{0});
    int last_fixed = -1;
    bool seen_other = false;
    DiameterAvpReader reader(data);
    DiameterAvp avp;
    while (reader.next(avp)) {
      int idx = dict_.avp_index(avp.code, avp.vendor);
      const AvpDef* def = idx >= 0 ? &dict_.avp(idx) : nullptr;
      if (!def && (avp.flags & kAvpFlagM))
        note(DiameterAnomaly::kUnknownMandatoryAvp, avp_label(avp, def), owner);
      if (def) {
        if (!length_fits_type(def->type, avp.data)) {
          note(DiameterAnomaly::kAvpLengthForType, def->name, owner);
        } else if (def->type == AvpType::kGrouped &&
                   !(avp.code == kCodeFailedAvp && avp.vendor == 0)) {
          // Failed-AVP carries offending AVPs as received: not validated.
          if (depth + 1 >= kMaxGroupDepth) {
            note(DiameterAnomaly::kAvpDepthExceeded, def->name, owner);
          } else {
            walk(avp.data, def->grammar >= 0 ? &dict_.grammar(def->grammar) : nullptr, def->name,
                 depth + 1, nullptr);
          }
        }
      }
      if (top) capture(avp, *top);
      if (!grammar) continue;
      int rule = def ? grammar->rule_of_avp[static_cast<size_t>(idx)] : -1;
      if (rule < 0) rule = grammar->wildcard_rule;
      if (rule < 0) {
        note(DiameterAnomaly::kAvpNotAllowed, avp_label(avp, def), owner);
        seen_other = true;
        continue;
      }
      auto& c = counts[static_cast<size_t>(rule)];
      if (c < UINT16_MAX) ++c;
      if (grammar->rules[static_cast<size_t>(rule)].kind == GrammarRule::Kind::kFixed) {
        if (seen_other || rule < last_fixed)
          note(DiameterAnomaly::kFixedAvpPosition, def ? def->name : "AVP", owner);
        last_fixed = rule;
      } else {
        seen_other = true;
      }
    }
    if (reader.error()) note(*reader.error(), "", owner);
    if (!grammar) return;
    for (size_t r = 0; r < grammar->rules.size(); ++r) {
      const GrammarRule& g = grammar->rules[r];
      std::string_view name = g.avp >= 0 ? std::string_view(dict_.avp(g.avp).name) : "AVP";
      if (counts[r] < g.min) note(DiameterAnomaly::kMissingRequiredAvp, name, owner);
      if (counts[r] > g.max) note(DiameterAnomaly::kAvpTooMany, name, owner);
    }
  }

 private:
  static void capture(const DiameterAvp& avp, DiameterSummary& s) {
    if (avp.vendor != 0) return;
    switch (avp.code) {
      case kCodeSessionId: s.session_id = as_text(avp.data); break;
      case kCodeOriginHost: s.origin_host = as_text(avp.data); break;
      case kCodeOriginRealm: s.origin_realm = as_text(avp.data); break;
      case kCodeDestinationHost: s.destination_host = as_text(avp.data); break;
      case kCodeDestinationRealm: s.destination_realm = as_text(avp.data); break;
      case kCodeResultCode:
        if (avp.data.size() == 4) s.result_code = be32(avp.data);
        break;
      case kCodeExperimentalResult: {
        DiameterAvpReader inner(avp.data);
        DiameterAvp a;
        while (inner.next(a)) {
          if (a.vendor != 0 || a.data.size() != 4) continue;
          if (a.code == kCodeExperimentalResultCode) s.experimental_result_code = be32(a.data);
          if (a.code == kCodeVendorId) s.experimental_result_vendor = be32(a.data);
        }
        break;
      }
      default: break;
    }
  }

  static std::string avp_label(const DiameterAvp& avp, const AvpDef* def) {
    if (def) return def->name;
    return "AVP " + std::to_string(avp.code) +
           (avp.vendor ? " vendor " + std::to_string(avp.vendor) : std::string());
  }

  void note(DiameterAnomaly a, std::string_view what, std::string_view owner) {
    out_.add(a);
    if (!details_ || details_->size() >= kMaxAnomalyDetails) return;
    std::string line(diameter_anomaly_name(a).substr(9));  // without "diameter."
    if (!what.empty()) line.append(": ").append(what);
    if (!owner.empty()) line.append(" in ").append(owner);
    details_->push_back(std::move(line));
  }

  const DiameterDictionary& dict_;
  DiameterAnomalies& out_;
  std::vector<std::string>* details_;
};

}  // namespace

DiameterSummary validate_diameter(DiameterMessage& msg, const DiameterDictionary& dict,
                                  std::vector<std::string>* details) {
  DiameterSummary s;
  if (!msg.header_ok) return s;
  const DiameterHeader& h = msg.header;
  const CommandDef* grammar_of = nullptr;
  s.command = dict.find_command(h.command_code, h.application_id, h.request());
  if (!s.command) msg.anomalies.add(DiameterAnomaly::kUnknownCommand);
  grammar_of = s.command;
  // RFC 6733 7.2: an answer with the E bit need not follow its command's CCF.
  if (!h.request() && h.error()) grammar_of = dict.error_answer();
  Validator v(dict, msg.anomalies, details);
  if (!s.command && details && details->size() < kMaxAnomalyDetails)
    details->push_back("unknown_command: " + std::to_string(h.command_code) + " application " +
                       std::to_string(h.application_id) + (h.request() ? " request" : " answer"));
  v.walk(msg.avps, grammar_of ? &dict.grammar(grammar_of->grammar) : nullptr,
         grammar_of ? std::string_view(grammar_of->name) : std::string_view(), 0, &s);
  return s;
}

// --- tracker --------------------------------------------------------------------

namespace {

// A header worth trusting when resynchronising a TCP stream.
bool plausible_header(std::span<const uint8_t> b, size_t max_len) {
  if (b.size() < kDiameterHeaderBytes) return false;
  uint32_t len = (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
  uint8_t flags = b[4];
  if (b[0] != 1 || len < kDiameterHeaderBytes || len % 4 != 0 || len > max_len) return false;
  if ((flags & 0x0f) || ((flags & kCmdFlagR) && (flags & kCmdFlagE))) return false;
  if (len >= 28 && b.size() >= 28) {
    uint32_t avp_len = (uint32_t{b[25]} << 16) | (uint32_t{b[26]} << 8) | b[27];
    if (avp_len < 8 || avp_len > len - kDiameterHeaderBytes) return false;
  }
  return true;
}

std::string rfc3339(uint64_t ts_ns) {
  std::time_t secs = static_cast<std::time_t>(ts_ns / 1000000000ULL);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  // "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ", formatted by hand (hot: once per record).
  char buf[32];
  auto put = [&](size_t at, unsigned v, size_t width) {
    for (size_t i = width; i-- > 0; v /= 10) buf[at + i] = static_cast<char>('0' + v % 10);
  };
  unsigned year = static_cast<unsigned>(std::clamp(tm.tm_year + 1900, 0, 9999));
  put(0, year, 4);
  buf[4] = '-';
  put(5, static_cast<unsigned>(tm.tm_mon + 1), 2);
  buf[7] = '-';
  put(8, static_cast<unsigned>(tm.tm_mday), 2);
  buf[10] = 'T';
  put(11, static_cast<unsigned>(tm.tm_hour), 2);
  buf[13] = ':';
  put(14, static_cast<unsigned>(tm.tm_min), 2);
  buf[16] = ':';
  put(17, static_cast<unsigned>(tm.tm_sec), 2);
  buf[19] = '.';
  put(20, static_cast<unsigned>(ts_ns % 1000000000ULL), 9);
  buf[29] = 'Z';
  return std::string(buf, 30);
}

nlohmann::json text_or_null(std::string_view s) {
  if (s.empty()) return nullptr;
  // Wire text may be any bytes; nlohmann rejects invalid UTF-8 at dump time,
  // so bytes outside printable ASCII are escaped here.
  if (std::all_of(s.begin(), s.end(), [](unsigned char c) { return c >= 0x20 && c < 0x7f; }))
    return std::string(s);  // the usual case: one copy, no per-byte appends
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\x%02x", c);
      out += esc;
    }
  }
  return out;
}

const char* result_class(uint32_t code) {
  switch (code / 1000) {
    case 1: return "informational";
    case 2: return "success";
    case 3: return "protocol_error";
    case 4: return "transient_failure";
    case 5: return "permanent_failure";
    default: return "unknown";
  }
}

uint64_t txn_key(uint32_t hbh, uint32_t e2e) { return (uint64_t{hbh} << 32) | e2e; }

}  // namespace

DiameterTracker::DiameterTracker(const DiameterDictionary& dict, Sink sink)
    : DiameterTracker(dict, std::move(sink), Options{}) {}

DiameterTracker::DiameterTracker(const DiameterDictionary& dict, Sink sink, Options options)
    : dict_(dict), sink_(std::move(sink)), options_(options) {}

void DiameterTracker::count(DiameterAnomaly a) { ++counts_[static_cast<size_t>(a)]; }

void DiameterTracker::count(DiameterAnomalies a) {
  for (size_t i = 0; i < counts_.size(); ++i)
    if (a.bits & (1u << i)) ++counts_[i];
}

void DiameterTracker::on_data(const DiameterSegment& seg) {
  Connection& c = conns_[seg.conn_id];
  c.sctp = seg.sctp;
  if (c.addr[seg.from_a].empty()) c.addr[seg.from_a] = seg.src;
  if (c.addr[!seg.from_a].empty()) c.addr[!seg.from_a] = seg.dst;
  if (seg.sctp) {
    // One DATA chunk: whole messages back to back.
    std::span<const uint8_t> d = seg.data;
    while (!d.empty()) {
      uint32_t len = d.size() >= 4 ? (uint32_t{d[1]} << 16) | (uint32_t{d[2]} << 8) | d[3] : 0;
      if (d.size() < kDiameterHeaderBytes || len > d.size()) {
        count(DiameterAnomaly::kSctpPartial);
        return;
      }
      if (d[0] != 1 || len < kDiameterHeaderBytes) {
        count(DiameterAnomaly::kStreamGarbage);
        return;
      }
      on_message(c, seg.from_a, d.first(len), seg.ts_ns);
      d = d.subspan(len);
    }
    return;
  }
  Direction& dir = c.dir[seg.from_a];
  if (dir.buf.empty()) {
    // Fast path: frame straight out of the caller's bytes, keep only a tail.
    size_t used = drain(c, seg.from_a, seg.data, seg.ts_ns);
    dir.buf.assign(seg.data.begin() + static_cast<ptrdiff_t>(used), seg.data.end());
    return;
  }
  dir.buf.insert(dir.buf.end(), seg.data.begin(), seg.data.end());
  std::vector<uint8_t> work;
  work.swap(dir.buf);  // drain() may not touch dir.buf while reading from it
  size_t used = drain(c, seg.from_a, work, seg.ts_ns);
  work.erase(work.begin(), work.begin() + static_cast<ptrdiff_t>(used));
  dir.buf.swap(work);
}

// Frames messages out of data; returns the bytes consumed (the rest is an
// incomplete message or a tail kept for resynchronisation).
size_t DiameterTracker::drain(Connection& c, bool from_a, std::span<const uint8_t> data,
                              uint64_t ts_ns) {
  Direction& dir = c.dir[from_a];
  size_t pos = 0;
  while (pos < data.size()) {
    std::span<const uint8_t> rest = data.subspan(pos);
    if (dir.resync) {
      size_t k = 0;
      for (; k + kDiameterHeaderBytes <= rest.size(); ++k)
        if (plausible_header(rest.subspan(k), options_.max_message_bytes)) break;
      if (k + kDiameterHeaderBytes > rest.size()) {
        // Keep a possible header start for the next call.
        return pos + (rest.size() > kDiameterHeaderBytes - 1
                          ? rest.size() - (kDiameterHeaderBytes - 1)
                          : 0);
      }
      pos += k;
      dir.resync = false;
      continue;
    }
    if (rest[0] != 1) {
      count(DiameterAnomaly::kStreamGarbage);
      dir.resync = true;
      continue;
    }
    if (rest.size() < 4) return pos;
    uint32_t len = (uint32_t{rest[1]} << 16) | (uint32_t{rest[2]} << 8) | rest[3];
    if (len < kDiameterHeaderBytes) {
      count(DiameterAnomaly::kStreamGarbage);
      dir.resync = true;
      pos += 1;
      continue;
    }
    if (len > options_.max_message_bytes) {
      count(DiameterAnomaly::kMessageTooLong);
      dir.resync = true;
      pos += 1;
      continue;
    }
    if (rest.size() < len) return pos;
    on_message(c, from_a, rest.first(len), ts_ns);
    pos += len;
  }
  return pos;
}

void DiameterTracker::on_message(Connection& c, bool from_a, std::span<const uint8_t> bytes,
                                 uint64_t ts_ns) {
  ++messages_;
  DiameterMessage msg = parse_diameter(bytes);
  std::vector<std::string> details;
  DiameterSummary sum = validate_diameter(msg, dict_, &details);
  count(msg.anomalies);
  const DiameterHeader& h = msg.header;
  uint64_t key = txn_key(h.hop_by_hop, h.end_to_end);
  if (h.request()) {
    auto& pending = c.pending[from_a];
    auto it = pending.find(key);
    if (it != pending.end()) {
      if (h.retransmitted()) return;  // T flag: the same transaction again
      count(DiameterAnomaly::kDuplicateRequest);
      DiameterAnomalies dup;
      dup.add(DiameterAnomaly::kDuplicateRequest);
      emit(c, from_a, &it->second, nullptr, nullptr, 0, dup);
      pending.erase(it);
    }
    Pending p;
    p.ts_ns = ts_ns;
    p.order = order_++;
    p.command_code = h.command_code;
    p.application_id = h.application_id;
    p.hop_by_hop = h.hop_by_hop;
    p.end_to_end = h.end_to_end;
    p.command = sum.command;
    std::string_view fields[] = {sum.session_id, sum.origin_host, sum.origin_realm,
                                 sum.destination_host, sum.destination_realm};
    size_t n = 0;
    for (std::string_view f : fields) n += f.size();
    p.text.reserve(n);
    for (size_t i = 0; i < 5; ++i) {
      p.text.append(fields[i]);
      p.ends[i] = static_cast<uint32_t>(p.text.size());
    }
    p.anomalies = msg.anomalies;
    p.details = std::move(details);
    if (pending.size() >= options_.max_pending_per_connection) {
      count(DiameterAnomaly::kTooManyPending);
      DiameterAnomalies over;
      over.add(DiameterAnomaly::kTooManyPending);
      emit(c, from_a, &p, nullptr, nullptr, 0, over);
      return;
    }
    pending.emplace(key, std::move(p));
    return;
  }
  auto& pending = c.pending[!from_a];
  auto it = pending.find(key);
  if (it == pending.end()) {
    emit(c, !from_a, nullptr, &msg, &sum, ts_ns, {}, &details);
    return;
  }
  DiameterAnomalies extra;
  if (it->second.command_code != h.command_code) {
    count(DiameterAnomaly::kAnswerCommandMismatch);
    extra.add(DiameterAnomaly::kAnswerCommandMismatch);
  }
  emit(c, !from_a, &it->second, &msg, &sum, ts_ns, extra, &details);
  pending.erase(it);
}

void DiameterTracker::emit(const Connection& c, bool req_from_a, const Pending* req,
                           const DiameterMessage* ans, const DiameterSummary* ans_sum,
                           uint64_t ans_ts_ns, DiameterAnomalies extra,
                           const std::vector<std::string>* ans_details) {
  using nlohmann::json;
  uint64_t ts = req ? req->ts_ns : ans_ts_ns;
  uint32_t code = req ? req->command_code : ans->header.command_code;
  uint32_t app = req ? req->application_id : ans->header.application_id;
  const CommandDef* cmd = req ? req->command : ans_sum->command;
  std::string_view app_name = dict_.application_name(app);
  std::optional<uint32_t> effective;
  if (ans)
    effective = ans_sum->result_code ? ans_sum->result_code : ans_sum->experimental_result_code;

  DiameterAnomalies all = extra;
  if (req) all.merge(req->anomalies);
  if (ans) all.merge(ans->anomalies);
  json names = json::array();
  for (unsigned i = 0; i < static_cast<unsigned>(DiameterAnomaly::kCount); ++i)
    if (all.bits & (1u << i))
      names.push_back(diameter_anomaly_name(static_cast<DiameterAnomaly>(i)));
  json details = json::array();
  if (req)
    for (const std::string& d : req->details) details.push_back("request: " + d);
  if (ans_details)
    for (const std::string& d : *ans_details) details.push_back("answer: " + d);

  // Keys in sorted order with end() hints: the object's std::map then
  // appends without comparing keys (this runs once per transaction).
  json j(json::value_t::object);
  json::object_t& o = *j.get_ptr<json::object_t*>();
  auto put = [&](const char* key, json&& v) { o.emplace_hint(o.end(), key, std::move(v)); };
  put("anomalies", std::move(names));
  put("anomaly_details", std::move(details));
  put("answer_origin_host", ans ? text_or_null(ans_sum->origin_host) : json(nullptr));
  put("application", app_name.empty() ? json(nullptr) : json(app_name));
  put("application_id", app);
  put("client", c.addr[req_from_a]);
  put("command", cmd ? json(cmd->name) : json(nullptr));
  put("command_code", code);
  put("destination_host", req ? text_or_null(req->field(3)) : json(nullptr));
  put("destination_realm", req ? text_or_null(req->field(4)) : json(nullptr));
  put("end_to_end", req ? req->end_to_end : ans->header.end_to_end);
  put("error_bit", ans ? json(ans->header.error()) : json(nullptr));
  bool exp = ans && ans_sum->experimental_result_code;
  put("experimental_result_code", exp ? json(*ans_sum->experimental_result_code) : json(nullptr));
  put("experimental_result_vendor",
      exp ? json(ans_sum->experimental_result_vendor) : json(nullptr));
  put("hop_by_hop", req ? req->hop_by_hop : ans->header.hop_by_hop);
  json latency(nullptr);
  if (req && ans)
    latency = ans_ts_ns >= req->ts_ns ? static_cast<double>(ans_ts_ns - req->ts_ns) / 1e6
                                      : -static_cast<double>(req->ts_ns - ans_ts_ns) / 1e6;
  put("latency_ms", std::move(latency));
  put("origin_host", req ? text_or_null(req->field(1)) : json(nullptr));
  put("origin_realm", req ? text_or_null(req->field(2)) : json(nullptr));
  put("result_class",
      !ans ? json(nullptr) : json(effective ? result_class(*effective) : "unknown"));
  put("result_code", ans && ans_sum->result_code ? json(*ans_sum->result_code) : json(nullptr));
  put("server", c.addr[!req_from_a]);
  put("session_id", text_or_null(req ? req->field(0) : ans_sum->session_id));
  put("status", !req ? "unsolicited" : ans ? "answered" : "unanswered");
  put("transport", c.sctp ? "sctp" : "tcp");
  put("ts", rfc3339(ts));
  put("ts_ns", ts);
  put("type", "diameter");
  sink_(std::move(j));
}

void DiameterTracker::on_gap(uint64_t conn_id, bool from_a) {
  auto it = conns_.find(conn_id);
  count(DiameterAnomaly::kStreamGap);
  if (it == conns_.end()) return;
  Direction& d = it->second.dir[from_a];
  d.buf.clear();
  d.resync = true;
}

void DiameterTracker::close_connection(Connection& c) {
  for (bool side : {true, false}) {
    if (!c.dir[side].buf.empty() && !c.dir[side].resync) count(DiameterAnomaly::kStreamTruncated);
  }
  // Unanswered requests in the order they were sent.
  std::vector<std::pair<bool, const Pending*>> open;
  for (bool side : {true, false})
    for (const auto& [key, p] : c.pending[side]) open.emplace_back(side, &p);
  std::sort(open.begin(), open.end(),
            [](const auto& a, const auto& b) { return a.second->order < b.second->order; });
  for (const auto& [side, p] : open) emit(c, side, p, nullptr, nullptr, 0, {});
}

void DiameterTracker::on_close(uint64_t conn_id) {
  auto it = conns_.find(conn_id);
  if (it == conns_.end()) return;
  close_connection(it->second);
  conns_.erase(it);
}

void DiameterTracker::finish() {
  std::vector<uint64_t> ids;
  ids.reserve(conns_.size());
  for (const auto& [id, c] : conns_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  for (uint64_t id : ids) on_close(id);
}

std::vector<std::pair<std::string, uint64_t>> DiameterTracker::anomalies() const {
  std::vector<std::pair<std::string, uint64_t>> out;
  for (size_t i = 0; i < counts_.size(); ++i)
    if (counts_[i])
      out.emplace_back(std::string(diameter_anomaly_name(static_cast<DiameterAnomaly>(i))),
                       counts_[i]);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace trawl::decode
