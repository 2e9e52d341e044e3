// TCP reassembly: see tcp_reassembly.h.
#include "decode/tcp_reassembly.h"

#include <algorithm>
#include <functional>

namespace trawl::decode {
namespace {
constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04;

size_t hash_addr(const IpAddr& a) {
  size_t h = a.family;
  for (uint8_t x : a.b) h = h * 131 + x;
  return h;
}
}  // namespace

size_t TcpReassembler::KeyHash::operator()(const Key& k) const {
  return hash_addr(k.a) * 31 + hash_addr(k.b) * 17 + (size_t{k.pa} << 16 | k.pb);
}

void TcpReassembler::add(const L4Packet& p) {
  Key fwd{p.src, p.dst, p.sport, p.dport};
  Key rev{p.dst, p.src, p.dport, p.sport};
  int d = 0;
  auto it = conns_.find(fwd);
  if (it == conns_.end()) {
    it = conns_.find(rev);
    d = 1;
  }
  if (it == conns_.end()) {
    if (p.tcp_flags & kRst) return;
    if (conns_.size() >= opt_.max_connections) {
      auto oldest = std::min_element(conns_.begin(), conns_.end(), [](const auto& x, const auto& y) {
        return x.second.last_ts < y.second.last_ts;
      });
      anomalies_.add("tcp.connections_evicted");
      close(oldest);
    }
    // Side A is the connection's opener: the sender of a bare SYN, else the
    // sender of the first packet we see (except a SYN-ACK, sent by B).
    bool synack = (p.tcp_flags & (kSyn | 0x10)) == (kSyn | 0x10);
    Key k = synack ? rev : fwd;
    d = synack ? 1 : 0;
    Conn c;
    c.id = (*next_id_)++;
    c.a = synack ? endpoint_str(p.dst, p.dport) : endpoint_str(p.src, p.sport);
    c.b = synack ? endpoint_str(p.src, p.sport) : endpoint_str(p.dst, p.dport);
    it = conns_.emplace(k, std::move(c)).first;
  }
  Conn& c = it->second;
  c.last_ts = p.ts_ns;
  Dir& dr = c.dir[d];
  uint32_t seq = p.tcp_seq + ((p.tcp_flags & kSyn) ? 1 : 0);
  if (!dr.started) {
    dr.started = true;
    dr.next_seq = seq;
    dr.base = seq;
  }
  auto data = p.payload;
  if (!data.empty()) {
    int32_t diff = static_cast<int32_t>(seq - dr.next_seq);
    if (diff <= 0) {
      size_t skip = static_cast<size_t>(-static_cast<int64_t>(diff));
      if (skip < data.size()) {
        deliver(c, d, p.ts_ns, data.subspan(skip));
        drain(c, d, p.ts_ns);
      }
    } else {
      if (dr.buffered + data.size() > opt_.max_buffered_bytes) {
        anomalies_.add("tcp.buffer_full");
        flush_gap(c, d, p.ts_ns);
        diff = static_cast<int32_t>(seq - dr.next_seq);
      }
      if (diff > 0) {
        auto& slot = dr.ooo[seq - dr.base];
        if (slot.size() < data.size()) {
          dr.buffered += data.size() - slot.size();
          slot.assign(data.begin(), data.end());
        }
      } else {
        size_t skip = static_cast<size_t>(-static_cast<int64_t>(diff));
        if (skip < data.size()) deliver(c, d, p.ts_ns, data.subspan(skip));
        drain(c, d, p.ts_ns);
      }
    }
    if (p.payload.size() < p.payload_wire_len && static_cast<int32_t>(seq + p.payload.size() - dr.next_seq) == 0) {
      // Snaplen cut the segment: the rest of it is a hole.
      anomalies_.add("tcp.truncated_segment");
      out_.on_stream_gap(c.id, d == 0);
      dr.next_seq = seq + p.payload_wire_len;
      drain(c, d, p.ts_ns);
    }
  }
  if (p.tcp_flags & kFin) dr.fin = true;
  if ((p.tcp_flags & kRst) || (c.dir[0].fin && c.dir[1].fin)) close(it);
}

void TcpReassembler::deliver(Conn& c, int d, uint64_t ts, std::span<const uint8_t> data) {
  c.dir[d].next_seq += static_cast<uint32_t>(data.size());
  StreamSegment s;
  s.conn_id = c.id;
  s.from_a = d == 0;
  s.src = d == 0 ? c.a : c.b;
  s.dst = d == 0 ? c.b : c.a;
  s.sctp = false;
  s.ts_ns = ts;
  s.data = data;
  out_.on_stream_data(s);
}

void TcpReassembler::drain(Conn& c, int d, uint64_t ts) {
  Dir& dr = c.dir[d];
  while (!dr.ooo.empty()) {
    auto first = dr.ooo.begin();
    uint32_t seq = first->first + dr.base;
    int32_t diff = static_cast<int32_t>(seq - dr.next_seq);
    if (diff > 0) break;
    std::vector<uint8_t> bytes = std::move(first->second);
    dr.buffered -= bytes.size();
    dr.ooo.erase(first);
    size_t skip = static_cast<size_t>(-static_cast<int64_t>(diff));
    if (skip < bytes.size()) deliver(c, d, ts, std::span<const uint8_t>(bytes).subspan(skip));
  }
}

void TcpReassembler::flush_gap(Conn& c, int d, uint64_t ts) {
  Dir& dr = c.dir[d];
  while (!dr.ooo.empty()) {
    anomalies_.add("tcp.gap");
    out_.on_stream_gap(c.id, d == 0);
    dr.next_seq = dr.ooo.begin()->first + dr.base;
    drain(c, d, ts);
  }
}

void TcpReassembler::close(std::unordered_map<Key, Conn, KeyHash>::iterator it) {
  Conn& c = it->second;
  flush_gap(c, 0, c.last_ts);
  flush_gap(c, 1, c.last_ts);
  out_.on_stream_close(c.id);
  conns_.erase(it);
}

void TcpReassembler::finish() {
  while (!conns_.empty()) close(conns_.begin());
}

}  // namespace trawl::decode
