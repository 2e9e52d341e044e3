// Option definitions shared by flags and YAML config; see options.h.
#include "cli/options.h"

#include <cmath>
#include <limits>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

namespace trawl::cli {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Splits "1.5GiB" into 1.5 and "GiB".
bool split_number(std::string_view s, double& number, std::string_view& unit) {
  s = trim(s);
  size_t i = 0;
  while (i < s.size() && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.')) ++i;
  if (i == 0) return false;
  std::string num(s.substr(0, i));
  char* end = nullptr;
  number = std::strtod(num.c_str(), &end);
  if (end != num.c_str() + num.size() || !std::isfinite(number) || number < 0) return false;
  unit = trim(s.substr(i));
  return true;
}

std::string normalize_key(std::string_view k) {
  std::string out(k);
  for (auto& c : out) {
    if (c == '_') c = '-';
  }
  return out;
}

}  // namespace

Result<uint64_t> parse_size(std::string_view s) {
  double n = 0;
  std::string_view unit;
  if (!split_number(s, n, unit)) return Error(fmt::format("'{}' is not a size (e.g. 512MiB, 1GiB, 4096)", s));
  static const std::pair<std::string_view, double> units[] = {
      {"", 1},           {"B", 1},
      {"K", 1024.0},     {"KB", 1024.0},     {"KiB", 1024.0},     {"k", 1024.0},
      {"M", 1048576.0},  {"MB", 1048576.0},  {"MiB", 1048576.0},
      {"G", 1073741824.0}, {"GB", 1073741824.0}, {"GiB", 1073741824.0},
      {"T", 1099511627776.0}, {"TB", 1099511627776.0}, {"TiB", 1099511627776.0},
  };
  for (const auto& [name, mult] : units) {
    if (unit == name) {
      double v = n * mult;
      if (v > 9.0e18) return Error(fmt::format("size '{}' is too large", s));
      return static_cast<uint64_t>(v);
    }
  }
  return Error(fmt::format("'{}': unknown size unit '{}' (use B, KiB, MiB, GiB, TiB)", s, unit));
}

Result<uint64_t> parse_duration_ns(std::string_view s) {
  double n = 0;
  std::string_view unit;
  if (!split_number(s, n, unit)) return Error(fmt::format("'{}' is not a duration (e.g. 100ms, 30s, 5m, 1h)", s));
  static const std::pair<std::string_view, double> units[] = {
      {"", 1e9}, {"s", 1e9}, {"ms", 1e6}, {"us", 1e3}, {"ns", 1},
      {"m", 60e9}, {"min", 60e9}, {"h", 3600e9}, {"d", 86400e9},
  };
  for (const auto& [name, mult] : units) {
    if (unit == name) {
      double v = n * mult;
      if (v > 9.0e18) return Error(fmt::format("duration '{}' is too long", s));
      return static_cast<uint64_t>(v);
    }
  }
  return Error(fmt::format("'{}': unknown duration unit '{}' (use ms, s, m, h, d)", s, unit));
}

Result<bool> parse_bool(std::string_view s) {
  s = trim(s);
  if (s == "true" || s == "yes" || s == "on" || s == "1") return true;
  if (s == "false" || s == "no" || s == "off" || s == "0") return false;
  return Error(fmt::format("'{}' is not a boolean (true/false)", s));
}

Result<uint64_t> parse_uint(std::string_view s, uint64_t max) {
  s = trim(s);
  if (s.empty()) return Error("empty number");
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return Error(fmt::format("'{}' is not a whole number", s));
    if (v > (std::numeric_limits<uint64_t>::max() - 9) / 10) return Error(fmt::format("'{}' is too large", s));
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > max) return Error(fmt::format("{} is larger than the maximum {}", v, max));
  return v;
}

Result<int> parse_compression(std::string_view s) {
  s = trim(s);
  if (s == "none") return 0;
  if (s == "zstd") return kDefaultZstdLevel;
  if (!s.starts_with("zstd:")) return Error(fmt::format("'{}': expected zstd:LEVEL, zstd or none", s));
  std::string_view level = s.substr(5);
  const bool fast = level.starts_with('-');
  if (fast) level.remove_prefix(1);
  auto n = parse_uint(level, fast ? 99 : 19);
  if (!n || *n == 0) return Error(fmt::format("'{}': the zstd level must be 1..19, or -1..-99 for a fast level", s));
  return fast ? -static_cast<int>(*n) : static_cast<int>(*n);
}

std::string format_size(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  if (u == 0) return fmt::format("{}B", b);
  if (v == std::floor(v)) return fmt::format("{:.0f}{}", v, units[u]);
  return fmt::format("{:.1f}{}", v, units[u]);
}

std::string format_duration(uint64_t ns) {
  if (ns % (3600ull * 1'000'000'000) == 0 && ns) return fmt::format("{}h", ns / 3600'000'000'000ull);
  if (ns % (60ull * 1'000'000'000) == 0 && ns) return fmt::format("{}m", ns / 60'000'000'000ull);
  if (ns % 1'000'000'000 == 0) return fmt::format("{}s", ns / 1'000'000'000ull);
  if (ns % 1'000'000 == 0) return fmt::format("{}ms", ns / 1'000'000);
  return fmt::format("{}ns", ns);
}

void OptionSet::value(std::string name, std::string help, Setter set, std::string default_text) {
  Def d;
  d.name = std::move(name);
  d.help = std::move(help);
  d.default_text = std::move(default_text);
  d.kind = Def::kValue;
  d.set = std::move(set);
  defs_.push_back(std::move(d));
}

void OptionSet::list(std::string name, std::string help, Setter add, std::function<void()> clear,
                     std::string short_name) {
  Def d;
  d.name = std::move(name);
  d.short_name = std::move(short_name);
  d.help = std::move(help);
  d.kind = Def::kList;
  d.set = std::move(add);
  d.clear = std::move(clear);
  defs_.push_back(std::move(d));
}

void OptionSet::flag(std::string name, std::string help, std::function<void(bool)> set) {
  Def d;
  d.name = std::move(name);
  d.help = std::move(help);
  d.kind = Def::kFlag;
  d.set_flag = std::move(set);
  defs_.push_back(std::move(d));
}

OptionSet::Def* OptionSet::find(std::string_view key) {
  std::string k = normalize_key(key);
  for (auto& d : defs_) {
    if (d.name == k) return &d;
  }
  return nullptr;
}

void OptionSet::attach(CLI::App& app) {
  app_ = &app;
  app.add_option("-c,--config", config_path_, "YAML config file; keys are the long option names")
      ->check(CLI::ExistingFile);
  // defs_ must not reallocate from here on: CLI11 keeps pointers into it.
  for (auto& d : defs_) {
    std::string names = d.short_name.empty() ? "--" + d.name : "-" + d.short_name + ",--" + d.name;
    std::string help = d.help;
    if (!d.default_text.empty()) help += " [default: " + d.default_text + "]";
    CLI::Option* o = nullptr;
    if (d.kind == Def::kFlag) {
      o = app.add_flag(names, d.cli_flag, help);
    } else if (d.kind == Def::kList) {
      o = app.add_option(names, d.cli_values, help)->allow_extra_args(false);
      o->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    } else {
      o = app.add_option(names, d.cli_value, help);
      o->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // the last one given wins
    }
    d.opt = o;
  }
}

Status OptionSet::apply_config_file(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::ParserException& e) {
    return Error(fmt::format("{}:{}:{}: YAML syntax error: {}", path, e.mark.line + 1, e.mark.column + 1, e.msg));
  } catch (const YAML::Exception& e) {
    return Error(fmt::format("{}: {}", path, e.what()));
  }
  if (root.IsNull()) return ok_status();
  if (!root.IsMap()) {
    return Error(fmt::format("{}:{}: the config file must be a mapping of option names to values", path,
                             root.Mark().line + 1));
  }
  for (const auto& kv : root) {
    std::string key = kv.first.as<std::string>("");
    int line = kv.first.Mark().line + 1;
    Def* d = find(key);
    if (!d) return Error(fmt::format("{}:{}: unknown key '{}'", path, line, key));
    const YAML::Node& v = kv.second;
    auto bad = [&](const std::string& why) {
      return Error(fmt::format("{}:{}: key '{}': {}", path, v.Mark().line + 1, key, why));
    };
    if (d->kind == Def::kList) {
      d->clear();
      if (v.IsSequence()) {
        for (const auto& item : v) {
          if (!item.IsScalar()) return bad("list items must be plain values");
          if (auto r = d->set(item.Scalar()); !r) return bad(r.error().message());
        }
      } else if (v.IsScalar()) {
        if (auto r = d->set(v.Scalar()); !r) return bad(r.error().message());
      } else {
        return bad("expected a value or a list of values");
      }
    } else if (!v.IsScalar()) {
      return bad("expected a single value");
    } else if (d->kind == Def::kFlag) {
      auto b = parse_bool(v.Scalar());
      if (!b) return bad(b.error().message());
      d->set_flag(*b);
    } else {
      if (auto r = d->set(v.Scalar()); !r) return bad(r.error().message());
    }
  }
  return ok_status();
}

Status OptionSet::apply() {
  if (!config_path_.empty()) TRAWL_TRY(apply_config_file(config_path_), "config");
  for (auto& d : defs_) {
    if (!d.opt || d.opt->count() == 0) continue;
    if (d.kind == Def::kFlag) {
      d.set_flag(d.cli_flag);
      continue;
    }
    if (d.kind == Def::kValue) {
      if (auto r = d.set(d.cli_value); !r) return Error(fmt::format("--{}: {}", d.name, r.error().message()));
      continue;
    }
    d.clear();
    for (const auto& v : d.cli_values) {
      if (auto r = d.set(v); !r) return Error(fmt::format("--{}: {}", d.name, r.error().message()));
    }
  }
  return ok_status();
}

}  // namespace trawl::cli
