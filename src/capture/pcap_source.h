// PcapSource: live capture with libpcap on one or more interfaces —
// memory-mapped TPACKET_V3 ring per interface (pcap_set_buffer_size),
// nanosecond timestamps, snaplen up to 262144, BPF filter. Owned by the
// capture thread; not thread-safe. poll() blocks in poll(2) at most its
// timeout.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "capture/packet_source.h"

struct pcap;

namespace trawl::capture {

struct CaptureOptions {
  std::vector<std::string> interfaces;
  uint32_t snaplen = kMaxSnaplen;
  bool promiscuous = true;
  uint64_t ring_bytes = 64ull << 20;  // per interface
  // Kernel block retire timeout: bounds how long a packet can sit in a
  // half-filled ring block on a quiet link.
  int block_timeout_ms = 20;
  std::string filter;          // the user's BPF expression ("" = everything)
  std::string exclude_filter;  // the agent's own traffic, always excluded
};

// Combines a user filter with the exclusion so that no user text can undo
// it: "(user) and not (exclude)". pcap's and/or associate left to right
// with equal precedence, so a trailing "and not (...)" applies to the whole
// expression however the user's text is parenthesised.
std::string combine_filters(const std::string& user, const std::string& exclude);

class PcapSource final : public PacketSource {
 public:
  static Result<std::unique_ptr<PcapSource>> open(const CaptureOptions& opts);
  ~PcapSource() override;

  const std::vector<InterfaceInfo>& interfaces() const override { return ifaces_; }
  Result<size_t> poll(int timeout_ms, size_t max_packets, PacketSink& sink) override;
  std::vector<InterfaceStats> stats() override;

 private:
  struct Handle {
    pcap* p = nullptr;
    int fd = -1;
    uint32_t last_recv = 0, last_drop = 0, last_ifdrop = 0;  // raw 32-bit pcap counters
    uint64_t recv = 0, drop = 0, ifdrop = 0;                  // wrap-corrected
  };
  PcapSource() = default;

  std::vector<Handle> handles_;
  std::vector<InterfaceInfo> ifaces_;
};

}  // namespace trawl::capture
