// Helpers for the decoder golden tests: run a tool, run our analyzer over a
// file into a vector of records.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "decode/analyzer.h"

namespace trawl::decode::testing {

inline const std::filesystem::path kPcaps = TRAWL_SHARED_PCAPS;

inline bool have_tool(const std::string& name) {
  return std::system(("command -v " + name + " >/dev/null 2>&1").c_str()) == 0;
}

// stdout of a shell command (stderr dropped), "" plus exit_code on failure.
inline std::string run(const std::string& cmd, int* exit_code = nullptr) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>/dev/null").c_str(), "r");
  if (!p) return out;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = ::pclose(p);
  if (exit_code) *exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

inline std::string shq(const std::filesystem::path& p) { return "'" + p.string() + "'"; }

struct AnalyzeRun {
  std::vector<nlohmann::json> records;
  uint64_t frames = 0;
  bool corrupt = false;
  std::string error;
};

inline AnalyzeRun analyze(const std::filesystem::path& file, std::vector<std::string> selectors,
                          AnalyzeOptions opt = {}) {
  AnalyzeRun out;
  auto an = Analyzer::create(selectors, [&](nlohmann::json&& j) { out.records.push_back(std::move(j)); }, opt);
  if (!an) {
    out.error = an.error().message();
    return out;
  }
  auto r = CaptureReader::open(file.string());
  if (!r) {
    out.error = r.error().message();
    return out;
  }
  while (true) {
    auto n = (*r)->next();
    if (n == CaptureReader::Next::kFrame) {
      (*an)->frame((*r)->frame());
      continue;
    }
    if (n == CaptureReader::Next::kCorrupt) {
      out.corrupt = true;
      out.error = (*r)->error();
    }
    break;
  }
  (*an)->finish();
  out.frames = (*an)->frames();
  return out;
}

inline std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> v;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      v.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  v.push_back(cur);
  return v;
}

}  // namespace trawl::decode::testing
