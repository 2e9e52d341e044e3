// Named anomaly counters for one decoder ("rtp.bad_version", "ip.bad_header_length").
//
// Malformed input is data: a decoder counts it under a stable name and goes
// on. Names are string literals (static storage), so counting never
// allocates once a name has been seen. Not thread-safe.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace trawl::decode {

class Anomalies {
 public:
  // name must have static storage duration (a string literal).
  void add(const char* name, uint64_t n = 1) {
    for (auto& [k, v] : counts_) {
      if (k == name || std::strcmp(k, name) == 0) {
        v += n;
        return;
      }
    }
    counts_.emplace_back(name, n);
  }
  uint64_t get(const char* name) const {
    for (const auto& [k, v] : counts_)
      if (std::strcmp(k, name) == 0) return v;
    return 0;
  }
  uint64_t total() const {
    uint64_t t = 0;
    for (const auto& kv : counts_) t += kv.second;
    return t;
  }
  std::vector<std::pair<std::string, uint64_t>> list() const {
    std::vector<std::pair<std::string, uint64_t>> out;
    for (const auto& [k, v] : counts_) out.emplace_back(k, v);
    return out;
  }

 private:
  std::vector<std::pair<const char*, uint64_t>> counts_;
};

}  // namespace trawl::decode
