// One definition per option, used both for command-line flags (CLI11) and
// for keys in a YAML config file passed with -c. Values are validated by the
// same setter either way, so a bad value in a file is reported with the
// file, line and key, and a bad flag with the flag's name.
//
// Precedence: built-in default < config file < command line.
// Single-threaded; used once at start-up.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace CLI {
class App;
class Option;
}

namespace trawl::cli {

// "1GiB", "512MiB", "64M", "4096", "1.5G" -> bytes (K/M/G/T = powers of 1024).
Result<uint64_t> parse_size(std::string_view s);
// "5m", "100ms", "30s", "2h", "1d", "250us" -> nanoseconds; bare numbers are seconds.
Result<uint64_t> parse_duration_ns(std::string_view s);
Result<bool> parse_bool(std::string_view s);
Result<uint64_t> parse_uint(std::string_view s, uint64_t max);
// Segment compression: "none" -> 0; "zstd" -> the default level (-1);
// "zstd:N" -> N for 1..19 (zstd levels) or -1..-99 (zstd's fast levels, as
// `zstd --fast=N`: literals are stored, not Huffman-coded).
inline constexpr int kDefaultZstdLevel = -1;
Result<int> parse_compression(std::string_view s);
std::string format_size(uint64_t bytes);
std::string format_duration(uint64_t ns);

class OptionSet {
 public:
  using Setter = std::function<Status(std::string_view)>;

  // A value option: --name VALUE / "name: value".
  void value(std::string name, std::string help, Setter set, std::string default_text = "");
  // A repeatable option: -i a -i b / "name: [a, b]". `clear` empties the list
  // before the command line replaces what the config file gave.
  void list(std::string name, std::string help, Setter add, std::function<void()> clear,
            std::string short_name = "");
  // A boolean switch: --name / "name: true|false".
  void flag(std::string name, std::string help, std::function<void(bool)> set);

  // Registers everything with the CLI11 app (plus -c/--config).
  void attach(CLI::App& app);
  // After app.parse(): applies the config file (if -c was given), then the
  // flags given on the command line. Errors name the file/line/key or flag.
  Status apply();

  // Applies a YAML config file (exposed for tests).
  Status apply_config_file(const std::string& path);

 private:
  struct Def {
    std::string name;
    std::string short_name;
    std::string help;
    std::string default_text;
    enum Kind { kValue, kList, kFlag } kind;
    Setter set;
    std::function<void()> clear;
    std::function<void(bool)> set_flag;
    // Filled by CLI11.
    std::string cli_value;
    std::vector<std::string> cli_values;
    bool cli_flag = false;
    CLI::Option* opt = nullptr;
  };
  Def* find(std::string_view key);

  std::vector<Def> defs_;
  std::string config_path_;
  CLI::App* app_ = nullptr;
};

}  // namespace trawl::cli
