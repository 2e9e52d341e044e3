// In-order byte streams handed to decoders that run over TCP or SCTP.
//
// conn_id is unique per TCP connection / SCTP association within one
// analysis run and the same for both directions; side A is the one that
// sent the first packet seen (the SYN when the capture has it). src/dst are
// "ip:port" (IPv6 in brackets). For TCP, data is the next in-order bytes of
// one direction; for SCTP, one DATA chunk's user data (fragments joined).
// Views are valid only during the call. Same shape as DiameterSegment, so a
// stream decoder is wired in by one registry row.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace trawl::decode {

struct StreamSegment {
  uint64_t conn_id = 0;
  bool from_a = true;
  std::string_view src;
  std::string_view dst;
  bool sctp = false;
  uint64_t ts_ns = 0;
  std::span<const uint8_t> data;
  uint32_t ppid = 0;       // SCTP payload protocol identifier (0 for TCP)
  uint16_t stream_id = 0;  // SCTP stream
};

class StreamHandler {
 public:
  virtual ~StreamHandler() = default;
  virtual void on_stream_data(const StreamSegment& s) = 0;
  // Bytes are missing before the next data of this direction (capture loss,
  // buffer limit): a decoder resynchronises.
  virtual void on_stream_gap(uint64_t conn_id, bool from_a) = 0;
  virtual void on_stream_close(uint64_t conn_id) = 0;
};

}  // namespace trawl::decode
