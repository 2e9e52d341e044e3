// plan_evictions against a simple model: oldest first, never more than
// needed, each limit honoured; scan_data_dir never offers an open segment.
#include "collector/retention.h"

#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include "store/segment_name.h"

namespace trawl::collector {
namespace {

constexpr uint64_t kS = 1'000'000'000ull;

StoredSegment seg(std::string agent, uint64_t start_s, uint64_t bytes) {
  StoredSegment s;
  s.agent = std::move(agent);
  s.start_ns = start_s * kS;
  s.sealed_ns = (start_s + 60) * kS;
  s.bytes = bytes;
  return s;
}

DataDirUsage usage(std::vector<StoredSegment> segs, uint64_t free_bytes = 1ull << 40) {
  DataDirUsage u;
  std::sort(segs.begin(), segs.end(), [](auto& a, auto& b) { return a.start_ns < b.start_ns; });
  for (auto& s : segs) {
    u.agent_bytes[s.agent] += s.bytes;
    u.total_bytes += s.bytes;
  }
  u.sealed = std::move(segs);
  u.fs_free_bytes = free_bytes;
  u.fs_total_bytes = 1ull << 41;
  return u;
}

TEST(Retention, PerAgentCapDeletesThatAgentsOldestOnly) {
  auto u = usage({seg("a", 0, 100), seg("b", 10, 100), seg("a", 20, 100), seg("a", 30, 100)});
  RetentionLimits lim;
  lim.bytes_per_agent = 200;
  auto plan = plan_evictions(u, lim, 1000 * kS);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(u.sealed[plan[0].segment].agent, "a");
  EXPECT_EQ(u.sealed[plan[0].segment].start_ns, 0u);
  EXPECT_EQ(plan[0].reason, EvictionReason::kAgentBytes);
}

TEST(Retention, AgeTotalAndFreeSpace) {
  auto u = usage({seg("a", 0, 100), seg("b", 1000, 100), seg("a", 2000, 100)});
  RetentionLimits lim;
  lim.age_ns = 1500 * kS;
  auto plan = plan_evictions(u, lim, 2100 * kS);  // segment 0 sealed at 60 s: older than 1500 s
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].segment, 0u);
  EXPECT_EQ(plan[0].reason, EvictionReason::kAge);

  lim = {};
  lim.bytes_total = 150;
  plan = plan_evictions(u, lim, 0);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].segment, 0u);
  EXPECT_EQ(plan[1].segment, 1u);

  lim = {};
  lim.min_free_bytes = 1000;
  plan = plan_evictions(usage({seg("a", 0, 400), seg("b", 10, 400), seg("a", 20, 400)}, 300), lim, 0);
  ASSERT_EQ(plan.size(), 2u);  // 300 + 400 < 1000, + 400 >= 1000
  EXPECT_EQ(plan[1].reason, EvictionReason::kFreeSpace);
}

// Model: whatever the limits, the plan deletes a prefix (oldest first) per
// reason and leaves every limit satisfied if the segments allow it.
TEST(Retention, RandomPlansSatisfyTheLimitsOldestFirst) {
  std::mt19937_64 rng(42);
  for (int iter = 0; iter < 500; ++iter) {
    std::vector<StoredSegment> segs;
    int n = static_cast<int>(rng() % 20);
    for (int i = 0; i < n; ++i) segs.push_back(seg(std::string(1, static_cast<char>('a' + rng() % 3)), rng() % 10000, 1 + rng() % 1000));
    auto u = usage(segs, rng() % 5000);
    RetentionLimits lim;
    if (rng() % 2) lim.bytes_per_agent = rng() % 3000;
    if (rng() % 2) lim.bytes_total = rng() % 6000;
    if (rng() % 2) lim.min_free_bytes = rng() % 8000;
    auto plan = plan_evictions(u, lim, 0);
    std::vector<bool> gone(u.sealed.size());
    for (const auto& e : plan) {
      ASSERT_FALSE(gone[e.segment]) << "evicted twice";
      gone[e.segment] = true;
    }
    std::map<std::string, uint64_t> left;
    uint64_t total = 0, freed = 0;
    for (size_t i = 0; i < u.sealed.size(); ++i) {
      if (gone[i]) {
        freed += u.sealed[i].bytes;
      } else {
        left[u.sealed[i].agent] += u.sealed[i].bytes;
        total += u.sealed[i].bytes;
      }
    }
    if (lim.bytes_per_agent) {
      for (auto& [a, b] : left) EXPECT_LE(b, lim.bytes_per_agent);
    }
    if (lim.bytes_total) {
      EXPECT_LE(total, lim.bytes_total);
    }
    if (lim.min_free_bytes && total > 0) {
      EXPECT_GE(u.fs_free_bytes + freed, lim.min_free_bytes);
    }
    // Oldest first: for each agent, kept segments are all newer than deleted ones.
    for (size_t i = 0; i < u.sealed.size(); ++i) {
      for (size_t k = i + 1; k < u.sealed.size(); ++k) {
        if (u.sealed[i].agent == u.sealed[k].agent && !gone[i] && gone[k]) {
          ADD_FAILURE() << "kept an older segment of " << u.sealed[i].agent << " and deleted a newer one";
        }
      }
    }
  }
}

TEST(Retention, ScanSkipsOpenSegmentsAndGroupsSidecars) {
  auto dir = std::filesystem::temp_directory_path() / ("retention-test-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir / "edge1");
  auto touch = [&](const std::string& name, size_t bytes) { std::ofstream(dir / "edge1" / name) << std::string(bytes, 'x'); };
  std::string a = store::segment_file_name("edge1", 1'000 * kS);
  std::string b = store::segment_file_name("edge1", 2'000 * kS);
  touch(a, 100);
  touch(a + ".idx", 10);
  touch(b + ".part", 50);  // being written
  touch(b + ".idx.part", 5);
  touch("ledger.tsv", 7);
  auto u = scan_data_dir(dir);
  ASSERT_TRUE(u.ok()) << u.error().message();
  ASSERT_EQ(u->sealed.size(), 1u);
  EXPECT_EQ(u->sealed[0].bytes, 110u);
  ASSERT_EQ(u->sealed[0].files.size(), 2u);
  EXPECT_EQ(u->sealed[0].files.back().filename().string(), a);  // the segment goes last
  EXPECT_EQ(u->agent_bytes["edge1"], 172u);
  ASSERT_TRUE(apply_eviction(u->sealed[0]).ok());
  EXPECT_FALSE(std::filesystem::exists(dir / "edge1" / a));
  EXPECT_TRUE(std::filesystem::exists(dir / "edge1" / (b + ".part")));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace trawl::collector
