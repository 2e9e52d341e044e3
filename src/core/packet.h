// Plain values that move through the pipeline: interface descriptions,
// packet views, kernel/agent drop statistics and gap records. A PacketView
// does not own its bytes; it is valid only as long as the buffer it points
// into (a capture ring slot or a received batch).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace trawl {

constexpr uint32_t kMaxSnaplen = 262144;

struct InterfaceInfo {
  std::string name;
  uint16_t link_type = 1;  // LINKTYPE_* (1 = Ethernet)
  uint32_t snaplen = kMaxSnaplen;
  bool operator==(const InterfaceInfo&) const = default;
};

struct PacketView {
  uint16_t iface = 0;     // index into the batch's interface table
  uint64_t ts_ns = 0;     // UTC nanoseconds
  uint32_t orig_len = 0;  // length on the wire
  std::span<const uint8_t> data;  // captured bytes (caplen = data.size())
};

// Cumulative counters for one interface since the capture handle opened
// (pcap_stats: received, dropped by the kernel ring, dropped by the NIC).
struct InterfaceStats {
  uint16_t iface = 0;
  uint64_t ts_ns = 0;
  uint64_t received = 0;
  uint64_t kernel_drops = 0;
  uint64_t if_drops = 0;
  uint64_t agent_drops = 0;  // dropped by the agent's spool policy
};

// The agent's spool as the agent saw it at ts_ns: what the collector has not
// acknowledged yet (how far behind delivery is).
struct SpoolStatus {
  uint64_t ts_ns = 0;
  uint64_t bytes = 0;              // spool bytes on disk (unacknowledged + not yet reclaimed)
  uint64_t batches = 0;            // unacknowledged batches
  uint64_t oldest_unacked_ns = 0;  // first packet timestamp of the oldest unacked batch; 0: none
};

enum class GapReason : uint8_t {
  kUnknown = 0,
  kSpoolFull = 1,      // agent spool overflow (drop-newest / drop-oldest)
  kKernelDrop = 2,     // capture ring overrun
  kAgentRestart = 3,   // batch in flight when the agent died
};

inline std::string_view to_string(GapReason r) {
  switch (r) {
    case GapReason::kSpoolFull: return "spool-full";
    case GapReason::kKernelDrop: return "kernel-drop";
    case GapReason::kAgentRestart: return "agent-restart";
    default: return "unknown";
  }
}

// Packets that were captured but will never be stored.
struct Gap {
  uint16_t iface = 0xffff;  // 0xffff: all interfaces of the agent
  uint64_t from_ns = 0;
  uint64_t to_ns = 0;
  uint64_t packets = 0;
  uint64_t bytes = 0;
  GapReason reason = GapReason::kUnknown;
};

}  // namespace trawl
