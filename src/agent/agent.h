// The edge agent: capture -> batch -> spool -> send, with acknowledged
// delivery. run() owns two threads: the capture loop (this file's .cc) and
// the sender (sender.h). It returns when `stop` turns true or on a fatal
// error (capture handle lost, spool unusable).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "agent/spool.h"
#include "capture/pcap_source.h"
#include "pki/pki.h"
#include "core/clock.h"
#include "core/result.h"

namespace trawl::agent {

struct AgentOptions {
  std::string name;                     // must match the certificate's name
  std::vector<std::string> collectors;  // HOST:PORT, tried in order, failing over
  capture::CaptureOptions capture;
  // --pki DIR gives DIR/ca.crt and DIR/agents/<name>.{crt,key};
  // --ca/--cert/--key override single files; --insecure: plaintext (labs).
  pki::Credentials credentials;
  std::string user = "nobody";          // drop root to this user after opening the captures ("" = keep)
  SpoolOptions spool;
  uint64_t batch_max_bytes = 1ull << 20;
  uint32_t batch_max_packets = 16384;
  uint64_t batch_max_age_ns = 50'000'000;  // with the 20 ms ring timeout: < 100 ms on a quiet link
  uint64_t stats_every_ns = 1'000'000'000;
  uint64_t backoff_min_ns = 100'000'000;
  uint64_t backoff_max_ns = 10'000'000'000;
  uint64_t max_in_flight_bytes = 64ull << 20;
  uint64_t drain_timeout_ns = 5'000'000'000;  // on stop, wait this long for acks
  uint64_t max_capture_ns = 0;          // stop after this long (0 = run until stopped)
  std::string metrics_listen;           // ADDR:PORT for /metrics, /healthz, /readyz ("" = off)
};

// Counters the agent keeps; read by metrics/status (relaxed atomics).
struct AgentCounters {
  std::atomic<uint64_t> packets_captured{0};
  std::atomic<uint64_t> bytes_captured{0};
  std::atomic<uint64_t> batches_sealed{0};
  std::atomic<uint64_t> batches_sent{0};
  std::atomic<uint64_t> batches_resent{0};
  std::atomic<uint64_t> batches_acked{0};
  std::atomic<uint64_t> packets_dropped_spool{0};
  std::atomic<uint64_t> packets_dropped_kernel{0};  // ring + NIC drops (pcap_stats), all interfaces
  std::atomic<uint64_t> bytes_dropped_spool{0};
  std::atomic<uint64_t> connects{0};
  std::atomic<uint64_t> connect_failures{0};
  std::atomic<uint64_t> acked_seq{0};
};

// "tcp and host A and port P or ..." for every address the collector
// names resolve to: the agent never captures its own upload.
Result<std::string> own_traffic_filter(const std::vector<std::string>& collectors);

Status run_agent(const AgentOptions& opts, std::atomic<bool>& stop, AgentCounters& counters);

}  // namespace trawl::agent
