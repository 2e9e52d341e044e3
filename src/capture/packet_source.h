// PacketSource: where the agent's packets come from. One thread at a time
// (the agent's capture loop). poll() hands packets to a PacketSink one by
// one; the bytes are only valid during the call (they live in the capture
// ring), so the sink copies what it keeps.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/packet.h"
#include "core/result.h"

namespace trawl::capture {

class PacketSink {
 public:
  virtual ~PacketSink() = default;
  virtual void on_packet(uint16_t iface, uint64_t ts_ns, uint32_t orig_len,
                         std::span<const uint8_t> data) = 0;
};

class PacketSource {
 public:
  virtual ~PacketSource() = default;
  // Interface table; index = the iface number passed to the sink.
  virtual const std::vector<InterfaceInfo>& interfaces() const = 0;
  // Waits up to timeout_ms for packets, delivers what is ready (at most
  // max_packets), returns how many were delivered. Blocks at most timeout_ms.
  virtual Result<size_t> poll(int timeout_ms, size_t max_packets, PacketSink& sink) = 0;
  // Cumulative counters per interface (64-bit, wrap-corrected).
  virtual std::vector<InterfaceStats> stats() = 0;
};

}  // namespace trawl::capture
