// trawl wire protocol v1: frame layout, control messages and batch
// encoding/decoding. The byte-level specification is docs/wire.md; this file
// is its only implementation.
//
// Every frame: an 8-byte header {u8 'T', u8 'W', u8 type, u8 flags,
// u32 body_len} then body_len bytes. All integers little-endian. Each frame
// type has a hard cap on body_len; decoding never trusts a length before
// checking it against the cap and the bytes actually present.
//
// Thread-safety: all types here are plain values or single-owner buffers.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/bytes.h"
#include "core/packet.h"
#include "core/receive_buffer.h"
#include "core/result.h"

namespace trawl::wire {

constexpr uint16_t kProtocolVersion = 1;
constexpr size_t kFrameHeaderBytes = 8;
constexpr uint32_t kMaxControlBody = 4096;
constexpr uint32_t kMaxBatchBody = 64u << 20;  // 64 MiB
constexpr size_t kMaxNameBytes = 64;
constexpr size_t kMaxTextBytes = 1024;
constexpr uint16_t kMaxInterfaces = 64;

enum class FrameType : uint8_t {
  kHello = 1,    // agent -> collector, first frame
  kWelcome = 2,  // collector -> agent, answer to HELLO
  kBatch = 3,    // agent -> collector
  kAck = 4,      // collector -> agent: every seq <= ack.seq is durable
  kError = 5,    // either way, then close
  kPing = 6,     // either way, keepalive (empty body)
};

std::string_view to_string(FrameType t);
uint32_t max_body(FrameType t);  // 0 for unknown types

struct FrameView {
  FrameType type;
  uint8_t flags;
  std::span<const uint8_t> body;
};

struct Hello {
  uint16_t version = kProtocolVersion;
  std::string agent_name;  // informational: the collector trusts the certificate
  std::string hostname;
  std::string software;    // "trawl 0.1.0"
  uint64_t spool_id = 0;   // identifies the agent's sequence space
  uint64_t last_seq = 0;   // highest seq the agent has assigned
};

struct Welcome {
  uint16_t version = kProtocolVersion;
  uint64_t durable_seq = 0;  // highest durable seq for this agent+spool_id
  uint32_t max_batch_body = kMaxBatchBody;
};

struct Ack {
  uint64_t seq = 0;
};

enum class ErrorCode : uint16_t {
  kProtocol = 1,     // malformed or unexpected frame
  kVersion = 2,      // unsupported protocol version
  kRefused = 3,      // not allowed (identity, duplicate session)
  kUnavailable = 4,  // collector cannot store right now
  kShutdown = 5,
};

struct ErrorMsg {
  ErrorCode code = ErrorCode::kProtocol;
  std::string text;
};

// Appends one complete frame (header + body) to out.
void encode(std::vector<uint8_t>& out, const Hello& m);
void encode(std::vector<uint8_t>& out, const Welcome& m);
void encode(std::vector<uint8_t>& out, const Ack& m);
void encode(std::vector<uint8_t>& out, const ErrorMsg& m);
void encode_ping(std::vector<uint8_t>& out);

Result<Hello> decode_hello(std::span<const uint8_t> body);
Result<Welcome> decode_welcome(std::span<const uint8_t> body);
Result<Ack> decode_ack(std::span<const uint8_t> body);
Result<ErrorMsg> decode_error(std::span<const uint8_t> body);

// Incremental frame splitter for a byte stream. The caller reads into
// writable(), commit()s what arrived, then calls next() until it returns
// nullopt. Views returned by next() stay valid until the next writable().
// A bad header (magic, unknown type, body over its cap) is an Error and the
// stream must be closed: nothing after it can be trusted.
class FrameDecoder {
 public:
  explicit FrameDecoder(size_t initial_capacity = 256 << 10);
  std::span<uint8_t> writable(size_t min_bytes = 64 << 10);
  void commit(size_t n);
  Result<std::optional<FrameView>> next();
  size_t buffered() const { return buf_.size(); }

 private:
  ReceiveBuffer buf_;
};

// BATCH body:
//   u64 spool_id, u64 seq, u64 sealed_ns, u32 record_count, u16 iface_count,
//   u16 reserved, iface_count x {u16 link_type, u16 name_len, u32 snaplen,
//   name}, then record_count records:
//   PACKET {u8 1, u8 0, u16 iface, u32 caplen, u32 orig_len, u64 ts_ns, data}
//   STATS  {u8 2, u8 0, u16 iface, u64 ts_ns, u64 received, u64 kernel_drops,
//           u64 if_drops, u64 agent_drops}
//   GAP    {u8 3, u8 reason, u16 iface, u64 from_ns, u64 to_ns, u64 packets,
//           u64 bytes}
//   SPOOL  {u8 4, u8 0, u16 0, u64 ts_ns, u64 bytes, u64 batches,
//           u64 oldest_unacked_ns}
enum class RecordKind : uint8_t { kPacket = 1, kStats = 2, kGap = 3, kSpool = 4 };
constexpr size_t kPacketRecordHeader = 20;
constexpr size_t kStatsRecordBytes = 44;
constexpr size_t kGapRecordBytes = 36;
constexpr size_t kSpoolRecordBytes = 36;

// Builds one BATCH frame in place, in a buffer it owns and reuses: packets
// are copied once, from the capture ring into the frame. Not thread-safe.
class BatchBuilder {
 public:
  explicit BatchBuilder(size_t reserve_bytes = 1 << 20);
  // Starts a new batch; the interface table is fixed for the batch.
  void reset(uint64_t spool_id, std::span<const InterfaceInfo> ifaces);
  void add_packet(uint16_t iface, uint64_t ts_ns, uint32_t orig_len,
                  std::span<const uint8_t> data);
  void add_stats(const InterfaceStats& s);
  void add_gap(const Gap& g);
  void add_spool_status(const SpoolStatus& s);
  // Completes the frame with its seq and returns it (header + body).
  std::span<const uint8_t> finish(uint64_t seq, uint64_t sealed_ns);
  // The buffer finish() returned a view of; a caller may swap it for another
  // (reset() then reuses whatever capacity that one has).
  std::vector<uint8_t>& storage() { return buf_; }

  // Hands the finished frame's buffer to the caller and continues with
  // `next` (cleared; its capacity is reused). Call reset() before adding.
  std::vector<uint8_t> take_frame(std::vector<uint8_t>&& next) {
    std::vector<uint8_t> out = std::move(buf_);
    buf_ = std::move(next);
    buf_.clear();
    return out;
  }

  size_t frame_bytes() const { return buf_.size(); }
  uint32_t records() const { return records_; }
  uint32_t packets() const { return packets_; }
  uint64_t packet_bytes() const { return packet_bytes_; }
  uint64_t first_ts_ns() const { return first_ts_; }
  uint64_t last_ts_ns() const { return last_ts_; }
  bool empty() const { return records_ == 0; }

 private:
  std::vector<uint8_t> buf_;
  uint32_t records_ = 0;
  uint32_t packets_ = 0;
  uint64_t packet_bytes_ = 0;
  uint64_t first_ts_ = 0;
  uint64_t last_ts_ = 0;
  uint16_t iface_count_ = 0;
};

// A validated BATCH body. parse() checks every length and index once, so
// for_each() can walk the records without re-checking. Views point into the
// body passed to parse().
class BatchView {
 public:
  static Result<BatchView> parse(std::span<const uint8_t> body);

  uint64_t spool_id() const { return spool_id_; }
  uint64_t seq() const { return seq_; }
  uint64_t sealed_ns() const { return sealed_ns_; }
  uint32_t records() const { return record_count_; }
  uint32_t packets() const { return packet_count_; }
  uint64_t packet_bytes() const { return packet_bytes_; }
  const std::vector<InterfaceInfo>& interfaces() const { return ifaces_; }

  // The same view over a byte-identical copy of the body it was parsed
  // from (no second validation pass). `copy` must be that copy.
  BatchView over(std::span<const uint8_t> copy) const {
    BatchView v = *this;
    v.body_ = copy;
    v.records_ = copy.subspan(static_cast<size_t>(records_.data() - body_.data()), records_.size());
    return v;
  }

  // Walks the records in order; SPOOL records are skipped.
  template <class OnPacket, class OnStats, class OnGap>
  void for_each(OnPacket&& on_packet, OnStats&& on_stats, OnGap&& on_gap) const {
    for_each(on_packet, on_stats, on_gap, [](const SpoolStatus&) {});
  }

  template <class OnPacket, class OnStats, class OnGap, class OnSpool>
  void for_each(OnPacket&& on_packet, OnStats&& on_stats, OnGap&& on_gap, OnSpool&& on_spool) const {
    ByteReader r(records_);
    for (uint32_t i = 0; i < record_count_; ++i) {
      auto kind = static_cast<RecordKind>(r.u8());
      uint8_t aux = r.u8();
      uint16_t iface = r.u16le();
      if (kind == RecordKind::kPacket) {
        PacketView p;
        p.iface = iface;
        uint32_t caplen = r.u32le();
        p.orig_len = r.u32le();
        p.ts_ns = r.u64le();
        p.data = r.bytes(caplen);
        on_packet(p);
      } else if (kind == RecordKind::kStats) {
        InterfaceStats s;
        s.iface = iface;
        s.ts_ns = r.u64le();
        s.received = r.u64le();
        s.kernel_drops = r.u64le();
        s.if_drops = r.u64le();
        s.agent_drops = r.u64le();
        on_stats(s);
      } else if (kind == RecordKind::kSpool) {
        SpoolStatus s;
        s.ts_ns = r.u64le();
        s.bytes = r.u64le();
        s.batches = r.u64le();
        s.oldest_unacked_ns = r.u64le();
        on_spool(s);
      } else {
        Gap g;
        g.iface = iface;
        g.reason = static_cast<GapReason>(aux);
        g.from_ns = r.u64le();
        g.to_ns = r.u64le();
        g.packets = r.u64le();
        g.bytes = r.u64le();
        on_gap(g);
      }
    }
  }

 private:
  uint64_t spool_id_ = 0;
  uint64_t seq_ = 0;
  uint64_t sealed_ns_ = 0;
  uint32_t record_count_ = 0;
  uint32_t packet_count_ = 0;
  uint64_t packet_bytes_ = 0;
  std::vector<InterfaceInfo> ifaces_;
  std::span<const uint8_t> body_;
  std::span<const uint8_t> records_;
};

}  // namespace trawl::wire
