// trawl wire protocol v1 encoding and decoding; see frames.h and docs/wire.md.
#include "wire/frames.h"

#include <bit>
#include <cassert>
#include <cstring>

#include <fmt/format.h>

namespace trawl::wire {
namespace {

constexpr uint8_t kMagic0 = 'T';
constexpr uint8_t kMagic1 = 'W';

// Writes a header with a zero length; returns the offset of the length field.
size_t begin_frame(std::vector<uint8_t>& out, FrameType t, uint8_t flags = 0) {
  ByteWriter w(out);
  w.u8(kMagic0);
  w.u8(kMagic1);
  w.u8(static_cast<uint8_t>(t));
  w.u8(flags);
  size_t len_pos = w.size();
  w.u32le(0);
  return len_pos;
}

void end_frame(std::vector<uint8_t>& out, size_t len_pos) {
  ByteWriter(out).patch_u32le(len_pos, static_cast<uint32_t>(out.size() - len_pos - 4));
}

void put_str(ByteWriter& w, std::string_view s, size_t cap) {
  s = s.substr(0, cap);
  w.u16le(static_cast<uint16_t>(s.size()));
  w.str(s);
}

// Reads a u16-length string; fails the reader when it exceeds cap.
std::string get_str(ByteReader& r, size_t cap) {
  uint16_t n = r.u16le();
  if (n > cap) {
    r.fail();
    return {};
  }
  return std::string(r.str(n));
}

Error short_frame(std::string_view what) {
  return Error(fmt::format("malformed {} frame: truncated or field out of range", what));
}

}  // namespace

std::string_view to_string(FrameType t) {
  switch (t) {
    case FrameType::kHello: return "HELLO";
    case FrameType::kWelcome: return "WELCOME";
    case FrameType::kBatch: return "BATCH";
    case FrameType::kAck: return "ACK";
    case FrameType::kError: return "ERROR";
    case FrameType::kPing: return "PING";
  }
  return "UNKNOWN";
}

uint32_t max_body(FrameType t) {
  switch (t) {
    case FrameType::kHello:
    case FrameType::kWelcome:
    case FrameType::kAck:
    case FrameType::kError:
      return kMaxControlBody;
    case FrameType::kPing:
      return 0;
    case FrameType::kBatch:
      return kMaxBatchBody;
  }
  return 0;
}

void encode(std::vector<uint8_t>& out, const Hello& m) {
  size_t len = begin_frame(out, FrameType::kHello);
  ByteWriter w(out);
  w.u16le(m.version);
  put_str(w, m.agent_name, kMaxNameBytes);
  put_str(w, m.hostname, kMaxNameBytes);
  put_str(w, m.software, kMaxNameBytes);
  w.u64le(m.spool_id);
  w.u64le(m.last_seq);
  end_frame(out, len);
}

void encode(std::vector<uint8_t>& out, const Welcome& m) {
  size_t len = begin_frame(out, FrameType::kWelcome);
  ByteWriter w(out);
  w.u16le(m.version);
  w.u64le(m.durable_seq);
  w.u32le(m.max_batch_body);
  end_frame(out, len);
}

void encode(std::vector<uint8_t>& out, const Ack& m) {
  size_t len = begin_frame(out, FrameType::kAck);
  ByteWriter(out).u64le(m.seq);
  end_frame(out, len);
}

void encode(std::vector<uint8_t>& out, const ErrorMsg& m) {
  size_t len = begin_frame(out, FrameType::kError);
  ByteWriter w(out);
  w.u16le(static_cast<uint16_t>(m.code));
  put_str(w, m.text, kMaxTextBytes);
  end_frame(out, len);
}

void encode_ping(std::vector<uint8_t>& out) { end_frame(out, begin_frame(out, FrameType::kPing)); }

Result<Hello> decode_hello(std::span<const uint8_t> body) {
  ByteReader r(body);
  Hello m;
  m.version = r.u16le();
  // Future versions may append fields, so a v1 decoder reads only what it
  // knows; the version check is the caller's (it answers with an ERROR).
  m.agent_name = get_str(r, kMaxNameBytes);
  m.hostname = get_str(r, kMaxNameBytes);
  m.software = get_str(r, kMaxNameBytes);
  m.spool_id = r.u64le();
  m.last_seq = r.u64le();
  if (!r.ok()) return short_frame("HELLO");
  return m;
}

Result<Welcome> decode_welcome(std::span<const uint8_t> body) {
  ByteReader r(body);
  Welcome m;
  m.version = r.u16le();
  m.durable_seq = r.u64le();
  m.max_batch_body = r.u32le();
  if (!r.ok() || m.max_batch_body == 0) return short_frame("WELCOME");
  return m;
}

Result<Ack> decode_ack(std::span<const uint8_t> body) {
  ByteReader r(body);
  Ack m;
  m.seq = r.u64le();
  if (!r.ok()) return short_frame("ACK");
  return m;
}

Result<ErrorMsg> decode_error(std::span<const uint8_t> body) {
  ByteReader r(body);
  ErrorMsg m;
  m.code = static_cast<ErrorCode>(r.u16le());
  m.text = get_str(r, kMaxTextBytes);
  if (!r.ok()) return short_frame("ERROR");
  return m;
}

FrameDecoder::FrameDecoder(size_t initial_capacity) : buf_(initial_capacity) {}

std::span<uint8_t> FrameDecoder::writable(size_t min_bytes) { return buf_.writable(min_bytes); }

void FrameDecoder::commit(size_t n) { buf_.commit(n); }

Result<std::optional<FrameView>> FrameDecoder::next() {
  auto in = buf_.readable();
  size_t avail = in.size();
  if (avail < kFrameHeaderBytes) return std::optional<FrameView>{};
  const uint8_t* h = in.data();
  if (h[0] != kMagic0 || h[1] != kMagic1) {
    return Error(fmt::format("bad frame magic {:02x}{:02x} (not a trawl peer?)", h[0], h[1]));
  }
  auto type = static_cast<FrameType>(h[2]);
  uint32_t cap = max_body(type);
  if (to_string(type) == "UNKNOWN") return Error(fmt::format("unknown frame type {}", h[2]));
  uint32_t len = ByteReader({h + 4, 4}).u32le();
  if (len > cap) {
    return Error(fmt::format("{} frame of {} bytes exceeds the cap of {}", to_string(type), len, cap));
  }
  if (avail < kFrameHeaderBytes + len) {
    buf_.reserve(kFrameHeaderBytes + len);  // the whole frame will fit once it arrives
    return std::optional<FrameView>{};
  }
  FrameView f{type, h[3], {h + kFrameHeaderBytes, len}};
  buf_.consume(kFrameHeaderBytes + len);
  return std::optional<FrameView>{f};
}

BatchBuilder::BatchBuilder(size_t reserve_bytes) { buf_.reserve(reserve_bytes); }

void BatchBuilder::reset(uint64_t spool_id, std::span<const InterfaceInfo> ifaces) {
  assert(ifaces.size() <= kMaxInterfaces);
  buf_.clear();
  records_ = packets_ = 0;
  packet_bytes_ = first_ts_ = last_ts_ = 0;
  iface_count_ = static_cast<uint16_t>(ifaces.size());
  begin_frame(buf_, FrameType::kBatch);
  ByteWriter w(buf_);
  w.u64le(spool_id);
  w.u64le(0);  // seq, set by finish()
  w.u64le(0);  // sealed_ns, set by finish()
  w.u32le(0);  // record count, set by finish()
  w.u16le(iface_count_);
  w.u16le(0);
  for (const auto& i : ifaces) {
    std::string_view name = std::string_view(i.name).substr(0, kMaxNameBytes);
    w.u16le(i.link_type);
    w.u16le(static_cast<uint16_t>(name.size()));
    w.u32le(i.snaplen);
    w.str(name);
  }
}

void BatchBuilder::add_packet(uint16_t iface, uint64_t ts_ns, uint32_t orig_len,
                              std::span<const uint8_t> data) {
  assert(iface < iface_count_ && data.size() <= kMaxSnaplen);
  // insert() copies into spare capacity directly; resize() would first
  // zero-fill every byte we are about to overwrite.
  uint8_t h[kPacketRecordHeader];
  uint32_t caplen = static_cast<uint32_t>(data.size());
  h[0] = static_cast<uint8_t>(RecordKind::kPacket);
  h[1] = 0;
  std::memcpy(h + 2, &iface, 2);  // the wire is little-endian, like every host we build for
  std::memcpy(h + 4, &caplen, 4);
  std::memcpy(h + 8, &orig_len, 4);
  std::memcpy(h + 12, &ts_ns, 8);
  buf_.insert(buf_.end(), h, h + kPacketRecordHeader);
  buf_.insert(buf_.end(), data.begin(), data.end());
  if (packets_ == 0 || ts_ns < first_ts_) first_ts_ = ts_ns;
  if (ts_ns > last_ts_) last_ts_ = ts_ns;
  ++records_;
  ++packets_;
  packet_bytes_ += caplen;
}

void BatchBuilder::add_stats(const InterfaceStats& s) {
  assert(s.iface < iface_count_);
  ByteWriter w(buf_);
  w.u8(static_cast<uint8_t>(RecordKind::kStats));
  w.u8(0);
  w.u16le(s.iface);
  w.u64le(s.ts_ns);
  w.u64le(s.received);
  w.u64le(s.kernel_drops);
  w.u64le(s.if_drops);
  w.u64le(s.agent_drops);
  ++records_;
}

void BatchBuilder::add_gap(const Gap& g) {
  assert(g.iface == 0xffff || g.iface < iface_count_);
  ByteWriter w(buf_);
  w.u8(static_cast<uint8_t>(RecordKind::kGap));
  w.u8(static_cast<uint8_t>(g.reason));
  w.u16le(g.iface);
  w.u64le(g.from_ns);
  w.u64le(g.to_ns);
  w.u64le(g.packets);
  w.u64le(g.bytes);
  ++records_;
}

void BatchBuilder::add_spool_status(const SpoolStatus& s) {
  ByteWriter w(buf_);
  w.u8(static_cast<uint8_t>(RecordKind::kSpool));
  w.u8(0);
  w.u16le(0);
  w.u64le(s.ts_ns);
  w.u64le(s.bytes);
  w.u64le(s.batches);
  w.u64le(s.oldest_unacked_ns);
  ++records_;
}

std::span<const uint8_t> BatchBuilder::finish(uint64_t seq, uint64_t sealed_ns) {
  static_assert(std::endian::native == std::endian::little, "wire encoding assumes a little-endian host");
  uint8_t* b = buf_.data() + kFrameHeaderBytes;
  std::memcpy(b + 8, &seq, 8);
  std::memcpy(b + 16, &sealed_ns, 8);
  std::memcpy(b + 24, &records_, 4);
  end_frame(buf_, 4);
  return buf_;
}

Result<BatchView> BatchView::parse(std::span<const uint8_t> body) {
  ByteReader r(body);
  BatchView v;
  v.body_ = body;
  v.spool_id_ = r.u64le();
  v.seq_ = r.u64le();
  v.sealed_ns_ = r.u64le();
  v.record_count_ = r.u32le();
  uint16_t n_if = r.u16le();
  r.u16le();
  if (!r.ok()) return Error("malformed BATCH: truncated header");
  if (n_if > kMaxInterfaces) return Error(fmt::format("malformed BATCH: {} interfaces (max {})", n_if, kMaxInterfaces));
  v.ifaces_.reserve(n_if);
  for (uint16_t i = 0; i < n_if; ++i) {
    InterfaceInfo info;
    info.link_type = r.u16le();
    uint16_t name_len = r.u16le();
    info.snaplen = r.u32le();
    if (name_len > kMaxNameBytes) return Error("malformed BATCH: interface name too long");
    info.name = std::string(r.str(name_len));
    if (!r.ok()) return Error("malformed BATCH: truncated interface table");
    if (info.snaplen == 0 || info.snaplen > kMaxSnaplen) {
      return Error(fmt::format("malformed BATCH: interface {} snaplen {} out of range", i, info.snaplen));
    }
    v.ifaces_.push_back(std::move(info));
  }
  size_t records_start = r.position();
  // Validation pass: every record's kind, interface index and length.
  for (uint32_t i = 0; i < v.record_count_; ++i) {
    auto kind = static_cast<RecordKind>(r.u8());
    uint8_t aux = r.u8();
    uint16_t iface = r.u16le();
    if (!r.ok()) return Error(fmt::format("malformed BATCH seq {}: record {} truncated", v.seq_, i));
    switch (kind) {
      case RecordKind::kPacket: {
        uint32_t caplen = r.u32le();
        uint32_t orig = r.u32le();
        r.skip(8);
        if (iface >= n_if) return Error(fmt::format("malformed BATCH seq {}: record {} names interface {} of {}", v.seq_, i, iface, n_if));
        if (caplen > v.ifaces_[iface].snaplen || caplen > orig) {
          return Error(fmt::format("malformed BATCH seq {}: record {} caplen {} (orig_len {}, snaplen {})", v.seq_, i, caplen, orig, v.ifaces_[iface].snaplen));
        }
        r.skip(caplen);
        ++v.packet_count_;
        v.packet_bytes_ += caplen;
        break;
      }
      case RecordKind::kStats:
        if (iface >= n_if) return Error(fmt::format("malformed BATCH seq {}: stats for interface {} of {}", v.seq_, iface, n_if));
        r.skip(kStatsRecordBytes - 4);
        break;
      case RecordKind::kGap:
        if (iface != 0xffff && iface >= n_if) return Error(fmt::format("malformed BATCH seq {}: gap for interface {} of {}", v.seq_, iface, n_if));
        if (aux > static_cast<uint8_t>(GapReason::kAgentRestart)) aux = 0;
        r.skip(kGapRecordBytes - 4);
        break;
      case RecordKind::kSpool:
        r.skip(kSpoolRecordBytes - 4);
        break;
      default:
        return Error(fmt::format("malformed BATCH seq {}: record {} has unknown kind {}", v.seq_, i, static_cast<int>(kind)));
    }
    if (!r.ok()) return Error(fmt::format("malformed BATCH seq {}: record {} runs past the frame", v.seq_, i));
  }
  if (!r.empty()) return Error(fmt::format("malformed BATCH seq {}: {} trailing bytes", v.seq_, r.remaining()));
  v.records_ = body.subspan(records_start, r.position() - records_start);
  return v;
}

}  // namespace trawl::wire
