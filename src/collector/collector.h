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

#include "collector/ledger.h"
#include "collector/retention.h"
#include "core/clock.h"
#include "live/live_bus.h"
#include "live/osmo_protocol.h"
#include "core/result.h"
#include "metrics/exposition.h"
#include "pki/pki.h"
#include "web/http_server.h"
#include "store/segment_writer.h"
#include "wire/frames.h"
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
  std::string metrics_listen;              // ADDR:PORT for /metrics, /healthz, /readyz, /api/v1 ("" = off)
  // Retention (0 = no limit). The oldest sealed segment goes first, with
  // its sidecar files; a segment being written is never deleted.
  uint64_t retain_bytes_per_agent = 0;
  uint64_t retain_bytes_total = 0;
  uint64_t retain_age_ns = 0;
  uint64_t min_free_bytes = 0;             // free-space floor on the data file system
  double min_free_percent = 0;             // same, as a share of the file system
  // --- live channel and osmo-pcap compatibility (docs/live.md, docs/osmo-migration.md)
  live::LiveOptions live;                  // --zmq, --pcap-listen, --live-queue
  std::vector<std::string> stream_only;    // agents published live but never stored
  std::string osmo_listen;                 // ADDR:PORT for osmo-pcap clients ("" = off)
  std::map<std::string, std::string> osmo_clients;  // client IP address -> agent name
  uint32_t osmo_max_caplen = 65535 - 16;   // larger records close the connection
  bool osmo_tls = false;                   // osmo-pcap clients connect over TLS (collector's credentials)
  // Storage format (wt/store): zstd level of segments (0 = plain pcapng) and
  // uncompressed bytes per zstd frame / index block.
  int zstd_level = -1;
  size_t block_bytes = 1u << 20;
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
  std::atomic<uint64_t> evictions[static_cast<size_t>(EvictionReason::kCount)] = {};
  std::atomic<uint64_t> evicted_bytes{0};
  std::atomic<uint64_t> ledger_errors{0};
  // live / osmo-pcap
  std::atomic<uint64_t> batches_streamed{0};  // stream-only agents: published, not stored
  std::atomic<uint64_t> packets_streamed{0};
  std::atomic<uint64_t> osmo_connections{0};
  std::atomic<uint64_t> osmo_malformed_by_reason[static_cast<size_t>(live::osmo::Malformed::kCount)] = {};
};

// One agent's storage, shared by its (at most one live) connection and the
// housekeeping thread. `mu` guards writer; `generation` lets a newer
// connection from the same agent take over from a stale one.
struct AgentSlot {
  std::mutex mu;
  std::unique_ptr<store::SegmentWriter> writer;
  std::unique_ptr<LedgerBook> ledger;
  std::atomic<uint64_t> generation{0};
  std::string host;
  // Live status for /api/v1/agents and `trawl status` (guarded by mu).
  bool connected = false;
  std::string peer;
  uint64_t connected_since_ns = 0;     // or, when disconnected, since when
  std::string disconnect_reason;
  SpoolStatus spool;                   // the agent's last SPOOL report
  std::vector<std::string> iface_names;
  std::vector<InterfaceStats> iface_stats;  // last STATS per interface (cumulative)
  uint64_t newest_packet_ns = 0;
  uint64_t last_batch_wall_ns = 0;
  uint64_t disk_bytes = 0;             // refreshed by housekeeping
  uint64_t segments = 0;
  double packets_per_s = 0, bits_per_s = 0;  // stored, over the last few seconds
  uint64_t rate_packets = 0, rate_bytes = 0, rate_at_ns = 0;
  uint64_t last_ledger_sync_ns = 0;
  // Not guarded: lock-free histograms.
  metrics::LatencyHistogram write_latency;  // one batch into the segment (begin..end)
  metrics::LatencyHistogram sync_latency;   // group commit: write + fdatasync
  // Stream-only agents (published live, not stored): the sequence position
  // lives here, in memory, instead of in the segments.
  bool stream_only = false;
  uint64_t live_spool_id = 0;
  uint64_t live_last_seq = 0;
  uint64_t spool_id() const { return stream_only ? live_spool_id : writer->spool_id(); }
  uint64_t last_seq() const { return stream_only ? live_last_seq : writer->last_seq(); }
};

class OsmoListener;

class Collector {
 public:
  explicit Collector(CollectorOptions opts, const Clock& clock = SystemClock::instance());
  ~Collector();
  Status start();
  uint16_t port() const { return port_; }
  uint16_t osmo_port() const;
  const live::LiveBus* live() const { return live_.get(); }
  void stop();
  const CollectorCounters& counters() const { return counters_; }

 private:
  void recover_unsealed();
  void write_metrics(metrics::Exposition& e);
  bool storage_writable() const;
  void accept_loop();
  void housekeeping_loop();
  // One retention pass over the data directory (also refreshes disk usage).
  void enforce_retention();
  web::HttpResponse api_agents();
  web::HttpResponse api_coverage(std::string_view target);
  // Commits the ledger after a successful writer sync (slot->mu held).
  void ledger_commit(AgentSlot& slot, const std::string& agent, bool force_durable);
  static void note_stats(AgentSlot& slot, const std::vector<InterfaceInfo>& ifaces, const InterfaceStats& st);
  void serve(int fd, std::string peer);
  // Finds or opens the agent's storage (recovering its segments).
  Result<std::shared_ptr<AgentSlot>> slot_for(const std::string& agent, const std::string& host);

  // The one store step of native and osmo-pcap sessions (caller holds
  // slot.mu): dedupe -> publish live -> store (unless stream-only).
  // true: accepted; false: a duplicate; Error: storage failed (rolled back).
  // storage: the caller's buffer holding body, if the live outputs may take
  // it instead of copying the batch (it then comes back as another, empty
  // buffer with capacity).
  Result<bool> accept_batch(AgentSlot& slot, const std::string& agent, std::span<const uint8_t> body,
                            const wire::BatchView& b, std::vector<uint8_t>* storage = nullptr);

  friend class Session;
  friend class OsmoListener;
  std::unique_ptr<live::LiveBus> live_;
  std::unique_ptr<OsmoListener> osmo_;
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
  uint64_t started_wall_ns_ = 0;
  uint64_t last_retention_mono_ = 0;
  uint64_t last_storage_errors_ = 0;
  std::atomic<bool> retention_due_{false};
  std::atomic<uint64_t> disk_free_bytes_{0};
  std::atomic<uint64_t> disk_total_bytes_{0};
};

}  // namespace trawl::collector
