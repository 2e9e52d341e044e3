// See retention.h.
#include "collector/retention.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "store/segment_name.h"

namespace trawl::collector {

std::string_view to_string(EvictionReason r) {
  switch (r) {
    case EvictionReason::kAgentBytes: return "agent-bytes";
    case EvictionReason::kTotalBytes: return "total-bytes";
    case EvictionReason::kAge: return "age";
    case EvictionReason::kFreeSpace: return "free-space";
    case EvictionReason::kCount: break;
  }
  return "?";
}

Result<DataDirUsage> scan_data_dir(const std::filesystem::path& data_dir) {
  namespace fs = std::filesystem;
  DataDirUsage u;
  std::error_code ec;
  struct statvfs sv {};
  if (::statvfs(data_dir.c_str(), &sv) != 0) return Error::from_errno("statvfs " + data_dir.string());
  u.fs_free_bytes = static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize;
  u.fs_total_bytes = static_cast<uint64_t>(sv.f_blocks) * sv.f_frsize;
  fs::directory_iterator agents(data_dir, ec);
  if (ec) return Error(fmt::format("listing {}: {}", data_dir.string(), ec.message()));
  for (const auto& dir : agents) {
    if (!dir.is_directory(ec)) continue;
    std::string agent = dir.path().filename().string();
    std::map<std::string, StoredSegment> segs;
    std::set<std::string> open;  // prefixes with a ".part" file: being written
    uint64_t agent_bytes = 0;
    for (const auto& f : fs::directory_iterator(dir.path(), ec)) {
      if (!f.is_regular_file(ec)) continue;
      uint64_t size = f.file_size(ec);
      if (ec) size = 0;
      agent_bytes += size;
      std::string name = f.path().filename().string();
      size_t at = name.find(store::kSegmentSuffix);
      if (name.rfind(agent + "-", 0) != 0 || at == std::string::npos) continue;
      std::string prefix = name.substr(0, at + store::kSegmentSuffix.size());
      if (name.find(store::kPartSuffix) != std::string::npos) {
        open.insert(prefix);
        continue;
      }
      auto stamp = store::parse_segment_stamp(std::string_view(prefix).substr(
          agent.size() + 1, prefix.size() - agent.size() - 1 - store::kSegmentSuffix.size()));
      if (!stamp) continue;
      auto& s = segs[prefix];
      s.agent = agent;
      s.prefix = prefix;
      s.start_ns = *stamp;
      s.bytes += size;
      s.files.push_back(f.path());
      if (name.size() == prefix.size() || name.compare(prefix.size(), 4, ".zst") == 0) {
        auto mt = f.last_write_time(ec);
        if (!ec) {
          auto sys = std::chrono::file_clock::to_sys(mt);
          s.sealed_ns = static_cast<uint64_t>(
              std::chrono::duration_cast<std::chrono::nanoseconds>(sys.time_since_epoch()).count());
        }
      }
    }
    for (auto& [prefix, s] : segs) {
      if (open.count(prefix)) continue;
      // Sidecars first, the segment itself last.
      auto is_segment = [&](const fs::path& p) {
        std::string n = p.filename().string();
        return n == prefix || n == prefix + ".zst";
      };
      std::stable_partition(s.files.begin(), s.files.end(), [&](const fs::path& p) { return !is_segment(p); });
      u.sealed.push_back(std::move(s));
    }
    u.agent_bytes[agent] = agent_bytes;
    u.total_bytes += agent_bytes;
  }
  std::sort(u.sealed.begin(), u.sealed.end(), [](const StoredSegment& a, const StoredSegment& b) {
    return a.start_ns != b.start_ns ? a.start_ns < b.start_ns : a.agent < b.agent;
  });
  return u;
}

std::vector<Eviction> plan_evictions(const DataDirUsage& u, const RetentionLimits& lim, uint64_t now_ns) {
  std::vector<Eviction> out;
  std::vector<bool> gone(u.sealed.size(), false);
  std::map<std::string, uint64_t> agent_bytes = u.agent_bytes;
  uint64_t total = u.total_bytes;
  uint64_t free_bytes = u.fs_free_bytes;
  auto evict = [&](size_t i, EvictionReason why) {
    gone[i] = true;
    out.push_back({i, why});
    agent_bytes[u.sealed[i].agent] -= std::min(agent_bytes[u.sealed[i].agent], u.sealed[i].bytes);
    total -= std::min(total, u.sealed[i].bytes);
    free_bytes += u.sealed[i].bytes;
  };
  // 1. Age: everything sealed before now - age.
  if (lim.age_ns) {
    for (size_t i = 0; i < u.sealed.size(); ++i) {
      uint64_t end = u.sealed[i].sealed_ns ? u.sealed[i].sealed_ns : u.sealed[i].start_ns;
      if (end + lim.age_ns < now_ns) evict(i, EvictionReason::kAge);
    }
  }
  // 2. Per agent: that agent's oldest first.
  if (lim.bytes_per_agent) {
    for (size_t i = 0; i < u.sealed.size(); ++i) {
      if (!gone[i] && agent_bytes[u.sealed[i].agent] > lim.bytes_per_agent) evict(i, EvictionReason::kAgentBytes);
    }
  }
  // 3. Total and free-space floor: the oldest of all agents first.
  for (size_t i = 0; i < u.sealed.size(); ++i) {
    if (gone[i]) continue;
    if (lim.bytes_total && total > lim.bytes_total) {
      evict(i, EvictionReason::kTotalBytes);
    } else if (lim.min_free_bytes && free_bytes < lim.min_free_bytes) {
      evict(i, EvictionReason::kFreeSpace);
    }
  }
  return out;
}

Status apply_eviction(const StoredSegment& s) {
  for (const auto& f : s.files) {
    std::error_code ec;
    std::filesystem::remove(f, ec);
    if (ec) return Error(fmt::format("deleting {}: {}", f.string(), ec.message()));
  }
  return ok_status();
}

}  // namespace trawl::collector
