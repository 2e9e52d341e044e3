// Completeness ledger: for one agent, per wall-clock minute and interface,
// how many packets were stored, dropped by the kernel ring, dropped by the
// agent's spool policy, or lost otherwise, and how many STATS reports came
// in (evidence that the agent was capturing at all: a minute with no
// reports is "unknown", never "complete").
//
// Writer side (LedgerBook): the collector feeds every stored batch through
// begin_batch / packet / gap / stats; the counts wait in memory until the
// segment writer has made the batch durable (commit()), and are then
// appended as delta rows to <data>/<agent>/ledger.tsv (write(); fdatasync at
// most once a second). A segment-writer rollback drops the uncommitted
// counts (those batches will be re-sent and counted again). Each write also
// records the (spool id, seq) it covers, so after a crash the collector can
// tell that the ledger is behind the segments and mark that stretch
// "uncertain" instead of reporting a loss that did not happen.
// Not thread-safe: the owner (the agent's storage slot) serialises calls.
//
// Reader side (read_ledger, coverage): pure functions over the file, used by
// the collector's HTTP API and by `trawl coverage`.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string_view>
#include <string>
#include <vector>

#include "core/packet.h"
#include "core/result.h"

namespace trawl::collector {

constexpr uint64_t kMinuteNs = 60'000'000'000ull;
constexpr const char* kLedgerFileName = "ledger.tsv";
constexpr const char* kAllInterfaces = "*";  // rows for records that name no interface

struct LedgerCounts {
  uint64_t stored_packets = 0;
  uint64_t stored_bytes = 0;
  uint64_t kernel_drops = 0;      // kernel-drop GAP records (ring and NIC)
  uint64_t agent_drops = 0;       // spool-full GAP records (spool policy)
  uint64_t agent_drop_bytes = 0;
  uint64_t other_drops = 0;       // other GAP reasons (agent restart, unknown)
  uint64_t reports = 0;           // STATS records received for this minute
  LedgerCounts& operator+=(const LedgerCounts& o);
  bool empty() const;
  uint64_t lost() const { return kernel_drops + agent_drops + other_drops; }
};

struct LedgerKey {
  uint64_t minute = 0;  // minute start, UTC ns since the epoch
  std::string iface;
  auto operator<=>(const LedgerKey&) const = default;
};

// A stretch the ledger cannot vouch for (it fell behind the segments).
struct UncertainRange {
  uint64_t from_ns = 0;
  uint64_t to_ns = 0;
  std::string why;
};

class LedgerBook {
 public:
  // Opens (creates) the ledger file. Reads its last tag, so that
  // behind(spool_id, seq) can compare it with the segments.
  static Result<std::unique_ptr<LedgerBook>> open(const std::filesystem::path& file, bool fsync);
  ~LedgerBook();
  LedgerBook(const LedgerBook&) = delete;
  LedgerBook& operator=(const LedgerBook&) = delete;

  // One stored batch: its interface names, then its records.
  void begin_batch(std::span<const InterfaceInfo> ifaces);
  void packet(uint16_t iface, uint64_t ts_ns, uint32_t caplen) {
    if (ts_ns >= cur_from_ && ts_ns < cur_to_ && iface < cur_.size()) {
      ++cur_[iface].stored_packets;
      cur_[iface].stored_bytes += caplen;
      return;
    }
    slow_packet(iface, ts_ns, caplen);
  }
  void gap(const Gap& g);
  void stats(const InterfaceStats& s);
  void end_batch();

  // The batches counted since the last commit() are durable: keep them.
  void commit();
  // The batches counted since the last commit() were rolled back: forget them.
  void rollback();
  // Appends committed counts as rows tagged (spool_id, seq); fdatasyncs if
  // `durable` (or if fsync is off, never). On failure nothing is lost: the
  // counts stay committed in memory and the next write() retries.
  Status write(uint64_t spool_id, uint64_t seq, uint64_t wall_ns, bool durable);
  bool dirty() const { return !committed_.empty() || unsynced_; }
  // Records that [from_ns, to_ns] is uncertain (durably, with the next write()).
  void mark_uncertain(uint64_t from_ns, uint64_t to_ns, std::string why);

  // The last (spool_id, seq, wall time) written, from the file or this run.
  uint64_t last_spool_id() const { return last_spool_id_; }
  uint64_t last_seq() const { return last_seq_; }
  uint64_t last_write_ns() const { return last_write_ns_; }

 private:
  LedgerBook(std::filesystem::path file, int fd, bool fsync);
  void fold_current();
  void slow_packet(uint16_t iface, uint64_t ts_ns, uint32_t caplen);
  const std::string& iface_name(uint16_t iface) const;

  std::filesystem::path file_;
  int fd_ = -1;
  bool fsync_ = true;
  bool unsynced_ = false;
  std::vector<std::string> ifaces_;     // the batch's interface names
  // Fast path: counts for the current minute, per batch interface.
  uint64_t cur_from_ = 1, cur_to_ = 0;  // empty range
  std::vector<LedgerCounts> cur_;
  std::map<LedgerKey, LedgerCounts> pending_;    // not yet durable in the segments
  std::map<LedgerKey, LedgerCounts> committed_;  // durable in the segments, not yet in the file
  std::vector<UncertainRange> uncertain_;
  uint64_t last_spool_id_ = 0;
  uint64_t last_seq_ = 0;
  uint64_t last_write_ns_ = 0;
};

// The whole ledger of one agent, summed.
struct LedgerTable {
  std::map<LedgerKey, LedgerCounts> rows;
  std::vector<UncertainRange> uncertain;
  uint64_t bad_lines = 0;   // skipped (logged with file:line)
};
Result<LedgerTable> read_ledger(const std::filesystem::path& file);

enum class MinuteStatus : uint8_t { kComplete, kLoss, kNoReports, kUncertain };
std::string_view to_string(MinuteStatus s);

struct CoverageMinute {
  uint64_t minute = 0;
  MinuteStatus status = MinuteStatus::kNoReports;
  LedgerCounts total;                                   // all interfaces
  std::map<std::string, LedgerCounts> interfaces;       // per interface (and "*")
};

struct CoverageReport {
  std::string agent;
  uint64_t from_ns = 0;  // first minute start
  uint64_t to_ns = 0;    // end of the last minute (exclusive)
  bool complete = false;
  LedgerCounts total;
  uint64_t minutes = 0;
  uint64_t minutes_complete = 0, minutes_loss = 0, minutes_no_reports = 0, minutes_uncertain = 0;
  std::vector<CoverageMinute> rows;  // every minute of the window, in order
};

// Minutes [floor(from), ceil(to)) of the window. A minute is complete when
// the agent reported in it and nothing was lost; loss when anything was
// dropped; no-reports when there is no evidence either way; uncertain when
// it falls in an uncertain range.
CoverageReport coverage(const LedgerTable& t, std::string agent, uint64_t from_ns, uint64_t to_ns);
// JSON object (see docs/metrics.md "Completeness").
std::string coverage_json(const CoverageReport& r);
// The terminal table, from coverage_json()'s document (local or fetched from
// a collector): loss and uncertain minutes one per line, runs of complete
// minutes and stretches without reports merged.
std::string coverage_table(std::string_view json);

}  // namespace trawl::collector
