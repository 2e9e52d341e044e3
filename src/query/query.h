// `trawl query`: packets of selected agents in a time window that match a
// BPF filter, as one pcapng stream merged in timestamp order.
//
//   1. list agents -> segments; load each segment's index (rebuilt if
//      missing or damaged)
//   2. candidate blocks: time range overlaps [from, to] and the predicate
//      derived from the filter text may match one of the block's flows
//   3. merge: blocks are opened in order of their first timestamp, only
//      when the merge reaches it; an opened block is decoded, its packets
//      filtered (time window + libpcap's compiled BPF per link type) and
//      sorted by time; output is the packets of all open blocks in order of
//      (timestamp, agent, segment, position) — a stable sort by time
//   4. pcapng out: SHB, one IDB per (agent, interface) named "agent/if"
//      with tsresol 9, EPBs (packet comments kept, e.g. gap notes)
// The open segment is included: its indexed blocks, then the bytes after
// the index up to the last complete batch.
//
// Memory is bounded by the blocks that overlap in time (one per agent and
// segment in the usual case). A damaged block is reported through on_error
// ("<segment>: damaged block at offset N: why") and skipped; the query
// goes on. Not thread-safe per call; run_query blocks on disk and on the
// sink; may be cancelled through `cancel`.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "core/result.h"

namespace trawl::query {

struct QueryOptions {
  std::filesystem::path data_dir;
  std::vector<std::string> agents;  // empty: all
  uint64_t from_ns = 0;
  uint64_t to_ns = UINT64_MAX;      // inclusive
  std::string filter;               // BPF; empty: every packet
  bool write_back_index = true;     // store rebuilt indexes of sealed segments
};

struct QueryStats {
  uint64_t segments = 0;
  uint64_t blocks = 0;            // in the time window
  uint64_t candidate_blocks = 0;  // opened
  uint64_t damaged_blocks = 0;
  uint64_t indexes_rebuilt = 0;
  uint64_t packets_scanned = 0;
  uint64_t packets_out = 0;
  uint64_t bytes_out = 0;
  uint64_t raw_bytes_decoded = 0;
};

struct QueryCallbacks {
  std::function<Status(std::span<const uint8_t>)> write;  // output bytes
  std::function<void(const std::string&)> on_error;       // damaged blocks
  std::function<void(const std::string&)> on_notice;      // rebuilt indexes
  std::function<void(const QueryStats&)> on_progress;     // every few blocks
  const std::atomic<bool>* cancel = nullptr;
};

// Errors: bad filter (libpcap's message), unknown agent, unreadable data
// directory, or the sink failing. Damaged data is not an error.
Result<QueryStats> run_query(const QueryOptions& opts, const QueryCallbacks& cb);

}  // namespace trawl::query
