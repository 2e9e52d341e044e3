// Prometheus text exposition (format 0.0.4), written at scrape time from
// counters the components already keep (relaxed atomics). Nothing here runs
// on a packet path: a component publishes by registering a collect function,
// and the scrape calls it. Not thread-safe itself; MetricsRegistry
// serialises scrapes.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace trawl::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

// A latency histogram with fixed buckets from 50 µs to 10 s. observe() is
// lock-free (relaxed atomics) and may be called from any thread.
class LatencyHistogram {
 public:
  static constexpr std::array<uint64_t, 14> kBoundsNs = {
      50'000,      100'000,     250'000,       500'000,       1'000'000,     2'500'000,     5'000'000,
      10'000'000,  25'000'000,  50'000'000,    100'000'000,   250'000'000,   1'000'000'000, 10'000'000'000};
  void observe(uint64_t ns) {
    size_t i = 0;
    while (i < kBoundsNs.size() && ns > kBoundsNs[i]) ++i;
    buckets_[i].fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(ns, std::memory_order_relaxed);
  }
  // Per-bucket counts (not cumulative); the last is +Inf.
  std::array<uint64_t, kBoundsNs.size() + 1> buckets() const {
    std::array<uint64_t, kBoundsNs.size() + 1> out{};
    for (size_t i = 0; i < out.size(); ++i) out[i] = buckets_[i].load(std::memory_order_relaxed);
    return out;
  }
  uint64_t sum_ns() const { return sum_ns_.load(std::memory_order_relaxed); }

 private:
  std::array<std::atomic<uint64_t>, kBoundsNs.size() + 1> buckets_{};
  std::atomic<uint64_t> sum_ns_{0};
};

class Exposition {
 public:
  // Each family's HELP/TYPE is written once, before its first sample;
  // samples of one family must be written together.
  void counter(std::string_view name, std::string_view help, double value, const Labels& labels = {});
  void gauge(std::string_view name, std::string_view help, double value, const Labels& labels = {});
  // <name>_bucket{le=...}, <name>_sum (seconds), <name>_count.
  void histogram(std::string_view name, std::string_view help, const LatencyHistogram& h, const Labels& labels = {});
  const std::string& text() const { return out_; }

 private:
  void sample(std::string_view name, std::string_view help, std::string_view type, double value,
              const Labels& labels);
  std::string out_;
  std::string last_family_;
};

// Escapes a label value (\\, \", \n).
std::string escape_label(std::string_view v);

class MetricsRegistry {
 public:
  using Collect = std::function<void(Exposition&)>;
  void add(Collect c);
  std::string scrape();

 private:
  std::mutex mu_;
  std::vector<Collect> collectors_;
};

// trawl_build_info{version=...} 1, for every process.
void write_build_info(Exposition& e, std::string_view component);

}  // namespace trawl::metrics
