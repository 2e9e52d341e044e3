// Subscriber to the collector's live ZeroMQ feed (osmo-pcap v1 format).
//
// Data messages have three parts: topic "data.v1.<agent>", the 24-byte
// classic pcap file header of that source (gives the link type), and one
// classic pcap record (16-byte header: u32 seconds, u32 microseconds,
// u32 caplen, u32 len; then the bytes). Events are "event.v1.<name>.<agent>"
// with optional text and are counted, not analysed. Both little- and
// big-endian pcap headers are accepted (by the magic).
//
// next() waits at most timeout_ms; the Frame points into the last received
// message and stays valid until the next call. Not thread-safe.
#pragma once

#include <memory>
#include <string>

#include "core/result.h"
#include "decode/anomalies.h"
#include "decode/capture_reader.h"

namespace trawl::decode {

class LiveSource {
 public:
  enum class Next { kFrame, kTimeout };
  // endpoint: "tcp://host:port"; agent: "" for every agent.
  static Result<std::unique_ptr<LiveSource>> connect(const std::string& endpoint, const std::string& agent);
  virtual ~LiveSource() = default;
  virtual Result<Next> next(Frame& f, int timeout_ms) = 0;
  virtual const Anomalies& anomalies() const = 0;
  virtual uint64_t events() const = 0;
};

// Parses the pcap file header and record parts of a data message (pure;
// fuzzed). Returns nullptr or an anomaly name.
const char* parse_live_data(std::span<const uint8_t> file_header, std::span<const uint8_t> record, Frame& f);

}  // namespace trawl::decode
