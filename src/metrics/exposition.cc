// Prometheus text exposition; see exposition.h.
#include "metrics/exposition.h"

#include <cmath>

#include <fmt/format.h>

namespace trawl::metrics {

std::string escape_label(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void Exposition::counter(std::string_view name, std::string_view help, double value, const Labels& labels) {
  sample(name, help, "counter", value, labels);
}

void Exposition::gauge(std::string_view name, std::string_view help, double value, const Labels& labels) {
  sample(name, help, "gauge", value, labels);
}

void Exposition::histogram(std::string_view name, std::string_view help, const LatencyHistogram& h,
                           const Labels& labels) {
  if (name != last_family_) {
    fmt::format_to(std::back_inserter(out_), "# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
    last_family_ = std::string(name);
  }
  auto line = [&](std::string_view suffix, const Labels& ls, double v) {
    out_ += name;
    out_ += suffix;
    if (!ls.empty()) {
      out_ += '{';
      for (size_t i = 0; i < ls.size(); ++i) {
        if (i) out_ += ',';
        fmt::format_to(std::back_inserter(out_), "{}=\"{}\"", ls[i].first, escape_label(ls[i].second));
      }
      out_ += '}';
    }
    fmt::format_to(std::back_inserter(out_), " {}\n", v);
  };
  auto counts = h.buckets();
  uint64_t cumulative = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    cumulative += counts[i];
    Labels ls = labels;
    ls.emplace_back("le", i < LatencyHistogram::kBoundsNs.size()
                              ? fmt::format("{}", static_cast<double>(LatencyHistogram::kBoundsNs[i]) / 1e9)
                              : std::string("+Inf"));
    line("_bucket", ls, static_cast<double>(cumulative));
  }
  line("_sum", labels, static_cast<double>(h.sum_ns()) / 1e9);
  line("_count", labels, static_cast<double>(cumulative));
}

void Exposition::sample(std::string_view name, std::string_view help, std::string_view type, double value,
                        const Labels& labels) {
  if (name != last_family_) {
    fmt::format_to(std::back_inserter(out_), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    last_family_ = std::string(name);
  }
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    bool first = true;
    for (const auto& [k, v] : labels) {
      if (!first) out_ += ',';
      first = false;
      fmt::format_to(std::back_inserter(out_), "{}=\"{}\"", k, escape_label(v));
    }
    out_ += '}';
  }
  if (value == std::floor(value) && std::fabs(value) < 9.0e15) {
    fmt::format_to(std::back_inserter(out_), " {}\n", static_cast<int64_t>(value));
  } else {
    fmt::format_to(std::back_inserter(out_), " {}\n", value);
  }
}

void MetricsRegistry::add(Collect c) {
  std::lock_guard lock(mu_);
  collectors_.push_back(std::move(c));
}

std::string MetricsRegistry::scrape() {
  std::lock_guard lock(mu_);
  Exposition e;
  for (auto& c : collectors_) c(e);
  return e.text();
}

void write_build_info(Exposition& e, std::string_view component) {
  e.gauge("trawl_build_info", "Build and component of this trawl process (always 1)", 1,
          {{"version", TRAWL_VERSION}, {"component", std::string(component)}});
}

}  // namespace trawl::metrics
