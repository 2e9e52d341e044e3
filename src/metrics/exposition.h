// Prometheus text exposition (format 0.0.4), written at scrape time from
// counters the components already keep (relaxed atomics). Nothing here runs
// on a packet path: a component publishes by registering a collect function,
// and the scrape calls it. Not thread-safe itself; MetricsRegistry
// serialises scrapes.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace trawl::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Exposition {
 public:
  // Each family's HELP/TYPE is written once, before its first sample;
  // samples of one family must be written together.
  void counter(std::string_view name, std::string_view help, double value, const Labels& labels = {});
  void gauge(std::string_view name, std::string_view help, double value, const Labels& labels = {});
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
