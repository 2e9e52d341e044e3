// The collector: accepts agents over mutual TLS, stores each agent's
// batches in its own series of pcapng segments, and acknowledges batches
// once they are durable. One thread accepts; each connection gets its own
// thread (a slow or broken agent only ever stalls itself); a housekeeping
// thread seals segments on time when agents are quiet. start() returns
// once listening; stop() seals every open segment and joins all threads.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "core/result.h"
#include "metrics/exposition.h"
#include "pki/pki.h"
#include "web/http_server.h"
#include "store/segment_writer.h"
#include "wire/tls.h"

namespace trawl::collector {

struct CollectorOptions {
  std::string listen = "0.0.0.0:4430";
  std::filesystem::path data_dir = "trawl-data";
  pki::Credentials credentials;  // --pki DIR: ca.crt, collector.{crt,key}
  std::vector<std::string> allow_agents;  // empty: any agent with a valid certificate
  uint64_t rotate_bytes = 1ull << 30;
  uint64_t rotate_every_ns = 300ull * 1'000'000'000;
  bool fsync = true;                       // ack only after fdatasync (off: ack after write)
  uint64_t group_commit_ns = 5'000'000;    // at most one fsync per agent per this interval
  size_t max_connections = 1024;
  int handshake_timeout_ms = 10000;
  std::string metrics_listen;              // ADDR:PORT for /metrics, /healthz, /readyz ("" = off)
  // Storage format (wt/store): zstd level of segments (0 = plain pcapng) and
  // uncompressed bytes per zstd frame / index block.
  int zstd_level = 1;
  size_t block_bytes = 2u << 20;
};

// Why a connection was closed for a bad frame (a metrics label).
enum class MalformedReason : uint8_t { kBadHeader, kBadHello, kBadBatch, kOutOfOrder, kUnexpectedFrame, kNoHello, kCount };
std::string_view to_string(MalformedReason r);
// Why a TLS handshake failed (a metrics label), from OpenSSL's reason text.
enum class TlsFailure : uint8_t { kUntrustedCertificate, kNoCertificate, kTimeout, kNotTls, kOther, kCount };
std::string_view to_string(TlsFailure r);
TlsFailure classify_tls_failure(std::string_view message);

// Cumulative counters (relaxed atomics), read by metrics and tests.
struct CollectorCounters {
  std::atomic<uint64_t> connections_accepted{0};
  std::atomic<uint64_t> connections_refused{0};
  std::atomic<uint64_t> tls_failures{0};
  std::atomic<uint64_t> malformed_frames{0};
  std::atomic<uint64_t> malformed_by_reason[static_cast<size_t>(MalformedReason::kCount)] = {};
  std::atomic<uint64_t> tls_failures_by_reason[static_cast<size_t>(TlsFailure::kCount)] = {};
  std::atomic<uint64_t> batches_stored{0};
  std::atomic<uint64_t> batches_duplicate{0};
  std::atomic<uint64_t> packets_stored{0};
  std::atomic<uint64_t> bytes_stored{0};
  std::atomic<uint64_t> fsyncs{0};
  std::atomic<uint64_t> storage_errors{0};
};

// One agent's storage, shared by its (at most one live) connection and the
// housekeeping thread. `mu` guards writer; `generation` lets a newer
// connection from the same agent take over from a stale one.
struct AgentSlot {
  std::mutex mu;
  std::unique_ptr<store::SegmentWriter> writer;
  std::atomic<uint64_t> generation{0};
  std::string host;
};

class Collector {
 public:
  explicit Collector(CollectorOptions opts, const Clock& clock = SystemClock::instance());
  ~Collector();
  Status start();
  uint16_t port() const { return port_; }
  void stop();
  const CollectorCounters& counters() const { return counters_; }

 private:
  void recover_unsealed();
  void write_metrics(metrics::Exposition& e);
  bool storage_writable() const;
  void accept_loop();
  void housekeeping_loop();
  void serve(int fd, std::string peer);
  // Finds or opens the agent's storage (recovering its segments).
  Result<std::shared_ptr<AgentSlot>> slot_for(const std::string& agent, const std::string& host);

  friend class Session;
  CollectorOptions opts_;
  const Clock& clock_;
  CollectorCounters counters_;
  std::shared_ptr<wire::TlsContext> tls_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread accept_thread_;
  std::thread housekeeping_thread_;

  std::mutex mu_;  // guards slots_
  std::map<std::string, std::shared_ptr<AgentSlot>> slots_;
  // Session threads are detached; stop() waits for the count to reach 0.
  std::mutex sessions_mu_;
  std::condition_variable sessions_cv_;
  std::atomic<size_t> live_sessions_{0};
  metrics::MetricsRegistry registry_;
  std::unique_ptr<web::HttpServer> http_;
};

}  // namespace trawl::collector
