// What every protocol decoder looks like to the analyze driver.
//
// A decoder is a stateful tracker fed by the driver: UDP datagrams it
// claims (wants_udp), and in-order TCP/SCTP streams it claims
// (wants_stream). It emits one JSON record per stream or transaction
// through the Sink, and at finish() flushes what is still open. Parsing
// lives in each protocol's pure parse function; malformed input is counted
// in anomalies() under "<proto>.<what>" names. Not thread-safe.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "decode/decap.h"
#include "decode/stream.h"

namespace trawl::decode {

using Sink = std::function<void(nlohmann::json&&)>;

class Decoder : public StreamHandler {
 public:
  virtual std::string_view name() const = 0;
  virtual bool wants_udp(const L4Packet&) const { return false; }
  virtual void on_udp(const L4Packet&) {}
  // TCP (sctp=false, ppid=0) or SCTP chunk with its PPID.
  virtual bool wants_stream(uint16_t /*sport*/, uint16_t /*dport*/, bool /*sctp*/, uint32_t /*ppid*/) const {
    return false;
  }
  void on_stream_data(const StreamSegment&) override {}
  void on_stream_gap(uint64_t, bool) override {}
  void on_stream_close(uint64_t) override {}
  // Called once at the end of input: flush open streams/transactions.
  virtual void finish() {}
  virtual std::vector<std::pair<std::string, uint64_t>> anomalies() const = 0;

  // Timestamp of the first frame of the input: relative times (RTP deltas
  // and jitter, as Wireshark computes them) are taken from it.
  void set_time_origin(uint64_t ts_ns) { time_origin_ns_ = ts_ns; }

 protected:
  uint64_t time_origin_ns_ = 0;
};

// "2026-11-22T04:04:18.123456789Z".
std::string rfc3339_ns(uint64_t ts_ns);

}  // namespace trawl::decode
