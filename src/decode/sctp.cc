// SCTP chunk parsing and DATA delivery: see sctp.h.
#include "decode/sctp.h"

#include "core/bytes.h"

namespace trawl::decode {

bool parse_sctp_chunks(std::span<const uint8_t> chunks, Anomalies& anomalies,
                       const std::function<void(const SctpDataChunk&)>& on_data) {
  ByteReader r(chunks);
  while (r.remaining() > 0) {
    uint8_t type = r.u8();
    uint8_t flags = r.u8();
    uint16_t len = r.u16be();
    if (!r.ok()) {
      anomalies.add("sctp.truncated_chunk");
      return false;
    }
    if (len < 4) {
      anomalies.add("sctp.bad_chunk_length");
      return false;
    }
    ByteReader body(r.bytes(len - 4u));
    if (!r.ok()) {
      anomalies.add("sctp.truncated_chunk");
      return false;
    }
    r.skip(std::min<size_t>((4 - len % 4) % 4, r.remaining()));  // padding (may be absent at the end)
    if (type == 0) {
      SctpDataChunk c;
      c.flags = flags;
      c.tsn = body.u32be();
      c.stream_id = body.u16be();
      c.ssn = body.u16be();
      c.ppid = body.u32be();
      if (!body.ok()) {
        anomalies.add("sctp.bad_data_chunk");
        return false;
      }
      c.data = body.bytes(body.remaining());
      on_data(c);
    } else if (type == 64) {
      anomalies.add("sctp.idata_unsupported");
    }
  }
  return true;
}

void SctpAssembler::add(const L4Packet& p) {
  Key fwd{p.src, p.sport, p.dst, p.dport};
  Key rev{p.dst, p.dport, p.src, p.sport};
  int d = 0;
  auto it = assocs_.find(fwd);
  if (it == assocs_.end()) {
    it = assocs_.find(rev);
    d = 1;
  }
  bool created = false;
  auto ensure = [&]() -> Assoc& {
    if (it == assocs_.end()) {
      Assoc a;
      a.id = (*next_id_)++;
      a.a = endpoint_str(p.src, p.sport);
      a.b = endpoint_str(p.dst, p.dport);
      it = assocs_.emplace(fwd, std::move(a)).first;
      d = 0;
      created = true;
    }
    return it->second;
  };
  (void)created;
  parse_sctp_chunks(p.payload, anomalies_, [&](const SctpDataChunk& c) {
    if (!wants_(p.sport, p.dport, c.ppid)) return;
    Assoc& a = ensure();
    StreamSegment s;
    s.conn_id = a.id;
    s.from_a = d == 0;
    s.src = d == 0 ? a.a : a.b;
    s.dst = d == 0 ? a.b : a.a;
    s.sctp = true;
    s.ts_ns = p.ts_ns;
    s.ppid = c.ppid;
    s.stream_id = c.stream_id;
    bool begin = c.flags & 0x02, end = c.flags & 0x01;
    if (begin && end) {
      s.data = c.data;
      out_.on_stream_data(s);
      return;
    }
    auto& buf = a.partial[{d, c.stream_id}];
    if (begin) buf.clear();
    else if (buf.empty()) {
      anomalies_.add("sctp.fragment_without_begin");
      return;
    }
    if (buf.size() + c.data.size() > (1u << 20)) {
      anomalies_.add("sctp.message_too_large");
      buf.clear();
      return;
    }
    buf.insert(buf.end(), c.data.begin(), c.data.end());
    if (end) {
      s.data = buf;
      out_.on_stream_data(s);
      buf.clear();
    }
  });
}

void SctpAssembler::finish() {
  for (auto& [k, a] : assocs_) out_.on_stream_close(a.id);
  assocs_.clear();
}

}  // namespace trawl::decode
