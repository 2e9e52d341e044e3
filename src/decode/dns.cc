// DNS parse and transaction tracker: see dns.h.
#include "decode/dns.h"

#include <arpa/inet.h>

#include <cstdio>

#include "core/bytes.h"

namespace trawl::decode {
namespace {

// Reads a possibly compressed name starting at `pos` of the whole message.
// Returns the anomaly name or nullptr; `end` is where the name ended in
// the original position (after the first pointer, if any).
const char* read_name(std::span<const uint8_t> msg, size_t pos, std::string& out, size_t& end) {
  out.clear();
  bool jumped = false;
  int hops = 0;
  size_t total = 0;
  while (true) {
    ByteReader r(msg);
    r.skip(pos);
    uint8_t len = r.u8();
    if (!r.ok()) return "dns.truncated_label";
    if (len == 0) {
      if (!jumped) end = pos + 1;
      break;
    }
    if ((len & 0xc0) == 0xc0) {
      uint8_t lo = r.u8();
      if (!r.ok()) return "dns.truncated_label";
      if (!jumped) end = pos + 2;
      jumped = true;
      if (++hops > 64) return "dns.compression_loop";
      size_t target = (size_t{len & 0x3fu} << 8) | lo;
      if (target >= msg.size()) return "dns.bad_pointer";
      pos = target;
      continue;
    }
    if (len & 0xc0) return "dns.bad_label";  // 0x40/0x80: extended label types
    auto label = r.str(len);
    if (!r.ok()) return "dns.truncated_label";
    total += len + 1;
    if (total > 255) return "dns.name_too_long";
    if (!out.empty()) out += '.';
    // Bytes that are not printable ASCII become \DDD (RFC 1035 section 5.1),
    // so names are always valid UTF-8 text.
    for (char ch : label) {
      auto c = static_cast<unsigned char>(ch);
      if (c < 0x20 || c > 0x7e || c == '\\') {
        char esc[5];
        std::snprintf(esc, sizeof esc, "\\%03u", c);
        out += esc;
      } else {
        out += ch;
      }
    }
    pos += 1 + len;
  }
  if (out.empty()) out = "<Root>";
  return nullptr;
}

}  // namespace

const char* parse_dns(std::span<const uint8_t> d, DnsMessage& m) {
  m = DnsMessage{};
  ByteReader r(d);
  m.id = r.u16be();
  uint16_t flags = r.u16be();
  m.qdcount = r.u16be();
  m.ancount = r.u16be();
  m.nscount = r.u16be();
  m.arcount = r.u16be();
  if (!r.ok()) return "dns.truncated_header";
  m.response = flags & 0x8000;
  m.opcode = (flags >> 11) & 0xf;
  m.truncated = flags & 0x0200;
  m.rcode = flags & 0xf;
  size_t pos = 12;
  std::string name;
  for (uint16_t i = 0; i < m.qdcount; ++i) {
    size_t end = pos;
    if (const char* bad = read_name(d, pos, name, end)) return bad;
    ByteReader q(d);
    q.skip(end);
    uint16_t type = q.u16be(), klass = q.u16be();
    if (!q.ok()) return "dns.truncated_question";
    if (i == 0) {
      m.qname = name;
      m.qtype = type;
      m.qclass = klass;
    }
    pos = end + 4;
  }
  for (uint16_t i = 0; i < m.ancount; ++i) {
    DnsAnswer a;
    size_t end = pos;
    if (const char* bad = read_name(d, pos, a.name, end)) return bad;
    ByteReader rr(d);
    rr.skip(end);
    a.type = rr.u16be();
    a.klass = rr.u16be();
    a.ttl = rr.u32be();
    uint16_t rdlen = rr.u16be();
    auto rdata = rr.bytes(rdlen);
    if (!rr.ok()) return "dns.truncated_record";
    size_t rd_at = end + 10;
    if (a.type == 1 && rdlen == 4) {
      char buf[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, rdata.data(), buf, sizeof buf);
      a.data = buf;
    } else if (a.type == 28 && rdlen == 16) {
      char buf[INET6_ADDRSTRLEN];
      inet_ntop(AF_INET6, rdata.data(), buf, sizeof buf);
      a.data = buf;
    } else if (a.type == 5 || a.type == 2 || a.type == 12) {
      size_t e2 = rd_at;
      if (const char* bad = read_name(d, rd_at, a.data, e2)) return bad;
    }
    m.answers.push_back(std::move(a));
    pos = end + 10 + rdlen;
  }
  return nullptr;
}

std::string_view dns_type_name(uint16_t t) {
  switch (t) {
    case 1: return "A";
    case 2: return "NS";
    case 5: return "CNAME";
    case 6: return "SOA";
    case 12: return "PTR";
    case 15: return "MX";
    case 16: return "TXT";
    case 28: return "AAAA";
    case 33: return "SRV";
    case 35: return "NAPTR";
    case 41: return "OPT";
    case 43: return "DS";
    case 44: return "SSHFP";
    case 46: return "RRSIG";
    case 47: return "NSEC";
    case 48: return "DNSKEY";
    case 64: return "SVCB";
    case 65: return "HTTPS";
    case 255: return "ANY";
    default: return "";
  }
}

std::string_view dns_rcode_name(uint8_t rc) {
  switch (rc) {
    case 0: return "NOERROR";
    case 1: return "FORMERR";
    case 2: return "SERVFAIL";
    case 3: return "NXDOMAIN";
    case 4: return "NOTIMP";
    case 5: return "REFUSED";
    default: return "";
  }
}

void DnsDecoder::on_udp(const L4Packet& p) {
  std::string src = endpoint_str(p.src, p.sport), dst = endpoint_str(p.dst, p.dport);
  message(p.payload, src, dst, "udp", p.ts_ns, p.frame_no);
}

void DnsDecoder::on_stream_data(const StreamSegment& s) {
  auto& buf = tcp_buf_[{s.conn_id, s.from_a}];
  buf.insert(buf.end(), s.data.begin(), s.data.end());
  std::string src(s.src), dst(s.dst);
  size_t off = 0;
  while (buf.size() - off >= 2) {
    ByteReader r(std::span<const uint8_t>(buf).subspan(off));
    uint16_t len = r.u16be();
    auto msg = r.bytes(len);
    if (!r.ok()) break;
    message(msg, src, dst, "tcp", s.ts_ns, 0);
    off += 2 + size_t{len};
  }
  buf.erase(buf.begin(), buf.begin() + static_cast<ptrdiff_t>(off));
}

void DnsDecoder::on_stream_gap(uint64_t conn_id, bool from_a) {
  anomalies_.add("dns.tcp_gap");
  tcp_buf_.erase({conn_id, from_a});
}

void DnsDecoder::on_stream_close(uint64_t conn_id) {
  for (bool a : {true, false}) {
    auto it = tcp_buf_.find({conn_id, a});
    if (it == tcp_buf_.end()) continue;
    if (!it->second.empty()) anomalies_.add("dns.tcp_incomplete_message");
    tcp_buf_.erase(it);
  }
}

void DnsDecoder::message(std::span<const uint8_t> d, const std::string& src, const std::string& dst,
                         const char* transport, uint64_t ts_ns, uint64_t frame) {
  DnsMessage m;
  if (const char* bad = parse_dns(d, m)) {
    anomalies_.add(bad);
    if (d.size() < 12) return;  // not even a header: nothing to match
  }
  if (ts_ns > last_expire_ns_ + 1000000000ull) {
    expire(ts_ns);
    last_expire_ns_ = ts_ns;
  }
  if (!m.response) {
    Key k{src, dst, transport, m.id};
    auto [it, inserted] = pending_.try_emplace(k);
    if (!inserted) {
      // A retransmission: latency counts from the first query (as tshark's dns.time).
      ++it->second.retransmissions;
      return;
    }
    it->second = Pending{ts_ns, frame, 0, std::move(m)};
    return;
  }
  Key k{dst, src, transport, m.id};
  auto it = pending_.find(k);
  if (it == pending_.end()) {
    emit(k, nullptr, &m, ts_ns, frame);
    return;
  }
  emit(k, &it->second, &m, ts_ns, frame);
  pending_.erase(it);
}

void DnsDecoder::emit(const Key& k, const Pending* q, const DnsMessage* resp, uint64_t resp_ts, uint64_t resp_frame) {
  nlohmann::json j;
  j["kind"] = "dns";
  j["client"] = std::get<0>(k);
  j["server"] = std::get<1>(k);
  j["transport"] = std::get<2>(k);
  j["id"] = std::get<3>(k);
  const DnsMessage& m = q ? q->query : *resp;
  j["qname"] = m.qname;
  j["qtype"] = m.qtype;
  j["qtype_name"] = dns_type_name(m.qtype);
  j["opcode"] = m.opcode;
  if (q) {
    j["query_ts_ns"] = q->ts_ns;
    j["query_ts"] = rfc3339_ns(q->ts_ns);
    if (q->frame) j["query_frame"] = q->frame;
    j["retransmissions"] = q->retransmissions;
  }
  if (resp) {
    j["response_ts_ns"] = resp_ts;
    j["response_ts"] = rfc3339_ns(resp_ts);
    if (resp_frame) j["response_frame"] = resp_frame;
    j["rcode"] = resp->rcode;
    j["rcode_name"] = dns_rcode_name(resp->rcode);
    j["truncated"] = resp->truncated;
    j["answer_count"] = resp->ancount;
    auto& arr = j["answers"] = nlohmann::json::array();
    for (const auto& a : resp->answers) {
      arr.push_back({{"name", a.name}, {"type", a.type}, {"type_name", dns_type_name(a.type)}, {"ttl", a.ttl},
                     {"data", a.data}});
    }
  }
  if (q && resp) {
    j["status"] = "answered";
    j["latency_ms"] = static_cast<double>(static_cast<int64_t>(resp_ts - q->ts_ns)) / 1e6;
  } else {
    j["status"] = q ? "unanswered" : "response_only";
  }
  sink_(std::move(j));
}

void DnsDecoder::expire(uint64_t now_ns) {
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (now_ns > it->second.ts_ns + opt_.timeout_ns) {
      emit(it->first, &it->second, nullptr, 0, 0);
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
}

void DnsDecoder::finish() {
  for (const auto& [k, q] : pending_) emit(k, &q, nullptr, 0, 0);
  pending_.clear();
  tcp_buf_.clear();
}

}  // namespace trawl::decode
