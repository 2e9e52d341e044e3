// Retention: which sealed segments to delete so the data directory stays
// within its limits (bytes per agent, bytes in total, maximum age, a
// free-space floor). Oldest first: per agent for the per-agent cap, across
// all agents for the others. A segment being written (".part") is never a
// candidate. A segment's sidecar files (index, ...) share its name prefix
// "<agent>-<stamp>.pcapng" and go with it.
//
// scan_segments() reads the directory; plan_evictions() is pure (tested
// against a model); apply_eviction() deletes. Not thread-safe; the
// collector's housekeeping thread is the only caller.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace trawl::collector {

// Why retention deleted a segment (a metrics label).
enum class EvictionReason : uint8_t { kAgentBytes, kTotalBytes, kAge, kFreeSpace, kCount };
std::string_view to_string(EvictionReason r);

struct StoredSegment {
  std::string agent;
  std::string prefix;          // "<agent>-<stamp>.pcapng"
  uint64_t start_ns = 0;       // from the name
  uint64_t sealed_ns = 0;      // modification time of the segment file
  uint64_t bytes = 0;          // segment + sidecars
  std::vector<std::filesystem::path> files;
};

struct DataDirUsage {
  std::vector<StoredSegment> sealed;           // oldest first (by start time, then agent)
  std::map<std::string, uint64_t> agent_bytes; // everything in the agent's directory
  uint64_t total_bytes = 0;
  uint64_t fs_free_bytes = 0;                  // statvfs of the data directory
  uint64_t fs_total_bytes = 0;
};

struct RetentionLimits {
  uint64_t bytes_per_agent = 0;  // 0 = no limit
  uint64_t bytes_total = 0;
  uint64_t age_ns = 0;
  uint64_t min_free_bytes = 0;
};

struct Eviction {
  size_t segment = 0;  // index into DataDirUsage::sealed
  EvictionReason reason = EvictionReason::kAge;
};

Result<DataDirUsage> scan_data_dir(const std::filesystem::path& data_dir);
std::vector<Eviction> plan_evictions(const DataDirUsage& u, const RetentionLimits& limits, uint64_t now_ns);
// Deletes the segment's files (the segment itself last, so a crash never
// leaves sidecars without a segment... but may leave a segment without
// sidecars, which readers rebuild).
Status apply_eviction(const StoredSegment& s);

}  // namespace trawl::collector
